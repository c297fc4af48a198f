/* flow.c — how far back the gradient reaches.  With the loss at the last
 * step only, dL/dh_k = dL/dh_{T-1} J_{T-1} ... J_{k+1} (J_j = dh_j/dh_{j-1}):
 * the further back k, the more Jacobians multiply in, and ||dL/dh_k||
 * shrinks (vanishing) or grows (exploding) roughly geometrically in T-1-k.
 * Gated cells (lstm, gru) have an additive path through time that training
 * can open. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"

enum { T_SEQ = 30, HIDDEN = 32, BATCH = 32, EVAL_BATCH = 64 };
static const uint64_t EVAL_SEED = 7, TRAIN_SEED = 11, INIT_SEED = 3;

/* ||dL/dh_k|| for k = 0..T-1 into out[k], and the loss, on the evaluation
 * batch.  at_retain/at_read (may be NULL) receive where that happens. */
static int flow_on_batch(cr_ctx *ctx, bt_model *m, double *out, double *loss, bt_where *at_retain,
                         bt_where *at_read) {
  cr_rng *rng = cr_rng_new(EVAL_SEED);
  cr_tensor *x, *target, *h[T_SEQ];
  int rc = !rng || bt_adding_batch(ctx, rng, cr_rnn_get_config(m->rnn)->dtype, T_SEQ, EVAL_BATCH,
                                   &x, &target);
  cr_rng_free(rng);
  if (at_retain)
    *at_retain = BT_NEXT; /* the step states h_0..h_{T-1}, gradients retained */
  cr_tensor *L = rc ? NULL : bt_model_loss(ctx, m, x, target, NULL, h);
  if (!L || cr_backward(ctx, L))
    return 1;
  *loss = cr_item(L);
  for (int k = 0; k < T_SEQ; k++) {
    if (at_read)
      *at_read = BT_NEXT;
    const cr_tensor *g = cr_grad(h[k]); /* dL/dh_k [B,H], one backward away */
    double s = 0;
    for (int64_t i = 0; i < cr_numel(g); i++)
      s += cr_get_flat(g, i) * cr_get_flat(g, i);
    out[k] = sqrt(s);
  }
  for (int i = 0; i < m->n_params; i++) /* this backward was only for looking */
    cr_zero_grad(m->params[i]);
  cr_ctx_reset(ctx);
  return 0;
}

static int fail(cr_ctx *ctx, char *error, size_t n, const char *what) {
  snprintf(error, n, "%s: %s", what, cr_ctx_error(ctx));
  return 1;
}

int bt_flow(int steps, bt_flow_result *r) {
  memset(r, 0, sizeof *r);
  r->T = T_SEQ, r->H = HIDDEN, r->B = BATCH, r->steps = steps, r->lr = 2e-2;
  const cr_cell_def *cells[BT_N_CELLS] = {&cr_cell_rnn_tanh, &cr_cell_lstm, &cr_cell_gru};
  cr_ctx *ctx = cr_ctx_new();
  int rc = 0;
  for (int c = 0; c < BT_N_CELLS && !rc; c++) {
    r->cells[c] = cells[c]->name;
    bt_model m;
    if (bt_model_init(&m, ctx, cells[c], HIDDEN, CR_F64, INIT_SEED, 1.0)) {
      rc = fail(ctx, r->error, sizeof r->error, cells[c]->name);
      break;
    }
    bt_train_opts o = {CR_ADAM, r->lr, 0.0, r->steps, T_SEQ, BATCH, TRAIN_SEED, false};
    for (int when = 0; when < 2 && !rc; when++) {
      r->norm[c][when] = calloc(T_SEQ, sizeof(double));
      if (!r->norm[c][when] || (when == 1 && bt_train(ctx, &m, &o, NULL)) ||
          flow_on_batch(ctx, &m, r->norm[c][when], &r->loss[c][when], &r->at_retain, &r->at_read))
        rc = fail(ctx, r->error, sizeof r->error, cells[c]->name);
      r->at_states = bt_model_where_states();
    }
    bt_model_free(&m);
  }
  cr_ctx_free(ctx);
  return rc;
}

int bt_explode(double scale, int steps, bt_explode_result *r) {
  memset(r, 0, sizeof *r);
  r->T = T_SEQ, r->H = HIDDEN, r->steps = steps, r->scale = scale, r->clip = 1.0, r->lr = 0.05;
  cr_ctx *ctx = cr_ctx_new();
  int rc = 0;
  /* 0: x1 at init, 1: x scale at init, 2: trained without clipping, 3: with */
  for (int v = 0; v < 4 && !rc; v++) {
    bt_model m;
    r->norm[v] = calloc(T_SEQ, sizeof(double));
    if (!r->norm[v] ||
        bt_model_init(&m, ctx, &cr_cell_rnn_tanh, HIDDEN, CR_F64, INIT_SEED, v ? scale : 1.0)) {
      rc = fail(ctx, r->error, sizeof r->error, "explode");
      break;
    }
    if (v >= 2) {
      bt_train_opts o = {CR_SGD,     r->lr, v == 3 ? r->clip : 0.0, r->steps, T_SEQ, BATCH,
                         TRAIN_SEED, false};
      if (bt_train(ctx, &m, &o, &r->log[v - 2]))
        rc = fail(ctx, r->error, sizeof r->error, "explode: training");
      r->at_clip = r->log[v - 2].at_clip;
    }
    if (!rc && flow_on_batch(ctx, &m, r->norm[v], &r->loss[v], NULL, NULL))
      rc = fail(ctx, r->error, sizeof r->error, "explode");
    bt_model_free(&m);
  }
  cr_ctx_free(ctx);
  return rc;
}

void bt_flow_free(bt_flow_result *r) {
  for (int c = 0; c < BT_N_CELLS; c++)
    for (int w = 0; w < 2; w++)
      free(r->norm[c][w]), r->norm[c][w] = NULL;
}

void bt_explode_free(bt_explode_result *r) {
  for (int v = 0; v < 4; v++)
    free(r->norm[v]), r->norm[v] = NULL;
  bt_train_log_free(&r->log[0]);
  bt_train_log_free(&r->log[1]);
}
