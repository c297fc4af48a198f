/* Parity with PyTorch for the losses and the ops with nontrivial formulas:
 * every file in tests/fixtures/ops (made by gen_loss_fixtures.py) holds
 * inputs and, for each variant (a reduction, or "op"), the result and the
 * gradient of sum(result * seed) for every differentiable input.  chainrule
 * recomputes them in float64 — the gradients both by the kernel VJPs
 * (backward) and by the graph VJPs (cr_autograd_grad) — and every value
 * must agree to TOL relative, element by element.  A row per file and
 * variant shows the largest errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"

#ifndef CR_SOURCE_DIR
#error "CR_SOURCE_DIR (the source root) must be defined by the build"
#endif
#define FIXTURES CR_SOURCE_DIR "/tests/fixtures/ops"

#define TOL 1e-12
#define FLOOR 1e-300 /* purely relative: an exact 0 must come out exactly 0 */

#define MAX_IN 4

typedef struct {
  const cr_st_file *f;
  int n;
  char name[MAX_IN][32];
  cr_tensor *in[MAX_IN]; /* persistent, from the file */
} inputs;

static cr_tensor *input(inputs *x, const char *name) {
  for (int i = 0; i < x->n; i++)
    if (!strcmp(x->name[i], name))
      return x->in[i];
  return NULL;
}

static double meta_d(const cr_st_file *f, const char *key) {
  const char *v = cr_st_meta(f, key);
  assert_non_null(v);
  return strtod(v, NULL);
}
static bool meta_b(const cr_st_file *f, const char *key) { return meta_d(f, key) != 0; }

/* "0,2" -> {0, 2}; "all" -> n = 0 */
static int meta_axes(const cr_st_file *f, const char *key, int *axes) {
  const char *v = cr_st_meta(f, key);
  assert_non_null(v);
  if (!strcmp(v, "all"))
    return 0;
  int n = 0;
  for (char *e; *v; v = *e ? e + 1 : e)
    axes[n++] = (int)strtol(v, &e, 10);
  return n;
}

static cr_reduction reduction_of(const char *v) {
  return !strcmp(v, "sum")         ? CR_REDUCE_SUM
         : !strcmp(v, "none")      ? CR_REDUCE_NONE
         : !strcmp(v, "batchmean") ? CR_REDUCE_BATCHMEAN
                                   : CR_REDUCE_MEAN;
}

/* class targets stored as F64 integers, as an i64 tensor */
static cr_tensor *as_i64(cr_ctx *ctx, const cr_tensor *t) {
  cr_tensor *r = cr_zeros(ctx, CR_I64, cr_ndim(t), cr_shape(t));
  for (int64_t i = 0; i < cr_numel(t); i++)
    cr_set_flat(r, i, cr_get_flat(t, i));
  return r;
}

/* The function the file names, applied as chainrule spells it. */
static cr_tensor *build(cr_ctx *ctx, inputs *x, const char *variant) {
  const cr_st_file *f = x->f;
  const char *c = cr_st_meta(f, "case");
  const cr_reduction r = reduction_of(variant);
  cr_tensor *in = input(x, "input"), *t = input(x, "target"), *X = input(x, "x");
  int axes[8];
  if (!strcmp(c, "cross_entropy") || !strcmp(c, "nll_loss")) {
    cr_class_loss_opts o = {r, input(x, "weight"), 0, meta_b(f, "classes_at_dim1")};
    const int64_t ignore = (int64_t)meta_d(f, "ignore_index");
    if (!strcmp(c, "nll_loss"))
      return cr_nll_loss(ctx, in, as_i64(ctx, t), ignore, &o);
    o.label_smoothing = meta_d(f, "label_smoothing");
    return cr_cross_entropy_ex(ctx, in, as_i64(ctx, t), ignore, &o);
  }
  if (!strcmp(c, "bce_with_logits")) {
    cr_bce_opts o = {r, input(x, "weight"), input(x, "pos_weight")};
    return cr_bce_with_logits(ctx, in, t, &o);
  }
  if (!strcmp(c, "l1_loss"))
    return cr_l1_loss(ctx, in, t, r);
  if (!strcmp(c, "mse_loss"))
    return cr_mse_loss(ctx, in, t, r);
  if (!strcmp(c, "smooth_l1_loss"))
    return cr_smooth_l1_loss(ctx, in, t, meta_d(f, "beta"), r);
  if (!strcmp(c, "huber_loss"))
    return cr_huber_loss(ctx, in, t, meta_d(f, "delta"), r);
  if (!strcmp(c, "kl_div"))
    return cr_kl_div(ctx, in, t, meta_b(f, "log_target"), r);
  if (!strcmp(c, "gelu"))
    return cr_gelu(ctx, X);
  if (!strcmp(c, "erf"))
    return cr_erf(ctx, X);
  if (!strcmp(c, "softplus"))
    return cr_softplus(ctx, X, meta_d(f, "beta"), meta_d(f, "threshold"));
  if (!strcmp(c, "logsumexp"))
    return cr_logsumexp(ctx, X, (int)meta_d(f, "dim"), meta_b(f, "keepdim"));
  if (!strcmp(c, "var") || !strcmp(c, "std")) {
    int n = meta_axes(f, "dim", axes);
    return (!strcmp(c, "var") ? cr_var : cr_std)(ctx, X, n ? axes : NULL, n,
                                                 meta_d(f, "correction"), meta_b(f, "keepdim"));
  }
  if (!strcmp(c, "layer_norm"))
    return cr_layer_norm(ctx, X, (int)meta_d(f, "k"), input(x, "weight"), input(x, "bias"),
                         meta_d(f, "eps"));
  if (!strcmp(c, "cumsum"))
    return cr_cumsum(ctx, X, (int)meta_d(f, "dim"));
  fail_msg("%s: unknown case '%s'", cr_st_path(f), c);
  return NULL;
}

/* worst error of got against want (same shape required) */
static double worst(const cr_tensor *got, const cr_tensor *want, const char *what,
                    const char *path) {
  assert_non_null(got);
  if (cr_ndim(got) != cr_ndim(want) || cr_numel(got) != cr_numel(want))
    fail_msg("%s: %s: shapes differ", path, what);
  for (int d = 0; d < cr_ndim(got); d++)
    assert_int_equal(cr_shape(got)[d], cr_shape(want)[d]);
  double e = 0;
  for (int64_t i = 0; i < cr_numel(want); i++) {
    double a = cr_get_flat(got, i), b = cr_get_flat(want, i);
    double r = fabs(a - b) / fmax(fabs(b), FLOOR);
    e = r > e || isnan(r) ? r : e;
  }
  return e;
}

/* Split a comma list into names. */
static int split(const char *s, char out[][32], int max) {
  int n = 0;
  while (s && *s && n < max) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    snprintf(out[n++], 32, "%.*s", (int)len, s);
    s = e ? e + 1 : NULL;
  }
  return n;
}

static double worst_out = 0, worst_grad = 0, worst_graph = 0;
static int rows = 0;

static void check_file(const char *path) {
  cr_ctx *ctx = cr_ctx_new();
  cr_st_file *f = cr_st_open(ctx, path);
  if (!f)
    fail_msg("%s", cr_ctx_error(ctx));
  inputs x = {.f = f};
  x.n = split(cr_st_meta(f, "inputs"), x.name, MAX_IN);
  char grads[MAX_IN][32], variants[4][32];
  int ng = split(cr_st_meta(f, "grads"), grads, MAX_IN);
  int nv = split(cr_st_meta(f, "variants"), variants, 4);
  for (int i = 0; i < x.n; i++) {
    char key[48];
    snprintf(key, sizeof key, "in.%s", x.name[i]);
    x.in[i] = cr_st_get(ctx, f, key);
    assert_non_null(x.in[i]);
  }
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  for (int v = 0; v < nv; v++) {
    cr_tensor *g[MAX_IN];
    for (int k = 0; k < ng; k++) {
      g[k] = input(&x, grads[k]);
      cr_zero_grad(g[k]);
      cr_set_requires_grad(g[k], true);
    }
    char key[160];
    snprintf(key, sizeof key, "out.%s", variants[v]);
    cr_tensor *want = cr_st_get(ctx, f, key);
    cr_tensor *y = build(ctx, &x, variants[v]);
    if (!y)
      fail_msg("%s: %s", base, cr_ctx_error(ctx));
    double eo = worst(y, want, key, base), eg = 0, eh = 0;
    snprintf(key, sizeof key, "seed.%s", variants[v]);
    cr_tensor *seed = cr_st_get(ctx, f, key);
    cr_tensor *seed_a = cr_reshape(ctx, seed, cr_ndim(y), cr_shape(y));
    cr_tensor *graph[MAX_IN] = {0};
    cr_autograd_opts o = {.zeros_for_unused = true};
    assert_int_equal(cr_autograd_grad(ctx, 1, &y, &seed_a, ng, g, &o, graph), CR_OK);
    assert_int_equal(cr_backward_seed(ctx, y, seed_a), CR_OK);
    for (int k = 0; k < ng; k++) {
      snprintf(key, sizeof key, "grad.%s.%s", variants[v], grads[k]);
      cr_tensor *gw = cr_st_get(ctx, f, key);
      eg = fmax(eg, worst(cr_grad(g[k]), gw, key, base));
      eh = fmax(eh, worst(graph[k], gw, key, base));
      cr_tensor_free(gw);
    }
    printf("%-6s %-32s %-9s out %.2e  grad %.2e  graph-VJP grad %.2e\n",
           eo <= TOL && eg <= TOL && eh <= TOL ? "ok" : "FAIL", base, variants[v], eo, eg, eh);
    worst_out = fmax(worst_out, eo);
    worst_grad = fmax(worst_grad, eg);
    worst_graph = fmax(worst_graph, eh);
    rows++;
    cr_tensor_free(want);
    cr_tensor_free(seed);
    for (int k = 0; k < ng; k++)
      cr_set_requires_grad(g[k], false);
    cr_ctx_reset(ctx);
  }
  for (int i = 0; i < x.n; i++)
    cr_tensor_free(x.in[i]);
  cr_st_close(f);
  cr_ctx_free(ctx);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_every_fixture_matches_torch(void **state) {
  (void)state;
  DIR *d = opendir(FIXTURES);
  assert_non_null(d);
  char *names[256];
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) && n < 256;) {
    size_t len = strlen(e->d_name);
    if (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")) {
      names[n] = malloc(sizeof FIXTURES + len + 1);
      sprintf(names[n++], "%s/%s", FIXTURES, e->d_name);
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, by_name);
  for (int i = 0; i < n; i++) {
    check_file(names[i]);
    free(names[i]);
  }
  printf("%d files, %d variants: worst relative error out %.2e, grad %.2e, graph-VJP grad "
         "%.2e (tolerance %.0e)\n",
         n, rows, worst_out, worst_grad, worst_graph, TOL);
  assert_true(n >= 31);
  assert_true(worst_out <= TOL && worst_grad <= TOL && worst_graph <= TOL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_fixture_matches_torch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
