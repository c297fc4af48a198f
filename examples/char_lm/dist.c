/* dist.c — char-lm on several processes: mpirun -np N char-lm train ...
 * (libchainrule_mpi, chainrule/dist.h).
 *
 * Every rank runs the whole program on the same options, text and
 * checkpoint.  --batch B stays the batch of the run: rank r takes
 * sequences [b_lo, b_hi) of every batch (B/N each, one more for the first
 * B mod N ranks; random windows are drawn for all B on every rank, so the
 * ranks' generators stay equal, and with --tbptt rank r reads its streams'
 * shares of the text).  After backward each rank's gradient of its mean
 * loss is weighted by b_r / B and summed over the ranks:
 *     sum_r (b_r / B) * (1 / (b_r T)) sum_{its b_r T tokens} dl = (1 / (B T)) sum_{all} dl,
 * the gradient of one process on the whole batch.  Clipping, the
 * optimizer and every decision then see the same numbers on every rank.
 * Rank 0 prints and saves (the same checkpoint format; a run resumes on
 * any number of ranks).
 *
 * A program started without mpirun (no launcher variables in the
 * environment) does not start MPI at all: it is the one-process program,
 * bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/dist.h"
#include "char_lm.h"

/* Variables that mpirun / mpiexec / srun set for the processes they start
 * (OpenMPI, MPICH's Hydra and PMI, PMIx, Slurm). */
static bool started_by_launcher(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK",
                                     "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i]))
      return true;
  return false;
}

/* A failed collective: the same message on every rank, printed by rank 0
 * (after an MPI error, CR_ERR_IO, each rank prints its own). */
static bool collective_failed(cl_run *t, const char *what) {
  if (t->rank == 0 || cr_ctx_status(t->ctx) == CR_ERR_IO)
    cl_fail("%s%s", what, cr_ctx_error(t->ctx));
  return false;
}

bool cl_dist_init(cl_run *t) {
  t->rank = 0;
  t->size = 1;
  if (!started_by_launcher())
    return true;
  cr_dist_opts o = {.deterministic = t->o.dist_deterministic,
                    .timeout_s = t->o.dist_timeout > 0 ? t->o.dist_timeout : -1};
  cr_dist *d = cr_dist_init(t->ctx, &o);
  if (!d)
    return cl_fail("%s", cr_ctx_error(t->ctx)), false;
  t->dist = d;
  t->rank = cr_dist_rank(d);
  t->size = cr_dist_size(d);
  cl_set_rank(t->rank, t->size);
  return true;
}

int cl_dist_finish(cl_run *t, int rc) {
  cr_dist *d = t->dist;
  if (!d)
    return rc;
  if (rc == 0)
    cr_ctx_clear_error(t->ctx);
  /* a rank that failed says so: the others are released from whatever
   * collective they wait in, or learn of it here at the end */
  const char *why = *cl_last_error() ? cl_last_error() : "stopped with an error";
  cr_status st = cr_dist_agree(t->ctx, d, rc ? why : NULL);
  if (rc == 0 && st != CR_OK) {
    collective_failed(t, "");
    rc = 1;
  }
  if (cr_ctx_status(t->ctx) == CR_ERR_IO)
    cr_dist_abort(d, 1); /* MPI itself failed: the others may be waiting in it */
  cr_dist_free(d);
  t->dist = NULL;
  return rc;
}

bool cl_dist_all_ok(cl_run *t, bool ok) {
  if (!t->dist)
    return ok;
  /* the rank that failed printed why; the others stay silent */
  return cr_dist_agree(t->ctx, t->dist, ok ? NULL : cl_last_error()) == CR_OK;
}

bool cl_dist_start(cl_run *t) {
  if (!t->dist)
    return true;
  /* a rank with another model is an error naming it, before any step */
  if (cr_dist_check_params(t->ctx, t->dist, t->m->params, t->m->names, t->m->n_params) != CR_OK ||
      cr_dist_broadcast_params(t->ctx, t->dist, t->m->params, t->m->n_params) != CR_OK)
    return collective_failed(t, "");
  return true;
}

bool cl_dist_reduce(cl_run *t, double *loss) {
  if (!t->dist)
    return true;
  char what[48];
  snprintf(what, sizeof what, "step %lld: ", (long long)t->step + 1);
  const double w = (double)(t->b_hi - t->b_lo) / (double)t->o.batch;
  double v = *loss * w;
  if (cr_dist_allreduce_grads_weighted(t->ctx, t->dist, t->m->params, t->m->n_params, w) != CR_OK ||
      cr_dist_sum(t->ctx, t->dist, &v, 1) != CR_OK)
    return collective_failed(t, what);
  *loss = v;
  return true;
}

bool cl_dist_sum(cl_run *t, double *v, int n) {
  if (!t->dist)
    return true;
  if (cr_dist_sum(t->ctx, t->dist, v, n) != CR_OK)
    return collective_failed(t, "validation: ");
  return true;
}

/* Every rank's carried rows, [L, b_r, H] each, into carry_all [L,B,H]. */
static bool gather_carry(cl_run *t) {
  for (int s = 0; t->o.tbptt && s < t->S; s++) {
    const cr_tensor *mine = t->carry[s];
    cr_tensor *all = t->carry_all[s];
    const int64_t L = cr_dim(all, 0), B = cr_dim(all, 1), H = cr_dim(all, 2);
    const size_t es = cr_dtype_size(cr_dtype_of(all)), bytes = (size_t)(L * B * H) * es;
    char *blocks = cl_alloc(bytes, 1, "the carried state");
    if (!blocks)
      cr_ctx_set_error(t->ctx, CR_ERR_NOMEM, "%s", cl_last_error());
    if (cr_dist_allgather(t->ctx, t->dist, cr_data_const(mine), (size_t)cr_numel(mine) * es, blocks,
                          bytes, NULL) != CR_OK) {
      free(blocks);
      return collective_failed(t, "saving: ");
    }
    /* rank r's block is [L, b_r, H]; its rows go to [l, lo_r + b, :] */
    char *dst = cr_data(all);
    const char *src = blocks;
    for (int r = 0; r < t->size; r++) {
      int64_t lo, hi;
      cl_slice(t->o.batch, r, t->size, &lo, &hi);
      for (int64_t l = 0; l < L; l++, src += (size_t)((hi - lo) * H) * es)
        memcpy(dst + (size_t)((l * B + lo) * H) * es, src, (size_t)((hi - lo) * H) * es);
    }
    free(blocks);
  }
  return true;
}

bool cl_dist_before_save(cl_run *t) {
  if (!t->dist)
    return true;
  if (!gather_carry(t))
    return false;
  /* the file speaks for every rank: they must hold the same model */
  if (cr_dist_check_in_sync(t->ctx, t->dist, t->m->params, t->m->names, t->m->n_params) != CR_OK)
    return collective_failed(t, "saving: ");
  return true;
}

void cl_dist_describe(const cl_run *t, char *buf, size_t n) {
  *buf = '\0';
  if (!t->dist)
    return;
  const long B = t->o.batch, N = t->size;
  char per[48];
  if (B % N)
    snprintf(per, sizeof per, "%ld or %ld", B / N + 1, B / N);
  else
    snprintf(per, sizeof per, "%ld", B / N);
  snprintf(buf, n,
           "distributed: %d ranks (MPI), batch %ld as %s sequences per rank, gradients "
           "%s",
           t->size, B, per,
           t->o.dist_deterministic ? "summed in rank order (--dist-deterministic)"
                                   : "averaged with MPI_Allreduce");
}

void cl_dist_stats_line(const cl_run *t, char *buf, size_t n) {
  *buf = '\0';
  cr_dist_stats s;
  cr_dist_get_stats(t->dist, &s);
  if (!t->dist || s.allreduce_calls == 0)
    return;
  const double calls = (double)s.allreduce_calls, step_ms = 1e3 * t->step_s / calls,
               sync = 1e3 * s.sync_s / calls, red = 1e3 * s.reduce_s / calls;
  snprintf(buf, n,
           "all-reduce on %d ranks: %.2f ms per step = %.2f ms waiting for the slowest "
           "rank + %.2f ms reducing %.2f MB in %.1f messages (%.1f%% of the %.1f ms step); the "
           "steps alone: %.0f tokens/s",
           t->size, sync + red, sync, red, (double)s.bytes / calls / 1e6, (double)s.buckets / calls,
           100 * (sync + red) / step_ms, step_ms,
           (double)(t->o.seq * t->o.batch) / (t->step_s / calls));
}
