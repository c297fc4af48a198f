/* gated.h — helpers shared by the built-in cells (see gated.c). */
#ifndef CHAINRULE_GATED_H
#define CHAINRULE_GATED_H

#include "chainrule/rnn.h"
#include "internal.h"

enum { CR__W_IH, CR__W_HH, CR__B_IH, CR__B_HH, CR__W_HR };
#define CR__GATED_PARAM_NAMES                                                                      \
  { "weight_ih", "weight_hh", "bias_ih", "bias_hh" }

/* PyTorch's LSTM with proj_size (lstm.c): the lstm's four parameters and
 * weight_hr [P, H]; weight_hh is [4H, P].  The driver uses it when
 * proj_size > 0 and asks cr__lstm_proj_shape for the shapes. */
extern const cr_cell_def cr__cell_lstm_proj;
void cr__lstm_proj_shape(int i, const cr_cell_layer *L, int *ndim, int64_t *shape);
/* r @ W_hr^T  [B, P]: the projection, through a view made once per forward */
cr_tensor *cr__gated_project(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *r);

void cr__gated_param_shape(int G, int i, int64_t I, int64_t H, int *ndim, int64_t *shape);
cr_tensor *cr__gated_precompute(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x_all);
cr_status cr__gated_prepare(cr_ctx *ctx, cr_cell_layer *L);
cr_tensor *cr__gated_precompute_both_biases(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x_all);
cr_tensor *cr__gated_preact(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp, cr_tensor *h);
cr_tensor *cr__gated_recurrent(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *h);
cr_tensor *cr__gated_hidden_proj(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *h);
/* An LSTM's c' = sigmoid(pre_f) * c + sigmoid(pre_i) * tanh(pre_g) over
 * gates [B, 4H] = [pre_i, pre_f, pre_g, pre_o], as one fused chain
 * (lstm.c; the layer-normalised LSTM shares it). */
cr_tensor *cr__lstm_cell_update(cr_ctx *ctx, cr_tensor *gates, cr_tensor *c);

#endif
