/* lstm.c — PyTorch's nn.LSTM cell, gates in the order i, f, g, o:
 *   i = sigmoid(x W_ii^T + b_ii + h W_hi^T + b_hi)
 *   f = sigmoid(x W_if^T + b_if + h W_hf^T + b_hf)
 *   g = tanh   (x W_ig^T + b_ig + h W_hg^T + b_hg)
 *   o = sigmoid(x W_io^T + b_io + h W_ho^T + b_ho)
 *   c' = f * c + i * g
 *   h' = o * tanh(c')
 * and, with proj_size P (PyTorch's LSTM with projections, Sak et al. 2014),
 *   h' = (o * tanh(c')) W_hr^T         W_hr [P, H], so h is [B, P]
 * The four gates come from one product each for x (all steps at once,
 * precomputed) and h, split into four column blocks. */
#include "gated.h"

#include <pthread.h>

#include "chainrule/fused.h"

static void shape4(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  cr__gated_param_shape(4, i, I, H, nd, s);
}

/* weight_ih [4H, I], weight_hh [4H, P], biases [4H], weight_hr [P, H] */
void cr__lstm_proj_shape(int i, const cr_cell_layer *L, int *nd, int64_t *s) {
  const int64_t H = L->hidden_size, P = L->proj_size;
  if (i == CR__W_HR) {
    *nd = 2;
    s[0] = P;
    s[1] = H;
    return;
  }
  cr__gated_param_shape(4, i, L->input_size, H, nd, s);
  if (i == CR__W_HH)
    s[1] = P;
}

/* The elementwise part of a step as two fused chains (chainrule/fused.h)
 * over the gates' four column blocks [pre_i, pre_f, pre_g, pre_o] — the
 * same ops and bits as written out, two nodes instead of thirteen (the
 * four gate views, four maps, three products, a sum and a tanh):
 *   c' = sigmoid(pre_f) * c + sigmoid(pre_i) * tanh(pre_g)   slots 0-3 gates, 4 c
 *   h' = sigmoid(pre_o) * tanh(c')                           slots 0-3 gates, 4 c' */
static cr_fused *chain_c, *chain_h;
static pthread_once_t chains_once = PTHREAD_ONCE_INIT;

static void make_chains(void) {
  const int blocks[2] = {4, 1};
  cr_fused *c = cr_fused_new_blocks(2, blocks), *h = cr_fused_new_blocks(2, blocks);
  if (c) {
    const int i = cr_fused_op(c, "sigmoid", 0, -1, 0, 0),
              f = cr_fused_op(c, "sigmoid", 1, -1, 0, 0);
    const int g = cr_fused_op(c, "tanh", 2, -1, 0, 0);
    const int fc = cr_fused_op(c, "mul", f, 4, 0, 0), ig = cr_fused_op(c, "mul", i, g, 0, 0);
    cr_fused_op(c, "add", fc, ig, 0, 0);
  }
  if (h) {
    const int o = cr_fused_op(h, "sigmoid", 3, -1, 0, 0);
    cr_fused_op(h, "mul", o, cr_fused_op(h, "tanh", 4, -1, 0, 0), 0, 0);
  }
  chain_c = c;
  chain_h = h;
}

cr_tensor *cr__lstm_cell_update(cr_ctx *ctx, cr_tensor *gates, cr_tensor *c) {
  pthread_once(&chains_once, make_chains);
  return cr_fused_apply(ctx, chain_c, (cr_tensor *[]){gates, c});
}

static cr_status lstm_step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp,
                           cr_tensor *const *state, cr_tensor **new_state, cr_tensor **out) {
  cr_tensor *h = state[0], *c = state[1];
  /* all four pre-activations [B, 4H]: xp = x W_ih^T + b_ih + b_hh for
   * every step was computed at once (precompute); add h W_hh^T */
  cr_tensor *gates = cr__gated_preact(ctx, L, xp, h);
  cr_tensor *c2 = cr__lstm_cell_update(ctx, gates, c);
  cr_tensor *h2 = c2 ? cr_fused_apply(ctx, chain_h, (cr_tensor *[]){gates, c2}) : NULL;
  if (h2 && L->proj_size)
    h2 = cr__gated_project(ctx, L, h2);
  new_state[0] = *out = h2;
  new_state[1] = c2;
  return h2 ? CR_OK : cr_ctx_status(ctx);
}

const cr_cell_def cr_cell_lstm = {.name = "lstm",
                                  .n_states = 2,
                                  .state_names = {"h", "c"},
                                  .n_params = 4,
                                  .param_names = CR__GATED_PARAM_NAMES,
                                  .param_shape = shape4,
                                  .precompute = cr__gated_precompute_both_biases,
                                  .prepare = cr__gated_prepare,
                                  .step = lstm_step};

/* the same cell with weight_hr (shapes from cr__lstm_proj_shape) */
const cr_cell_def cr__cell_lstm_proj = {
    .name = "lstm",
    .n_states = 2,
    .state_names = {"h", "c"},
    .n_params = 5,
    .param_names = {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"},
    .param_shape = shape4,
    .precompute = cr__gated_precompute_both_biases,
    .prepare = cr__gated_prepare,
    .step = lstm_step};
