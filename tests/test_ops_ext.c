/* The index dtype and the ops of issue #13 beyond their gradient checks:
 * values against hand-computed numbers (ties, NaN, infinities, ignored
 * targets, thresholds), the float32 kernels against the float64 ones, the
 * refusal of i64 tensors by every op on values, and the exact text of the
 * main error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"

static int setup(void **state) {
  *state = cr_ctx_new();
  return *state ? 0 : -1;
}
static int teardown(void **state) {
  cr_ctx_free(*state);
  return 0;
}

static void check_values(cr_ctx *ctx, const cr_tensor *t, int ndim, const int64_t *shape,
                         const double *want, double tol) {
  if (!t)
    fail_msg("NULL result: %s", cr_ctx_error(ctx));
  assert_int_equal(cr_ndim(t), ndim);
  for (int d = 0; d < ndim; d++)
    assert_int_equal(cr_shape(t)[d], shape[d]);
  for (int64_t i = 0; i < cr_numel(t); i++) {
    double got = cr_get_flat(t, i);
    bool same = (isnan(want[i]) && isnan(got)) || got == want[i] || fabs(got - want[i]) <= tol;
    if (!same)
      fail_msg("element %lld: got %.17g, want %.17g", (long long)i, got, want[i]);
  }
}
#define CHECK(t, shape, tol, ...)                                                                  \
  check_values(ctx, (t), shape, (const double[]){__VA_ARGS__}, (tol))

/* expr fails (NULL) with exactly the message msg; the error is cleared */
#define EXPECT_ERR(expr, msg)                                                                      \
  do {                                                                                             \
    assert_null(expr);                                                                             \
    assert_string_equal(cr_ctx_error(ctx), msg);                                                   \
    cr_ctx_clear_error(ctx);                                                                       \
  } while (0)

#define F64(shape, ...) cr_from_array(ctx, CR_F64, shape, (const double[]){__VA_ARGS__})
#define I64(shape, ...) cr_from_i64(ctx, shape, (const int64_t[]){__VA_ARGS__})

/* ---- the index dtype */

static void test_i64_tensors(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *t = I64(CR_SHAPE(2, 2), 3, -1, 0, 7);
  assert_int_equal(cr_dtype_of(t), CR_I64);
  assert_string_equal(cr_dtype_name(CR_I64), "i64");
  assert_int_equal(cr_dtype_size(CR_I64), 8);
  CHECK(t, CR_SHAPE(2, 2), 0, 3, -1, 0, 7);
  assert_true(((int64_t *)cr_data(t))[3] == 7);
  /* never requires grad */
  cr_set_requires_grad(t, true);
  assert_false(cr_requires_grad(t));
  assert_true(cr_all_finite(t));
  /* CR_FROM picks i64 for an int64_t array */
  cr_tensor *g = CR_FROM(ctx, CR_SHAPE(3), ((int64_t[]){5, 6, 7}));
  assert_int_equal(cr_dtype_of(g), CR_I64);
  /* creation by value: integers only */
  CHECK(cr_full(ctx, CR_I64, CR_SHAPE(2), 4), CR_SHAPE(2), 0, 4, 4);
  CHECK(cr_zeros(ctx, CR_I64, CR_SHAPE(2)), CR_SHAPE(2), 0, 0, 0);
  CHECK(cr_arange(ctx, CR_I64, 2, 9, 3), CR_SHAPE(3), 0, 2, 5, 8);
  EXPECT_ERR(cr_full(ctx, CR_I64, CR_SHAPE(2), 0.5),
             "full: dtype i64: value 0.5 is not an integer of at most 2^53");
  EXPECT_ERR(cr_rand_uniform(ctx, NULL, CR_I64, CR_SHAPE(2), 0, 1),
             "rand_uniform: dtype i64: this makes f32 or f64 values (index tensors come from "
             "cr_from_i64, cr_zeros or cr_arange)");
  /* set_flat truncates, never converts out of range */
  cr_set_flat(t, 0, 2.9);
  cr_set_flat(t, 1, NAN);
  cr_set_flat(t, 2, 1e300);
  assert_true(cr_get_flat(t, 0) == 2 && cr_get_flat(t, 1) == 0);
  assert_true(((int64_t *)cr_data(t))[2] == INT64_MAX);
  /* printing */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_print(f, I64(CR_SHAPE(3), 3, -1, 12));
  fclose(f);
  assert_non_null(strstr(buf, "tensor([3, -1, 12], shape=[3], dtype=i64)"));
  free(buf);
  /* persist and copy between index tensors; not into values */
  cr_tensor *p = cr_persist(ctx, g);
  assert_non_null(p);
  assert_int_equal(cr_dtype_of(p), CR_I64);
  assert_true(cr_get_flat(p, 2) == 7);
  cr_tensor *q = cr_tensor_new(ctx, CR_I64, CR_SHAPE(3));
  assert_int_equal(cr_copy_into(ctx, q, g), CR_OK);
  assert_true(cr_get_flat(q, 1) == 6);
  cr_tensor *v = cr_zeros(ctx, CR_F64, CR_SHAPE(3));
  assert_int_equal(cr_copy_into(ctx, v, g), CR_ERR_DTYPE);
  assert_string_equal(cr_ctx_error(ctx), "copy_into: dtype i64: [3] i64 into [3] f64: indices "
                                         "and values do not mix");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_fill(ctx, q, 2), CR_OK);
  assert_true(cr_get_flat(q, 0) == 2);
  cr_tensor_free(p);
  cr_tensor_free(q);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

/* Every op on values refuses an i64 input, naming itself. */
static void test_i64_refused_by_float_ops(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *t = I64(CR_SHAPE(2, 2), 1, 0, 1, 1), *x = F64(CR_SHAPE(2, 2), 1, 2, 3, 4);
  EXPECT_ERR(cr_tanh(ctx, t), "tanh: dtype i64: input 0 [2,2] holds indices; this op takes "
                              "f32 or f64 values");
  EXPECT_ERR(cr_add(ctx, x, t), "add: dtype i64: input 1 [2,2] holds indices; this op takes "
                                "f32 or f64 values");
  EXPECT_ERR(cr_matmul(ctx, t, x), "matmul: dtype i64: input 0 [2,2] holds indices; this op "
                                   "takes f32 or f64 values");
  EXPECT_ERR(cr_cast(ctx, t, CR_F64), "cast: dtype i64: input 0 [2,2] holds indices; this op "
                                      "takes f32 or f64 values");
  EXPECT_ERR(cr_gelu(ctx, t), "gelu: dtype i64: input 0 [2,2] holds indices; this op takes "
                              "f32 or f64 values");
  EXPECT_ERR(cr_where(ctx, t, x, x), "where: dtype i64: input 0 [2,2] holds indices; this op "
                                     "takes f32 or f64 values");
  /* every op family, one call at a time (a pending error would hide the next) */
#define REFUSED(expr)                                                                              \
  do {                                                                                             \
    assert_null(expr);                                                                             \
    assert_int_equal(cr_ctx_status(ctx), CR_ERR_DTYPE);                                            \
    assert_non_null(strstr(cr_ctx_error(ctx), ": dtype i64: input 0 [2,2] holds indices"));        \
    cr_ctx_clear_error(ctx);                                                                       \
  } while (0)
  REFUSED(cr_sum(ctx, t));
  REFUSED(cr_reshape(ctx, t, CR_SHAPE(4)));
  REFUSED(cr_transpose(ctx, t, 0, 1));
  REFUSED(cr_slice(ctx, t, 0, 0, 1, 1));
  REFUSED(cr_softmax(ctx, t, 0));
  REFUSED(cr_mse(ctx, t, t));
  REFUSED(cr_logsumexp(ctx, t, 0, false));
  REFUSED(cr_var(ctx, t, NULL, 0, 1, false));
  REFUSED(cr_layer_norm(ctx, t, 1, NULL, NULL, 1e-5));
  REFUSED(cr_cumsum(ctx, t, 0));
  REFUSED(cr_flip(ctx, t, (const int[]){0}, 1));
  REFUSED(cr_gt(ctx, t, t));
  REFUSED(cr_argmax(ctx, t, 0, false));
  REFUSED(cr_topk(ctx, t, 1, 0, true, NULL));
  REFUSED(cr_gather(ctx, t, 0, t));
  REFUSED(cr_detach(ctx, t));
  REFUSED(cr_contiguous(ctx, t));
  REFUSED(cr_softplus(ctx, t, 1, 20));
  REFUSED(cr_maximum(ctx, t, t));
  REFUSED(cr_expand(ctx, t, CR_SHAPE(2, 2)));
  REFUSED(cr_index_select_t(ctx, t, 0, I64(CR_SHAPE(1), 0)));
  REFUSED(cr_embedding_t(ctx, t, I64(CR_SHAPE(1), 0)));
  REFUSED(cr_cross_entropy_ex(ctx, t, I64(CR_SHAPE(2), 0, 0), -100, NULL));
  REFUSED(cr_l1_loss(ctx, t, t, CR_REDUCE_MEAN));
  REFUSED(cr_pad(ctx, t, (const int64_t[]){1, 1}, 2, 0));
#undef REFUSED
  assert_int_equal(cr_backward(ctx, t), CR_ERR_DTYPE);
  cr_ctx_clear_error(ctx);
  cr_rng *rng = cr_rng_new(1);
  assert_int_equal(cr_fill_uniform(ctx, t, rng, 0, 1), CR_ERR_DTYPE);
  cr_ctx_clear_error(ctx);
  cr_rng_free(rng);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_st_writer_add(ctx, w, "t", t), CR_ERR_DTYPE);
  cr_ctx_clear_error(ctx);
  cr_st_writer_free(w);
  /* and the index-taking ops refuse value tensors as indices */
  EXPECT_ERR(cr_gather(ctx, x, 0, x), "gather: index [2,2] f64: must be an i64 tensor "
                                      "(cr_from_i64)");
  EXPECT_ERR(cr_embedding_t(ctx, x, x), "embedding: ids [2,2] f64: must be an i64 tensor "
                                        "(cr_from_i64)");
  EXPECT_ERR(cr_cross_entropy_t(ctx, x, F64(CR_SHAPE(2), 0, 1), -100),
             "cross_entropy: targets [2] f64: must be an i64 tensor (cr_from_i64)");
}

/* ---- elementwise */

static void test_unary_values(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(4), -1, 0, 0.5, 2);
  CHECK(cr_sin(ctx, x), CR_SHAPE(4), 1e-15, sin(-1), 0, sin(0.5), sin(2));
  CHECK(cr_cos(ctx, x), CR_SHAPE(4), 1e-15, cos(-1), 1, cos(0.5), cos(2));
  CHECK(cr_erf(ctx, x), CR_SHAPE(4), 1e-15, erf(-1), 0, erf(0.5), erf(2));
  CHECK(cr_gelu(ctx, x), CR_SHAPE(4), 1e-15, -0.15865525393145707, 0, 0.34573123063700656,
        1.9544997361036416);
  /* softplus: no overflow at 1000, no underflow to 0 at -40, threshold */
  cr_tensor *s = F64(CR_SHAPE(5), 1000, -1000, -40, 0, 25);
  CHECK(cr_softplus(ctx, s, 1, INFINITY), CR_SHAPE(5), 1e-15, 1000, 0, 4.248354255291589e-18,
        log(2), 25 + log1p(exp(-25)));
  /* beta 2, threshold 3: log(1 + e^(2x)) / 2 below x = 1.5, x above */
  cr_tensor *b = F64(CR_SHAPE(2), 1.4, 1.6);
  CHECK(cr_softplus(ctx, b, 2, 3), CR_SHAPE(2), 1e-15, log1p(exp(2.8)) / 2, 1.6);
  EXPECT_ERR(cr_softplus(ctx, b, 0, 20), "softplus: [2]: beta 0 must be finite and > 0, "
                                         "threshold 20 not NaN");
  /* gradients at the threshold's sides: sigmoid(2.8), then 1 */
  cr_set_requires_grad(b, true);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_softplus(ctx, b, 2, 3))), CR_OK);
  CHECK(cr_grad(b), CR_SHAPE(2), 1e-15, 1 / (1 + exp(-2.8)), 1);
}

static void test_maximum_minimum(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = F64(CR_SHAPE(4), 1, 2, 3, NAN), *b = F64(CR_SHAPE(4), 2, 2, 1, 0);
  CHECK(cr_maximum(ctx, a, b), CR_SHAPE(4), 0, 2, 2, 3, NAN);
  CHECK(cr_minimum(ctx, a, b), CR_SHAPE(4), 0, 1, 2, 1, NAN);
  /* a tie splits the gradient */
  cr_tensor *p = F64(CR_SHAPE(3), 1, 2, 3), *q = F64(CR_SHAPE(3), 2, 2, 1);
  cr_set_requires_grad(p, true);
  cr_set_requires_grad(q, true);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_maximum(ctx, p, q))), CR_OK);
  CHECK(cr_grad(p), CR_SHAPE(3), 0, 0, 0.5, 1);
  CHECK(cr_grad(q), CR_SHAPE(3), 0, 1, 0.5, 0);
  /* broadcast */
  CHECK(cr_minimum(ctx, F64(CR_SHAPE(2, 1), 0, 5), F64(CR_SHAPE(3), 1, 4, 7)), CR_SHAPE(2, 3), 0, 0,
        0, 0, 1, 4, 5);
}

static void test_compare_where(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = F64(CR_SHAPE(2, 2), 1, 2, 3, 4), *b = F64(CR_SHAPE(2), 2, 3);
  cr_set_requires_grad(a, true);
  cr_tensor *m = cr_gt(ctx, a, b);
  CHECK(m, CR_SHAPE(2, 2), 0, 0, 0, 1, 1);
  assert_false(cr_requires_grad(m)); /* a constant */
  assert_null(cr_grad_fn(m));
  CHECK(cr_ge(ctx, a, b), CR_SHAPE(2, 2), 0, 0, 0, 1, 1);
  CHECK(cr_lt(ctx, a, b), CR_SHAPE(2, 2), 0, 1, 1, 0, 0);
  CHECK(cr_le(ctx, a, b), CR_SHAPE(2, 2), 0, 1, 1, 0, 0);
  CHECK(cr_eq(ctx, a, F64(CR_SHAPE(1), 2)), CR_SHAPE(2, 2), 0, 0, 1, 0, 0);
  cr_tensor *w = cr_where(ctx, m, a, F64(CR_SHAPE(1), -1));
  CHECK(w, CR_SHAPE(2, 2), 0, -1, -1, 3, 4);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, w)), CR_OK);
  CHECK(cr_grad(a), CR_SHAPE(2, 2), 0, 0, 0, 1, 1);
  /* masked_fill with -inf, as for attention */
  cr_tensor *f = cr_masked_fill(ctx, a, F64(CR_SHAPE(2), 0, 1), -INFINITY);
  CHECK(f, CR_SHAPE(2, 2), 0, 1, -INFINITY, 3, -INFINITY);
  EXPECT_ERR(cr_masked_fill(ctx, b, a, 0), "masked_fill: x [2], mask [2,2]: the mask must "
                                           "broadcast to x's shape");
  EXPECT_ERR(cr_where(ctx, F64(CR_SHAPE(3), 1, 0, 1), a, b),
             "where: mask [3], a [2,2], b [2]: dim -1 does not broadcast (3 vs 2)");
}

/* ---- reductions and order */

static void test_logsumexp_var(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(3, 2), 1000, 1000, -INFINITY, -INFINITY, INFINITY, 0);
  CHECK(cr_logsumexp(ctx, x, 1, false), CR_SHAPE(3), 1e-12, 1000 + log(2), -INFINITY, INFINITY);
  CHECK(cr_logsumexp(ctx, F64(CR_SHAPE(2), 0, 0), 0, true), CR_SHAPE(1), 1e-15, log(2));
  cr_tensor *v = F64(CR_SHAPE(2, 3), 1, 2, 3, 1e9 + 1, 1e9 + 2, 1e9 + 3);
  CHECK(cr_var(ctx, v, (const int[]){1}, 1, 1, false), CR_SHAPE(2), 0, 1, 1);
  CHECK(cr_var(ctx, v, (const int[]){-1}, 1, 0, true), CR_SHAPE(2, 1), 1e-15, 2.0 / 3, 2.0 / 3);
  CHECK(cr_std(ctx, F64(CR_SHAPE(4), 1, 1, 3, 3), NULL, 0, 1, false), CR_SHAPE(1), 1e-15,
        sqrt(4.0 / 3));
  CHECK(cr_sum_axes(ctx, v, NULL, 0, false), CR_SHAPE(1), 0, 3e9 + 12);
  CHECK(cr_mean_axes(ctx, F64(CR_SHAPE(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8), (const int[]){0, 2}, 2,
                     false),
        CR_SHAPE(2), 0, 3.5, 5.5);
  EXPECT_ERR(cr_var(ctx, F64(CR_SHAPE(1, 2), 1, 2), (const int[]){0}, 1, 1, false),
             "var: [1,2]: correction 1 with 1 values per result leaves no degrees of freedom "
             "(need 0 <= correction < N)");
  EXPECT_ERR(cr_sum_axes(ctx, v, (const int[]){1, -1}, 2, false),
             "sum_axes: [2,3]: axis 1 given twice");
}

static void test_arg_topk_min(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(2, 4), 3, 1, 3, 0, 2, NAN, 5, 5);
  cr_tensor *am = cr_argmax(ctx, x, 1, false);
  assert_int_equal(cr_dtype_of(am), CR_I64);
  CHECK(am, CR_SHAPE(2), 0, 0, 1); /* ties: first; NaN: found */
  CHECK(cr_argmin(ctx, x, -1, true), CR_SHAPE(2, 1), 0, 3, 1);
  CHECK(cr_argmax(ctx, F64(CR_SHAPE(3), 1, 9, 9), 0, false), CR_SHAPE(1), 0, 1);
  CHECK(cr_min_axis(ctx, F64(CR_SHAPE(2, 2), 3, 1, 0, 4), 0, false), CR_SHAPE(2), 0, 0, 1);
  cr_tensor *idx;
  cr_tensor *y = F64(CR_SHAPE(2, 4), 3, 1, 4, 1, 0, 9, 9, 2);
  cr_set_requires_grad(y, true);
  cr_tensor *top = cr_topk(ctx, y, 3, 1, true, &idx);
  CHECK(top, CR_SHAPE(2, 3), 0, 4, 3, 1, 9, 9, 2);
  CHECK(idx, CR_SHAPE(2, 3), 0, 2, 0, 1, 1, 2, 3);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, top)), CR_OK);
  CHECK(cr_grad(y), CR_SHAPE(2, 4), 0, 1, 1, 1, 0, 0, 1, 1, 1);
  CHECK(cr_topk(ctx, F64(CR_SHAPE(4, 1), 2, NAN, -1, 0), 2, 0, false, &idx), CR_SHAPE(2, 1), 0, -1,
        0);
  CHECK(idx, CR_SHAPE(2, 1), 0, 2, 3);
  CHECK(cr_topk(ctx, F64(CR_SHAPE(3), 2, NAN, -1), 1, 0, true, &idx), CR_SHAPE(1), 0, NAN);
  EXPECT_ERR(cr_topk(ctx, y, 5, 1, true, &idx), "topk: [2,4] axis 1: k 5 out of range [1,4]");
  assert_null(idx);
}

/* ---- index and shape */

static void test_gather_scatter(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(2, 3), 1, 2, 3, 4, 5, 6);
  cr_tensor *idx = I64(CR_SHAPE(2, 2), 2, 2, 0, 1);
  cr_set_requires_grad(x, true);
  cr_tensor *g = cr_gather(ctx, x, 1, idx);
  CHECK(g, CR_SHAPE(2, 2), 0, 3, 3, 4, 5);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, g)), CR_OK);
  CHECK(cr_grad(x), CR_SHAPE(2, 3), 0, 0, 0, 2, 1, 1, 0);
  cr_tensor *s = cr_scatter_add(ctx, cr_zeros(ctx, CR_F64, CR_SHAPE(2, 3)), 1, idx,
                                F64(CR_SHAPE(2, 2), 1, 10, 100, 1000));
  CHECK(s, CR_SHAPE(2, 3), 0, 0, 0, 11, 100, 1000, 0);
  EXPECT_ERR(cr_gather(ctx, x, 1, I64(CR_SHAPE(2, 1), 0, 3)),
             "gather: [2,3] axis 1: index 3 at position 1 is out of range [0,3)");
  EXPECT_ERR(cr_gather(ctx, x, 0, I64(CR_SHAPE(1, 4), 0, 0, 0, 0)),
             "gather: [2,3] axis 0, index [1,4]: the index needs x's 2 dims, none larger than "
             "x's off the axis");
  EXPECT_ERR(cr_scatter_add(ctx, x, 1, idx, x), "scatter_add: [2,3] axis 1, index [2,2], src "
                                                "[2,3]: src must have the index's shape");
  /* index_select_t and embedding_t are the host-array ops */
  CHECK(cr_index_select_t(ctx, x, 1, I64(CR_SHAPE(2), 2, 0)), CR_SHAPE(2, 2), 0, 3, 1, 6, 4);
  CHECK(cr_embedding_t(ctx, x, I64(CR_SHAPE(1, 1), 1)), CR_SHAPE(1, 1, 3), 0, 4, 5, 6);
}

static void test_shape_ops(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(2, 3), 1, 2, 3, 4, 5, 6);
  CHECK(cr_flip(ctx, x, (const int[]){-1}, 1), CR_SHAPE(2, 3), 0, 3, 2, 1, 6, 5, 4);
  CHECK(cr_flip(ctx, cr_transpose(ctx, x, 0, 1), (const int[]){0, 1}, 2), CR_SHAPE(3, 2), 0, 6, 3,
        5, 2, 4, 1);
  CHECK(cr_cumsum(ctx, x, 1), CR_SHAPE(2, 3), 0, 1, 3, 6, 4, 9, 15);
  CHECK(cr_cumsum(ctx, x, 0), CR_SHAPE(2, 3), 0, 1, 2, 3, 5, 7, 9);
  CHECK(cr_pad(ctx, x, (const int64_t[]){1, 0, 0, 1}, 4, -1), CR_SHAPE(3, 4), 0, -1, 1, 2, 3, -1, 4,
        5, 6, -1, -1, -1, -1);
  CHECK(cr_pad(ctx, x, (const int64_t[]){-1, 1}, 2, 0), CR_SHAPE(2, 3), 0, 2, 3, 0, 5, 6, 0);
  CHECK(cr_repeat(ctx, F64(CR_SHAPE(2), 1, 2), (const int64_t[]){2, 2}, 2), CR_SHAPE(2, 4), 0, 1, 2,
        1, 2, 1, 2, 1, 2);
  CHECK(cr_select(ctx, x, 1, -1), CR_SHAPE(2), 0, 3, 6);
  CHECK(cr_select(ctx, F64(CR_SHAPE(3), 7, 8, 9), 0, 1), CR_SHAPE(1), 0, 8);
  CHECK(cr_unsqueeze(ctx, x, 1), CR_SHAPE(2, 1, 3), 0, 1, 2, 3, 4, 5, 6);
  CHECK(cr_squeeze(ctx, cr_unsqueeze(ctx, x, -1), 2), CR_SHAPE(2, 3), 0, 1, 2, 3, 4, 5, 6);
  CHECK(cr_broadcast_to(ctx, F64(CR_SHAPE(2, 1), 1, 2), CR_SHAPE(2, 2)), CR_SHAPE(2, 2), 0, 1, 1, 2,
        2);
  EXPECT_ERR(cr_squeeze(ctx, x, 1), "squeeze: [2,3] axis 1: size 3, not 1");
  EXPECT_ERR(cr_pad(ctx, x, (const int64_t[]){-2, -1}, 2, 0),
             "pad: [2,3]: pads -2, -1 of axis 1 leave no elements or overflow");
  EXPECT_ERR(cr_flip(ctx, x, (const int[]){0, -2}, 2), "flip: [2,3]: axis 0 given twice");
  EXPECT_ERR(cr_select(ctx, x, 0, 2), "select: [2,3] axis 0: index 2 out of range [-2,2)");
}

/* ---- layer_norm */

static void test_layer_norm(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(2, 2), 1, 3, 10, 10);
  /* rows (1, 3): mean 2, var 1 -> (-1, 1) / sqrt(1 + eps); constant row -> 0 */
  const double s = 1 / sqrt(1 + 1e-5);
  CHECK(cr_layer_norm(ctx, x, 1, NULL, NULL, 1e-5), CR_SHAPE(2, 2), 1e-15, -s, s, 0, 0);
  cr_tensor *w = F64(CR_SHAPE(2), 2, 3), *b = F64(CR_SHAPE(2), 0.5, -0.5);
  CHECK(cr_layer_norm(ctx, x, 1, w, b, 1e-5), CR_SHAPE(2, 2), 1e-15, 0.5 - 2 * s, 3 * s - 0.5, 0.5,
        -0.5);
  EXPECT_ERR(cr_layer_norm(ctx, x, 2, w, NULL, 1e-5),
             "layer_norm: [2,2], weight [2]: must have the normalized shape [2,2]");
  EXPECT_ERR(cr_layer_norm(ctx, x, 3, NULL, NULL, 1e-5),
             "layer_norm: [2,2]: normalizing 3 dims: need 1 to 2");
}

/* ---- losses */

static void test_class_losses(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(2, 2, 3), 1, 2, 3, 0, 0, 0, 5, 1, 1, 2, 2, 2);
  cr_tensor *t = I64(CR_SHAPE(2, 2), 2, -100, 0, 1);
  const double l0 = log(exp(1) + exp(2) + exp(3)) - 3, l2 = log(exp(5) + 2 * exp(1)) - 5,
               l3 = log(3);
  cr_class_loss_opts none = {.reduction = CR_REDUCE_NONE};
  CHECK(cr_cross_entropy_ex(ctx, x, t, -100, &none), CR_SHAPE(2, 2), 1e-15, l0, 0, l2, l3);
  CHECK(cr_cross_entropy_ex(ctx, x, t, -100, NULL), CR_SHAPE(1), 1e-15, (l0 + l2 + l3) / 3);
  /* weighted mean divides by the weights of the counted targets */
  cr_class_loss_opts wm = {.weight = F64(CR_SHAPE(3), 1, 2, 4)};
  CHECK(cr_cross_entropy_ex(ctx, x, t, -100, &wm), CR_SHAPE(1), 1e-15,
        (4 * l0 + 1 * l2 + 2 * l3) / 7);
  /* the 2-d tensor form agrees with the host-array cr_cross_entropy */
  cr_tensor *x2 = F64(CR_SHAPE(2, 3), 1, 2, 3, 5, 1, 1);
  CHECK(cr_cross_entropy_t(ctx, x2, I64(CR_SHAPE(2), 2, 0), -100), CR_SHAPE(1), 1e-15,
        (l0 + l2) / 2);
  /* every target ignored: 0 (PyTorch: NaN) */
  CHECK(cr_cross_entropy_ex(ctx, x, I64(CR_SHAPE(2, 2), -1, -1, -1, -1), -1, NULL), CR_SHAPE(1), 0,
        0);
  cr_class_loss_opts sum = {.reduction = CR_REDUCE_SUM};
  CHECK(cr_nll_loss(ctx, x2, I64(CR_SHAPE(2), 2, 1), -100, &sum), CR_SHAPE(1), 0, -4);
  EXPECT_ERR(cr_cross_entropy_ex(ctx, x, I64(CR_SHAPE(2, 2), 0, 3, 0, 0), -100, NULL),
             "cross_entropy: [2,2,3]: target 3 at position 1 is out of range [0,3)");
  EXPECT_ERR(cr_cross_entropy_ex(ctx, x, I64(CR_SHAPE(4), 0, 0, 0, 0), -100, NULL),
             "cross_entropy: scores [2,2,3], targets [4]: the targets must be [2,2] (the "
             "scores without the class axis 2)");
  cr_class_loss_opts smooth = {.label_smoothing = 0.1};
  EXPECT_ERR(cr_nll_loss(ctx, x, t, -100, &smooth),
             "nll_loss: [2,2,3]: label_smoothing is cross-entropy's option");
  cr_class_loss_opts bm = {.reduction = CR_REDUCE_BATCHMEAN};
  EXPECT_ERR(cr_cross_entropy_ex(ctx, x, t, -100, &bm), "cross_entropy: [2,2,3]: reduction 3: "
                                                        "use CR_REDUCE_MEAN, _SUM or _NONE "
                                                        "(batchmean is kl_div's)");
}

static void test_pointwise_losses(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = F64(CR_SHAPE(4), 0, 0.5, 3, -2), *y = F64(CR_SHAPE(4), 0, 0, 0, 0);
  CHECK(cr_l1_loss(ctx, x, y, CR_REDUCE_SUM), CR_SHAPE(1), 0, 5.5);
  CHECK(cr_smooth_l1_loss(ctx, x, y, 1, CR_REDUCE_NONE), CR_SHAPE(4), 0, 0, 0.125, 2.5, 1.5);
  CHECK(cr_huber_loss(ctx, x, y, 1, CR_REDUCE_NONE), CR_SHAPE(4), 0, 0, 0.125, 2.5, 1.5);
  CHECK(cr_huber_loss(ctx, x, y, 2, CR_REDUCE_NONE), CR_SHAPE(4), 0, 0, 0.125, 4, 2);
  CHECK(cr_mse_loss(ctx, x, y, CR_REDUCE_MEAN), CR_SHAPE(1), 1e-15, 13.25 / 4);
  /* bce at huge logits: finite, exact */
  cr_tensor *z = F64(CR_SHAPE(4), 1000, -1000, 1000, 0), *t = F64(CR_SHAPE(4), 1, 0, 0, 1);
  CHECK(cr_bce_with_logits(ctx, z, t, &(cr_bce_opts){CR_REDUCE_NONE, NULL, NULL}), CR_SHAPE(4),
        1e-15, 0, 0, 1000, log(2));
  cr_bce_opts pw = {CR_REDUCE_NONE, NULL, F64(CR_SHAPE(1), 3)};
  CHECK(cr_bce_with_logits(ctx, F64(CR_SHAPE(2), 0, 0), F64(CR_SHAPE(2), 1, 0), &pw), CR_SHAPE(2),
        1e-15, 3 * log(2), log(2));
  /* kl: 0 log 0 = 0 */
  cr_tensor *lq = F64(CR_SHAPE(1, 2), log(0.5), log(0.5)), *p = F64(CR_SHAPE(1, 2), 1, 0);
  CHECK(cr_kl_div(ctx, lq, p, false, CR_REDUCE_BATCHMEAN), CR_SHAPE(1), 1e-15, log(2));
  EXPECT_ERR(cr_l1_loss(ctx, x, F64(CR_SHAPE(1), 0), CR_REDUCE_MEAN),
             "l1_loss: input [4], target [1]: shapes differ (the losses do not broadcast)");
  EXPECT_ERR(cr_l1_loss(ctx, x, y, CR_REDUCE_BATCHMEAN),
             "l1_loss: [4]: reduction 3: use CR_REDUCE_MEAN, _SUM or _NONE");
  EXPECT_ERR(cr_huber_loss(ctx, x, y, 0, CR_REDUCE_MEAN),
             "huber_loss: [4]: delta 0 must be finite and > 0");
}

/* ---- the float32 kernels agree with the float64 ones (values and
 * gradients, through a random seed) */

typedef cr_tensor *(*op_fn)(cr_ctx *ctx, cr_tensor *x, cr_tensor *w);
static cr_tensor *o_gelu(cr_ctx *c, cr_tensor *x, cr_tensor *w) { return (void)w, cr_gelu(c, x); }
static cr_tensor *o_erf(cr_ctx *c, cr_tensor *x, cr_tensor *w) { return (void)w, cr_erf(c, x); }
static cr_tensor *o_sin(cr_ctx *c, cr_tensor *x, cr_tensor *w) { return (void)w, cr_sin(c, x); }
static cr_tensor *o_softplus(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  return (void)w, cr_softplus(c, cr_mul_scalar(c, x, 8), 1, 20);
}
static cr_tensor *o_max(cr_ctx *c, cr_tensor *x, cr_tensor *w) { return cr_maximum(c, x, w); }
static cr_tensor *o_where(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  return cr_where(c, cr_gt(c, x, w), x, w);
}
static cr_tensor *o_lse(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  return (void)w, cr_logsumexp(c, x, 1, false);
}
static cr_tensor *o_var(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  return (void)w, cr_var(c, x, (const int[]){0, 2}, 2, 1, true);
}
static cr_tensor *o_ln(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  return cr_layer_norm(c, x, 2, w, w, 1e-5);
}
static cr_tensor *o_cumsum(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  return (void)w, cr_cumsum(c, cr_transpose(c, x, 0, 2), 1);
}
static cr_tensor *o_flip(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  return cr_mul(c, cr_flip(c, x, (const int[]){0, 2}, 2), w);
}
static cr_tensor *o_gather(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  (void)w;
  return cr_gather(c, x, 1,
                   cr_from_i64(c, CR_SHAPE(2, 2, 4),
                               (const int64_t[]){0, 2, 1, 1, 2, 2, 0, 1, 1, 0, 0, 2, 2, 1, 1, 0}));
}
static cr_tensor *o_scatter(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  (void)w;
  cr_tensor *idx = cr_from_i64(c, CR_SHAPE(2, 1, 4), (const int64_t[]){0, 2, 1, 1, 2, 2, 0, 1});
  return cr_scatter_add(c, x, 1, idx, cr_slice(c, x, 1, 0, 1, 1));
}
static cr_tensor *o_ce(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  (void)w;
  cr_class_loss_opts o = {CR_REDUCE_NONE, NULL, 0.1, false};
  return cr_cross_entropy_ex(
      c, x, cr_from_i64(c, CR_SHAPE(2, 3), (const int64_t[]){0, 3, -100, 1, 2, 3}), -100, &o);
}
static cr_tensor *o_nll(cr_ctx *c, cr_tensor *x, cr_tensor *w) {
  (void)w;
  cr_class_loss_opts o = {CR_REDUCE_SUM, NULL, 0, true};
  return cr_nll_loss(
      c, x, cr_from_i64(c, CR_SHAPE(2, 4), (const int64_t[]){0, 1, 2, 0, 1, 1, 2, 0}), -100, &o);
}

static void test_f32_kernels_match_f64(void **state) {
  (void)state;
  static const struct {
    const char *name;
    op_fn f;
  } ops[] = {{"gelu", o_gelu},
             {"erf", o_erf},
             {"sin", o_sin},
             {"softplus", o_softplus},
             {"maximum", o_max},
             {"where", o_where},
             {"logsumexp", o_lse},
             {"var", o_var},
             {"layer_norm", o_ln},
             {"cumsum", o_cumsum},
             {"flip", o_flip},
             {"gather", o_gather},
             {"scatter_add", o_scatter},
             {"cross_entropy_ex", o_ce},
             {"nll_loss", o_nll}};
  cr_rng *rng = cr_rng_new(5);
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    cr_ctx *ctx = cr_ctx_new();
    cr_tensor *x64 = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(2, 3, 4), 0, 1);
    cr_tensor *w64 = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(3, 4), 0, 1);
    cr_tensor *x32 = cr_cast(ctx, x64, CR_F32), *w32 = cr_cast(ctx, w64, CR_F32);
    cr_tensor *in[4] = {x64, w64, x32, w32};
    for (int i = 0; i < 4; i++)
      cr_set_requires_grad(in[i], true);
    cr_tensor *y64 = ops[k].f(ctx, x64, w64), *y32 = ops[k].f(ctx, x32, w32);
    if (!y64 || !y32)
      fail_msg("%s: %s", ops[k].name, cr_ctx_error(ctx));
    assert_int_equal(cr_dtype_of(y32), CR_F32);
    cr_tensor *s = cr_rand_normal(ctx, rng, CR_F64, cr_ndim(y64), cr_shape(y64), 0, 1);
    assert_int_equal(cr_backward_seed(ctx, y64, s), CR_OK);
    assert_int_equal(cr_backward_seed(ctx, y32, cr_cast(ctx, s, CR_F32)), CR_OK);
    double err = 0;
    for (int64_t i = 0; i < cr_numel(y64); i++) {
      double a = cr_get_flat(y64, i), b = cr_get_flat(y32, i);
      err = fmax(err, fabs(a - b) / (1 + fabs(a)));
    }
    for (int i = 0; i < 2; i++) {
      cr_tensor *g64 = cr_grad(in[i]), *g32 = cr_grad(in[i + 2]);
      for (int64_t e = 0; g64 && e < cr_numel(g64); e++) {
        double a = cr_get_flat(g64, e), b = cr_get_flat(g32, e);
        err = fmax(err, fabs(a - b) / (1 + fabs(a)));
      }
    }
    if (!(err < 2e-5))
      fail_msg("%s: f32 differs from f64 by %.3g", ops[k].name, err);
    cr_ctx_free(ctx);
  }
  cr_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_i64_tensors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_i64_refused_by_float_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unary_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_maximum_minimum, setup, teardown),
      cmocka_unit_test_setup_teardown(test_compare_where, setup, teardown),
      cmocka_unit_test_setup_teardown(test_logsumexp_var, setup, teardown),
      cmocka_unit_test_setup_teardown(test_arg_topk_min, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gather_scatter, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shape_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(test_layer_norm, setup, teardown),
      cmocka_unit_test_setup_teardown(test_class_losses, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pointwise_losses, setup, teardown),
      cmocka_unit_test(test_f32_kernels_match_f64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
