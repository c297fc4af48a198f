/* chainrule/autograd.h — reverse-mode differentiation of the recorded graph.
 *
 * backward walks the nodes reachable from its output once each, in reverse
 * topological order, and applies each op's vector-Jacobian product.  A value
 * used twice (a diamond, a weight shared by T time steps) receives the sum
 * of every contribution.  Leaf gradients (cr_grad of a tensor with
 * requires_grad) accumulate across backward calls until cr_zero_grad
 * (PyTorch semantics); gradients of intermediates are recomputed by each
 * call and kept in the arena until reset, so they can be inspected.
 */
#ifndef CHAINRULE_AUTOGRAD_H
#define CHAINRULE_AUTOGRAD_H

#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Backpropagate from a one-element loss (seed 1).  A loss with more than
 * one element is an error: use cr_backward_seed. */
CR_NODISCARD cr_status cr_backward(cr_ctx *ctx, cr_tensor *loss);
/* Backpropagate from y with the upstream gradient seed (y's shape). */
CR_NODISCARD cr_status cr_backward_seed(cr_ctx *ctx, cr_tensor *y,
                                        cr_tensor *seed);
/* x's values cut from the graph: a view that requires no grad, so nothing
 * flows back through it (the basis of truncated BPTT). */
cr_tensor *cr_detach(cr_ctx *ctx, cr_tensor *x);
/* Name of the op that produced t ("tanh", ...), or NULL for a leaf. */
const char *cr_grad_fn(const cr_tensor *t);
/* Write the graph that produced t in Graphviz dot syntax (teaching aid). */
void cr_graph_dot(FILE *f, const cr_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
