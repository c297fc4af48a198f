/* module_print.c — a module tree as PyTorch's repr shows it, then its
 * state dict as a table (name, shape, dtype, frozen or buffer) and the
 * totals. */
#include "module_impl.h"

/* "Type(extra)" for a leaf, "Type(\n  (child): ...\n)" otherwise. */
static void repr(FILE *f, const cr_module *m, int depth) {
  fprintf(f, "%s(%s", m->type, m->extra);
  if (m->n_kids) {
    fputc('\n', f);
    for (int i = 0; i < m->n_kids; i++) {
      fprintf(f, "%*s(%s): ", 2 * (depth + 1), "", m->kids[i]->name);
      repr(f, m->kids[i], depth + 1);
      fputc('\n', f);
    }
    fprintf(f, "%*s", 2 * depth, "");
  }
  fputc(')', f);
}

/* The state dict, walked as the flattened list orders it (no allocation,
 * so a const module prints): own parameters, own buffers, children. */
typedef struct row_fn {
  void (*fn)(struct row_fn *r, const char *prefix, const cr__mod_tensor *e);
  FILE *f;
  int width;         /* of the name column */
  int64_t n_tensors; /* rows so far */
} row_fn;

static void walk(row_fn *r, const cr_module *m, const char *prefix) {
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < m->n_tensors; i++)
      if (m->tensors[i].buffer == (pass == 1))
        r->fn(r, prefix, &m->tensors[i]);
  for (int i = 0; i < m->n_kids; i++) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s%s.", prefix, m->kids[i]->name);
    walk(r, m->kids[i], sub);
  }
}

static void measure(row_fn *r, const char *prefix, const cr__mod_tensor *e) {
  int w = (int)(strlen(prefix) + strlen(e->name));
  r->width = w > r->width ? w : r->width;
  r->n_tensors++;
}

static void row(row_fn *r, const char *prefix, const cr__mod_tensor *e) {
  char name[600], shape[96];
  snprintf(name, sizeof name, "%s%s", prefix, e->name);
  cr_shape_str(shape, sizeof shape, cr_ndim(e->t), cr_shape(e->t));
  fprintf(r->f, "  %-*s  %-12s %s%s\n", r->width, name, shape, cr_dtype_name(cr_dtype_of(e->t)),
          e->buffer                ? "  (buffer)"
          : cr_requires_grad(e->t) ? ""
                                   : "  (frozen)");
}

void cr_module_print(FILE *f, const cr_module *m) {
  if (!f)
    return;
  if (!m) {
    fputs("module(NULL)\n", f);
    return;
  }
  repr(f, m, 0);
  fputc('\n', f);
  row_fn r = {measure, f, 0, 0};
  walk(&r, m, "");
  r.fn = row;
  walk(&r, m, "");
  int64_t all = cr_module_num_params(m), trainable = cr_module_num_trainable(m);
  fprintf(f, "%lld parameters (%lld trainable) in %lld tensors\n", (long long)all,
          (long long)trainable, (long long)r.n_tensors);
}
