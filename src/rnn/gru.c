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
  const int64_t H = h->shape[1], sizes[2] = {2 * H, H};
  cr_tensor *x2[2], *h2s[2], *rz[2];
  /* x W_i*^T + b_i*  and  h W_h*^T + b_h*, each [B, 3H]: r and z side by
   * side ([B, 2H], one add and one sigmoid for both), then n */
  cr_status st = cr_split(ctx, xp, 1, sizes, 2, x2);
  if (st == CR_OK)
    st = cr_split(ctx, cr__gated_hidden_proj(ctx, L, h), 1, sizes, 2, h2s);
  if (st == CR_OK)
    st = cr_chunk(ctx, cr_sigmoid(ctx, cr_add(ctx, x2[0], h2s[0])), 2, 1, rz);
  if (st != CR_OK)
    return st;
  cr_tensor *r = rz[0], *z = rz[1];
  cr_tensor *n = cr_tanh(ctx, cr_add(ctx, x2[1], cr_mul(ctx, r, h2s[1])));
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
