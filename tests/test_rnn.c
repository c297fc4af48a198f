/* Recurrent layers: gradient checks of every cell unrolled (T = 6, two
 * layers, every parameter, the input and the initial states), BPTT equal to
 * the sum of per-step contributions, variable lengths, truncated BPTT,
 * batch_first, and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule.h"
#include "mgu.h"

/* ---- gradcheck of a whole unrolled stack -------------------------------- */

typedef struct {
  cr_rnn_config cfg;
  const cr_rnn_forward_opts *opts; /* NULL: full BPTT */
  int n_params;                    /* inputs[0..n_params) are the parameters */
  cr_tensor *w_out;                /* loss weights: sum(output*w_out) + sum(final_s*w_fin[s]) */
  cr_tensor *w_fin[2];
  const int64_t *lengths;
} stack_case;

/* loss = sum(output * w_out) + sum_s sum(final_s * w_fin_s) */
static cr_tensor *stack_loss(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  stack_case *sc = user;
  int S = sc->cfg.cell->n_states;
  cr_tensor *const *params = in;
  cr_tensor *input = in[sc->n_params];
  cr_tensor *init[2] = {NULL, NULL};
  for (int s = 0; s < S && sc->n_params + 1 + s < n; s++)
    init[s] = in[sc->n_params + 1 + s];
  cr_tensor *out, *fin[2];
  if (cr_rnn_forward_params_ex(ctx, &sc->cfg, params, input, init, sc->lengths, NULL, sc->opts,
                               &out, fin) != CR_OK)
    return NULL;
  cr_tensor *loss = cr_sum(ctx, cr_mul(ctx, out, sc->w_out));
  for (int s = 0; s < S; s++)
    loss = cr_add(ctx, loss, cr_sum(ctx, cr_mul(ctx, fin[s], sc->w_fin[s])));
  return loss;
}

static void check_cell(const cr_cell_def *cell, const int64_t *lengths, double *max_err,
                       bool second, bool checkpointed) {
  enum { T = 6, B = 2, I = 3, H = 4, L = 2 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(99);
  /* checkpointed (second run of each cell's gradcheck below): segments of 2
   * steps over blocks of 1, recomputed in backward */
  static const cr_rnn_forward_opts ckpt = {.checkpoint_every = 2, .projection_block = 1};
  stack_case sc = {{cell, I, H, L, 0.0, false, CR_F64},
                   checkpointed ? &ckpt : NULL,
                   0,
                   NULL,
                   {NULL, NULL},
                   lengths};
  cr_rnn *rnn = cr_rnn_new(ctx, &sc.cfg, rng);
  assert_non_null(rnn);
  sc.n_params = cr_rnn_num_params(rnn);
  int S = cell->n_states, n = sc.n_params + 1 + S;
  cr_tensor *in[32];
  for (int i = 0; i < sc.n_params; i++)
    in[i] = cr_rnn_param(rnn, i);
  cr_tensor *owned[8];
  int n_owned = 0;
  in[sc.n_params] = owned[n_owned++] =
      cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1));
  for (int s = 0; s < S; s++)
    in[sc.n_params + 1 + s] = owned[n_owned++] =
        cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(L, B, H), 0, 0.5));
  sc.w_out = owned[n_owned++] =
      cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, H), 0, 1));
  for (int s = 0; s < S; s++)
    sc.w_fin[s] = owned[n_owned++] =
        cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(L, B, H), 0, 1));
  cr_gradcheck_opts o;
  cr_gradcheck_default_opts(&o);
  o.atol = 1e-7;
  o.rtol = 1e-6;
  cr_gradcheck_report rep;
  bool ok = second ? cr_gradgradcheck(stack_loss, in, n, &sc, &o, &rep)
                   : cr_gradcheck(stack_loss, in, n, &sc, &o, &rep);
  printf("%s %-9s T=6 L=2%s%s: %s, %lld %s, max abs err %.2e, max rel err %.2e\n",
         second ? "gradgradcheck" : "gradcheck", cell->name, lengths ? " (lengths)" : "",
         checkpointed ? " checkpointed" : "", ok ? "pass" : "FAIL", (long long)rep.n_checked,
         second ? "projections" : "elements", rep.max_abs_err, rep.max_rel_err);
  if (!ok)
    printf("  %s\n", rep.message);
  assert_true(ok);
  assert_true(rep.n_checked >= (second ? 4 : sc.n_params));
  if (max_err)
    *max_err = rep.max_abs_err;
  for (int i = 0; i < n_owned; i++)
    cr_tensor_free(owned[i]);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

static void gradcheck_cell(const cr_cell_def *cell, const int64_t *lengths, double *max_err) {
  check_cell(cell, lengths, max_err, false, false);
}

static void test_gradcheck_rnn_tanh(void **s) {
  (void)s;
  gradcheck_cell(&cr_cell_rnn_tanh, NULL, NULL);
}
static void test_gradcheck_rnn_relu(void **s) {
  (void)s;
  gradcheck_cell(&cr_cell_rnn_relu, NULL, NULL);
}
static void test_gradcheck_lstm(void **s) {
  (void)s;
  gradcheck_cell(&cr_cell_lstm, NULL, NULL);
}
static void test_gradcheck_gru(void **s) {
  (void)s;
  gradcheck_cell(&cr_cell_gru, NULL, NULL);
}
static void test_gradcheck_custom_mgu(void **s) {
  (void)s;
  gradcheck_cell(&mgu_cell, NULL, NULL);
}
static void test_gradcheck_lstm_lengths(void **s) {
  (void)s;
  gradcheck_cell(&cr_cell_lstm, (const int64_t[]){6, 3}, NULL);
}

/* second derivatives of the whole unrolled stack (every parameter, the
 * input, the initial states and the seed), through the graph VJPs */
static void test_gradgradcheck_rnn_tanh(void **s) {
  (void)s;
  check_cell(&cr_cell_rnn_tanh, NULL, NULL, true, false);
}
static void test_gradgradcheck_lstm(void **s) {
  (void)s;
  check_cell(&cr_cell_lstm, NULL, NULL, true, false);
}
static void test_gradgradcheck_gru(void **s) {
  (void)s;
  check_cell(&cr_cell_gru, NULL, NULL, true, false);
}
static void test_gradgradcheck_custom_mgu(void **s) {
  (void)s;
  check_cell(&mgu_cell, NULL, NULL, true, false);
}
static void test_gradgradcheck_lstm_lengths(void **s) {
  (void)s;
  check_cell(&cr_cell_lstm, (const int64_t[]){6, 3}, NULL, true, false);
}

/* the checkpointed unroll (segments recomputed in backward) gradchecks too */
static void test_gradcheck_checkpointed(void **s) {
  (void)s;
  check_cell(&cr_cell_lstm, (const int64_t[]){6, 3}, NULL, false, true);
  check_cell(&cr_cell_gru, NULL, NULL, false, true);
  check_cell(&mgu_cell, NULL, NULL, false, true);
  check_cell(&cr_cell_lstm, NULL, NULL, true, true); /* and its second derivatives */
}

/* ---- memory-efficient BPTT: checkpointed = full, bit for bit ------------- */

/* T, B, I, H of run_grads' layer */
static const int64_t small_dims[4] = {13, 3, 4, 5};

/* Every gradient (parameters, input, initial states) of one training loss
 * of a layer of dims (T, B, I, H), run with opts; copied out as raw bytes. */
static size_t run_grads(const cr_cell_def *cell, int L, double dropout, const int64_t *lengths,
                        cr_dtype dt, const cr_rnn_variant *var, const cr_rnn_forward_opts *opts,
                        const int64_t *dims, unsigned char *buf, size_t *peak) {
  const int64_t T = dims[0], B = dims[1], I = dims[2], H = dims[3];
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(77), *drop = cr_rng_new(5);
  cr_rnn_config cfg = {cell, I, H, L, dropout, false, dt};
  cr_rnn *rnn = cr_rnn_new_ex(ctx, &cfg, var, rng);
  assert_non_null(rnn);
  const int D = var && var->bidirectional ? 2 : 1;
  const int64_t Hout = var && var->proj_size ? var->proj_size : H;
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(T, B, I), 0, 1));
  cr_tensor *h0 = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(L * D, B, Hout), 0, 0.5));
  cr_tensor *c0 = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(L * D, B, H), 0, 0.5));
  cr_tensor *w = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(T, B, D * Hout), 0, 1));
  cr_set_requires_grad(x, true);
  cr_set_requires_grad(h0, true);
  cr_set_requires_grad(c0, true);
  cr_tensor *init[2] = {h0, c0}, *out, *fin[2];
  cr_ctx_clear_peak(ctx);
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, init, lengths, drop, opts, &out, fin), CR_OK);
  cr_tensor *loss = cr_sum(ctx, cr_mul(ctx, out, w));
  for (int s = 0; s < cell->n_states; s++)
    loss = cr_add(ctx, loss, cr_sum(ctx, cr_square(ctx, fin[s])));
  assert_int_equal(cr_backward(ctx, loss), CR_OK);
  cr_ctx_stats st;
  cr_ctx_get_stats(ctx, &st);
  *peak = st.arena_bytes_peak;
  size_t n = 0, es = cr_dtype_size(dt);
  const cr_tensor *gs[64];
  int ng = 0;
  for (int i = 0; i < cr_rnn_num_params(rnn); i++)
    gs[ng++] = cr_grad(cr_rnn_param(rnn, i));
  gs[ng++] = cr_grad(x);
  gs[ng++] = cr_grad(h0);
  if (cell->n_states > 1)
    gs[ng++] = cr_grad(c0);
  for (int i = 0; i < ng; i++) {
    assert_non_null(gs[i]);
    memcpy(buf + n, cr_data_const(gs[i]), (size_t)cr_numel(gs[i]) * es);
    n += (size_t)cr_numel(gs[i]) * es;
  }
  cr_tensor *own[] = {x, h0, c0, w};
  for (int i = 0; i < 4; i++)
    cr_tensor_free(own[i]);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_rng_free(drop);
  cr_ctx_free(ctx);
  return n;
}

static void test_checkpointed_gradients_are_bit_identical(void **state) {
  (void)state;
  static unsigned char full[1 << 16], ckpt[1 << 16];
  const cr_cell_def *cells[] = {&cr_cell_rnn_tanh, &cr_cell_rnn_relu, &cr_cell_lstm,
                                &cr_cell_gru,      &mgu_cell,         &cr_cell_lstm_ln};
  const int64_t lengths[3] = {13, 6, 9};
  int checked = 0;
  for (int c = 0; c < 6; c++)
    for (int v = 0; v < 8; v++) {
      /* plain; 2 layers + dropout; lengths; f32 2 layers; bidirectional 2 layers + dropout +
       * lengths; bidirectional f32 + lengths; lstm only: proj + bidirectional 2 layers +
       * lengths, proj f32 2 layers */
      if (v >= 6 && cells[c] != &cr_cell_lstm)
        continue;
      int L = v == 1 || v == 3 || v == 4 || v >= 6 ? 2 : 1;
      double dropout = v == 1 || v == 4 ? 0.3 : 0.0;
      cr_dtype dt = v == 3 || v == 5 || v == 7 ? CR_F32 : CR_F64;
      const int64_t *len = v == 2 || v == 4 || v == 5 || v == 6 ? lengths : NULL;
      cr_rnn_variant var = {.bidirectional = v == 4 || v == 5 || v == 6,
                            .proj_size = v >= 6 ? 3 : 0};
      for (int64_t K = 2; K <= 6; K += 4) { /* blocks of 2 steps, segments of 2 and 6 */
        cr_rnn_forward_opts f = {.projection_block = 2};
        cr_rnn_forward_opts k = {.projection_block = 2, .checkpoint_every = K};
        size_t pf, pk;
        size_t nf = run_grads(cells[c], L, dropout, len, dt, &var, &f, small_dims, full, &pf);
        size_t nk = run_grads(cells[c], L, dropout, len, dt, &var, &k, small_dims, ckpt, &pk);
        assert_int_equal(nf, nk);
        if (memcmp(full, ckpt, nf) != 0)
          fail_msg("%s variant %d, segments of %lld: checkpointed gradients differ from full "
                   "BPTT",
                   cells[c]->name, v, (long long)K);
        checked++;
      }
    }
  /* and checkpointing does what it is for (issue #11: >= 95% less
   * activation memory at T = 1000): the activations (the arena's peak less
   * the inputs, the output and its gradient — the layer's interface) at
   * T = 1000, B 16, H 64 are 4.1% of full BPTT's with auto (bound 5%) and
   * 5.1% with every 20 steps (bound 7%).  Seeded on the output itself, as
   * a layer inside a model is. */
  for (int a = 0; a < 2; a++) {
    enum { TT = 1000, BB = 16, HH = 64 };
    cr_ctx *ctx = cr_ctx_new();
    cr_rng *rng = cr_rng_new(3);
    cr_rnn_config cfg = {&cr_cell_lstm, 8, HH, 1, 0.0, false, CR_F32};
    cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
    double act[2];
    for (int mode = 0; mode < 2; mode++) {
      cr_rnn_forward_opts o = {.checkpoint_every = mode ? (a ? CR_RNN_CHECKPOINT_AUTO : 20) : 0};
      cr_tensor *x = cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(TT, BB, 8), 0, 1), *out;
      cr_tensor *w = cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(TT, BB, HH), 0, 1);
      cr_ctx_stats st;
      cr_ctx_clear_peak(ctx);
      cr_ctx_get_stats(ctx, &st);
      const double before = (double)st.arena_bytes_used; /* x and w */
      assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_OK);
      assert_int_equal(cr_backward_seed(ctx, out, w), CR_OK);
      cr_ctx_get_stats(ctx, &st);
      act[mode] = (double)st.arena_bytes_peak - before - 2.0 * TT * BB * HH * sizeof(float);
      cr_ctx_reset(ctx);
    }
    printf("LSTM T=1000, B=16, H=64: activations %.0f KiB full, %.0f KiB checkpointed (%s): "
           "%.1f%%\n",
           act[0] / 1024, act[1] / 1024, a ? "auto" : "every 20 steps", 100 * act[1] / act[0]);
    assert_true(act[1] < (a ? 0.05 : 0.07) * act[0]);
    cr_rnn_free(rnn);
    cr_rng_free(rng);
    cr_ctx_free(ctx);
  }
  printf("checkpointed vs full BPTT: %d cases (6 cells x plain/2 layers+dropout/lengths/f32/"
         "bidirectional+lengths (+dropout, f32), lstm proj+bidirectional; segments of 2 and 6 "
         "steps), gradients identical (memcmp)\n",
         checked);
}

/* With the default blocks, full BPTT over inputs of 256 features or more
 * projects 1024 rows at once and checkpointed segments 256 (unroll.c):
 * the sums of the input weights' gradients group differently, so they
 * agree to rounding (float64 here: within 1e-12 of the largest
 * gradient), and with the same projection_block bit for bit.  A 2-layer
 * bidirectional GRU (the second layer's input is 2H = 256 too) over 70
 * steps of batch 8: full blocks of 70 steps, checkpointed ones of 32. */
static void test_default_blocks_agree_with_checkpointed(void **state) {
  (void)state;
  static const int64_t dims[4] = {70, 8, 256, 128};
  static unsigned char full[1 << 23], ckpt[1 << 23], same[1 << 23];
  const cr_rnn_variant var = {.bidirectional = true};
  const cr_rnn_forward_opts f = {0}, k = {.checkpoint_every = CR_RNN_CHECKPOINT_AUTO},
                            f32 = {.projection_block = 32};
  size_t p, n = run_grads(&cr_cell_gru, 2, 0.0, NULL, CR_F64, &var, &f, dims, full, &p);
  assert_true(n <= sizeof full);
  assert_int_equal(run_grads(&cr_cell_gru, 2, 0.0, NULL, CR_F64, &var, &k, dims, ckpt, &p), n);
  assert_int_equal(run_grads(&cr_cell_gru, 2, 0.0, NULL, CR_F64, &var, &f32, dims, same, &p), n);
  assert_memory_equal(ckpt, same, n);
  const double *a = (const double *)full, *b = (const double *)ckpt;
  double big = 0, diff = 0;
  for (size_t i = 0; i < n / sizeof(double); i++) {
    big = fabs(a[i]) > big ? fabs(a[i]) : big;
    diff = fabs(a[i] - b[i]) > diff ? fabs(a[i] - b[i]) : diff;
  }
  printf("default blocks, full vs checkpointed (gru 2 layers bidirectional, I = 2H = 256, T 70, "
         "B 8): largest difference %.2e of a largest gradient %.2e\n",
         diff, big);
  assert_true(big > 0 && diff <= 1e-12 * big);
}

/* ---- every step's state, reachable: dL/dh_t for all t and layers ------- */

static void test_step_states_and_their_gradients(void **state) {
  (void)state;
  enum { T = 5, B = 2, I = 3, H = 4, L = 2, S = 2 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(3);
  cr_rnn_config cfg = {&cr_cell_lstm, I, H, L, 0.0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  assert_string_equal(cr_name(cr_rnn_param(rnn, 1)), "weight_hh_l0");
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1);
  cr_tensor *w = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, H), 0, 1);
  cr_tensor *states[L * S * T], *out;
  cr_rnn_forward_opts o = {.step_states = states, .retain_step_grads = true};
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_OK);
  assert_string_equal(cr_name(states[3]), "h_3"); /* layer 0, h, t = 3 */
  assert_string_equal(cr_name(states[(0 * S + 1) * T + 2]), "c_2");
  assert_string_equal(cr_name(states[(1 * S + 1) * T + 4]), "c_l1_4");
  cr_tensor *loss = cr_sum(ctx, cr_mul(ctx, out, w));
  /* the same gradients, computed independently by the graph VJPs */
  cr_tensor *indep[L * S * T];
  cr_autograd_opts zo = {.zeros_for_unused = true};
  assert_int_equal(cr_autograd_grad(ctx, 1, &loss, NULL, L * S * T, states, &zo, indep), CR_OK);
  assert_int_equal(cr_backward(ctx, loss), CR_OK);
  double worst = 0;
  for (int i = 0; i < L * S * T; i++) {
    const cr_tensor *g = cr_grad(states[i]);
    assert_non_null(g);
    for (int64_t k = 0; k < B * H; k++)
      worst = fmax(worst, fabs(cr_get_flat(g, k) - cr_get_flat(indep[i], k)));
  }
  printf("dL/dh_t, dL/dc_t of both layers at every step: max difference to cr_autograd_grad "
         "%.2e\n",
         worst);
  assert_true(worst < 1e-13);
  /* the top layer's last h feeds only output T-1: its gradient is w[T-1] */
  const cr_tensor *g_top = cr_grad(states[(1 * S + 0) * T + T - 1]);
  for (int64_t k = 0; k < B * H; k++)
    assert_true(cr_get_flat(g_top, k) == cr_get_flat(w, (T - 1) * B * H + k));
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- a layer keeps what backward reads, and says so when more is asked --- */

/* h' = tanh(x + h) * u where u is the previous step's tanh (kept by the
 * cell in its scratch: not a state — a released value when reused) */
static cr_tensor *stash;
static void one_param(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  (void)i, (void)I;
  *nd = 1;
  s[0] = H;
}
static cr_status stash_step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x,
                            cr_tensor *const *state, cr_tensor **next, cr_tensor **out) {
  cr_tensor *a = cr_add(ctx, cr_add(ctx, x, state[0]), L->params[0]); /* add reads nothing */
  cr_tensor *u = stash ? stash : a;
  stash = a;
  next[0] = *out = cr_tanh(ctx, cr_add(ctx, a, u));
  return cr_ctx_status(ctx);
}
static const cr_cell_def stash_cell = {.name = "stash",
                                       .n_states = 1,
                                       .n_params = 1,
                                       .param_names = {"b"},
                                       .param_shape = one_param,
                                       .step = stash_step};

static void test_released_values_are_refused(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_rnn_config cfg = {&stash_cell, 3, 3, 1, 0.0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(6, 2, 3), 0, 1), *out;
  cr_rnn_forward_opts o = {.projection_block = 2};
  stash = NULL;
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_ERR_STATE);
  printf("%s\n", cr_ctx_error(ctx));
  assert_non_null(strstr(cr_ctx_error(ctx), "its values were released"));
  cr_ctx_clear_error(ctx);
  stash = NULL;
  o.keep_activations = true; /* keeping everything, the same cell runs */
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_OK);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- BPTT = the sum of per-time-step contributions ---------------------- */

/* dL/dW_hh from one backward over the unrolled graph equals the sum of the
 * gradients of T separate copies of W_hh, one used at each step. */
static void test_bptt_is_sum_over_steps(void **state) {
  (void)state;
  enum { T = 7, B = 2, I = 3, H = 4 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(5);
  cr_rnn_config cfg = {&cr_cell_rnn_tanh, I, H, 1, 0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1);
  cr_tensor *out;
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &out, NULL), CR_OK);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_square(ctx, out))), CR_OK);
  cr_tensor *Wih = cr_rnn_find_param(rnn, "weight_ih_l0"),
            *Whh = cr_rnn_find_param(rnn, "weight_hh_l0");
  cr_tensor *bih = cr_rnn_find_param(rnn, "bias_ih_l0"),
            *bhh = cr_rnn_find_param(rnn, "bias_hh_l0");
  cr_tensor *shared_grad = cr_persist(ctx, cr_grad(Whh));

  /* the same network unrolled by hand with a separate copy of W_hh per step */
  cr_tensor *copies[T];
  cr_tensor *h = cr_zeros(ctx, CR_F64, CR_SHAPE(B, H));
  cr_tensor *hs[T];
  for (int t = 0; t < T; t++) {
    copies[t] = cr_persist(ctx, Whh);
    cr_set_requires_grad(copies[t], true);
    cr_tensor *xt = cr_reshape(ctx, cr_slice(ctx, x, 0, t, t + 1, 1), CR_SHAPE(B, I));
    h = cr_tanh(ctx, cr_add(ctx, cr_linear(ctx, xt, Wih, bih), cr_linear(ctx, h, copies[t], bhh)));
    hs[t] = h;
  }
  cr_tensor *y = cr_stack(ctx, hs, T, 0);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_square(ctx, y))), CR_OK);
  double max_diff = 0;
  for (int64_t i = 0; i < cr_numel(Whh); i++) {
    double sum = 0;
    for (int t = 0; t < T; t++)
      sum += cr_get_flat(cr_grad(copies[t]), i);
    max_diff = fmax(max_diff, fabs(sum - cr_get_flat(shared_grad, i)));
  }
  printf("BPTT vs sum of %d per-step copies: max diff %.2e\n", T, max_diff);
  assert_true(max_diff < 1e-12);
  /* and no single step's contribution is the whole gradient */
  assert_true(fabs(cr_get_flat(cr_grad(copies[T - 1]), 0) - cr_get_flat(shared_grad, 0)) > 1e-6);
  for (int t = 0; t < T; t++)
    cr_tensor_free(copies[t]);
  cr_tensor_free(shared_grad);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- variable lengths --------------------------------------------------- */

/* Sequence b of a padded batch gives exactly what it gives alone with
 * T = len_b; padded outputs are 0 and padded inputs get no gradient. */
static void test_lengths_match_unpadded(void **state) {
  (void)state;
  enum { T = 5, B = 3, I = 2, H = 3, L = 2 };
  const int64_t lengths[B] = {5, 2, 4};
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(11);
  cr_rnn_config cfg = {&cr_cell_gru, I, H, L, 0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1));
  cr_set_requires_grad(x, true);
  cr_tensor *out, *fin[1];
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, lengths, NULL, &out, fin), CR_OK);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, out)), CR_OK);
  for (int b = 0; b < B; b++) {
    cr_tensor *xb = cr_slice(ctx, cr_slice(ctx, x, 1, b, b + 1, 1), 0, 0, lengths[b], 1);
    cr_tensor *ob, *fb[1];
    assert_int_equal(cr_rnn_forward(ctx, rnn, xb, NULL, NULL, NULL, &ob, fb), CR_OK);
    for (int64_t t = 0; t < T; t++)
      for (int64_t j = 0; j < H; j++) {
        double got = cr_get(out, (const int64_t[]){t, b, j});
        double want = t < lengths[b] ? cr_get(ob, (const int64_t[]){t, 0, j}) : 0.0;
        assert_true(fabs(got - want) < 1e-12);
        if (t >= lengths[b])
          for (int64_t k = 0; k < I; k++)
            assert_true(cr_get(cr_grad(x), (const int64_t[]){t, b, k}) == 0.0);
      }
    for (int l = 0; l < L; l++)
      for (int64_t j = 0; j < H; j++)
        assert_true(fabs(cr_get(fin[0], (const int64_t[]){l, b, j}) -
                         cr_get(fb[0], (const int64_t[]){l, 0, j})) < 1e-12);
  }
  cr_tensor_free(x);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- truncated BPTT ------------------------------------------------------ */

/* Chunks of k steps with the state carried in persistent tensors (cut from
 * the graph) give the same outputs as one long forward, while the arena
 * holds only one chunk: its peak use does not grow with the length. */
static void test_truncated_bptt(void **state) {
  (void)state;
  enum { T = 24, K = 6, B = 2, I = 3, H = 5 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(3);
  cr_rnn_config cfg = {&cr_cell_lstm, I, H, 1, 0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1));
  cr_tensor *full;
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &full, NULL), CR_OK);
  cr_tensor *full_p = cr_persist(ctx, full);
  cr_ctx_reset(ctx);

  cr_tensor *carry[2] = {cr_tensor_new(ctx, CR_F64, CR_SHAPE(1, B, H)),
                         cr_tensor_new(ctx, CR_F64, CR_SHAPE(1, B, H))};
  size_t peak[T / K];
  for (int c = 0; c < T / K; c++) {
    cr_tensor *xc = cr_slice(ctx, x, 0, c * K, (c + 1) * K, 1);
    cr_tensor *out, *fin[2];
    assert_int_equal(cr_rnn_forward(ctx, rnn, xc, carry, NULL, NULL, &out, fin), CR_OK);
    assert_int_equal(cr_backward(ctx, cr_sum(ctx, out)), CR_OK);
    for (int64_t t = 0; t < K; t++)
      for (int64_t j = 0; j < B * H; j++) {
        double got = cr_get_flat(out, t * B * H + j);
        double want = cr_get_flat(full_p, (c * K + t) * B * H + j);
        assert_true(fabs(got - want) < 1e-12);
      }
    /* carry the state into the next chunk, cut from this chunk's graph */
    assert_int_equal(cr_copy_into(ctx, carry[0], fin[0]), CR_OK);
    assert_int_equal(cr_copy_into(ctx, carry[1], fin[1]), CR_OK);
    cr_ctx_stats st;
    cr_ctx_get_stats(ctx, &st);
    peak[c] = st.arena_bytes_used;
    cr_ctx_reset(ctx);
  }
  for (int c = 1; c < T / K; c++)
    assert_int_equal(peak[c], peak[0]);
  cr_tensor_free(carry[0]);
  cr_tensor_free(carry[1]);
  cr_tensor_free(full_p);
  cr_tensor_free(x);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

static void test_batch_first(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(8);
  cr_rnn_config cfg = {&cr_cell_lstm, 3, 4, 2, 0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_rng_seed(rng, 8);
  cfg.batch_first = true;
  cr_rnn *rnn_bf = cr_rnn_new(ctx, &cfg, rng); /* same weights: same seed */
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(5, 2, 3), 0, 1);
  cr_tensor *o1, *o2;
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &o1, NULL), CR_OK);
  assert_int_equal(
      cr_rnn_forward(ctx, rnn_bf, cr_transpose(ctx, x, 0, 1), NULL, NULL, NULL, &o2, NULL), CR_OK);
  assert_int_equal(cr_dim(o2, 0), 2);
  for (int64_t t = 0; t < 5; t++)
    for (int64_t b = 0; b < 2; b++)
      for (int64_t j = 0; j < 4; j++)
        assert_true(fabs(cr_get(o1, (const int64_t[]){t, b, j}) -
                         cr_get(o2, (const int64_t[]){b, t, j})) < 1e-12);
  cr_rnn_free(rnn);
  cr_rnn_free(rnn_bf);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

static void test_param_names_and_errors(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_rnn_config cfg = {&cr_cell_gru, 10, 20, 2, 0.0, false, CR_F32};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  assert_int_equal(cr_rnn_num_params(rnn), 8);
  assert_string_equal(cr_rnn_param_name(rnn, 5), "weight_hh_l1");
  assert_int_equal(cr_dim(cr_rnn_find_param(rnn, "weight_ih_l0"), 0), 60);
  assert_int_equal(cr_dim(cr_rnn_find_param(rnn, "weight_ih_l1"), 1), 20);
  /* U(-1/sqrt(H), 1/sqrt(H)) */
  cr_tensor *w = cr_rnn_find_param(rnn, "weight_hh_l0");
  double k = 1 / sqrt(20.0), mx = 0;
  for (int64_t i = 0; i < cr_numel(w); i++)
    mx = fmax(mx, fabs(cr_get_flat(w, i)));
  assert_true(mx <= k && mx > 0.9 * k);
  cr_tensor *out;
  cr_tensor *x = cr_zeros(ctx, CR_F32, CR_SHAPE(4, 2, 9));
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &out, NULL), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx),
                      "rnn_forward: input [4,2,9]: expected [T, B, 10] (time first)");
  cr_ctx_clear_error(ctx);
  x = cr_zeros(ctx, CR_F32, CR_SHAPE(4, 2, 10));
  cr_tensor *h0 = cr_zeros(ctx, CR_F32, CR_SHAPE(1, 2, 20));
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, &h0, NULL, NULL, &out, NULL), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx),
                      "rnn_forward: initial state 0 [1,2,20] f32: expected [2,2,20] f32");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, (const int64_t[]){4, 0}, NULL, &out, NULL),
                   CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "rnn_forward: lengths[1] = 0 is outside 1..4 (T)");
  cr_ctx_clear_error(ctx);
  cfg.num_layers = 0;
  assert_null(cr_rnn_new(ctx, &cfg, rng));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* dropout between layers acts only in training mode */
static void test_dropout_between_layers(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(4);
  cr_rnn_config cfg = {&cr_cell_rnn_tanh, 3, 8, 2, 0.5, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(4, 2, 3), 0, 1);
  cr_tensor *a, *b, *c;
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, rng, &a, NULL), CR_OK);
  cr_set_training(ctx, false);
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &b, NULL), CR_OK);
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &c, NULL), CR_OK);
  bool differs = false;
  for (int64_t i = 0; i < cr_numel(a); i++) {
    differs |= cr_get_flat(a, i) != cr_get_flat(b, i);
    assert_true(cr_get_flat(b, i) == cr_get_flat(c, i));
  }
  assert_true(differs);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* save and load a stack; a file for another shape fails and changes nothing */
static void test_save_load(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(12);
  char dir[] = "/tmp/cr_rnn_XXXXXX", path[64], other[64];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/a.safetensors", dir);
  snprintf(other, sizeof other, "%s/b.safetensors", dir);
  cr_rnn_config cfg = {&cr_cell_lstm, 6, 10, 2, 0, false, CR_F32};
  cr_rnn *a = cr_rnn_new(ctx, &cfg, rng), *b = cr_rnn_new(ctx, &cfg, rng);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_rnn_save(ctx, a, w, "rnn."), CR_OK);
  assert_int_equal(cr_st_writer_save(ctx, w, path), CR_OK);
  cr_st_writer_free(w);
  /* a wider layer saved to another file */
  cr_rnn_config wide = cfg;
  wide.hidden_size = 20;
  cr_rnn *c = cr_rnn_new(ctx, &wide, rng);
  w = cr_st_writer_new();
  assert_int_equal(cr_rnn_save(ctx, c, w, "rnn."), CR_OK);
  assert_int_equal(cr_st_writer_save(ctx, w, other), CR_OK);
  cr_st_writer_free(w);

  cr_st_file *f = cr_st_open(ctx, path);
  assert_non_null(f);
  assert_int_equal(cr_rnn_load(ctx, b, f, "rnn."), CR_OK);
  for (int i = 0; i < cr_rnn_num_params(a); i++)
    assert_memory_equal(cr_data(cr_rnn_param(a, i)), cr_data(cr_rnn_param(b, i)),
                        (size_t)cr_numel(cr_rnn_param(a, i)) * sizeof(float));
  cr_st_close(f);

  /* b keeps every value when the file is for another shape */
  float before[800];
  cr_tensor *w_last = cr_rnn_find_param(b, "bias_hh_l1");
  memcpy(before, cr_data(cr_rnn_param(b, 0)), 240 * sizeof(float));
  float bias_before[40];
  memcpy(bias_before, cr_data(w_last), sizeof bias_before);
  f = cr_st_open(ctx, other);
  assert_int_equal(cr_rnn_load(ctx, b, f, "rnn."), CR_ERR_SHAPE);
  char want[256];
  snprintf(want, sizeof want, "%s: tensor 'rnn.weight_ih_l0' is [80,6], this model needs [40,6]",
           other);
  assert_string_equal(cr_ctx_error(ctx), want);
  cr_ctx_clear_error(ctx);
  assert_memory_equal(before, cr_data(cr_rnn_param(b, 0)), 240 * sizeof(float));
  assert_memory_equal(bias_before, cr_data(w_last), sizeof bias_before);
  assert_int_equal(cr_rnn_load(ctx, b, f, "nothere."), CR_ERR_ARG);
  snprintf(want, sizeof want, "%s: no tensor named 'nothere.weight_ih_l0' (it holds 8: %s", other,
           "'rnn.weight_ih_l0', 'rnn.weight_hh_l0', ");
  assert_memory_equal(cr_ctx_error(ctx), want, strlen(want));
  cr_ctx_clear_error(ctx);
  cr_st_close(f);

  /* a NaN anywhere is refused before anything is read, naming the tensor */
  cr_set_flat(cr_rnn_find_param(a, "bias_hh_l1"), 3, NAN);
  w = cr_st_writer_new();
  assert_int_equal(cr_rnn_save(ctx, a, w, "rnn."), CR_OK);
  assert_int_equal(cr_st_writer_save(ctx, w, other), CR_OK);
  cr_st_writer_free(w);
  f = cr_st_open(ctx, other);
  assert_non_null(f);
  assert_int_equal(cr_rnn_load(ctx, b, f, "rnn."), CR_ERR_FORMAT);
  snprintf(want, sizeof want, "%s: tensor 'rnn.bias_hh_l1' holds NaN or infinite values", other);
  assert_memory_equal(cr_ctx_error(ctx), want, strlen(want));
  cr_ctx_clear_error(ctx);
  assert_memory_equal(before, cr_data(cr_rnn_param(b, 0)), 240 * sizeof(float));
  assert_memory_equal(bias_before, cr_data(w_last), sizeof bias_before);
  /* a prefix too long for a name is refused, not cut */
  char long_prefix[300];
  memset(long_prefix, 'p', sizeof long_prefix - 1);
  long_prefix[sizeof long_prefix - 1] = '\0';
  assert_int_equal(cr_rnn_load(ctx, b, f, long_prefix), CR_ERR_ARG);
  assert_non_null(strstr(cr_ctx_error(ctx), "is too long"));
  cr_ctx_clear_error(ctx);
  cr_st_close(f);
  remove(path);
  remove(other);
  rmdir(dir);
  cr_rnn_free(a);
  cr_rnn_free(b);
  cr_rnn_free(c);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradcheck_rnn_tanh),
      cmocka_unit_test(test_gradcheck_rnn_relu),
      cmocka_unit_test(test_gradcheck_lstm),
      cmocka_unit_test(test_gradcheck_gru),
      cmocka_unit_test(test_gradcheck_custom_mgu),
      cmocka_unit_test(test_gradcheck_lstm_lengths),
      cmocka_unit_test(test_step_states_and_their_gradients),
      cmocka_unit_test(test_released_values_are_refused),
      cmocka_unit_test(test_gradgradcheck_rnn_tanh),
      cmocka_unit_test(test_gradgradcheck_lstm),
      cmocka_unit_test(test_gradgradcheck_gru),
      cmocka_unit_test(test_gradgradcheck_custom_mgu),
      cmocka_unit_test(test_gradgradcheck_lstm_lengths),
      cmocka_unit_test(test_gradcheck_checkpointed),
      cmocka_unit_test(test_checkpointed_gradients_are_bit_identical),
      cmocka_unit_test(test_default_blocks_agree_with_checkpointed),
      cmocka_unit_test(test_bptt_is_sum_over_steps),
      cmocka_unit_test(test_lengths_match_unpadded),
      cmocka_unit_test(test_truncated_bptt),
      cmocka_unit_test(test_batch_first),
      cmocka_unit_test(test_param_names_and_errors),
      cmocka_unit_test(test_dropout_between_layers),
      cmocka_unit_test(test_save_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
