/* page.c — DIR/index.html: one self-contained page (relative image paths,
 * no script, no network) with each picture, a few sentences on what it
 * shows, the numbers behind it, and the lines of source that computed it
 * (quoted from the source tree when it is where the program was built). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bptt_teach.h"

#ifndef BT_SOURCE_ROOT
#define BT_SOURCE_ROOT ""
#endif

static void esc(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

/* "computed by examples/bptt_teach/x.c:123" and, if the source is at hand,
 * that line with one line of context either side */
static void code(FILE *f, const char *what, bt_where w) {
  const char *path = bt_path(w.file);
  fprintf(f, "<div class=code><div class=where>%s: <code>", what);
  esc(f, path);
  fprintf(f, ":%d</code></div>", w.line);
  char full[4200], line[512];
  snprintf(full, sizeof full, "%s/%s", BT_SOURCE_ROOT, path);
  FILE *src = BT_SOURCE_ROOT[0] ? fopen(full, "r") : NULL;
  if (src) {
    fputs("<pre>", f);
    for (int n = 1; fgets(line, sizeof line, src) && n <= w.line + 1; n++) {
      if (n < w.line - 1 || (n != w.line && strstr(line, "= BT_NEXT")))
        continue; /* the context, less the report's own bookkeeping */
      fprintf(f, "%s%4d  ", n == w.line ? "<b>" : "", n);
      line[strcspn(line, "\n")] = '\0';
      esc(f, line);
      fputs(n == w.line ? "</b>\n" : "\n", f);
    }
    fputs("</pre>", f);
    fclose(src);
  }
  fputs("</div>\n", f);
}

/* the picture, or what to do without the tool that draws it */
static void picture(FILE *f, const bt_report *rep, int pic, const char *alt, const char *tool) {
  const char *stem = bt_pic_name[pic];
  if (rep->drawn[pic])
    fprintf(f, "<figure><img src=\"%s.png\" alt=\"%s\"></figure>\n", stem, alt);
  else if (pic == BT_PIC_GRAPH)
    fprintf(f,
            "<p class=missing>Not drawn: <code>%s</code> was not found. The graph is in "
            "<a href=\"graph.dot\">graph.dot</a>; install Graphviz and run <code>dot -Tsvg "
            "graph.dot -o graph.svg</code> here.</p>\n",
            tool);
  else
    fprintf(f,
            "<p class=missing>Not drawn: <code>%s</code> was not found. The numbers are in "
            "<a href=\"%s.csv\">%s.csv</a>; install gnuplot and run <code>gnuplot %s.gp</code> "
            "here.</p>\n",
            tool, stem, stem, stem);
  if (pic != BT_PIC_GRAPH)
    fprintf(f,
            "<p class=files>Numbers: <a href=\"%s.csv\">%s.csv</a> &middot; drawn by "
            "<a href=\"%s.gp\">%s.gp</a> (gnuplot)</p>\n",
            stem, stem, stem, stem);
}

static const char *style =
    "body{font:16px/1.5 sans-serif;max-width:60em;margin:1em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}"
    "figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}"
    ".formula{background:#f6f8fa;padding:.6em 1em;font-family:serif;font-size:1.1em}"
    ".key{background:#eef7ee;border-left:4px solid #2ca02c;padding:.4em .8em;"
    "font-family:monospace}"
    ".code{margin:.6em 0}.where{font-size:.9em;color:#555}"
    "pre{background:#f6f8fa;padding:.5em;overflow-x:auto;font-size:.85em;margin:.2em 0}"
    "pre.msg{white-space:pre-wrap}" /* a message wraps; code keeps its lines */
    ".missing{background:#fff4e5;border-left:4px solid #e69500;padding:.4em .8em}"
    ".files{font-size:.9em;color:#555}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}";

static void section_sum(FILE *f, const bt_report *rep) {
  const bt_dsum_result *d = &rep->ds;
  const int T = d->T;
  fprintf(f,
          "<h2>1. The formula, term by term</h2>\n"
          "<p>A simple RNN with input size %d, hidden size %d, output size %d, run for "
          "T = %d steps (t = 0..%d; h<sub>-1</sub> is a random initial state):</p>\n"
          "<p class=formula>h<sub>t</sub> = tanh(W<sub>xh</sub> x<sub>t</sub> + W<sub>hh</sub> "
          "h<sub>t-1</sub> + b), &nbsp; y<sub>t</sub> = W<sub>hy</sub> h<sub>t</sub> + c, "
          "&nbsp; L = &Sigma;<sub>t</sub> L<sub>t</sub>, &nbsp; L<sub>t</sub> = &frac12; "
          "|y<sub>t</sub> &minus; z<sub>t</sub>|<sup>2</sup><br>"
          "&part;L/&part;W<sub>hh</sub> = &Sigma;<sub>t</sub> &Sigma;<sub>k&le;t</sub> "
          "&part;L<sub>t</sub>/&part;h<sub>t</sub> &middot; (&Pi;<sub>j=k+1..t</sub> "
          "&part;h<sub>j</sub>/&part;h<sub>j-1</sub>) &middot; &part;<sup>+</sup>h<sub>k</sub>"
          "/&part;W<sub>hh</sub></p>\n"
          "<p>The weight W<sub>hh</sub> is shared by every step, so its gradient is a sum "
          "over the losses L<sub>t</sub> and, for each, over the steps k &le; t where "
          "W<sub>hh</sub> acted. Each of the %lld terms is computed here explicitly, in "
          "float64, with the Jacobians &part;h<sub>j</sub>/&part;h<sub>j-1</sub> = "
          "diag(1 &minus; h<sub>j</sub><sup>2</sup>) W<sub>hh</sub> multiplied out as "
          "matrices, and the sum is compared with what <code>cr_backward</code> computes on "
          "the unrolled graph of chainrule's <code>rnn_tanh</code> layer (whose two biases "
          "b<sub>ih</sub> + b<sub>hh</sub> make b):</p>\n"
          "<p class=key>double sum vs backward: max abs difference %.1e<br>"
          "&Sigma;<sub>t&ge;k</sub> &part;L<sub>t</sub>/&part;h<sub>k</sub> vs "
          "cr_grad(h_k): max abs difference %.1e &nbsp; (|&part;L/&part;W<sub>hh</sub>| = "
          "%.4f)</p>\n",
          rep->dcfg.I, rep->dcfg.H, rep->dcfg.O, T, T - 1, (long long)d->n_terms, d->max_diff,
          d->max_diff_h, d->grad_norm);
  picture(f, rep, BT_PIC_HEATMAP, "heat map of the BPTT terms", "gnuplot");
  double diag = d->term[(T - 1) * T + T - 1], corner = d->term[(T - 1) * T];
  fprintf(f,
          "<p><b>What it shows.</b> Cell (k, t) is the size ||term(t,k)|| of one "
          "term of the double sum: how much the loss at step t changes W<sub>hh</sub>'s "
          "gradient through what W<sub>hh</sub> did at step k. On the diagonal (k = t) the "
          "weight acts right where the loss is measured; going left along a row the "
          "influence has to travel back through t &minus; k Jacobians, and the colour "
          "fades by orders of magnitude: in the last row from %.1e (k = %d) to %.1e "
          "(k = 0). The product of Jacobians shrinks its input a little at every step "
          "(its largest singular value is %.2g after one step and %.1e after %d), so the "
          "distant past contributes almost nothing. That is the vanishing gradient, "
          "seen.</p>\n",
          diag, T - 1, corner, d->jprod[(T - 1) * T + T - 2], d->jprod[(T - 1) * T], T - 1);
  code(f, "one term, added into the sum", d->at_term);
  code(f, "backward on the unrolled graph", d->at_backward);
  code(f, "the comparison, element by element", d->at_compare);
}

static double ratio(const double *n, int T) { return n[T - 1] > 0 ? n[0] / n[T - 1] : NAN; }

static void section_flow(FILE *f, const bt_report *rep) {
  const bt_flow_result *fl = &rep->flow;
  const bt_explode_result *e = &rep->ex;
  fprintf(f,
          "<h2>2. Gradient flow per time step</h2>\n"
          "<p>The adding problem: T = %d steps of pairs (u<sub>t</sub>, m<sub>t</sub>), "
          "u<sub>t</sub> uniform in [0, 1), m<sub>t</sub> = 1 at one step in each half; "
          "the target is the sum of the two marked u<sub>t</sub>, read out by a linear head "
          "from the last state only. Predicting the mean gives mse 1/6 = 0.167, using "
          "only the later marked value 1/12 = 0.083; below that the model must remember "
          "the early one, so the gradient must reach back to it. "
          "Each cell (hidden %d) is trained with Adam (lr %g, batch %d) for %d steps. "
          "The curves are ||&part;L/&part;h<sub>k</sub>|| on a fixed batch of 64 sequences, "
          "read with <code>cr_grad(h_k)</code> after one backward of the real "
          "<code>cr_rnn_forward_ex</code> with <code>retain_step_grads</code> "
          "(no step is re-run).</p>\n",
          fl->T, fl->H, fl->lr, fl->B, fl->steps);
  picture(f, rep, BT_PIC_FLOW, "gradient flow per time step", "gnuplot");
  fprintf(f,
          "<table><tr><th>cell</th><th>mse at init</th><th>mse trained</th>"
          "<th>||dL/dh<sub>0</sub>|| / ||dL/dh<sub>%d</sub>|| at init</th><th>trained</th></tr>\n",
          fl->T - 1);
  for (int c = 0; c < BT_N_CELLS; c++)
    fprintf(f, "<tr><th>%s</th><td>%.4f</td><td>%.4f</td><td>%.1e</td><td>%.1e</td></tr>\n",
            fl->cells[c], fl->loss[c][0], fl->loss[c][1], ratio(fl->norm[c][0], fl->T),
            ratio(fl->norm[c][1], fl->T));
  fprintf(f, "</table>\n<p><b>What it shows.</b> At initialisation (dashed) every cell's "
             "gradient falls geometrically going back in time: the first steps receive "
             "almost nothing. Training changes the picture for the gated cells: an LSTM's "
             "cell state and a GRU's update gate are additive paths through time, and once "
             "the model has learned to keep the marked value the gradient reaches step 0 "
             "nearly undiminished (solid) and the mse falls far below 1/12. The tanh RNN has "
             "no such path; its gradient still vanishes and it stays at the mean.</p>\n");
  code(f, "the loss on a batch, asking for the step states", fl->at_retain);
  code(f, "every step's state kept, its gradient retained", fl->at_states);
  code(f, "dL/dh_k, read after backward", fl->at_read);
  fprintf(f,
          "<h3>Exploding gradients, and clipping</h3>\n"
          "<p>The same tanh RNN with its recurrent weight W<sub>hh</sub> multiplied by %g: "
          "now the Jacobians diag(1 &minus; h<sup>2</sup>) W<sub>hh</sub> stretch more than "
          "they shrink, and ||&part;L/&part;h<sub>k</sub>|| <em>grows</em> going back "
          "(%.1f times from k = %d to k = 0, where the unscaled RNN's shrinks %.0e "
          "times).</p>\n",
          e->scale, ratio(e->norm[1], e->T), e->T - 1, 1 / ratio(e->norm[0], e->T));
  picture(f, rep, BT_PIC_EXPLODE, "exploding gradient flow", "gnuplot");
  double worst = 0;
  for (int s = 0; s < e->steps; s++)
    worst = fmax(worst, e->log[0].loss[s]);
  fprintf(f,
          "<p>Trained with plain SGD (lr %g, %d steps), the same run twice: without "
          "clipping and with <code>cr_clip_grad_norm</code> (max norm %g). Clipping does "
          "not change the gradient backward computes (in both runs the lower panel shows "
          "its norm before clipping); it rescales it before the update, so no single step moves "
          "the weights by more than lr &times; %g. "
          "Without it the loss reaches %.1e (final %.3g) and the network saturates "
          "(after training its ||&part;L/&part;h<sub>0</sub>|| is %.1e: every tanh is at "
          "&plusmn;1, so nothing flows); with it the loss ends at %.3g.</p>\n",
          e->lr, e->steps, e->clip, e->clip, worst, e->loss[2], e->norm[2][0], e->loss[3]);
  picture(f, rep, BT_PIC_CLIP, "training with and without clipping", "gnuplot");
  code(f, "the gradient norm, measured and clipped", e->at_clip);
}

static void section_graph(FILE *f, const bt_report *rep) {
  const bt_graph_result *g = &rep->graph;
  fprintf(f,
          "<h2>3. The unrolled graph, drawn</h2>\n"
          "<p>The graph <code>cr_backward</code> walks for an LSTM (hidden %d) unrolled over "
          "T = %d steps with the loss at the last step, written by "
          "<code>cr_graph_dot_ex</code> and rendered by Graphviz. Boxes are ops (name, "
          "result shape, and the result's name: <code>h_1</code>, <code>c_1</code>, "
          "<code>y</code>); ellipses are leaves: the parameters with their PyTorch names "
          "(<code>weight_hh_l0</code>, ...) in orange, drawn once each, and the input "
          "<code>x</code>, the target and the initial states. Arrows point the way values flow "
          "forward; backward runs them in "
          "reverse.</p>\n",
          g->H, g->T);
  picture(f, rep, BT_PIC_GRAPH, "the unrolled LSTM graph", "dot");
  if (rep->drawn[BT_PIC_GRAPH])
    fprintf(f, "<p class=files>Also as <a href=\"graph.svg\">graph.svg</a>; the source is "
               "<a href=\"graph.dot\">graph.dot</a>.</p>\n");
  fprintf(f,
          "<p><b>What it shows.</b> Each shaded box below the loss is one time step (%d, "
          "%d and %d ops); the %d ops outside them are done once for all steps, among "
          "them the input projections x<sub>t</sub> W<sub>ih</sub><sup>T</sup> + b of "
          "every step in one product, and the transposed copy of <code>weight_hh_l0</code> that "
          "every step's "
          "<code>addmm</code> reads. That copy has an edge into each step: that is the "
          "weight sharing, and why backward adds one gradient contribution per step "
          "(the sum of section 1). An op is in step k because it was made while the layer "
          "ran step k: the layer records the scope \"step k\" with each op of the cell's "
          "step (<code>cr_set_scope</code>, read back with <code>cr_scope_of</code>), and "
          "<code>cr_graph_dot</code> draws a cluster per scope.</p>\n",
          g->ops_per_step[0], g->ops_per_step[1], g->ops_per_step[2], g->shared_ops);
  code(f, "the forward pass that is drawn", g->at_forward);
  code(f, "the dot file, with a cluster per step", g->at_dot);
}

static void section_anomaly(FILE *f, const bt_report *rep) {
  const bt_anomaly_result *a = &rep->an;
  int n = a->log.done; /* the loss's growth per step over the last four */
  double growth = n >= 5 ? pow(a->log.loss[n - 1] / a->log.loss[n - 5], 0.25) : NAN;
  fprintf(f,
          "<h2>4. Anomaly, traced</h2>\n"
          "<p>A run that diverges: the tanh RNN in float32 trained with SGD at lr %g, far "
          "too large, in anomaly mode (<code>cr_set_detect_anomaly</code>). Every update "
          "overshoots, the loss grows about %.0e times per step, and at step %d "
          "a value overflows. Without anomaly mode the loss would read inf, then nan, and "
          "training would go on; with it the first op whose result or gradient is not "
          "finite stops the pass and says where:</p>\n<pre class=\"msg\">",
          a->lr, growth, a->log.stopped_at);
  esc(f, a->log.message);
  fprintf(f, "</pre>\n");
  picture(f, rep, BT_PIC_ANOMALY, "the diverging run", "gnuplot");
  fprintf(f,
          "<p><b>What it shows.</b> The loss of each training step until the stop. The "
          "op named is <code>%s</code>: the head's output <code>y</code> had grown so "
          "large that its square overflowed float32.</p>\n",
          a->op);
  code(f, "anomaly mode switched on", a->at_switch);
  code(f, "the forward and backward it stopped", a->at_stop);
}

int bt_page(const bt_report *rep) {
  char path[4200];
  snprintf(path, sizeof path, "%s/index.html", rep->dir);
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "bptt-teach: cannot write %s\n", path);
    return 1;
  }
  fprintf(f,
          "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n"
          "<title>Seeing BPTT: backpropagation through time in chainrule</title>\n"
          "<style>%s</style></head><body>\n"
          "<h1>Seeing BPTT: backpropagation through time, made visible</h1>\n"
          "<p>Recurrent layers in chainrule are compositions of primitive ops, so "
          "backpropagation through time is the chain rule applied to the unrolled graph. "
          "This page, written by <code>bptt-teach --out</code> in %.1f s, shows it four "
          "ways. Every picture has its numbers beside it as CSV, and each section names "
          "the lines of source that computed it.</p>\n",
          style, rep->seconds);
  if (rep->quick)
    fprintf(f, "<p class=missing>Made with <code>--quick</code>: the models are trained for a "
               "tenth of the steps, so the trained curves do not yet show what the text "
               "describes. Run without it for the lesson.</p>\n");
  if (!rep->have_gnuplot || !rep->have_dot)
    fprintf(f,
            "<p class=missing>Missing on this machine: %s%s%s. The data files are all "
            "written; the pictures those tools draw are not.</p>\n",
            rep->have_gnuplot ? "" : "gnuplot", !rep->have_gnuplot && !rep->have_dot ? ", " : "",
            rep->have_dot ? "" : "dot (Graphviz)");
  section_sum(f, rep);
  section_flow(f, rep);
  section_graph(f, rep);
  section_anomaly(f, rep);
  fprintf(f, "<h2>5. From the picture to the source</h2>\n<p>The program is "
             "<code>examples/bptt_teach/</code>, one file per section: "
             "<code>double_sum.c</code> (1), <code>flow.c</code>, <code>model.c</code> and "
             "<code>train.c</code> (2), <code>graph.c</code> (3), <code>anomaly.c</code> (4); "
             "<code>plots.c</code> writes the CSV and gnuplot files, <code>page.c</code> this "
             "page. A shorter worked example to start from is "
             "<code>examples/course_cell.c</code>: define a cell, unroll it, gradcheck it, "
             "look at its gradient flow.</p>\n</body></html>\n");
  return fclose(f) != 0;
}
