/* gated.c — what the built-in cells share: PyTorch's four parameters per
 * layer with G gates stacked along the rows,
 *   weight_ih [G*H, I], weight_hh [G*H, H], bias_ih [G*H], bias_hh [G*H],
 * the input projections of all T steps in one product, and the recurrent
 * weight's transposed view made once per forward. */
#include "gated.h"

void cr__gated_param_shape(int G, int i, int64_t I, int64_t H, int *ndim, int64_t *shape) {
  shape[0] = G * H;
  switch (i) {
  case CR__W_IH:
    *ndim = 2;
    shape[1] = I;
    break;
  case CR__W_HH:
    *ndim = 2;
    shape[1] = H;
    break;
  default: *ndim = 1; break; /* biases */
  }
}

/* x_all [T,B,I] -> x_all @ W_ih^T + b_ih  [T,B,G*H]: one product for all T */
cr_tensor *cr__gated_precompute(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x_all) {
  return cr_linear(ctx, x_all, L->params[CR__W_IH], L->params[CR__B_IH]);
}

/* What prepare makes once per forward. */
typedef struct {
  cr_tensor *whh_t;     /* W_hh^T [H_out, G*H], a view */
  cr_tensor *both_bias; /* b_ih + b_hh [G*H] */
  cr_tensor *whr_t;     /* W_hr^T [H, P], a view (lstm with proj_size), or NULL */
} prepared;

/* For cells where both biases simply add (rnn, lstm):
 *   x_all @ W_ih^T + (b_ih + b_hh)   [T,B,G*H]
 * so each step needs only  gates_t = xp_t + h @ W_hh^T  (one addmm). */
cr_tensor *cr__gated_precompute_both_biases(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x_all) {
  const prepared *p = L->scratch;
  return cr_linear(ctx, x_all, L->params[CR__W_IH], p->both_bias);
}

/* xp_t + h @ W_hh^T   [B, G*H] */
cr_tensor *cr__gated_preact(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp, cr_tensor *h) {
  return cr_addmm(ctx, xp, h, ((const prepared *)L->scratch)->whh_t);
}

/* W_hh^T [H, G*H], a transposed view made once per forward: the T steps'
 * products all use this one tensor, so the few-row kernel packs it into
 * panels once (ops/matmul.c), and its gradient is a view into W_hh's own
 * (no transposed copy either way). */
cr_status cr__gated_prepare(cr_ctx *ctx, cr_cell_layer *L) {
  prepared *p = cr__alloc(ctx, sizeof *p);
  if (!p)
    return cr_ctx_status(ctx);
  p->whh_t = cr_transpose(ctx, L->params[CR__W_HH], 0, 1);
  p->both_bias = cr_add(ctx, L->params[CR__B_IH], L->params[CR__B_HH]);
  p->whr_t = L->proj_size ? cr_transpose(ctx, L->params[CR__W_HR], 0, 1) : NULL;
  L->scratch = p;
  return p->whh_t && p->both_bias && (p->whr_t || !L->proj_size) ? CR_OK : cr_ctx_status(ctx);
}

/* r @ W_hr^T  [B, P] */
cr_tensor *cr__gated_project(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *r) {
  return cr_matmul(ctx, r, ((const prepared *)L->scratch)->whr_t);
}

/* h @ W_hh^T   [B, G*H] */
cr_tensor *cr__gated_recurrent(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *h) {
  return cr_matmul(ctx, h, ((const prepared *)L->scratch)->whh_t);
}

/* h @ W_hh^T + b_hh   [B, G*H] */
cr_tensor *cr__gated_hidden_proj(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *h) {
  return cr_addmm(ctx, L->params[CR__B_HH], h, ((const prepared *)L->scratch)->whh_t);
}
