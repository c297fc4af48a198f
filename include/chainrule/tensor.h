/* chainrule/tensor.h — n-d tensors: creation, access, persistence, printing.
 *
 * A tensor is an n-d array (1..CR_MAX_DIMS dims, every dim >= 1) of f32 or
 * f64, row-major, possibly a strided view (transpose, slice) of another.
 *
 * Index tensors (dtype i64) hold indices and class targets: made by
 * cr_from_i64, cr_wrap_i64, cr_zeros/cr_ones/cr_full, cr_arange or
 * cr_tensor_new with CR_I64 (values must be integers), or returned by
 * cr_argmax, cr_argmin and cr_topk; they are always contiguous, printed,
 * read as double (cr_get_flat), persisted and copied like any tensor, but
 * never require grad, and only the index-taking ops accept them (see
 * chainrule/ops.h); every op on values refuses them ("tanh: dtype i64:
 * input 0 [4] holds indices; this op takes f32 or f64 values").
 *
 * Ownership rules
 * ---------------
 * 1. Op results, and tensors made by the creation functions below, live in
 *    the context's arena.  They are never freed one by one and become
 *    invalid at cr_ctx_reset (tensors carry the arena epoch, so a later use
 *    is reported as an error where it can be seen, not undefined behaviour).
 * 2. Persistent tensors (cr_tensor_new, cr_persist) belong to the caller,
 *    survive resets and are freed with cr_tensor_free (NULL accepted).
 *    Model parameters are persistent tensors with requires_grad set; their
 *    grad is persistent too and accumulates across backward calls until
 *    cr_zero_grad.
 * 3. cr_from_array copies the caller's data; cr_wrap borrows it (the
 *    caller keeps it alive and unchanged while the tensor is used).
 *    Pointers returned by accessors (cr_shape, cr_data, cr_grad) are
 *    borrowed from the tensor.
 * 4. State carried across a reset (truncated BPTT) must be copied into a
 *    persistent tensor (cr_copy_into, or cr_persist once).
 * 5. The arena grows while a loop warms up and is reused after each reset:
 *    a steady-state training step never calls malloc (see cr_alloc_count).
 *
 * Shapes are passed as (ndim, const int64_t *shape); CR_SHAPE(2, 3) expands
 * to both arguments, e.g. cr_zeros(ctx, CR_F32, CR_SHAPE(2, 3)).
 */
#ifndef CHAINRULE_TENSOR_H
#define CHAINRULE_TENSOR_H

#include <stdio.h>

#include "chainrule/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CR_SHAPE(...)                                                                              \
  (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) { __VA_ARGS__ }

typedef struct cr_rng cr_rng;

/* ---- creation in the arena (NULL and an error on bad shape / no memory).
 * dt may be CR_I64 for zeros, ones, full (value an integer), from_array,
 * wrap and arange (start and step integers); the random ones are f32/f64. */
cr_tensor *cr_zeros(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape);
cr_tensor *cr_ones(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape);
cr_tensor *cr_full(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape, double value);
/* Copy numel(shape) elements of type dt (float or double) from data. */
cr_tensor *cr_from_array(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape,
                         const void *data);
/* A tensor over the caller's memory (borrowed, contiguous).  The tensor is
 * an arena object; the data is not copied and never freed by chainrule. */
cr_tensor *cr_wrap(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape, void *data);
/* Typed forms of cr_from_array and cr_wrap: the element type is checked by
 * the compiler, so a double array cannot become an f32 tensor by mistake. */
cr_tensor *cr_from_f32(cr_ctx *ctx, int ndim, const int64_t *shape, const float *data);
cr_tensor *cr_from_f64(cr_ctx *ctx, int ndim, const int64_t *shape, const double *data);
cr_tensor *cr_wrap_f32(cr_ctx *ctx, int ndim, const int64_t *shape, float *data);
cr_tensor *cr_wrap_f64(cr_ctx *ctx, int ndim, const int64_t *shape, double *data);
/* Index tensors (dtype i64) from int64_t arrays: copied, or borrowed. */
cr_tensor *cr_from_i64(cr_ctx *ctx, int ndim, const int64_t *shape, const int64_t *data);
cr_tensor *cr_wrap_i64(cr_ctx *ctx, int ndim, const int64_t *shape, int64_t *data);
/* The dtype follows the array's element type (float, double or int64_t;
 * anything else does not compile).  SHAPE is one CR_SHAPE(...); a compound
 * literal needs parentheses around it:
 *   cr_tensor *x = CR_FROM(ctx, CR_SHAPE(2), ((double[]){1, 2}));   // f64
 *   cr_tensor *t = CR_FROM(ctx, CR_SHAPE(2), ((int64_t[]){3, 0}));  // i64 */
#define CR_FROM(ctx, SHAPE, data)                                                                  \
  _Generic((data), float *: cr_from_f32, const float *: cr_from_f32,           \
           double *: cr_from_f64, const double *: cr_from_f64,                 \
           int64_t *: cr_from_i64, const int64_t *: cr_from_i64)(ctx, SHAPE, data)
/* 1-d tensor start, start+step, ... < stop (step != 0). */
cr_tensor *cr_arange(cr_ctx *ctx, cr_dtype dt, double start, double stop, double step);
/* Uniform on [lo, hi) / normal(mean, std), drawn from rng. */
cr_tensor *cr_rand_uniform(cr_ctx *ctx, cr_rng *rng, cr_dtype dt, int ndim, const int64_t *shape,
                           double lo, double hi);
cr_tensor *cr_rand_normal(cr_ctx *ctx, cr_rng *rng, cr_dtype dt, int ndim, const int64_t *shape,
                          double mean, double std);

/* ---- persistent tensors (owned by the caller) */
/* A new zero-filled persistent tensor.  ctx receives errors only. */
cr_tensor *cr_tensor_new(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape);
/* A persistent, contiguous copy of t, cut from the graph
 * (requires_grad false).  Returns NULL if t is NULL or on error. */
cr_tensor *cr_persist(cr_ctx *ctx, const cr_tensor *t);
/* Free a persistent tensor and its grad.  NULL accepted; passing an arena
 * tensor is a no-op. */
void cr_tensor_free(cr_tensor *t);
/* Copy src's values into dst (same shape; f32 and f64 may differ, values
 * are converted; an i64 tensor copies only into or from an i64 one).  dst
 * keeps its identity and grad.  No graph is recorded. */
CR_NODISCARD cr_status cr_copy_into(cr_ctx *ctx, cr_tensor *dst, const cr_tensor *src);
/* Fill every element of t with value (no graph recorded; for an i64 t,
 * value must be an integer). */
CR_NODISCARD cr_status cr_fill(cr_ctx *ctx, cr_tensor *t, double value);
/* Fill t from rng, uniform on [lo, hi) (parameter initialisation). */
CR_NODISCARD cr_status cr_fill_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double lo,
                                       double hi);
CR_NODISCARD cr_status cr_fill_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double mean,
                                      double std);

/* ---- properties */
int cr_ndim(const cr_tensor *t);
/* Borrowed pointer to ndim sizes. */
const int64_t *cr_shape(const cr_tensor *t);
/* Size of dim (negative counts from the end); 0 if out of range. */
int64_t cr_dim(const cr_tensor *t, int dim);
int64_t cr_numel(const cr_tensor *t);
cr_dtype cr_dtype_of(const cr_tensor *t);
bool cr_is_contiguous(const cr_tensor *t);
bool cr_is_persistent(const cr_tensor *t);

/* ---- names (shown by cr_print, cr_graph_dot, and in error and anomaly
 * messages) */
/* Name t (copied; truncated to 47 bytes; NULL or "" clears it).  The
 * recurrent layers name their parameters as PyTorch does (weight_hh_l0)
 * and their per-step states h_3, c_3 (layer 0) or h_l1_3 (layer 1). */
void cr_set_name(cr_tensor *t, const char *name);
/* t's name, "" when it has none (or t is NULL).  Borrowed. */
const char *cr_name(const cr_tensor *t);

/* ---- gradients */
/* Mark t as a leaf that receives a gradient (or stop it).  For a parameter
 * with requires_grad off, backward computes nothing for it and optimizers
 * skip it (freezing).  Ignored for an i64 tensor (indices have no
 * gradient). */
void cr_set_requires_grad(cr_tensor *t, bool on);
bool cr_requires_grad(const cr_tensor *t);
/* The gradient accumulated into t by backward: same shape and dtype; NULL
 * if none has been computed.  Borrowed.  For a leaf it is the sum over
 * backward calls since cr_zero_grad; for an intermediate (made by an op,
 * say h_t at one time step) it is shown only when t was marked with
 * cr_retain_grad before backward, and lives until the arena is reset.
 * (After cr_backward_ex with create_graph, cr_grad_graph gives the same
 * values as a tensor with a graph.) */
cr_tensor *cr_grad(const cr_tensor *t);
/* Set t's gradient to zero (keeps its buffer).  NULL accepted. */
void cr_zero_grad(cr_tensor *t);

/* ---- element access (for tests, I/O and teaching; not for hot loops) */
/* Contiguous data pointer (float*, double* or int64_t*), or NULL for a
 * strided view (use cr_contiguous first).  Borrowed. */
void *cr_data(cr_tensor *t);
const void *cr_data_const(const cr_tensor *t);
/* The value at a multi-index of ndim entries, as double.  Out-of-range
 * indices return NAN. */
double cr_get(const cr_tensor *t, const int64_t *index);
/* The value at flat row-major position i (0 <= i < numel), as double. */
double cr_get_flat(const cr_tensor *t, int64_t i);
/* Set the value at flat row-major position i (into an i64 tensor: truncated
 * toward zero, NaN as 0, saturated at the ends of the int64 range). */
void cr_set_flat(cr_tensor *t, int64_t i, double value);
/* The single value of a one-element tensor; NAN otherwise or for NULL. */
double cr_item(const cr_tensor *t);
/* True when every element of t is finite (no NaN, no +-Inf); false also
 * for NULL.  One pass over the data, vectorised for contiguous tensors:
 * cheap enough to run on every parameter after loading a checkpoint or on
 * every loss. */
bool cr_all_finite(const cr_tensor *t);
/* Copy all elements, row-major, converted to double, into out[numel]. */
void cr_to_doubles(const cr_tensor *t, double *out);

/* ---- printing */
/* Write "tensor([..], shape=[2,3], dtype=f32, grad_fn=tanh)" to f, eliding
 * the middle of long dims.  NULL prints "tensor(NULL)". */
void cr_print(FILE *f, const cr_tensor *t);
/* Format a shape as "[2,3,4]" into buf (always NUL-terminated). */
void cr_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* ---- seeded random numbers (part of the library: the same seed gives the
 * same numbers on every run and machine) */
/* A generator seeded with seed (xoshiro256** seeded through splitmix64). */
cr_rng *cr_rng_new(uint64_t seed);
void cr_rng_free(cr_rng *rng);
void cr_rng_seed(cr_rng *rng, uint64_t seed);
/* Uniform double in [0, 1) with 53 random bits. */
double cr_rng_uniform(cr_rng *rng);
/* Standard normal (Box-Muller, both values used). */
double cr_rng_normal(cr_rng *rng);
/* Uniform integer in [0, n). */
uint64_t cr_rng_below(cr_rng *rng, uint64_t n);
/* The generator's whole state as 5 words (for checkpoints), and back. */
void cr_rng_get_state(const cr_rng *rng, uint64_t state[5]);
void cr_rng_set_state(cr_rng *rng, const uint64_t state[5]);

#ifdef __cplusplus
}
#endif
#endif
