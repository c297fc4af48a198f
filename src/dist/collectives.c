/* collectives.c — the other collectives: the model check, the broadcast
 * of rank 0's parameters, sums of a few numbers, an all-gather of bytes,
 * the check that the ranks' parameters are still the same bits, and a
 * barrier that carries failures.  Each starts with the opening exchange
 * (agree.c) after every local check, so a rank whose arguments are wrong
 * makes every rank fail with its message instead of leaving them waiting. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "dist_impl.h"

cr_status cr_dist_check_params(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params,
                               const char *const *names, int n) {
  static const char op[] = "dist_check_params";
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", op);
  /* the opening exchange compares exactly what is to be checked */
  (void)cr__dist_describe(d, ctx, op, params, names, n, false, NULL);
  return cr__dist_begin(d, ctx, op, d->text, NULL);
}

cr_status cr_dist_broadcast_params(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params, int n) {
  static const char op[] = "dist_broadcast_params";
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", op);
  int64_t bytes;
  int nb = 0;
  if (cr__dist_describe(d, ctx, op, params, NULL, n, false, NULL) == CR_OK &&
      (nb = cr__dist_plan(d, ctx, op, params, n, false, d->rank != 0, &bytes)) >= 0)
    cr__dist_stage(d, ctx, op, false);
  cr_status st = cr__dist_begin(d, ctx, op, d->text, NULL);
  for (int k = 0; st == CR_OK && k < nb; k++) {
    const cr__dist_bucket *b = &d->buckets[k];
    void *buf = cr__dist_bucket_buf(d, b, d->rank == 0, 1.0);
    cr__dist_wait_begin(&d->wd, "%s (MPI_Bcast of bucket %d of %d, %lld %s)", op, k + 1, nb,
                        (long long)b->count, cr_dtype_name(b->dtype));
    int rc = MPI_Bcast(buf, (int)b->count, cr__dist_mpi_type(b->dtype), 0, d->comm);
    cr__dist_wait_end(&d->wd);
    st = cr__dist_mpi(d, ctx, op, "MPI_Bcast", rc);
    if (st == CR_OK && d->rank != 0)
      cr__dist_bucket_unpack(d, b);
  }
  return st;
}

cr_status cr_dist_sum(cr_ctx *ctx, cr_dist *d, double *v, int n) {
  static const char op[] = "dist_sum";
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", op);
  char desc[96];
  snprintf(desc, sizeof desc, "the call\t%s of %d values", op, n);
  if (n < 0 || (n > 0 && !v))
    cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %d values%s", op, n,
                     n < 0 ? ": the count must be >= 0" : ", but v is NULL");
  else if (n > INT_MAX / d->size)
    cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %d values on %d ranks: too many", op, n, d->size);
  else
    cr__dist_reserve(ctx, op, &d->stage, &d->stage_cap, (size_t)n * (size_t)d->size * sizeof *v);
  cr_status st = cr__dist_begin(d, ctx, op, desc, NULL);
  if (st != CR_OK || n == 0)
    return st;
  double *all = d->stage; /* [size][n] */
  cr__dist_wait_begin(&d->wd, "%s (MPI_Allgather of %d values)", op, n);
  int rc = MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, d->comm);
  cr__dist_wait_end(&d->wd);
  if ((st = cr__dist_mpi(d, ctx, op, "MPI_Allgather", rc)) != CR_OK)
    return st;
  for (int i = 0; i < n; i++) {
    double s = all[i];
    for (int r = 1; r < d->size; r++)
      s += all[(size_t)r * (size_t)n + (size_t)i];
    v[i] = s;
  }
  return CR_OK;
}

cr_status cr_dist_allgather(cr_ctx *ctx, cr_dist *d, const void *mine, size_t n, void *all,
                            size_t cap, size_t *total) {
  static const char op[] = "dist_allgather";
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", op);
  if (n > 0 && !mine)
    cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %zu bytes, but mine is NULL", op, n);
  else if (n > INT_MAX)
    cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %zu bytes: more than INT_MAX", op, n);
  else
    cr__dist_reserve(ctx, op, &d->stage, &d->stage_cap, (size_t)d->size * sizeof(uint64_t));
  cr_status st = cr__dist_begin(d, ctx, op, "the call\tdist_allgather\n", NULL);
  if (st != CR_OK)
    return st;
  uint64_t mine_n = n, *sizes = d->stage;
  cr__dist_wait_begin(&d->wd, "%s (MPI_Allgather of the sizes)", op);
  int rc = MPI_Allgather(&mine_n, 1, MPI_UINT64_T, sizes, 1, MPI_UINT64_T, d->comm);
  cr__dist_wait_end(&d->wd);
  if ((st = cr__dist_mpi(d, ctx, op, "MPI_Allgather", rc)) != CR_OK)
    return st;
  uint64_t sum = 0;
  int *count = d->counts, *displ = count + d->size;
  for (int r = 0; r < d->size; r++) {
    count[r] = (int)sizes[r];
    displ[r] = sum <= INT_MAX ? (int)sum : 0;
    sum += sizes[r];
  }
  if (total)
    *total = (size_t)sum;
  /* the same decision on every rank: they all see the same sizes */
  if (sum > cap || sum > INT_MAX || (sum > 0 && !all))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the ranks' %llu bytes do not fit in %zu%s", op,
                            (unsigned long long)sum, all ? cap : 0,
                            sum > INT_MAX ? " (more than INT_MAX)" : "");
  cr__dist_wait_begin(&d->wd, "%s (MPI_Allgatherv of %llu bytes)", op, (unsigned long long)sum);
  rc = MPI_Allgatherv(mine, (int)n, MPI_BYTE, all, count, displ, MPI_BYTE, d->comm);
  cr__dist_wait_end(&d->wd);
  return cr__dist_mpi(d, ctx, op, "MPI_Allgatherv", rc);
}

/* A 64-bit hash of n bytes, 8 at a time (values are compared, not
 * defended against an adversary). */
static uint64_t hash_values(const void *data, size_t n) {
  const unsigned char *p = data;
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
  }
  return cr__dist_hash(p + i, n - i, h);
}

cr_status cr_dist_check_in_sync(cr_ctx *ctx, cr_dist *d, cr_tensor *const *params,
                                const char *const *names, int n) {
  static const char op[] = "dist_check_in_sync";
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", op);
  uint64_t *h = NULL;
  if (cr__dist_describe(d, ctx, op, params, names, n, false, NULL) == CR_OK &&
      cr__dist_reserve(ctx, op, &d->stage, &d->stage_cap,
                       (size_t)n * (size_t)(d->size + 1) * sizeof *h)) {
    h = d->stage; /* h[0..n) mine, then [size][n] everyone's */
    for (int i = 0; i < n; i++)
      h[i] = hash_values(cr_data_const(params[i]),
                         (size_t)cr_numel(params[i]) * cr_dtype_size(cr_dtype_of(params[i])));
  }
  cr_status st = cr__dist_begin(d, ctx, op, d->text, NULL);
  if (st != CR_OK || n == 0)
    return st;
  uint64_t *all = h + n;
  cr__dist_wait_begin(&d->wd, "%s (MPI_Allgather of %d hashes)", op, n);
  int rc = MPI_Allgather(h, n, MPI_UINT64_T, all, n, MPI_UINT64_T, d->comm);
  cr__dist_wait_end(&d->wd);
  if ((st = cr__dist_mpi(d, ctx, op, "MPI_Allgather", rc)) != CR_OK)
    return st;
  int bad_rank = -1, bad_param = -1, n_bad = 0;
  for (int r = 1; r < d->size; r++) {
    int first = -1;
    for (int i = 0; i < n && first < 0; i++)
      if (all[(size_t)r * (size_t)n + (size_t)i] != all[i])
        first = i;
    if (first >= 0 && n_bad++ == 0) {
      bad_rank = r;
      bad_param = first;
    }
  }
  if (bad_rank < 0)
    return CR_OK;
  const char *name = names && names[bad_param] ? names[bad_param] : cr_name(params[bad_param]);
  char more[64] = "";
  if (n_bad > 1)
    snprintf(more, sizeof more, " (%d of the %d ranks differ)", n_bad, d->size);
  return cr_ctx_set_error(ctx, CR_ERR_STATE,
                          "%s: the values of rank %d of %d differ from rank "
                          "0's, first in parameter %d '%s'%s: the ranks have drifted apart (did "
                          "every rank start from cr_dist_broadcast_params and reduce every "
                          "gradient?)",
                          op, bad_rank, d->size, bad_param, *name ? name : "#", more);
}

cr_status cr_dist_agree(cr_ctx *ctx, cr_dist *d, const char *failure) {
  static const char op[] = "dist_agree";
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", op);
  if (!failure)
    return cr__dist_begin(d, ctx, op, "the call\tdist_agree\n", NULL);
  if (d->comm_failed || d->stopped)
    return cr__dist_begin(d, ctx, op, "", NULL); /* the same refusal as any collective */
  return cr__dist_agree(d, ctx, op, "the call\tdist_agree\n", CR_ERR_STATE, failure, NULL);
}
