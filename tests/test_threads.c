/* test_threads.c — products and recurrent layers split across threads
 * give the same bits as one thread, and the pool behind them runs every
 * task once, nested or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
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
  /* BLIS-sized, few-row (skinny), and both transposes, f32 and f64 */
  const int64_t sizes[][3] = {{150, 100, 210}, {24, 256, 520}, {130, 80, 300}};
  for (int dt = 0; dt < 2; dt++)
    for (int s = 0; s < 3; s++)
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

/* ---- a layer's forward and backward */

static void layer_same_bits(const cr_cell_def *cell, int64_t every) {
  enum { T = 5, B = 32, I = 64, H = 128 };
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
  for (int threads = 1; threads <= 2; threads++) {
    cr_set_num_threads(threads);
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
      if (threads == 1) {
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
      cmocka_unit_test(test_layers_same_bits_on_two_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
