/* The textbook BPTT double sum, computed term by term (examples/bptt_teach/
 * double_sum.c), equals backward on the unrolled rnn_tanh layer to 1e-12
 * for several sizes; and the comparison is sharp enough to notice a sum
 * that drops terms (truncated BPTT) or a single wrong term. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "double_sum.h"

static void check(bt_dsum_config c) {
  bt_dsum_result r;
  int rc = bt_double_sum(&c, &r);
  if (rc)
    fail_msg("%s", r.error);
  printf("T %d, I %d, H %d, O %d: %lld terms, double sum vs backward: max abs difference "
         "%.2e (dL/dh_k: %.2e), |dL/dW_hh| %.3f\n",
         c.T, c.I, c.H, c.O, (long long)r.n_terms, r.max_diff, r.max_diff_h, r.grad_norm);
  assert_int_equal(r.n_terms, (int64_t)c.T * (c.T + 1) / 2);
  assert_true(r.max_diff <= 1e-12);
  assert_true(r.max_diff_h <= 1e-12);
  assert_true(r.grad_norm > 1e-3); /* a real gradient, not two zeros agreeing */
  /* every term below the diagonal is there and finite, none above it */
  for (int t = 0; t < c.T; t++)
    for (int k = 0; k < c.T; k++)
      assert_true(k <= t ? isfinite(r.term[t * c.T + k]) && r.term[t * c.T + k] >= 0
                         : isnan(r.term[t * c.T + k]));
  bt_dsum_free(&r);
}

static void test_the_report_sizes(void **state) {
  (void)state;
  check((bt_dsum_config){.T = 24, .I = 3, .H = 8, .O = 2, .seed = 1, .max_lag = -1});
}

static void test_other_sizes(void **state) {
  (void)state;
  check((bt_dsum_config){.T = 1, .I = 1, .H = 1, .O = 1, .seed = 2, .max_lag = -1});
  check((bt_dsum_config){.T = 30, .I = 5, .H = 16, .O = 3, .seed = 3, .max_lag = -1});
  check((bt_dsum_config){.T = 7, .I = 2, .H = 4, .O = 6, .seed = 4, .max_lag = -1});
}

/* the far-past terms fade: vanishing gradients, as the heat map shows */
static void test_far_terms_fade(void **state) {
  (void)state;
  bt_dsum_config c = {.T = 24, .I = 3, .H = 8, .O = 2, .seed = 1, .max_lag = -1};
  bt_dsum_result r;
  assert_int_equal(bt_double_sum(&c, &r), 0);
  int T = c.T;
  assert_true(r.term[(T - 1) * T] < 1e-4 * r.term[(T - 1) * T + T - 1]);
  assert_true(r.jprod[(T - 1) * T] < 1e-4 && fabs(r.jprod[(T - 1) * T + T - 1] - 1) < 1e-12);
  bt_dsum_free(&r);
}

/* dropping terms (keeping only t - k <= lag) must be seen by the comparison */
static void test_a_truncated_sum_is_caught(void **state) {
  (void)state;
  for (int lag = 0; lag <= 4; lag += 2) {
    bt_dsum_config c = {.T = 24, .I = 3, .H = 8, .O = 2, .seed = 1, .max_lag = lag};
    bt_dsum_result r;
    assert_int_equal(bt_double_sum(&c, &r), 0);
    printf("terms with t - k <= %d only (%lld terms): max abs difference %.2e\n", lag,
           (long long)r.n_terms, r.max_diff);
    assert_true(r.max_diff > 1e-6);
    bt_dsum_free(&r);
  }
}

static void test_bad_sizes_are_a_message(void **state) {
  (void)state;
  bt_dsum_config c = {.T = 0, .I = 3, .H = 8, .O = 2, .seed = 1, .max_lag = -1};
  bt_dsum_result r;
  assert_int_equal(bt_double_sum(&c, &r), 1);
  assert_non_null(strstr(r.error, "sizes T 0"));
  bt_dsum_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_report_sizes),
      cmocka_unit_test(test_other_sizes),
      cmocka_unit_test(test_far_terms_fade),
      cmocka_unit_test(test_a_truncated_sum_is_caught),
      cmocka_unit_test(test_bad_sizes_are_a_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
