/* op.h — how a primitive op is written.
 *
 * Each op file in ops/ starts with the op's math in one vocabulary: x, a, b
 * the inputs, y the result, gy the upstream gradient, gx/ga/gb the input
 * gradients, e.g.   tanh: y = tanh(x);  gx += gy * (1 - y*y)
 * and keeps, side by side, the public function (checks shapes, computes y
 * with the forward kernel, records a node) and the VJP (adds into the
 * input gradients; never overwrites, so shared values accumulate).
 *
 * Every op has one cr_op_desc, listed in ops/registry.c.
 */
#ifndef CHAINRULE_OP_H
#define CHAINRULE_OP_H

#include "internal.h"
#include "vmath.h"

typedef struct cr_node cr_node;

/* Add the input gradients implied by node->out's gradient. */
typedef void (*cr_vjp_fn)(cr_ctx *ctx, cr_node *node);

typedef struct cr_op_desc {
  const char *name; /* as in messages and cr_grad_fn */
  int n_inputs;     /* -1: variable (concat, stack) */
  cr_vjp_fn vjp;
  /* The VJP accepts input-gradient buffers that are strided views (it
   * writes through their strides), so the gradient of a slice consumed
   * only by such ops can be a view into the sliced tensor's gradient. */
  bool strided_input_grads;
} cr_op_desc;

/* A recorded application of an op. */
struct cr_node {
  const cr_op_desc *op;
  cr_tensor *out;
  int n_in;
  cr_tensor **in;
  uint32_t mark;   /* backward pass that last visited it */
  int64_t iattr[CR_MAX_DIMS]; /* op-specific integers (axis, perm, ...) */
  double dattr[2];  /* op-specific scalars */
  void *saved;      /* op-specific saved data in the arena */
};

/* Record a node for out when grad mode is on and an input requires grad;
 * then out->requires_grad is set.  Returns the node, or NULL when nothing
 * needed recording (or on out-of-memory, which sets the error: check
 * cr_ctx_status if the node is essential). */
cr_node *cr__record(cr_ctx *ctx, const cr_op_desc *op, cr_tensor *out,
                    int n_in, cr_tensor *const *in);

/* For a VJP: the gradient buffer of t to add into (contiguous, t's shape
 * and dtype, zeroed at its first use in this backward pass), or NULL when t
 * needs no gradient. */
cr_tensor *cr__grad_acc(cr_ctx *ctx, cr_tensor *t);
/* The same without zeroing: *fresh is true when this is the buffer's first
 * use in the pass and it holds garbage — the caller must then WRITE every
 * element (y = ..., not +=); later contributions accumulate.  Saves a
 * memset and a read of every intermediate gradient. */
cr_tensor *cr__grad_acc_fresh(cr_ctx *ctx, cr_tensor *t, bool *fresh);

/* Weight gradients gb += a^T @ gy of the T steps that share a weight are
 * collected during backward and computed as ONE product over the stacked
 * rows (ops/matmul.c): far more efficient than T thin products.  backward
 * settles them before anything reads the gradient: */
/* ... before the VJP of the node whose output gradient is g (a no-op when
 * nothing is owed to g) */
void cr__settle_deferred(cr_ctx *ctx, cr_tensor *g);
/* ... and all of them when backward ends */
void cr__settle_all_deferred(cr_ctx *ctx);

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

/* Strides of t seen over an iteration shape of out_ndim dims aligned at
 * the right: 0 where t has size 1 (broadcast) or lacks the dim. */
void cr__bcast_strides(const cr_tensor *t, int out_ndim,
                       const int64_t *out_shape, int64_t *stride);
/* The broadcast shape of a and b; false (and an error naming op) if they
 * do not broadcast. */
bool cr__bcast_shape(cr_ctx *ctx, const char *op, const cr_tensor *a,
                     const cr_tensor *b, int *ndim, int64_t *shape);
/* Normalise axis (negative counts from the end) for an ndim tensor; false
 * and an error naming op when out of range. */
bool cr__axis(cr_ctx *ctx, const char *op, const cr_tensor *x, int *axis);

/* dst += src, where src is dense with dst's shape (both contiguous). */
void cr__add_dense(cr_tensor *dst, const cr_tensor *src);
/* dst (contiguous, shape S) += reduce of src (dense, broadcast shape of
 * ndim dims) over the dims where S was broadcast. */
void cr__add_reduced(cr_tensor *dst, const cr_tensor *src);

/* Math by element type, so one kernel text serves float and double; float
 * uses the vectorisable routines of vmath.h (1-2 ulp), double uses libm. */
#define CR_EXP(x) _Generic((x), float: cr__expf, default: exp)(x)
#define CR_LOG(x) _Generic((x), float: logf, default: log)(x)
#define CR_SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)
#define CR_TANH(x) _Generic((x), float: cr__tanhf, default: tanh)(x)
#define CR_FABS(x) _Generic((x), float: fabsf, default: fabs)(x)
#define CR_POW(x, p) _Generic((x), float: powf, default: pow)(x, p)

/* Instantiate a kernel body for both element types:  KERNEL(T) expands to
 * the body with T = float or double depending on dt. */
#define CR_DISPATCH(dt, KERNEL)                                                \
  do {                                                                         \
    if ((dt) == CR_F32) {                                                      \
      KERNEL(float);                                                           \
    } else {                                                                   \
      KERNEL(double);                                                          \
    }                                                                          \
  } while (0)

#endif
