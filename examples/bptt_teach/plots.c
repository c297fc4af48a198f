/* plots.c — every picture is a CSV file of its numbers, a gnuplot script
 * that draws it from that CSV (cd DIR && gnuplot flow.gp redraws it, and
 * both can be edited), and the PNG the script makes.  The graph is
 * graph.dot rendered by Graphviz.  Without gnuplot or dot the CSV, .gp and
 * .dot files are still written. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bptt_teach.h"

/* close both written files (both, whatever the first gives): 1 if either failed */
static int finish_pair(FILE *a, FILE *b) {
  const int ra = fclose(a) != 0, rb = fclose(b) != 0;
  return ra || rb;
}

const char *const bt_pic_name[BT_N_PICS] = {"heatmap", "flow",    "explode",
                                            "clip",    "anomaly", "graph"};

static FILE *open_in(const char *dir, const char *name) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    fprintf(stderr, "bptt-teach: cannot write %s\n", path);
  return f;
}

static bool exists_nonempty(const char *dir, const char *name) {
  char path[4200];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return stat(path, &st) == 0 && st.st_size > 0;
}

static void close_both(FILE *c, FILE *g) {
  if (c)
    fclose(c);
  if (g)
    fclose(g);
}

/* The start every script shares: a PNG of w x h pixels named after it. */
static void gp_head(FILE *f, const char *stem, int w, int h, const char *what) {
  fprintf(f,
          "# %s\n# drawn from %s.csv by bptt-teach; redraw with: gnuplot %s.gp\n"
          "set terminal pngcairo size %d,%d font 'sans,11'\n"
          "set output '%s.png'\nset datafile separator ','\n"
          "set grid lc rgb '#dddddd'\nset border lc rgb '#555555'\n",
          what, stem, stem, w, h, stem);
}

/* ---- 1. the (t, k) terms of the double sum */
static int heatmap(const bt_report *rep) {
  const bt_dsum_result *d = &rep->ds;
  FILE *c = open_in(rep->dir, "heatmap.csv"), *g = open_in(rep->dir, "heatmap.gp");
  if (!c || !g)
    return close_both(c, g), 1;
  fprintf(c, "t,k,t_minus_k,term_norm,jacobian_product_norm\n");
  for (int t = 0; t < d->T; t++)
    for (int k = 0; k <= t; k++)
      fprintf(c, "%d,%d,%d,%.17g,%.17g\n", t, k, t - k, d->term[t * d->T + k],
              d->jprod[t * d->T + k]);
  gp_head(g, "heatmap", 760, 620, "||term(t,k)||: the contribution of step k to dL_t/dW_hh");
  fprintf(g,
          "set title \"BPTT double sum: ||dL_t/dh_t {/Symbol P}_{j=k+1..t} dh_j/dh_{j-1} "
          "d^+h_k/dW_{hh}||\"\n"
          "set xlabel 'k (the step where W_{hh} acted)'\n"
          "set ylabel 't (the step whose loss L_t is differentiated)'\n"
          "set xrange [-0.5:%d.5]\nset yrange [-0.5:%d.5]\nset size ratio -1\n"
          "set logscale cb\nset format cb '10^{%%L}'\nset cblabel 'Frobenius norm'\n"
          "set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', "
          "4 '#fde725')\nunset grid\n"
          "plot 'heatmap.csv' skip 1 using 2:1:(0.5):(0.5):4 with boxxyerror "
          "fillstyle solid noborder lc palette notitle\n",
          d->T - 1, d->T - 1);
  return finish_pair(c, g);
}

/* ---- 2a. ||dL/dh_k|| for three cells, before and after training */
static int flow(const bt_report *rep) {
  const bt_flow_result *f = &rep->flow;
  FILE *c = open_in(rep->dir, "flow.csv"), *g = open_in(rep->dir, "flow.gp");
  if (!c || !g)
    return close_both(c, g), 1;
  fprintf(c, "k");
  for (int i = 0; i < BT_N_CELLS; i++)
    fprintf(c, ",%s_init,%s_trained", f->cells[i], f->cells[i]);
  fprintf(c, "\n");
  for (int k = 0; k < f->T; k++) {
    fprintf(c, "%d", k);
    for (int i = 0; i < BT_N_CELLS; i++)
      fprintf(c, ",%.17g,%.17g", f->norm[i][0][k], f->norm[i][1][k]);
    fprintf(c, "\n");
  }
  gp_head(g, "flow", 820, 540, "||dL/dh_k|| against k, loss at the last step only");
  fprintf(g,
          "set title 'Gradient flow on the adding problem (T = %d, hidden %d): "
          "||dL/dh_k||'\nset xlabel 'k (time step)'\nset ylabel '||dL/dh_k||'\n"
          "set logscale y\nset format y '10^{%%L}'\nset key right bottom\nset xrange [0:%d]\n"
          "plot ",
          f->T, f->H, f->T - 1);
  const char *colour[BT_N_CELLS] = {"#d62728", "#1f77b4", "#2ca02c"};
  for (int i = 0; i < BT_N_CELLS; i++)
    fprintf(g,
            "%s'flow.csv' skip 1 using 1:%d with lines dt 2 lw 2 lc rgb '%s' "
            "title '%s at initialisation' noenhanced, "
            "'' skip 1 using 1:%d with linespoints pt 7 ps 0.6 lw 2 lc rgb '%s' "
            "title '%s after %d steps (mse %.4f)' noenhanced",
            i ? ", \\\n     " : "", 2 + 2 * i, colour[i], f->cells[i], 3 + 2 * i, colour[i],
            f->cells[i], f->steps, f->loss[i][1]);
  fprintf(g, "\n");
  return finish_pair(c, g);
}

/* ---- 2b. the exploding tanh RNN: per-step norms, and training with and
 * without clipping */
static int explode(const bt_report *rep) {
  const bt_explode_result *e = &rep->ex;
  FILE *c = open_in(rep->dir, "explode.csv"), *g = open_in(rep->dir, "explode.gp");
  if (!c || !g)
    return close_both(c, g), 1;
  fprintf(c, "k,x1_init,x%g_init,x%g_trained_no_clip,x%g_trained_clip\n", e->scale, e->scale,
          e->scale);
  for (int k = 0; k < e->T; k++)
    fprintf(c, "%d,%.17g,%.17g,%.17g,%.17g\n", k, e->norm[0][k], e->norm[1][k], e->norm[2][k],
            e->norm[3][k]);
  gp_head(g, "explode", 820, 540, "||dL/dh_k|| of a tanh RNN with W_hh scaled up");
  fprintf(g,
          "set title 'tanh RNN, W_{hh} x%g: ||dL/dh_k|| grows going back in time'\n"
          "set xlabel 'k (time step)'\nset ylabel '||dL/dh_k||'\nset logscale y\n"
          "set format y '10^{%%L}'\nset key right top\nset xrange [0:%d]\n"
          "plot 'explode.csv' skip 1 using 1:2 with lines dt 2 lw 2 lc rgb '#999999' "
          "title 'W_{hh} x1 at initialisation (vanishing)', \\\n"
          "     '' skip 1 using 1:3 with lines lw 3 lc rgb '#d62728' "
          "title 'W_{hh} x%g at initialisation (exploding)', \\\n"
          "     '' skip 1 using 1:5 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#1f77b4' "
          "title 'x%g after %d SGD steps with clipping (max norm %g)'\n",
          e->scale, e->T - 1, e->scale, e->scale, e->steps, e->clip);
  int rc = finish_pair(c, g);
  c = open_in(rep->dir, "clip.csv"), g = open_in(rep->dir, "clip.gp");
  if (!c || !g)
    return close_both(c, g), 1;
  fprintf(c, "step,loss_no_clip,grad_norm_no_clip,loss_clip,grad_norm_clip\n");
  for (int s = 0; s < e->steps; s++)
    fprintf(c, "%d,%.17g,%.17g,%.17g,%.17g\n", s, e->log[0].loss[s], e->log[0].gnorm[s],
            e->log[1].loss[s], e->log[1].gnorm[s]);
  gp_head(g, "clip", 820, 700, "training the exploding RNN with and without clipping");
  fprintf(g,
          "set multiplot layout 2,1 title 'tanh RNN, W_{hh} x%g, SGD lr %g: the same run "
          "with and without gradient-norm clipping'\n"
          "set logscale y\nset format y '10^{%%L}'\nset key right top\nset xrange [0:%d]\n"
          "set ylabel 'training loss (mse)'\nunset xlabel\n"
          "plot 'clip.csv' skip 1 using 1:2 with lines lw 2 lc rgb '#d62728' "
          "title 'no clipping', '' skip 1 using 1:4 with lines lw 2 lc rgb '#1f77b4' "
          "title 'clip to norm %g'\n"
          "set ylabel 'gradient norm before clipping'\nset xlabel 'training step'\n"
          "plot 'clip.csv' skip 1 using 1:3 with lines lw 2 lc rgb '#d62728' "
          "title 'no clipping', '' skip 1 using 1:5 with lines lw 2 lc rgb '#1f77b4' "
          "title 'clip to norm %g', %g with lines dt 2 lc rgb '#555555' title 'max norm'\n"
          "unset multiplot\n",
          e->scale, e->lr, e->steps - 1, e->clip, e->clip, e->clip);
  const int rc2 = finish_pair(c, g);
  return rc || rc2;
}

/* ---- 4. the diverging run, until anomaly mode stopped it */
static int anomaly(const bt_report *rep) {
  const bt_anomaly_result *a = &rep->an;
  FILE *c = open_in(rep->dir, "anomaly.csv"), *g = open_in(rep->dir, "anomaly.gp");
  if (!c || !g)
    return close_both(c, g), 1;
  fprintf(c, "step,loss,grad_norm\n");
  for (int s = 0; s < a->log.done; s++)
    fprintf(c, "%d,%.9g,%.9g\n", s, a->log.loss[s], a->log.gnorm[s]);
  gp_head(g, "anomaly", 820, 460, "a diverging run, stopped by anomaly mode");
  fprintf(g,
          "set title 'SGD lr %g (far too large), float32: the loss explodes until anomaly "
          "mode stops step %d'\nset xlabel 'training step'\nset ylabel 'loss'\n"
          "set logscale y\nset format y '10^{%%L}'\nset key left top\n"
          "set offsets 0, 0, graph 0.08, 0\nset xrange [-0.5:%d.5]\nset arrow from %d, graph 0 to "
          "%d, graph 1 nohead "
          "lc rgb '#d62728' dt 2 lw 2\nset label 'stopped: %s' at %d, graph 0.5 right "
          "offset -1,0 tc rgb '#d62728'\n"
          "plot 'anomaly.csv' skip 1 using 1:2 with linespoints pt 7 lw 2 lc rgb '#333333' "
          "title 'training loss'\n",
          a->lr, a->log.stopped_at, a->log.stopped_at, a->log.stopped_at, a->log.stopped_at,
          a->op[0] ? a->op : "?", a->log.stopped_at);
  return finish_pair(c, g);
}

int bt_plots(bt_report *rep) {
  int rc = heatmap(rep) | flow(rep) | explode(rep) | anomaly(rep);
  if (rc)
    return 1;
  char png[64], gp[64];
  for (int p = 0; p < BT_N_PICS; p++) {
    snprintf(png, sizeof png, "%s.png", bt_pic_name[p]);
    snprintf(gp, sizeof gp, "%s.gp", bt_pic_name[p]);
    char old[4200];
    snprintf(old, sizeof old, "%s/%s", rep->dir, png);
    remove(old); /* an old picture must not pass for a new one */
    if (p == BT_PIC_GRAPH) {
      if (rep->have_dot && rep->graph.dot_path[0]) {
        const char *svg[] = {"dot", "-Tsvg", "graph.dot", "-o", "graph.svg", NULL};
        const char *pngv[] = {"dot", "-Tpng", "-Gdpi=80", "graph.dot", "-o", "graph.png", NULL};
        rc |= bt_run(rep->dir, svg) != 0 || bt_run(rep->dir, pngv) != 0;
      }
    } else if (rep->have_gnuplot) {
      const char *argv[] = {"gnuplot", gp, NULL};
      rc |= bt_run(rep->dir, argv) != 0;
    }
    rep->drawn[p] = exists_nonempty(rep->dir, png);
  }
  if (rc)
    fprintf(stderr, "bptt-teach: a drawing tool failed: see %s/tools.log\n", rep->dir);
  return 0;
}
