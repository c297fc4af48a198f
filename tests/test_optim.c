/* Optimizers and gradient clipping: parity with PyTorch on every committed
 * fixture (tests/fixtures/optim), plus hand-computed clipping and parameter
 * groups, freezing, no malloc in steps, and the exact text of the main
 * error messages.  Checkpoints: test_optim_ckpt.c; schedules: test_sched.c. */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "optim_test_util.h"

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
  expect_new_error(
      ctx, &o, &p, 1,
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

/* Bad hyper-parameters of every rule, on the new kinds: the message names
 * the optimizer, the field and the value (PyTorch: "Invalid beta parameter
 * at index 0: 1.0"). */
static void test_errors_new_kinds(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_tensor *p = param_from(ctx, CR_F64, CR_SHAPE(2), (const double[]){1, 2});
  static const struct {
    cr_optim_kind kind;
    const char *name;
    double v;
    const char *msg;
  } bad[] = {
      {CR_NADAM, "momentum_decay", -0.1, "optim: nadam momentum_decay -0.1 must be >= 0"},
      {CR_NADAM, "beta1", 1, "optim: nadam beta1 1 must be in [0, 1)"},
      {CR_RADAM, "beta2", -0.5, "optim: radam beta2 -0.5 must be in [0, 1)"},
      {CR_RADAM, "lr", NAN, "optim: radam lr nan must be >= 0"},
      {CR_ADAMAX, "eps", -1e-8, "optim: adamax eps -1e-08 must be >= 0"},
      {CR_ADAMAX, "weight_decay", INFINITY,
       "optim: adamax weight_decay inf must be >= 0 and finite"},
      {CR_ADADELTA, "rho", 1.5, "optim: adadelta rho 1.5 must be in [0, 1]"},
      {CR_ADADELTA, "rho", NAN, "optim: adadelta rho nan must be in [0, 1]"},
      {CR_SGD, "dampening", INFINITY, "optim: sgd dampening inf must be finite"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_optim_opts o;
    cr_optim_default_opts(bad[i].kind, &o);
    assert_int_equal(cr_optim_opts_set(ctx, &o, bad[i].name, bad[i].v), CR_OK);
    expect_new_error(ctx, &o, &p, 1, bad[i].msg);
  }
  cr_optim_opts o;
  cr_optim_default_opts(CR_ADADELTA, &o);
  o.rho = 1; /* [0, 1]: PyTorch allows rho = 1 */
  cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
  assert_non_null(opt);
  cr_optim_free(opt);
  /* a group's lr is checked against the same rule */
  cr_optim_default_opts(CR_NADAM, &o);
  opt = cr_optim_new(ctx, &o, &p, 1);
  cr_tensor *q = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  assert_int_equal(cr_optim_add_group(ctx, opt, &q, 1, -2), -1);
  assert_string_equal(cr_ctx_error(ctx), "optim: nadam lr -2 must be >= 0");
  cr_ctx_clear_error(ctx);
  cr_optim_free(opt);
  cr_tensor_free(q);
  cr_tensor_free(p);
}

/* The table seen through the API: every kind has lr first, unique names,
 * valid defaults; hyper-parameters by name, on options and on a live
 * optimizer. */
static void test_hyper_by_name(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_tensor *p = param_from(ctx, CR_F64, CR_SHAPE(2), (const double[]){1, 2});
  for (int k = 0; k < CR_OPTIM_NUM_KINDS; k++) {
    assert_string_equal(cr_optim_hyper_name((cr_optim_kind)k, 0), "lr");
    int n = 0;
    for (const char *h; (h = cr_optim_hyper_name((cr_optim_kind)k, n)); n++)
      for (int j = 0; j < n; j++)
        assert_string_not_equal(h, cr_optim_hyper_name((cr_optim_kind)k, j));
    assert_true(n >= 4);
    assert_null(cr_optim_hyper_name((cr_optim_kind)k, -1));
    cr_optim_opts o;
    cr_optim_default_opts((cr_optim_kind)k, &o);
    cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
    assert_non_null(opt);
    for (int i = 1; i < n; i++) { /* get_hyper reads what the defaults set */
      const char *h = cr_optim_hyper_name((cr_optim_kind)k, i);
      cr_optim_opts one = o;
      assert_int_equal(cr_optim_opts_set(ctx, &one, h, cr_optim_get_hyper(opt, h)), CR_OK);
      assert_memory_equal(&one, &o, sizeof o);
    }
    assert_true(isnan(cr_optim_get_hyper(opt, "lr")) && isnan(cr_optim_get_hyper(opt, "nope")));
    cr_optim_free(opt);
  }
  assert_null(cr_optim_hyper_name(CR_OPTIM_NUM_KINDS, 0));
  static const char *const adam[] = {"lr",           "beta1",   "beta2",   "eps",
                                     "weight_decay", "amsgrad", "maximize"};
  for (int i = 0; i < 7; i++)
    assert_string_equal(cr_optim_hyper_name(CR_ADAM, i), adam[i]);
  assert_null(cr_optim_hyper_name(CR_ADAM, 7));

  cr_optim_opts o;
  cr_optim_default_opts(CR_ADAM, &o);
  assert_int_equal(cr_optim_opts_set(ctx, &o, "amsgrad", 1), CR_OK);
  assert_true(o.amsgrad);
  assert_int_equal(cr_optim_opts_set(ctx, &o, "rho", 0.5), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "optim_opts_set: adam has no hyper-parameter 'rho' (lr, "
                                         "beta1, beta2, eps, weight_decay, amsgrad, maximize)");
  cr_ctx_clear_error(ctx);

  /* a live optimizer: checked like cr_optim_new, refused when a buffer is missing */
  o.amsgrad = false;
  cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
  assert_int_equal(cr_optim_set_hyper(ctx, opt, "beta1", 0.8), CR_OK);
  assert_true(cr_optim_get_hyper(opt, "beta1") == 0.8);
  static const struct {
    const char *name;
    double v;
    const char *msg;
  } bad[] = {
      {"beta1", 1.5, "optim_set_hyper: adam beta1 1.5 must be in [0, 1)"},
      {"amsgrad", 1,
       "optim_set_hyper: adam amsgrad 1 needs the state buffer 'max_exp_avg_sq', "
       "which this optimizer was made without (give amsgrad when making it)"},
      {"lr", 0.1, "optim_set_hyper: adam lr is set per group (cr_optim_set_lr)"},
      {"momentum", 0.9,
       "optim_opts_set: adam has no hyper-parameter 'momentum' (lr, beta1, "
       "beta2, eps, weight_decay, amsgrad, maximize)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(cr_optim_set_hyper(ctx, opt, bad[i].name, bad[i].v), CR_ERR_ARG);
    assert_string_equal(cr_ctx_error(ctx), bad[i].msg);
    cr_ctx_clear_error(ctx);
  }
  assert_true(cr_optim_get_hyper(opt, "beta1") == 0.8 && cr_optim_get_hyper(opt, "amsgrad") == 0);
  cr_optim_free(opt);
  /* turning a buffer's option off is fine (the buffer stays, unused) */
  o.amsgrad = true;
  opt = cr_optim_new(ctx, &o, &p, 1);
  assert_int_equal(cr_optim_set_hyper(ctx, opt, "amsgrad", 0), CR_OK);
  cr_optim_free(opt);
  cr_optim_default_opts(CR_SGD, &o);
  opt = cr_optim_new(ctx, &o, &p, 1);
  assert_int_equal(cr_optim_set_hyper(ctx, opt, "momentum", 0.9), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx),
                      "optim_set_hyper: sgd momentum 0.9 needs the state buffer 'momentum_buffer', "
                      "which this optimizer was made without (give momentum when making it)");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_optim_set_hyper(ctx, opt, "nesterov", 1), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "optim_set_hyper: sgd nesterov needs momentum > 0 and "
                                         "dampening 0 (momentum 0, dampening 0)");
  cr_ctx_clear_error(ctx);
  cr_optim_free(opt);
  cr_tensor_free(p);
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
      cmocka_unit_test_setup_teardown(test_clip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_groups_sgd, setup, teardown),
      cmocka_unit_test_setup_teardown(test_freeze, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_malloc_in_step, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_names_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_new_kinds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hyper_by_name, setup, teardown),
      cmocka_unit_test_setup_teardown(test_maximize, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
