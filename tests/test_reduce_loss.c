/* Reductions, softmax, losses and dropout: values against hand-computed
 * numbers, gradients against hand-derived ones, and the exact text of the
 * main error messages.  (Gradients in general are covered by the
 * gradcheck rows; the cases here pin values a wrong formula could still
 * make self-consistent: ties, ignored rows, the dropout mask.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
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

/* Every element of t (row-major) within tol of want[], and t's shape. */
static void check_values(const cr_tensor *t, int ndim, const int64_t *shape, const double *want,
                         double tol) {
  assert_non_null(t);
  assert_int_equal(cr_ndim(t), ndim);
  for (int d = 0; d < ndim; d++)
    assert_int_equal(cr_shape(t)[d], shape[d]);
  for (int64_t i = 0; i < cr_numel(t); i++) {
    double got = cr_get_flat(t, i);
    if (!(fabs(got - want[i]) <= tol))
      fail_msg("element %lld: got %.10g, want %.10g", (long long)i, got, want[i]);
  }
}
#define CHECK(t, shape, tol, ...) check_values((t), shape, (const double[]){__VA_ARGS__}, (tol))

/* [2,3] tensor 0..5 of dtype dt, requiring grad */
static cr_tensor *arange23(cr_ctx *ctx, cr_dtype dt) {
  cr_tensor *x = cr_reshape(ctx, cr_arange(ctx, dt, 0, 6, 1), CR_SHAPE(2, 3));
  cr_set_requires_grad(x, true);
  return x;
}

static cr_tensor *seed_of(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape,
                          const double *v) {
  cr_tensor *s = cr_zeros(ctx, dt, ndim, shape);
  for (int64_t i = 0; i < cr_numel(s); i++)
    cr_set_flat(s, i, v[i]);
  return s;
}

/* ---- reductions */

static void test_sum_mean_all(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *x = arange23(ctx, (cr_dtype)dt);
    cr_tensor *s = cr_sum(ctx, x), *m = cr_mean(ctx, x);
    CHECK(s, CR_SHAPE(1), 0, 15);
    CHECK(m, CR_SHAPE(1), 0, 2.5);
    assert_string_equal(cr_grad_fn(s), "sum");
    assert_string_equal(cr_grad_fn(m), "mean");
    /* L = 2 sum(x) + mean(x): dL/dx = 2 + 1/6 everywhere (accumulated) */
    cr_tensor *L = cr_add(ctx, cr_mul_scalar(ctx, s, 2), m);
    assert_int_equal(cr_backward(ctx, L), CR_OK);
    double g = 2 + 1.0 / 6;
    CHECK(cr_grad(x), CR_SHAPE(2, 3), 1e-6, g, g, g, g, g, g);
    /* of a transposed view */
    cr_tensor *t = cr_transpose(ctx, x, 0, 1);
    CHECK(cr_sum(ctx, t), CR_SHAPE(1), 0, 15);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_sum_axis_values(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *x = arange23(ctx, (cr_dtype)dt); /* [[0,1,2],[3,4,5]] */
    CHECK(cr_sum_axis(ctx, x, 0, false), CR_SHAPE(3), 0, 3, 5, 7);
    CHECK(cr_sum_axis(ctx, x, 1, false), CR_SHAPE(2), 0, 3, 12);
    CHECK(cr_sum_axis(ctx, x, -1, true), CR_SHAPE(2, 1), 0, 3, 12);
    CHECK(cr_sum_axis(ctx, x, -2, true), CR_SHAPE(1, 3), 0, 3, 5, 7);
    CHECK(cr_mean_axis(ctx, x, 0, false), CR_SHAPE(3), 1e-6, 1.5, 2.5, 3.5);
    CHECK(cr_mean_axis(ctx, x, -1, true), CR_SHAPE(2, 1), 1e-6, 1, 4);
    /* transposed [3,2] view: its axis 0 runs along x's rows */
    cr_tensor *t = cr_transpose(ctx, x, 0, 1);
    CHECK(cr_sum_axis(ctx, t, 0, false), CR_SHAPE(2), 0, 3, 12);
    CHECK(cr_sum_axis(ctx, t, 1, false), CR_SHAPE(3), 0, 3, 5, 7);
    /* 1-d: removing the only axis gives [1] */
    cr_tensor *v = cr_arange(ctx, (cr_dtype)dt, 1, 5, 1);
    CHECK(cr_sum_axis(ctx, v, 0, false), CR_SHAPE(1), 0, 10);
    CHECK(cr_mean_axis(ctx, v, -1, false), CR_SHAPE(1), 1e-6, 2.5);
    CHECK(cr_mean_axis(ctx, v, 0, true), CR_SHAPE(1), 1e-6, 2.5);
    /* 3-d, middle axis: [2,3,4] 0..23 -> [2,4] */
    cr_tensor *c = cr_reshape(ctx, cr_arange(ctx, (cr_dtype)dt, 0, 24, 1), CR_SHAPE(2, 3, 4));
    CHECK(cr_sum_axis(ctx, c, 1, false), CR_SHAPE(2, 4), 0, 12, 15, 18, 21, 48, 51, 54, 57);
    CHECK(cr_sum_axis(ctx, c, -3, true), CR_SHAPE(1, 3, 4), 0, 12, 14, 16, 18, 20, 22, 24, 26, 28,
          30, 32, 34);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_sum_axis_grads(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *x = arange23(ctx, (cr_dtype)dt);
    cr_tensor *y = cr_sum_axis(ctx, x, 1, false); /* [2] */
    assert_int_equal(
        cr_backward_seed(ctx, y, seed_of(ctx, (cr_dtype)dt, CR_SHAPE(2), (const double[]){10, 20})),
        CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(2, 3), 0, 10, 10, 10, 20, 20, 20);
    cr_zero_grad(x);
    y = cr_mean_axis(ctx, x, 0, true); /* [1,3] */
    assert_int_equal(
        cr_backward_seed(ctx, y,
                         seed_of(ctx, (cr_dtype)dt, CR_SHAPE(1, 3), (const double[]){3, 6, 9})),
        CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(2, 3), 1e-6, 1.5, 3, 4.5, 1.5, 3, 4.5);
    /* through a transposed view: t = x^T [3,2]; sum over t's axis 1 */
    cr_zero_grad(x);
    y = cr_sum_axis(ctx, cr_transpose(ctx, x, 0, 1), 1, false); /* [3] */
    assert_int_equal(
        cr_backward_seed(ctx, y,
                         seed_of(ctx, (cr_dtype)dt, CR_SHAPE(3), (const double[]){1, 2, 3})),
        CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(2, 3), 0, 1, 2, 3, 1, 2, 3);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_max_axis_ties(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    const double v[6] = {1, 3, 3, 2, 2, 1};
    cr_tensor *x = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(2, 3), v);
    cr_set_requires_grad(x, true);
    /* along rows: the first of the tied 3s, the first of the tied 2s */
    cr_tensor *y = cr_max_axis(ctx, x, 1, false);
    CHECK(y, CR_SHAPE(2), 0, 3, 2);
    assert_int_equal(cr_backward(ctx, cr_sum(ctx, y)), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(2, 3), 0, 0, 1, 0, 1, 0, 0);
    /* along columns (keepdim): [2,3,3]; no ties within a column */
    cr_zero_grad(x);
    y = cr_max_axis(ctx, x, -2, true);
    CHECK(y, CR_SHAPE(1, 3), 0, 2, 3, 3);
    assert_int_equal(
        cr_backward_seed(ctx, y,
                         seed_of(ctx, (cr_dtype)dt, CR_SHAPE(1, 3), (const double[]){5, 6, 7})),
        CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(2, 3), 0, 0, 6, 7, 5, 0, 0);
    /* all equal: only element 0 gets the gradient; transposed view */
    cr_tensor *e = cr_full(ctx, (cr_dtype)dt, CR_SHAPE(3, 2), 4.0);
    cr_set_requires_grad(e, true);
    y = cr_max_axis(ctx, cr_transpose(ctx, e, 0, 1), 1, false); /* [2], over e's rows */
    CHECK(y, CR_SHAPE(2), 0, 4, 4);
    assert_int_equal(cr_backward(ctx, cr_sum(ctx, y)), CR_OK);
    CHECK(cr_grad(e), CR_SHAPE(3, 2), 0, 1, 1, 0, 0, 0, 0);
    /* 1-d -> [1] */
    cr_tensor *w = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(4), (const double[]){-3, 7, -1, 7});
    CHECK(cr_max_axis(ctx, w, 0, false), CR_SHAPE(1), 0, 7);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

/* ---- softmax */

static void test_softmax_values(void **state) {
  cr_ctx *ctx = *state;
  const double sm[3] = {0.09003057317038046, 0.24472847105479764, 0.6652409557748218};
  const double lsm[3] = {-2.40760596444438, -1.4076059644443804, -0.40760596444438046};
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    double tol = dt == CR_F32 ? 1e-6 : 1e-12;
    cr_tensor *x = cr_arange(ctx, (cr_dtype)dt, 1, 4, 1); /* [1,2,3] */
    check_values(cr_softmax(ctx, x, 0), CR_SHAPE(3), sm, tol);
    check_values(cr_log_softmax(ctx, x, -1), CR_SHAPE(3), lsm, tol);
    /* shift invariance with huge logits: exp(1002) overflows unless the max
     * is subtracted */
    cr_tensor *big = cr_add_scalar(ctx, x, 1000);
    check_values(cr_softmax(ctx, big, 0), CR_SHAPE(3), sm, tol);
    check_values(cr_log_softmax(ctx, big, 0), CR_SHAPE(3), lsm, dt == CR_F32 ? 1e-4 : 1e-9);
    /* along axis 0 of [3,2] whose columns are [1,2,3] and [3,3,3] */
    cr_tensor *m = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(3, 2), (const double[]){1, 3, 2, 3, 3, 3});
    double third = 1.0 / 3;
    CHECK(cr_softmax(ctx, m, 0), CR_SHAPE(3, 2), tol, sm[0], third, sm[1], third, sm[2], third);
    /* the same through a transposed view: rows of m^T */
    CHECK(cr_softmax(ctx, cr_transpose(ctx, m, 0, 1), -1), CR_SHAPE(2, 3), tol, sm[0], sm[1], sm[2],
          third, third, third);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_softmax_grads(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    double tol = dt == CR_F32 ? 1e-6 : 1e-12;
    cr_tensor *x = cr_arange(ctx, (cr_dtype)dt, 1, 4, 1);
    cr_set_requires_grad(x, true);
    cr_tensor *e0 = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(3), (const double[]){1, 0, 0});
    /* softmax, gy = e0: gx_k = y_k ([k == 0] - y_0) */
    assert_int_equal(cr_backward_seed(ctx, cr_softmax(ctx, x, 0), e0), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(3), tol, 0.08192506906499324, -0.022033044520174298,
          -0.05989202454481893);
    /* log_softmax, gy = e0: gx = e0 - softmax */
    cr_zero_grad(x);
    assert_int_equal(cr_backward_seed(ctx, cr_log_softmax(ctx, x, 0), e0), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(3), tol, 1 - 0.09003057317038046, -0.24472847105479764,
          -0.6652409557748218);
    /* sum(softmax) = 1 for any x: its gradient is zero */
    cr_zero_grad(x);
    assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_softmax(ctx, x, -1))), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(3), tol, 0, 0, 0);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

/* ---- cross_entropy */

static void test_cross_entropy_values(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    double tol = dt == CR_F32 ? 1e-6 : 1e-12;
    cr_tensor *x = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(2, 3), (const double[]){1, 2, 3, 1, 2, 3});
    cr_set_requires_grad(x, true);
    int64_t t[2] = {2, 0};
    cr_tensor *L = cr_cross_entropy(ctx, x, t, CR_NO_IGNORE);
    /* (-log 0.6652410 - log 0.0900306) / 2 */
    CHECK(L, CR_SHAPE(1), tol, 1.4076059644443804);
    assert_string_equal(cr_grad_fn(L), "cross_entropy");
    /* the targets were copied: changing the caller's array changes nothing */
    t[0] = 0;
    t[1] = 1;
    assert_int_equal(cr_backward(ctx, L), CR_OK);
    /* (softmax - onehot) / 2 */
    CHECK(cr_grad(x), CR_SHAPE(2, 3), tol, 0.04501528658519023, 0.12236423552739882,
          -0.1673795221125891, -0.4549847134148098, 0.12236423552739882, 0.3326204778874109);
    /* uniform logits: log C */
    cr_tensor *u = cr_zeros(ctx, (cr_dtype)dt, CR_SHAPE(1, 4));
    CHECK(cr_cross_entropy(ctx, u, (const int64_t[]){3}, CR_NO_IGNORE), CR_SHAPE(1), tol,
          1.3862943611198906);
    /* huge logits stay finite: [1000, 0] with target 1 costs 1000 */
    cr_tensor *h = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(2, 2), (const double[]){1000, 0, 800, 800});
    CHECK(cr_cross_entropy(ctx, h, (const int64_t[]){1, 0}, CR_NO_IGNORE), CR_SHAPE(1),
          dt == CR_F32 ? 1e-3 : 1e-9, (1000 + 0.6931471805599453) / 2);
    /* transposed logits: x^T of [3,2] data is the same [2,3] matrix */
    cr_tensor *xt = cr_transpose(
        ctx, seed_of(ctx, (cr_dtype)dt, CR_SHAPE(3, 2), (const double[]){1, 1, 2, 2, 3, 3}), 0, 1);
    CHECK(cr_cross_entropy(ctx, xt, (const int64_t[]){2, 0}, CR_NO_IGNORE), CR_SHAPE(1), tol,
          1.4076059644443804);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_cross_entropy_ignore(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    double tol = dt == CR_F32 ? 1e-6 : 1e-12;
    cr_tensor *x = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(2, 3), (const double[]){1, 2, 3, 1, 2, 3});
    cr_set_requires_grad(x, true);
    /* row 1 ignored: the mean is over row 0 alone, row 1 gets no gradient */
    cr_tensor *L = cr_cross_entropy(ctx, x, (const int64_t[]){2, -100}, -100);
    CHECK(L, CR_SHAPE(1), tol, 0.40760596444438046);
    assert_int_equal(cr_backward(ctx, L), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(2, 3), tol, 0.09003057317038046, 0.24472847105479764,
          0.6652409557748218 - 1, 0, 0, 0);
    /* every row ignored: 0, and a zero gradient */
    cr_zero_grad(x);
    L = cr_cross_entropy(ctx, x, (const int64_t[]){7, 7}, 7);
    CHECK(L, CR_SHAPE(1), 0, 0);
    assert_int_equal(cr_backward(ctx, L), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(2, 3), 0, 0, 0, 0, 0, 0, 0);
    /* ignore_index inside [0,C) still means "ignore" */
    L = cr_cross_entropy(ctx, x, (const int64_t[]){1, 0}, 1);
    CHECK(L, CR_SHAPE(1), tol, 2.40760596444438);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

/* ---- mse */

static void test_mse(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    double tol = dt == CR_F32 ? 1e-6 : 1e-12;
    cr_tensor *p = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(3), (const double[]){1, 2, 3});
    cr_tensor *t = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(3), (const double[]){1.5, 2, 5});
    cr_set_requires_grad(p, true);
    cr_set_requires_grad(t, true);
    cr_tensor *L = cr_mse(ctx, p, t);
    /* (0.25 + 0 + 4) / 3 */
    CHECK(L, CR_SHAPE(1), tol, 4.25 / 3);
    assert_string_equal(cr_grad_fn(L), "mse");
    assert_int_equal(cr_backward(ctx, cr_mul_scalar(ctx, L, 3)), CR_OK);
    /* 3 * 2 (p - t) / 3 = 2 (p - t) */
    CHECK(cr_grad(p), CR_SHAPE(3), tol, -1, 0, -4);
    CHECK(cr_grad(t), CR_SHAPE(3), tol, 1, 0, 4);
    /* a transposed prediction against a plain target */
    cr_tensor *a = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(2, 2), (const double[]){1, 2, 3, 4});
    cr_tensor *b = seed_of(ctx, (cr_dtype)dt, CR_SHAPE(2, 2), (const double[]){1, 3, 2, 4});
    CHECK(cr_mse(ctx, cr_transpose(ctx, a, 0, 1), b), CR_SHAPE(1), 0, 0);
    CHECK(cr_mse(ctx, a, b), CR_SHAPE(1), tol, 0.5);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

/* ---- dropout */

static void test_dropout_modes(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(3);
  cr_tensor *x = cr_ones(ctx, CR_F32, CR_SHAPE(4, 5));
  cr_set_requires_grad(x, true);
  /* p == 0, and evaluation mode, give x itself and draw nothing */
  uint64_t before[5], after[5];
  cr_rng_get_state(rng, before);
  assert_ptr_equal(cr_dropout(ctx, x, 0.0, rng), x);
  assert_true(cr_training(ctx));
  assert_true(cr_set_training(ctx, false));
  assert_ptr_equal(cr_dropout(ctx, x, 0.5, rng), x);
  cr_rng_get_state(rng, after);
  assert_memory_equal(before, after, sizeof before);
  /* training mode: a new tensor with some zeros */
  assert_false(cr_set_training(ctx, true));
  cr_tensor *y = cr_dropout(ctx, x, 0.5, rng);
  assert_non_null(y);
  assert_ptr_not_equal(y, x);
  assert_string_equal(cr_grad_fn(y), "dropout");
  int zeros = 0;
  for (int i = 0; i < 20; i++) {
    double v = cr_get_flat(y, i);
    assert_true(v == 0.0 || v == 2.0);
    zeros += v == 0.0;
  }
  assert_true(zeros > 0 && zeros < 20);
  cr_rng_free(rng);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_dropout_statistics(void **state) {
  cr_ctx *ctx = *state;
  const int64_t n = 200000;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_rng *rng = cr_rng_new(2024);
    cr_tensor *x = cr_full(ctx, (cr_dtype)dt, CR_SHAPE(n), 3.0);
    const double p = 0.3;
    cr_tensor *y = cr_dropout(ctx, x, p, rng);
    assert_non_null(y);
    int64_t zeros = 0;
    double kept = dt == CR_F32 ? (double)(float)(3.0 * (float)(1 / (1 - p))) : 3.0 / (1 - p);
    for (int64_t i = 0; i < n; i++) {
      double v = cr_get_flat(y, i);
      if (v == 0.0)
        zeros++;
      else if (fabs(v - 3.0 / 0.7) > 1e-5)
        fail_msg("element %lld is %.9g, neither 0 nor x/(1-p) = %.9g", (long long)i, v, kept);
    }
    /* binomial: sd = sqrt(p (1-p) / n) ~ 0.001, so 0.01 is 10 sd */
    double frac = (double)zeros / (double)n;
    if (fabs(frac - p) > 0.01)
      fail_msg("fraction of zeros %.4f, want about %.2f", frac, p);
    /* inverted dropout keeps the mean */
    double mean = cr_item(cr_mean(ctx, y));
    assert_true(fabs(mean - 3.0) < 0.05);
    cr_rng_free(rng);
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_dropout_seed_and_grad(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *a = cr_rng_new(99), *b = cr_rng_new(99), *c = cr_rng_new(100);
  cr_tensor *x = cr_reshape(ctx, cr_arange(ctx, CR_F64, 1, 65, 1), CR_SHAPE(8, 8));
  cr_set_requires_grad(x, true);
  cr_tensor *ya = cr_dropout(ctx, x, 0.4, a), *yb = cr_dropout(ctx, x, 0.4, b);
  cr_tensor *yc = cr_dropout(ctx, x, 0.4, c);
  bool differs = false;
  for (int i = 0; i < 64; i++) {
    assert_true(cr_get_flat(ya, i) == cr_get_flat(yb, i)); /* same seed, same mask */
    differs |= cr_get_flat(ya, i) != cr_get_flat(yc, i);
  }
  assert_true(differs);
  /* gx = gy * mask / (1-p): with gy = 1, gx = y / x */
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, ya)), CR_OK);
  const cr_tensor *g = cr_grad(x);
  for (int i = 0; i < 64; i++) {
    double want = cr_get_flat(ya, i) / cr_get_flat(x, i);
    assert_true(want == 0.0 || fabs(want - 1 / 0.6) < 1e-12);
    assert_true(fabs(cr_get_flat(g, i) - want) < 1e-12);
  }
  /* the mask is drawn in row-major order whatever the strides: dropout of
   * x^T with the same seed zeroes element (j,i) where x's dropout zeroed (i,j) */
  cr_rng_seed(a, 99);
  cr_tensor *yt = cr_dropout(ctx, cr_transpose(ctx, x, 0, 1), 0.4, a);
  for (int64_t i = 0; i < 8; i++)
    for (int64_t j = 0; j < 8; j++) {
      bool kept_t = cr_get(yt, (const int64_t[]){i, j}) != 0;
      bool kept_a = cr_get_flat(ya, i * 8 + j) != 0;
      assert_true(kept_t == kept_a);
      if (kept_t)
        assert_true(fabs(cr_get(yt, (const int64_t[]){i, j}) - (double)(j * 8 + i + 1) / 0.6) <
                    1e-12);
    }
  cr_rng_free(a);
  cr_rng_free(b);
  cr_rng_free(c);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

/* ---- errors */

static void expect_error(cr_ctx *ctx, cr_status st, const char *msg) {
  assert_int_equal(cr_ctx_status(ctx), st);
  assert_string_equal(cr_ctx_error(ctx), msg);
  cr_ctx_clear_error(ctx);
}

static void test_error_messages(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(1);
  cr_tensor *x = cr_zeros(ctx, CR_F32, CR_SHAPE(2, 3));
  assert_null(cr_sum_axis(ctx, x, 2, false));
  expect_error(ctx, CR_ERR_ARG, "sum_axis: [2,3]: axis 2 out of range for 2 dims");
  assert_null(cr_max_axis(ctx, x, -3, true));
  expect_error(ctx, CR_ERR_ARG, "max_axis: [2,3]: axis -3 out of range for 2 dims");
  assert_null(cr_log_softmax(ctx, x, 5));
  expect_error(ctx, CR_ERR_ARG, "log_softmax: [2,3]: axis 5 out of range for 2 dims");

  cr_tensor *logits = cr_zeros(ctx, CR_F32, CR_SHAPE(4, 5));
  assert_null(cr_cross_entropy(ctx, logits, (const int64_t[]){0, 1, 7, 2}, CR_NO_IGNORE));
  expect_error(ctx, CR_ERR_ARG, "cross_entropy: [4,5]: target 7 at row 2 is out of range [0,5)");
  assert_null(cr_cross_entropy(ctx, logits, (const int64_t[]){-1, 1, 2, 2}, -100));
  expect_error(ctx, CR_ERR_ARG, "cross_entropy: [4,5]: target -1 at row 0 is out of range [0,5)");
  assert_null(cr_cross_entropy(ctx, cr_zeros(ctx, CR_F32, CR_SHAPE(2, 3, 4)),
                               (const int64_t[]){0, 0}, CR_NO_IGNORE));
  expect_error(ctx, CR_ERR_SHAPE,
               "cross_entropy: [2,3,4]: logits must be 2-d [N,C] (reshape a "
               "batch of sequences to [B*T,C])");
  assert_null(cr_cross_entropy(ctx, logits, NULL, CR_NO_IGNORE));
  expect_error(ctx, CR_ERR_ARG, "cross_entropy: [4,5]: targets is NULL");

  assert_null(cr_mse(ctx, x, cr_zeros(ctx, CR_F32, CR_SHAPE(3, 2))));
  expect_error(ctx, CR_ERR_SHAPE, "mse: [2,3] and [3,2]: shapes differ (mse does not broadcast)");
  assert_null(cr_mse(ctx, x, cr_zeros(ctx, CR_F64, CR_SHAPE(2, 3))));
  expect_error(ctx, CR_ERR_DTYPE, "mse: [2,3] f32 and [2,3] f64: dtypes differ (use cr_cast)");

  assert_null(cr_dropout(ctx, x, 1.0, rng));
  expect_error(ctx, CR_ERR_ARG, "dropout: [2,3]: p 1 is out of range [0,1)");
  assert_null(cr_dropout(ctx, x, -0.25, rng));
  expect_error(ctx, CR_ERR_ARG, "dropout: [2,3]: p -0.25 is out of range [0,1)");
  assert_null(cr_dropout(ctx, x, NAN, rng));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  /* p is checked in evaluation mode too, so a bad value cannot hide */
  cr_set_training(ctx, false);
  assert_null(cr_dropout(ctx, x, 1.5, rng));
  expect_error(ctx, CR_ERR_ARG, "dropout: [2,3]: p 1.5 is out of range [0,1)");
  cr_set_training(ctx, true);
  assert_null(cr_dropout(ctx, x, 0.5, NULL));
  expect_error(ctx, CR_ERR_ARG, "dropout: [2,3]: rng is NULL (create one with cr_rng_new)");

  /* a NULL input returns NULL and keeps the first message */
  assert_null(cr_sum_axis(ctx, x, 9, false));
  assert_null(cr_softmax(ctx, cr_sum(ctx, NULL), 0));
  assert_null(cr_mean(ctx, x)); /* an error is pending: no op runs */
  expect_error(ctx, CR_ERR_ARG, "sum_axis: [2,3]: axis 9 out of range for 2 dims");
  cr_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sum_mean_all, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sum_axis_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sum_axis_grads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_axis_ties, setup, teardown),
      cmocka_unit_test_setup_teardown(test_softmax_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_softmax_grads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cross_entropy_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cross_entropy_ignore, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropout_modes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropout_statistics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropout_seed_and_grad, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
