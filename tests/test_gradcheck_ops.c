/* Every op in the registry is checked three ways on random non-degenerate
 * inputs (tolerances in gc_rows.h):
 *   gradcheck      the kernel VJPs against float64 central differences;
 *   graph == kernel  the differentiable VJPs (vjp_graph, built of ops)
 *                    give the same gradients as the kernels;
 *   gradgradcheck  the derivatives of the differentiable VJPs (a backward
 *                    through the backward) against central differences of
 *                    the first derivative.
 * and a walk of the registry fails for any op without a row of each kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gc_rows.h"
#include "op.h"
#include "registry.h"

cr_node **cr__topo_order(cr_ctx *ctx, int n_roots, cr_tensor *const *roots, size_t *count);

typedef struct {
  const gc_row *rows;
  const int *n;
} table;

static const table tables[] = {
    {gc_rows_elementwise, &gc_rows_elementwise_count},
    {gc_rows_matmul, &gc_rows_matmul_count},
    {gc_rows_reduce, &gc_rows_reduce_count},
    {gc_rows_shape, &gc_rows_shape_count},
    {gc_rows_softmax_loss, &gc_rows_softmax_loss_count},
    {gc_rows_graph, &gc_rows_graph_count},
    {gc_rows_select, &gc_rows_select_count},
    {gc_rows_stats, &gc_rows_stats_count},
    {gc_rows_loss, &gc_rows_loss_count},
};
#define N_TABLES (int)(sizeof tables / sizeof tables[0])

/* The row's inputs: persistent f64, drawn from [lo, hi] away from kinks. */
static void make_inputs(cr_ctx *ctx, const gc_row *row, cr_rng *rng, cr_tensor **in) {
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
}

static void free_inputs(const gc_row *row, cr_tensor **in) {
  for (int k = 0; k < row->n_inputs; k++)
    cr_tensor_free(in[k]);
}

static bool run_check(const gc_row *row, cr_rng *rng, bool second, cr_gradcheck_report *rep) {
  cr_ctx *ctx = cr_ctx_new();
  cr_tensor *in[GC_MAX_IN] = {0};
  make_inputs(ctx, row, rng, in);
  cr_gradcheck_opts o;
  cr_gradcheck_default_opts(&o);
  o.atol = row->atol > 0 ? row->atol : GC_ATOL;
  o.rtol = row->rtol > 0 ? row->rtol : GC_RTOL;
  if (row->eps > 0)
    o.eps = row->eps;
  bool ok = second ? cr_gradgradcheck(row->fn, in, row->n_inputs, NULL, &o, rep)
                   : cr_gradcheck(row->fn, in, row->n_inputs, NULL, &o, rep);
  free_inputs(row, in);
  cr_ctx_free(ctx);
  return ok;
}

static void walk_rows(bool second) {
  cr_rng *rng = cr_rng_new(second ? 20261201 : 20261123);
  int failed = 0, total = 0;
  for (int t = 0; t < N_TABLES; t++) {
    for (int r = 0; r < *tables[t].n; r++) {
      const gc_row *row = &tables[t].rows[r];
      if (second && row->no_gg) {
        printf("skip   %-14s %-52s (%s)\n", row->op, row->label, row->no_gg);
        continue;
      }
      cr_gradcheck_report rep;
      bool ok = run_check(row, rng, second, &rep);
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
  printf("%d of %d %s rows passed\n", total - failed, total,
         second ? "gradgradcheck" : "gradcheck");
  assert_int_equal(failed, 0);
}

static void test_every_row_passes_gradcheck(void **state) {
  (void)state;
  walk_rows(false);
}

static void test_every_row_passes_gradgradcheck(void **state) {
  (void)state;
  walk_rows(true);
}

/* The graph VJPs and the kernel VJPs give the same gradients: backward
 * (kernels) against cr_autograd_grad (graph VJPs), seed random. */
static void test_graph_vjps_match_kernel_vjps(void **state) {
  (void)state;
  cr_rng *rng = cr_rng_new(7);
  int failed = 0, total = 0;
  double worst = 0;
  for (int t = 0; t < N_TABLES; t++) {
    for (int r = 0; r < *tables[t].n; r++) {
      const gc_row *row = &tables[t].rows[r];
      cr_ctx *ctx = cr_ctx_new();
      cr_tensor *in[GC_MAX_IN] = {0}, *graph[GC_MAX_IN] = {0};
      make_inputs(ctx, row, rng, in);
      for (int k = 0; k < row->n_inputs; k++)
        cr_set_requires_grad(in[k], true);
      cr_tensor *y = row->fn(ctx, in, row->n_inputs, NULL);
      assert_non_null(y);
      cr_tensor *seed = cr_rand_normal(ctx, rng, CR_F64, cr_ndim(y), cr_shape(y), 0, 1);
      cr_autograd_opts o = {.zeros_for_unused = true};
      assert_int_equal(cr_autograd_grad(ctx, 1, &y, &seed, row->n_inputs, in, &o, graph), CR_OK);
      assert_int_equal(cr_backward_seed(ctx, y, seed), CR_OK);
      double diff = 0;
      for (int k = 0; k < row->n_inputs; k++) {
        const cr_tensor *kern = cr_grad(in[k]);
        for (int64_t i = 0; i < cr_numel(in[k]); i++) {
          double a = kern ? cr_get_flat(kern, i) : 0, b = cr_get_flat(graph[k], i);
          diff = fmax(diff, fabs(a - b) / (1 + fabs(a)));
        }
      }
      total++;
      worst = fmax(worst, diff);
      if (!(diff <= 1e-12)) {
        printf("FAIL   %-14s %-52s graph vs kernel VJP: %.3e\n", row->op, row->label, diff);
        failed++;
      }
      free_inputs(row, in);
      cr_ctx_free(ctx);
    }
  }
  cr_rng_free(rng);
  printf("graph VJPs match kernel VJPs on %d of %d rows (worst relative difference %.2e)\n",
         total - failed, total, worst);
  assert_int_equal(failed, 0);
}

/* Is nd a view op (its result shares its input's memory)? */
static bool is_view(const cr_node *nd) {
  return nd->out->data >= nd->in[0]->data && nd->n_in == 1 &&
         (!strcmp(nd->name, "transpose") || !strcmp(nd->name, "permute") ||
          !strcmp(nd->name, "reshape") || !strcmp(nd->name, "slice"));
}

/* The VJPs read nothing outside their op's `reads` set: after the forward,
 * every op result that no VJP declares it reads is overwritten with NaN,
 * and the gradients must come out bit for bit as without the poison.
 * (Memory-efficient BPTT releases exactly those values.) */
static void test_vjps_read_only_what_they_declare(void **state) {
  (void)state;
  cr_rng *rng = cr_rng_new(11);
  int failed = 0, total = 0, poisoned = 0;
  for (int t = 0; t < N_TABLES; t++) {
    for (int r = 0; r < *tables[t].n; r++) {
      const gc_row *row = &tables[t].rows[r];
      for (int graph = 0; graph < 2; graph++) {
        cr_ctx *ctx = cr_ctx_new();
        cr_tensor *in[GC_MAX_IN] = {0}, *clean[GC_MAX_IN] = {0}, *got[GC_MAX_IN] = {0};
        make_inputs(ctx, row, rng, in);
        for (int k = 0; k < row->n_inputs; k++)
          cr_set_requires_grad(in[k], true);
        /* scaled, an op that reads nothing, so the row's own result can be
         * poisoned too */
        cr_tensor *y = cr_mul_scalar(ctx, row->fn(ctx, in, row->n_inputs, NULL), 1.7);
        assert_non_null(y);
        cr_tensor *seed = cr_rand_normal(ctx, rng, CR_F64, cr_ndim(y), cr_shape(y), 0, 1);
        cr_autograd_opts o = {.zeros_for_unused = true};
        /* the clean gradients, by the kernels (graph 0) or the graph VJPs (1) */
        if (graph) {
          assert_int_equal(cr_autograd_grad(ctx, 1, &y, &seed, row->n_inputs, in, &o, clean),
                           CR_OK);
        } else {
          assert_int_equal(cr_backward_seed(ctx, y, seed), CR_OK);
          for (int k = 0; k < row->n_inputs; k++)
            clean[k] = cr_persist(ctx, cr_grad(in[k]));
        }
        /* which results are read: declared by their producer or a consumer */
        size_t n = 0;
        cr_node **order = cr__topo_order(ctx, 1, &y, &n);
        for (size_t i = 0; i < n; i++)
          order[i]->out->view_ok = false; /* borrowed as the "needed" mark */
        for (size_t i = 0; i < n; i++) {
          cr_node *nd = order[i];
          if (nd->op->reads & CR__READS_OUT)
            nd->out->view_ok = true;
          for (int k = 0; k < nd->n_in; k++)
            if (nd->op->reads & CR__READS_IN(k < 31 ? k : 30))
              nd->in[k]->view_ok = true;
        }
        /* a needed view keeps its base */
        for (size_t i = n; i-- > 0;)
          if (order[i]->out->view_ok && is_view(order[i]) && order[i]->in[0]->node)
            order[i]->in[0]->view_ok = true;
        for (size_t i = 0; i < n; i++) {
          cr_tensor *out = order[i]->out;
          if (out == y || out->view_ok || is_view(order[i]) || !cr_is_contiguous(out))
            continue;
          for (int64_t e = 0; e < cr_numel(out); e++)
            cr_set_flat(out, e, NAN);
          poisoned++;
        }
        if (graph) {
          assert_int_equal(cr_autograd_grad(ctx, 1, &y, &seed, row->n_inputs, in, &o, got), CR_OK);
        } else {
          for (int k = 0; k < row->n_inputs; k++)
            cr_zero_grad(in[k]);
          assert_int_equal(cr_backward_seed(ctx, y, seed), CR_OK);
          for (int k = 0; k < row->n_inputs; k++)
            got[k] = cr_grad(in[k]);
        }
        bool same = true;
        for (int k = 0; k < row->n_inputs; k++)
          for (int64_t e = 0; e < cr_numel(in[k]); e++) {
            double a = cr_get_flat(clean[k], e), b = cr_get_flat(got[k], e);
            same &= memcmp(&a, &b, sizeof a) == 0;
          }
        total++;
        if (!same) {
          printf("FAIL   %-14s %-52s %s VJP read a value its op does not declare\n", row->op,
                 row->label, graph ? "graph" : "kernel");
          failed++;
        }
        for (int k = 0; !graph && k < row->n_inputs; k++)
          cr_tensor_free(clean[k]);
        free_inputs(row, in);
        cr_ctx_free(ctx);
      }
    }
  }
  cr_rng_free(rng);
  printf("VJPs read only what they declare: %d of %d checks (%d results poisoned)\n",
         total - failed, total, poisoned);
  assert_int_equal(failed, 0);
}

static int count_rows(const char *name, bool second) {
  int c = 0;
  for (int t = 0; t < N_TABLES; t++)
    for (int r = 0; r < *tables[t].n; r++)
      c += strcmp(tables[t].rows[r].op, name) == 0 && !(second && tables[t].rows[r].no_gg);
  return c;
}

static void test_every_op_has_rows(void **state) {
  (void)state;
  int missing = 0;
  for (int i = 0; i < cr__op_count(); i++) {
    const cr_op_desc *op = cr__op_at(i);
    if (!op->vjp || !op->vjp_graph) {
      printf("op '%s' lacks a %s VJP\n", op->name, op->vjp ? "differentiable" : "kernel");
      missing++;
    }
    if (!count_rows(op->name, false)) {
      printf("op '%s' has no gradcheck row\n", op->name);
      missing++;
    }
    if (!count_rows(op->name, true)) {
      printf("op '%s' has no gradgradcheck row\n", op->name);
      missing++;
    }
  }
  /* and every row names a real op */
  for (int t = 0; t < N_TABLES; t++)
    for (int r = 0; r < *tables[t].n; r++) {
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
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_op_has_rows),
      cmocka_unit_test(test_every_row_passes_gradcheck),
      cmocka_unit_test(test_graph_vjps_match_kernel_vjps),
      cmocka_unit_test(test_vjps_read_only_what_they_declare),
      cmocka_unit_test(test_every_row_passes_gradgradcheck),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
