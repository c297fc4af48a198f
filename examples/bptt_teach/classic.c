/* classic.c — bptt-teach's text output (without --out), for a terminal.
 *
 *  1. The hand-derived BPTT formula for a scalar RNN  h_t = tanh(w h_{t-1} + x_t),
 *     L = h_T:
 *        dL/dh_t = dL/dh_{t+1} * (1 - h_{t+1}^2) * w
 *        dL/dw   = sum_t dL/dh_t * (1 - h_t^2) * h_{t-1}
 *     printed next to what backward computed on the unrolled graph (each
 *     h_t marked with cr_retain_grad, so cr_grad(h_t) shows dL/dh_t).
 *  2. Vanishing gradients: the norm of dL/dh_t for t = T..1 (L depends on
 *     h_T only) for a tanh RNN and an LSTM with the same sizes, read from
 *     the step states of one cr_rnn_forward_ex with retain_step_grads.
 *     Raise --scale to see exploding gradients instead.
 *  3. The unrolled graph of a 3-step RNN in Graphviz format (bptt.dot).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bptt_teach.h"

static double norm(const cr_tensor *t) {
  double s = 0;
  for (int64_t i = 0; t && i < cr_numel(t); i++)
    s += cr_get_flat(t, i) * cr_get_flat(t, i);
  return sqrt(s);
}

/* Part 2: ||dL/dh_t|| for every t, L = sum(h_T * v) */
static int grad_norms(const cr_cell_def *cell, int T, double scale, double *out) {
  enum { B = 1, I = 4, H = 16 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(3);
  cr_rnn_config cfg = {cell, I, H, 1, 0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *Whh = rnn ? cr_rnn_find_param(rnn, "weight_hh_l0") : NULL;
  for (int64_t i = 0; Whh && i < cr_numel(Whh); i++) /* scale the recurrent weight */
    cr_set_flat(Whh, i, cr_get_flat(Whh, i) * scale);
  /* one forward over the whole sequence; every step's h_t (and c_t) is a
   * tensor of the graph, its gradient retained */
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1), *o;
  cr_tensor **hs = calloc((size_t)T * (size_t)cell->n_states, sizeof *hs);
  cr_rnn_forward_opts opts = {.step_states = hs, .retain_step_grads = true};
  int rc = !hs || cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &opts, &o, NULL) != CR_OK;
  cr_tensor *v = cr_ones(ctx, CR_F64, CR_SHAPE(B, H));
  rc = rc || cr_backward(ctx, cr_sum(ctx, cr_mul(ctx, hs[T - 1], v))) != CR_OK;
  if (rc)
    fprintf(stderr, "bptt-teach: %s\n", cr_ctx_error(ctx));
  for (int t = 0; t < T && !rc; t++)
    out[t] = norm(cr_grad(hs[t])); /* h states come first: hs[t] is h_t */
  free(hs);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return rc;
}

int bt_classic(int T, double scale) {
  cr_ctx *ctx = cr_ctx_new();

  /* ---- 1. the formula and the machine */
  const double w0 = 0.9;
  cr_tensor *w = cr_tensor_new(ctx, CR_F64, CR_SHAPE(1));
  cr_set_flat(w, 0, w0);
  cr_set_requires_grad(w, true);
  double *hv = malloc(sizeof(double) * (size_t)(T + 1)), *xs = malloc(sizeof(double) * (size_t)T);
  cr_tensor **h = malloc(sizeof(cr_tensor *) * (size_t)(T + 1));
  hv[0] = 0.1;
  h[0] = cr_full(ctx, CR_F64, CR_SHAPE(1), hv[0]);
  for (int t = 0; t < T; t++) {
    xs[t] = 0.5 * sin(0.3 * t);
    /* h_t = tanh(w h_{t-1} + x_t) */
    h[t + 1] = cr_tanh(ctx, cr_add_scalar(ctx, cr_mul(ctx, w, h[t]), xs[t]));
    cr_retain_grad(h[t + 1]); /* keep dL/dh_t for the table */
    hv[t + 1] = tanh(w0 * hv[t] + xs[t]);
  }
  if (cr_backward(ctx, h[T]) != CR_OK) {
    fprintf(stderr, "bptt-teach: %s\n", cr_ctx_error(ctx));
    return 1;
  }
  printf("1. scalar RNN h_t = tanh(w h_{t-1} + x_t), L = h_%d: hand-derived BPTT vs backward\n", T);
  printf("   %4s  %22s  %22s\n", "t", "dL/dh_t by hand", "cr_grad(h_t)");
  double dh = 1.0, dw = 0.0, worst = 0;
  for (int t = T; t >= 1; t--) {
    double machine = cr_get_flat(cr_grad(h[t]), 0);
    worst = fmax(worst, fabs(machine - dh));
    if (t > T - 4 || t <= 3)
      printf("   %4d  %22.15e  %22.15e\n", t, dh, machine);
    else if (t == T - 4)
      printf("   %4s  %22s  %22s\n", "...", "...", "...");
    double da = dh * (1 - hv[t] * hv[t]);
    dw += da * hv[t - 1];
    dh = da * w0;
  }
  printf("   dL/dw: by hand %.15e, backward %.15e (largest difference over all t: %.1e)\n\n", dw,
         cr_get_flat(cr_grad(w), 0), fmax(worst, fabs(dw - cr_get_flat(cr_grad(w), 0))));

  /* ---- 2. vanishing (or exploding) gradients */
  double *g_rnn = calloc((size_t)T, sizeof(double)), *g_lstm = calloc((size_t)T, sizeof(double));
  if (grad_norms(&cr_cell_rnn_tanh, T, scale, g_rnn) || grad_norms(&cr_cell_lstm, T, scale, g_lstm))
    return 1;
  printf("2. ||dL/dh_t|| with L = sum(h_%d), hidden 16, recurrent weights x%g\n", T, scale);
  printf("   %4s  %12s  %12s\n", "t", "rnn_tanh", "lstm");
  for (int t = T - 1; t >= 0; t -= (T > 20 ? T / 10 : 1))
    printf("   %4d  %12.3e  %12.3e\n", t + 1, g_rnn[t], g_lstm[t]);
  printf("   (the tanh RNN's gradient shrinks by a roughly constant factor per step;\n"
         "    the LSTM's additive cell state carries it further)\n\n");

  /* ---- 3. the unrolled graph */
  cr_ctx_reset(ctx);
  cr_tensor *h3 = cr_full(ctx, CR_F64, CR_SHAPE(1), 0.1);
  for (int t = 0; t < 3; t++)
    h3 = cr_tanh(ctx, cr_add_scalar(ctx, cr_mul(ctx, w, h3), xs[t]));
  FILE *f = fopen("bptt.dot", "w");
  if (f) {
    cr_graph_dot(f, h3);
    fclose(f);
    printf("3. the graph of 3 unrolled steps is in bptt.dot (dot -Tpng bptt.dot > bptt.png):\n"
           "   w is one leaf with an edge into every step's mul: its gradient is the sum.\n");
  }
  free(hv);
  free(xs);
  free(h);
  free(g_rnn);
  free(g_lstm);
  cr_tensor_free(w);
  cr_ctx_free(ctx);
  return 0;
}
