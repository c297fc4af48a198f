/* test_fused.c — a fused elementwise chain (chainrule/fused.h) against the
 * same ops unfused: the same bits forward and backward (strided inputs,
 * rows longer than a chunk, an input and an intermediate used twice, a
 * block no op reads, 1 and 2 threads), float64 gradchecks of first and
 * second derivatives, and the errors a bad chain or bad inputs get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "chainrule.h"

/* slots a, b, g, c (blocks: slots 0-3 the column blocks of gates [.., 4H]
 * = [a, b, g, unused], slot 4 c):
 *   c2 = sigmoid(b) * c + sigmoid(a) * tanh(g);  y = c2 * tanh(c2) * 0.5 - c
 * (c2 and c each feed two ops) */
static cr_fused *cell_chain(bool blocks) {
  cr_fused *f = blocks ? cr_fused_new_blocks(2, (const int[]){4, 1}) : cr_fused_new(4);
  const int c = blocks ? 4 : 3;
  int i = cr_fused_op(f, "sigmoid", 0, -1, 0, 0);
  int fg = cr_fused_op(f, "sigmoid", 1, -1, 0, 0);
  int g = cr_fused_op(f, "tanh", 2, -1, 0, 0);
  int c2 = cr_fused_op(f, "add", cr_fused_op(f, "mul", fg, c, 0, 0),
                       cr_fused_op(f, "mul", i, g, 0, 0), 0, 0);
  int h = cr_fused_op(f, "mul", c2, cr_fused_op(f, "tanh", c2, -1, 0, 0), 0, 0);
  cr_fused_op(f, "sub", cr_fused_op(f, "mul_scalar", h, -1, 0.5, 0), c, 0, 0);
  assert_null(cr_fused_error(f));
  return f;
}

/* the same, op by op */
static cr_tensor *cell_unfused(cr_ctx *ctx, cr_tensor *const *in) {
  cr_tensor *i = cr_sigmoid(ctx, in[0]), *fg = cr_sigmoid(ctx, in[1]), *g = cr_tanh(ctx, in[2]);
  cr_tensor *c2 = cr_add(ctx, cr_mul(ctx, fg, in[3]), cr_mul(ctx, i, g));
  cr_tensor *h = cr_mul(ctx, c2, cr_tanh(ctx, c2));
  return cr_sub(ctx, cr_mul_scalar(ctx, h, 0.5), in[3]);
}

typedef struct {
  cr_tensor *leaves[2]; /* gates [B.., 4H] (a, b, g are column blocks of it), c */
  cr_tensor *y;
} run_out;

/* One forward + backward of the cell over shape [.., H] with inputs cut
 * from a gates tensor [.., 4H] (strided rows; or the chain takes its
 * column blocks) and c (transposed when transposed_c: strided along the
 * row); fused or not. */
enum { UNFUSED, FUSED_VIEWS, FUSED_BLOCKS };

static run_out run_cell(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape, int mode,
                        bool transposed_c) {
  cr_rng *rng = cr_rng_new(7);
  int64_t gs[4];
  memcpy(gs, shape, (size_t)ndim * sizeof *gs);
  gs[ndim - 1] *= 4;
  run_out r;
  r.leaves[0] = cr_rand_uniform(ctx, rng, dt, ndim, gs, -2, 2);
  int64_t cs[4];
  memcpy(cs, shape, (size_t)ndim * sizeof *cs);
  if (transposed_c) {
    cs[ndim - 1] = shape[ndim - 2];
    cs[ndim - 2] = shape[ndim - 1];
  }
  r.leaves[1] = cr_rand_uniform(ctx, rng, dt, ndim, cs, -1, 1);
  cr_tensor *seed = cr_rand_uniform(ctx, rng, dt, ndim, shape, -1, 1);
  cr_rng_free(rng);
  cr_set_requires_grad(r.leaves[0], true);
  cr_set_requires_grad(r.leaves[1], true);
  cr_tensor *q[4];
  assert_int_equal(cr_chunk(ctx, r.leaves[0], 4, ndim - 1, q), CR_OK);
  cr_tensor *c = transposed_c ? cr_transpose(ctx, r.leaves[1], ndim - 2, ndim - 1) : r.leaves[1];
  cr_tensor *in[4] = {q[0], q[1], q[2], c};
  if (mode != UNFUSED) {
    cr_fused *f = cell_chain(mode == FUSED_BLOCKS);
    r.y = cr_fused_apply(ctx, f, mode == FUSED_BLOCKS ? (cr_tensor *[]){r.leaves[0], c} : in);
    cr_fused_free(f); /* the node keeps its own copy */
    /* one node, or (cr_set_fusion off) the chain's ops */
    assert_string_equal(cr_grad_fn(r.y), cr_fusion_enabled(ctx) ? "fused" : "sub");
  } else {
    r.y = cell_unfused(ctx, in);
  }
  assert_non_null(r.y);
  assert_int_equal(cr_backward_seed(ctx, r.y, seed), CR_OK);
  return r;
}

static void assert_same_bits(cr_ctx *cx, cr_tensor *x, cr_ctx *cy, cr_tensor *y) {
  assert_non_null(x);
  assert_non_null(y);
  assert_int_equal(cr_numel(x), cr_numel(y));
  cr_tensor *xc = cr_contiguous(cx, x), *yc = cr_contiguous(cy, y);
  assert_memory_equal(cr_data(xc), cr_data(yc),
                      (size_t)cr_numel(x) * (cr_dtype_of(x) == CR_F32 ? 4 : 8));
}

static void test_same_bits_as_unfused(void **state) {
  (void)state;
  const int64_t shapes[][3] = {{3, 37, 0}, {4, 300, 0}, {2, 3, 50}, {1, 32, 0}, {64, 300, 0}};
  const int ndims[] = {2, 2, 3, 2, 2};
  for (int threads = 1; threads <= 2; threads++)
    for (int dt = 0; dt < 2; dt++)
      for (int s = 0; s < 5; s++)
        for (int tc = 0; tc < 2; tc++) {
          cr_set_num_threads(threads);
          cr_ctx *a = cr_ctx_new(), *b = cr_ctx_new();
          const cr_dtype t = dt ? CR_F64 : CR_F32;
          cr_ctx *c = cr_ctx_new();
          assert_true(cr_set_fusion(c, false));
          assert_false(cr_fusion_enabled(c));
          run_out u = run_cell(a, t, ndims[s], shapes[s], UNFUSED, tc);
          for (int mode = FUSED_VIEWS; mode <= FUSED_BLOCKS; mode++) {
            run_out f = run_cell(b, t, ndims[s], shapes[s], mode, tc);
            run_out o = run_cell(c, t, ndims[s], shapes[s], mode, tc);
            assert_same_bits(a, u.y, b, f.y);
            assert_same_bits(a, u.y, c, o.y);
            for (int k = 0; k < 2; k++) {
              assert_same_bits(a, cr_grad(u.leaves[k]), b, cr_grad(f.leaves[k]));
              assert_same_bits(a, cr_grad(u.leaves[k]), c, cr_grad(o.leaves[k]));
            }
            cr_ctx_reset(b);
            cr_ctx_reset(c);
          }
          cr_ctx_free(a);
          cr_ctx_free(b);
          cr_ctx_free(c);
        }
  cr_set_num_threads(1);
}

/* an input given twice: y = x * x + exp(x) */
static void test_input_given_twice(void **state) {
  (void)state;
  cr_ctx *a = cr_ctx_new(), *b = cr_ctx_new();
  cr_rng *r1 = cr_rng_new(3), *r2 = cr_rng_new(3);
  const int64_t shape[2] = {5, 130};
  cr_tensor *x1 = cr_rand_uniform(a, r1, CR_F32, 2, shape, -1, 1);
  cr_tensor *x2 = cr_rand_uniform(b, r2, CR_F32, 2, shape, -1, 1);
  cr_set_requires_grad(x1, true);
  cr_set_requires_grad(x2, true);
  cr_tensor *u = cr_add(a, cr_mul(a, x1, x1), cr_exp(a, x1));
  cr_fused *f = cr_fused_new(2);
  cr_fused_op(f, "add", cr_fused_op(f, "mul", 0, 1, 0, 0), cr_fused_op(f, "exp", 0, -1, 0, 0), 0,
              0);
  cr_tensor *v = cr_fused_apply(b, f, (cr_tensor *[]){x2, x2});
  assert_same_bits(a, u, b, v);
  assert_int_equal(cr_backward_seed(a, u, cr_ones(a, CR_F32, 2, shape)), CR_OK);
  assert_int_equal(cr_backward_seed(b, v, cr_ones(b, CR_F32, 2, shape)), CR_OK);
  assert_same_bits(a, cr_grad(x1), b, cr_grad(x2));
  cr_fused_free(f);
  cr_rng_free(r1);
  cr_rng_free(r2);
  cr_ctx_free(a);
  cr_ctx_free(b);
}

/* adds feeding unary ops, the gated cells' pattern (sigmoid(x_r + h_r)):
 *   s1 = sigmoid(a + b)    of inputs
 *   s2 = tanh(s1 + c)      of an intermediate and an input
 *   s3 = sigmoid(c + c)    one slot twice (the two terms share an adjoint)
 *   s4 = log(a + 2.5)      an add_scalar, whose VJP reads its input
 *   q = a + b, square(q)   an add whose value the square's VJP reads
 *   y = s2 * s3 + s4 - square(q) * 0.25 + q      (q read twice)
 * against the same ops unfused: the same bits, forward and backward, over
 * rows longer than a chunk, both dtypes, 1 and 2 threads */
static cr_tensor *adds_unfused(cr_ctx *ctx, cr_tensor *const *in) {
  cr_tensor *s1 = cr_sigmoid(ctx, cr_add(ctx, in[0], in[1]));
  cr_tensor *s2 = cr_tanh(ctx, cr_add(ctx, s1, in[2]));
  cr_tensor *s3 = cr_sigmoid(ctx, cr_add(ctx, in[2], in[2]));
  cr_tensor *s4 = cr_log(ctx, cr_add_scalar(ctx, in[0], 2.5));
  cr_tensor *q = cr_add(ctx, in[0], in[1]);
  cr_tensor *y = cr_add(ctx, cr_mul(ctx, s2, s3), s4);
  y = cr_sub(ctx, y, cr_mul_scalar(ctx, cr_square(ctx, q), 0.25));
  return cr_add(ctx, y, q);
}

static cr_tensor *adds_fused(cr_ctx *ctx, cr_tensor *const *in) {
  cr_fused *f = cr_fused_new(3);
  const int s1 = cr_fused_op(f, "sigmoid", cr_fused_op(f, "add", 0, 1, 0, 0), -1, 0, 0);
  const int s2 = cr_fused_op(f, "tanh", cr_fused_op(f, "add", s1, 2, 0, 0), -1, 0, 0);
  const int s3 = cr_fused_op(f, "sigmoid", cr_fused_op(f, "add", 2, 2, 0, 0), -1, 0, 0);
  const int s4 = cr_fused_op(f, "log", cr_fused_op(f, "add_scalar", 0, -1, 2.5, 0), -1, 0, 0);
  const int q = cr_fused_op(f, "add", 0, 1, 0, 0);
  int y = cr_fused_op(f, "add", cr_fused_op(f, "mul", s2, s3, 0, 0), s4, 0, 0);
  const int sq = cr_fused_op(f, "mul_scalar", cr_fused_op(f, "square", q, -1, 0, 0), -1, 0.25, 0);
  cr_fused_op(f, "add", cr_fused_op(f, "sub", y, sq, 0, 0), q, 0, 0);
  assert_null(cr_fused_error(f));
  cr_tensor *out = cr_fused_apply(ctx, f, in);
  cr_fused_free(f);
  return out;
}

static void test_adds_into_unary_ops(void **state) {
  (void)state;
  const int64_t shape[2] = {5, 300};
  for (int threads = 1; threads <= 2; threads++)
    for (int dt = 0; dt < 2; dt++) {
      cr_set_num_threads(threads);
      const cr_dtype t = dt ? CR_F64 : CR_F32;
      cr_ctx *ctx[2] = {cr_ctx_new(), cr_ctx_new()};
      cr_tensor *x[2][3], *y[2] = {NULL, NULL};
      for (int m = 0; m < 2; m++) {
        cr_rng *rng = cr_rng_new(11);
        for (int k = 0; k < 3; k++) {
          x[m][k] = cr_rand_uniform(ctx[m], rng, t, 2, shape, -2, 2);
          cr_set_requires_grad(x[m][k], true);
        }
        cr_rng_free(rng);
        y[m] = m ? adds_fused(ctx[m], x[m]) : adds_unfused(ctx[m], x[m]);
        assert_non_null(y[m]);
        if (m)
          assert_string_equal(cr_grad_fn(y[m]), "fused");
        cr_rng *sr = cr_rng_new(12);
        cr_tensor *seed = cr_rand_uniform(ctx[m], sr, t, 2, shape, -1, 1);
        cr_rng_free(sr);
        assert_int_equal(cr_backward_seed(ctx[m], y[m], seed), CR_OK);
      }
      assert_same_bits(ctx[0], y[0], ctx[1], y[1]);
      for (int k = 0; k < 3; k++)
        assert_same_bits(ctx[0], cr_grad(x[0][k]), ctx[1], cr_grad(x[1][k]));
      cr_ctx_free(ctx[0]);
      cr_ctx_free(ctx[1]);
    }
  cr_set_num_threads(1);
}

/* The cell chain over column blocks of an intermediate g = 1.5 gates, whose
 * fourth block no op reads: the fused VJP writes g's gradient fresh, so
 * that block's rows must get their zeros, every one of them ([64, 37]) —
 * the same bits as the ops unfused. */
static void test_unread_block_gets_zeros(void **state) {
  (void)state;
  for (int dt = 0; dt < 2; dt++) {
    const cr_dtype t = dt ? CR_F64 : CR_F32;
    cr_ctx *ctx[2] = {cr_ctx_new(), cr_ctx_new()};
    cr_tensor *gates[2], *c[2], *y[2];
    for (int m = 0; m < 2; m++) {
      cr_rng *rng = cr_rng_new(5);
      gates[m] = cr_rand_uniform(ctx[m], rng, t, CR_SHAPE(64, 4 * 37), -2, 2);
      c[m] = cr_rand_uniform(ctx[m], rng, t, CR_SHAPE(64, 37), -1, 1);
      cr_set_requires_grad(gates[m], true);
      cr_set_requires_grad(c[m], true);
      cr_tensor *g = cr_mul_scalar(ctx[m], gates[m], 1.5), *q[4];
      if (m) {
        cr_fused *f = cell_chain(true);
        y[m] = cr_fused_apply(ctx[m], f, (cr_tensor *[]){g, c[m]});
        cr_fused_free(f);
      } else {
        assert_int_equal(cr_chunk(ctx[m], g, 4, 1, q), CR_OK);
        y[m] = cell_unfused(ctx[m], (cr_tensor *[]){q[0], q[1], q[2], c[m]});
      }
      assert_non_null(y[m]);
      cr_tensor *seed = cr_rand_uniform(ctx[m], rng, t, CR_SHAPE(64, 37), -1, 1);
      cr_rng_free(rng);
      assert_int_equal(cr_backward_seed(ctx[m], y[m], seed), CR_OK);
    }
    assert_same_bits(ctx[0], y[0], ctx[1], y[1]);
    assert_same_bits(ctx[0], cr_grad(gates[0]), ctx[1], cr_grad(gates[1]));
    assert_same_bits(ctx[0], cr_grad(c[0]), ctx[1], cr_grad(c[1]));
    cr_ctx_free(ctx[0]);
    cr_ctx_free(ctx[1]);
  }
}

/* a chain of other ops, for the gradchecks:
 *   y = maximum(exp(0.3 x) / (sigmoid(z) + 0.5), z) - square(x) */
static cr_tensor *other_chain(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  (void)n, (void)user;
  cr_fused *f = cr_fused_new(2);
  int e = cr_fused_op(f, "exp", cr_fused_op(f, "mul_scalar", 0, -1, 0.3, 0), -1, 0, 0);
  int d = cr_fused_op(
      f, "div", e, cr_fused_op(f, "add_scalar", cr_fused_op(f, "sigmoid", 1, -1, 0, 0), -1, 0.5, 0),
      0, 0);
  cr_fused_op(f, "sub", cr_fused_op(f, "maximum", d, 1, 0, 0),
              cr_fused_op(f, "square", 0, -1, 0, 0), 0, 0);
  cr_tensor *y = cr_fused_apply(ctx, f, in);
  cr_fused_free(f);
  return y;
}

static cr_tensor *cell_chain_fn(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  (void)n, (void)user;
  cr_fused *f = cell_chain(false);
  cr_tensor *y = cr_fused_apply(ctx, f, in);
  cr_fused_free(f);
  return y;
}

static cr_tensor *cell_blocks_fn(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  (void)n, (void)user;
  cr_fused *f = cell_chain(true);
  cr_tensor *y = cr_fused_apply(ctx, f, in);
  cr_fused_free(f);
  return y;
}

/* central differences in float64, eps 1e-6, |a - n| <= 1e-5 + 1e-3 |n|:
 * the first derivatives, and the second (the VJP's graph form) */
static void test_gradcheck(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(11);
  const int64_t shape[2] = {3, 7};
  cr_tensor *in[4];
  for (int k = 0; k < 4; k++)
    in[k] = cr_rand_uniform(ctx, rng, CR_F64, 2, shape, -1.5, 1.5);
  cr_gradcheck_opts o;
  cr_gradcheck_default_opts(&o);
  cr_gradcheck_report rep;
  assert_true(cr_gradcheck(cell_chain_fn, in, 4, NULL, &o, &rep));
  assert_true(rep.n_checked > 0);
  assert_true(cr_gradcheck(other_chain, in, 2, NULL, &o, &rep));
  assert_true(cr_gradgradcheck(cell_chain_fn, in, 4, NULL, &o, &rep));
  assert_true(cr_gradgradcheck(other_chain, in, 2, NULL, &o, &rep));
  /* the column-block form, its graph VJP concatenating the blocks' terms */
  cr_tensor *blocks_in[2] = {cr_rand_uniform(ctx, rng, CR_F64, 2, (int64_t[]){3, 28}, -1.5, 1.5),
                             in[3]};
  assert_true(cr_gradcheck(cell_blocks_fn, blocks_in, 2, NULL, &o, &rep));
  assert_true(cr_gradgradcheck(cell_blocks_fn, blocks_in, 2, NULL, &o, &rep));
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

static void expect_error(cr_ctx *ctx, const char *part) {
  const char *m = cr_ctx_error(ctx);
  if (!m || !strstr(m, part))
    fail_msg("expected an error with '%s', got '%s'", part, m ? m : "(none)");
  cr_ctx_clear_error(ctx);
}

static void test_errors(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  const int64_t s1[2] = {2, 3}, s2[2] = {3, 2};
  cr_tensor *x = cr_zeros(ctx, CR_F32, 2, s1), *y = cr_zeros(ctx, CR_F32, 2, s2);
  cr_tensor *z = cr_zeros(ctx, CR_F64, 2, s1);
  assert_null(cr_fused_new(0));
  assert_null(cr_fused_new(CR_FUSED_MAX_INPUTS + 1));
  cr_fused *f = cr_fused_new(2);
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x, x}));
  expect_error(ctx, "no op");
  assert_int_equal(cr_fused_op(f, "add", 0, 1, 0, 0), 2);
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x, y}));
  expect_error(ctx, "[2,3]");
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x, z}));
  expect_error(ctx, "dtype");
  assert_int_equal(cr_fused_op(f, "mul", 0, 5, 0, 0), -1);
  assert_non_null(strstr(cr_fused_error(f), "slot 5"));
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x, x}));
  expect_error(ctx, "mul (op 1 of the chain)");
  cr_fused_free(f);
  f = cr_fused_new(1);
  assert_int_equal(cr_fused_op(f, "matmul", 0, -1, 0, 0), -1);
  assert_non_null(strstr(cr_fused_error(f), "not an elementwise op"));
  cr_fused_free(f);
  f = cr_fused_new(1);
  for (int k = 0; k < CR_FUSED_MAX_OPS; k++)
    assert_int_equal(cr_fused_op(f, "neg", k, -1, 0, 0), k + 1);
  assert_int_equal(cr_fused_op(f, "neg", 0, -1, 0, 0), -1);
  assert_non_null(strstr(cr_fused_error(f), "full"));
  cr_fused_free(f);
  assert_null(cr_fused_apply(ctx, NULL, (cr_tensor *[]){x}));
  expect_error(ctx, "fused");
  /* column blocks: counts, and shapes that do not split */
  assert_null(cr_fused_new_blocks(2, (const int[]){4, 0}));
  assert_null(cr_fused_new_blocks(2, (const int[]){4, CR_FUSED_MAX_INPUTS}));
  f = cr_fused_new_blocks(2, (const int[]){2, 1});
  cr_fused_op(f, "mul", 0, 2, 0, 0);
  assert_non_null(
      cr_fused_apply(ctx, f, (cr_tensor *[]){cr_zeros(ctx, CR_F32, 2, (int64_t[]){2, 6}), x}));
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x, x}));
  expect_error(ctx, "input 0 should be [2,6] (2 column blocks of 3)");
  cr_fused_free(f);
  /* the scalars as each op checks them */
  f = cr_fused_new(1);
  cr_fused_op(f, "clamp", cr_fused_op(f, "div_scalar", 0, -1, 0.0, 0), -1, 1, 0);
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x}));
  expect_error(ctx, "div_scalar: [2,3]: division by zero");
  cr_fused_free(f);
  f = cr_fused_new(1);
  cr_fused_op(f, "clamp", 0, -1, 1, 0);
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x}));
  expect_error(ctx, "clamp: [2,3]: lo 1 > hi 0");
  cr_fused_free(f);
  /* anomaly mode runs the chain as its ops: the message names the op */
  f = cr_fused_new(1);
  cr_fused_op(f, "neg",
              cr_fused_op(f, "exp", cr_fused_op(f, "add_scalar", 0, -1, 1000, 0), -1, 0, 0), -1, 0,
              0);
  cr_set_detect_anomaly(ctx, true);
  assert_null(cr_fused_apply(ctx, f, (cr_tensor *[]){x}));
  expect_error(ctx, "forward op exp");
  cr_set_detect_anomaly(ctx, false);
  cr_tensor *big = cr_fused_apply(ctx, f, (cr_tensor *[]){x}); /* fused: -inf, no check */
  assert_non_null(big);
  assert_true(isinf(cr_get_flat(big, 0)));
  cr_fused_free(f);
  cr_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_bits_as_unfused),
      cmocka_unit_test(test_input_given_twice),
      cmocka_unit_test(test_adds_into_unary_ops),
      cmocka_unit_test(test_unread_block_gets_zeros),
      cmocka_unit_test(test_gradcheck),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
