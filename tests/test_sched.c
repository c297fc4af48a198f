/* Learning-rate schedules: parity with PyTorch on every committed fixture
 * (tests/fixtures/sched), the SequentialLR semantics of warmups, and the
 * spec parser with its messages. */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "optim_test_util.h"

/* Metadata that is not a constructor argument of the schedule. */
static bool not_a_param(const char *key) {
  static const char *const skip[] = {"schedule",  "last_epoch",   "max_lr", "optimizer",
                                     "lr1",       "lr",           "steps",  "format",
                                     "generator", "torch_version"};
  for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
    if (!strcmp(key, skip[i]))
      return true;
  return false;
}

/* The schedules added with the table are built by the spec parser from
 * PyTorch's keyword arguments, as the metadata has them: "NAME" then
 * ":key=value" for every argument under prefix. */
static cr_sched sched_by_names(const cr_st_file *f, const char *prefix, const char *name) {
  char spec[1024];
  size_t len = (size_t)snprintf(spec, sizeof spec, "%s", name);
  const size_t np = strlen(prefix);
  for (int i = 0; i < cr_st_meta_count(f); i++) {
    const char *key = cr_st_meta_key(f, i);
    if (strncmp(key, prefix, np) || strchr(key + np, '.') || not_a_param(key + np))
      continue;
    len += (size_t)snprintf(spec + len, sizeof spec - len, ":%s=%s", key + np, cr_st_meta(f, key));
  }
  assert_true(len < sizeof spec);
  cr_sched s;
  char err[256];
  if (!cr_sched_parse(spec, &s, NULL, err, sizeof err))
    fail_msg("%s", err);
  return s;
}

/* A schedule from a fixture's metadata under prefix; SequentialLR becomes a
 * chain of warmups (the last scheduler owns the chain).  storage holds the
 * sub-schedules. */
static cr_sched sched_from_meta(const cr_st_file *f, const char *prefix, cr_sched *storage) {
  char k[96];
  snprintf(k, sizeof k, "%sschedule", prefix);
  const char *s = cr_st_meta(f, k);
  assert_non_null(s);
  if (!strcmp(s, "multisteplr"))
    return sched_by_names(f, prefix, "multistep");
  if (!strcmp(s, "onecyclelr"))
    return sched_by_names(f, prefix, "onecycle");
  if (!strcmp(s, "reducelronplateau"))
    return sched_by_names(f, prefix, "plateau");
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

/* A PLATEAU fixture: the metrics through cr_sched_plateau_step on an
 * optimizer with PyTorch's two groups; every lr and every state value after
 * every step must be PyTorch's bits.  Returns the number of values compared. */
static int replay_plateau(cr_ctx *ctx, const cr_st_file *f, cr_sched *s) {
  static const char *const names[] = {"lr", "lr1", "best", "num_bad_epochs", "cooldown_counter"};
  cr_tensor *metric = cr_st_get(ctx, f, "metric"), *t[5];
  for (int j = 0; j < 5; j++)
    assert_non_null(t[j] = cr_st_get(ctx, f, names[j]));
  cr_tensor *a = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  cr_tensor *b = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  cr_optim_opts o;
  cr_optim_default_opts(CR_SGD, &o);
  o.lr = meta_double(f, "lr");
  cr_optim *opt = cr_optim_new(ctx, &o, &a, 1);
  assert_int_equal(cr_optim_add_group(ctx, opt, &b, 1, meta_double(f, "lr1")), 1);
  int compared = 0;
  for (int64_t k = 0; k <= cr_numel(metric); k++) {
    if (k > 0)
      assert_int_equal(cr_sched_plateau_step(ctx, s, opt, cr_get_flat(metric, k - 1)), CR_OK);
    const double got[5] = {cr_optim_get_lr(opt, 0), cr_optim_get_lr(opt, 1), s->best,
                           (double)s->num_bad_epochs, (double)s->cooldown_counter};
    for (int j = 0; j < 5; j++) {
      if (j >= 2 && k == 0)
        continue; /* the state is recorded after each step */
      const double want = cr_get_flat(t[j], j >= 2 ? k - 1 : k);
      if (memcmp(&got[j], &want, sizeof want))
        fail_msg("step %lld: %s is %.17g, PyTorch's %.17g", (long long)k, names[j], got[j], want);
      compared++;
    }
  }
  cr_optim_free(opt);
  cr_tensor_free(a);
  cr_tensor_free(b);
  cr_tensor_free(metric);
  for (int j = 0; j < 5; j++)
    cr_tensor_free(t[j]);
  return compared;
}

/* A ONECYCLE fixture's momentum: cr_sched_momentum, and what cr_sched_apply
 * sets in an optimizer of the fixture's kind (SGD with momentum: momentum;
 * Adam: beta1), with the lr, at every step; PyTorch's bits.  Without
 * cycle_momentum the optimizer's own momentum must stay (the fixture's is
 * constant). */
static void replay_onecycle(cr_ctx *ctx, const cr_st_file *f, const cr_sched *s) {
  cr_tensor *lr = cr_st_get(ctx, f, "lr"), *mom = cr_st_get(ctx, f, "momentum");
  assert_non_null(mom);
  const bool adam = !strcmp(cr_st_meta(f, "optimizer"), "adam");
  cr_tensor *p = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  cr_optim_opts o;
  cr_optim_default_opts(adam ? CR_ADAM : CR_SGD, &o);
  o.lr = meta_double(f, "max_lr"); /* a group's base lr is its max_lr */
  o.momentum = adam ? 0 : 0.9;
  cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
  assert_non_null(opt);
  const char *h = adam ? "beta1" : "momentum";
  for (int64_t k = 0; k < cr_numel(lr); k++) {
    const double want = cr_get_flat(mom, k), got = cr_sched_momentum(s, k);
    if (s->cycle_momentum)
      assert_memory_equal(&got, &want, sizeof want);
    else
      assert_true(isnan(got));
    cr_sched_apply(s, opt, k);
    const double lr_k = cr_optim_get_lr(opt, 0), m_k = cr_optim_get_hyper(opt, h),
                 want_lr = cr_get_flat(lr, k);
    assert_memory_equal(&lr_k, &want_lr, sizeof lr_k);
    assert_memory_equal(&m_k, &want, sizeof m_k);
  }
  cr_optim_free(opt);
  cr_tensor_free(p);
  cr_tensor_free(lr);
  cr_tensor_free(mom);
}

static void test_sched_fixtures(void **state) {
  fx *x = *state;
  char names[64][128], path[1024];
  int n = list_fixtures(FIXTURES "/sched", names, 64);
  assert_true(n >= 15);
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%.127s", FIXTURES "/sched", names[i]);
    cr_st_file *f = cr_st_open(x->ctx, path);
    if (!f)
      fail_msg("%s", cr_ctx_error(x->ctx));
    cr_sched storage[16];
    cr_sched s = sched_from_meta(f, "", storage);
    char err[128];
    assert_true(cr_sched_check(&s, err, sizeof err));
    if (s.kind == CR_SCHED_PLATEAU) {
      int m = replay_plateau(x->ctx, f, &s);
      print_message("sched %-42s %lld metrics: %d lrs and state values, all bit-exact\n", names[i],
                    (long long)s.last_epoch, m);
      cr_st_close(f);
      continue;
    }
    double base = meta_double(f, "lr");
    cr_tensor *lr = cr_st_get(x->ctx, f, "lr");
    assert_non_null(lr);
    double worst = 0;
    int exact = 0;
    for (int64_t k = 0; k < cr_numel(lr); k++) {
      double got = cr_sched_lr(&s, base, k), want = cr_get_flat(lr, k);
      worst = fmax(worst, rel_err(got, want));
      exact += !memcmp(&got, &want, sizeof got);
    }
    /* the kinds added with the table keep PyTorch's operation order (or its
     * state): every lr to the bit */
    const bool bits = (s.kind == CR_SCHED_MULTISTEP || s.kind == CR_SCHED_ONECYCLE) && !s.warmup;
    if (s.kind == CR_SCHED_ONECYCLE)
      replay_onecycle(x->ctx, f, &s);
    print_message("sched %-42s %lld steps: max rel err %.3g (%d of %lld bit-exact)%s\n", names[i],
                  (long long)cr_numel(lr) - 1, worst, exact, (long long)cr_numel(lr),
                  s.kind == CR_SCHED_ONECYCLE ? s.cycle_momentum
                                                    ? ", momentum too, also through apply"
                                                    : ", momentum left alone"
                                              : "");
    assert_true(worst <= 1e-12);
    if (bits)
      assert_int_equal(exact, cr_numel(lr));
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
      {"poly:2", "'poly:2': unknown schedule 'poly' (constant, step, exp, cosine, linear, "
                 "multistep, onecycle, plateau, warmup:N+SPEC)"},
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

/* ================================================================ the schedules of the table */

/* Specs of the new kinds: positional and NAME=VALUE fields, PyTorch's
 * defaults for what is left out, and the messages. */
static void test_sched_parse_new(void **state) {
  (void)state;
  cr_sched s, w;
  char err[300];
  assert_true(cr_sched_parse("multistep:3,8,8,15", &s, NULL, err, sizeof err));
  assert_int_equal(s.kind, CR_SCHED_MULTISTEP);
  assert_int_equal(s.n_milestones, 4);
  assert_true(s.milestones[2] == 8 && s.milestones[3] == 15 && s.gamma == 0.1);
  assert_true(cr_sched_lr(&s, 1, 2) == 1 && cr_sched_lr(&s, 1, 3) == 0.1 &&
              cr_sched_lr(&s, 1, 8) == 0.1 * pow(0.1, 2)); /* repeated: gamma^2 at once */
  assert_true(cr_sched_parse("multistep:5:0.5", &s, NULL, err, sizeof err) && s.gamma == 0.5);

  assert_true(cr_sched_parse("onecycle:100", &s, NULL, err, sizeof err));
  assert_true(s.kind == CR_SCHED_ONECYCLE && s.total_steps == 100 && s.pct_start == 0.3 &&
              !s.anneal_linear && !s.three_phase && s.cycle_momentum && s.base_momentum == 0.85 &&
              s.max_momentum == 0.95 && s.div_factor == 25 && s.final_div_factor == 1e4);
  /* at the ends of a phase the cosine gives the end values up to rounding
   * (PyTorch's too: end + (start - end) / 2 * (cos(0) + 1)) */
  assert_true(fabs(cr_sched_lr(&s, 0.1, 0) - 0.1 / 25) < 1e-17 &&
              fabs(cr_sched_momentum(&s, 0) - 0.95) < 1e-15);
  assert_true(cr_sched_lr(&s, 0.1, 29) == 0.1 && cr_sched_momentum(&s, 29) == 0.85); /* peak */
  assert_true(isnan(cr_sched_lr(&s, 0.1, 101)) && isnan(cr_sched_momentum(&s, 101)));
  assert_true(cr_sched_parse("onecycle:40:0.25:anneal_strategy=linear:three_phase=1:"
                             "cycle_momentum=0:div_factor=10:final_div_factor=100",
                             &s, NULL, err, sizeof err));
  assert_true(s.pct_start == 0.25 && s.anneal_linear && s.three_phase && !s.cycle_momentum &&
              s.div_factor == 10 && s.final_div_factor == 100);
  assert_true(isnan(cr_sched_momentum(&s, 3)));
  assert_true(cr_sched_parse("onecycle:total_steps=40", &s, NULL, err, sizeof err));

  assert_true(cr_sched_parse("plateau", &s, NULL, err, sizeof err));
  assert_true(s.kind == CR_SCHED_PLATEAU && s.factor == 0.1 && s.patience == 10 && !s.mode_max &&
              s.threshold == 1e-4 && !s.threshold_abs && s.cooldown == 0 && s.min_lr == 0 &&
              s.eps == 1e-8);
  assert_true(isnan(cr_sched_lr(&s, 0.1, 0))); /* not a function of the step */
  assert_true(cr_sched_parse("plateau:0.5:3:mode=max:threshold_mode=abs:cooldown=2:min_lr=1e-5", &s,
                             NULL, err, sizeof err));
  assert_true(s.factor == 0.5 && s.patience == 3 && s.mode_max && s.threshold_abs &&
              s.cooldown == 2 && s.min_lr == 1e-5);
  /* every parameter by PyTorch's name, T_max as t_max */
  assert_true(cr_sched_parse("cosine:T_max=10:eta_min=0.01", &s, NULL, err, sizeof err));
  assert_true(s.t_max == 10 && s.eta_min == 0.01);
  assert_true(cr_sched_parse("warmup:5+onecycle:50", &s, &w, err, sizeof err));
  assert_true(cr_sched_lr(&s, 1, 4) == cr_sched_lr(&w, 1, 4) &&
              fabs(cr_sched_lr(&s, 1, 5) - 1.0 / 25) < 1e-16); /* the cycle starts at 5 */
  assert_true(isnan(cr_sched_momentum(&s, 4)) && fabs(cr_sched_momentum(&s, 5) - 0.95) < 1e-15);

  static const struct {
    const char *spec, *msg;
  } bad[] = {
      {"multistep", "'multistep': expected multistep:MILESTONES[:GAMMA]"},
      {"multistep:5,3", "'multistep:5,3': milestone 1 (3) must be >= 0 and not below the one "
                        "before"},
      {"multistep:-1", "'multistep:-1': milestone 0 (-1) must be >= 0 and not below the one "
                       "before"},
      {"multistep:1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
       "'multistep:1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17': expected "
       "multistep:MILESTONES[:GAMMA] (with numbers)"},
      {"multistep:3,,5", "'multistep:3,,5': expected multistep:MILESTONES[:GAMMA] (with numbers)"},
      {"multistep:3:0", "'multistep:3:0': gamma 0 must be > 0 and finite"},
      {"onecycle", "'onecycle': expected onecycle:TOTAL[:PCT_START][:NAME=VALUE...]"},
      {"onecycle:0", "'onecycle:0': total_steps 0 must be >= 1"},
      {"onecycle:10:1.5", "'onecycle:10:1.5': pct_start 1.5 must be in [0, 1]"},
      {"onecycle:10:0.1", "'onecycle:10:0.1': pct_start 0.1 x total_steps 10 = 1 leaves "
                          "OneCycleLR's first phase without steps (PyTorch divides by zero)"},
      {"onecycle:10:anneal_strategy=lin",
       "'onecycle:10:anneal_strategy=lin': anneal_strategy must be cos or linear, not 'lin'"},
      {"onecycle:10:three_phase=yes",
       "'onecycle:10:three_phase=yes': three_phase must be 0 or 1, not 'yes'"},
      {"onecycle:10:max_momentum=1", "'onecycle:10:max_momentum=1': max_momentum 1 must be in "
                                     "[0, 1)"},
      {"onecycle:10:div_factor=0", "'onecycle:10:div_factor=0': div_factor 0 must be > 0 and "
                                   "finite"},
      {"onecycle:10:max_lr=1",
       "'onecycle:10:max_lr=1': onecycle has no parameter 'max_lr' (total_steps, pct_start, "
       "anneal_strategy, three_phase, cycle_momentum, base_momentum, max_momentum, div_factor, "
       "final_div_factor)"},
      {"onecycle:10:pct_start=0.5:0.3",
       "'onecycle:10:pct_start=0.5:0.3': expected onecycle:TOTAL[:PCT_START][:NAME=VALUE...]"},
      {"plateau:1", "'plateau:1': factor 1 must be in [0, 1)"},
      {"plateau:0.5:-1", "'plateau:0.5:-1': patience -1 must be >= 0"},
      {"plateau:mode=up", "'plateau:mode=up': mode must be min or max, not 'up'"},
      {"plateau:threshold=-1", "'plateau:threshold=-1': threshold -1 must be >= 0 and finite"},
      {"plateau:0.1:2:3",
       "'plateau:0.1:2:3': expected plateau[:FACTOR[:PATIENCE]][:NAME=VALUE...]"},
      {"warmup:5+plateau", "'warmup:5+plateau': plateau takes no warmup (it follows a metric, not "
                           "steps)"},
      {"constant:1", "'constant:1': expected constant"},
      {"constant:x=1", "'constant:x=1': constant has no parameter 'x' (it has none)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    if (cr_sched_parse(bad[i].spec, &s, &w, err, sizeof err))
      fail_msg("'%s' was accepted", bad[i].spec);
    if (strcmp(err, bad[i].msg))
      fail_msg("got    %s\nwanted %s", err, bad[i].msg);
  }
}

/* cr_sched_defaults: PyTorch's, and valid exactly where PyTorch needs no
 * argument. */
static void test_sched_defaults(void **state) {
  (void)state;
  static const bool valid[CR_SCHED_NUM_KINDS] = {[CR_SCHED_CONSTANT] = true,
                                                 [CR_SCHED_LINEAR] = true,
                                                 [CR_SCHED_MULTISTEP] = true,
                                                 [CR_SCHED_PLATEAU] = true};
  static const char *const why[CR_SCHED_NUM_KINDS] = {
      [CR_SCHED_STEP] = "sched: step_size 0 must be >= 1",
      [CR_SCHED_EXPONENTIAL] = "sched: gamma 0 must be > 0 and finite",
      [CR_SCHED_COSINE] = "sched: t_max 0 must be >= 1",
      [CR_SCHED_ONECYCLE] = "sched: total_steps 0 must be >= 1"};
  for (int k = 0; k < CR_SCHED_NUM_KINDS; k++) {
    cr_sched s;
    memset(&s, 0x5a, sizeof s);
    cr_sched_defaults((cr_sched_kind)k, &s);
    char err[128] = "";
    assert_int_equal(s.kind, k);
    assert_null(s.warmup);
    assert_int_equal(cr_sched_check(&s, err, sizeof err), valid[k]);
    if (!valid[k])
      assert_string_equal(err, why[k]);
  }
  cr_sched s;
  cr_sched_defaults(CR_SCHED_LINEAR, &s);
  assert_true(s.start_factor == 1.0 / 3 && s.end_factor == 1 && s.total_iters == 5);
  cr_sched_defaults(CR_SCHED_STEP, &s);
  assert_true(s.gamma == 0.1);
  cr_sched_defaults(CR_SCHED_MULTISTEP, &s);
  assert_true(s.gamma == 0.1 && s.n_milestones == 0 && cr_sched_lr(&s, 0.5, 1000) == 0.5);
  s.kind = CR_SCHED_NUM_KINDS;
  char err[64];
  assert_false(cr_sched_check(&s, err, sizeof err));
  assert_string_equal(err, "sched: unknown kind 8");
  /* a metric-driven schedule is no warmup either */
  cr_sched p, c = {.kind = CR_SCHED_COSINE, .t_max = 5, .warmup = &p, .warmup_steps = 2};
  cr_sched_defaults(CR_SCHED_PLATEAU, &p);
  assert_false(cr_sched_check(&c, err, sizeof err));
  assert_string_equal(err, "sched: plateau cannot be a warmup (it follows a metric)");
}

/* OneCycleLR's momentum needs an optimizer that has one: the step says so. */
static void test_onecycle_momentum_errors(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_tensor *p = param_from(ctx, CR_F64, CR_SHAPE(2), (const double[]){1, 2});
  set_grad(ctx, p, (const double[]){0.5, 0.5});
  cr_sched s;
  cr_sched_defaults(CR_SCHED_ONECYCLE, &s);
  s.total_steps = 10;
  static const struct {
    cr_optim_kind kind;
    double momentum;
    const char *msg;
  } cases[] = {
      {CR_ADAGRAD, 0,
       "optim_step: onecycle cycles the momentum, but adagrad has neither momentum nor betas "
       "(turn cycle_momentum off)"},
      {CR_SGD, 0,
       "optim_step: onecycle sets sgd momentum 0.95, but the optimizer was made with momentum 0, "
       "without the state buffer 'momentum_buffer' (make it with momentum > 0, or turn "
       "cycle_momentum off)"},
      {CR_RMSPROP, 0,
       "optim_step: onecycle sets rmsprop momentum 0.95, but the optimizer was made with "
       "momentum 0, without the state buffer 'momentum_buffer' (make it with momentum > 0, or "
       "turn cycle_momentum off)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cr_optim_opts o;
    cr_optim_default_opts(cases[i].kind, &o);
    o.momentum = cases[i].momentum;
    cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
    assert_non_null(opt);
    s.cycle_momentum = true;
    cr_sched_apply(&s, opt, 0);
    assert_int_equal(cr_optim_step(ctx, opt), CR_ERR_ARG);
    assert_string_equal(cr_ctx_error(ctx), cases[i].msg);
    cr_ctx_clear_error(ctx);
    assert_true(cr_get_flat(p, 0) == 1 && cr_optim_steps(opt) == 0); /* nothing changed */
    s.cycle_momentum = false; /* without it the same optimizer trains */
    cr_sched_apply(&s, opt, 0);
    assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    cr_set_flat(p, 0, 1);
    cr_optim_free(opt);
  }
  /* SGD made with momentum: cycled (and a schedule without momentum leaves
   * the last value); nesterov stays valid since the momentum stays > 0 */
  cr_optim_opts o;
  cr_optim_default_opts(CR_SGD, &o);
  o.momentum = 0.9, o.nesterov = true;
  cr_optim *opt = cr_optim_new(ctx, &o, &p, 1);
  s.cycle_momentum = true;
  cr_sched_apply(&s, opt, 0);
  assert_true(cr_optim_get_hyper(opt, "momentum") == cr_sched_momentum(&s, 0));
  cr_sched_apply(&s, opt, 3);
  assert_true(cr_optim_get_hyper(opt, "momentum") == cr_sched_momentum(&s, 3));
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
  cr_sched c = {.kind = CR_SCHED_CONSTANT};
  cr_sched_apply(&c, opt, 4);
  assert_true(cr_optim_get_hyper(opt, "momentum") == cr_sched_momentum(&s, 3));
  cr_optim_free(opt);
  cr_tensor_free(p);
}

/* ReduceLROnPlateau by hand: patience, cooldown, min_lr and eps per
 * group, apply leaving its lr alone, and the errors. */
static void test_plateau(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_tensor *a = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  cr_tensor *b = param_from(ctx, CR_F64, CR_SHAPE(1), NULL);
  cr_optim_opts o;
  cr_optim_default_opts(CR_SGD, &o);
  o.lr = 1;
  cr_optim *opt = cr_optim_new(ctx, &o, &a, 1);
  assert_int_equal(cr_optim_add_group(ctx, opt, &b, 1, 0.25), 1);
  cr_sched s;
  cr_sched_defaults(CR_SCHED_PLATEAU, &s);
  s.factor = 0.5, s.patience = 1, s.cooldown = 1, s.min_lr = 0.2, s.threshold = 0;
  /* 3 (best) 3 (bad 1) 3 (bad 2 > 1: halve, cooldown 1) 3 (cooldown) 3 (bad 1) 3 (halve) */
  static const double lr0[] = {1, 1, 0.5, 0.5, 0.5, 0.25}, lr1[] = {0.25, 0.25, 0.2, 0.2, 0.2, 0.2};
  for (int k = 0; k < 6; k++) {
    assert_int_equal(cr_sched_plateau_step(ctx, &s, opt, 3.0), CR_OK);
    assert_true(cr_optim_get_lr(opt, 0) == lr0[k] && cr_optim_get_lr(opt, 1) == lr1[k]);
    cr_sched_apply(&s, opt, k); /* nothing: the lr is the plateau's */
    assert_true(cr_optim_get_lr(opt, 0) == lr0[k]);
  }
  assert_true(s.last_epoch == 6 && s.best == 3 && s.num_bad_epochs == 0 && s.cooldown_counter == 1);
  assert_int_equal(cr_sched_plateau_step(ctx, &s, opt, 1.0), CR_OK); /* improves */
  assert_true(s.best == 1 && s.num_bad_epochs == 0);
  assert_int_equal(cr_sched_plateau_step(ctx, &s, opt, NAN), CR_OK); /* never better */
  assert_true(s.best == 1);

  cr_sched cos = {.kind = CR_SCHED_COSINE, .t_max = 3};
  assert_int_equal(cr_sched_plateau_step(ctx, &cos, opt, 1), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "sched_plateau_step: the schedule is cosine, not plateau "
                                         "(it follows the step: cr_sched_apply)");
  cr_ctx_clear_error(ctx);
  s.factor = 2;
  assert_int_equal(cr_sched_plateau_step(ctx, &s, opt, 1), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "sched_plateau_step: factor 2 must be in [0, 1)");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_sched_plateau_step(ctx, NULL, opt, 1), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "sched_plateau_step: schedule is NULL");
  cr_ctx_clear_error(ctx);
  cr_optim_free(opt);
  cr_tensor_free(a);
  cr_tensor_free(b);
}

/* Applying a OneCycleLR with momentum and stepping a plateau allocate
 * nothing. */
static void test_sched_no_malloc(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  model m;
  model_init(ctx, &m);
  cr_optim *opt = model_optim(ctx, &m, CR_ADAM);
  cr_sched one, pl;
  char err[128];
  assert_true(cr_sched_parse("onecycle:20:three_phase=1", &one, NULL, err, sizeof err));
  assert_true(cr_sched_parse("plateau:0.5:0", &pl, NULL, err, sizeof err));
  for (int i = 0; i < 3; i++)
    (void)grad_of(ctx, m.p[i]);
  size_t before = cr_alloc_count();
  for (int k = 0; k < 20; k++) {
    cr_sched_apply(&one, opt, k);
    assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    assert_int_equal(cr_sched_plateau_step(ctx, &pl, opt, 1.0), CR_OK);
  }
  assert_int_equal(cr_alloc_count(), before);
  cr_optim_free(opt);
  model_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sched_fixtures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sequential_semantics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sched_parse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sched_parse_new, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sched_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_onecycle_momentum_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_plateau, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sched_no_malloc, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
