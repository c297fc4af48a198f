/* gru.c — PyTorch's nn.GRU cell, gates in the order r, z, n:
 *   r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
 *   z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
 *   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
 *   h' = (1 - z) * n + z * h
 * Note r multiplies the hidden projection including its bias b_hn. */
#include "gated.h"

#include <pthread.h>

#include "chainrule/fused.h"

static void shape3(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  cr__gated_param_shape(3, i, I, H, nd, s);
}

/* The elementwise part of a step as one fused chain (chainrule/fused.h),
 * the same ops and bits as written out, over the column blocks of
 * xp = [x_r, x_z, x_n] (slots 0-2) and hp = h W_hh^T + b_hh = [h_r, h_z,
 * h_n] (slots 3-5), and h (slot 6):
 *   r = sigmoid(x_r + h_r);  z = sigmoid(x_z + h_z);  n = tanh(x_n + r * h_n)
 *   h' = n + z * (h - n)                 (= (1 - z) * n + z * h, one op fewer) */
static cr_fused *chain;
static pthread_once_t chain_once = PTHREAD_ONCE_INIT;

static void make_chain(void) {
  const int blocks[3] = {3, 3, 1}; /* xp, hp: three column blocks each; h */
  cr_fused *f = cr_fused_new_blocks(3, blocks);
  if (f) {
    const int r = cr_fused_op(f, "sigmoid", cr_fused_op(f, "add", 0, 3, 0, 0), -1, 0, 0);
    const int z = cr_fused_op(f, "sigmoid", cr_fused_op(f, "add", 1, 4, 0, 0), -1, 0, 0);
    const int n = cr_fused_op(
        f, "tanh", cr_fused_op(f, "add", 2, cr_fused_op(f, "mul", r, 5, 0, 0), 0, 0), -1, 0, 0);
    cr_fused_op(f, "add", n, cr_fused_op(f, "mul", z, cr_fused_op(f, "sub", 6, n, 0, 0), 0, 0), 0,
                0);
  }
  chain = f;
}

static cr_status gru_step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp,
                          cr_tensor *const *state, cr_tensor **new_state, cr_tensor **out) {
  cr_tensor *h = state[0];
  pthread_once(&chain_once, make_chain);
  cr_tensor *h2 =
      cr_fused_apply(ctx, chain, (cr_tensor *[]){xp, cr__gated_hidden_proj(ctx, L, h), h});
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
