/* anomaly.c — a run that diverges, stopped where the first NaN or Inf is
 * made.  Plain SGD with a learning rate far too large for the head: each
 * update overshoots the minimum by more than it corrects, the weights grow
 * geometrically, and within a few dozen steps a float32 value overflows.
 * Without anomaly mode the loss would just print inf, then nan, forever;
 * with cr_set_detect_anomaly on, the first op whose result (forward) or
 * gradient (VJP) is not finite stops the pass, and the message names it. */
#include <stdio.h>
#include <string.h>

#include "bptt_teach.h"

int bt_anomaly(bt_anomaly_result *r) {
  memset(r, 0, sizeof *r);
  r->lr = 1.5, r->steps = 200;
  cr_ctx *ctx = cr_ctx_new();
  bt_model m;
  if (bt_model_init(&m, ctx, &cr_cell_rnn_tanh, 32, CR_F32, 3, 1.0)) {
    snprintf(r->error, sizeof r->error, "anomaly: %s", cr_ctx_error(ctx));
    cr_ctx_free(ctx);
    return 1;
  }
  bt_train_opts o = {CR_SGD, r->lr, 0.0, r->steps, 30, 32, 11, true};
  int stopped = bt_train(ctx, &m, &o, &r->log); /* o.anomaly: in anomaly mode */
  r->at_switch = r->log.at_anomaly;
  r->at_stop = r->log.at_step;
  int rc = 0;
  if (!stopped) {
    snprintf(r->error, sizeof r->error, "anomaly: the run did not diverge in %d steps", r->steps);
    rc = 1;
  } else if (cr_ctx_status(ctx) != CR_ERR_NUMERIC) {
    snprintf(r->error, sizeof r->error, "anomaly: %.480s", r->log.message);
    rc = 1;
  } else { /* "anomaly: forward op NAME ..." or "anomaly: VJP of NAME ..." */
    const char *s = r->log.message, *p = strstr(s, "forward op ");
    p = p ? p + 11 : (p = strstr(s, "VJP of ")) ? p + 7 : NULL;
    if (p)
      sscanf(p, "%31s", r->op);
  }
  bt_model_free(&m);
  cr_ctx_free(ctx);
  return rc;
}

void bt_anomaly_free(bt_anomaly_result *r) { bt_train_log_free(&r->log); }
