/* eval.c — the validation loss: the held-out 10% read as B streams in
 * chunks of T characters, the state carried from chunk to chunk, no
 * gradients, no dropout.  On several ranks each rank reads its share of
 * the streams and the sums are added up across the ranks. */
#include <math.h>
#include <stdlib.h>

#include "char_lm.h"

bool cl_evaluate(cl_run *t, int64_t max_chars, double *nats, int64_t *scored) {
  cr_ctx *ctx = t->ctx;
  const int64_t T = t->o.seq, B = t->o.batch > 16 ? t->o.batch : 16;
  int64_t lo, hi; /* this rank's streams */
  cl_slice(B, t->rank, t->size, &lo, &hi);
  const int64_t W = hi - lo;
  int64_t n = t->data.n - t->data.n_train;
  if (max_chars > 0 && n > max_chars)
    n = max_chars;
  int64_t share = n / B;
  *nats = NAN;
  *scored = 0;
  if (share < 2)
    return true; /* too little validation text: no figure (on every rank) */
  const int64_t *val = t->data.ids + t->data.n_train;
  int64_t L = t->m->cfg.layers, H = t->m->cfg.hidden;
  cr_tensor *state[2] = {NULL, NULL};
  for (int s = 0; s < t->S; s++)
    state[s] = cr_tensor_new(ctx, t->m->cfg.dtype, CR_SHAPE(L, W, H));
  int64_t *ids = cl_alloc((size_t)(T * W), sizeof *ids, "the validation batch"); /* [T,W] */
  int64_t *tgt = ids ? cl_alloc((size_t)(T * W), sizeof *tgt, "the validation batch") : NULL;
  bool was_grad = cr_set_grad_enabled(ctx, false), was_train = cr_set_training(ctx, false);
  double total = 0;
  int64_t count = 0;
  for (int64_t pos = 0; tgt && pos + 1 < share && cr_ctx_status(ctx) == CR_OK; pos += T) {
    int64_t len = pos + T + 1 <= share ? T : share - 1 - pos;
    for (int64_t b = lo; b < hi; b++)
      for (int64_t s = 0; s < len; s++) {
        ids[s * W + b - lo] = val[b * share + pos + s];
        tgt[s * W + b - lo] = val[b * share + pos + s + 1];
      }
    cr_tensor *fin[2];
    cr_tensor *logits = cm_logits(ctx, t->m, ids, len, W, state, fin, NULL);
    cr_tensor *loss = cr_cross_entropy(ctx, logits, tgt, CR_NO_IGNORE);
    if (loss) {
      total += cr_item(loss) * (double)(len * W);
      count += len * W;
    }
    for (int s = 0; loss && s < t->S; s++)
      if (cr_copy_into(ctx, state[s], fin[s]) != CR_OK)
        break; /* the message is in ctx, checked below */
    if (cr_ctx_status(ctx) == CR_OK)
      cr_ctx_reset(ctx);
  }
  cr_set_grad_enabled(ctx, was_grad);
  cr_set_training(ctx, was_train);
  free(ids);
  free(tgt);
  for (int s = 0; s < t->S; s++)
    cr_tensor_free(state[s]);
  if (!tgt && !t->dist)
    return false;
  if (cr_ctx_status(ctx) != CR_OK && !t->dist)
    return cl_fail("validation: %s", cr_ctx_error(ctx)), false;
  /* several ranks: the sums of every rank's streams (a rank that failed
   * above tells the others here) */
  double sums[2] = {total, (double)count};
  if (!tgt && cr_ctx_status(ctx) == CR_OK)
    cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s", cl_last_error());
  if (!cl_dist_sum(t, sums, 2))
    return false;
  *nats = sums[1] > 0 ? sums[0] / sums[1] : NAN;
  *scored = (int64_t)sums[1];
  return true;
}
