/* bptt_teach.h — the parts of bptt-teach and what they hand each other.
 *
 *   main.c        the command line; --out runs every section below
 *   classic.c     the text output without --out (scalar RNN, norms, bptt.dot)
 *   double_sum.c  1. the BPTT double sum term by term vs backward
 *   flow.c        2. ||dL/dh_k|| per step: rnn_tanh/lstm/gru, exploding, clipping
 *   model.c       the model and task those train on; train.c the loop
 *   graph.c       3. the unrolled LSTM graph, one cluster per step
 *   anomaly.c     4. a diverging run stopped by anomaly mode
 *   plots.c       CSV and gnuplot scripts for every picture, Graphviz renders
 *   tools.c       finding and running gnuplot and dot
 *   page.c        5. index.html: each picture, what it shows, which line made it
 */
#ifndef BPTT_TEACH_H
#define BPTT_TEACH_H

#include <stdbool.h>

#include "chainrule.h"
#include "double_sum.h"
#include "flow.h"
#include "model.h"
#include "where.h"

/* ---- 3. the graph */
typedef struct bt_graph_result {
  int T, H;
  int n_ops, shared_ops, ops_per_step[8];
  int library_blocks;  /* cluster blocks cr_graph_dot_ex wrote */
  char dot_path[4096]; /* DIR/graph.dot */
  bt_where at_forward, at_dot;
  char error[512];
} bt_graph_result;
/* Write DIR/graph.dot.  0 or 1 (message in r->error). */
int bt_graph(const char *dir, bt_graph_result *r);

/* ---- 4. anomaly mode */
typedef struct bt_anomaly_result {
  double lr;
  int steps;
  bt_train_log log; /* loss per step until the stop */
  char op[32];      /* the op the message names ("" if it did not stop) */
  bt_where at_switch, at_stop;
  char error[512]; /* a failure other than the expected stop */
} bt_anomaly_result;
int bt_anomaly(bt_anomaly_result *r);
void bt_anomaly_free(bt_anomaly_result *r);

/* ---- tools.c */
/* Is prog an executable file in a directory of $PATH? */
bool bt_have(const char *prog);
/* Run argv (argv[0] looked up in $PATH) in directory dir, its output to
 * DIR/tools.log; returns its exit status, or -1 if it could not run. */
int bt_run(const char *dir, const char *const *argv);

/* ---- everything the page needs */
typedef struct bt_report {
  const char *dir;
  bool have_gnuplot, have_dot;
  bt_dsum_config dcfg;
  bt_dsum_result ds;
  bt_flow_result flow;
  bt_explode_result ex;
  bt_graph_result graph;
  bt_anomaly_result an;
  bool drawn[8]; /* which pictures exist (BT_PIC_...) */
  bool quick;    /* --quick: a tenth of the training */
  double seconds;
} bt_report;

enum {
  BT_PIC_HEATMAP,
  BT_PIC_FLOW,
  BT_PIC_EXPLODE,
  BT_PIC_CLIP,
  BT_PIC_ANOMALY,
  BT_PIC_GRAPH,
  BT_N_PICS
};
extern const char *const bt_pic_name[BT_N_PICS]; /* "heatmap", ... (file stems) */

/* plots.c: write every CSV (and the .gp scripts), then draw what the
 * available tools can; sets rep->drawn.  0, or 1 if a file could not be
 * written (message on stderr). */
int bt_plots(bt_report *rep);
/* page.c: DIR/index.html.  0 or 1. */
int bt_page(const bt_report *rep);
/* classic.c: the text output without --out.  Returns the exit code. */
int bt_classic(int T, double scale);

#endif
