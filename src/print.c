/* print.c — human-readable tensors for debugging and teaching.
 * Long dims show their first and last 3 entries around "...". */
#include "op.h"

#define EDGE 3  /* entries kept at each end of an elided dim */
#define LIMIT 8 /* dims longer than this are elided */

static void print_rec(FILE *f, const cr_tensor *t, int d, int64_t base, int indent) {
  int64_t n = t->shape[d];
  bool elide = n > LIMIT;
  fputc('[', f);
  for (int64_t i = 0; i < n; i++) {
    if (elide && i == EDGE) {
      fputs(d == t->ndim - 1 ? "..., " : "...,\n", f);
      if (d != t->ndim - 1)
        fprintf(f, "%*s", indent + 1, "");
      i = n - EDGE - 1;
      continue;
    }
    int64_t off = base + i * t->stride[d];
    if (d == t->ndim - 1) {
      if (t->dtype == CR_I64)
        fprintf(f, "%lld", (long long)((const int64_t *)t->data)[off]);
      else
        fprintf(f, "%.6g",
                t->dtype == CR_F32 ? (double)((const float *)t->data)[off]
                                   : ((const double *)t->data)[off]);
      if (i + 1 < n)
        fputs(", ", f);
    } else {
      print_rec(f, t, d + 1, off, indent + 1);
      if (i + 1 < n)
        fprintf(f, ",\n%*s", indent + 1, "");
    }
  }
  fputc(']', f);
}

void cr_print(FILE *f, const cr_tensor *t) {
  if (!t || t->magic != CR__TENSOR_MAGIC) {
    fputs("tensor(NULL)\n", f);
    return;
  }
  fputs("tensor(", f);
  if (t->released)
    fputs("released", f);
  else
    print_rec(f, t, 0, 0, 7);
  fprintf(f, ", shape=%s, dtype=%s", cr__shape_only(t), cr_dtype_name(t->dtype));
  if (t->name[0])
    fprintf(f, ", name=%s", t->name);
  if (t->node)
    fprintf(f, ", grad_fn=%s", t->node->name);
  else if (t->requires_grad)
    fputs(", requires_grad", f);
  fputs(")\n", f);
}
