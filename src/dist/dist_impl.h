/* dist_impl.h — the insides of libchainrule_mpi, shared by its files:
 *   dist.c         the group: init, free, abort, accessors, statistics
 *   watchdog.c     the thread that ends a process whose collective waits too long
 *   agree.c        the opening exchange of every collective, and its diagnosis
 *   describe.c     a parameter list as text (what the ranks compare) and checks
 *   buckets.c      gradients and parameters cut into messages; staging
 *   reduce.c       cr_dist_allreduce_grads (MPI_Allreduce, or the fixed order)
 *   collectives.c  broadcast, sum, allgather, check_params, check_in_sync, agree
 * This library uses only chainrule's public API (it links libchainrule
 * like any program), so it cannot reach cr__ helpers. */
#ifndef CHAINRULE_DIST_IMPL_H
#define CHAINRULE_DIST_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "chainrule/dist.h"

/* ---- watchdog.c */

typedef struct cr__dist_watchdog {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool running, stop;
  double timeout; /* seconds; <= 0: no thread */
  double since;   /* when the current collective began (monotonic s); 0: none */
  char what[200]; /* which call and which MPI operation waits */
  int rank, size;
} cr__dist_watchdog;

/* Start the thread (timeout > 0); false if it could not be made. */
bool cr__dist_watchdog_start(cr__dist_watchdog *w, double timeout, int rank, int size);
void cr__dist_watchdog_stop(cr__dist_watchdog *w);
/* An MPI call that may wait for other ranks begins / ends.  what is
 * printf-formatted into the watchdog's message. */
void cr__dist_wait_begin(cr__dist_watchdog *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cr__dist_wait_end(cr__dist_watchdog *w);
/* Seconds on a monotonic clock. */
double cr__dist_now(void);

/* ---- the group */

struct cr_dist {
  MPI_Comm comm; /* our duplicate, with MPI_ERRORS_RETURN */
  int rank, size;
  cr_dist_opts opts; /* with the defaults filled in */
  bool owns_mpi;     /* cr_dist_init called MPI_Init_thread */
  /* stopped: a collective failed on every rank alike (the reason is in
   * stop_msg); comm_failed: an MPI call failed here, the others may wait */
  bool stopped, comm_failed;
  char stop_msg[1100];
  cr__dist_watchdog wd;
  /* staging, grown on demand (buckets.c) */
  void *stage;
  size_t stage_cap;
  void *recv; /* opts.deterministic: the pieces of my chunk from every rank */
  size_t recv_cap;
  char *text; /* describe.c's buffer for the list being described */
  size_t text_cap;
  struct cr__dist_piece *pieces; /* the current plan (buckets.c) */
  struct cr__dist_bucket *buckets;
  int pieces_cap, buckets_cap;
  int *counts; /* 4 * size ints: counts and displacements of v-collectives */
  cr_dist_stats stats;
};

/* An MPI return code rc of call (e.g. "MPI_Allreduce") in op: CR_OK, or
 * CR_ERR_IO with "op: rank R of N: call: <MPI_Error_string>" in ctx, and
 * the group marked comm_failed. */
cr_status cr__dist_mpi(cr_dist *d, cr_ctx *ctx, const char *op, const char *call, int rc);
/* Grow *buf to at least n bytes; false (and CR_ERR_NOMEM in ctx) if not. */
bool cr__dist_reserve(cr_ctx *ctx, const char *op, void **buf, size_t *cap, size_t n);

/* ---- agree.c */

/* The opening exchange of a collective named op, about to do what the
 * text desc describes (lines "key\tvalue"; the first says which call).
 * Every rank of the group must reach it.  local_st != CR_OK: this rank has
 * failed (message local_msg).  Returns CR_OK when every rank is fine and
 * every desc is the same; otherwise every rank gets an error (see
 * chainrule/dist.h) and the group is stopped.  The seconds it took are
 * added to *waited when waited is not NULL. */
cr_status cr__dist_agree(cr_dist *d, cr_ctx *ctx, const char *op, const char *desc,
                         cr_status local_st, const char *local_msg, double *waited);
/* The standard start of a collective: d usable (not stopped, MPI not
 * failed), then cr__dist_agree with this rank's state: an error pending in
 * ctx, or one found by the caller (arg_st, in ctx already). */
cr_status cr__dist_begin(cr_dist *d, cr_ctx *ctx, const char *op, const char *desc, double *waited);

/* ---- describe.c */

/* What a list of parameters is, as desc text into d->text:
 *   "call\t<op> of <n> parameters<extra>"
 *   "parameter <i>\t'<name>' <dtype> [<shape>]<what>"   for every i
 * with what = " with a gradient" / " without a gradient" when grads.
 * names may be NULL.  Checks the list first (NULL entries, duplicates,
 * non-contiguous data or gradients, i64 gradients) and returns its status
 * (CR_ERR_ARG in ctx); the text describes what it could even then. */
cr_status cr__dist_describe(cr_dist *d, cr_ctx *ctx, const char *op, cr_tensor *const *params,
                            const char *const *names, int n, bool grads, const char *extra);
/* The tensor that takes part: params[i]'s gradient (grads; NULL when it is
 * skipped) or params[i] itself. */
cr_tensor *cr__dist_target(cr_tensor *p, bool grads);
/* FNV-1a 64 of a byte string, and of a tensor's contiguous data. */
uint64_t cr__dist_hash(const void *data, size_t n, uint64_t h);

/* ---- buckets.c */

/* A contiguous run of elements of one target tensor. */
typedef struct cr__dist_piece {
  void *data;    /* first element */
  int64_t count; /* elements */
} cr__dist_piece;

/* One message: pieces[first .. first + n_pieces), all of one dtype. */
typedef struct cr__dist_bucket {
  cr_dtype dtype;
  int64_t count; /* elements */
  int first, n_pieces;
} cr__dist_bucket;

/* Cut the targets of params[0..n) (cr__dist_target; those that are NULL
 * are skipped) into buckets of at most opts.bucket_bytes, in list order: a
 * target fills the current bucket and spills into the next, and a dtype
 * change starts a new one.  write: the data will be written (cr_data,
 * which tells chainrule's caches), else only read.  The plan goes to
 * d->pieces and d->buckets (grown as needed; CR_ERR_NOMEM in ctx and -1
 * if that fails); returns the number of buckets and the bytes in *bytes. */
int cr__dist_plan(cr_dist *d, cr_ctx *ctx, const char *op, cr_tensor *const *params, int n,
                  bool grads, bool write, int64_t *bytes);
/* Reserve the staging for the plan: one bucket, and with recv the pieces
 * of one chunk from every rank (opts.deterministic).  false: no memory. */
bool cr__dist_stage(cr_dist *d, cr_ctx *ctx, const char *op, bool recv);
/* The memory a bucket is sent from and received into: its only piece
 * itself (in place) or the staging buffer, packed from the pieces with
 * every element times scale when pack. */
void *cr__dist_bucket_buf(cr_dist *d, const cr__dist_bucket *b, bool pack, double scale);
/* Copy a staged bucket back into its pieces (nothing when in place). */
void cr__dist_bucket_unpack(cr_dist *d, const cr__dist_bucket *b);
/* Multiply a bucket's elements in place (in its buffer buf) by scale. */
void cr__dist_scale(void *buf, cr_dtype dt, int64_t count, double scale);
MPI_Datatype cr__dist_mpi_type(cr_dtype dt);

#endif
