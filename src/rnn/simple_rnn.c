/* simple_rnn.c — Elman cells, PyTorch's nn.RNN:
 *   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),  act = tanh or relu */
#include "gated.h"

static void shape1(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  cr__gated_param_shape(1, i, I, H, nd, s);
}

static cr_status step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp, cr_tensor *const *state,
                      cr_tensor **new_state, cr_tensor **out, bool relu) {
  /* a = x W_ih^T + b_ih + b_hh + h W_hh^T   (xp: all but the last term) */
  cr_tensor *a = cr__gated_preact(ctx, L, xp, state[0]);
  /* h' = act(a) */
  cr_tensor *h = relu ? cr_relu(ctx, a) : cr_tanh(ctx, a);
  new_state[0] = *out = h;
  return h ? CR_OK : cr_ctx_status(ctx);
}

static cr_status step_tanh(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp,
                           cr_tensor *const *state, cr_tensor **new_state, cr_tensor **out) {
  return step(ctx, L, xp, state, new_state, out, false);
}

static cr_status step_relu(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp,
                           cr_tensor *const *state, cr_tensor **new_state, cr_tensor **out) {
  return step(ctx, L, xp, state, new_state, out, true);
}

const cr_cell_def cr_cell_rnn_tanh = {.name = "rnn_tanh",
                                      .n_states = 1,
                                      .n_params = 4,
                                      .param_names = CR__GATED_PARAM_NAMES,
                                      .param_shape = shape1,
                                      .precompute = cr__gated_precompute_both_biases,
                                      .prepare = cr__gated_prepare,
                                      .step = step_tanh};

const cr_cell_def cr_cell_rnn_relu = {.name = "rnn_relu",
                                      .n_states = 1,
                                      .n_params = 4,
                                      .param_names = CR__GATED_PARAM_NAMES,
                                      .param_shape = shape1,
                                      .precompute = cr__gated_precompute_both_biases,
                                      .prepare = cr__gated_prepare,
                                      .step = step_relu};
