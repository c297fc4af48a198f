/* dist.c — the process group: MPI started (or found started), the
 * communicator duplicated with MPI_ERRORS_RETURN, the options agreed
 * between the ranks, the watchdog started; and the way back out. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_impl.h"

/* groups alive that were made by cr_dist_init when it started MPI: the
 * last one to go finalises MPI (a process initialises MPI once) */
static int owned_groups;

cr_status cr__dist_mpi(cr_dist *d, cr_ctx *ctx, const char *op, const char *call, int rc) {
  if (rc == MPI_SUCCESS)
    return CR_OK;
  char text[MPI_MAX_ERROR_STRING + 1] = "";
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
    snprintf(text, sizeof text, "MPI error code %d", rc);
  if (d)
    d->comm_failed = true;
  return cr_ctx_set_error(ctx, CR_ERR_IO,
                          "%s: rank %d of %d: %s: %s (the process group is "
                          "unusable: end the job, e.g. with cr_dist_abort)",
                          op, d ? d->rank : -1, d ? d->size : 0, call, text);
}

bool cr__dist_reserve(cr_ctx *ctx, const char *op, void **buf, size_t *cap, size_t n) {
  if (n <= *cap)
    return true;
  void *p = realloc(*buf, n);
  if (!p)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory for a %zu-byte buffer", op, n),
           false;
  *buf = p;
  *cap = n;
  return true;
}

static cr_dist *make(cr_ctx *ctx, MPI_Comm comm, const cr_dist_opts *opts, bool owns) {
  static const char op[] = "dist_init";
  cr_dist_opts o = opts ? *opts : (cr_dist_opts){0};
  if (o.bucket_bytes == 0)
    o.bucket_bytes = CR_DIST_DEFAULT_BUCKET;
  if (o.bucket_bytes < sizeof(double))
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "%s: bucket_bytes %zu is less than one element (%zu "
                            "bytes)",
                            op, o.bucket_bytes, sizeof(double)),
           NULL;
  if (o.bucket_bytes > ((size_t)1 << 30))
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "%s: bucket_bytes %zu is more than 1 GiB (MPI "
                            "counts are int)",
                            op, o.bucket_bytes),
           NULL;
  if (o.timeout_s == 0)
    o.timeout_s = CR_DIST_DEFAULT_TIMEOUT;
  if (o.timeout_s != o.timeout_s)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: timeout_s is NaN", op), NULL;
  cr_dist *d = calloc(1, sizeof *d);
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op), NULL;
  d->opts = o;
  d->comm = MPI_COMM_NULL;
  if (cr__dist_mpi(d, ctx, op, "MPI_Comm_dup", MPI_Comm_dup(comm, &d->comm)) != CR_OK ||
      cr__dist_mpi(d, ctx, op, "MPI_Comm_set_errhandler",
                   MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN)) != CR_OK ||
      cr__dist_mpi(d, ctx, op, "MPI_Comm_rank", MPI_Comm_rank(d->comm, &d->rank)) != CR_OK ||
      cr__dist_mpi(d, ctx, op, "MPI_Comm_size", MPI_Comm_size(d->comm, &d->size)) != CR_OK) {
    if (d->comm != MPI_COMM_NULL)
      MPI_Comm_free(&d->comm);
    free(d);
    return NULL;
  }
  d->counts = calloc(4 * (size_t)d->size, sizeof *d->counts);
  if (!d->counts)
    cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  if (!cr__dist_watchdog_start(&d->wd, o.timeout_s, d->rank, d->size)) {
    cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: rank %d of %d: cannot start the watchdog thread", op,
                     d->rank, d->size);
    /* the others are waiting in the exchange below: take part, failed */
  }
  d->owns_mpi = owns;
  owned_groups += owns;
  /* the options that decide the messages must agree, or the ranks would
   * send buckets of different sizes to each other */
  char desc[160];
  snprintf(desc, sizeof desc, "the call\tdist_init with deterministic %d and bucket_bytes %zu",
           o.deterministic ? 1 : 0, o.bucket_bytes);
  if (cr__dist_begin(d, ctx, op, desc, NULL) != CR_OK) {
    cr_dist_free(d);
    return NULL;
  }
  return d;
}

cr_dist *cr_dist_init(cr_ctx *ctx, const cr_dist_opts *opts) {
  int done = 0;
  if (MPI_Finalized(&done) == MPI_SUCCESS && done)
    return cr_ctx_set_error(ctx, CR_ERR_STATE,
                            "dist_init: MPI was already finalised in this "
                            "process (it cannot be started again)"),
           NULL;
  int started = 0, provided = 0;
  MPI_Initialized(&started);
  if (!started) {
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
      return cr__dist_mpi(NULL, ctx, "dist_init", "MPI_Init_thread", rc), NULL;
  }
  return make(ctx, MPI_COMM_WORLD, opts, !started);
}

cr_dist *cr_dist_init_comm(cr_ctx *ctx, MPI_Comm comm, const cr_dist_opts *opts) {
  int started = 0;
  MPI_Initialized(&started);
  if (!started)
    return cr_ctx_set_error(ctx, CR_ERR_STATE,
                            "dist_init_comm: MPI is not initialised (call "
                            "MPI_Init_thread first, or use cr_dist_init)"),
           NULL;
  if (comm == MPI_COMM_NULL)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "dist_init_comm: comm is MPI_COMM_NULL"), NULL;
  return make(ctx, comm, opts, false);
}

void cr_dist_free(cr_dist *d) {
  if (!d)
    return;
  cr__dist_watchdog_stop(&d->wd);
  /* after an MPI failure the others may still be in a collective with us:
   * freeing or finalising could wait for them, so leave that to the end
   * of the job (cr_dist_abort, or mpirun) */
  bool clean = !d->comm_failed;
  if (clean)
    MPI_Comm_free(&d->comm);
  if (d->owns_mpi && --owned_groups == 0 && clean) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done)
      MPI_Finalize();
  }
  free(d->stage);
  free(d->recv);
  free(d->text);
  free(d->pieces);
  free(d->buckets);
  free(d->counts);
  free(d);
}

void cr_dist_abort(cr_dist *d, int code) { MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code); }

int cr_dist_rank(const cr_dist *d) { return d ? d->rank : 0; }
int cr_dist_size(const cr_dist *d) { return d ? d->size : 0; }
MPI_Comm cr_dist_comm(const cr_dist *d) { return d ? d->comm : MPI_COMM_NULL; }

void cr_dist_get_stats(const cr_dist *d, cr_dist_stats *out) {
  if (out)
    *out = d ? d->stats : (cr_dist_stats){0};
}

MPI_Datatype cr__dist_mpi_type(cr_dtype dt) {
  return dt == CR_F32 ? MPI_FLOAT : dt == CR_F64 ? MPI_DOUBLE : MPI_INT64_T;
}
