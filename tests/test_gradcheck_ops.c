/* Every op in the registry is gradient-checked (float64 central
 * differences, tolerances in gc_rows.h) on random non-degenerate inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "gc_rows.h"
#include "registry.h"

typedef struct {
  const gc_row *rows;
  int n;
} table;

static table tables[] = {
    {gc_rows_elementwise, 0}, {gc_rows_matmul, 0}, {gc_rows_reduce, 0},
    {gc_rows_shape, 0},       {gc_rows_softmax_loss, 0},
};
#define N_TABLES (int)(sizeof tables / sizeof tables[0])

static void fill_counts(void) {
  tables[0].n = gc_rows_elementwise_count;
  tables[1].n = gc_rows_matmul_count;
  tables[2].n = gc_rows_reduce_count;
  tables[3].n = gc_rows_shape_count;
  tables[4].n = gc_rows_softmax_loss_count;
}

static bool run_row(const gc_row *row, cr_rng *rng, cr_gradcheck_report *rep) {
  cr_ctx *ctx = cr_ctx_new();
  cr_tensor *in[GC_MAX_IN] = {0};
  for (int k = 0; k < row->n_inputs; k++) {
    in[k] = cr_tensor_new(ctx, CR_F64, row->ndim[k], row->shape[k]);
    assert_non_null(in[k]);
    for (int64_t i = 0; i < cr_numel(in[k]); i++) {
      double v;
      do
        v = row->lo + (row->hi - row->lo) * cr_rng_uniform(rng);
      while (fabs(v) < row->min_abs);
      cr_set_flat(in[k], i, v);
    }
  }
  cr_gradcheck_opts o;
  cr_gradcheck_default_opts(&o);
  o.atol = row->atol > 0 ? row->atol : GC_ATOL;
  o.rtol = row->rtol > 0 ? row->rtol : GC_RTOL;
  bool ok = cr_gradcheck(row->fn, in, row->n_inputs, NULL, &o, rep);
  for (int k = 0; k < row->n_inputs; k++)
    cr_tensor_free(in[k]);
  cr_ctx_free(ctx);
  return ok;
}

static void test_every_row_passes(void **state) {
  (void)state;
  cr_rng *rng = cr_rng_new(20261123);
  int failed = 0, total = 0;
  for (int t = 0; t < N_TABLES; t++) {
    for (int r = 0; r < tables[t].n; r++) {
      const gc_row *row = &tables[t].rows[r];
      cr_gradcheck_report rep;
      bool ok = run_row(row, rng, &rep);
      total++;
      printf("%-6s %-14s %-52s max abs %.2e  max rel %.2e  (%lld checked)\n", ok ? "ok" : "FAIL",
             row->op, row->label, rep.max_abs_err, rep.max_rel_err, (long long)rep.n_checked);
      if (!ok) {
        printf("       %s\n", rep.message);
        failed++;
      }
      if (ok && rep.n_checked == 0) {
        printf("       no element was compared\n");
        failed++;
      }
    }
  }
  cr_rng_free(rng);
  printf("%d of %d gradcheck rows passed\n", total - failed, total);
  assert_int_equal(failed, 0);
}

static void test_every_op_has_a_row(void **state) {
  (void)state;
  int missing = 0;
  for (int i = 0; i < cr__op_count(); i++) {
    const char *name = cr__op_at(i)->name;
    bool found = false;
    for (int t = 0; t < N_TABLES && !found; t++)
      for (int r = 0; r < tables[t].n && !found; r++)
        found = strcmp(tables[t].rows[r].op, name) == 0;
    if (!found) {
      printf("op '%s' has no gradcheck row\n", name);
      missing++;
    }
  }
  /* and every row names a real op */
  for (int t = 0; t < N_TABLES; t++)
    for (int r = 0; r < tables[t].n; r++) {
      bool real = false;
      for (int i = 0; i < cr__op_count() && !real; i++)
        real = strcmp(tables[t].rows[r].op, cr__op_at(i)->name) == 0;
      if (!real) {
        printf("row '%s' names no registered op\n", tables[t].rows[r].op);
        missing++;
      }
    }
  assert_int_equal(missing, 0);
}

int main(void) {
  fill_counts();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_op_has_a_row),
      cmocka_unit_test(test_every_row_passes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
