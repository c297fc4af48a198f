/* chainrule/fused.h — a chain of elementwise ops run as one graph node.
 *
 * A recurrent cell's gates are a dozen elementwise ops per step
 * (sigmoid, tanh, mul, add); as separate nodes each one allocates its
 * result, walks its operands and records itself, and at batch 1 that
 * costs more than the arithmetic.  A fused chain is those same ops,
 * written once as a small program over numbered slots, and applied as
 * ONE node: the forward runs every op over a few hundred elements at a
 * time (in cache), the VJP recomputes them and runs the chain rule through
 * the program in reverse.  The formulas are the ops' own (the rows of
 * ops/elementwise.def), in the same order, so the values and the
 * gradients are bit for bit those of the unfused ops — no hand-derived
 * derivative anywhere.  Intermediates are never stored, so BPTT keeps only
 * the chain's inputs.
 *
 *   cr_fused *f = cr_fused_new(4);            // slots 0..3: f, c, i, g
 *   int fc = cr_fused_op(f, "mul", 0, 1, 0, 0);
 *   int ig = cr_fused_op(f, "mul", 2, 3, 0, 0);
 *   cr_fused_op(f, "add", fc, ig, 0, 0);      // the last slot is the result
 *   cr_tensor *c2 = cr_fused_apply(ctx, f, (cr_tensor *[]){f_, c, i, g});
 *   cr_fused_free(f);                          // the node keeps a copy
 */
#ifndef CHAINRULE_FUSED_H
#define CHAINRULE_FUSED_H

#include "chainrule/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most inputs and ops of one chain. */
#define CR_FUSED_MAX_INPUTS 8
#define CR_FUSED_MAX_OPS 24

typedef struct cr_fused cr_fused;

/* An empty chain of n_inputs inputs (slots 0 .. n_inputs-1), or NULL when
 * n_inputs is outside 1..CR_FUSED_MAX_INPUTS or out of memory. */
cr_fused *cr_fused_new(int n_inputs);
/* The same where input k is blocks[k] column blocks side by side: a
 * tensor [..., blocks[k] * W] for a result [..., W], whose blocks take
 * blocks[k] consecutive slots (an LSTM's gates [B, 4H]: i, f, g, o) — no
 * views to make per step.  The slots of all inputs, at most
 * CR_FUSED_MAX_INPUTS, are numbered in order; NULL as above or when a
 * block count is below 1. */
cr_fused *cr_fused_new_blocks(int n_inputs, const int *blocks);
void cr_fused_free(cr_fused *f);

/* Append the elementwise op `name` — any unary op of chainrule/ops.h by
 * its op name ("sigmoid", "tanh", "exp", "relu", "mul_scalar", ...: the
 * names cr_grad_fn reports) on slot x with its scalars a, b (ignored by
 * ops without), or a binary one ("add", "sub", "mul", "div", "maximum",
 * "minimum") on slots x and y.  Returns the result's slot, or -1 when the
 * name is unknown, a slot does not exist yet or the chain is full; the
 * reason is kept (cr_fused_error) and cr_fused_apply fails with it. */
int cr_fused_op(cr_fused *f, const char *name, int x, int y, double a, double b);

/* Why the chain cannot be applied, or NULL. */
const char *cr_fused_error(const cr_fused *f);

/* The chain's last slot over in[0 .. n_inputs-1]: tensors of one shape
 * (but for column blocks: cr_fused_new_blocks) and one dtype (f32 or f64;
 * any strides, no broadcasting), as one node "fused".  The result is
 * contiguous.  NULL on error (a message naming the
 * chain's op and the offending shapes).  The node keeps its own copy of
 * the chain: f may be changed or freed right after. */
cr_tensor *cr_fused_apply(cr_ctx *ctx, const cr_fused *f, cr_tensor *const *in);

/* Whether cr_fused_apply in ctx makes one node (on: the default) or runs
 * the chain as its ops, one node each (off) — the same values and
 * gradients bit for bit; off shows every op in the graph (cr_graph_dot,
 * cr_grad_fn), as a teacher may want of an LSTM's gates.  Anomaly mode
 * (cr_set_detect_anomaly) runs chains as their ops too, so its message
 * names the op that made a NaN.  The built-in cells' steps are fused
 * chains.  Returns the previous setting. */
bool cr_set_fusion(cr_ctx *ctx, bool on);
bool cr_fusion_enabled(const cr_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
