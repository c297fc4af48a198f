/* chainrule/base.h — dtypes, status codes, the context and its error rule.
 *
 * Every op takes a context first.  The context owns an arena (op results and
 * graph nodes), the first error raised since it was last cleared, the grad
 * mode and the training mode.
 *
 * Error propagation rule
 * ----------------------
 * A user mistake (shape or dtype mismatch, bad axis, backward on a
 * non-scalar without a seed, use of a tensor after its arena was reset, ...)
 * never aborts.  The op stores a status code and a message of the form
 *     "op: shapes: reason"    e.g. "matmul: [32,65] @ [64,256]: inner dimensions 65 and 64 differ"
 * in the context and returns NULL.  An op given a NULL input returns NULL
 * and leaves the first message in place, so a whole forward pass can be
 * written without checks and tested once at the end:
 *     cr_tensor *loss = cr_mean(ctx, cr_square(ctx, cr_sub(ctx, y, t)));
 *     if (!loss) { fprintf(stderr, "%s\n", cr_ctx_error(ctx)); ... }
 * Only the FIRST error is kept; cr_ctx_clear_error() forgets it.  While an
 * error is pending, ops keep returning NULL (so no garbage flows on).
 *
 * Threads: a context, its tensors and an rng are used by one thread at a
 * time; separate contexts may run on separate threads at once.
 */
#ifndef CHAINRULE_BASE_H
#define CHAINRULE_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CR_NODISCARD __attribute__((warn_unused_result))
#else
#define CR_NODISCARD
#endif

/* Largest number of dimensions a tensor may have. */
#define CR_MAX_DIMS 6

/* Element types.  f32 and f64 hold values and gradients; i64 holds
 * indices and class targets (cr_from_i64): it never requires grad, and only
 * the ops that take indices accept it (gather, scatter_add,
 * index_select_t, embedding_t, the losses' targets; argmax, argmin and
 * topk return it) — every other op refuses it with "op: dtype i64: ...". */
typedef enum cr_dtype { CR_F32 = 0, CR_F64 = 1, CR_I64 = 2 } cr_dtype;

typedef enum cr_status {
  CR_OK = 0,
  CR_ERR_SHAPE,   /* shapes do not fit the op */
  CR_ERR_DTYPE,   /* dtypes differ or are not supported */
  CR_ERR_ARG,     /* a bad argument: axis, index, size, NULL, option */
  CR_ERR_STATE,   /* wrong state: use after reset, backward misuse */
  CR_ERR_NOMEM,   /* out of memory */
  CR_ERR_IO,      /* a file could not be read or written */
  CR_ERR_FORMAT,  /* a file is malformed */
  CR_ERR_NUMERIC, /* a NaN or Inf where none may be (anomaly mode, checks) */
} cr_status;

typedef struct cr_ctx cr_ctx;
typedef struct cr_tensor cr_tensor;

#include "chainrule/version.h" /* CR_VERSION_MAJOR/MINOR/PATCH/STRING/NUMBER */
/* The library's version as it was built, "MAJOR.MINOR.PATCH" (a static
 * string).  The headers' version is CR_VERSION_STRING (chainrule/version.h);
 * the two differ when a program runs against a library from another
 * release. */
const char *cr_version(void);
/* The same as MAJOR * 1000000 + MINOR * 1000 + PATCH, to compare with
 * CR_VERSION_NUMBER. */
int cr_version_number(void);

/* Name of a dtype: "f32", "f64" or "i64". */
const char *cr_dtype_name(cr_dtype dt);
/* Size in bytes of one element of dt. */
size_t cr_dtype_size(cr_dtype dt);
/* Short name of a status code, e.g. "shape error". */
const char *cr_status_name(cr_status st);

/* A new context.  Returns NULL only when out of memory.  Initialises the
 * BLIS runtime on first use (see chainrule/runtime.h). */
cr_ctx *cr_ctx_new(void);
/* Free the context and everything in its arena.  NULL is accepted. */
void cr_ctx_free(cr_ctx *ctx);
/* Forget every op result and graph node of the context at once (one
 * training step ends).  Memory is kept for reuse, so a steady-state loop
 * never calls malloc.  Tensors from before the reset must not be used;
 * passing one to an op is reported as CR_ERR_STATE where it can be seen.
 * Persistent tensors (cr_persist, cr_tensor_new) are not affected, except
 * that a grad stored in the arena is dropped. */
void cr_ctx_reset(cr_ctx *ctx);

/* The first error since the last clear: its code, and its message ("" when
 * CR_OK).  The message pointer is owned by the context. */
cr_status cr_ctx_status(const cr_ctx *ctx);
const char *cr_ctx_error(const cr_ctx *ctx);
void cr_ctx_clear_error(cr_ctx *ctx);
/* Record an error as if an op had raised it (for user code built on ops,
 * e.g. custom cells).  Keeps an earlier error.  Always returns st. */
cr_status cr_ctx_set_error(cr_ctx *ctx, cr_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Grad mode: when off, ops record no graph (evaluation, sampling).
 * Returns the previous setting.  On by default. */
bool cr_set_grad_enabled(cr_ctx *ctx, bool on);
bool cr_grad_enabled(const cr_ctx *ctx);
/* Training mode: dropout is active only in training mode.  Returns the
 * previous setting.  On by default. */
bool cr_set_training(cr_ctx *ctx, bool on);
bool cr_training(const cr_ctx *ctx);

/* Arena statistics, for tests and teaching. */
typedef struct cr_ctx_stats {
  size_t arena_bytes_used;     /* bytes handed out since the last reset */
  size_t arena_bytes_peak;     /* the most ever in use at once (since
                                  cr_ctx_clear_peak): what a step needs */
  size_t arena_bytes_reserved; /* bytes held by the arena */
  size_t arena_chunk_mallocs;  /* malloc calls the arena ever made */
  size_t nodes;                /* graph nodes recorded since the last reset */
  uint32_t epoch;              /* number of resets so far */
} cr_ctx_stats;
void cr_ctx_get_stats(const cr_ctx *ctx, cr_ctx_stats *out);
/* Start measuring arena_bytes_peak afresh (from the bytes in use now). */
void cr_ctx_clear_peak(cr_ctx *ctx);

/* Number of heap allocations chainrule has made in this process (arena
 * chunks, persistent tensors and their grads, scratch).  A training loop in
 * steady state leaves it unchanged; tests use it to prove that. */
size_t cr_alloc_count(void);

#ifdef __cplusplus
}
#endif
#endif
