/* reduce.c — gradients averaged across the ranks:
 *     g <- sum_r w_r g_r        (w_r = 1/N: the average)
 * bucket by bucket (buckets.c), each rank's gradient scaled by its own
 * weight as it is packed.
 *
 * Default: one MPI_Allreduce(MPI_IN_PLACE, SUM) per bucket; the order of
 * the additions is the MPI library's.
 *
 * Deterministic: the order is fixed here.  A bucket of c elements is cut
 * into N chunks (chunk k: c/N elements, one more for k < c mod N), chunk k
 * owned by rank k.  MPI_Alltoallv sends every rank's piece of chunk k to
 * rank k; rank k adds the N pieces in rank order,
 *     s = ((x_0 + x_1) + x_2) + ... + x_{N-1},
 * one rounding per addition in the gradient's dtype, and MPI_Allgatherv
 * copies each owner's sums to every rank.  Every element is therefore
 * added in rank order by exactly one rank, whatever the bucket size, the
 * timing or the algorithms MPI selects, and every rank gets the same
 * bits.  Each rank sends and receives (N-1)/N of the bucket twice, as a
 * ring all-reduce does. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dist_impl.h"

static const char OP[] = "dist_allreduce_grads";

/* Chunk k of c elements over N ranks: offset and length. */
static int64_t chunk_off(int64_t c, int N, int k) {
  return (int64_t)k * (c / N) + (k < c % N ? k : c % N);
}
static int64_t chunk_len(int64_t c, int N, int k) { return c / N + (k < c % N); }

/* out[i] = sum_r recv[r * len + i] in rank order. */
static void sum_in_order(void *out, const void *recv, cr_dtype dt, int64_t len, int N) {
  if (dt == CR_F32) {
    float *o = out;
    const float *x = recv;
    memcpy(o, x, (size_t)len * sizeof *o);
    for (int r = 1; r < N; r++)
      for (int64_t i = 0; i < len; i++)
        o[i] += x[(int64_t)r * len + i];
  } else {
    double *o = out;
    const double *x = recv;
    memcpy(o, x, (size_t)len * sizeof *o);
    for (int r = 1; r < N; r++)
      for (int64_t i = 0; i < len; i++)
        o[i] += x[(int64_t)r * len + i];
  }
}

static cr_status fixed_order(cr_dist *d, cr_ctx *ctx, void *buf, const cr__dist_bucket *b, int k,
                             int nb) {
  const int N = d->size, me = d->rank;
  const MPI_Datatype T = cr__dist_mpi_type(b->dtype);
  int *scount = d->counts, *sdispl = scount + N, *rcount = sdispl + N, *rdispl = rcount + N;
  const int64_t mine = chunk_len(b->count, N, me);
  for (int r = 0; r < N; r++) {
    scount[r] = (int)chunk_len(b->count, N, r);
    sdispl[r] = (int)chunk_off(b->count, N, r);
    rcount[r] = (int)mine;
    rdispl[r] = (int)(r * mine);
  }
  cr__dist_wait_begin(&d->wd, "%s (MPI_Alltoallv of bucket %d of %d, %lld %s)", OP, k + 1, nb,
                      (long long)b->count, cr_dtype_name(b->dtype));
  int rc = MPI_Alltoallv(buf, scount, sdispl, T, d->recv, rcount, rdispl, T, d->comm);
  cr__dist_wait_end(&d->wd);
  if (cr__dist_mpi(d, ctx, OP, "MPI_Alltoallv", rc) != CR_OK)
    return CR_ERR_IO;
  size_t es = cr_dtype_size(b->dtype);
  sum_in_order((char *)buf + (size_t)sdispl[me] * es, d->recv, b->dtype, mine, N);
  cr__dist_wait_begin(&d->wd, "%s (MPI_Allgatherv of bucket %d of %d, %lld %s)", OP, k + 1, nb,
                      (long long)b->count, cr_dtype_name(b->dtype));
  rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, scount, sdispl, T, d->comm);
  cr__dist_wait_end(&d->wd);
  return cr__dist_mpi(d, ctx, OP, "MPI_Allgatherv", rc);
}

cr_status cr_dist_allreduce_grads_weighted(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params, int n,
                                           double weight) {
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", OP);
  /* everything that can fail here is checked before the opening exchange,
   * which tells the other ranks; after it, only MPI can fail */
  int64_t bytes = 0;
  int nb = 0;
  if (cr__dist_describe(d, ctx, OP, params, NULL, n, true, NULL) == CR_OK) {
    if (!isfinite(weight))
      cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: rank %d of %d: weight %g must be finite", OP, d->rank,
                       d->size, weight);
    else if ((nb = cr__dist_plan(d, ctx, OP, params, n, true, true, &bytes)) >= 0)
      cr__dist_stage(d, ctx, OP, d->opts.deterministic);
  }
  cr_status st = cr__dist_begin(d, ctx, OP, d->text, &d->stats.sync_s);
  if (st != CR_OK)
    return st;
  double t0 = cr__dist_now();
  d->stats.allreduce_calls++;
  d->stats.bytes += bytes;
  if (d->size == 1 && weight == 1)
    return CR_OK; /* the sum of one */
  for (int k = 0; k < nb && st == CR_OK; k++) {
    const cr__dist_bucket *b = &d->buckets[k];
    void *buf = cr__dist_bucket_buf(d, b, true, weight);
    if (d->opts.deterministic) {
      st = fixed_order(d, ctx, buf, b, k, nb);
    } else {
      cr__dist_wait_begin(&d->wd, "%s (MPI_Allreduce of bucket %d of %d, %lld %s)", OP, k + 1, nb,
                          (long long)b->count, cr_dtype_name(b->dtype));
      int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)b->count, cr__dist_mpi_type(b->dtype), MPI_SUM,
                             d->comm);
      cr__dist_wait_end(&d->wd);
      st = cr__dist_mpi(d, ctx, OP, "MPI_Allreduce", rc);
    }
    cr__dist_bucket_unpack(d, b);
    d->stats.buckets++;
  }
  d->stats.reduce_s += cr__dist_now() - t0;
  return st;
}

cr_status cr_dist_allreduce_grads(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params, int n) {
  return cr_dist_allreduce_grads_weighted(ctx, d, params, n, d && d->size > 0 ? 1.0 / d->size : 1);
}
