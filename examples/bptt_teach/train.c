/* train.c — the training loop the sections share: a fresh batch of the
 * adding problem, forward, backward, optional clipping, one update.  The
 * loss and the global gradient norm (before clipping) of every step are
 * kept for the plots. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int bt_train(cr_ctx *ctx, bt_model *m, const bt_train_opts *o, bt_train_log *log) {
  cr_optim_opts oo;
  cr_optim_default_opts(o->optim, &oo);
  oo.lr = o->lr;
  cr_optim *opt = cr_optim_new(ctx, &oo, m->params, m->n_params);
  cr_rng *rng = cr_rng_new(o->seed);
  if (log) {
    memset(log, 0, sizeof *log);
    log->stopped_at = -1;
    log->loss = malloc(sizeof(double) * (size_t)o->steps);
    log->gnorm = malloc(sizeof(double) * (size_t)o->steps);
    for (int s = 0; log->loss && log->gnorm && s < o->steps; s++)
      log->loss[s] = log->gnorm[s] = NAN;
  }
  int rc = !opt || !rng || (log && (!log->loss || !log->gnorm));
  if (log)
    log->at_anomaly = BT_NEXT;
  bool was = cr_set_detect_anomaly(ctx, o->anomaly);
  for (int s = 0; s < o->steps && !rc; s++) {
    cr_tensor *x, *target;
    if (bt_adding_batch(ctx, rng, cr_rnn_get_config(m->rnn)->dtype, o->T, o->B, &x, &target))
      rc = 1;
    cr_optim_zero_grad(opt);
    if (log)
      log->at_step = BT_NEXT;
    cr_tensor *L = rc ? NULL : bt_model_loss(ctx, m, x, target, NULL, NULL);
    if (!L || cr_backward(ctx, L)) {
      if (log)
        log->stopped_at = s;
      rc = 1;
      break;
    }
    /* the global norm of every parameter's gradient; scaled down to o->clip
     * if larger (clip 0: a max_norm of infinity only measures it) */
    if (log)
      log->at_clip = BT_NEXT;
    double gn = cr_clip_grad_norm(ctx, m->params, m->n_params, o->clip > 0 ? o->clip : INFINITY);
    if (log) {
      log->loss[s] = cr_item(L);
      log->gnorm[s] = gn;
      log->done = s + 1;
    }
    if (cr_optim_step(ctx, opt))
      rc = 1;
    cr_ctx_reset(ctx);
  }
  if (rc && log)
    snprintf(log->message, sizeof log->message, "%s", cr_ctx_error(ctx));
  cr_set_detect_anomaly(ctx, was);
  cr_optim_free(opt);
  cr_rng_free(rng);
  return rc;
}

void bt_train_log_free(bt_train_log *log) {
  if (!log)
    return;
  free(log->loss);
  free(log->gnorm);
  log->loss = log->gnorm = NULL;
}
