/* Learning-rate schedules: parity with PyTorch on every committed fixture
 * (tests/fixtures/sched), the SequentialLR semantics of warmups, and the
 * spec parser with its messages. */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "optim_test_util.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sched_fixtures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sequential_semantics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sched_parse, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
