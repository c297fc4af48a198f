/* gc_rows.h — one row per gradient-check case of an op.
 *
 * Every op in ops/registry.c must appear as `op` in at least one row (a test
 * fails otherwise).  Inputs are drawn uniformly from [lo, hi] in float64,
 * redrawn while |x| < min_abs (to stay away from kinks such as relu at 0).
 * `fn` builds the op from the inputs; rows for broadcast and strided
 * (transposed, sliced) inputs build those views inside fn.
 *
 * Every row is run three ways (tests/test_gradcheck_ops.c): gradcheck (the
 * kernel VJPs against finite differences), the graph VJPs against the
 * kernel VJPs, and gradgradcheck (the graph VJPs' own derivatives against
 * finite differences of the first derivative).  Every op needs a row of
 * each kind. */
#ifndef GC_ROWS_H
#define GC_ROWS_H

#include "chainrule.h"

#define GC_MAX_IN 4

typedef struct gc_row {
  const char *op;    /* registry name covered */
  const char *label; /* what is special about this case */
  int n_inputs;
  int ndim[GC_MAX_IN];
  int64_t shape[GC_MAX_IN][CR_MAX_DIMS];
  double lo, hi, min_abs;
  cr_gradcheck_fn fn;
  /* tolerances; 0 means the defaults below */
  double atol, rtol;
  /* NULL: the row is also gradgradchecked; else why it is not */
  const char *no_gg;
  /* finite-difference step; 0 means the default 1e-6 */
  double eps;
} gc_row;

/* Default tolerances for op rows (float64 central differences, eps 1e-6):
 * truncation error O(eps^2) ~ 1e-12 and rounding ~ 1e-16/eps ~ 1e-10, so
 * 1e-7 absolute plus 1e-6 relative leaves a wide margin yet catches any
 * wrong formula. */
#define GC_ATOL 1e-7
#define GC_RTOL 1e-6

/* Row tables, one per op family (each file ends its table with the count). */
#define GC_TABLE(name)                                                                             \
  extern const gc_row name[];                                                                      \
  extern const int name##_count;
GC_TABLE(gc_rows_elementwise)
GC_TABLE(gc_rows_matmul)
GC_TABLE(gc_rows_reduce)
GC_TABLE(gc_rows_shape)
GC_TABLE(gc_rows_softmax_loss)
GC_TABLE(gc_rows_graph)
GC_TABLE(gc_rows_select)
GC_TABLE(gc_rows_stats)
GC_TABLE(gc_rows_loss)
#undef GC_TABLE

#define GC_COUNT(name) const int name##_count = (int)(sizeof name / sizeof name[0])

#endif
