/* double_sum.h — the textbook BPTT formula for a simple RNN, computed term
 * by term in float64 with explicit Jacobian products, next to what
 * backward computes on the unrolled graph of chainrule's rnn_tanh layer.
 *
 *   h_t = tanh(W_xh x_t + W_hh h_{t-1} + b),  y_t = W_hy h_t + c,
 *   L = sum_t L_t,  L_t = 1/2 |y_t - z_t|^2          (t = 0..T-1, h_{-1} given)
 *
 *   dL/dW_hh = sum_t sum_{k<=t} dL_t/dh_t (prod_{j=k+1..t} dh_j/dh_{j-1}) d+h_k/dW_hh
 *
 * (double_sum.c has the derivation of each factor.) */
#ifndef BPTT_TEACH_DOUBLE_SUM_H
#define BPTT_TEACH_DOUBLE_SUM_H

#include <stdint.h>

#include "where.h"

typedef struct bt_dsum_config {
  int T, I, H, O; /* steps, input, hidden and output sizes */
  uint64_t seed;  /* weights, inputs, targets and h_{-1} are drawn from it */
  int max_lag;    /* keep only the terms with t - k <= max_lag (truncated
                     BPTT); < 0: every term, the full gradient */
} bt_dsum_config;

typedef struct bt_dsum_result {
  int T, H;
  double *term;      /* [T*T] at t*T + k: ||term(t,k)||_F, the (t,k) contribution
                        to dL/dW_hh (k <= t; NAN above the diagonal) */
  double *jprod;     /* [T*T] at t*T + k: ||J_t ... J_{k+1}||_2 (largest singular
                        value, estimated by power iteration; 1 for k = t) */
  double *dh;        /* [T] ||dL/dh_k|| = ||sum_{t>=k} dL_t/dh_k|| by the sum */
  int64_t n_terms;   /* terms added: T(T+1)/2 without truncation */
  double max_diff;   /* max over W_hh's elements of |double sum - backward| */
  double max_diff_h; /* max over k and elements of |sum_t dL_t/dh_k - cr_grad(h_k)| */
  double grad_norm;  /* ||dL/dW_hh||_F as backward computed it */
  double loss;
  bt_where at_term, at_backward, at_compare; /* where the source does each */
  char error[256];                           /* "" on success */
} bt_dsum_result;

/* Compute both and compare them.  Returns 0, or 1 with a message in
 * r->error.  Free the arrays with bt_dsum_free (also after an error). */
int bt_double_sum(const bt_dsum_config *cfg, bt_dsum_result *r);
void bt_dsum_free(bt_dsum_result *r);

#endif
