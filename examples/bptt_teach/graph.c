/* graph.c — the unrolled graph of a 3-step LSTM, one cluster per time step.
 *
 * Which time step does an op belong to?  The last step whose input it
 * reads: its gradient with respect to x [T,B,I] is zero after row k.  So
 * each op is classified by asking the engine itself (cr_autograd_grad,
 * seeded with ones) which rows of x and which states it depends on:
 *   - it depends on h_{T-1}, the last state:     the loss, after the steps
 *   - the latest row of x it reads is k, and k = 0, or it reads x_k only,
 *     or it depends on h_{k-1}:                    time step k
 *   - otherwise (it reads every row but no state: the input projection of
 *     all steps at once; or no row at all: W_hh^T): shared, no cluster.
 * The weights are leaves: cr_graph_dot_ex draws each once, outside the
 * clusters, with an edge to every op that reads it.
 *
 * Workaround: cr_graph_dot_ex opens a new cluster block whenever the
 * cluster changes between consecutive ops in its (depth-first) order, so
 * a step whose ops are visited in two runs gets two boxes with the same
 * label.  merge_clusters below rewrites the dot text with one block per
 * label. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bptt_teach.h"

enum { T_G = 3, H_G = 3, MAX_OPS = 512 };

typedef struct classify {
  const cr_tensor *ops[MAX_OPS]; /* every op result in the graph */
  int step[MAX_OPS];             /* -1 shared, 0..T-1, T: loss */
  int n;
  char labels[T_G + 1][32];
} classify;

/* pass 1: collect the op results (cr_graph_dot_ex calls this for each) */
static const char *record(const cr_tensor *t, void *user) {
  classify *c = user;
  if (c->n < MAX_OPS)
    c->ops[c->n++] = t;
  return NULL;
}

/* pass 2: the label of t's step */
static const char *lookup(const cr_tensor *t, void *user) {
  classify *c = user;
  for (int i = 0; i < c->n; i++)
    if (c->ops[i] == t)
      return c->step[i] < 0 ? NULL : c->labels[c->step[i]];
  return NULL;
}

/* the step of t, by what it depends on (see the top of the file) */
static int step_of(cr_ctx *ctx, cr_tensor *t, cr_tensor *x, cr_tensor *const *h, int *err) {
  cr_tensor *in[1 + T_G], *g[1 + T_G];
  in[0] = x;
  for (int k = 0; k < T_G; k++)
    in[1 + k] = h[k];
  cr_tensor *seed = cr_ones(ctx, cr_dtype_of(t), cr_ndim(t), cr_shape(t));
  if (!seed || cr_autograd_grad(ctx, 1, &t, &seed, 1 + T_G, in, NULL, g)) {
    *err = 1;
    return -1;
  }
  if (t != h[T_G - 1] && g[T_G]) /* depends on the last state: the loss */
    return T_G;
  int last = -1, rows = 0;
  int64_t per_row = cr_numel(x) / T_G;
  for (int k = 0; g[0] && k < T_G; k++) {
    bool reads = false;
    for (int64_t i = 0; i < per_row && !reads; i++)
      reads = cr_get_flat(g[0], k * per_row + i) != 0;
    if (reads)
      last = k, rows++;
  }
  if (last < 0)
    return -1;
  if (last == 0 || rows == 1 || g[last]) /* g[last] = dt/dh_{last-1} */
    return last;
  return -1;
}

/* Rewrite dot text: one cluster block per label, and colours for the
 * parameters (leaves with requires_grad). */
static void merge_clusters(const char *text, FILE *out) {
  char *copy = strdup(text);
  if (!copy)
    return;
  char *lines[4096];
  int n = 0;
  for (char *s = strtok(copy, "\n"); s && n < 4096; s = strtok(NULL, "\n"))
    lines[n++] = s;
  if (n < 2) { /* not the library's format: leave it as it is */
    fputs(text, out);
    free(copy);
    return;
  }
  /* owner[i]: for a line inside a cluster block, the index of the first
   * label line with that block's label; -1 outside clusters; -2 for the
   * block structure itself (dropped and written anew) */
  int owner[4096];
  bool first_label[4096] = {false};
  int cur = -1;
  for (int i = 1; i < n - 1; i++) {
    owner[i] = -2;
    if (!strncmp(lines[i], "  subgraph cluster_", 19) && i + 2 < n - 1) {
      cur = i + 1; /* the label line; an earlier block may have the same */
      for (int j = 1; j < i; j++)
        if (first_label[j] && !strcmp(lines[j], lines[i + 1])) {
          cur = j;
          break;
        }
      first_label[i + 1] = cur == i + 1;
      owner[i + 1] = owner[i + 2] = -2;
      i += 2; /* the label and style lines */
    } else if (cur >= 0 && !strcmp(lines[i], "  }")) {
      cur = -1;
    } else {
      owner[i] = cur;
    }
  }
  fprintf(out, "%s\n  ranksep=0.25;\n  nodesep=0.15;\n  fontname=\"sans-serif\";\n", lines[0]);
  for (int i = 1; i < n - 1; i++) /* graph attributes and everything outside clusters */
    if (owner[i] == -1) {
      const char *leaf = strstr(lines[i], "shape=ellipse");
      if (leaf && strstr(lines[i], "requires_grad"))
        fprintf(out, "%.*sshape=ellipse,style=filled,fillcolor=\"#ffe3b3\"%s\n",
                (int)(leaf - lines[i]), lines[i], leaf + strlen("shape=ellipse"));
      else
        fprintf(out, "%s\n", lines[i]);
    }
  int k = 0;
  for (int i = 1; i < n - 1; i++)
    if (first_label[i]) {
      fprintf(out,
              "  subgraph cluster_%d {\n%s\n  style=\"rounded,filled\";\n"
              "  fillcolor=\"#eef3fb\";\n  color=\"#7d95c4\";\n",
              k++, lines[i]);
      for (int j = 1; j < n - 1; j++)
        if (owner[j] == i)
          fprintf(out, "%s\n", lines[j]);
      fputs("  }\n", out);
    }
  fputs("}\n", out);
  free(copy);
}

int bt_graph(const char *dir, bt_graph_result *r) {
  memset(r, 0, sizeof *r);
  r->T = T_G, r->H = H_G;
  cr_ctx *ctx = cr_ctx_new();
  bt_model m;
  classify *c = calloc(1, sizeof *c);
  cr_rng *rng = cr_rng_new(5);
  cr_tensor *x, *target, *h[T_G];
  char *text = NULL;
  size_t len = 0;
  int rc = 1;
  if (!c || !rng || bt_model_init(&m, ctx, &cr_cell_lstm, H_G, CR_F64, 5, 1.0))
    goto done;
  if (bt_adding_batch(ctx, rng, CR_F64, T_G, 1, &x, &target))
    goto model_done;
  cr_set_name(x, "x");
  cr_set_name(target, "target");
  cr_set_requires_grad(x, true); /* only so that dL/dx exists for the classification */
  /* random initial states: with zeros, f * c_{-1} would be 0 whatever x is,
   * and the classification by dependence on x could not place it */
  cr_tensor *init[2] = {cr_rand_uniform(ctx, rng, CR_F64, CR_SHAPE(1, 1, H_G), -1, 1),
                        cr_rand_uniform(ctx, rng, CR_F64, CR_SHAPE(1, 1, H_G), -1, 1)};
  cr_set_name(init[0], "h_init");
  cr_set_name(init[1], "c_init");
  r->at_forward = BT_NEXT;
  cr_tensor *L = bt_model_loss(ctx, &m, x, target, init, h);
  FILE *null = fopen("/dev/null", "w");
  if (!L || !null) {
    if (null)
      fclose(null);
    goto model_done;
  }
  cr_graph_dot_opts o = {record, c, NULL};
  cr_graph_dot_ex(null, L, &o); /* pass 1: the list of ops */
  fclose(null);
  for (int k = 0; k < T_G; k++)
    snprintf(c->labels[k], sizeof c->labels[k], "time step t = %d", k);
  snprintf(c->labels[T_G], sizeof c->labels[T_G], "loss (after the last step)");
  int err = 0;
  for (int i = 0; i < c->n && !err; i++) {
    c->step[i] = step_of(ctx, (cr_tensor *)c->ops[i], x, h, &err);
    if (c->step[i] >= 0 && c->step[i] < T_G)
      r->ops_per_step[c->step[i]]++;
    else if (c->step[i] < 0)
      r->shared_ops++;
  }
  if (err)
    goto model_done;
  r->n_ops = c->n;
  cr_set_requires_grad(x, false); /* draw x as the plain input it is */
  FILE *mem = open_memstream(&text, &len);
  if (!mem)
    goto model_done;
  o = (cr_graph_dot_opts){lookup, c, "chainrule: an LSTM unrolled over 3 steps, loss at the last"};
  r->at_dot = BT_NEXT;
  cr_graph_dot_ex(mem, L, &o); /* pass 2: with the clusters */
  fclose(mem);
  /* count what the library wrote, then merge its cluster blocks */
  for (const char *s = text; (s = strstr(s, "subgraph cluster_")); s++)
    r->library_blocks++;
  snprintf(r->dot_path, sizeof r->dot_path, "%s/graph.dot", dir);
  FILE *f = fopen(r->dot_path, "w");
  if (!f) {
    snprintf(r->error, sizeof r->error, "cannot write %.400s", r->dot_path);
    goto model_done;
  }
  merge_clusters(text, f);
  rc = fclose(f) != 0;
model_done:
  bt_model_free(&m);
done:
  if (rc && !r->error[0])
    snprintf(r->error, sizeof r->error, "graph: %s", cr_ctx_error(ctx));
  free(text);
  free(c);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return rc;
}
