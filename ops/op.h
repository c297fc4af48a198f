/* op.h — how a primitive op is written.
 *
 * Each op file in ops/ starts with the op's math in one vocabulary: x, a, b
 * the inputs, y the result, gy the upstream gradient, gx/ga/gb the input
 * gradients, e.g.   tanh: y = tanh(x);  gx += gy * (1 - y*y)
 * and keeps, side by side, the public function (checks shapes, computes y
 * with the forward kernel, records a node) and the two forms of its
 * vector-Jacobian product:
 *
 *   vjp        the kernel: adds the input gradients into their buffers
 *              (never overwrites, so shared values accumulate) — the fast
 *              first-order path;
 *   vjp_graph  the same formula written with ops, returning the input
 *              gradients as tensors; when backward records its own graph
 *              (create_graph) these tensors can be differentiated again.
 *
 * A test checks that the two agree on every gradient-check row.  Every op
 * has one cr_op_desc, listed in ops/registry.c.
 */
#ifndef CHAINRULE_OP_H
#define CHAINRULE_OP_H

#include <stdalign.h>
#include <stddef.h>

#include "internal.h"
#include "vmath.h"

typedef struct cr_node cr_node;

typedef struct cr_op_desc {
  const char *name; /* as in messages and cr_grad_fn */
  int n_inputs;     /* -1: variable (concat, stack, custom) */
  /* Add the input gradients implied by node->out's gradient (complete when
   * this is called) into the input gradient buffers (cr__grad_acc). */
  void (*vjp)(cr_ctx *ctx, cr_node *nd);
  /* The same as tensors built with ops: gx[k] = the gradient for input k
   * (exactly its shape and dtype), or NULL where input k needs none.  gy may
   * carry a graph.  Returns CR_OK or the error stored in ctx. */
  cr_status (*vjp_graph)(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

  /* Whose values the VJPs (kernel and graph) read: bit k for input k
   * (CR__READS_IN(k)), CR__READS_OUT for the result; see CR__READS_ALL.
   * Values nobody reads may be released once the forward has moved on
   * (memory-efficient BPTT), so a VJP must read nothing outside this set
   * — its kernels must not even load such a pointer. */
  uint32_t reads;
  /* The same for one node, where it depends on the node (a fused chain's
   * VJP reads the inputs its plan needs); NULL: reads.  See cr__reads. */
  uint32_t (*reads_of)(const cr_node *nd);
  /* Bytes nd keeps for its VJP besides the tensors above (a fused chain's
   * saved results), for memory accounting; NULL: none. */
  size_t (*saved_bytes)(const cr_node *nd);

  /* ---- the plug-in point for gradient-buffer tricks (optional; the
   * engine knows no op by name, it only calls these) */
  /* A buffer for the gradient of nd->out that shares an input's gradient
   * buffer (a reshape: the same buffer; a slice: a strided view into it),
   * so the VJP has nothing left to do; NULL to use a buffer of its own.
   * *fresh as for cr__grad_acc_fresh. */
  cr_tensor *(*grad_alias)(cr_ctx *ctx, cr_node *nd, bool *fresh);
  /* Whether the kernel VJP writes input k's gradient through strides, so
   * that buffer may be a strided view (see cr__consumers_take_views).
   * NULL: never. */
  bool (*takes_view_grad)(const cr_node *nd, int k);
} cr_op_desc;

#define CR__READS_IN(k) (1u << (k))
#define CR__READS_OUT (1u << 31)
#define CR__READS_ALL 0xffffffffu /* every input and the result (a safe default) */

/* Bytes of op-specific attributes stored in a node (a named struct per op,
 * see CR__ATTR). */
#define CR__ATTR_BYTES 64

/* A recorded application of an op. */
struct cr_node {
  const cr_op_desc *op;
  const char *name; /* op->name, or a custom op's own name */
  cr_tensor *out;
  int n_in;
  cr_tensor **in;
  uint32_t mark;     /* graph walk that last visited it */
  uint64_t seq;      /* creation number: backward runs nodes in reverse creation order */
  void *saved;       /* op-specific data saved in the arena (indices, masks) */
  const char *scope; /* the context's scope label when it was made (cr_set_scope), or NULL */
  union {
    max_align_t align;
    unsigned char bytes[CR__ATTR_BYTES];
  } attr;
};

/* What node nd's VJPs read (op->reads_of, else op->reads). */
static inline uint32_t cr__reads(const cr_node *nd) {
  return nd->op->reads_of ? nd->op->reads_of(nd) : nd->op->reads;
}

/* Declare the accessor for an op's attribute struct:
 *   typedef struct { int axis; int64_t start, step; } slice_attr;
 *   CR__ATTR(slice_attr)   ->   slice_attr *slice_attr_of(const cr_node *)  */
#define CR__ATTR(type)                                                                             \
  _Static_assert(sizeof(type) <= CR__ATTR_BYTES, #type " too large");                              \
  static inline type *type##_of(const cr_node *nd) {                                               \
    return (type *)(void *)((cr_node *)nd)->attr.bytes;                                            \
  }

/* An elementwise op by its row of elementwise.def (its index among the
 * CR_UNARY rows, or among the CR_BINARY rows), as the public function of
 * that op computes it (ops/fused.c replays chains with these). */
cr_tensor *cr__unary_kind(cr_ctx *ctx, int kind, cr_tensor *x, double a, double b);
cr_tensor *cr__binary_kind(cr_ctx *ctx, int kind, cr_tensor *a, cr_tensor *b);
/* Whether scalars a, b suit unary op `kind` (clamp's bounds in order, no
 * division by 0, ...); false with the op's message naming x otherwise. */
bool cr__unary_scalars_ok(cr_ctx *ctx, int kind, const cr_tensor *x, double a, double b);
/* Record y (its values already there, or never to be read) as that op of
 * x (of a and b): a node without the computation. */
cr_tensor *cr__unary_as(cr_ctx *ctx, int kind, cr_tensor *x, double a, double b, cr_tensor *y);
cr_tensor *cr__binary_as(cr_ctx *ctx, int kind, cr_tensor *a, cr_tensor *b, cr_tensor *y);

/* Will an op on these inputs record a node (grad mode on and an input
 * requires grad)?  Lets an op save data for its VJP only when needed. */
bool cr__will_record(const cr_ctx *ctx, int n_in, cr_tensor *const *in);
/* Finish an op: out has been computed from in.  In anomaly mode, checks
 * out for NaN/Inf (naming the op).  Then records a node for out when grad
 * mode is on and an input requires grad, and sets out->requires_grad.
 * Returns the node (the op fills its attributes), or NULL when nothing was
 * recorded or on error (out of memory, anomaly: the error is stored and
 * the op must return NULL — test cr_ctx_status when NULL matters). */
cr_node *cr__record(cr_ctx *ctx, const cr_op_desc *op, cr_tensor *out, int n_in,
                    cr_tensor *const *in);
/* The forward anomaly check alone (cr__record calls it). */
bool cr__anomaly_forward(cr_ctx *ctx, const char *op, const cr_tensor *out, int n_in,
                         cr_tensor *const *in);

/* For a kernel VJP: the gradient buffer of t to add into (t's shape and
 * dtype, zeroed at its first use in this backward pass; contiguous unless
 * it is a strided view that an op's takes_view_grad allowed), or NULL when
 * t needs no gradient. */
cr_tensor *cr__grad_acc(cr_ctx *ctx, cr_tensor *t);
/* The same without zeroing: *fresh is true when this is the buffer's first
 * use in the pass and it holds garbage — the caller must then WRITE every
 * element (y = ..., not +=); later contributions accumulate.  Saves a
 * memset and a read of every intermediate gradient. */
cr_tensor *cr__grad_acc_fresh(cr_ctx *ctx, cr_tensor *t, bool *fresh);
/* For grad_alias hooks giving views of whole rows (along axis 0) of t's
 * gradient: the buffer, and *fresh true when rows [r0, r1) were never
 * written in this pass — the caller must then write every element of them
 * (they count as written from now on).  On the buffer's first use its rows
 * are not zeroed but owed zeros, paid by cr__grad_settle_rows when the
 * buffer is read whole: when any other op asks for it (cr__grad_acc_fresh)
 * or before t's own VJP.  Rows of [r0, r1) owed zeros while others in it
 * were written get their zeros now (*fresh false). */
cr_tensor *cr__grad_acc_rows(cr_ctx *ctx, cr_tensor *t, int64_t r0, int64_t r1, bool *fresh);
/* Zero the rows of t's gradient still owed zeros (cr__grad_acc_rows). */
void cr__grad_settle_rows(cr_ctx *ctx, cr_tensor *t);
/* For grad_alias hooks: true when every op consuming t in this backward
 * pass takes a strided-view gradient for it (takes_view_grad), and t has
 * no hook and is not retained (those need a buffer of their own). */
bool cr__consumers_take_views(const cr_ctx *ctx, const cr_tensor *t);
/* For grad_alias hooks: true when t is an input of exactly one node of this
 * backward pass, once (so that node's VJP is the only term of its gradient). */
bool cr__sole_use(const cr_ctx *ctx, const cr_tensor *t);
/* For grad_alias hooks: false when t needs its own gradient buffer (it has
 * hooks, is retained, or anomaly mode is on: then every VJP's result is
 * checked at its own node). */
bool cr__may_alias(const cr_ctx *ctx, const cr_tensor *t);
/* Whether view's first element lies inside buf's numel elements (a view
 * of buf, or of part of it). */
bool cr__data_inside(const cr_tensor *view, const cr_tensor *buf);
/* The engine, after nd's VJP: nd's output gradient is dead (unless shown:
 * retained, hooked), its buffer goes back for reuse. */
void cr__grad_release(cr_ctx *ctx, cr_tensor *t);
/* Mark buf (an arena tensor) as t's gradient buffer for this pass. */
void cr__grad_set(cr_ctx *ctx, cr_tensor *t, cr_tensor *buf, bool is_view);

/* ---- the engine's loop, for ops that run a backward of their own inside
 * the pass (checkpoint.c): the nodes reachable from the roots in creation
 * order; which tensors every consumer in order lets take a view gradient;
 * and the VJPs of order run in reverse. */
cr_node **cr__topo_order(cr_ctx *ctx, int n_roots, cr_tensor *const *roots, size_t *count);
/* ... only the nodes created after node number `after` (the walk stops at
 * older ones) */
cr_node **cr__topo_order_after(cr_ctx *ctx, int n_roots, cr_tensor *const *roots, uint64_t after,
                               size_t *count);
void cr__mark_view_consumers(cr_ctx *ctx, cr_node *const *order, size_t n);
void cr__run_vjps(cr_ctx *ctx, cr_node *const *order, size_t n);

/* ---- pending accumulations: a kernel VJP may queue a contribution to a
 * gradient buffer instead of adding it at once (matmul collects the weight
 * gradients of the T steps sharing a weight and adds them as ONE product),
 * provided it is settled before anything reads that buffer: the engine
 * calls cr__pending_settle before a node's VJP reads its output gradient,
 * and cr__pending_settle_all when the pass ends. */
typedef struct cr__pending cr__pending;
struct cr__pending {
  cr__pending *next;
  void *target; /* data pointer of the gradient buffer owed */
  /* Settle every queued entry of this kind owed to target (and mark them
   * done); called once per target by the engine. */
  void (*settle)(cr_ctx *ctx, cr__pending *first, void *target);
  bool done;
};
/* Queue p (arena memory; its settle and target set) for this pass. */
void cr__pending_add(cr_ctx *ctx, cr__pending *p);
/* Whether contributions to g's buffer are queued (not yet added). */
bool cr__pending_owed(const cr_ctx *ctx, const cr_tensor *g);
/* Settle what is owed to g's buffer (nothing when nothing is). */
void cr__pending_settle(cr_ctx *ctx, const cr_tensor *g);
void cr__pending_settle_all(cr_ctx *ctx);
/* Whether contributions may be queued now (off in anomaly mode). */
bool cr__pending_allowed(const cr_ctx *ctx);

/* ---- helpers for graph VJPs */
/* A constant (no graph) arena tensor of x's shape and dtype, or NULL. */
cr_tensor *cr__const_like(cr_ctx *ctx, const cr_tensor *x);
/* g summed over the dims where x was broadcast to g's shape, so it has
 * x's shape (g itself when the shapes already match). */
cr_tensor *cr__reduce_to(cr_ctx *ctx, cr_tensor *g, const cr_tensor *x);
/* A constant [1] tensor of like's dtype holding v, or NULL (compare.c). */
cr_tensor *cr__scalar_like(cr_ctx *ctx, const cr_tensor *like, double v);

/* slice's adjoint as an op (shape.c): zeros of shape with x placed at
 * start, start+step, ... along axis.  Its gradient is a slice again. */
cr_tensor *cr__unslice(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape, int axis,
                       int64_t start, int64_t step);
/* index_select's adjoint as an op (gather.c): zeros of shape with
 * y[.., idx[j], ..] += x[.., j, ..] along axis (n = x's dim there); idx is
 * copied.  Its gradient is an index_select again. */
cr_tensor *cr__index_add(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape, int axis,
                         const int64_t *idx);

/* Gradient checkpointing (checkpoint.c): fn builds, with ops, outputs
 * outs[0..*n_out) of one shape and dtype from its closure (which must live
 * until backward, e.g. in the arena).  cr__checkpoint runs it once keeping
 * only the outputs (returned in outs as views of the node's result) and
 * runs it again in backward; fn must build the same ops from the same
 * inputs each time.  Returns the status. */
#define CR__CHECKPOINT_MAX_OUT 1024
typedef cr_status (*cr__checkpoint_fn)(cr_ctx *ctx, void *closure, int *n_out, cr_tensor **outs);
cr_status cr__checkpoint(cr_ctx *ctx, cr__checkpoint_fn fn, void *closure, int *n_out,
                         cr_tensor **outs);

/* A chain of checkpointed segments (memory-efficient BPTT): segment s
 * maps a state (n_state tensors) to outputs outs[0..*n_out) and the next
 * state, all of one shape, built by fn with ops.  cr__checkpoint_chain
 * runs the n_seg segments keeping only the result Y [n_rows + n_state,
 * shape...] (every output in order, then the final state) and the states
 * between segments, and rebuilds them one at a time in backward, giving
 * the gradients full BPTT would, bit for bit.  finals_first: the caller's
 * ops consume Y's final-state rows before its output rows (in creation
 * order), which fixes how the two add up when the last state is also the
 * last output.  NULL and an error on failure. */
typedef cr_status (*cr__chain_fn)(cr_ctx *ctx, void *closure, int s, cr_tensor *const *state_in,
                                  cr_tensor **outs, int *n_out, cr_tensor **state_out);
cr_tensor *cr__checkpoint_chain(cr_ctx *ctx, cr__chain_fn fn, void *closure, int n_seg, int n_state,
                                cr_tensor *const *init, int64_t n_rows, bool finals_first);
/* The general chain: each state keeps its initial state's shape (they may
 * differ: an LSTM with a projection has h [B,P], c [B,H]), the outputs
 * share one shape, and Y is 1-d — the n_rows outputs flattened in order,
 * then each final state flattened.  extra: outside tensors fn may read
 * (made inputs of the node even if the first segment, whose graph is
 * recorded to find them, does not). */
typedef struct cr__chain_spec {
  int n_seg, n_state;
  cr_tensor *const *init; /* [n_state] */
  int64_t n_rows;
  bool finals_first;
  int n_extra;
  cr_tensor *const *extra;
} cr__chain_spec;
cr_tensor *cr__checkpoint_chain_ex(cr_ctx *ctx, cr__chain_fn fn, void *closure,
                                   const cr__chain_spec *spec);

/* ---- strided iteration over a shape for up to 4 operands.
 * Operands are given by strides over the iteration shape (0 on broadcast
 * dims).  Dims that are contiguous for every operand are merged, so a
 * dense case becomes one long row.  Usage:
 *   cr__iter it; cr__iter_init(&it, ndim, shape, nops, strides);
 *   for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it))
 *     for (int64_t i = 0; i < it.inner; i++)
 *        ... base[k] + it.off[k] + i * it.istr[k] ...
 */
typedef struct cr__iter {
  int nops, ndim; /* ndim: outer dims after merging */
  int64_t shape[CR_MAX_DIMS];
  int64_t stride[4][CR_MAX_DIMS];
  int64_t idx[CR_MAX_DIMS];
  int64_t inner, rows;
  int64_t istr[4];
  int64_t off[4];
} cr__iter;
void cr__iter_init(cr__iter *it, int ndim, const int64_t *shape, int nops,
                   const int64_t *const *strides);
void cr__iter_next(cr__iter *it);
/* Run body(arg, part) over parts of it that together make the whole: on
 * several threads when the iteration is large (rows split in ranges, or
 * one long row in ranges of columns), else once over it all.  For
 * elementwise maps whose output (operand 0) holds each element once: the
 * parts write disjoint elements, and each element is computed the same
 * way, so the bits do not depend on the thread count. */
typedef void (*cr__iter_body)(void *arg, cr__iter *part);
void cr__iter_run(cr__iter *it, cr__iter_body body, void *arg); /* it: as cr__iter_init left it */

/* Strides of t seen over an iteration shape of out_ndim dims aligned at
 * the right: 0 where t has size 1 (broadcast) or lacks the dim. */
void cr__bcast_strides(const cr_tensor *t, int out_ndim, const int64_t *out_shape, int64_t *stride);
/* The broadcast shape of a and b; false (and an error naming op) if they
 * do not broadcast. */
bool cr__bcast_shape(cr_ctx *ctx, const char *op, const cr_tensor *a, const cr_tensor *b, int *ndim,
                     int64_t *shape);
/* Normalise axis (negative counts from the end) for an ndim tensor; false
 * and an error naming op when out of range. */
bool cr__axis(cr_ctx *ctx, const char *op, const cr_tensor *x, int *axis);

/* dst += src, where src is dense with dst's shape (both contiguous). */
void cr__add_dense(cr_tensor *dst, const cr_tensor *src);
/* dst (contiguous, shape S) += reduce of src (dense, broadcast shape of
 * ndim dims) over the dims where S was broadcast. */
void cr__add_reduced(cr_tensor *dst, const cr_tensor *src);
/* dst = src (same shape, any strides, dst's dtype; converts). */
void cr__copy_convert(cr_tensor *dst, const cr_tensor *src, bool add);
/* The same on raw operands: over shape (ndim dims), dst (dtype ddt, element
 * strides dst_stride) = or += src (sdt, src_stride), converting dtypes —
 * for copies between regions of tensors (slice, stack), with no tensor
 * headers to fill in. */
void cr__move_strided(cr_dtype ddt, void *dst, const int64_t *dst_stride, cr_dtype sdt,
                      const void *src, const int64_t *src_stride, int ndim, const int64_t *shape,
                      bool add);

/* Math by element type, so one kernel text serves float and double; float
 * uses the vectorisable routines of vmath.h (1-2 ulp), double uses libm. */
#define CR_EXP(x) _Generic((x), float : cr__expf, default : exp)(x)
#define CR_LOG(x) _Generic((x), float : logf, default : log)(x)
#define CR_SQRT(x) _Generic((x), float : sqrtf, default : sqrt)(x)
#define CR_TANH(x) _Generic((x), float : cr__tanhf, default : tanh)(x)
#define CR_FABS(x) _Generic((x), float : fabsf, default : fabs)(x)
#define CR_POW(x, p) _Generic((x), float : powf, default : pow)(x, p)
#define CR_SIGMOID(x) _Generic((x), float : cr__sigmoidf, default : cr__sigmoid)(x)
#define CR_SIN(x) _Generic((x), float : sinf, default : sin)(x)
#define CR_COS(x) _Generic((x), float : cosf, default : cos)(x)
#define CR_ERF(x) _Generic((x), float : erff, default : erf)(x)
#define CR_LOG1P(x) _Generic((x), float : log1pf, default : log1p)(x)

/* 1/sqrt(2), 2/sqrt(pi), 1/sqrt(2 pi) (math.h has them only as XSI extensions) */
#define CR__SQRT1_2 0.70710678118654752440
#define CR__2_SQRTPI 1.12837916709551257390
#define CR__INV_SQRT_2PI 0.39894228040143267794

static inline double cr__sigmoid(double v) {
  return v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v));
}

/* Token pasting for the typed kernel templates (*.inc files included once
 * with T = float, SFX = f and once with T = double, SFX = d). */
#define CR__CAT_(a, b) a##b
#define CR__CAT(a, b) CR__CAT_(a, b)
#define CR__T(name) CR__CAT(name, SFX) /* name_f / name_d */

#endif
