/* chainrule/function.h — define an op of your own: a forward and its VJP.
 *
 * The equivalent of PyTorch's torch.autograd.Function.  The forward
 * computes the output's values (grad mode is off inside it, so the ops it
 * uses are not recorded); the backward returns the gradient of each input
 * given the output's gradient gy, built with ops.  Because the backward is
 * made of ops, an op defined this way works with create_graph (grad of
 * grad) as far as those ops are differentiable, and cr_gradcheck /
 * cr_gradgradcheck check it like a built-in.
 *
 * Example: a numerically stable logsumexp over the last axis of [N, C]:
 *     y = m + log sum_j exp(x_j - m)   (m = max_j x_j)
 *     gx = gy * exp(x - y)            (softmax: the derivative)
 *
 *   static cr_tensor *lse_forward(cr_ctx *ctx, cr_fn_ctx *fc,
 *                                 cr_tensor *const *in, int n, void *user) {
 *     cr_tensor *m = cr_max_axis(ctx, in[0], -1, true);           // [N,1]
 *     return cr_add(ctx, m, cr_log(ctx, cr_sum_axis(ctx,
 *                   cr_exp(ctx, cr_sub(ctx, in[0], m)), -1, true)));
 *   }
 *   static cr_status lse_backward(cr_ctx *ctx, const cr_fn_ctx *fc,
 *                                 cr_tensor *gy, cr_tensor **gx, void *user) {
 *     cr_tensor *x = cr_fn_input(fc, 0), *y = cr_fn_output(fc);
 *     gx[0] = cr_mul(ctx, gy, cr_exp(ctx, cr_sub(ctx, x, y)));    // [N,C]
 *     return cr_ctx_status(ctx);
 *   }
 *   static const cr_function_def logsumexp = {"logsumexp", 1, lse_forward,
 *                                             lse_backward};
 *   ...  cr_tensor *y = cr_function_apply(ctx, &logsumexp, &x, 1, NULL);
 *
 * (examples/custom_op.c builds, gradchecks and gradgradchecks this, and a
 * straight-through estimator.)
 */
#ifndef CHAINRULE_FUNCTION_H
#define CHAINRULE_FUNCTION_H

#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Inputs a function may take, and tensors it may save. */
#define CR_FN_MAX_INPUTS 8
#define CR_FN_MAX_SAVED 8

/* What one application of a function keeps for its backward. */
typedef struct cr_fn_ctx cr_fn_ctx;

typedef struct cr_function_def {
  const char *name; /* in messages, cr_grad_fn and graphs */
  int n_inputs;     /* 1..CR_FN_MAX_INPUTS; -1: any number up to that */
  /* The output's values from in[0..n) (all of the same dtype).  Return an
   * arena tensor made with ops (or cr_zeros and friends), or NULL with an
   * error stored in ctx.  May call cr_fn_save. */
  cr_tensor *(*forward)(cr_ctx *ctx, cr_fn_ctx *fc, cr_tensor *const *in, int n, void *user);
  /* Set gx[k] (pre-set to NULL) to the gradient of input k, a tensor of
   * in[k]'s shape and dtype built with ops from gy (the output's
   * gradient), cr_fn_input, cr_fn_output and cr_fn_saved; leave NULL for
   * an input that gets no gradient (cr_fn_needs_grad tells which need
   * one).  Return CR_OK or the error stored in ctx. */
  cr_status (*backward)(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                        void *user);
} cr_function_def;

/* Apply def to in[0..n): runs forward and, when grad mode is on and an
 * input requires grad, records a node whose VJP is def->backward.  user
 * is passed to both callbacks (it must live until backward).  Errors as
 * for the ops: NULL and a message naming def->name. */
cr_tensor *cr_function_apply(cr_ctx *ctx, const cr_function_def *def, cr_tensor *const *in, int n,
                             void *user);

/* In forward: keep t (an arena tensor) for backward.  Up to
 * CR_FN_MAX_SAVED; returns CR_ERR_ARG beyond.  Saved tensors are values
 * (no graph): to differentiate through them twice, use cr_fn_input or
 * cr_fn_output instead. */
CR_NODISCARD cr_status cr_fn_save(cr_fn_ctx *fc, cr_tensor *t);
/* In backward: saved tensor i (NULL if out of range), input i as given to
 * cr_function_apply, the output, and whether input i needs a gradient. */
cr_tensor *cr_fn_saved(const cr_fn_ctx *fc, int i);
cr_tensor *cr_fn_input(const cr_fn_ctx *fc, int i);
cr_tensor *cr_fn_output(const cr_fn_ctx *fc);
bool cr_fn_needs_grad(const cr_fn_ctx *fc, int i);

#ifdef __cplusplus
}
#endif
#endif
