/* chainrule/dist.h — data-parallel training across processes on MPI
 * (libchainrule_mpi: pkg-config chainrule-mpi; not part of libchainrule,
 * which has no MPI dependency, and not included by chainrule.h).
 *
 * N processes (ranks), started by mpirun, each hold the same model and
 * train on their own share of every batch.  After each backward pass the
 * ranks average their gradients, so every rank makes the same optimizer
 * step — the update of one process on the whole batch, as in PyTorch's
 * DistributedDataParallel with the MPI backend.
 *
 * Worked example (every rank runs this; mpirun -np 4 ./train):
 *
 *   cr_dist *d = cr_dist_init(ctx, NULL);       // MPI_COMM_WORLD, defaults
 *   if (!d) { fprintf(stderr, "%s\n", cr_ctx_error(ctx)); return 1; }
 *   int rank = cr_dist_rank(d), n = cr_dist_size(d);
 *   if (cr_dist_check_params(ctx, d, params, names, n_params) != CR_OK ||  // same model?
 *       cr_dist_broadcast_params(ctx, d, params, n_params) != CR_OK) ... // rank 0's values
 *   for (step ...) {
 *     ... forward on this rank's rows [B*rank/n, B*(rank+1)/n) of the batch,
 *     ... loss = the mean over those rows, cr_backward
 *     if (cr_dist_allreduce_grads(ctx, d, params, n_params) != CR_OK) ... // the average
 *     cr_clip_grad_norm(...); cr_optim_step(...);   // identical on every rank
 *   }
 *   cr_dist_free(d);                            // MPI_Finalize if cr_dist_init began MPI
 *
 * Gradients of equal-sized slices are averaged (each rank's times 1/N);
 * cr_dist_allreduce_grads_weighted takes each rank's own weight, e.g.
 * rows_r / B for uneven slices, so the result is still the gradient of
 * the mean over the whole batch.
 *
 * Messages.  Gradients travel in buckets: consecutive gradients of one
 * dtype packed into one message of up to opts.bucket_bytes (a gradient
 * larger than a bucket is sent in bucket-sized pieces, in place), so a
 * model of many small tensors costs a few large messages.
 *
 * Reduction order.  By default each bucket is one MPI_Allreduce(SUM),
 * whose order of additions is the MPI library's choice (it may depend on
 * the number of ranks, the message size and the algorithm it selects).
 * With opts.deterministic the order is fixed by chainrule: every element
 * is summed by one owner rank as (((w_0 g_0 + w_1 g_1) + w_2 g_2) + ...)
 * in rank order, from pieces exchanged with MPI_Alltoallv, and the sums
 * are copied to every rank with MPI_Allgatherv.  Copies do not round, so
 * every rank gets the same bits, and a run gives the same bits each time
 * it is repeated with the same number of ranks, whatever the timing, the
 * bucket size or the algorithms MPI picks.  It moves as many bytes as a
 * ring all-reduce (2 (N-1)/N of the gradient per rank).
 *
 * Safety.  Every collective here starts with the same small exchange (an
 * MPI_Allreduce of 16 bytes): a hash of what this rank is about to do —
 * the call, and its parameters' names, dtypes and shapes (and which have
 * a gradient) — and whether an error is pending in its ctx.  If the ranks
 * disagree, no data is exchanged and EVERY rank returns an error naming
 * the first rank that differs from rank 0 and the first difference:
 *   "dist_check_params: rank 1 of 2 differs from rank 0: parameter 1 is
 *    'rnn.weight_ih_l0' f32 [128,16] on rank 0 but 'rnn.weight_ih_l0'
 *    f32 [192,16] on rank 1"
 *   "dist_allreduce_grads: rank 1 of 2 failed: step 5: out of memory ..."
 * (unlike the rest of chainrule, a collective called while an error is
 * pending in ctx still takes part, to tell the others, and returns that
 * error).  After such an error the group is stopped on every rank alike:
 * later collectives return CR_ERR_STATE at once, and cr_dist_free and
 * MPI_Finalize do not hang.  Two ranks in different cr_dist calls meet in
 * that first exchange, so a rank that gives up (cr_dist_agree with a
 * failure) releases the others from whatever call they wait in.
 *
 * Errors.  The communicator is a duplicate of the one given, with
 * MPI_ERRORS_RETURN: an MPI error is a message (CR_ERR_IO) naming the
 * function, this rank and MPI_Error_string's text, after which the group
 * is unusable (the other ranks may be waiting): end the job with
 * cr_dist_abort.  A rank that dies ends the job through mpirun, which
 * names it ("mpirun noticed that process rank 1 ... exited on signal 9").
 * A rank that stops answering (stopped, stuck, or never calling) is caught
 * by a watchdog thread: when one collective has waited opts.timeout_s
 * seconds it prints
 *   "cr_dist: rank 0 of 2: dist_allreduce_grads (MPI_Allreduce of bucket 1
 *    of 2, 1048576 f32) has waited 300 s for the other ranks: one died,
 *    stopped or is not calling it; exiting with status 124"
 * and ends this process (_exit(124): MPI's blocking calls cannot be
 * interrupted, and calling MPI from a second thread would need
 * MPI_THREAD_MULTIPLE); mpirun then ends the others.  This is what
 * PyTorch's NCCL watchdog does; MPI itself has no timeout.
 *
 * Threads: a cr_dist is used by one thread, the one that initialised MPI
 * (MPI_THREAD_FUNNELED is enough; chainrule's own worker threads never
 * call MPI).  Run one rank per core with cr_set_num_threads(1) and
 * mpirun --bind-to core, so ranks do not compete for cores.
 *
 * Memory: staging buffers (a bucket, and with opts.deterministic the
 * pieces received) are allocated on first use and reused, so steady-state
 * steps make no allocation of their own.
 */
#ifndef CHAINRULE_DIST_H
#define CHAINRULE_DIST_H

#include <mpi.h>

#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The default timeout of one collective, in seconds (see opts.timeout_s). */
#define CR_DIST_DEFAULT_TIMEOUT 300.0
/* The default bucket: 4 MiB (one message per 1M float32 gradients). */
#define CR_DIST_DEFAULT_BUCKET ((size_t)4 << 20)
/* The exit status of a process the watchdog ends. */
#define CR_DIST_TIMEOUT_EXIT 124

typedef struct cr_dist_opts {
  /* Fixed reduction order (see the top of this file).  Off: MPI_Allreduce. */
  bool deterministic;
  /* Largest message of gradients or parameters, in bytes; 0: the default
   * CR_DIST_DEFAULT_BUCKET.  At least the size of one element. */
  size_t bucket_bytes;
  /* Seconds a collective may wait for the other ranks before the watchdog
   * ends the process; 0: CR_DIST_DEFAULT_TIMEOUT; < 0: wait forever. */
  double timeout_s;
} cr_dist_opts;

typedef struct cr_dist cr_dist;

/* Join the process group of MPI_COMM_WORLD: MPI_Init_thread
 * (MPI_THREAD_FUNNELED) first if MPI is not initialised yet, in which case
 * the last cr_dist_free calls MPI_Finalize.  opts NULL: the defaults.
 * Collective: every rank must call it, with the same deterministic and
 * bucket_bytes (else every rank gets an error naming the first that
 * differs).  Returns the group (owned by the caller: cr_dist_free), or
 * NULL and an error in ctx. */
cr_dist *cr_dist_init(cr_ctx *ctx, const cr_dist_opts *opts);
/* The same over a given communicator (duplicated: the caller keeps and
 * frees comm; MPI must already be initialised). */
cr_dist *cr_dist_init_comm(cr_ctx *ctx, MPI_Comm comm, const cr_dist_opts *opts);
/* Free the group (its communicator, buffers and watchdog) and, if
 * cr_dist_init started MPI and no other group is left, finalise MPI.
 * NULL accepted. */
void cr_dist_free(cr_dist *d);
/* End every process of the group at once (MPI_Abort with code), after a
 * communication error or a failure the other ranks cannot be told of. */
void cr_dist_abort(cr_dist *d, int code);

/* This process's rank in [0, size) and the number of ranks (0 for NULL). */
int cr_dist_rank(const cr_dist *d);
int cr_dist_size(const cr_dist *d);
/* The group's own communicator (for the caller's own MPI calls; do not
 * free it).  MPI_COMM_NULL for NULL. */
MPI_Comm cr_dist_comm(const cr_dist *d);

/* Collective.  Every rank has the same parameter list: the same count,
 * and parameter i has the same name, dtype and shape everywhere.  names
 * may be NULL (then cr_name(params[i]), or "#i" when unnamed).  Returns
 * CR_OK on every rank, or on every rank CR_ERR_SHAPE and a message naming
 * the first rank that differs from rank 0 and its first differing
 * parameter with both versions (see the top of this file). */
CR_NODISCARD cr_status cr_dist_check_params(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params,
                                            const char *const *names, int n);

/* Collective.  Copy rank 0's values of params[0..n) (contiguous
 * persistent tensors) to every other rank, in buckets (MPI_Bcast): the
 * start of data-parallel training, so every rank begins from the same
 * model.  The lists must agree as for cr_dist_check_params (checked). */
CR_NODISCARD cr_status cr_dist_broadcast_params(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params,
                                                int n);

/* Collective.  Replace every gradient by the average over the ranks:
 *   g <- (1/N) sum_r g_r
 * for each parameter with requires_grad and a gradient (cr_grad); the
 * others are skipped, as the optimizers skip them, and must be skipped on
 * every rank alike (checked, with the lists as for cr_dist_check_params).
 * Afterwards every rank holds the same gradients (with opts.deterministic
 * the same bits, always; by default as the MPI library sums them, which
 * for two ranks is also the same bits).  A single rank returns at once. */
CR_NODISCARD cr_status cr_dist_allreduce_grads(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params,
                                               int n);
/* The same with this rank's weight:  g <- sum_r weight_r g_r.  With slices
 * of b_r rows of a batch of B, weight b_r / B makes the result the
 * gradient of the mean loss over all B rows (the one-process gradient).
 * weight must be finite; the weights need not sum to 1. */
CR_NODISCARD cr_status cr_dist_allreduce_grads_weighted(cr_ctx *ctx, cr_dist *d,
                                                        cr_tensor *const *params, int n,
                                                        double weight);

/* Collective.  v[i] <- sum_r v_r[i] for i < n on every rank (losses,
 * counts), summed in rank order by each rank alike, so every rank gets the
 * same bits.  n must be the same everywhere (checked). */
CR_NODISCARD cr_status cr_dist_sum(cr_ctx *ctx, cr_dist *d, double *v, int n);

/* Collective.  Every rank's bytes mine[0..n) concatenated in rank order
 * into all (on every rank); n may differ between ranks.  *total (may be
 * NULL) receives the total; if it is larger than cap every rank gets
 * CR_ERR_ARG and all is not written. */
CR_NODISCARD cr_status cr_dist_allgather(cr_ctx *ctx, cr_dist *d, const void *mine, size_t n,
                                         void *all, size_t cap, size_t *total);

/* Collective.  The parameters' values are the same bits on every rank (a
 * hash of each compared; the lists must agree as for cr_dist_check_params).
 * CR_ERR_STATE on every rank otherwise, naming the first rank and
 * parameter that differ from rank 0's: ranks that drifted apart. */
CR_NODISCARD cr_status cr_dist_check_in_sync(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params,
                                             const char *const *names, int n);

/* Collective.  Succeeds on every rank when every rank passes failure NULL
 * and has no error pending in ctx; otherwise every rank gets an error
 * naming the first failed rank and its message (failure, or the pending
 * error's), and the group is stopped.  A barrier that carries failures:
 * a rank that gives up calls it (e.g. at exit), which releases the others
 * from any cr_dist collective they wait in. */
CR_NODISCARD cr_status cr_dist_agree(cr_ctx *ctx, cr_dist *d, const char *failure);

/* What cr_dist_allreduce_grads has cost so far on this rank. */
typedef struct cr_dist_stats {
  int64_t allreduce_calls; /* calls of cr_dist_allreduce_grads[_weighted] */
  int64_t buckets;         /* messages they sent */
  int64_t bytes;           /* gradient bytes they reduced */
  double sync_s;           /* seconds in the opening exchange: mostly waiting
                              for the slowest rank to finish its backward */
  double reduce_s;         /* seconds reducing the buckets (pack, MPI, unpack) */
} cr_dist_stats;
void cr_dist_get_stats(const cr_dist *d, cr_dist_stats *out);

#ifdef __cplusplus
}
#endif
#endif
