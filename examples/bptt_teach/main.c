/* bptt-teach — watch backpropagation through time fall out of the chain rule.
 *
 *   usage: bptt-teach [--steps T] [--scale S]     the text version (classic.c)
 *          bptt-teach --out DIR [--scale S] [--quick]   DIR/index.html with pictures:
 *     1. the BPTT double sum, term by term, against backward (heat map)
 *     2. ||dL/dh_k|| per step for rnn_tanh, lstm, gru, before and after
 *        training; an exploding tanh RNN with and without clipping
 *     3. the unrolled graph of a 3-step LSTM, one cluster per step
 *     4. a diverging run stopped by anomaly mode
 *   and prints the key figures.  Pictures need gnuplot and Graphviz's dot;
 *   without them the CSV, gnuplot and dot files are written all the same.
 *   --quick trains for a tenth of the steps (for tests: the pictures are
 *   made, the trained curves are not yet the lesson). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bptt_teach.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(const char *bad) {
  fprintf(stderr,
          "bptt-teach: unknown or bad option '%s'\n"
          "usage: bptt-teach [--steps T >= 3] [--scale S > 0]\n"
          "       bptt-teach --out DIR [--scale S > 1] [--quick]\n",
          bad);
  return 2;
}

static void key_figures(const bt_report *r) {
  const bt_dsum_result *d = &r->ds;
  printf("1. BPTT double sum, simple RNN (input %d, hidden %d, output %d, T = %d): %lld terms\n"
         "   double sum vs backward: max abs difference %.1e\n"
         "   dL/dh_k as the sum over t vs cr_grad(h_k): max abs difference %.1e\n"
         "   ||term(t,k)|| in the last row: %.1e at k = t, %.1e at k = 0\n",
         r->dcfg.I, r->dcfg.H, r->dcfg.O, d->T, (long long)d->n_terms, d->max_diff, d->max_diff_h,
         d->term[(d->T - 1) * d->T + d->T - 1], d->term[(d->T - 1) * d->T]);
  const bt_flow_result *f = &r->flow;
  printf("2. gradient flow, adding problem T = %d: ||dL/dh_0|| / ||dL/dh_%d||, mse\n", f->T,
         f->T - 1);
  for (int c = 0; c < BT_N_CELLS; c++)
    printf("   %-8s  at init %.1e (mse %.3f)   after %d steps %.1e (mse %.4f)\n", f->cells[c],
           f->norm[c][0][0] / f->norm[c][0][f->T - 1], f->loss[c][0], f->steps,
           f->norm[c][1][0] / f->norm[c][1][f->T - 1], f->loss[c][1]);
  const bt_explode_result *e = &r->ex;
  double worst = 0;
  for (int s = 0; s < e->steps; s++)
    worst = e->log[0].loss[s] > worst ? e->log[0].loss[s] : worst;
  printf("   tanh RNN, W_hh x%g: ||dL/dh_0|| / ||dL/dh_%d|| = %.1f at init (x1: %.1e)\n"
         "   SGD lr %g, %d steps: without clipping the loss peaks at %.1e and ends at %.3g; "
         "clipped to %g it ends at %.3g\n",
         e->scale, e->T - 1, e->norm[1][0] / e->norm[1][e->T - 1],
         e->norm[0][0] / e->norm[0][e->T - 1], e->lr, e->steps, worst, e->loss[2], e->clip,
         e->loss[3]);
  const bt_graph_result *g = &r->graph;
  printf("3. graph: LSTM unrolled over %d steps, %d ops (%d, %d, %d per step, %d shared); "
         "cr_graph_dot_ex drew %d clusters (the steps' scopes and the loss's)\n",
         g->T, g->n_ops, g->ops_per_step[0], g->ops_per_step[1], g->ops_per_step[2], g->shared_ops,
         g->library_blocks);
  printf("4. anomaly mode stopped the diverging run at step %d (loss %.1e the step before): "
         "op '%s'\n   %s\n",
         r->an.log.stopped_at, r->an.log.done ? r->an.log.loss[r->an.log.done - 1] : 0.0, r->an.op,
         r->an.log.message);
}

static int report(const char *dir, double scale, bool quick) {
  double t0 = now();
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "bptt-teach: cannot create '%s': %s\n", dir, strerror(errno));
    return 1;
  }
  bt_report *r = calloc(1, sizeof *r);
  if (!r)
    return 1;
  r->dir = dir;
  r->quick = quick;
  r->have_gnuplot = bt_have("gnuplot");
  r->have_dot = bt_have("dot");
  r->dcfg = (bt_dsum_config){.T = 24, .I = 3, .H = 8, .O = 2, .seed = 1, .max_lag = -1};
  int rc = 0;
  const char *err = NULL;
  if (bt_double_sum(&r->dcfg, &r->ds))
    err = r->ds.error;
  else if (bt_flow(quick ? 40 : 400, &r->flow))
    err = r->flow.error;
  else if (bt_explode(scale, quick ? 20 : 200, &r->ex))
    err = r->ex.error;
  else if (bt_graph(dir, &r->graph))
    err = r->graph.error;
  else if (bt_anomaly(&r->an))
    err = r->an.error;
  if (err) {
    fprintf(stderr, "bptt-teach: %s\n", err);
    rc = 1;
  } else {
    rc = bt_plots(r);
    r->seconds = now() - t0;
    rc = rc || bt_page(r);
  }
  if (!rc) {
    key_figures(r);
    printf("report: %s/index.html (%.1f s)\n", dir, now() - t0);
    if (!r->have_gnuplot || !r->have_dot)
      printf("missing: %s%s%s: wrote the CSV, gnuplot and dot files, not the pictures "
             "(Debian: apt-get install gnuplot-nox graphviz)\n",
             r->have_gnuplot ? "" : "gnuplot", !r->have_gnuplot && !r->have_dot ? " and " : "",
             r->have_dot ? "" : "dot (Graphviz)");
  }
  bt_dsum_free(&r->ds);
  bt_flow_free(&r->flow);
  bt_explode_free(&r->ex);
  bt_anomaly_free(&r->an);
  free(r);
  return rc;
}

int main(int argc, char **argv) {
  int T = 40;
  double scale = 0;
  const char *out = NULL;
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--steps") && i + 1 < argc && atoi(argv[i + 1]) >= 3 &&
        atoi(argv[i + 1]) <= 10000)
      T = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--scale") && i + 1 < argc && atof(argv[i + 1]) > 0)
      scale = atof(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc && argv[i + 1][0])
      out = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      quick = true;
    else
      return usage(argv[i]);
  }
  if (!out && quick)
    return usage("--quick (only with --out)");
  if (!out)
    return bt_classic(T, scale > 0 ? scale : 1.0);
  if (scale != 0 && scale <= 1)
    return usage("--scale (with --out it scales the exploding RNN: > 1)");
  return report(out, scale > 0 ? scale : 3.0, quick);
}
