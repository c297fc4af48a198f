/* Recurrent variants: bidirectional stacks (every cell, user cells too),
 * LSTM projections, the layer-normalised LSTM and cells with extra
 * per-sequence inputs (Bahdanau attention over encoder outputs): gradient
 * and second-derivative checks of the unrolled stacks, the reverse
 * direction's packed-sequence semantics, checkpointed = full BPTT bit for
 * bit with extras, names, shapes and error messages, and a training run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* cmocka needs the three above first */
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "mgu.h"

/* ---- a Bahdanau-attention cell (a user cell reading the encoder) --------
 *   K   = enc W_k^T                        [B, S, A]  once per forward
 *   e_j = tanh(K_j + h W_q^T)              [B, S, A]
 *   a   = softmax_j(scale * e_j v)         [B, S]
 *   ctx = sum_j a_j enc_j                  [B, E]
 *   h'  = tanh(x W_x^T + b + h W_h^T + ctx W_c^T)
 * enc is extra->tensors[0] [B, S, E]; scale comes through extra->user. */
enum { ENC_E = 3, ATT_A = 4 };
enum { A_WX, A_B, A_WH, A_WC, A_WQ, A_WK, A_V };

typedef struct {
  double scale;
} attn_user;

static void attn_shape(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  static const int64_t rows[] = {0, 0, 0, 0, ATT_A, ATT_A, ATT_A};
  *nd = i == A_B ? 1 : 2;
  s[0] = rows[i] ? rows[i] : H;
  s[1] = i == A_WX ? I : i == A_WH || i == A_WQ ? H : i == A_V ? 1 : ENC_E;
}

static cr_status attn_prepare(cr_ctx *ctx, cr_cell_layer *L) {
  if (!L->extra || L->extra->n_tensors != 1)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "attn: needs the encoder's outputs as extra");
  L->scratch = cr_linear(ctx, L->extra->tensors[0], L->params[A_WK], NULL); /* K */
  return L->scratch ? CR_OK : cr_ctx_status(ctx);
}

static cr_status attn_step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x,
                           cr_tensor *const *state, cr_tensor **next, cr_tensor **out) {
  cr_tensor *const *p = L->params;
  cr_tensor *h = state[0], *enc = L->extra->tensors[0], *K = L->scratch;
  const int64_t B = cr_dim(h, 0), S = cr_dim(enc, 1);
  const attn_user *u = L->extra->user;
  cr_tensor *q = cr_reshape(ctx, cr_linear(ctx, h, p[A_WQ], NULL), CR_SHAPE(B, 1, ATT_A));
  cr_tensor *e = cr_tanh(ctx, cr_add(ctx, K, q));
  cr_tensor *score = cr_reshape(ctx, cr_matmul(ctx, e, p[A_V]), CR_SHAPE(B, S));
  cr_tensor *a = cr_softmax(ctx, cr_mul_scalar(ctx, score, u->scale), 1);
  cr_tensor *c = cr_reshape(ctx, cr_matmul(ctx, cr_reshape(ctx, a, CR_SHAPE(B, 1, S)), enc),
                            CR_SHAPE(B, ENC_E));
  cr_tensor *pre =
      cr_add(ctx, cr_linear(ctx, x, p[A_WX], p[A_B]),
             cr_add(ctx, cr_linear(ctx, h, p[A_WH], NULL), cr_linear(ctx, c, p[A_WC], NULL)));
  next[0] = *out = cr_tanh(ctx, pre);
  return cr_ctx_status(ctx);
}

static const cr_cell_def attn_cell = {
    .name = "attn_rnn",
    .n_states = 1,
    .n_params = 7,
    .param_names = {"weight_x", "bias", "weight_h", "weight_c", "weight_q", "weight_k", "v"},
    .param_shape = attn_shape,
    .prepare = attn_prepare,
    .step = attn_step};

/* ---- gradcheck of a whole unrolled stack -------------------------------- */

enum { T = 5, B = 2, I = 3, H = 4, L = 2, S_ENC = 4 };

typedef struct {
  cr_rnn_config cfg;
  cr_rnn_variant var;
  cr_rnn_forward_opts opts; /* .variant -> var; .extra -> extra when n_extra */
  int n_params;             /* inputs: params, input, the initial states, extras */
  int n_states, n_extra;
  cr_tensor *w_out, *w_fin[2];
  const int64_t *lengths;
  cr_cell_extra extra;
  attn_user user;
} stack_case;

/* loss = sum(output * w_out) + sum_s sum(final_s * w_fin_s) */
static cr_tensor *stack_loss(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  stack_case *sc = user;
  (void)n;
  cr_tensor *input = in[sc->n_params];
  cr_tensor *const *init = in + sc->n_params + 1;
  cr_rnn_forward_opts o = sc->opts;
  o.variant = &sc->var;
  cr_cell_extra ex = sc->extra;
  if (sc->n_extra) {
    ex.n_tensors = sc->n_extra;
    ex.tensors = init + sc->n_states;
    o.extra = &ex;
  }
  cr_tensor *out, *fin[2];
  if (cr_rnn_forward_params_ex(ctx, &sc->cfg, in, input, init, sc->lengths, NULL, &o, &out, fin) !=
      CR_OK)
    return NULL;
  cr_tensor *loss = cr_sum(ctx, cr_mul(ctx, out, sc->w_out));
  for (int s = 0; s < sc->n_states; s++)
    loss = cr_add(ctx, loss, cr_sum(ctx, cr_mul(ctx, fin[s], sc->w_fin[s])));
  return loss;
}

typedef struct {
  const cr_cell_def *cell;
  bool bidir;
  int64_t proj;
  int layers;
  const int64_t *lengths;
  bool second;    /* gradgradcheck */
  int64_t ckpt;   /* checkpoint_every (projection blocks of 1 step) */
  bool attention; /* the encoder's outputs as an extra input */
} check_spec;

static void check_stack(const check_spec *cs) {
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(99);
  const int D = cs->bidir ? 2 : 1, Ls = cs->layers ? cs->layers : L;
  const int64_t Hout = cs->proj ? cs->proj : H;
  stack_case sc = {.cfg = {cs->cell, I, H, Ls, 0.0, false, CR_F64},
                   .var = {cs->bidir, cs->proj},
                   .opts = {.checkpoint_every = cs->ckpt, .projection_block = cs->ckpt ? 1 : 0},
                   .n_states = cs->cell->n_states,
                   .n_extra = cs->attention,
                   .lengths = cs->lengths,
                   .user = {0.7}};
  sc.extra.user = &sc.user;
  cr_rnn *rnn = cr_rnn_new_ex(ctx, &sc.cfg, &sc.var, rng);
  assert_non_null(rnn);
  sc.n_params = cr_rnn_num_params(rnn);
  cr_tensor *in[160], *owned[8];
  int n_owned = 0, n = 0;
  for (int i = 0; i < sc.n_params; i++)
    in[n++] = cr_rnn_param(rnn, i);
  in[n++] = owned[n_owned++] =
      cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1));
  for (int s = 0; s < sc.n_states; s++)
    in[n++] = owned[n_owned++] = cr_persist(
        ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(Ls * D, B, s ? H : Hout), 0, 0.5));
  if (cs->attention)
    in[n++] = owned[n_owned++] =
        cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(B, S_ENC, ENC_E), 0, 1));
  sc.w_out = owned[n_owned++] =
      cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, D * Hout), 0, 1));
  for (int s = 0; s < sc.n_states; s++)
    sc.w_fin[s] = owned[n_owned++] =
        cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(Ls * D, B, s ? H : Hout), 0, 1));
  cr_gradcheck_opts o;
  cr_gradcheck_default_opts(&o);
  o.atol = 1e-7;
  o.rtol = 1e-6;
  cr_gradcheck_report rep;
  bool ok = cs->second ? cr_gradgradcheck(stack_loss, in, n, &sc, &o, &rep)
                       : cr_gradcheck(stack_loss, in, n, &sc, &o, &rep);
  printf(
      "%s %-8s%s%s L=%d%s%s%s: %s, %lld %s, max abs err %.2e, max rel err %.2e\n",
      cs->second ? "gradgradcheck" : "gradcheck", cs->cell->name, cs->bidir ? " bidirectional" : "",
      cs->proj ? " proj" : "", Ls, cs->lengths ? " (lengths)" : "", cs->ckpt ? " checkpointed" : "",
      cs->attention ? " (+ encoder outputs)" : "", ok ? "pass" : "FAIL", (long long)rep.n_checked,
      cs->second ? "projections" : "elements", rep.max_abs_err, rep.max_rel_err);
  if (!ok)
    printf("  %s\n", rep.message);
  assert_true(ok);
  assert_true(rep.n_checked >= (cs->second ? 4 : n));
  for (int i = 0; i < n_owned; i++)
    cr_tensor_free(owned[i]);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

static const int64_t lens[B] = {5, 3};

/* every cell bidirectional, with per-sequence lengths, 2 layers */
static void test_gradcheck_bidirectional(void **s) {
  (void)s;
  const cr_cell_def *cells[] = {&cr_cell_rnn_tanh, &cr_cell_rnn_relu, &cr_cell_lstm,
                                &cr_cell_gru,      &mgu_cell,         &cr_cell_lstm_ln};
  for (int c = 0; c < 6; c++)
    check_stack(&(check_spec){.cell = cells[c], .bidir = true, .lengths = lens});
}

static void test_gradgradcheck_bidirectional(void **s) {
  (void)s;
  check_stack(&(check_spec){.cell = &cr_cell_gru, .bidir = true, .lengths = lens, .second = true});
  check_stack(&(check_spec){.cell = &mgu_cell, .bidir = true, .second = true});
}

/* proj_size, alone and with everything else; first and second derivatives */
static void test_gradcheck_projection(void **s) {
  (void)s;
  check_stack(&(check_spec){.cell = &cr_cell_lstm, .proj = 2});
  check_stack(&(check_spec){.cell = &cr_cell_lstm, .proj = 3, .bidir = true, .lengths = lens});
  check_stack(
      &(check_spec){.cell = &cr_cell_lstm, .proj = 2, .bidir = true, .lengths = lens, .ckpt = 2});
  check_stack(&(check_spec){
      .cell = &cr_cell_lstm, .proj = 2, .bidir = true, .lengths = lens, .second = true});
}

/* the layer-normalised LSTM unrolled, with lengths; and its second derivatives */
static void test_gradcheck_lstm_ln(void **s) {
  (void)s;
  check_stack(&(check_spec){.cell = &cr_cell_lstm_ln, .lengths = lens});
  check_stack(&(check_spec){.cell = &cr_cell_lstm_ln, .ckpt = 2});
  check_stack(&(check_spec){.cell = &cr_cell_lstm_ln, .lengths = lens, .second = true});
}

/* attention inside the recurrence: gradients reach the encoder's outputs,
 * also through checkpointed segments and the reverse direction */
static void test_gradcheck_attention_cell(void **s) {
  (void)s;
  check_stack(&(check_spec){.cell = &attn_cell, .layers = 1, .attention = true});
  check_stack(&(check_spec){
      .cell = &attn_cell, .bidir = true, .lengths = lens, .ckpt = 2, .attention = true});
  check_stack(&(check_spec){.cell = &attn_cell, .layers = 1, .attention = true, .second = true});
}

/* ---- checkpointed = full BPTT, bit for bit, with extras ----------------- */

/* Every gradient (parameters, input, h0, encoder outputs) of a loss, with
 * opts' checkpointing, as raw bytes into buf; returns the byte count. */
static size_t attention_grads(cr_dtype dt, bool bidir, const int64_t *lengths, int64_t every,
                              unsigned char *buf) {
  enum { TT = 11, BB = 3 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(21), *drop = cr_rng_new(4);
  cr_rnn_config cfg = {&attn_cell, I, H, 2, 0.25, false, dt};
  cr_rnn_variant var = {.bidirectional = bidir};
  cr_rnn *rnn = cr_rnn_new_ex(ctx, &cfg, &var, rng);
  assert_non_null(rnn);
  const int D = bidir ? 2 : 1;
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(TT, BB, I), 0, 1));
  cr_tensor *h0 = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(2 * D, BB, H), 0, .5));
  cr_tensor *enc = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(BB, S_ENC, ENC_E), 0, 1));
  cr_tensor *w = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(TT, BB, D * H), 0, 1));
  cr_set_requires_grad(x, true);
  cr_set_requires_grad(h0, true);
  cr_set_requires_grad(enc, true);
  attn_user u = {1.3};
  cr_cell_extra ex = {&u, 1, &enc};
  cr_rnn_forward_opts o = {.checkpoint_every = every, .projection_block = 2, .extra = &ex};
  cr_tensor *out, *fin[1];
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, &h0, lengths, drop, &o, &out, fin), CR_OK);
  cr_tensor *loss =
      cr_add(ctx, cr_sum(ctx, cr_mul(ctx, out, w)), cr_sum(ctx, cr_square(ctx, fin[0])));
  assert_int_equal(cr_backward(ctx, loss), CR_OK);
  size_t nb = 0, es = cr_dtype_size(dt);
  for (int i = 0; i < cr_rnn_num_params(rnn) + 3; i++) {
    const cr_tensor *g = cr_grad(i < cr_rnn_num_params(rnn)
                                     ? cr_rnn_param(rnn, i)
                                     : (cr_tensor *[]){x, h0, enc}[i - cr_rnn_num_params(rnn)]);
    assert_non_null(g);
    memcpy(buf + nb, cr_data_const(g), (size_t)cr_numel(g) * es);
    nb += (size_t)cr_numel(g) * es;
  }
  cr_tensor *own[] = {x, h0, enc, w};
  for (int i = 0; i < 4; i++)
    cr_tensor_free(own[i]);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_rng_free(drop);
  cr_ctx_free(ctx);
  return nb;
}

static void test_attention_checkpointed_is_bit_identical(void **s) {
  (void)s;
  static unsigned char full[1 << 16], ckpt[1 << 16];
  const int64_t lengths[3] = {11, 4, 7};
  int checked = 0;
  for (int v = 0; v < 4; v++) { /* f64 / f32 x unidirectional / bidirectional + lengths */
    cr_dtype dt = v & 1 ? CR_F32 : CR_F64;
    bool bidir = v & 2;
    for (int64_t K = 2; K <= 6; K += 4) {
      size_t nf = attention_grads(dt, bidir, bidir ? lengths : NULL, 0, full);
      size_t nk = attention_grads(dt, bidir, bidir ? lengths : NULL, K, ckpt);
      assert_int_equal(nf, nk);
      if (memcmp(full, ckpt, nf) != 0)
        fail_msg("attention cell variant %d, segments of %lld: checkpointed gradients (encoder "
                 "outputs included) differ from full BPTT",
                 v, (long long)K);
      checked++;
    }
  }
  printf("attention cell, 2 layers + dropout: checkpointed vs full BPTT, %d cases (f64/f32, "
         "bidirectional with lengths), every gradient incl. the encoder outputs' identical "
         "(memcmp)\n",
         checked);
}

/* ---- the reverse direction is the packed-sequence reverse pass ---------- */

/* Sequence b of a padded bidirectional batch: the forward half equals a
 * forward-only stack on x[0:len_b], the reverse half at time t equals a
 * forward-only stack (the reverse parameters) on x[len_b-1..0] at step
 * len_b-1-t, padded outputs are 0, and h_n's reverse row is that stack's
 * last state: the reverse pass starts at each sequence's own last step. */
static void test_reverse_direction_semantics(void **s) {
  (void)s;
  enum { TT = 6, BB = 3, II = 2, HH = 3 };
  const int64_t lengths[BB] = {6, 2, 4};
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(17);
  cr_rnn_config cfg = {&cr_cell_lstm, II, HH, 1, 0, false, CR_F64};
  cr_rnn_variant var = {.bidirectional = true};
  cr_rnn *bi = cr_rnn_new_ex(ctx, &cfg, &var, rng);
  cr_rnn *fw = cr_rnn_new(ctx, &cfg, rng), *rv = cr_rnn_new(ctx, &cfg, rng);
  for (int i = 0; i < 4; i++) { /* fw = the forward half, rv = the reverse half */
    assert_int_equal(cr_copy_into(ctx, cr_rnn_param(fw, i), cr_rnn_param(bi, i)), CR_OK);
    assert_int_equal(cr_copy_into(ctx, cr_rnn_param(rv, i), cr_rnn_param(bi, 4 + i)), CR_OK);
  }
  assert_string_equal(cr_rnn_param_name(bi, 5), "weight_hh_l0_reverse");
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(TT, BB, II), 0, 1);
  cr_tensor *out, *fin[2];
  assert_int_equal(cr_rnn_forward(ctx, bi, x, NULL, lengths, NULL, &out, fin), CR_OK);
  assert_int_equal(cr_dim(out, 2), 2 * HH);
  assert_int_equal(cr_dim(fin[0], 0), 2);
  double worst = 0;
  for (int64_t b = 0; b < BB; b++) {
    const int64_t n = lengths[b];
    int64_t rev_idx[TT];
    for (int64_t t = 0; t < n; t++)
      rev_idx[t] = n - 1 - t;
    cr_tensor *xb = cr_slice(ctx, cr_slice(ctx, x, 1, b, b + 1, 1), 0, 0, n, 1); /* [n,1,I] */
    cr_tensor *xr = cr_index_select(ctx, xb, 0, rev_idx, n);
    cr_tensor *of, *orv, *ff[2], *fr[2];
    assert_int_equal(cr_rnn_forward(ctx, fw, xb, NULL, NULL, NULL, &of, ff), CR_OK);
    assert_int_equal(cr_rnn_forward(ctx, rv, xr, NULL, NULL, NULL, &orv, fr), CR_OK);
    for (int64_t t = 0; t < TT; t++)
      for (int64_t j = 0; j < HH; j++) {
        double f = cr_get(out, (const int64_t[]){t, b, j});
        double r = cr_get(out, (const int64_t[]){t, b, HH + j});
        double fe = t < n ? cr_get(of, (const int64_t[]){t, 0, j}) : 0.0;
        double re = t < n ? cr_get(orv, (const int64_t[]){n - 1 - t, 0, j}) : 0.0;
        if (t >= n)
          assert_true(f == 0.0 && r == 0.0);
        worst = fmax(worst, fmax(fabs(f - fe), fabs(r - re)));
      }
    for (int st = 0; st < 2; st++)
      for (int64_t j = 0; j < HH; j++) {
        worst = fmax(worst, fabs(cr_get(fin[st], (const int64_t[]){0, b, j}) -
                                 cr_get(ff[st], (const int64_t[]){0, 0, j})));
        worst = fmax(worst, fabs(cr_get(fin[st], (const int64_t[]){1, b, j}) -
                                 cr_get(fr[st], (const int64_t[]){0, 0, j})));
      }
  }
  printf("bidirectional lstm, lengths 6,2,4: each sequence's halves vs forward-only stacks on it "
         "and on it reversed: max difference %.2e\n",
         worst);
  assert_true(worst < 1e-13);
  cr_rnn_free(bi);
  cr_rnn_free(fw);
  cr_rnn_free(rv);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- step states of both directions, and their gradients ---------------- */

static void test_bidirectional_step_states(void **s) {
  (void)s;
  enum { SS = 2, D = 2 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(6);
  cr_rnn_config cfg = {&cr_cell_lstm, I, H, L, 0.0, false, CR_F64};
  cr_rnn_variant var = {.bidirectional = true, .proj_size = 2};
  cr_rnn *rnn = cr_rnn_new_ex(ctx, &cfg, &var, rng);
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1);
  cr_tensor *w = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, D * 2), 0, 1);
  cr_tensor *states[L * D * SS * T], *out;
  int64_t chosen[L * D];
  cr_rnn_forward_opts o = {
      .step_states = states, .retain_step_grads = true, .checkpoint_chosen = chosen};
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, lens, NULL, &o, &out, NULL), CR_OK);
  /* [((l * D + d) * S + s) * T + t] */
  assert_string_equal(cr_name(states[((0 * D + 0) * SS + 0) * T + 3]), "h_3");
  assert_string_equal(cr_name(states[((0 * D + 1) * SS + 0) * T + 3]), "h_3_reverse");
  assert_string_equal(cr_name(states[((1 * D + 1) * SS + 1) * T + 2]), "c_l1_2_reverse");
  /* the ops of a reverse step are in the scope "... reverse" */
  assert_string_equal(cr_scope_of(states[((0 * D + 1) * SS + 1) * T + 1]), "step 1 reverse");
  assert_string_equal(cr_scope_of(states[((1 * D + 1) * SS + 1) * T + 2]),
                      "layer 1 step 2 reverse");
  assert_int_equal(cr_dim(states[((1 * D + 1) * SS + 0) * T + 2], 1), 2); /* h is [B, P] */
  assert_int_equal(cr_dim(states[((1 * D + 1) * SS + 1) * T + 2], 1), H); /* c is [B, H] */
  for (int i = 0; i < L * D; i++)
    assert_int_equal(chosen[i], 0);
  cr_tensor *loss = cr_sum(ctx, cr_mul(ctx, out, w));
  cr_tensor *indep[L * D * SS * T];
  cr_autograd_opts zo = {.zeros_for_unused = true};
  assert_int_equal(cr_autograd_grad(ctx, 1, &loss, NULL, L * D * SS * T, states, &zo, indep),
                   CR_OK);
  assert_int_equal(cr_backward(ctx, loss), CR_OK);
  double worst = 0;
  int none = 0;
  for (int i = 0; i < L * D * SS * T; i++) {
    const cr_tensor *g = cr_grad(states[i]); /* NULL: nothing reached it (0) */
    none += !g;
    assert_true(g || i % T == T - 1);
    for (int64_t k = 0; k < cr_numel(indep[i]); k++)
      worst = fmax(worst, fabs((g ? cr_get_flat(g, k) : 0.0) - cr_get_flat(indep[i], k)));
  }
  /* the states after a masked last step feed nothing but h_n, c_n (not in
   * the loss; the output is m * h of the unmasked h): no gradient */
  assert_int_equal(none, L * D * SS);
  printf("dL/dh_t, dL/dc_t of both directions of both layers: max difference to "
         "cr_autograd_grad %.2e\n",
         worst);
  assert_true(worst < 1e-13);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- names, shapes, messages -------------------------------------------- */

static void test_variant_names_and_errors(void **s) {
  (void)s;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_rnn_config cfg = {&cr_cell_lstm, 3, 4, 2, 0.0, false, CR_F64};
  cr_rnn_variant var = {.bidirectional = true, .proj_size = 2};
  cr_rnn *rnn = cr_rnn_new_ex(ctx, &cfg, &var, rng);
  assert_non_null(rnn);
  static const char *const want[] = {
      "weight_ih_l0",         "weight_hh_l0",         "bias_ih_l0",
      "bias_hh_l0",           "weight_hr_l0",         "weight_ih_l0_reverse",
      "weight_hh_l0_reverse", "bias_ih_l0_reverse",   "bias_hh_l0_reverse",
      "weight_hr_l0_reverse", "weight_ih_l1",         "weight_hh_l1",
      "bias_ih_l1",           "bias_hh_l1",           "weight_hr_l1",
      "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse",
      "bias_hh_l1_reverse",   "weight_hr_l1_reverse"};
  assert_int_equal(cr_rnn_num_params(rnn), 20);
  for (int i = 0; i < 20; i++)
    assert_string_equal(cr_rnn_param_name(rnn, i), want[i]);
  assert_int_equal(cr_dim(cr_rnn_find_param(rnn, "weight_hh_l0"), 1), 2);         /* [4H, P] */
  assert_int_equal(cr_dim(cr_rnn_find_param(rnn, "weight_hr_l1_reverse"), 0), 2); /* [P, H] */
  assert_int_equal(cr_dim(cr_rnn_find_param(rnn, "weight_hr_l1_reverse"), 1), 4);
  assert_int_equal(cr_dim(cr_rnn_find_param(rnn, "weight_ih_l1"), 1), 4); /* 2 directions x P */
  assert_true(cr_rnn_get_variant(rnn)->bidirectional);
  assert_int_equal(cr_rnn_get_variant(rnn)->proj_size, 2);

  cr_tensor *x = cr_zeros(ctx, CR_F64, CR_SHAPE(5, 2, 3)), *out;
  cr_tensor *init[2] = {cr_zeros(ctx, CR_F64, CR_SHAPE(2, 2, 2)), NULL};
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, init, NULL, NULL, &out, NULL), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "rnn_forward: initial state 0 [2,2,2] f64: expected "
                                         "[4,2,2] f64 (num_layers * 2 directions first)");
  cr_ctx_clear_error(ctx);
  init[0] = cr_zeros(ctx, CR_F64, CR_SHAPE(4, 2, 2));
  init[1] = cr_zeros(ctx, CR_F64, CR_SHAPE(4, 2, 2)); /* c is [.., H], not [.., P] */
  assert_int_equal(cr_rnn_forward(ctx, rnn, x, init, NULL, NULL, &out, NULL), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "rnn_forward: initial state 1 [4,2,2] f64: expected "
                                         "[4,2,4] f64 (num_layers * 2 directions first)");
  cr_ctx_clear_error(ctx);
  cr_rnn_variant other = {.bidirectional = true};
  cr_rnn_forward_opts o = {.variant = &other};
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx),
                      "rnn_forward: opts->variant (bidirectional 1, "
                      "proj_size 0) is not the rnn's (1, 2); it is for cr_rnn_forward_params_ex");
  cr_ctx_clear_error(ctx);
  cr_cell_extra ex = {NULL, 1, NULL};
  o = (cr_rnn_forward_opts){.extra = &ex};
  assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "rnn_forward: extra has 1 tensors and tensors NULL");
  cr_ctx_clear_error(ctx);
  /* the functional form checks every parameter against the variant */
  cr_tensor *params[20];
  for (int i = 0; i < 20; i++)
    params[i] = cr_rnn_param(rnn, i);
  params[9] = cr_rnn_param(rnn, 0);
  o = (cr_rnn_forward_opts){.variant = &var};
  assert_int_equal(cr_rnn_forward_params_ex(ctx, &cfg, params, x, NULL, NULL, NULL, &o, &out, NULL),
                   CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "rnn_forward: parameter weight_hr_l0_reverse is [16,3] "
                                         "'weight_ih_l0' f64, expected [2,4] f64");
  cr_ctx_clear_error(ctx);

  /* proj_size: lstm only, and smaller than hidden_size (PyTorch's rules) */
  cfg.cell = &cr_cell_gru;
  assert_null(cr_rnn_new_ex(ctx, &cfg, &(cr_rnn_variant){.proj_size = 2}, rng));
  assert_string_equal(cr_ctx_error(ctx), "rnn_new: proj_size 2 with cell 'gru': proj_size is an "
                                         "lstm option (0 to turn it off)");
  cr_ctx_clear_error(ctx);
  cfg.cell = &cr_cell_lstm;
  assert_null(cr_rnn_new_ex(ctx, &cfg, &(cr_rnn_variant){.proj_size = 4}, rng));
  assert_string_equal(cr_ctx_error(ctx), "rnn_new: proj_size 4 must be < hidden_size 4");
  cr_ctx_clear_error(ctx);
  assert_null(cr_rnn_new_ex(ctx, &cfg, &(cr_rnn_variant){.proj_size = -1}, rng));
  assert_string_equal(cr_ctx_error(ctx), "rnn_new: proj_size -1 with cell 'lstm': proj_size is "
                                         "an lstm option (0 to turn it off)");
  cr_ctx_clear_error(ctx);
  assert_ptr_equal(cr_cell_by_name("lstm_ln"), &cr_cell_lstm_ln);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

/* ---- the layer-normalised LSTM learns ----------------------------------- */

/* Output the bit seen DELAY steps ago: chance is ln 2 = 0.693 nats. */
static double train_memory_task(const cr_cell_def *cell, int steps, double *acc) {
  enum { TT = 16, BB = 16, HH = 16, DELAY = 4 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(5);
  cr_rnn_config cfg = {cell, 1, HH, 1, 0, false, CR_F32};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *Wo = cr_tensor_new(ctx, CR_F32, CR_SHAPE(2, HH)),
            *bo = cr_tensor_new(ctx, CR_F32, CR_SHAPE(2));
  assert_non_null(rnn);
  assert_int_equal(cr_fill_uniform(ctx, Wo, rng, -0.2, 0.2), CR_OK);
  assert_int_equal(cr_fill(ctx, bo, 0), CR_OK);
  cr_set_requires_grad(Wo, true);
  cr_set_requires_grad(bo, true);
  cr_tensor *params[16];
  int np = 0;
  for (int i = 0; i < cr_rnn_num_params(rnn); i++)
    params[np++] = cr_rnn_param(rnn, i);
  params[np++] = Wo;
  params[np++] = bo;
  cr_optim_opts oo;
  cr_optim_default_opts(CR_ADAM, &oo);
  oo.lr = 2e-2;
  cr_optim *opt = cr_optim_new(ctx, &oo, params, np);
  float bits[TT * BB];
  int64_t target[TT * BB];
  double loss_sum = 0;
  int right = 0, counted = 0;
  for (int step = 1; step <= steps; step++) {
    for (int i = 0; i < TT * BB; i++)
      bits[i] = (float)(cr_rng_uniform(rng) < 0.5);
    for (int t = DELAY; t < TT; t++)
      for (int b = 0; b < BB; b++)
        target[t * BB + b] = (int64_t)bits[(t - DELAY) * BB + b];
    cr_tensor *x = cr_from_array(ctx, CR_F32, CR_SHAPE(TT, BB, 1), bits), *h;
    assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &h, NULL), CR_OK);
    cr_tensor *hs = cr_reshape(ctx, cr_slice(ctx, h, 0, DELAY, TT, 1), CR_SHAPE(-1, HH));
    cr_tensor *logits = cr_linear(ctx, hs, Wo, bo);
    cr_tensor *loss = cr_cross_entropy(ctx, logits, target + DELAY * BB, CR_NO_IGNORE);
    cr_optim_zero_grad(opt);
    assert_int_equal(cr_backward(ctx, loss), CR_OK);
    assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    if (step > steps - 10) { /* the last 10 batches */
      loss_sum += cr_item(loss);
      for (int64_t i = 0; i < (TT - DELAY) * BB; i++, counted++)
        right += (cr_get_flat(logits, 2 * i + 1) > cr_get_flat(logits, 2 * i)) ==
                 (target[DELAY * BB + i] == 1);
    }
    cr_ctx_reset(ctx);
  }
  *acc = (double)right / counted;
  cr_optim_free(opt);
  cr_tensor_free(Wo);
  cr_tensor_free(bo);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return loss_sum / 10;
}

static void test_lstm_ln_learns(void **s) {
  (void)s;
  double acc;
  double loss = train_memory_task(&cr_cell_lstm_ln, 150, &acc);
  printf("lstm_ln, recall the bit of 4 steps ago, 150 Adam steps: loss %.4f (chance 0.6931), "
         "accuracy %.1f%%\n",
         loss, 100 * acc);
  assert_true(loss < 0.1);
  assert_true(acc > 0.97);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradcheck_bidirectional),
      cmocka_unit_test(test_gradgradcheck_bidirectional),
      cmocka_unit_test(test_gradcheck_projection),
      cmocka_unit_test(test_gradcheck_lstm_ln),
      cmocka_unit_test(test_gradcheck_attention_cell),
      cmocka_unit_test(test_attention_checkpointed_is_bit_identical),
      cmocka_unit_test(test_reverse_direction_semantics),
      cmocka_unit_test(test_bidirectional_step_states),
      cmocka_unit_test(test_variant_names_and_errors),
      cmocka_unit_test(test_lstm_ln_learns),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
