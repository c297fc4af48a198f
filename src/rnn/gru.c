/* gru.c — PyTorch's nn.GRU cell, gates in the order r, z, n:
 *   r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
 *   z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
 *   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
 *   h' = (1 - z) * n + z * h
 * Note r multiplies the hidden projection including its bias b_hn. */
#include "gated.h"

static void shape3(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  cr__gated_param_shape(3, i, I, H, nd, s);
}

static cr_status gru_step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp,
                          cr_tensor *const *state, cr_tensor **new_state, cr_tensor **out) {
  cr_tensor *h = state[0];
  cr_tensor *x3[3], *h3[3];
  /* x W_i*^T + b_i*  and  h W_h*^T + b_h*, each [B, 3H] split into r, z, n */
  cr_status st = cr_chunk(ctx, xp, 3, 1, x3);
  if (st == CR_OK)
    st = cr_chunk(ctx, cr__gated_hidden_proj(ctx, L, h), 3, 1, h3);
  if (st != CR_OK)
    return st;
  cr_tensor *r = cr_sigmoid(ctx, cr_add(ctx, x3[0], h3[0]));
  cr_tensor *z = cr_sigmoid(ctx, cr_add(ctx, x3[1], h3[1]));
  cr_tensor *n = cr_tanh(ctx, cr_add(ctx, x3[2], cr_mul(ctx, r, h3[2])));
  /* h' = (1 - z) * n + z * h, computed as n + z * (h - n) (one op fewer) */
  cr_tensor *h2 = cr_add(ctx, n, cr_mul(ctx, z, cr_sub(ctx, h, n)));
  new_state[0] = *out = h2;
  return h2 ? CR_OK : cr_ctx_status(ctx);
}

const cr_cell_def cr_cell_gru = {.name = "gru",
                                 .n_states = 1,
                                 .n_params = 4,
                                 .param_names = CR__GATED_PARAM_NAMES,
                                 .param_shape = shape3,
                                 .precompute = cr__gated_precompute,
                                 .prepare = cr__gated_prepare,
                                 .step = gru_step};
