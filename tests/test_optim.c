/* Optimizers, gradient clipping and learning-rate schedules: parity with
 * PyTorch on every committed fixture (tests/fixtures/optim, sched), plus
 * hand-computed clipping and parameter groups, freezing, bit-exact resume
 * from a checkpoint, atomic failed loads, no malloc in steps, and the exact
 * text of the main error messages. */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

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

static int setup(void **state) {
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

static int teardown(void **state) {
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
static cr_tensor *grad_of(cr_ctx *ctx, cr_tensor *p) {
  if (!p->grad)
    p->grad = cr_tensor_new(ctx, p->dtype, p->ndim, p->shape);
  assert_non_null(p->grad);
  return p->grad;
}

static cr_tensor *param_from(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape,
                             const double *v) {
  cr_tensor *p = cr_tensor_new(ctx, dt, ndim, shape);
  assert_non_null(p);
  for (int64_t i = 0; v && i < cr_numel(p); i++)
    cr_set_flat(p, i, v[i]);
  cr_set_requires_grad(p, true);
  return p;
}

static void set_grad(cr_ctx *ctx, cr_tensor *p, const double *v) {
  cr_tensor *g = grad_of(ctx, p);
  for (int64_t i = 0; i < cr_numel(g); i++)
    cr_set_flat(g, i, v[i]);
}

/* Sorted names of the *.safetensors files in dir; returns the count. */
static int list_fixtures(const char *dir, char names[][128], int max) {
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

static double meta_double(const cr_st_file *f, const char *key) {
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
static double rel_err(double a, double b) {
  double d = fabs(a - b), m = fabs(b);
  return m > 1e-300 ? d / m : d;
}

/* ================================================================ PyTorch parity */

/* Options from a fixture's metadata: every hyper-parameter of the kind's
 * row (PyTorch's names, from cr_optim_hyper_name) must be there. */
static cr_optim_opts opts_from_meta(cr_ctx *ctx, const cr_st_file *f) {
  const char *name = cr_st_meta(f, "optimizer");
  assert_non_null(name);
  int kind = cr_optim_kind_from_name(name);
  assert_true(kind >= 0);
  cr_optim_opts o;
  cr_optim_default_opts((cr_optim_kind)kind, &o);
  const char *h;
  for (int i = 0; (h = cr_optim_hyper_name((cr_optim_kind)kind, i)); i++)
    assert_int_equal(cr_optim_opts_set(ctx, &o, h, meta_double(f, h)), CR_OK);
  return o;
}

/* Replays one fixture in dtype dt; returns the largest relative error of
 * any parameter element at any step. */
static double replay_optim(cr_ctx *ctx, const cr_st_file *f, cr_dtype dt, int *steps_out,
                           int64_t *exact_out) {
  cr_optim_opts o = opts_from_meta(ctx, f);
  int steps = (int)meta_double(f, "steps");
  cr_tensor *p0 = cr_st_get(ctx, f, "param0");
  assert_non_null(p0);
  cr_tensor *p = cr_tensor_new(ctx, dt, cr_ndim(p0), cr_shape(p0));
  assert_int_equal(cr_copy_into(ctx, p, p0), CR_OK);
  cr_set_requires_grad(p, true);
  cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
  assert_non_null(opt);
  double worst = 0;
  int64_t exact = 0;
  char name[64];
  for (int k = 1; k <= steps; k++) {
    snprintf(name, sizeof name, "grad.step%d", k);
    assert_int_equal(cr_st_read_into(ctx, f, name, grad_of(ctx, p)), CR_OK);
    assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    snprintf(name, sizeof name, "param.step%d", k);
    cr_tensor *want = cr_st_get(ctx, f, name);
    assert_non_null(want);
    for (int64_t i = 0; i < cr_numel(p); i++) {
      double e = rel_err(cr_get_flat(p, i), cr_get_flat(want, i));
      worst = e > worst || isnan(e) ? e : worst;
      exact += cr_get_flat(p, i) == cr_get_flat(want, i);
    }
    cr_tensor_free(want);
  }
  assert_int_equal(cr_optim_steps(opt), steps);
  cr_optim_free(opt);
  cr_tensor_free(p);
  cr_tensor_free(p0);
  *steps_out = steps;
  *exact_out = exact;
  return worst;
}

static void test_optim_fixtures(void **state) {
  fx *x = *state;
  char names[64][128], path[1024];
  int n = list_fixtures(FIXTURES "/optim", names, 64);
  assert_true(n >= 16);
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%.127s", FIXTURES "/optim", names[i]);
    cr_st_file *f = cr_st_open(x->ctx, path);
    if (!f)
      fail_msg("%s", cr_ctx_error(x->ctx));
    int steps;
    int64_t exact, exact32;
    double e64 = replay_optim(x->ctx, f, CR_F64, &steps, &exact);
    double e32 = replay_optim(x->ctx, f, CR_F32, &steps, &exact32);
    const int64_t total = (int64_t)steps * 12; /* [3,4] parameters */
    print_message("optim %-30s %2d steps: f64 %lld/%lld elements bit-identical (max rel err "
                  "%.3g), f32 max rel err %.3g\n",
                  names[i], steps, (long long)exact, (long long)total, e64, e32);
    assert_true(exact == total && e64 == 0); /* every element of every step, to the bit */
    assert_true(e32 <= 2e-5);
    cr_st_close(f);
  }
}

/* A schedule from a fixture's metadata under prefix; SequentialLR becomes a
 * chain of warmups (the last scheduler owns the chain).  storage holds the
 * sub-schedules. */
static cr_sched sched_from_meta(const cr_st_file *f, const char *prefix, cr_sched *storage) {
  char k[96];
  snprintf(k, sizeof k, "%sschedule", prefix);
  const char *s = cr_st_meta(f, k);
  assert_non_null(s);
#define M(key) (snprintf(k, sizeof k, "%s%s", prefix, key), meta_double(f, k))
  if (!strcmp(s, "steplr"))
    return (cr_sched){
        .kind = CR_SCHED_STEP, .step_size = (int64_t)M("step_size"), .gamma = M("gamma")};
  if (!strcmp(s, "exponentiallr"))
    return (cr_sched){.kind = CR_SCHED_EXPONENTIAL, .gamma = M("gamma")};
  if (!strcmp(s, "cosineannealinglr"))
    return (cr_sched){
        .kind = CR_SCHED_COSINE, .t_max = (int64_t)M("T_max"), .eta_min = M("eta_min")};
  if (!strcmp(s, "linearlr"))
    return (cr_sched){.kind = CR_SCHED_LINEAR,
                      .start_factor = M("start_factor"),
                      .end_factor = M("end_factor"),
                      .total_iters = (int64_t)M("total_iters")};
  assert_string_equal(s, "sequentiallr");
  int ns = (int)M("num_schedulers");
  snprintf(k, sizeof k, "%smilestones", prefix);
  const char *ms = cr_st_meta(f, k);
  assert_non_null(ms);
  /* milestones m_1 < m_2 < ...: scheduler j runs from m_j on, so scheduler
   * j's warmup is scheduler j-1 over m_j - m_{j-1} steps. */
  int64_t prev = 0;
  for (int j = 0; j < ns; j++) {
    char sub[96];
    snprintf(sub, sizeof sub, "%ss%d.", prefix, j);
    storage[j] = sched_from_meta(f, sub, storage + ns);
    if (j > 0) {
      char *end;
      int64_t m = strtoll(ms, &end, 10);
      ms = *end == ',' ? end + 1 : end;
      storage[j].warmup = &storage[j - 1];
      storage[j].warmup_steps = m - prev;
      prev = m;
    }
  }
#undef M
  return storage[ns - 1];
}

static void test_sched_fixtures(void **state) {
  fx *x = *state;
  char names[32][128], path[1024];
  int n = list_fixtures(FIXTURES "/sched", names, 32);
  assert_true(n >= 5);
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%.127s", FIXTURES "/sched", names[i]);
    cr_st_file *f = cr_st_open(x->ctx, path);
    if (!f)
      fail_msg("%s", cr_ctx_error(x->ctx));
    cr_sched storage[16];
    cr_sched s = sched_from_meta(f, "", storage);
    char err[128];
    assert_true(cr_sched_check(&s, err, sizeof err));
    double base = meta_double(f, "lr");
    cr_tensor *lr = cr_st_get(x->ctx, f, "lr");
    assert_non_null(lr);
    double worst = 0;
    int exact = 0;
    for (int64_t k = 0; k < cr_numel(lr); k++) {
      double got = cr_sched_lr(&s, base, k), want = cr_get_flat(lr, k);
      worst = fmax(worst, rel_err(got, want));
      exact += got == want;
    }
    print_message("sched %-42s %lld steps: max rel err %.3g (%d of %lld bit-exact)\n", names[i],
                  (long long)cr_numel(lr) - 1, worst, exact, (long long)cr_numel(lr));
    assert_true(worst <= 1e-12);
    cr_tensor_free(lr);
    cr_st_close(f);
  }
}

/* SequentialLR(warmup, cosine): the values the fixture shows, the spec
 * parser building the same schedule, and cr_sched_apply on groups. */
static void test_sequential_semantics(void **state) {
  fx *x = *state;
  cr_st_file *f = cr_st_open(x->ctx, FIXTURES "/sched/sequentiallr_linear3_cosine10.safetensors");
  assert_non_null(f);
  cr_tensor *want = cr_st_get(x->ctx, f, "lr");
  cr_sched s, warm;
  char err[128];
  assert_true(cr_sched_parse("warmup:3+cosine:10:0.01", &s, &warm, err, sizeof err));
  assert_ptr_equal(s.warmup, &warm);
  assert_int_equal(s.warmup_steps, 3);
  for (int64_t k = 0; k < cr_numel(want); k++)
    assert_true(rel_err(cr_sched_lr(&s, 0.1, k), cr_get_flat(want, k)) <= 1e-12);
  /* warmup steps 0..2, then the cosine restarts at base at the milestone */
  assert_true(fabs(cr_sched_lr(&s, 0.1, 0) - 0.01) < 1e-16);
  assert_true(fabs(cr_sched_lr(&s, 0.1, 1) - 0.04) < 1e-16);
  assert_true(fabs(cr_sched_lr(&s, 0.1, 2) - 0.07) < 1e-16);
  assert_true(cr_sched_lr(&s, 0.1, 3) == 0.1 && cr_get_flat(want, 3) == 0.1);
  assert_true(fabs(cr_sched_lr(&s, 0.1, 13) - 0.01) < 1e-17); /* minimum shifted by 3 */
  assert_true(fabs(cr_sched_lr(&s, 0.1, 23) - 0.1) < 1e-15);  /* periodic, not clamped */
  assert_true(isnan(cr_sched_lr(&s, 0.1, -1)));

  /* apply: every group from its own base lr */
  cr_tensor *a = param_from(x->ctx, CR_F64, CR_SHAPE(2), NULL);
  cr_tensor *b = param_from(x->ctx, CR_F64, CR_SHAPE(2), NULL);
  cr_optim_opts o;
  cr_optim_default_opts(CR_SGD, &o);
  o.lr = 0.1;
  cr_optim *opt = cr_optim_new(x->ctx, &o, &a, 1);
  assert_int_equal(cr_optim_add_group(x->ctx, opt, &b, 1, 1.0), 1);
  cr_sched_apply(&s, opt, 1);
  assert_true(cr_optim_get_lr(opt, 0) == cr_sched_lr(&s, 0.1, 1));
  assert_true(cr_optim_get_lr(opt, 1) == cr_sched_lr(&s, 1.0, 1));
  assert_true(cr_optim_get_base_lr(opt, 0) == 0.1 && cr_optim_get_base_lr(opt, 1) == 1.0);
  cr_optim_free(opt);
  cr_tensor_free(a);
  cr_tensor_free(b);
  cr_tensor_free(want);
  cr_st_close(f);
}

static void test_sched_parse(void **state) {
  (void)state;
  cr_sched s, w;
  char err[200];
  assert_true(cr_sched_parse("constant", &s, NULL, err, sizeof err));
  assert_int_equal(s.kind, CR_SCHED_CONSTANT);
  assert_true(cr_sched_lr(&s, 0.5, 1000) == 0.5);
  assert_true(cr_sched_parse("step:3:0.5", &s, NULL, err, sizeof err));
  assert_true(cr_sched_lr(&s, 0.1, 2) == 0.1 && cr_sched_lr(&s, 0.1, 3) == 0.05 &&
              cr_sched_lr(&s, 0.1, 6) == 0.025);
  assert_true(cr_sched_parse("exp:0.9", &s, NULL, err, sizeof err));
  assert_true(fabs(cr_sched_lr(&s, 0.1, 2) - 0.081) < 1e-16);
  assert_true(cr_sched_parse("cosine:10", &s, NULL, err, sizeof err));
  assert_true(s.eta_min == 0 && cr_sched_lr(&s, 1, 10) == 0 && cr_sched_lr(&s, 1, 5) < 0.5 + 1e-16);
  assert_true(cr_sched_parse("linear:0.5:1:2", &s, NULL, err, sizeof err));
  assert_true(cr_sched_lr(&s, 1, 0) == 0.5 && cr_sched_lr(&s, 1, 1) == 0.75 &&
              cr_sched_lr(&s, 1, 9) == 1);
  assert_true(cr_sched_parse("warmup:4+step:2:0.1", &s, &w, err, sizeof err));
  assert_true(fabs(cr_sched_lr(&s, 1, 3) - 0.775) < 1e-15 && cr_sched_lr(&s, 1, 4) == 1 &&
              fabs(cr_sched_lr(&s, 1, 6) - 0.1) < 1e-17);

  static const struct {
    const char *spec, *msg;
  } bad[] = {
      {"cosine", "'cosine': expected cosine:TMAX[:ETA_MIN]"},
      {"cosine:0", "'cosine:0': t_max 0 must be >= 1"},
      {"cosine:10:-1", "'cosine:10:-1': eta_min -1 must be >= 0 and finite"},
      {"cosine:x", "'cosine:x': expected cosine:TMAX[:ETA_MIN] (with numbers)"},
      {"step:3", "'step:3': expected step:SIZE:GAMMA"},
      {"step:0:0.5", "'step:0:0.5': step_size 0 must be >= 1"},
      {"exp:0.9:1", "'exp:0.9:1': expected exp:GAMMA"},
      {"linear:0:1:5", "'linear:0:1:5': start_factor 0 must be in (0, 1]"},
      {"warmup:0+cosine:10", "'warmup:0+cosine:10': warmup steps 0 must be >= 1"},
      {"warmup:5", "'warmup:5': expected warmup:N+SPEC, e.g. warmup:100+cosine:1000"},
      {"warmup:5+warmup:2+exp:0.9", "'warmup:5+warmup:2+exp:0.9': only one warmup"},
      {"cosine:10+exp:0.9", "'cosine:10+exp:0.9': unexpected '+exp:0.9' at the end"},
      {"poly:2", "'poly:2': unknown schedule 'poly' (constant, step:SIZE:GAMMA, exp:GAMMA, "
                 "cosine:TMAX[:ETA_MIN], linear:START:END:TOTAL, warmup:N+SPEC)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    assert_false(cr_sched_parse(bad[i].spec, &s, &w, err, sizeof err));
    assert_string_equal(err, bad[i].msg);
  }
  assert_false(cr_sched_parse("warmup:5+cosine:10", &s, NULL, err, sizeof err));
  assert_string_equal(err, "'warmup:5+cosine:10': a warmup needs storage (NULL given)");
  cr_sched bad_s = {.kind = CR_SCHED_COSINE, .t_max = 0};
  assert_true(isnan(cr_sched_lr(&bad_s, 1, 0)));
}

/* ================================================================ clipping */

static void test_clip(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  for (int d = 0; d < 2; d++) {
    cr_dtype dt = d ? CR_F32 : CR_F64;
    cr_tensor *p[4] = {
        param_from(ctx, dt, CR_SHAPE(2), NULL), param_from(ctx, dt, CR_SHAPE(1), NULL),
        param_from(ctx, dt, CR_SHAPE(1), NULL), param_from(ctx, dt, CR_SHAPE(1), NULL)};
    set_grad(ctx, p[0], (const double[]){3, 4});
    set_grad(ctx, p[1], (const double[]){12});
    set_grad(ctx, p[2], (const double[]){100}); /* frozen: ignored */
    cr_set_requires_grad(p[2], false);
    /* p[3] has no gradient: ignored */
    double norm = cr_clip_grad_norm(ctx, p, 4, 100);
    assert_true(norm == 13);
    assert_true(cr_get_flat(cr_grad(p[0]), 0) == 3); /* not clipped: untouched */
    norm = cr_clip_grad_norm(ctx, p, 4, 6.5);
    assert_true(norm == 13);
    /* halved, up to PyTorch's 1e-6: the factor is 6.5 / (13 + 1e-6) */
    const double c = 6.5 / (13 + 1e-6);
    assert_true(fabs(cr_get_flat(cr_grad(p[0]), 0) - 1.5) < 1e-6);
    assert_true(fabs(cr_get_flat(cr_grad(p[0]), 1) - 2) < 1e-6);
    assert_true(fabs(cr_get_flat(cr_grad(p[1]), 0) - 6) < 1e-6);
    if (dt == CR_F64)
      assert_true(cr_get_flat(cr_grad(p[0]), 0) == 3 * c &&
                  cr_get_flat(cr_grad(p[1]), 0) == 12 * c);
    assert_true(cr_get_flat(cr_grad(p[1]), 0) < 6);
    assert_true(cr_get_flat(cr_grad(p[2]), 0) == 100);
    assert_null(cr_grad(p[3]));
    assert_true(fabs(cr_clip_grad_norm(ctx, p, 4, 1e9) - 6.5) < 1e-5);

    set_grad(ctx, p[0], (const double[]){-3, 0.5});
    set_grad(ctx, p[1], (const double[]){7});
    assert_int_equal(cr_clip_grad_value(ctx, p, 4, 1), CR_OK);
    assert_true(cr_get_flat(cr_grad(p[0]), 0) == -1 && cr_get_flat(cr_grad(p[0]), 1) == 0.5);
    assert_true(cr_get_flat(cr_grad(p[1]), 0) == 1 && cr_get_flat(cr_grad(p[2]), 0) == 100);
    for (int i = 0; i < 4; i++)
      cr_tensor_free(p[i]);
  }
  assert_true(isnan(cr_clip_grad_norm(ctx, NULL, 2, 1)));
  assert_string_equal(cr_ctx_error(ctx), "clip_grad_norm: 2 params, but params is NULL");
  cr_ctx_clear_error(ctx);
  cr_tensor *q = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  assert_true(isnan(cr_clip_grad_norm(ctx, &q, 1, -1)));
  assert_string_equal(cr_ctx_error(ctx), "clip_grad_norm: max_norm -1 must be >= 0");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_clip_grad_value(ctx, &q, 1, NAN), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "clip_grad_value: clip nan must be >= 0");
  cr_ctx_clear_error(ctx);
  assert_true(cr_clip_grad_norm(ctx, &q, 0, 1) == 0); /* nothing to clip */
  set_grad(ctx, q, (const double[]){INFINITY});
  assert_true(isinf(cr_clip_grad_norm(ctx, &q, 1, 1))); /* reported, left alone */
  assert_true(isinf(cr_get_flat(cr_grad(q), 0)));
  cr_tensor_free(q);
}

/* ================================================================ groups, freezing */

static void test_groups_sgd(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_tensor *a = param_from(ctx, CR_F64, CR_SHAPE(2), (const double[]){1, 2});
  cr_tensor *b = param_from(ctx, CR_F64, CR_SHAPE(1), (const double[]){3});
  cr_optim_opts o;
  cr_optim_default_opts(CR_SGD, &o);
  o.lr = 0.5;
  cr_optim *opt = cr_optim_new(ctx, &o, &a, 1);
  assert_non_null(opt);
  assert_int_equal(cr_optim_add_group(ctx, opt, &b, 1, 0.25), 1);
  assert_int_equal(cr_optim_num_groups(opt), 2);
  set_grad(ctx, a, (const double[]){0.5, -1});
  set_grad(ctx, b, (const double[]){2});
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
  /* p -= lr * g: group 0 with 0.5, group 1 with 0.25 (all exact in binary) */
  assert_true(cr_get_flat(a, 0) == 0.75 && cr_get_flat(a, 1) == 2.5);
  assert_true(cr_get_flat(b, 0) == 2.5);
  cr_optim_set_lr(opt, 1, 0.125);
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
  assert_true(cr_get_flat(a, 0) == 0.5 && cr_get_flat(a, 1) == 3);
  assert_true(cr_get_flat(b, 0) == 2.25);
  assert_true(cr_optim_get_lr(opt, 1) == 0.125 && cr_optim_get_base_lr(opt, 1) == 0.25);
  assert_true(isnan(cr_optim_get_lr(opt, 2)) && isnan(cr_optim_get_base_lr(opt, -1)));
  assert_int_equal(cr_optim_steps(opt), 2);

  /* a parameter may be in one group only; a failed add changes nothing */
  cr_tensor *c = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  cr_tensor *ab[2] = {c, a};
  assert_int_equal(cr_optim_add_group(ctx, opt, ab, 2, 0.1), -1);
  assert_string_equal(cr_ctx_error(ctx), "optim: param 1 [2] is already in the optimizer (a "
                                         "parameter may appear once)");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_optim_num_groups(opt), 1 + 1);
  cr_optim_zero_grad(opt);
  assert_true(cr_get_flat(cr_grad(a), 1) == 0 && cr_get_flat(cr_grad(b), 0) == 0);
  cr_optim_free(opt);
  cr_tensor_free(a);
  cr_tensor_free(b);
  cr_tensor_free(c);
}

/* Read optimizer state back through a checkpoint: per-parameter steps. */
static const char *saved_param_steps(fx *x, const cr_optim *opt, char *out, size_t n) {
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(x->ctx, opt, w, "o."), CR_OK);
  assert_int_equal(cr_st_writer_save(x->ctx, w, x->path), CR_OK);
  cr_st_writer_free(w);
  cr_st_file *f = cr_st_open(x->ctx, x->path);
  assert_non_null(f);
  snprintf(out, n, "%s", cr_st_meta(f, "o.param_steps"));
  cr_st_close(f);
  return out;
}

static void test_freeze(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  for (int ki = 0; ki < CR_OPTIM_NUM_KINDS; ki++) {
    cr_optim_opts o;
    cr_optim_default_opts((cr_optim_kind)ki, &o);
    o.momentum = ki == CR_SGD || ki == CR_RMSPROP ? 0.9 : 0;
    const double v0[3] = {0.5, -1, 2}, g[3] = {0.1, 0.2, -0.3};
    cr_tensor *live = param_from(ctx, CR_F64, CR_SHAPE(3), v0);
    cr_tensor *frozen = param_from(ctx, CR_F64, CR_SHAPE(3), v0);
    cr_tensor *nograd = param_from(ctx, CR_F64, CR_SHAPE(3), v0);
    cr_tensor *ps[3] = {live, frozen, nograd};
    cr_optim *opt = cr_optim_new(ctx, &o, ps, 3);
    assert_non_null(opt);
    set_grad(ctx, live, g);
    set_grad(ctx, frozen, g);
    cr_set_requires_grad(frozen, false);
    for (int k = 0; k < 3; k++)
      assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    assert_true(cr_get_flat(live, 0) != v0[0]);
    assert_memory_equal(cr_data(frozen), v0, sizeof v0);
    assert_memory_equal(cr_data(nograd), v0, sizeof v0);
    char buf[64];
    assert_string_equal(saved_param_steps(x, opt, buf, sizeof buf), "3,0,0");

    /* unfrozen, its first update is exactly a fresh optimizer's first: its
     * state (buffers and step count) was never touched */
    cr_set_requires_grad(frozen, true);
    cr_set_requires_grad(live, false);
    assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    cr_tensor *fresh = param_from(ctx, CR_F64, CR_SHAPE(3), v0);
    set_grad(ctx, fresh, g);
    cr_optim *opt2 = cr_optim_new(ctx, &o, &fresh, 1);
    assert_int_equal(cr_optim_step(ctx, opt2), CR_OK);
    assert_memory_equal(cr_data(frozen), cr_data(fresh), sizeof v0);
    assert_string_equal(saved_param_steps(x, opt, buf, sizeof buf), "3,1,0");
    cr_optim_free(opt);
    cr_optim_free(opt2);
    cr_tensor_free(live);
    cr_tensor_free(frozen);
    cr_tensor_free(nograd);
    cr_tensor_free(fresh);
  }
}

/* ================================================================ checkpoints */

/* Options exercising every buffer of each kind. */
static cr_optim_opts full_opts(cr_optim_kind kind) {
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

static void model_init(cr_ctx *ctx, model *m) {
  cr_rng *rng = cr_rng_new(7);
  m->p[0] = param_from(ctx, CR_F64, CR_SHAPE(3, 4), NULL);
  m->p[1] = param_from(ctx, CR_F32, CR_SHAPE(5), NULL);
  m->p[2] = param_from(ctx, CR_F64, CR_SHAPE(2), NULL);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_fill_normal(ctx, m->p[i], rng, 0, 1), CR_OK);
  cr_rng_free(rng);
}

static void model_free(model *m) {
  for (int i = 0; i < 3; i++)
    cr_tensor_free(m->p[i]);
}

static cr_optim *model_optim(cr_ctx *ctx, model *m, cr_optim_kind kind) {
  cr_optim_opts o = full_opts(kind);
  cr_optim *opt = cr_optim_new(ctx, &o, m->p, 2);
  assert_non_null(opt);
  assert_int_equal(cr_optim_add_group(ctx, opt, &m->p[2], 1, o.lr * 3), 1);
  return opt;
}

/* Training step k (1-based): gradients drawn from seed k, param 2 frozen
 * for k <= 3, lr from a schedule; then the update. */
static void train_step(cr_ctx *ctx, model *m, cr_optim *opt, int k) {
  static cr_sched s = {.kind = CR_SCHED_COSINE, .t_max = 7, .eta_min = 1e-4};
  cr_rng *rng = cr_rng_new((uint64_t)k);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_fill_normal(ctx, grad_of(ctx, m->p[i]), rng, 0, 1), CR_OK);
  cr_rng_free(rng);
  cr_set_requires_grad(m->p[2], k > 3);
  cr_sched_apply(&s, opt, cr_optim_steps(opt));
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
}

static void save_all(fx *x, model *m, cr_optim *opt, const char *path) {
  cr_st_writer *w = cr_st_writer_new();
  static const char *names[3] = {"p0", "p1", "p2"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_st_writer_add(x->ctx, w, names[i], m->p[i]), CR_OK);
  assert_int_equal(cr_optim_save(x->ctx, opt, w, "optim."), CR_OK);
  assert_int_equal(cr_st_writer_save(x->ctx, w, path), CR_OK);
  cr_st_writer_free(w);
}

static void test_resume_exact(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  enum { N = 10 };
  for (int kind = 0; kind < CR_OPTIM_NUM_KINDS; kind++) {
    /* straight through */
    model a;
    model_init(ctx, &a);
    cr_optim *oa = model_optim(ctx, &a, (cr_optim_kind)kind);
    for (int k = 1; k <= N; k++)
      train_step(ctx, &a, oa, k);

    /* half, save, load into fresh parameters and optimizer, the other half */
    model b;
    model_init(ctx, &b);
    cr_optim *ob = model_optim(ctx, &b, (cr_optim_kind)kind);
    for (int k = 1; k <= N / 2; k++)
      train_step(ctx, &b, ob, k);
    save_all(x, &b, ob, x->path);
    double lr_b = cr_optim_get_lr(ob, 1);
    cr_optim_free(ob);
    model_free(&b);

    model c;
    model_init(ctx, &c); /* different values: all must come from the file */
    for (int i = 0; i < 3; i++)
      assert_int_equal(cr_fill(ctx, c.p[i], 42), CR_OK);
    cr_optim *oc = model_optim(ctx, &c, (cr_optim_kind)kind);
    cr_st_file *f = cr_st_open(ctx, x->path);
    assert_non_null(f);
    static const char *names[3] = {"p0", "p1", "p2"};
    for (int i = 0; i < 3; i++)
      assert_int_equal(cr_st_read_into(ctx, f, names[i], c.p[i]), CR_OK);
    assert_int_equal(cr_optim_load(ctx, oc, f, "optim."), CR_OK);
    cr_st_close(f);
    assert_int_equal(cr_optim_steps(oc), N / 2);
    assert_true(cr_optim_get_lr(oc, 1) == lr_b);
    assert_true(cr_optim_get_base_lr(oc, 1) == cr_optim_get_base_lr(oa, 1));
    for (int k = N / 2 + 1; k <= N; k++)
      train_step(ctx, &c, oc, k);

    for (int i = 0; i < 3; i++)
      assert_memory_equal(cr_data(a.p[i]), cr_data(c.p[i]),
                          (size_t)cr_numel(a.p[i]) * cr_dtype_size(cr_dtype_of(a.p[i])));
    /* and the optimizers' states are identical too */
    char pa[160], pc[160];
    snprintf(pa, sizeof pa, "%s/a.safetensors", x->dir);
    snprintf(pc, sizeof pc, "%s/c.safetensors", x->dir);
    save_all(x, &a, oa, pa);
    save_all(x, &c, oc, pc);
    FILE *fa = fopen(pa, "rb"), *fc = fopen(pc, "rb");
    char ba[8192], bc[8192];
    size_t na = fread(ba, 1, sizeof ba, fa), nc = fread(bc, 1, sizeof bc, fc);
    fclose(fa);
    fclose(fc);
    assert_true(na == nc && na < sizeof ba);
    assert_memory_equal(ba, bc, na);
    print_message("resume %-8s %d steps straight == %d + save/load + %d: bit-identical\n",
                  cr_optim_kind_name((cr_optim_kind)kind), N, N / 2, N - N / 2);
    cr_optim_free(oa);
    cr_optim_free(oc);
    model_free(&a);
    model_free(&c);
  }
}

/* The whole state of opt as the bytes of a checkpoint. */
static size_t snapshot(fx *x, cr_optim *opt, char *buf, size_t n) {
  char p[160];
  snprintf(p, sizeof p, "%s/snap.safetensors", x->dir);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(x->ctx, opt, w, "s."), CR_OK);
  assert_int_equal(cr_st_writer_save(x->ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  FILE *f = fopen(p, "rb");
  size_t k = fread(buf, 1, n, f);
  fclose(f);
  assert_true(k < n);
  return k;
}

/* Save opt to its own file under prefix "optim."; returns the opened file. */
static cr_st_file *save_open(fx *x, cr_optim *opt, const char *name) {
  char p[160];
  snprintf(p, sizeof p, "%s/%s", x->dir, name);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(x->ctx, opt, w, "optim."), CR_OK);
  assert_int_equal(cr_st_writer_save(x->ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  cr_st_file *f = cr_st_open(x->ctx, p);
  assert_non_null(f);
  return f;
}

static void expect_load_failure(fx *x, cr_optim *opt, cr_st_file *f, const char *prefix,
                                const char *msg_start) {
  static char before[16384], after[16384];
  size_t nb = snapshot(x, opt, before, sizeof before);
  assert_int_not_equal(cr_optim_load(x->ctx, opt, f, prefix), CR_OK);
  const char *msg = cr_ctx_error(x->ctx);
  if (strncmp(msg, msg_start, strlen(msg_start)))
    fail_msg("got   '%s'\nwanted '%s...'", msg, msg_start);
  cr_ctx_clear_error(x->ctx);
  size_t na = snapshot(x, opt, after, sizeof after);
  assert_int_equal(na, nb);
  assert_memory_equal(before, after, na);
}

static void test_load_failures(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  char want[600];
  /* the victim: Adam with amsgrad over [3,4] and [5], a few steps in */
  model m;
  model_init(ctx, &m);
  cr_optim_opts o = full_opts(CR_ADAM);
  cr_optim *opt = cr_optim_new(ctx, &o, m.p, 2);
  for (int k = 1; k <= 3; k++)
    train_step(ctx, &m, opt, k);

  /* wrong kind */
  model other;
  model_init(ctx, &other);
  cr_optim_opts so = full_opts(CR_SGD);
  cr_optim *sgd = cr_optim_new(ctx, &so, other.p, 2);
  cr_st_file *f = save_open(x, sgd, "sgd.safetensors");
  snprintf(want, sizeof want,
           "%s/sgd.safetensors: metadata 'optim.kind' is 'sgd', but the "
           "optimizer is adam",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
  snprintf(want, sizeof want,
           "%s/sgd.safetensors: no optimizer state under prefix 'nope.' "
           "(metadata 'nope.kind' is missing)",
           x->dir);
  expect_load_failure(x, opt, f, "nope.", want);
  cr_st_close(f);
  cr_optim_free(sgd);

  /* missing buffer: the same kind without amsgrad has no max_exp_avg_sq (the
   * other buffers of param 0 are present, and must not be read either) */
  cr_optim_opts plain = o;
  plain.amsgrad = false;
  cr_optim *adam_plain = cr_optim_new(ctx, &plain, other.p, 2);
  for (int k = 1; k <= 2; k++)
    train_step(ctx, &other, adam_plain, k);
  f = save_open(x, adam_plain, "plain.safetensors");
  snprintf(want, sizeof want, "%s/plain.safetensors: no tensor named 'optim.0.max_exp_avg_sq'",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(adam_plain);

  /* a buffer value that no run produces: a NaN momentum, a negative second
   * moment (its square root would be NaN) */
  cr_optim *same = cr_optim_new(ctx, &o, other.p, 2);
  for (int k = 1; k <= 2; k++)
    train_step(ctx, &other, same, k);
  static const struct { const char *name; double v; const char *want; } bad[] = {
      {"optim.1.exp_avg", NAN, "holds nan at index 2, expected finite values"},
      {"optim.0.exp_avg_sq", -1, "holds -1 at index 2, expected finite values >= 0"},
  };
  for (int b = 0; b < 2; b++) {
    cr_st_file *good = save_open(x, same, "same.safetensors");
    cr_st_writer *w = cr_st_writer_new();
    for (int i = 0; i < cr_st_meta_count(good); i++)
      assert_int_equal(cr_st_writer_set_meta(ctx, w, cr_st_meta_key(good, i),
                                             cr_st_meta(good, cr_st_meta_key(good, i))), CR_OK);
    for (int i = 0; i < cr_st_count(good); i++) {
      cr_tensor *t = cr_st_get(ctx, good, cr_st_name(good, i));
      if (!strcmp(cr_st_name(good, i), bad[b].name))
        cr_set_flat(t, 2, bad[b].v);
      assert_int_equal(cr_st_writer_add(ctx, w, cr_st_name(good, i), t), CR_OK);
      cr_tensor_free(t);
    }
    char p[200];
    snprintf(p, sizeof p, "%s/bad.safetensors", x->dir);
    assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
    cr_st_writer_free(w);
    cr_st_close(good);
    f = cr_st_open(ctx, p);
    snprintf(want, sizeof want, "%s: tensor '%s' %s", p, bad[b].name, bad[b].want);
    expect_load_failure(x, opt, f, "optim.", want);
    cr_st_close(f);
  }
  cr_optim_free(same);

  /* wrong shape of the second parameter's buffer (the first's would fit) */
  cr_tensor *q[2] = {param_from(ctx, CR_F64, CR_SHAPE(3, 4), NULL),
                     param_from(ctx, CR_F32, CR_SHAPE(6), NULL)};
  cr_optim *shaped = cr_optim_new(ctx, &o, q, 2);
  f = save_open(x, shaped, "shape.safetensors");
  snprintf(want, sizeof want,
           "%s/shape.safetensors: tensor 'optim.1.exp_avg' has shape [6] in "
           "the file, but the destination has shape [5]",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(shaped);

  /* wrong number of parameters, and of groups */
  cr_optim *one = cr_optim_new(ctx, &o, q, 1);
  f = save_open(x, one, "one.safetensors");
  snprintf(want, sizeof want,
           "%s/one.safetensors: metadata 'optim.num_params' is 1, but the "
           "optimizer has 2 parameters",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  assert_int_equal(cr_optim_add_group(ctx, one, &q[1], 1, 0.1), 1);
  f = save_open(x, one, "two.safetensors");
  snprintf(want, sizeof want,
           "%s/two.safetensors: metadata 'optim.num_groups' is 2, but the "
           "optimizer has 1 group",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(one);
  cr_tensor_free(q[0]);
  cr_tensor_free(q[1]);

  /* the same counts split differently into groups */
  cr_tensor *r[3], *s3[3];
  for (int i = 0; i < 3; i++) {
    r[i] = param_from(ctx, CR_F64, CR_SHAPE(2), NULL);
    s3[i] = param_from(ctx, CR_F64, CR_SHAPE(2), NULL);
  }
  cr_optim *victim = cr_optim_new(ctx, &o, r, 2);
  assert_int_equal(cr_optim_add_group(ctx, victim, &r[2], 1, 0.5), 1);
  cr_optim *split = cr_optim_new(ctx, &o, s3, 1);
  assert_int_equal(cr_optim_add_group(ctx, split, &s3[1], 2, 0.5), 1);
  f = save_open(x, split, "split.safetensors");
  snprintf(want, sizeof want,
           "%s/split.safetensors: metadata 'optim.group_sizes' is '1,2', but "
           "the optimizer's groups have 2,1 parameters",
           x->dir);
  expect_load_failure(x, victim, f, "optim.", want);
  cr_st_close(f);

  /* malformed metadata */
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(ctx, victim, w, "optim."), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "optim.param_steps", "0,x,0"), CR_OK);
  snprintf(want, sizeof want, "%s/bad.safetensors", x->dir);
  assert_int_equal(cr_st_writer_save(ctx, w, want), CR_OK);
  cr_st_writer_free(w);
  f = cr_st_open(ctx, want);
  assert_non_null(f);
  snprintf(want, sizeof want,
           "%s/bad.safetensors: metadata 'optim.param_steps' is '0,x,0': "
           "expected 3 comma-separated counts >= 0",
           x->dir);
  expect_load_failure(x, victim, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(victim);
  cr_optim_free(split);
  for (int i = 0; i < 3; i++) {
    cr_tensor_free(r[i]);
    cr_tensor_free(s3[i]);
  }

  /* a pending error: nothing happens */
  f = save_open(x, opt, "self.safetensors");
  cr_ctx_set_error(ctx, CR_ERR_ARG, "earlier");
  assert_int_equal(cr_optim_load(ctx, opt, f, "optim."), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "earlier");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_optim_load(ctx, opt, f, "optim."), CR_OK);
  cr_st_close(f);

  /* the optimizer still trains */
  train_step(ctx, &m, opt, 4);
  assert_int_equal(cr_optim_steps(opt), 4);
  cr_optim_free(opt);
  model_free(&m);
  model_free(&other);
}

/* ================================================================ older checkpoints
 *
 * tests/fixtures/optim_ckpt/<kind>.safetensors were written by the
 * optimizer code as it was before the descriptor table (commit 7b58bde):
 * the model of train_step after 5 steps (p0, p1, p2 and the optimizer under
 * "optim."), the gradients of 5 more steps (grad<k>.p<i>, k = 6..10), and
 * what those 5 steps gave: the parameters want.p<i> and the optimizer's
 * state under "after.".  Loading must work and the continuation must be
 * the same bits.  CR_WRITE_OPTIM_CKPT=DIR writes the files instead. */

static void legacy_step(cr_ctx *ctx, model *m, cr_optim *opt, int k, const cr_st_file *f,
                        cr_st_writer *w) {
  static cr_sched s = {.kind = CR_SCHED_COSINE, .t_max = 7, .eta_min = 1e-4};
  cr_rng *rng = cr_rng_new((uint64_t)k);
  char name[32];
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "grad%d.p%d", k, i);
    if (f)
      assert_int_equal(cr_st_read_into(ctx, f, name, grad_of(ctx, m->p[i])), CR_OK);
    else
      assert_int_equal(cr_fill_normal(ctx, grad_of(ctx, m->p[i]), rng, 0, 1), CR_OK);
    if (w)
      assert_int_equal(cr_st_writer_add(ctx, w, name, grad_of(ctx, m->p[i])), CR_OK);
  }
  cr_rng_free(rng);
  cr_set_requires_grad(m->p[2], k > 3);
  cr_sched_apply(&s, opt, cr_optim_steps(opt));
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
}

static void write_legacy(cr_ctx *ctx, cr_optim_kind kind, const char *dir) {
  model m;
  model_init(ctx, &m);
  cr_optim *opt = model_optim(ctx, &m, kind);
  for (int k = 1; k <= 5; k++)
    train_step(ctx, &m, opt, k);
  cr_st_writer *w = cr_st_writer_new();
  static const char *names[3] = {"p0", "p1", "p2"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_st_writer_add(ctx, w, names[i], m.p[i]), CR_OK);
  assert_int_equal(cr_optim_save(ctx, opt, w, "optim."), CR_OK);
  for (int k = 6; k <= 10; k++)
    legacy_step(ctx, &m, opt, k, NULL, w);
  char name[32];
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "want.p%d", i);
    assert_int_equal(cr_st_writer_add(ctx, w, name, m.p[i]), CR_OK);
  }
  assert_int_equal(cr_optim_save(ctx, opt, w, "after."), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "format", "chainrule-optim-ckpt-v1"), CR_OK);
  char path[512];
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, cr_optim_kind_name(kind));
  assert_int_equal(cr_st_writer_save(ctx, w, path), CR_OK);
  cr_st_writer_free(w);
  cr_optim_free(opt);
  model_free(&m);
}

static void test_legacy_checkpoints(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  const char *write_dir = getenv("CR_WRITE_OPTIM_CKPT");
  for (int kind = CR_SGD; kind <= CR_ADAGRAD; kind++) { /* the kinds 7b58bde had */
    if (write_dir) {
      write_legacy(ctx, (cr_optim_kind)kind, write_dir);
      continue;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", FIXTURES "/optim_ckpt",
             cr_optim_kind_name((cr_optim_kind)kind));
    cr_st_file *f = cr_st_open(ctx, path);
    if (!f)
      fail_msg("%s", cr_ctx_error(ctx));
    model m;
    model_init(ctx, &m);
    cr_optim *opt = model_optim(ctx, &m, (cr_optim_kind)kind);
    static const char *names[3] = {"p0", "p1", "p2"};
    for (int i = 0; i < 3; i++)
      assert_int_equal(cr_st_read_into(ctx, f, names[i], m.p[i]), CR_OK);
    if (cr_optim_load(ctx, opt, f, "optim.") != CR_OK)
      fail_msg("%s", cr_ctx_error(ctx));
    for (int k = 6; k <= 10; k++)
      legacy_step(ctx, &m, opt, k, f, NULL);
    char name[32];
    for (int i = 0; i < 3; i++) {
      snprintf(name, sizeof name, "want.p%d", i);
      cr_tensor *want = cr_st_get(ctx, f, name);
      assert_non_null(want);
      assert_memory_equal(cr_data(want), cr_data(m.p[i]),
                          (size_t)cr_numel(want) * cr_dtype_size(cr_dtype_of(want)));
      cr_tensor_free(want);
    }
    /* the state after the 5 steps, tensor by tensor and entry by entry */
    cr_st_writer *w = cr_st_writer_new();
    assert_int_equal(cr_optim_save(ctx, opt, w, "after."), CR_OK);
    char p[160];
    snprintf(p, sizeof p, "%s/after.safetensors", x->dir);
    assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
    cr_st_writer_free(w);
    cr_st_file *g = cr_st_open(ctx, p);
    assert_non_null(g);
    for (int i = 0; i < cr_st_count(g); i++) {
      cr_tensor *a = cr_st_get(ctx, g, cr_st_name(g, i));
      cr_tensor *b = cr_st_get(ctx, f, cr_st_name(g, i));
      if (!b)
        fail_msg("%s: %s", path, cr_ctx_error(ctx));
      assert_int_equal(cr_numel(a), cr_numel(b));
      assert_int_equal(cr_dtype_of(a), cr_dtype_of(b));
      assert_memory_equal(cr_data(a), cr_data(b),
                          (size_t)cr_numel(a) * cr_dtype_size(cr_dtype_of(a)));
      cr_tensor_free(a);
      cr_tensor_free(b);
    }
    for (int i = 0; i < cr_st_meta_count(g); i++) {
      const char *key = cr_st_meta_key(g, i);
      assert_non_null(cr_st_meta(f, key));
      assert_string_equal(cr_st_meta(g, key), cr_st_meta(f, key));
    }
    print_message("legacy %-8s checkpoint of 7b58bde loads; 5 more steps: bit-identical "
                  "parameters and %d state tensors\n",
                  cr_optim_kind_name((cr_optim_kind)kind), cr_st_count(g));
    cr_st_close(g);
    cr_st_close(f);
    cr_optim_free(opt);
    model_free(&m);
  }
}

/* ================================================================ no malloc, errors */

static void test_no_malloc_in_step(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  for (int kind = 0; kind < CR_OPTIM_NUM_KINDS; kind++) {
    model m;
    model_init(ctx, &m);
    cr_optim *opt = model_optim(ctx, &m, (cr_optim_kind)kind);
    cr_rng *rng = cr_rng_new(3);
    for (int i = 0; i < 3; i++)
      assert_int_equal(cr_fill_normal(ctx, grad_of(ctx, m.p[i]), rng, 0, 1), CR_OK);
    cr_sched s = {.kind = CR_SCHED_COSINE, .t_max = 10};
    size_t before = cr_alloc_count();
    for (int k = 0; k < 10; k++) {
      cr_sched_apply(&s, opt, k);
      (void)cr_clip_grad_norm(ctx, m.p, 3, 1.0);
      assert_int_equal(cr_clip_grad_value(ctx, m.p, 3, 0.5), CR_OK);
      assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    }
    assert_int_equal(cr_alloc_count(), before);
    cr_rng_free(rng);
    cr_optim_free(opt);
    model_free(&m);
  }
}

static void expect_new_error(cr_ctx *ctx, const cr_optim_opts *o, cr_tensor *const *ps, int n,
                             const char *msg) {
  assert_null(cr_optim_new(ctx, o, ps, n));
  assert_string_equal(cr_ctx_error(ctx), msg);
  cr_ctx_clear_error(ctx);
}

static void test_errors(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_tensor *p = param_from(ctx, CR_F64, CR_SHAPE(2), (const double[]){1, 2});
  cr_optim_opts o;
  cr_optim_default_opts(CR_SGD, &o);
  o.lr = -1;
  expect_new_error(ctx, &o, &p, 1, "optim: sgd lr -1 must be >= 0");
  cr_optim_default_opts(CR_SGD, &o);
  o.nesterov = true;
  expect_new_error(ctx, &o, &p, 1,
                   "optim: sgd nesterov needs momentum > 0 and dampening 0 (momentum 0, dampening 0)");
  cr_optim_default_opts(CR_ADAM, &o);
  o.beta2 = 1;
  expect_new_error(ctx, &o, &p, 1, "optim: adam beta2 1 must be in [0, 1)");
  cr_optim_default_opts(CR_RMSPROP, &o);
  o.eps = INFINITY;
  expect_new_error(ctx, &o, &p, 1, "optim: rmsprop eps inf must be >= 0 and finite");
  cr_optim_default_opts(CR_ADAGRAD, &o);
  o.initial_accumulator_value = -0.5;
  expect_new_error(ctx, &o, &p, 1, "optim: adagrad initial_accumulator_value -0.5 must be >= 0");
  o.kind = (cr_optim_kind)9;
  expect_new_error(ctx, &o, &p, 1, "optim: unknown kind 9");

  cr_optim_default_opts(CR_ADAM, &o);
  cr_tensor *arena = cr_zeros(ctx, CR_F64, CR_SHAPE(2));
  cr_tensor *two[2] = {p, arena};
  expect_new_error(ctx, &o, two, 2,
                   "optim: param 1 [2] is not persistent (parameters are made "
                   "with cr_tensor_new or cr_persist)");
  cr_tensor *dup[2] = {p, p};
  expect_new_error(ctx, &o, dup, 2,
                   "optim: param 1 [2] is the same tensor as param 0 (a "
                   "parameter may appear once)");
  expect_new_error(ctx, &o, NULL, 0,
                   "optim: a group needs at least one parameter (got 0, "
                   "params NULL)");
  expect_new_error(ctx, NULL, &p, 1, "optim: opts is NULL (use cr_optim_default_opts)");

  /* a pending error is kept */
  cr_ctx_set_error(ctx, CR_ERR_SHAPE, "first");
  assert_null(cr_optim_new(ctx, &o, &p, 1));
  assert_string_equal(cr_ctx_error(ctx), "first");
  cr_ctx_clear_error(ctx);

  /* a bad lr reaching a step: the step changes nothing */
  cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
  assert_non_null(opt);
  set_grad(ctx, p, (const double[]){1, 1});
  cr_optim_set_lr(opt, 0, -0.5);
  assert_int_equal(cr_optim_step(ctx, opt), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "optim_step: group 0 lr -0.5 must be >= 0 and finite "
                                         "(set by cr_optim_set_lr or a schedule)");
  cr_ctx_clear_error(ctx);
  assert_true(cr_get_flat(p, 0) == 1 && cr_get_flat(p, 1) == 2);
  assert_int_equal(cr_optim_steps(opt), 0);
  cr_sched bad = {.kind = CR_SCHED_STEP, .step_size = 0, .gamma = 0.5};
  cr_sched_apply(&bad, opt, 3);
  assert_true(isnan(cr_optim_get_lr(opt, 0)));
  assert_int_equal(cr_optim_step(ctx, opt), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  cr_optim_free(opt);
  cr_optim_free(NULL);
  cr_optim_zero_grad(NULL);
  cr_tensor_free(p);
}

static void test_names_defaults(void **state) {
  (void)state;
  static const char *names[] = {"sgd",   "adam",  "adamw",  "rmsprop", "adagrad",
                                "nadam", "radam", "adamax", "adadelta"};
  assert_int_equal(CR_OPTIM_NUM_KINDS, sizeof names / sizeof names[0]);
  for (int k = 0; k < CR_OPTIM_NUM_KINDS; k++) {
    assert_string_equal(cr_optim_kind_name((cr_optim_kind)k), names[k]);
    assert_int_equal(cr_optim_kind_from_name(names[k]), k);
  }
  assert_int_equal(cr_optim_kind_from_name("lamb"), -1);
  assert_int_equal(cr_optim_kind_from_name(NULL), -1);
  assert_string_equal(cr_optim_kind_name(CR_OPTIM_NUM_KINDS), "unknown");
  assert_string_equal(cr_optim_kind_name((cr_optim_kind)-1), "unknown");
  cr_optim_opts o;
  cr_optim_default_opts(CR_ADAMW, &o);
  assert_true(o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8 &&
              o.weight_decay == 1e-2 && !o.amsgrad && !o.maximize);
  cr_optim_default_opts(CR_ADAM, &o);
  assert_true(o.weight_decay == 0);
  cr_optim_default_opts(CR_RMSPROP, &o);
  assert_true(o.lr == 1e-2 && o.alpha == 0.99 && o.eps == 1e-8 && o.momentum == 0);
  cr_optim_default_opts(CR_ADAGRAD, &o);
  assert_true(o.lr == 1e-2 && o.eps == 1e-10 && o.lr_decay == 0);
  cr_optim_default_opts(CR_SGD, &o);
  assert_true(o.lr == 1e-3 && o.momentum == 0 && !o.nesterov);
  /* PyTorch 1.13's defaults of the others */
  cr_optim_default_opts(CR_NADAM, &o);
  assert_true(o.lr == 2e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8 &&
              o.weight_decay == 0 && o.momentum_decay == 4e-3);
  cr_optim_default_opts(CR_RADAM, &o);
  assert_true(o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8);
  cr_optim_default_opts(CR_ADAMAX, &o);
  assert_true(o.lr == 2e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8);
  cr_optim_default_opts(CR_ADADELTA, &o);
  assert_true(o.lr == 1.0 && o.rho == 0.9 && o.eps == 1e-6 && o.weight_decay == 0);
  cr_optim_default_opts((cr_optim_kind)42, &o); /* SGD's, with that kind */
  assert_true(o.kind == (cr_optim_kind)42 && o.lr == 1e-3 && o.momentum == 0);
}

/* maximize ascends: the same trajectory as descending on -grad. */
static void test_maximize(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  for (int kind = 0; kind < CR_OPTIM_NUM_KINDS; kind++) {
    cr_optim_opts o = full_opts((cr_optim_kind)kind);
    const double v0[2] = {0.3, -0.7};
    cr_tensor *a = param_from(ctx, CR_F64, CR_SHAPE(2), v0);
    cr_tensor *b = param_from(ctx, CR_F64, CR_SHAPE(2), v0);
    cr_optim *oa = cr_optim_new(ctx, &o, &a, 1);
    o.maximize = true;
    cr_optim *ob = cr_optim_new(ctx, &o, &b, 1);
    for (int k = 1; k <= 4; k++) {
      set_grad(ctx, a, (const double[]){0.1 * k, -0.2});
      set_grad(ctx, b, (const double[]){-0.1 * k, 0.2});
      assert_int_equal(cr_optim_step(ctx, oa), CR_OK);
      assert_int_equal(cr_optim_step(ctx, ob), CR_OK);
    }
    assert_memory_equal(cr_data(a), cr_data(b), sizeof v0);
    cr_optim_free(oa);
    cr_optim_free(ob);
    cr_tensor_free(a);
    cr_tensor_free(b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_optim_fixtures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sched_fixtures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sequential_semantics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sched_parse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_groups_sgd, setup, teardown),
      cmocka_unit_test_setup_teardown(test_freeze, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resume_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_legacy_checkpoints, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_malloc_in_step, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_names_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_maximize, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
