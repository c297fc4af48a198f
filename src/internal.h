/* internal.h — definitions shared by chainrule's own files (not installed).
 * Symbols here use the cr__ prefix. */
#ifndef CHAINRULE_INTERNAL_H
#define CHAINRULE_INTERNAL_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/autograd.h"
#include "chainrule/base.h"
#include "chainrule/ops.h"
#include "chainrule/tensor.h"

#define CR__TENSOR_MAGIC 0x7e45c0deu

struct cr_node;
struct cr__hook;

/* Longest tensor name kept (longer names are truncated). */
#define CR__NAME_LEN 48

struct cr_tensor {
  uint32_t magic;
  cr_dtype dtype;
  int ndim;
  int64_t shape[CR_MAX_DIMS];
  int64_t stride[CR_MAX_DIMS]; /* in elements */
  int64_t numel;
  void *data;      /* address of element [0,..,0] */
  void *heap_data; /* persistent tensors: the malloc'd block */
  /* Leaves: the gradient accumulated across passes (persistent for a
   * persistent leaf).  Others: the engine's buffer for the last pass. */
  cr_tensor *grad;
  struct cr_node *node;      /* the op that produced it; NULL for a leaf */
  cr_tensor *alt;            /* the same values in another layout (a contiguous
                                copy's source view), or NULL: products may read
                                whichever layout BLIS handles faster */
  cr_tensor *root;           /* a view's data owner (the tensor whose buffer it
                                shows), or NULL: t owns its data */
  uint64_t version;          /* bumped by every write to the data (cr__touch) */
  struct cr__packed *packed; /* panels made from this data (ops/matmul.c) */
  cr_ctx *ctx;               /* owning arena's context; NULL when persistent */
  uint32_t epoch;            /* arena epoch at creation */
  uint64_t serial;           /* creation number among the context's arena tensors */
  /* the state of grad within a first-order pass */
  uint32_t grad_pass; /* pass that last used grad (zeroed or wrote it) */
  uint32_t view_pass; /* pass whose consumers set view_ok */
  bool view_ok;       /* every consumer takes a strided-view gradient */
  uint32_t uses;      /* inputs of this pass's nodes that are this tensor */
  /* pass rows_owed_pass: rows along axis 0 of grad that no view has written
   * yet (1) and that read zeros (cr__grad_acc_rows); NULL: none owed */
  uint8_t *rows_owed;
  uint32_t rows_owed_pass;
  bool grad_is_view;    /* grad shares another tensor's buffer */
  uint32_t finite_pass; /* anomaly mode: pass whose settled grad was checked finite */
  /* graph-mode passes (create_graph, cr_autograd_grad): the gradient as a
   * tensor built with ops, for pass pgrad_pass */
  cr_tensor *pgrad;
  uint32_t pgrad_pass;
  /* cr_backward with create_graph: the leaf's gradient with its graph,
   * valid while its epoch is the context's (see cr_grad) */
  cr_tensor *grad_graph;
  cr_ctx *grad_graph_ctx; /* compared, never dereferenced: it may be freed */
  uint32_t grad_graph_epoch;
  struct cr__hook *hooks; /* gradient hooks, in registration order */
  bool requires_grad;
  bool persistent;
  bool retain_grad;        /* an intermediate whose gradient cr_grad shows */
  bool op_result;          /* computed by an op: its values never change */
  bool scratch;            /* lives in the scratch arena (made inside a region) */
  bool released;           /* its values were given back (no VJP reads them): a
                              recurrent layer's forward keeps only what its
                              backward needs (cr__track_release) */
  cr_tensor *tracked_next; /* the tensors made while tracking, newest first */
  uint32_t keep_mark;      /* = ctx->keep_marks: a release must keep it */
  char name[CR__NAME_LEN]; /* "" when unnamed */
};

/* A gradient hook (chainrule/autograd.h). */
typedef struct cr__hook {
  struct cr__hook *next;
  cr_grad_hook fn;
  void *user;
  bool heap; /* malloc'd (persistent tensors) rather than in the arena */
} cr__hook;

typedef struct cr__chunk {
  struct cr__chunk *next;
  size_t cap, used;
  unsigned char *mem; /* 64-byte aligned */
  void *block;
} cr__chunk;

/* A bump allocator over a list of chunks. */
typedef struct cr__arena {
  cr__chunk *first, *cur;
  size_t used_total; /* bytes handed out since reset */
} cr__arena;

/* Free buffers by byte size. */
typedef struct cr__pool {
  struct {
    size_t bytes;
    void *head; /* a free buffer; its first word links the next */
  } size[32];
  int n;
} cr__pool;

/* Where a region began (cr__region_begin), to end it there. */
typedef struct cr__mark {
  cr__chunk *chunk;
  size_t used, used_total, nodes;
  bool was_in_region;
  cr__pool spool; /* the scratch pool then */
} cr__mark;

struct cr_ctx {
  cr__arena main;    /* op results, graph nodes, gradients: until reset */
  cr__arena scratch; /* regions: a segment recomputed in backward, then dropped */
  bool in_region;    /* allocations go to the scratch arena */
  size_t chunk_mallocs;
  size_t peak_bytes; /* largest main + scratch use since the stats were cleared */
  size_t nodes;
  uint32_t epoch;
  uint32_t pass;            /* the running (or last) backward pass's number */
  uint32_t passes;          /* pass numbers handed out so far (nested passes too) */
  uint32_t walk;            /* graph walks so far (marks visited nodes) */
  uint32_t keep_marks;      /* releases of tracked tensors so far (keep_mark) */
  uint64_t node_seq;        /* nodes recorded so far: each node's creation number */
  uint64_t tensor_serial;   /* arena tensors made so far */
  bool graph_pass;          /* the running pass uses graph VJPs (vjp_graph) */
  struct cr_node *vjp_node; /* the node whose graph VJP is running (messages) */
  /* contributions to gradient buffers queued during the pass (op.h) */
  struct cr__pending *pending;
  void *owed[16]; /* the distinct buffers they go to */
  int n_owed;     /* -1: more than 16, settle checks every node */
  /* dead buffers (consumed gradients, released values), by byte size, for
   * reuse: pools[0] of the main arena, pools[1] of the scratch arena (saved
   * and restored by regions) */
  cr__pool pools[2];
  cr_tensor *tracked; /* tensors made since cr__track_begin (newest first) */
  bool tracking;
  bool grad_enabled, training, anomaly;
  bool unfused;      /* cr_set_fusion(ctx, false): fused chains run as their ops */
  const char *scope; /* label recorded with every new node (cr_set_scope), main arena */
  cr_status status;
  char msg[512];
};

/* A scope label "outer/<fmt ...>" for the ops made until the previous one
 * (returned) is put back with ctx->scope = prev; the label lives in the
 * current arena (a region's ends with it).  See cr_set_scope. */
const char *cr__push_scope(cr_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for "step t" (layer 0) or "layer l step t", with " reverse"
 * for a bidirectional layer's reverse direction; without printf. */
const char *cr__push_step_scope(cr_ctx *ctx, int layer, int64_t step, bool reverse);
/* s + the decimal digits of v (no terminator), without printf: labels made
 * at every step of a layer.  Returns the end. */
char *cr__put_int(char *s, int64_t v);
/* t's name = the first n characters of name (at most CR__NAME_LEN - 1 kept),
 * for a caller that knows the length (cr_set_name measures it). */
void cr__set_name_n(cr_tensor *t, const char *name, size_t n);

/* Internal invariant check (a bug in chainrule, never user input). */
#define CR_ASSERT(cond, ...)                                                                       \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "chainrule internal error at %s:%d: ", __FILE__, __LINE__);                  \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* Hot elementwise and small-product kernels are compiled for AVX-512,
 * AVX2+FMA and baseline x86-64, the best chosen at load time (ifunc), so
 * the library stays portable while its loops use the CPU's full width. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define CR_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CR_KERNEL
#endif

/* ---- memory */
void *cr__malloc(size_t n); /* counted in cr_alloc_count */
void *cr__calloc(size_t n, size_t size);
void cr__free(void *p);
/* Arena allocation, 64-byte aligned; NULL (and an error) when out of memory.
 * Inside a region (below) it comes from the scratch arena. */
void *cr__alloc(cr_ctx *ctx, size_t bytes);
/* From the main arena, even inside a region (pass-owned data). */
void *cr__alloc_main(cr_ctx *ctx, size_t bytes);
/* From the arena t lives in: what hangs off a tensor (its gradient buffer,
 * packed panels, hooks) must not outlive it, nor die before it. */
void *cr__alloc_for(cr_ctx *ctx, const cr_tensor *t, size_t bytes);

/* Regions: between cr__region_begin and cr__region_end every arena
 * allocation (tensors, nodes, their data) comes from the scratch arena, and
 * the tensors made are marked scratch.  Ending with rewind drops all of it
 * at once (a checkpointed segment's graph, after its backward); regions
 * nest. */
cr__mark cr__region_begin(cr_ctx *ctx);
void cr__region_end(cr_ctx *ctx, const cr__mark *m, bool rewind);

/* ---- errors: store the first error, return NULL */
void *cr__fail(cr_ctx *ctx, cr_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
cr_status cr__failv(cr_ctx *ctx, cr_status st, const char *fmt, va_list ap);

/* ---- memory of recurrent layers: tensors made between cr__track_begin and
 * cr__track_release whose values no VJP reads (by the ops' `reads` sets)
 * and that do not escape (escapes: the states and outputs a block of steps
 * hands on) are released — their buffers go to the pool new tensors and
 * gradients come from — so full BPTT keeps per step about what its VJPs
 * need.  A released tensor used again is an error, never garbage. */
typedef struct cr__track {
  cr_tensor *head;  /* the tracked list when tracking began */
  uint64_t serial0; /* the tensors made since have larger serials */
} cr__track;
cr__track cr__track_begin(cr_ctx *ctx);
void cr__track_release(cr_ctx *ctx, const cr__track *since, cr_tensor *const *escapes, int n);
/* Inside tracking: a mark at the start of a step, and the release of what
 * that step made and no VJP of its nodes reads (escapes: what it hands on),
 * so the next step reuses those buffers; the tensors stay on the tracked
 * list for the release that ends tracking. */
cr__track cr__track_mark(const cr_ctx *ctx);
void cr__track_release_step(cr_ctx *ctx, const cr__track *step, cr_tensor *const *escapes, int n);
/* A buffer of bytes from the pool of the main (scratch false) or scratch
 * arena, or NULL; give a dead buffer of that arena back. */
void *cr__pool_take(cr_ctx *ctx, bool scratch, size_t bytes);
void cr__pool_give(cr_ctx *ctx, bool scratch, void *data, size_t bytes);

/* ---- checked size arithmetic: every product of dims, strides, element
 * counts or byte sizes goes through these, so no size ever wraps around.
 * The largest tensor chainrule makes has CR__MAX_NUMEL elements. */
#define CR__MAX_NUMEL ((int64_t)1 << 40)
/* *out = a * b for a, b >= 0; false (out untouched) on overflow of int64. */
static inline bool cr__mul_ok(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    return false;
  *out = r;
  return true;
}
/* *out = a + b for a, b >= 0; false on overflow. */
static inline bool cr__add_ok(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
    return false;
  *out = r;
  return true;
}
/* The element count of shape when every dim is >= 1 and the count is at
 * most CR__MAX_NUMEL; else false (no message: callers name their op). */
bool cr__numel_ok(int ndim, const int64_t *shape, int64_t *numel);

/* A product's right operand packed into panels, kept with the tensor that
 * owns the data: valid while ctx, epoch, data version and layout match. */
typedef struct cr__packed {
  struct cr__packed *next;
  const cr_ctx *ctx;
  uint32_t epoch;
  uint64_t version;
  const void *data;
  int64_t k, n, rs, cs;
  float *panels;
} cr__packed;

/* The data of t (and of every view of it) changed: caches built from it
 * (packed panels) are stale. */
static inline void cr__touch(cr_tensor *t) {
  if (t)
    (t->root ? t->root : t)->version++;
}

/* ---- tensors */
/* Element count of a shape already validated (by cr__check_shape). */
int64_t cr__numel(int ndim, const int64_t *shape);
void cr__contig_strides(int ndim, const int64_t *shape, int64_t *stride);
bool cr__is_contig(const cr_tensor *t);
/* Checks that shape is valid (1..CR_MAX_DIMS dims, each >= 1); else error
 * naming op. */
bool cr__check_shape(cr_ctx *ctx, const char *op, int ndim, const int64_t *shape);
/* An uninitialised contiguous arena tensor. */
cr_tensor *cr__new(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape);
/* An arena view onto base's data with the given layout. */
cr_tensor *cr__view(cr_ctx *ctx, const cr_tensor *base, int ndim, const int64_t *shape,
                    const int64_t *stride, void *data);
/* The same two, in the arena owner lives in (for what hangs off owner: its
 * gradient buffer and the views that alias it). */
cr_tensor *cr__new_for(cr_ctx *ctx, const cr_tensor *owner, cr_dtype dt, int ndim,
                       const int64_t *shape);
cr_tensor *cr__view_for(cr_ctx *ctx, const cr_tensor *owner, const cr_tensor *base, int ndim,
                        const int64_t *shape, const int64_t *stride, void *data);
/* Validate op inputs: none NULL, no pending error, none stale (used after
 * reset), none of dtype i64 ("op: dtype i64: ..."), all the same dtype.  On
 * failure stores a message naming op.  Every op on values calls this, so an
 * index tensor never reaches a float kernel. */
bool cr__check_inputs(cr_ctx *ctx, const char *op, int n, cr_tensor *const *in);
/* The same checks without the dtype rules (persist, copy_into, fill). */
bool cr__check_valid(cr_ctx *ctx, const char *op, int n, cr_tensor *const *in);
/* An index argument of op (what: "index", "targets", ...): valid and of
 * dtype i64, else an error naming op and what. */
bool cr__check_index(cr_ctx *ctx, const char *op, const char *what, const cr_tensor *idx);
/* Dense row-major copy of t into dst (numel elements of t's dtype). */
void cr__gather(const cr_tensor *t, void *dst);
/* d[r*C + c] = s[r*rs + c*cs] for an R x C view (ops/common.c: in tiles). */
void cr__gather_2d(cr_dtype dt, const void *s, void *d, int64_t R, int64_t C, int64_t rs,
                   int64_t cs);
/* Shape as "[2,3]" (followed by " 'name'" for a named tensor) into a
 * static-per-call buffer slot (up to 4 at once), for messages. */
const char *cr__shp(const cr_tensor *t);
/* Shape alone, without the name. */
const char *cr__shape_only(const cr_tensor *t);

/* element pointer helpers */
#define CR__F(t) ((float *)(t)->data)
#define CR__D(t) ((double *)(t)->data)

/* ---- BLIS glue (src/blas.c is the only file calling bli_*) */
/* C[m,n] = alpha * op(A) op(B) + beta * C with arbitrary row/col strides;
 * ta/tb transpose A/B.  dt chooses sgemm or dgemm. */
void cr__gemm(cr_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
              const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb, int64_t csb,
              double beta, void *c, int64_t rsc, int64_t csc);

/* ---- threads (src/parallel.c): fn(arg, 0..n-1) on up to
 * cr__parallel_threads() threads, the caller among them; returns when all
 * have run.  Tasks must write disjoint outputs and be cut the same way
 * whatever the thread count, so results do not depend on it.  Inside a
 * task (or while another thread runs a job) it runs the tasks in turn. */
typedef void (*cr__task_fn)(void *arg, int64_t task);
void cr__parallel_for(int64_t n, cr__task_fn fn, void *arg);
/* threads a job started here would use: cr_get_num_threads(), 1 in a task */
int cr__parallel_threads(void);
/* memset(p, 0, bytes) and memcpy (no overlap), on several threads from
 * 64 KiB up: memory-bound passes over gradients, which would otherwise
 * be serial work the other threads wait on */
void cr__par_zero(void *p, size_t bytes);
void cr__par_copy(void *dst, const void *src, size_t bytes);

/* m*n*k at or below which cr__gemm uses plain loops instead of BLIS. */
extern int64_t cr__small_gemm_mnk;

/* Few-row float32 products without packing B (src/skinny_gemm.c): needs
 * AVX-512F or AVX2+FMA (cr__skinny_isa, set from CPUID by src/blas.c), op(B)
 * and C with contiguous rows. */
enum { CR__SKINNY_NONE, CR__SKINNY_AVX2, CR__SKINNY_AVX512 };
extern int cr__skinny_isa; /* CR__SKINNY_NONE disables the skinny path */
bool cr__skinny_ok(int64_t m, int64_t n, int64_t k);
extern int64_t cr__skinny_max_m; /* 0 disables the skinny path */
void cr__skinny_sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t ai,
                      int64_t ap, const float *B, int64_t bp, float beta, float *C, int64_t rsc);
/* The same against op(B) packed once into panels (src/packed_gemm.c;
 * AVX-512 or AVX2+FMA): the floats a packing of op(B) [k, n] takes; the
 * packing (op(B)[p, j] = B[p*rs + j*cs]); rows p0 .. p0 + rows - 1 of a
 * packing made for kp rows (row p0 + i from B + i*rs: rows can be staged
 * as they come); the product C = alpha A op(B)[:k] + beta C with
 * A[i, p] = A[i*ai + p*ap], from panels packed for kp >= k rows; and
 * whether an m x n product is faster so than through BLIS.  The packing
 * must start 32-byte aligned (the AVX2 tiles load its panels aligned). */
size_t cr__skinny_packed_floats(int64_t k, int64_t n);
void cr__skinny_pack(int64_t k, int64_t n, const float *B, int64_t rs, int64_t cs, float *out);
void cr__skinny_pack_rows(int64_t kp, int64_t p0, int64_t rows, int64_t n, const float *B,
                          int64_t rs, int64_t cs, float *out);
void cr__skinny_sgemm_packed(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                             int64_t ai, int64_t ap, const float *Bp, int64_t kp, float beta,
                             float *C, int64_t rsc);
bool cr__packed_suits(int64_t m, int64_t n);
/* The same with beta scaling another matrix: C = alpha A op(B) + beta Cin
 * (Cin's rows rsin apart; rsin 0 repeats one row, a bias; Cin == C is the
 * product above) — an addmm without first copying its c into C. */
void cr__skinny_sgemm_packed_from(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                                  int64_t ai, int64_t ap, const float *Bp, int64_t kp, float beta,
                                  const float *Cin, int64_t rsin, float *C, int64_t rsc);

#endif
