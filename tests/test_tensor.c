/* Tensors: creation, values, strides, persistence, printing, the RNG. */
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

static void test_creation_values(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *z = cr_zeros(ctx, CR_F32, CR_SHAPE(2, 3));
  cr_tensor *o = cr_ones(ctx, CR_F64, CR_SHAPE(4));
  cr_tensor *f = cr_full(ctx, CR_F64, CR_SHAPE(2, 2, 2, 2), 2.5);
  cr_tensor *a = cr_arange(ctx, CR_F32, 1, 2, 0.25);
  double src[6] = {1, 2, 3, 4, 5, 6};
  cr_tensor *m = cr_from_array(ctx, CR_F64, CR_SHAPE(2, 3), src);
  assert_non_null(z);
  assert_int_equal(cr_numel(z), 6);
  assert_int_equal(cr_ndim(f), 4);
  assert_int_equal(cr_dtype_of(z), CR_F32);
  for (int i = 0; i < 6; i++)
    assert_true(cr_get_flat(z, i) == 0.0);
  for (int i = 0; i < 4; i++)
    assert_true(cr_get_flat(o, i) == 1.0);
  assert_true(cr_get_flat(f, 15) == 2.5);
  assert_int_equal(cr_numel(a), 4);
  assert_true(cr_get_flat(a, 3) == 1.75);
  src[0] = 99; /* from_array copied */
  assert_true(cr_get(m, (const int64_t[]){1, 2}) == 6.0);
  assert_true(cr_get(m, (const int64_t[]){0, 0}) == 1.0);
  assert_true(isnan(cr_get(m, (const int64_t[]){2, 0})));
}

static void test_wrap_borrows(void **state) {
  cr_ctx *ctx = *state;
  float buf[4] = {1, 2, 3, 4};
  cr_tensor *w = cr_wrap(ctx, CR_F32, CR_SHAPE(2, 2), buf);
  buf[3] = 7;
  assert_true(cr_get_flat(w, 3) == 7.0);
  assert_ptr_equal(cr_data(w), buf);
}

static void test_transpose_is_a_view(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = cr_arange(ctx, CR_F64, 0, 6, 1);
  cr_tensor *m = cr_reshape(ctx, a, CR_SHAPE(2, 3));
  cr_tensor *t = cr_transpose(ctx, m, 0, 1);
  assert_int_equal(cr_dim(t, 0), 3);
  assert_false(cr_is_contiguous(t));
  assert_null(cr_data(t));
  /* t[2][1] = m[1][2] = 5 */
  assert_true(cr_get(t, (const int64_t[]){2, 1}) == 5.0);
  cr_tensor *c = cr_contiguous(ctx, t);
  assert_true(cr_is_contiguous(c));
  double *d = cr_data(c);
  const double want[6] = {0, 3, 1, 4, 2, 5};
  for (int i = 0; i < 6; i++)
    assert_true(d[i] == want[i]);
}

static void test_persist_survives_reset(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = cr_full(ctx, CR_F32, CR_SHAPE(3), 4.0);
  cr_tensor *p = cr_persist(ctx, a);
  assert_true(cr_is_persistent(p));
  cr_ctx_reset(ctx);
  cr_tensor *b = cr_full(ctx, CR_F32, CR_SHAPE(3), -1.0); /* reuses a's memory */
  assert_true(cr_get_flat(p, 2) == 4.0);
  assert_non_null(b);
  /* copy_into converts dtypes */
  cr_tensor *q = cr_tensor_new(ctx, CR_F64, CR_SHAPE(3));
  assert_int_equal(cr_copy_into(ctx, q, b), CR_OK);
  assert_true(cr_get_flat(q, 1) == -1.0);
  cr_tensor_free(p);
  cr_tensor_free(q);
  cr_tensor_free(NULL);
}

static void test_rng_reproducible(void **state) {
  (void)state;
  cr_rng *a = cr_rng_new(7), *b = cr_rng_new(7), *c = cr_rng_new(8);
  bool differs = false;
  for (int i = 0; i < 100; i++) {
    double x = cr_rng_uniform(a), y = cr_rng_uniform(b), z = cr_rng_uniform(c);
    assert_true(x == y);
    assert_true(x >= 0 && x < 1);
    differs |= x != z;
  }
  assert_true(differs);
  /* a fixed value pins the stream across machines (xoshiro256**, splitmix64) */
  cr_rng_seed(a, 42);
  uint64_t st[5];
  cr_rng_get_state(a, st);
  assert_true(st[0] == 0xbdd732262feb6e95ull);
  /* state round trip, including a pending normal */
  (void)cr_rng_normal(a);
  cr_rng_get_state(a, st);
  double n1 = cr_rng_normal(a), u1 = cr_rng_uniform(a);
  cr_rng_set_state(b, st);
  assert_true(cr_rng_normal(b) == n1);
  assert_true(cr_rng_uniform(b) == u1);
  /* moments of 20000 normals */
  double s = 0, s2 = 0;
  for (int i = 0; i < 20000; i++) {
    double v = cr_rng_normal(c);
    s += v;
    s2 += v * v;
  }
  assert_true(fabs(s / 20000) < 0.03);
  assert_true(fabs(s2 / 20000 - 1) < 0.05);
  for (int i = 0; i < 1000; i++)
    assert_true(cr_rng_below(c, 5) < 5);
  cr_rng_free(a);
  cr_rng_free(b);
  cr_rng_free(c);
}

static void test_print(void **state) {
  cr_ctx *ctx = *state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_print(f, cr_arange(ctx, CR_F32, 0, 4, 1));
  cr_print(f, cr_arange(ctx, CR_F64, 0, 20, 1));
  cr_print(f, NULL);
  fclose(f);
  assert_non_null(strstr(buf, "tensor([0, 1, 2, 3], shape=[4], dtype=f32)"));
  assert_non_null(strstr(buf, "tensor([0, 1, 2, ..., 17, 18, 19], shape=[20], dtype=f64)"));
  assert_non_null(strstr(buf, "tensor(NULL)"));
  free(buf);
}

static void test_bad_shapes(void **state) {
  cr_ctx *ctx = *state;
  assert_null(cr_zeros(ctx, CR_F32, CR_SHAPE(2, 0)));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "zeros: [2,0]: dim 1 is 0, every dim must be >= 1");
  cr_ctx_clear_error(ctx);
  assert_null(cr_zeros(ctx, CR_F32, 7, (const int64_t[]){1, 1, 1, 1, 1, 1, 1}));
  assert_string_equal(cr_ctx_error(ctx), "zeros: 7 dims: a tensor has 1 to 6 dims");
  cr_ctx_clear_error(ctx);
  assert_null(cr_arange(ctx, CR_F32, 0, 1, 0));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
}

/* cr_all_finite on views (slices, transposes, broadcasts of 1..4 dims):
 * one NaN or Inf at any position of the view is found, a NaN outside the
 * view is not seen, and values that are only large are finite. */
static void test_all_finite_of_views(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = 0; dt < 2; dt++) {
    const cr_dtype type = dt ? CR_F64 : CR_F32;
    cr_tensor *base = cr_zeros(ctx, type, CR_SHAPE(3, 4, 5, 6));
    /* [3,2,5,3]: every other row of dim 1, every other column of dim 3 */
    cr_tensor *v = cr_slice(ctx, cr_slice(ctx, base, 1, 1, 4, 2), 3, 0, 6, 2);
    cr_tensor *tv = cr_transpose(ctx, cr_select(ctx, base, 0, 1), 0, 2); /* [6,5,4] */
    assert_non_null(v);
    assert_non_null(tv);
    assert_true(cr_all_finite(v) && cr_all_finite(tv));
    cr_set_flat(base, 3 * 4 * 5 * 6 - 1, 1e30); /* large, finite */
    assert_true(cr_all_finite(base));
    for (int i = 0; i < cr_numel(v); i++) { /* each position of the view */
      const double bad = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
      cr_set_flat(v, i, bad);
      assert_false(cr_all_finite(v));
      assert_false(cr_all_finite(base));
      cr_set_flat(v, i, 0);
      assert_true(cr_all_finite(v));
    }
    /* a value the view skips (dim 1 row 0, dim 3 column 1) */
    cr_set_flat(base, 1, NAN);
    assert_true(cr_all_finite(v));
    assert_false(cr_all_finite(base));
    cr_set_flat(base, 1, 0);
    for (int i = 0; i < cr_numel(tv); i++) {
      cr_set_flat(tv, i, NAN);
      assert_false(cr_all_finite(tv));
      cr_set_flat(tv, i, 0);
    }
    assert_true(cr_all_finite(tv));
  }
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_creation_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrap_borrows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transpose_is_a_view, setup, teardown),
      cmocka_unit_test_setup_teardown(test_persist_survives_reset, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rng_reproducible, setup, teardown),
      cmocka_unit_test_setup_teardown(test_print, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_shapes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_all_finite_of_views, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
