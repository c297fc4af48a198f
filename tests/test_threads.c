/* test_threads.c — products and recurrent layers split across threads
 * give the same bits as one thread, and the pool behind them runs every
 * task once, nested or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "internal.h"
#include "mgu.h"

/* ---- the pool */

typedef struct {
  int64_t *slot;
  int nested;
} tally;

static void mark(void *arg, int64_t i) { ((tally *)arg)->slot[i]++; }

static void mark_and_nest(void *arg, int64_t i) {
  tally *t = arg;
  t->slot[i]++;
  if (i == 3) { /* a job asked for inside a task runs on that thread */
    int64_t inner[5] = {0};
    tally in = {inner, 0};
    cr__parallel_for(5, mark, &in);
    for (int k = 0; k < 5; k++)
      t->nested += (int)inner[k];
  }
}

static void test_pool_runs_every_task_once(void **state) {
  (void)state;
  for (int threads = 1; threads <= 3; threads++) {
    cr_set_num_threads(threads);
    int64_t slot[97];
    for (int rep = 0; rep < 300; rep++) {
      memset(slot, 0, sizeof slot);
      tally t = {slot, 0};
      const int n = 1 + rep % 97;
      cr__parallel_for(n, rep % 2 ? mark_and_nest : mark, &t);
      for (int i = 0; i < 97; i++)
        assert_int_equal(slot[i], i < n ? 1 : 0);
      if (rep % 2 && n > 3)
        assert_int_equal(t.nested, 5);
    }
  }
  cr_set_num_threads(1);
}

/* ---- products: 1, 2 and 3 threads, memcmp */

static void test_products_same_bits_on_any_threads(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(4);
  /* BLIS-sized, few-row (skinny), and both transposes, f32 and f64; the
   * last two have too few 64-column groups to share (one, and two), so the
   * packed kernel splits their rows across threads */
  const int64_t sizes[][3] = {
      {150, 100, 210}, {24, 256, 520}, {130, 80, 300}, {120, 600, 64}, {100, 500, 100}};
  for (int dt = 0; dt < 2; dt++)
    for (int s = 0; s < 5; s++)
      for (int tr = 0; tr < 4; tr++) {
        const cr_dtype d = dt ? CR_F64 : CR_F32;
        const int64_t M = sizes[s][0], K = sizes[s][1], N = sizes[s][2];
        const int64_t sa[2] = {tr & 1 ? K : M, tr & 1 ? M : K};
        const int64_t sb[2] = {tr & 2 ? N : K, tr & 2 ? K : N};
        cr_tensor *a = cr_rand_normal(ctx, rng, d, 2, sa, 0, 1);
        cr_tensor *b = cr_rand_normal(ctx, rng, d, 2, sb, 0, 1);
        if (tr & 1)
          a = cr_transpose(ctx, a, 0, 1);
        if (tr & 2)
          b = cr_transpose(ctx, b, 0, 1);
        cr_tensor *ref = NULL;
        for (int threads = 1; threads <= 3; threads++) {
          cr_set_num_threads(threads);
          cr_tensor *c = cr_matmul(ctx, a, b);
          assert_non_null(c);
          if (!ref)
            ref = c;
          else
            assert_memory_equal(cr_data_const(c), cr_data_const(ref),
                                (size_t)(M * N) * cr_dtype_size(d));
        }
        cr_set_num_threads(1);
        cr_ctx_reset(ctx);
      }
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- elementwise maps: split in row ranges (strided views), in column
 * ranges (one long contiguous row), and not split where a gradient sums
 * over broadcast rows */

static void maps_once(cr_ctx *ctx, cr_tensor *x, cr_tensor *b, cr_tensor *seed, float *out) {
  cr_zero_grad(x);
  cr_zero_grad(b);
  cr_tensor *xt = cr_transpose(ctx, x, 0, 1);               /* [300, 64], strided */
  cr_tensor *cols = cr_slice(ctx, x, 1, 7, 290, 1);         /* [64, 283], row stride 300 */
  cr_tensor *flat = cr_reshape(ctx, x, CR_SHAPE(64 * 300)); /* one row of 19200 */
  cr_tensor *y = cr_mul(ctx, cr_sigmoid(ctx, x), b);        /* b [300] over the rows */
  cr_tensor *z = cr_tanh(ctx, cr_transpose(ctx, cr_exp(ctx, cr_mul_scalar(ctx, xt, 0.1)), 0, 1));
  cr_tensor *f = cr_reshape(ctx, cr_square(ctx, flat), CR_SHAPE(64, 300));
  cr_tensor *s = cr_add(ctx, cr_add(ctx, cr_sub(ctx, y, z), f), x);
  cr_tensor *c = cr_div(ctx, cr_sin(ctx, cols), cr_add_scalar(ctx, cr_square(ctx, cols), 1.0));
  cr_tensor *L = cr_add(ctx, cr_sum(ctx, cr_mul(ctx, s, seed)), cr_sum(ctx, c));
  assert_non_null(L);
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  memcpy(out, cr_data_const(s), 64 * 300 * sizeof(float));
  memcpy(out + 64 * 300, cr_data_const(cr_grad(x)), 64 * 300 * sizeof(float));
  memcpy(out + 2 * 64 * 300, cr_data_const(cr_grad(b)), 300 * sizeof(float));
  cr_ctx_reset(ctx);
}

static void test_maps_same_bits_on_two_threads(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(5);
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(64, 300), 0, 1));
  cr_tensor *b = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(300), 0, 1));
  cr_tensor *seed = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(64, 300), 0, 1));
  cr_set_requires_grad(x, true);
  cr_set_requires_grad(b, true);
  const size_t n = 2 * 64 * 300 + 300;
  float *one = malloc(n * sizeof *one), *two = malloc(n * sizeof *two);
  assert_true(one && two);
  cr_set_num_threads(1);
  maps_once(ctx, x, b, seed, one);
  cr_set_num_threads(2);
  maps_once(ctx, x, b, seed, two);
  cr_set_num_threads(1);
  assert_memory_equal(one, two, n * sizeof *one);
  /* and the values are right: s = sigmoid(x) b - tanh(exp(0.1 x)) + x^2 + x */
  for (int64_t i = 0; i < 64 * 300; i += 97) {
    const double v = cr_get_flat(x, i), w = cr_get_flat(b, i % 300);
    const double want = w / (1 + exp(-v)) - tanh(exp(0.1 * v)) + v * v + v;
    assert_true(fabs(one[i] - want) <= 1e-5 * (1 + fabs(want)));
  }
  free(one);
  free(two);
  cr_tensor_free(x);
  cr_tensor_free(b);
  cr_tensor_free(seed);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- memory-bound passes cut across threads: zeroing, copying and
 * packing rows give what one thread gives, on sizes around the cuts and
 * unaligned ends, and touch nothing outside their range */

static void test_memory_passes_same_on_any_threads(void **state) {
  (void)state;
  const size_t sizes[] = {1, 4, 65532, 65536, 65548, 1048612, 3 * 1048576 + 20};
  const size_t pad = 64, most = 3 * 1048576 + 20;
  unsigned char *src = malloc(most + 2 * pad), *dst = malloc(most + 2 * pad);
  assert_true(src && dst);
  for (size_t i = 0; i < most + 2 * pad; i++)
    src[i] = (unsigned char)(i * 2654435761u >> 13);
  for (int threads = 1; threads <= 3; threads++) {
    cr_set_num_threads(threads);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
      for (size_t off = 0; off < 2; off++) { /* and a start 4 bytes past a line */
        const size_t n = sizes[s], at = pad + 4 * off;
        memset(dst, 0xab, most + 2 * pad);
        cr__par_copy(dst + at, src + at, n);
        assert_memory_equal(dst + at, src + at, n);
        cr__par_zero(dst + at, n);
        for (size_t i = 0; i < most + 2 * pad; i++)
          if (dst[i] != (i >= at && i < at + n ? 0 : 0xab))
            fail_msg("threads %d, %zu bytes at %zu: byte %zu is %d", threads, n, at, i, dst[i]);
      }
  }
  /* rows packed into panels: 200 rows of 520 (parts of rows), from rows
   * and from a transposed source, against one thread */
  enum { R = 200, N = 520, KP = 300 };
  float *b = malloc(sizeof(float) * R * N);
  const size_t floats = cr__skinny_packed_floats(KP, N);
  float *one = calloc(floats, sizeof *one), *many = calloc(floats, sizeof *many);
  assert_true(b && one && many);
  for (int i = 0; i < R * N; i++)
    b[i] = (float)(i % 977) * 0.25f - 7.0f;
  for (int trans = 0; trans < 2; trans++) { /* op(B)[p, j] = b[p rs + j cs], [R, N] */
    const int64_t rs = trans ? 1 : N, cs = trans ? R : 1, n = N, rows = R;
    cr_set_num_threads(1);
    memset(one, 0, floats * sizeof *one);
    cr__skinny_pack_rows(KP, 37, rows, n, b, rs, cs, one);
    cr_set_num_threads(2);
    memset(many, 0, floats * sizeof *many);
    cr__skinny_pack_rows(KP, 37, rows, n, b, rs, cs, many);
    assert_memory_equal(one, many, floats * sizeof *one);
  }
  cr_set_num_threads(1);
  free(src), free(dst), free(b), free(one), free(many);
}

/* ---- a layer's forward and backward (on two threads, and unfused) */

static void layer_same_bits(const cr_cell_def *cell, int64_t every) {
  enum { T = 5, B = 32, I = 64, H = 256 }; /* [32, 256] gates: maps on two threads */
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(9);
  cr_rnn_config cfg = {cell, I, H, 2, 0.0, false, CR_F32};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  assert_non_null(rnn);
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(T, B, I), 0, 1));
  cr_tensor *w = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(T, B, H), 0, 1));
  cr_set_requires_grad(x, true);
  const int np = cr_rnn_num_params(rnn);
  float *ref[32] = {NULL};
  /* 1 thread; 2 threads; 1 thread with the cells' fused chains run as
   * their ops (cr_set_fusion): the same bits */
  for (int run = 0; run < 3; run++) {
    const int threads = run == 1 ? 2 : 1;
    cr_set_num_threads(threads);
    cr_set_fusion(ctx, run != 2);
    for (int i = 0; i < np; i++)
      cr_zero_grad(cr_rnn_param(rnn, i));
    cr_zero_grad(x);
    cr_rnn_forward_opts o = {.checkpoint_every = every};
    cr_tensor *out = NULL;
    assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_OK);
    assert_int_equal(cr_backward_seed(ctx, out, w), CR_OK);
    for (int i = 0; i <= np; i++) {
      const cr_tensor *g = cr_grad(i < np ? cr_rnn_param(rnn, i) : x);
      size_t bytes = (size_t)cr_numel(g) * sizeof(float);
      if (run == 0) {
        ref[i] = malloc(bytes);
        memcpy(ref[i], cr_data_const(g), bytes);
      } else {
        assert_memory_equal(cr_data_const(g), ref[i], bytes);
      }
    }
    cr_ctx_reset(ctx);
  }
  cr_set_num_threads(1);
  for (int i = 0; i <= np; i++)
    free(ref[i]);
  cr_tensor_free(x);
  cr_tensor_free(w);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

static void test_layers_same_bits_on_two_threads(void **state) {
  (void)state;
  layer_same_bits(&cr_cell_lstm, 0);
  layer_same_bits(&cr_cell_gru, 0);
  layer_same_bits(&mgu_cell, 0);
  layer_same_bits(&cr_cell_lstm, 2); /* checkpointed segments */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_runs_every_task_once),
      cmocka_unit_test(test_products_same_bits_on_any_threads),
      cmocka_unit_test(test_maps_same_bits_on_two_threads),
      cmocka_unit_test(test_memory_passes_same_on_any_threads),
      cmocka_unit_test(test_layers_same_bits_on_two_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
