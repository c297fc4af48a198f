/* chainrule/autograd.h — reverse-mode differentiation of the recorded graph.
 *
 * backward walks the nodes reachable from its output once each, in reverse
 * topological order, and applies each op's vector-Jacobian product.  A value
 * used twice (a diamond, a weight shared by T time steps) receives the sum
 * of every contribution.  Leaf gradients (cr_grad of a tensor with
 * requires_grad and no producing op) accumulate across backward calls until
 * cr_zero_grad (PyTorch semantics).
 *
 * Gradients of intermediate tensors (a hidden state h_t, say) are shown by
 * cr_grad only for tensors marked with cr_retain_grad before backward (as
 * in PyTorch); the others' buffers are the engine's to share and reuse.
 * Hooks (cr_register_hook) observe or rewrite a gradient as it flows.
 *
 * Higher-order gradients: with create_graph the backward pass records its
 * own computation as ops (every op has a differentiable VJP), so a gradient
 * is a tensor with a graph that can be differentiated again: grad of grad,
 * Hessian-vector products, gradient penalties.  cr_autograd_grad returns
 * the gradients of chosen inputs without touching any .grad, like
 * torch.autograd.grad.
 *
 * Example: a Hessian-vector product H v of L(w):
 *     cr_tensor *g;                                  // dL/dw, with a graph
 *     cr_autograd_opts o = {.create_graph = true};
 *     if (cr_autograd_grad(ctx, 1, &L, NULL, 1, &w, &o, &g)) ...
 *     cr_tensor *gv = cr_sum(ctx, cr_mul(ctx, g, v)); // <dL/dw, v>
 *     cr_tensor *hv;                                 // d<dL/dw, v>/dw = H v
 *     if (cr_autograd_grad(ctx, 1, &gv, NULL, 1, &w, NULL, &hv)) ...
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
CR_NODISCARD cr_status cr_backward_seed(cr_ctx *ctx, cr_tensor *y, cr_tensor *seed);

typedef struct cr_backward_opts {
  /* Record the backward pass as ops.  Leaf (and retained) gradients still
   * accumulate in their buffers (cr_grad), and until the next cr_ctx_reset
   * cr_grad_graph returns each as a tensor WITH its graph, to be
   * differentiated again.  Slower than the default kernel path. */
  bool create_graph;
} cr_backward_opts;
/* cr_backward_seed with options (seed NULL: y must have one element and
 * the seed is 1; opts NULL: defaults). */
CR_NODISCARD cr_status cr_backward_ex(cr_ctx *ctx, cr_tensor *y, cr_tensor *seed,
                                      const cr_backward_opts *opts);

typedef struct cr_autograd_opts {
  /* The returned gradients carry a graph (differentiable again). */
  bool create_graph;
  /* An input the outputs do not depend on gets zeros (true) instead of
   * NULL (false: PyTorch's allow_unused). */
  bool zeros_for_unused;
} cr_autograd_opts;
/* The gradients of sum_i <outputs[i], seeds[i]> with respect to inputs[j]
 * (any tensors of the graph, leaves or intermediates), into grads[j]:
 * arena tensors of the inputs' shapes, valid until reset.  No .grad is
 * touched and hooks do not run.  seeds may be NULL (every output must then
 * have one element; seed 1), or have NULL entries.  Returns the status;
 * on error the grads are NULL.  Built from the ops' differentiable VJPs,
 * with a graph when opts->create_graph. */
CR_NODISCARD cr_status cr_autograd_grad(cr_ctx *ctx, int n_out, cr_tensor *const *outputs,
                                        cr_tensor *const *seeds, int n_in, cr_tensor *const *inputs,
                                        const cr_autograd_opts *opts, cr_tensor **grads);

/* After cr_backward_ex with create_graph in ctx: the gradient of t (a leaf
 * or a retained tensor), accumulated as cr_grad shows it, as an arena
 * tensor that carries the graph of its computation; valid until the next
 * reset of ctx.  NULL otherwise. */
cr_tensor *cr_grad_graph(const cr_ctx *ctx, const cr_tensor *t);

/* ---- inspecting gradients as they flow */

/* Keep the gradient of the intermediate t (made by an op), so cr_grad(t)
 * shows it after backward, until the next reset.  A no-op on leaves, which
 * always keep theirs. */
void cr_retain_grad(cr_tensor *t);

/* A hook runs when t's gradient is complete, before it flows on into the
 * ops that made t: grad is that gradient (t's shape).  Return grad to only
 * observe it, a new tensor of the same shape and dtype (built with ops) to
 * replace it, or NULL with an error stored in ctx to stop the pass.  For a
 * leaf the hook sees this pass's contribution before it is added to the
 * accumulated .grad.  With create_graph, grad carries a graph. */
typedef cr_tensor *(*cr_grad_hook)(cr_ctx *ctx, cr_tensor *t, cr_tensor *grad, void *user);
/* Add a hook to t (hooks run in the order added).  Hooks on arena tensors
 * end at the next reset; hooks on persistent tensors stay until
 * cr_clear_hooks or cr_tensor_free. */
CR_NODISCARD cr_status cr_register_hook(cr_ctx *ctx, cr_tensor *t, cr_grad_hook fn, void *user);
void cr_clear_hooks(cr_tensor *t);

/* ---- anomaly mode */

/* When on, the first forward op or VJP that produces a NaN or Inf stops
 * with CR_ERR_NUMERIC and a message naming the op, its input shapes, the
 * tensor's name if it has one and, for a VJP, the forward op whose
 * gradient it was, e.g.
 *   "anomaly: VJP of log [32,65] produced nan in the gradient of input 0
 *    [32,65] 'logits' (element 17): the forward op log was given
 *    [32,65] 'logits'"
 * and the scope the op was made in, if any (cr_set_scope: "... in scope
 * 'step 12'").  Off by default (it costs a pass over every result).  Returns the
 * previous setting. */
bool cr_set_detect_anomaly(cr_ctx *ctx, bool on);
bool cr_detect_anomaly(const cr_ctx *ctx);

/* ---- scopes: where in a program an op was made */

/* Every op made from now on records the label `scope` (copied; NULL for
 * none), which cr_scope_of returns, cr_graph_dot draws as a cluster and
 * anomaly messages quote.  The recurrent layers set "step 3" (layer 0)
 * and "layer 1 step 3" around each cell step, after the caller's own
 * scope ("encoder/step 3").  Returns the previous scope, to restore it;
 * labels live until cr_ctx_reset, which clears the scope. */
const char *cr_set_scope(cr_ctx *ctx, const char *scope);
const char *cr_scope(const cr_ctx *ctx);
/* The scope the op that made t was recorded in, or NULL (a leaf, or made
 * outside any scope). */
const char *cr_scope_of(const cr_tensor *t);

/* ---- the graph */

/* x's values cut from the graph: a view that requires no grad, so nothing
 * flows back through it (the basis of truncated BPTT). */
cr_tensor *cr_detach(cr_ctx *ctx, cr_tensor *x);
/* Name of the op that produced t ("tanh", ...), or NULL for a leaf. */
const char *cr_grad_fn(const cr_tensor *t);

typedef struct cr_graph_dot_opts {
  /* Draw the nodes of the ops in clusters, one box per label:
   * cluster_of(t, user) gives the label for the op that made t (e.g.
   * "t = 3"), or NULL for none.  Without cluster_of, an op's scope
   * (cr_set_scope; a recurrent layer's "step 3") is its label, unless
   * no_scopes.  Leaves (parameters) stay outside every cluster, drawn
   * once. */
  const char *(*cluster_of)(const cr_tensor *t, void *user);
  void *user;
  const char *title; /* graph label, or NULL */
  bool no_scopes;    /* without cluster_of: draw no clusters */
} cr_graph_dot_opts;
/* Write the graph that produced t in Graphviz dot syntax (teaching aid):
 * one box per op (its name and result shape, and the result's name if it
 * has one), one ellipse per leaf (its name, shape, requires_grad).  opts
 * may be NULL. */
void cr_graph_dot(FILE *f, const cr_tensor *t);
void cr_graph_dot_ex(FILE *f, const cr_tensor *t, const cr_graph_dot_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
