/* lstm_ln.c — the layer-normalised LSTM (Ba, Kiros and Hinton 2016,
 * "Layer Normalization", eq. 20-22; per-gate statistics as KANN's
 * kann_layer_lstm with KANN_RNN_NORM), gates i, f, g, o:
 *   [i f g o] = LN_4(x W_ih^T) * ln_ih_weight + bias_ih
 *             + LN_4(h W_hh^T) * ln_hh_weight + bias_hh
 *   c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
 *   h' = sigmoid(o) * tanh(LN(c') * ln_c_weight + ln_c_bias)
 * LN_4 normalises each gate's H pre-activations on its own (mean 0,
 * variance 1, eps 1e-5); the state c' itself is not normalised, only what
 * feeds the output.  The input half, LN_4(x W_ih^T) * ln_ih_weight +
 * bias_ih + bias_hh, is computed for a whole block of steps at once. */
#include "gated.h"
#include "layer_norm.h"

enum { W_IH, W_HH, B_IH, B_HH, G_IH, G_HH, G_C, B_C };
#define LN_EPS 1e-5

static void shape(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  *nd = i <= W_HH ? 2 : 1;
  s[0] = i >= G_C ? H : 4 * H;
  if (i == W_IH)
    s[1] = I;
  else if (i == W_HH)
    s[1] = H;
}

/* weights U(-1/sqrt(H), 1/sqrt(H)); gains 1; biases 0, the forget gate's
 * bias_ih 1 (Jozefowicz et al. 2015) */
static cr_status init(cr_ctx *ctx, int i, cr_tensor *p, int64_t H, cr_rng *rng) {
  const double k = 1.0 / sqrt((double)H);
  if (i <= W_HH)
    return cr_fill_uniform(ctx, p, rng, -k, k);
  cr_status st = cr_fill(ctx, p, i == G_IH || i == G_HH || i == G_C ? 1.0 : 0.0);
  for (int64_t j = H; st == CR_OK && i == B_IH && j < 2 * H; j++)
    cr_set_flat(p, j, 1.0);
  return st;
}

/* x_all [T,B,I] -> LN_4(x W_ih^T) * ln_ih_weight + (bias_ih + bias_hh)  [T,B,4H] */
static cr_tensor *precompute(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x_all) {
  cr_tensor *const *p = L->params;
  cr_tensor *n = cr__layer_norm_groups(ctx, cr_linear(ctx, x_all, p[W_IH], NULL), 4, LN_EPS);
  return cr_add(ctx, cr_mul(ctx, n, p[G_IH]), cr_add(ctx, p[B_IH], p[B_HH]));
}

static cr_status step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp, cr_tensor *const *state,
                      cr_tensor **new_state, cr_tensor **out) {
  cr_tensor *const *p = L->params;
  cr_tensor *h = state[0], *c = state[1];
  /* gates = xp + LN_4(h W_hh^T) * ln_hh_weight   [B, 4H] */
  cr_tensor *hn = cr__layer_norm_groups(ctx, cr__gated_recurrent(ctx, L, h), 4, LN_EPS);
  cr_tensor *gates = cr_add(ctx, xp, cr_mul(ctx, hn, p[G_HH]));
  /* c' = f * c + i * g, with i, f, g = sigmoid, sigmoid, tanh of the
   * gates' first three column blocks; o of the fourth */
  cr_tensor *c2 = cr__lstm_cell_update(ctx, gates, c);
  const int64_t H = c->shape[1];
  cr_tensor *o = cr_sigmoid(ctx, cr_slice(ctx, gates, 1, 3 * H, 4 * H, 1));
  /* h' = o * tanh(LN(c') * ln_c_weight + ln_c_bias) */
  cr_tensor *cn = cr_add(ctx, cr_mul(ctx, cr__layer_norm(ctx, c2, LN_EPS), p[G_C]), p[B_C]);
  cr_tensor *h2 = cr_mul(ctx, o, cr_tanh(ctx, cn));
  new_state[0] = *out = h2;
  new_state[1] = c2;
  return h2 ? CR_OK : cr_ctx_status(ctx);
}

const cr_cell_def cr_cell_lstm_ln = {.name = "lstm_ln",
                                     .n_states = 2,
                                     .state_names = {"h", "c"},
                                     .n_params = 8,
                                     .param_names = {"weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                     "ln_ih_weight", "ln_hh_weight", "ln_c_weight",
                                                     "ln_c_bias"},
                                     .param_shape = shape,
                                     .init_param = init,
                                     .precompute = precompute,
                                     .prepare = cr__gated_prepare,
                                     .step = step};
