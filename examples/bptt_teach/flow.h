/* flow.h — gradient flow through time on the real layers: ||dL/dh_k|| for
 * every step k, read from the retained step states of cr_rnn_forward_ex
 * after one backward (no step is re-run). */
#ifndef BPTT_TEACH_FLOW_H
#define BPTT_TEACH_FLOW_H

#include "model.h"
#include "where.h"

#define BT_N_CELLS 3

typedef struct bt_flow_result {
  int T, H, B, steps;
  double lr;
  const char *cells[BT_N_CELLS];          /* rnn_tanh, lstm, gru */
  double *norm[BT_N_CELLS][2];            /* [T] ||dL/dh_k|| on the evaluation batch,
                                             at initialisation (0) and after training (1) */
  double loss[BT_N_CELLS][2];             /* evaluation mse, same two moments */
  bt_where at_states, at_retain, at_read; /* at_states: in model.c */
  char error[512];
} bt_flow_result;

typedef struct bt_explode_result {
  int T, H, steps;
  double scale, clip, lr;
  double *norm[4];     /* [T] ||dL/dh_k||: recurrent weight x1 at init, xscale at
                          init, xscale trained without clipping, with clipping */
  double loss[4];      /* evaluation mse of the same four */
  bt_train_log log[2]; /* training without (0) and with (1) clipping */
  bt_where at_clip;    /* where train.c clips */
  char error[512];
} bt_explode_result;

/* rnn_tanh, lstm and gru trained on the adding problem for steps steps
 * (400 in the report).  0 or 1 (error). */
int bt_flow(int steps, bt_flow_result *r);
/* A tanh RNN whose recurrent weight is scaled by scale, trained with SGD
 * for steps steps (200) with and without gradient-norm clipping.  0 or 1. */
int bt_explode(double scale, int steps, bt_explode_result *r);
void bt_flow_free(bt_flow_result *r);
void bt_explode_free(bt_explode_result *r);

#endif
