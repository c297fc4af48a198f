/* graph_dot.c — the recorded graph in Graphviz's dot language (teaching):
 * a box per op (its name, its result's shape and name), an ellipse per
 * leaf (its name, shape, requires_grad), arrows in the direction values
 * flow.  Ops may be grouped in clusters (say one per time step) while the
 * leaves they share (the weights) stay outside, drawn once, with an arrow
 * to every step that uses them. */
#include "op.h"

cr_node **cr__topo_order(cr_ctx *ctx, int n_roots, cr_tensor *const *roots, size_t *count);

/* s with the characters dot treats specially in a label escaped */
static void put_label_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fputc('\\', f);
    fputc(*s, f);
  }
}

static void put_op(FILE *f, const cr_node *nd) {
  fprintf(f, "  n%p [shape=box,style=rounded,label=\"", (const void *)nd);
  put_label_text(f, nd->name);
  fprintf(f, "\\n%s", cr__shape_only(nd->out));
  if (nd->out->name[0]) {
    fputs("\\n", f);
    put_label_text(f, nd->out->name);
  }
  fputs("\"];\n", f);
}

void cr_graph_dot_ex(FILE *f, const cr_tensor *t, const cr_graph_dot_opts *o) {
  fprintf(f, "digraph chainrule {\n  rankdir=BT;\n  node [fontname=\"monospace\"];\n");
  if (o && o->title) {
    fputs("  label=\"", f);
    put_label_text(f, o->title);
    fputs("\";\n  labelloc=t;\n", f);
  }
  if (t && t->magic == CR__TENSOR_MAGIC && t->node && t->ctx && t->epoch == t->ctx->epoch) {
    cr_ctx *ctx = t->ctx;
    size_t n = 0;
    cr_tensor *root = (cr_tensor *)t;
    cr_node **order = cr__topo_order(ctx, 1, &root, &n);
    /* the ops, one block per cluster label (in order of first appearance),
     * then those outside any cluster */
    const char **label = order ? cr__alloc(ctx, (n + 1) * sizeof *label) : NULL;
    for (size_t i = 0; label && i < n; i++)
      label[i] = o && o->cluster_of  ? o->cluster_of(order[i]->out, o->user)
                 : o && o->no_scopes ? NULL
                                     : order[i]->scope;
    int clusters = 0;
    for (size_t i = 0; label && i < n; i++) {
      if (!label[i])
        continue;
      bool first = true;
      for (size_t j = 0; j < i && first; j++)
        first = !(label[j] && strcmp(label[j], label[i]) == 0);
      if (!first)
        continue;
      fprintf(f, "  subgraph cluster_%d {\n  label=\"", clusters++);
      put_label_text(f, label[i]);
      fputs("\";\n  style=dashed;\n", f);
      for (size_t j = i; j < n; j++)
        if (label[j] && strcmp(label[j], label[i]) == 0)
          put_op(f, order[j]);
      fputs("  }\n", f);
    }
    for (size_t i = 0; order && i < n; i++)
      if (!label || !label[i])
        put_op(f, order[i]);
    /* leaves once each, then the edges */
    size_t edges = 0;
    for (size_t i = 0; order && i < n; i++)
      edges += (size_t)order[i]->n_in;
    const cr_tensor **drawn = cr__alloc(ctx, (edges + 1) * sizeof *drawn);
    size_t n_drawn = 0;
    for (size_t i = 0; order && drawn && i < n; i++) {
      const cr_node *nd = order[i];
      for (int k = 0; k < nd->n_in; k++) {
        cr_tensor *in = nd->in[k];
        if (in->node) {
          fprintf(f, "  n%p -> n%p;\n", (void *)in->node, (const void *)nd);
          continue;
        }
        bool seen = false;
        for (size_t j = 0; j < n_drawn && !seen; j++)
          seen = drawn[j] == in;
        if (!seen) {
          drawn[n_drawn++] = in;
          fprintf(f, "  t%p [shape=ellipse,label=\"", (void *)in);
          if (in->name[0]) {
            put_label_text(f, in->name);
            fputs("\\n", f);
          }
          fprintf(f, "%s%s\"];\n", cr__shape_only(in), in->requires_grad ? "\\nrequires_grad" : "");
        }
        fprintf(f, "  t%p -> n%p;\n", (void *)in, (const void *)nd);
      }
    }
  }
  fprintf(f, "}\n");
}

void cr_graph_dot(FILE *f, const cr_tensor *t) { cr_graph_dot_ex(f, t, NULL); }
