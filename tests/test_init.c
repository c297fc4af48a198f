/* Initialisations: PyTorch's gains and fans (values printed by torch 1.13's
 * torch.nn.init), the bounds and moments of every distribution on 60,000
 * draws, orthogonality, reproducibility from the seed, the built-in
 * modules' defaults, and the messages. */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chainrule.h"

static int setup(void **state) {
  *state = cr_ctx_new();
  return *state ? 0 : -1;
}
static int teardown(void **state) {
  cr_ctx_free(*state);
  return 0;
}

static void test_gain_and_fans(void **state) {
  cr_ctx *ctx = *state;
  /* torch.nn.init.calculate_gain, as torch 1.13 prints them */
  assert_true(cr_calculate_gain("linear", NAN) == 1);
  assert_true(cr_calculate_gain("conv2d", NAN) == 1);
  assert_true(cr_calculate_gain("conv_transpose3d", NAN) == 1);
  assert_true(cr_calculate_gain("sigmoid", NAN) == 1);
  assert_true(cr_calculate_gain("tanh", NAN) == 1.6666666666666667);
  assert_true(cr_calculate_gain("relu", NAN) == 1.4142135623730951);
  assert_true(cr_calculate_gain("leaky_relu", NAN) == 1.4141428569978354);
  assert_true(cr_calculate_gain(NULL, NAN) == 1.4141428569978354);
  assert_true(cr_calculate_gain("leaky_relu", 0.2) == 1.3867504905630728);
  assert_true(cr_calculate_gain("selu", NAN) == 0.75);
  assert_true(isnan(cr_calculate_gain("swish", NAN)));
  /* _calculate_fan_in_and_fan_out: (3, 4) -> (4, 3); (5, 4, 3, 2) -> (24, 30) */
  int64_t fi, fo;
  cr_tensor *a = cr_zeros(ctx, CR_F32, CR_SHAPE(3, 4)),
            *b = cr_zeros(ctx, CR_F32, CR_SHAPE(5, 4, 3, 2));
  assert_int_equal(cr_init_fans(ctx, a, &fi, &fo), CR_OK);
  assert_true(fi == 4 && fo == 3);
  assert_int_equal(cr_init_fans(ctx, b, &fi, &fo), CR_OK);
  assert_true(fi == 24 && fo == 30);
  assert_int_equal(cr_init_fans(ctx, cr_zeros(ctx, CR_F32, CR_SHAPE(5)), &fi, &fo), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx),
                      "init_fans: tensor [5]: fan_in and fan_out need at least 2 dimensions");
  cr_ctx_clear_error(ctx);
  cr_ctx_reset(ctx);
}

typedef struct moments {
  double mean, std, max_abs, within_1std; /* the last: fraction with |x - mean| < std */
} moments;

static moments moments_of(const cr_tensor *t) {
  moments m = {0};
  int64_t n = cr_numel(t);
  for (int64_t i = 0; i < n; i++)
    m.mean += cr_get_flat(t, i);
  m.mean /= (double)n;
  for (int64_t i = 0; i < n; i++) {
    double d = cr_get_flat(t, i) - m.mean;
    m.std += d * d;
    m.max_abs = fmax(m.max_abs, fabs(cr_get_flat(t, i)));
  }
  m.std = sqrt(m.std / (double)(n - 1));
  for (int64_t i = 0; i < n; i++)
    m.within_1std += fabs(cr_get_flat(t, i) - m.mean) < m.std;
  m.within_1std /= (double)n;
  return m;
}

/* U(-b, b) on n draws: inside the bound, reaching it, mean 0 and std
 * b / sqrt(3) within 5 standard errors; N(0, s): mean and std within 5
 * standard errors (s / sqrt(n), s / sqrt(2n)), 68.27% within one std. */
static void expect_uniform(const cr_tensor *t, double b, const char *what) {
  moments m = moments_of(t);
  double n = (double)cr_numel(t), s = b / sqrt(3.0);
  printf("%-22s U(-%.6g, %.6g): max |x| %.6g, mean %+.2e, std %.6g (want %.6g)\n", what, b, b,
         m.max_abs, m.mean, m.std, s);
  if (!(m.max_abs <= b && m.max_abs > b * (1 - 1e-3) && fabs(m.mean) < 5 * s / sqrt(n) &&
        fabs(m.std - s) < 5 * s / sqrt(1.25 * n)))
    fail_msg("%s: not U(-%g, %g)", what, b, b);
}

static void expect_normal(const cr_tensor *t, double s, const char *what) {
  moments m = moments_of(t);
  double n = (double)cr_numel(t);
  printf("%-22s N(0, %.6g): mean %+.2e, std %.6g, within 1 std %.4f\n", what, s, m.mean, m.std,
         m.within_1std);
  if (!(fabs(m.mean) < 5 * s / sqrt(n) && fabs(m.std - s) < 5 * s / sqrt(2 * n) &&
        fabs(m.within_1std - 0.682689) < 0.01))
    fail_msg("%s: not N(0, %g)", what, s);
}

static void test_distributions(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(5);
  /* [200, 300]: fan_in 300, fan_out 200; 60,000 draws */
  cr_tensor *w = cr_tensor_new(ctx, CR_F64, CR_SHAPE(200, 300));
  cr_tensor *w4 = cr_tensor_new(ctx, CR_F32, CR_SHAPE(30, 20, 10, 10)); /* fans 2000, 3000 */
  assert_int_equal(cr_init_xavier_uniform(ctx, w, rng, 1), CR_OK);
  expect_uniform(w, sqrt(3.0) * sqrt(2.0 / 500), "xavier_uniform");
  assert_int_equal(cr_init_xavier_uniform(ctx, w, rng, 5.0 / 3), CR_OK);
  expect_uniform(w, sqrt(3.0) * (5.0 / 3 * sqrt(2.0 / 500)), "xavier_uniform tanh");
  assert_int_equal(cr_init_xavier_normal(ctx, w, rng, 1), CR_OK);
  expect_normal(w, sqrt(2.0 / 500), "xavier_normal");
  assert_int_equal(cr_init_kaiming_uniform(ctx, w, rng, 0, CR_FAN_IN, NULL), CR_OK);
  expect_uniform(w, sqrt(3.0) * (sqrt(2.0) / sqrt(300.0)), "kaiming_uniform");
  assert_int_equal(cr_init_kaiming_uniform(ctx, w, rng, sqrt(5.0), CR_FAN_IN, "leaky_relu"), CR_OK);
  expect_uniform(w, 1 / sqrt(300.0), "kaiming_uniform a=rt5");
  assert_int_equal(cr_init_kaiming_normal(ctx, w, rng, 0, CR_FAN_OUT, "relu"), CR_OK);
  expect_normal(w, sqrt(2.0) / sqrt(200.0), "kaiming_normal fan_out");
  assert_int_equal(cr_init_kaiming_normal(ctx, w4, rng, 0, CR_FAN_IN, "tanh"), CR_OK);
  expect_normal(w4, 5.0 / 3 / sqrt(2000.0), "kaiming_normal 4-d");
  assert_int_equal(cr_init_uniform(ctx, w, rng, -0.3, 0.3), CR_OK);
  expect_uniform(w, 0.3, "uniform");
  assert_int_equal(cr_init_normal(ctx, w4, rng, 0, 0.02), CR_OK);
  expect_normal(w4, 0.02, "normal");
  assert_int_equal(cr_init_constant(ctx, w, 0.25), CR_OK);
  assert_true(cr_get_flat(w, 59999) == 0.25);
  assert_int_equal(cr_init_ones(ctx, w4), CR_OK);
  assert_true(cr_get_flat(w4, 17) == 1);
  assert_int_equal(cr_init_zeros(ctx, w4), CR_OK);
  assert_true(cr_get_flat(w4, 17) == 0);
  /* reproducible from the seed */
  cr_tensor *u = cr_tensor_new(ctx, CR_F64, CR_SHAPE(200, 300));
  cr_rng_seed(rng, 77);
  assert_int_equal(cr_init_kaiming_uniform(ctx, w, rng, 0, CR_FAN_IN, "relu"), CR_OK);
  cr_rng_seed(rng, 77);
  assert_int_equal(cr_init_kaiming_uniform(ctx, u, rng, 0, CR_FAN_IN, "relu"), CR_OK);
  assert_memory_equal(cr_data(w), cr_data(u), 60000 * sizeof(double));
  /* messages */
  assert_int_equal(cr_init_kaiming_normal(ctx, w, rng, 0, CR_FAN_IN, "swish"), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "init_kaiming_normal: unknown nonlinearity 'swish' "
                                         "(linear, sigmoid, tanh, relu, leaky_relu, selu, "
                                         "conv1d...)");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_init_xavier_uniform(ctx, w, rng, -1), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "init_xavier_uniform: gain -1 must be finite and >= 0");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_init_orthogonal(ctx, cr_zeros(ctx, CR_F32, CR_SHAPE(4)), rng, 1),
                   CR_ERR_SHAPE);
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_init_xavier_normal(ctx, w, NULL, 1), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  cr_tensor *idx = cr_zeros(ctx, CR_I64, CR_SHAPE(2, 2));
  assert_int_not_equal(cr_init_ones(ctx, idx), CR_OK);
  cr_ctx_clear_error(ctx);
  cr_tensor_free(w);
  cr_tensor_free(w4);
  cr_tensor_free(u);
  cr_rng_free(rng);
  cr_ctx_reset(ctx);
}

/* Q^T Q = I for a tall Q (orthonormal columns), Q Q^T = I for a wide one. */
static double orthogonality_error(const cr_tensor *q, double gain) {
  int64_t r = cr_dim(q, 0), c = cr_numel(q) / r;
  bool wide = r < c;
  int64_t n = wide ? r : c, len = wide ? c : r;
  double worst = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      double dot = 0;
      for (int64_t k = 0; k < len; k++)
        dot += cr_get_flat(q, wide ? i * c + k : k * c + i) *
               cr_get_flat(q, wide ? j * c + k : k * c + j);
      worst = fmax(worst, fabs(dot / (gain * gain) - (i == j)));
    }
  return worst;
}

static void test_orthogonal(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(9);
  const struct {
    int nd;
    int64_t shape[3];
    cr_dtype dt;
    double gain, tol;
  } cases[] = {
      {2, {40, 12}, CR_F64, 1, 1e-13},
      {2, {12, 40}, CR_F64, 2, 1e-13},
      {2, {30, 30}, CR_F64, 1, 1e-13},
      {3, {6, 4, 5}, CR_F32, 1, 1e-6}, /* [6, 20]: wide */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cr_tensor *q = cr_tensor_new(ctx, cases[i].dt, cases[i].nd, cases[i].shape);
    assert_int_equal(cr_init_orthogonal(ctx, q, rng, cases[i].gain), CR_OK);
    double e = orthogonality_error(q, cases[i].gain);
    char shape[64];
    cr_shape_str(shape, sizeof shape, cases[i].nd, cases[i].shape);
    printf("orthogonal %-9s %s gain %g: max |Q Q^T or Q^T Q / gain^2 - I| = %.2e\n", shape,
           cr_dtype_name(cases[i].dt), cases[i].gain, e);
    assert_true(e < cases[i].tol);
    cr_tensor_free(q);
  }
  cr_rng_free(rng);
}

/* The built-in modules draw PyTorch's defaults (checked on large layers). */
static void test_module_defaults(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(10);
  cr_module *fc = cr_nn_linear(ctx, 400, 150, true, CR_F64, rng);
  expect_uniform(cr_module_tensor(fc, "weight"), 1 / sqrt(400.0), "Linear weight");
  moments b = moments_of(cr_module_tensor(fc, "bias"));
  assert_true(b.max_abs <= 1 / sqrt(400.0) && b.max_abs > 0.9 / sqrt(400.0));
  cr_module *emb = cr_nn_embedding(ctx, 600, 100, CR_F64, rng);
  expect_normal(cr_module_tensor(emb, "weight"), 1, "Embedding weight");
  cr_rnn_config c = {&cr_cell_gru, 50, 100, 1, 0, false, CR_F64};
  cr_module *gru = cr_nn_rnn(ctx, &c, NULL, rng);
  expect_uniform(cr_module_tensor(gru, "weight_hh_l0"), 0.1, "GRU weight_hh_l0");
  cr_module *ln = cr_nn_layer_norm(ctx, CR_SHAPE(3, 4), 1e-5, true, CR_F32);
  for (int i = 0; i < 12; i++) {
    assert_true(cr_get_flat(cr_module_tensor(ln, "weight"), i) == 1);
    assert_true(cr_get_flat(cr_module_tensor(ln, "bias"), i) == 0);
  }
  for (cr_module **m = (cr_module *[]){fc, emb, gru, ln, NULL}; *m; m++)
    cr_module_free(*m);
  cr_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_gain_and_fans, setup, teardown),
      cmocka_unit_test_setup_teardown(test_distributions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_orthogonal, setup, teardown),
      cmocka_unit_test_setup_teardown(test_module_defaults, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
