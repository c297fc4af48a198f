/* graph.c — the unrolled graph of a 3-step LSTM, one cluster per time step.
 *
 * Which time step made an op?  The recurrent layer records the scope
 * "step k" with every op of the cell's k-th step (cr_set_scope, read back
 * with cr_scope_of), and the model the scope "loss (after the last step)"
 * with the ops after the layer; cr_graph_dot_ex draws one cluster per
 * label.  Ops outside every scope are done once for all steps (the input
 * projection of all steps, the transposed W_hh).  The weights are leaves:
 * drawn once, outside the clusters, with an edge to every op that reads
 * them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bptt_teach.h"

enum { T_G = 3, H_G = 3 };

typedef struct labels {
  char step[T_G][32];
  bt_graph_result *r;
  bool count; /* pass 1: count the ops per step */
} labels;

/* the cluster of the op that made t: "time step t = k" for the scope
 * "step k", the loss's own scope as it is, none outside scopes */
static const char *cluster(const cr_tensor *t, void *user) {
  labels *l = user;
  const char *s = cr_scope_of(t);
  int k = -1;
  if (s && sscanf(s, "step %d", &k) == 1 && k >= 0 && k < T_G) {
    if (l->count)
      l->r->ops_per_step[k]++;
    s = l->step[k];
  } else if (l->count && !s) {
    l->r->shared_ops++;
  }
  if (l->count)
    l->r->n_ops++;
  return s;
}

/* does line[0..n) contain word? */
static bool contains(const char *line, size_t n, const char *word) {
  size_t w = strlen(word);
  for (size_t i = 0; i + w <= n; i++)
    if (!memcmp(line + i, word, w))
      return true;
  return false;
}

/* The library's dot text with colours: clusters shaded, parameters (leaves
 * with requires_grad) filled. */
static void restyle(const char *text, FILE *out) {
  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    size_t n = end ? (size_t)(end - line) : strlen(line);
    const char *leaf = strstr(line, "shape=ellipse");
    if (!strncmp(line, "digraph", 7)) {
      fprintf(out, "%.*s\n  ranksep=0.25;\n  nodesep=0.15;\n  fontname=\"sans-serif\";\n", (int)n,
              line);
    } else if (!strncmp(line, "  style=dashed;", n > 15 ? 15 : n)) {
      fputs("  style=\"rounded,filled\";\n  fillcolor=\"#eef3fb\";\n  color=\"#7d95c4\";\n", out);
    } else if (leaf && leaf < line + n && contains(line, n, "requires_grad")) {
      fprintf(out, "%.*sshape=ellipse,style=filled,fillcolor=\"#ffe3b3\"%.*s\n", (int)(leaf - line),
              line, (int)(line + n - leaf - 13), leaf + 13);
    } else {
      fprintf(out, "%.*s\n", (int)n, line);
    }
    line += n + (end != NULL);
  }
}

int bt_graph(const char *dir, bt_graph_result *r) {
  memset(r, 0, sizeof *r);
  r->T = T_G, r->H = H_G;
  cr_ctx *ctx = cr_ctx_new();
  /* every op of the cell in the picture: the LSTM step's gates are fused
   * chains, which this draws as their ops (the same values either way) */
  cr_set_fusion(ctx, false);
  bt_model m;
  labels l = {.r = r, .count = true};
  cr_rng *rng = cr_rng_new(5);
  cr_tensor *x, *target, *h[T_G];
  char *text = NULL;
  size_t len = 0;
  int rc = 1;
  if (!rng || bt_model_init(&m, ctx, &cr_cell_lstm, H_G, CR_F64, 5, 1.0))
    goto done;
  if (bt_adding_batch(ctx, rng, CR_F64, T_G, 1, &x, &target))
    goto model_done;
  cr_set_name(x, "x");
  cr_set_name(target, "target");
  cr_tensor *init[2] = {cr_rand_uniform(ctx, rng, CR_F64, CR_SHAPE(1, 1, H_G), -1, 1),
                        cr_rand_uniform(ctx, rng, CR_F64, CR_SHAPE(1, 1, H_G), -1, 1)};
  cr_set_name(init[0], "h_init");
  cr_set_name(init[1], "c_init");
  r->at_forward = BT_NEXT;
  cr_tensor *L = bt_model_loss(ctx, &m, x, target, init, h);
  FILE *mem = L ? open_memstream(&text, &len) : NULL;
  if (!mem)
    goto model_done;
  for (int k = 0; k < T_G; k++)
    snprintf(l.step[k], sizeof l.step[k], "time step t = %d", k);
  cr_graph_dot_opts o = {cluster, &l, "chainrule: an LSTM unrolled over 3 steps, loss at the last",
                         false};
  r->at_dot = BT_NEXT;
  cr_graph_dot_ex(mem, L, &o);
  fclose(mem);
  for (const char *s = text; (s = strstr(s, "subgraph cluster_")); s++)
    r->library_blocks++;
  snprintf(r->dot_path, sizeof r->dot_path, "%s/graph.dot", dir);
  FILE *f = fopen(r->dot_path, "w");
  if (!f) {
    snprintf(r->error, sizeof r->error, "cannot write %.400s", r->dot_path);
    goto model_done;
  }
  restyle(text, f);
  rc = fclose(f) != 0;
model_done:
  bt_model_free(&m);
done:
  if (rc && !r->error[0])
    snprintf(r->error, sizeof r->error, "graph: %s", cr_ctx_error(ctx));
  free(text);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return rc;
}
