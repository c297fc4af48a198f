/* agree.c — the opening exchange of every collective, and the diagnosis
 * when it fails.
 *
 * Each rank hashes the text that describes what it is about to do (the
 * call, the parameters' names, dtypes, shapes; describe.c) into h and
 * contributes the pair (a, b) = (h, ~h), or (0, 0) when it has failed.
 * One MPI_Allreduce with bitwise AND gives A = AND a, B = AND b, and
 *     every rank fine and every h the same   <=>   A ^ B == all ones:
 * equal hashes give A = h, B = ~h; two hashes that differ at bit k give a
 * 0 at bit k in both A (the one with 0 there) and B (the one with 1 there,
 * whose ~h has 0); a failed rank zeroes both.  16 bytes, one call, and the
 * same call in every collective, so ranks in different collectives meet.
 *
 * When it fails, every rank runs the same diagnosis: an MPI_Allgather of
 * each rank's (status, hash, lengths), then an MPI_Bcast of the first
 * failed rank's message, or of the descriptions of rank 0 and of the first
 * rank whose hash differs, compared line by line.  Every rank builds the
 * same message from the same data, stops the group and returns the error. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_impl.h"

#define MAX_MSG 600 /* characters of a failed rank's message passed on */

typedef struct rank_state {
  int32_t status; /* cr_status; 0: fine */
  int32_t pad;
  uint64_t hash;
  uint64_t desc_len, msg_len;
} rank_state;

/* One line of desc (0-based), split at its tab: key, value.  false if
 * desc has no such line. */
static bool line_of(const char *desc, int line, char *key, size_t nk, char *val, size_t nv) {
  const char *s = desc;
  for (int i = 0; i < line && s; i++) {
    s = strchr(s, '\n');
    s = s ? s + 1 : NULL;
  }
  if (!s || !*s)
    return false;
  size_t len = strcspn(s, "\n"), k = strcspn(s, "\t");
  if (k > len)
    k = len;
  snprintf(key, nk, "%.*s", (int)k, s);
  snprintf(val, nv, "%.*s", k < len ? (int)(len - k - 1) : 0, k < len ? s + k + 1 : "");
  return true;
}

/* The message for rank r's description differing from rank 0's. */
static cr_status describe_difference(cr_dist *d, const char *op, const char *d0, const char *dr,
                                     int r, int n_bad, char *msg, size_t n) {
  char k0[200], v0[300], kr[200], vr[300];
  for (int i = 0;; i++) {
    bool h0 = line_of(d0, i, k0, sizeof k0, v0, sizeof v0);
    bool hr = line_of(dr, i, kr, sizeof kr, vr, sizeof vr);
    if (!h0 && !hr)
      break; /* equal texts, different hashes: cannot happen */
    if (h0 && hr && !strcmp(k0, kr) && !strcmp(v0, vr))
      continue;
    /* one list is longer: its extra parameter meets the other's last line */
    if (h0 && hr && strcmp(k0, kr)) {
      if (!strcmp(k0, "the count"))
        h0 = false;
      else if (!strcmp(kr, "the count"))
        hr = false;
    }
    char more[64] = "";
    if (n_bad > 1)
      snprintf(more, sizeof more, " (%d of the %d ranks differ from rank 0)", n_bad, d->size);
    snprintf(msg, n,
             "%s: rank %d of %d differs from rank 0: %s is %s on rank 0 but %s on rank "
             "%d%s",
             op, r, d->size, h0 ? k0 : kr, h0 ? v0 : "absent", hr ? vr : "absent", r, more);
    return i == 0 ? CR_ERR_STATE : CR_ERR_SHAPE;
  }
  snprintf(msg, n, "%s: rank %d of %d differs from rank 0 (the descriptions hash apart)", op, r,
           d->size);
  return CR_ERR_STATE;
}

/* A text of len bytes broadcast from root into a new buffer (NUL-ended). */
static char *bcast_text(cr_dist *d, cr_ctx *ctx, const char *op, const char *mine, uint64_t len,
                        int root) {
  char *buf = malloc(len + 1);
  if (!buf) {
    cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
    return NULL;
  }
  if (d->rank == root)
    memcpy(buf, mine, len);
  buf[len] = '\0';
  cr__dist_wait_begin(&d->wd, "%s (MPI_Bcast of rank %d's description)", op, root);
  int rc = MPI_Bcast(buf, (int)len, MPI_CHAR, root, d->comm);
  cr__dist_wait_end(&d->wd);
  if (cr__dist_mpi(d, ctx, op, "MPI_Bcast", rc) != CR_OK) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* Everything after a failed opening exchange (every rank runs it). */
static cr_status diagnose(cr_dist *d, cr_ctx *ctx, const char *op, const char *desc, uint64_t hash,
                          cr_status local_st, const char *local_msg) {
  size_t msg_len = strlen(local_msg) < MAX_MSG ? strlen(local_msg) : MAX_MSG;
  rank_state mine = {(int32_t)local_st, 0, hash, strlen(desc), local_st ? msg_len : 0};
  rank_state *all = calloc((size_t)d->size, sizeof *all);
  if (!all) {
    d->comm_failed = true; /* cannot take part: the others will wait */
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  }
  cr__dist_wait_begin(&d->wd, "%s (MPI_Allgather of the ranks' states)", op);
  int rc =
      MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, d->comm);
  cr__dist_wait_end(&d->wd);
  if (cr__dist_mpi(d, ctx, op, "MPI_Allgather", rc) != CR_OK) {
    free(all);
    return CR_ERR_IO;
  }
  int failed = -1, n_failed = 0, bad = -1, n_bad = 0;
  for (int r = 0; r < d->size; r++) {
    if (all[r].status) {
      n_failed++;
      if (failed < 0)
        failed = r;
    } else if (all[0].status == 0 && all[r].hash != all[0].hash) {
      n_bad++;
      if (bad < 0)
        bad = r;
    }
  }
  char msg[sizeof d->stop_msg];
  cr_status st = CR_ERR_STATE;
  if (failed >= 0) {
    char *text = bcast_text(d, ctx, op, local_msg, all[failed].msg_len, failed);
    if (!text) {
      free(all);
      return cr_ctx_status(ctx);
    }
    char more[64] = "";
    if (n_failed > 1)
      snprintf(more, sizeof more, " (%d of the %d ranks failed)", n_failed, d->size);
    snprintf(msg, sizeof msg, "%s: rank %d of %d failed: %s%s", op, failed, d->size,
             *text ? text : "(no message)", more);
    st = (cr_status)all[failed].status;
    free(text);
  } else {
    char *d0 = bcast_text(d, ctx, op, desc, all[0].desc_len, 0);
    char *dr = d0 && bad >= 0 ? bcast_text(d, ctx, op, desc, all[bad].desc_len, bad) : NULL;
    if (!d0 || (bad >= 0 && !dr)) {
      free(d0);
      free(all);
      return cr_ctx_status(ctx);
    }
    if (bad >= 0)
      st = describe_difference(d, op, d0, dr, bad, n_bad, msg, sizeof msg);
    else
      snprintf(msg, sizeof msg, "%s: the ranks disagree (an MPI reduction gave a wrong answer)",
               op);
    free(d0);
    free(dr);
  }
  free(all);
  d->stopped = true;
  snprintf(d->stop_msg, sizeof d->stop_msg, "%s", msg);
  if (local_st != CR_OK && cr_ctx_status(ctx) != CR_OK)
    return local_st; /* this rank's own message stays first in its ctx */
  return cr_ctx_set_error(ctx, st, "%s", msg);
}

cr_status cr__dist_agree(cr_dist *d, cr_ctx *ctx, const char *op, const char *desc,
                         cr_status local_st, const char *local_msg, double *waited) {
  double t0 = cr__dist_now();
  uint64_t h = cr__dist_hash(desc, strlen(desc), 0xcbf29ce484222325ull);
  uint64_t in[2] = {local_st ? 0 : h, local_st ? 0 : ~h}, out[2] = {0, 0};
  cr__dist_wait_begin(&d->wd, "%s (the opening MPI_Allreduce)", op);
  int rc = MPI_Allreduce(in, out, 2, MPI_UINT64_T, MPI_BAND, d->comm);
  cr__dist_wait_end(&d->wd);
  cr_status st = cr__dist_mpi(d, ctx, op, "MPI_Allreduce", rc);
  if (st == CR_OK && (out[0] ^ out[1]) != UINT64_MAX)
    st = diagnose(d, ctx, op, desc, h, local_st, local_msg);
  if (waited)
    *waited += cr__dist_now() - t0;
  return st;
}

cr_status cr__dist_begin(cr_dist *d, cr_ctx *ctx, const char *op, const char *desc,
                         double *waited) {
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the group is NULL", op);
  if (d->comm_failed)
    return cr_ctx_set_error(ctx, CR_ERR_STATE,
                            "%s: rank %d of %d: the process group is unusable "
                            "after an MPI error",
                            op, d->rank, d->size);
  if (d->stopped)
    return cr_ctx_set_error(ctx, CR_ERR_STATE,
                            "%s: the process group stopped at an earlier "
                            "error: %s",
                            op, d->stop_msg);
  return cr__dist_agree(d, ctx, op, desc, cr_ctx_status(ctx), cr_ctx_error(ctx), waited);
}
