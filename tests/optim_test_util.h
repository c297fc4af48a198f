/* optim_test_util.h — what the optimizer, checkpoint and schedule tests
 * share: a context and a scratch directory per test, parameters with
 * gradients made by hand, fixture files, and a small model trained by a
 * fixed recipe.  Included by test_optim.c, test_optim_ckpt.c and
 * test_sched.c after cmocka.h. */
#ifndef CHAINRULE_TESTS_OPTIM_TEST_UTIL_H
#define CHAINRULE_TESTS_OPTIM_TEST_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule.h"
#include "internal.h" /* to give a parameter a gradient without a graph */

#ifndef CR_SOURCE_DIR
#error "CR_SOURCE_DIR (the source root) must be defined by the build"
#endif
#define FIXTURES CR_SOURCE_DIR "/tests/fixtures"

/* ---- fixture: a context and a temporary directory per test */

typedef struct fx {
  cr_ctx *ctx;
  char dir[64];
  char path[128];
} fx;

static inline int setup(void **state) {
  fx *x = calloc(1, sizeof *x);
  if (!x)
    return -1;
  x->ctx = cr_ctx_new();
  strcpy(x->dir, "/tmp/cr-optim-XXXXXX");
  if (!x->ctx || !mkdtemp(x->dir))
    return -1;
  snprintf(x->path, sizeof x->path, "%s/ckpt.safetensors", x->dir);
  *state = x;
  return 0;
}

static inline int teardown(void **state) {
  fx *x = *state;
  DIR *d = opendir(x->dir);
  struct dirent *e;
  char p[512];
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", x->dir, e->d_name);
      unlink(p);
    }
  if (d)
    closedir(d);
  rmdir(x->dir);
  cr_ctx_free(x->ctx);
  free(x);
  return 0;
}

/* ---- helpers */

/* p's gradient, made (zero) if it has none. */
static inline cr_tensor *grad_of(cr_ctx *ctx, cr_tensor *p) {
  if (!p->grad)
    p->grad = cr_tensor_new(ctx, p->dtype, p->ndim, p->shape);
  assert_non_null(p->grad);
  return p->grad;
}

static inline cr_tensor *param_from(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape,
                                    const double *v) {
  cr_tensor *p = cr_tensor_new(ctx, dt, ndim, shape);
  assert_non_null(p);
  for (int64_t i = 0; v && i < cr_numel(p); i++)
    cr_set_flat(p, i, v[i]);
  cr_set_requires_grad(p, true);
  return p;
}

static inline void set_grad(cr_ctx *ctx, cr_tensor *p, const double *v) {
  cr_tensor *g = grad_of(ctx, p);
  for (int64_t i = 0; i < cr_numel(g); i++)
    cr_set_flat(g, i, v[i]);
}

/* Sorted names of the *.safetensors files in dir; returns the count. */
static inline int list_fixtures(const char *dir, char names[][128], int max) {
  DIR *d = opendir(dir);
  if (!d)
    fail_msg("cannot open %s", dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len > 12 && len < 128 && !strcmp(e->d_name + len - 12, ".safetensors") && n < max)
      strcpy(names[n++], e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
  return n;
}

static inline double meta_double(const cr_st_file *f, const char *key) {
  const char *v = cr_st_meta(f, key);
  if (!v)
    fail_msg("fixture lacks metadata '%s'", key);
  char *end;
  double d = strtod(v, &end);
  if (*end)
    fail_msg("metadata '%s' = '%s' is not a number", key, v);
  return d;
}

/* |a - b| relative to |b| (absolute below 1e-300). */
static inline double rel_err(double a, double b) {
  double d = fabs(a - b), m = fabs(b);
  return m > 1e-300 ? d / m : d;
}

/* ---- a small model trained by a fixed recipe (checkpoints, no-malloc) */

/* Options exercising every buffer of each kind. */
static inline cr_optim_opts full_opts(cr_optim_kind kind) {
  cr_optim_opts o;
  cr_optim_default_opts(kind, &o);
  switch (kind) {
  case CR_SGD: o.lr = 0.05, o.momentum = 0.9, o.nesterov = true, o.weight_decay = 0.01; break;
  case CR_ADAM: o.amsgrad = true, o.weight_decay = 0.1; break;
  case CR_ADAMW: o.amsgrad = true; break;
  case CR_RMSPROP: o.momentum = 0.5, o.centered = true, o.weight_decay = 0.01; break;
  case CR_ADAGRAD: o.lr_decay = 0.01, o.initial_accumulator_value = 0.1; break;
  case CR_NADAM: o.weight_decay = 0.1, o.momentum_decay = 0.01; break;
  case CR_RADAM: o.weight_decay = 0.1, o.beta2 = 0.9; break; /* rectified from step 6 */
  case CR_ADAMAX: o.weight_decay = 0.1; break;
  case CR_ADADELTA: o.weight_decay = 0.1, o.rho = 0.8; break;
  default: break;
  }
  return o;
}

typedef struct model {
  cr_tensor *p[3]; /* f64 [3,4], f32 [5], f64 [2] (frozen for a while) */
} model;

static inline void model_init(cr_ctx *ctx, model *m) {
  cr_rng *rng = cr_rng_new(7);
  m->p[0] = param_from(ctx, CR_F64, CR_SHAPE(3, 4), NULL);
  m->p[1] = param_from(ctx, CR_F32, CR_SHAPE(5), NULL);
  m->p[2] = param_from(ctx, CR_F64, CR_SHAPE(2), NULL);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_fill_normal(ctx, m->p[i], rng, 0, 1), CR_OK);
  cr_rng_free(rng);
}

static inline void model_free(model *m) {
  for (int i = 0; i < 3; i++)
    cr_tensor_free(m->p[i]);
}

static inline cr_optim *model_optim(cr_ctx *ctx, model *m, cr_optim_kind kind) {
  cr_optim_opts o = full_opts(kind);
  cr_optim *opt = cr_optim_new(ctx, &o, m->p, 2);
  assert_non_null(opt);
  assert_int_equal(cr_optim_add_group(ctx, opt, &m->p[2], 1, o.lr * 3), 1);
  return opt;
}

/* Training step k (1-based): gradients drawn from seed k, param 2 frozen
 * for k <= 3, lr from a schedule; then the update. */
static inline void train_step(cr_ctx *ctx, model *m, cr_optim *opt, int k) {
  static cr_sched s = {.kind = CR_SCHED_COSINE, .t_max = 7, .eta_min = 1e-4};
  cr_rng *rng = cr_rng_new((uint64_t)k);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_fill_normal(ctx, grad_of(ctx, m->p[i]), rng, 0, 1), CR_OK);
  cr_rng_free(rng);
  cr_set_requires_grad(m->p[2], k > 3);
  cr_sched_apply(&s, opt, cr_optim_steps(opt));
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
}

#endif
