/* chainrule.h — a small, exact autograd tensor framework in C.
 *
 * Worked example: the gradient of L = sum(tanh(W x)) with respect to W.
 *
 *   cr_ctx *ctx = cr_ctx_new();
 *   cr_rng *rng = cr_rng_new(42);
 *   cr_tensor *W = cr_tensor_new(ctx, CR_F64, CR_SHAPE(3, 2));  // a parameter
 *   cr_fill_uniform(ctx, W, rng, -1, 1);
 *   cr_set_requires_grad(W, true);
 *
 *   for (int step = 0; step < 100; step++) {
 *     cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(2, 4), 0, 1);
 *     cr_tensor *L = cr_sum(ctx, cr_tanh(ctx, cr_matmul(ctx, W, x)));
 *     if (!L) { fprintf(stderr, "%s\n", cr_ctx_error(ctx)); break; }
 *     cr_zero_grad(W);
 *     if (cr_backward(ctx, L) != CR_OK) break;
 *     cr_print(stdout, cr_grad(W));   // dL/dW, shape [3,2]
 *     cr_ctx_reset(ctx);              // frees the step's graph at once
 *   }
 *   cr_tensor_free(W); cr_rng_free(rng); cr_ctx_free(ctx);
 *
 * Headers:
 *   chainrule/base.h      context, dtypes, status codes, the error rule
 *   chainrule/tensor.h    tensors, ownership rules, random numbers
 *   chainrule/ops.h       the primitive differentiable ops
 *   chainrule/autograd.h  backward, higher-order gradients, hooks, anomaly
 *                         mode, detach, graph export
 *   chainrule/function.h  ops of your own: a forward and its VJP
 *   chainrule/gradcheck.h finite-difference gradient checking
 *   chainrule/io.h        safetensors checkpoints (atomic save, validated load)
 *   chainrule/runtime.h   BLIS sub-configuration and threads
 *   chainrule/rnn.h       recurrent cells (built-in and user-defined), layers
 *   chainrule/optim.h     optimizers, gradient clipping, learning-rate schedules
 *   chainrule/module.h    models as modules: named parameters, PyTorch's
 *                         state_dict names, freezing, checkpoints
 *   chainrule/init.h      initialisations (torch.nn.init)
 */
#ifndef CHAINRULE_H
#define CHAINRULE_H

#include "chainrule/autograd.h"
#include "chainrule/base.h"
#include "chainrule/function.h"
#include "chainrule/fused.h"
#include "chainrule/gradcheck.h"
#include "chainrule/init.h"
#include "chainrule/io.h"
#include "chainrule/module.h"
#include "chainrule/ops.h"
#include "chainrule/optim.h"
#include "chainrule/rnn.h"
#include "chainrule/runtime.h"
#include "chainrule/tensor.h"

#endif
