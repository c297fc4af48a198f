/* model.h — the small sequence model the gradient-flow, clipping and
 * anomaly sections train: one recurrent layer (any built-in cell) read out
 * by a linear head at the last step, on the adding problem (task.c). */
#ifndef BPTT_TEACH_MODEL_H
#define BPTT_TEACH_MODEL_H

#include "chainrule.h"
#include "where.h"

typedef struct bt_model {
  cr_rnn *rnn;
  cr_tensor *W, *b;                          /* head [1,H], [1]: y = h_{T-1} W^T + b */
  cr_tensor *params[CR_CELL_MAX_PARAMS + 2]; /* the layer's, then W and b */
  int n_params;
} bt_model;

/* A model with chainrule's default initialisation, the recurrent weight
 * weight_hh_l0 then multiplied by rec_scale.  Returns 0, or 1 with the
 * error in ctx. */
int bt_model_init(bt_model *m, cr_ctx *ctx, const cr_cell_def *cell, int64_t H, cr_dtype dt,
                  uint64_t seed, double rec_scale);
void bt_model_free(bt_model *m);

/* The loss mse(y, target) of a batch, x [T,B,2], target [B,1], from the
 * initial states init (as cr_rnn_forward: NULL for zeros).  If states
 * is not NULL it receives h_0 .. h_{T-1} (T tensors [B,H], named h_0 ...),
 * with their gradients retained: after backward, cr_grad(states[k]) is
 * dL/dh_k.  NULL on error (in ctx). */
cr_tensor *bt_model_loss(cr_ctx *ctx, const bt_model *m, cr_tensor *x, cr_tensor *target,
                         cr_tensor *const *init, cr_tensor **states);

/* Where bt_model_loss asks cr_rnn_forward_ex for the step states and
 * their gradients (for the report's "computed by"). */
bt_where bt_model_where_states(void);

/* The adding problem (Hochreiter & Schmidhuber, 1997): a sequence of T
 * pairs (u_t, m_t) with u_t ~ U(0,1) and m_t = 1 at two steps, one in each
 * half, 0 elsewhere; the target is the sum of the two marked u_t.
 * Predicting the mean (1) gives mse 1/6, using only the later marked value
 * 1/12; below that the early one must be remembered, so the gradient must
 * flow back to it.
 * x [T,B,2], target [B,1] in ctx.  Returns 0, or 1 (error in ctx). */
int bt_adding_batch(cr_ctx *ctx, cr_rng *rng, cr_dtype dt, int T, int B, cr_tensor **x,
                    cr_tensor **target);

/* ---- training (train.c) */
typedef struct bt_train_opts {
  cr_optim_kind optim;
  double lr;
  double clip; /* max global gradient norm; 0: no clipping */
  int steps, T, B;
  uint64_t seed; /* of the training batches */
  bool anomaly;  /* run in anomaly mode; stop at the first NaN/Inf */
} bt_train_opts;

typedef struct bt_train_log {
  double *loss;        /* [steps]: the training loss of each step (NAN after a stop) */
  double *gnorm;       /* [steps]: the global gradient norm before clipping */
  int done;            /* steps completed */
  int stopped_at;      /* -1, or the step whose forward or backward failed */
  char message[512];   /* the error that stopped it */
  bt_where at_clip;    /* where the gradient norm is measured and clipped */
  bt_where at_step;    /* where forward and backward run */
  bt_where at_anomaly; /* where anomaly mode is switched */
} bt_train_log;

/* Train m.  log may be NULL; its arrays are allocated here (free with
 * bt_train_log_free).  Returns 0 when every step ran, 1 when a step
 * failed (message in log and ctx; with anomaly on that is the expected
 * outcome of a diverging run). */
int bt_train(cr_ctx *ctx, bt_model *m, const bt_train_opts *o, bt_train_log *log);
void bt_train_log_free(bt_train_log *log);

#endif
