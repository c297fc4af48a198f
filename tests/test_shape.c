/* Shape ops: values against hand-computed numbers (slice, concat, stack,
 * split, chunk, index_select, embedding, cast), their gradients for a given
 * seed, that slice/split/chunk are views, and the main error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
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

/* t has shape `shape` and, row-major, exactly the values want[]. */
static void check(const cr_tensor *t, int ndim, const int64_t *shape, const double *want) {
  assert_non_null(t);
  assert_int_equal(cr_ndim(t), ndim);
  for (int d = 0; d < ndim; d++)
    assert_int_equal(cr_dim(t, d), shape[d]);
  for (int64_t i = 0; i < cr_numel(t); i++) {
    if (cr_get_flat(t, i) != want[i])
      fail_msg("element %lld: got %g, want %g", (long long)i, cr_get_flat(t, i), want[i]);
  }
}
#define CHECK(t, shape, ...) check(t, shape, (const double[]){__VA_ARGS__})

/* 0, 1, ..., n-1 as a [r,c] tensor */
static cr_tensor *grid(cr_ctx *ctx, cr_dtype dt, int64_t r, int64_t c) {
  return cr_reshape(ctx, cr_arange(ctx, dt, 0, (double)(r * c), 1), CR_SHAPE(r, c));
}

/* a persistent parameter with requires_grad holding 0, 1, ... */
static cr_tensor *param(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape) {
  cr_tensor *p = cr_tensor_new(ctx, dt, ndim, shape);
  for (int64_t i = 0; i < cr_numel(p); i++)
    cr_set_flat(p, i, (double)i);
  cr_set_requires_grad(p, true);
  return p;
}

/* seed 1, 2, ... of t's shape and dtype */
static cr_tensor *seed_for(cr_ctx *ctx, const cr_tensor *t) {
  cr_tensor *s = cr_arange(ctx, cr_dtype_of(t), 1, (double)cr_numel(t) + 1, 1);
  return cr_reshape(ctx, s, cr_ndim(t), cr_shape(t));
}

static void test_slice_values_and_view(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *x = grid(ctx, (cr_dtype)dt, 4, 6);
    /* columns -5:6:2 = 1, 3, 5 */
    cr_tensor *s = cr_slice(ctx, x, 1, -5, 6, 2);
    CHECK(s, CR_SHAPE(4, 3), 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23);
    assert_int_equal(cr_dtype_of(s), dt);
    assert_false(cr_is_contiguous(s));
    assert_null(cr_data(s));
    /* a view: writing x shows through s */
    cr_set_flat(x, 9, 100); /* x[1][3] = s[1][1] */
    assert_true(cr_get(s, (const int64_t[]){1, 1}) == 100);
    /* rows 1:3 are a contiguous view starting at x's element 6 */
    cr_tensor *r = cr_slice(ctx, x, 0, 1, 3, 1);
    assert_true(cr_is_contiguous(r));
    assert_ptr_equal(cr_data(r), (char *)cr_data(x) + 6 * (dt == CR_F32 ? 4 : 8));
    /* Python clamping of the bounds */
    cr_tensor *a = cr_arange(ctx, (cr_dtype)dt, 0, 10, 1);
    CHECK(cr_slice(ctx, a, 0, -3, 100, 1), CR_SHAPE(3), 7, 8, 9);
    CHECK(cr_slice(ctx, a, 0, -100, 3, 1), CR_SHAPE(3), 0, 1, 2);
    CHECK(cr_slice(ctx, a, -1, 2, -2, 3), CR_SHAPE(2), 2, 5);
    CHECK(cr_slice(ctx, a, 0, 9, 10, 5), CR_SHAPE(1), 9);
    /* a slice of a transposed view: x^T is [6,4], rows 4:6 */
    cr_tensor *ts =
        cr_slice(ctx, cr_transpose(ctx, grid(ctx, (cr_dtype)dt, 4, 6), 0, 1), 0, 4, 6, 1);
    CHECK(ts, CR_SHAPE(2, 4), 4, 10, 16, 22, 5, 11, 17, 23);
  }
  /* no new data: slicing and chunking a [64,64] f64 (32 KiB) costs the
   * arena tensor headers only */
  cr_tensor *big = cr_zeros(ctx, CR_F64, CR_SHAPE(64, 64));
  cr_ctx_stats before, after;
  cr_ctx_get_stats(ctx, &before);
  cr_tensor *half = cr_slice(ctx, big, 1, 0, 64, 2), *quarters[4];
  assert_int_equal(cr_chunk(ctx, big, 4, 1, quarters), CR_OK);
  cr_ctx_get_stats(ctx, &after);
  assert_non_null(half);
  assert_true(after.arena_bytes_used - before.arena_bytes_used < 5 * 1024);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_slice_records_and_grads(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *x = param(ctx, (cr_dtype)dt, CR_SHAPE(3, 4));
    cr_ctx_stats before, after;
    cr_ctx_get_stats(ctx, &before);
    cr_tensor *s = cr_slice(ctx, x, 1, 1, 4, 2); /* columns 1, 3 */
    cr_ctx_get_stats(ctx, &after);
    assert_string_equal(cr_grad_fn(s), "slice");
    assert_int_equal(after.nodes, before.nodes + 1);
    /* seed 1..6 lands in columns 1 and 3 */
    assert_int_equal(cr_backward_seed(ctx, s, seed_for(ctx, s)), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(3, 4), 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6);
    /* overlapping slices: row 1 is in both, so it gets two contributions */
    cr_zero_grad(x);
    cr_tensor *y = cr_add(ctx, cr_slice(ctx, x, 0, 0, 2, 1), cr_slice(ctx, x, 0, 1, 3, 1));
    CHECK(y, CR_SHAPE(2, 4), 4, 6, 8, 10, 12, 14, 16, 18);
    assert_int_equal(cr_backward_seed(ctx, y, seed_for(ctx, y)), CR_OK);
    CHECK(cr_grad(x), CR_SHAPE(3, 4), 1, 2, 3, 4, 6, 8, 10, 12, 5, 6, 7, 8);
    cr_tensor_free(x);
  }
}

/* select is one view node; its gradient lands in its entry of the input's,
 * the other entries 0, an entry selected twice gets both.  x = 2 a is an
 * intermediate, so its gradient is an engine buffer a slice's gradient
 * aliases (shape.c): each pass first fills every entry of a same-sized
 * buffer (sum(x) * 7: the pool hands that buffer back next), so an entry
 * left unzeroed shows as a wrong value.  With other consumers of x, and in
 * anomaly mode. */
static void test_select_records_and_grads(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++)
    for (int variant = 0; variant < 4; variant++) {
      const bool anomaly = variant == 3;
      cr_set_detect_anomaly(ctx, anomaly);
      cr_tensor *a = param(ctx, (cr_dtype)dt, CR_SHAPE(5, 3)); /* 0..14 */
      cr_tensor *dirty = cr_mul_scalar(ctx, cr_sum(ctx, cr_mul_scalar(ctx, a, 2.0)), 7.0);
      assert_int_equal(cr_backward(ctx, dirty), CR_OK);
      cr_zero_grad(a);
      cr_tensor *x = cr_mul_scalar(ctx, a, 2.0);
      cr_ctx_stats before, after;
      cr_ctx_get_stats(ctx, &before);
      cr_tensor *s1 = cr_select(ctx, x, 0, 1), *s3 = cr_select(ctx, x, 0, -2);
      cr_ctx_get_stats(ctx, &after);
      assert_int_equal(after.nodes, before.nodes + 2); /* one node each */
      assert_string_equal(cr_grad_fn(s1), "select");
      CHECK(s1, CR_SHAPE(3), 6, 8, 10);
      CHECK(s3, CR_SHAPE(3), 18, 20, 22);
      /* L = sum(s1 * w) + sum(s1 * v) (entry 1 selected twice: summed)
       *   + sum(s3^2) [+ sum(x) in variant 1, + sum(x * x[0]) in variant 2] */
      cr_tensor *w = cr_arange(ctx, (cr_dtype)dt, 1, 4, 1),
                *v = cr_full(ctx, (cr_dtype)dt, CR_SHAPE(3), 10);
      cr_tensor *L = cr_add(ctx, cr_sum(ctx, cr_mul(ctx, s1, w)),
                            cr_sum(ctx, cr_mul(ctx, cr_select(ctx, x, 0, 1), v)));
      L = cr_add(ctx, L, cr_sum(ctx, cr_square(ctx, s3)));
      if (variant == 1)
        L = cr_add(ctx, L, cr_sum(ctx, x));
      if (variant == 2) /* another consumer, broadcast: dL/dx += x[0] per row, dx[0] += sum rows */
        L = cr_add(ctx, L, cr_sum(ctx, cr_mul(ctx, x, cr_select(ctx, x, 0, 0))));
      assert_int_equal(cr_backward(ctx, L), CR_OK);
      /* dL/dx row 1 = w + v, row 3 = 2 s3, others 0; dL/da = 2 dL/dx */
      double want[15] = {0};
      for (int j = 0; j < 3; j++) {
        want[3 + j] = 2 * ((j + 1) + 10);
        want[9 + j] = 2 * 2 * (18 + 2 * j);
      }
      for (int i = 0; variant == 1 && i < 15; i++)
        want[i] += 2;
      for (int j = 0; variant == 2 && j < 3; j++) { /* x[i][j] * x[0][j] summed over i */
        double col = 0;
        for (int i = 0; i < 5; i++)
          col += 2.0 * (3 * i + j);
        for (int i = 0; i < 5; i++)
          want[3 * i + j] += 2 * 2.0 * j; /* x[0][j] = 2 j */
        want[j] += 2 * col;
      }
      check(cr_grad(a), CR_SHAPE(5, 3), want);
      cr_tensor_free(a);
      cr_ctx_reset(ctx);
    }
  cr_set_detect_anomaly(ctx, false);
}

static void test_concat_values_and_grads(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *a = param(ctx, (cr_dtype)dt, CR_SHAPE(2, 2)); /* [[0,1],[2,3]] */
    cr_tensor *b = param(ctx, (cr_dtype)dt, CR_SHAPE(2, 1)); /* [[0],[1]] */
    cr_tensor *c = param(ctx, (cr_dtype)dt, CR_SHAPE(1, 2)); /* [[0,1]] */
    cr_tensor *ab[2] = {a, b}, *ac[2] = {a, c};
    cr_tensor *y1 = cr_concat(ctx, ab, 2, 1);
    CHECK(y1, CR_SHAPE(2, 3), 0, 1, 0, 2, 3, 1);
    CHECK(cr_concat(ctx, ab, 2, -1), CR_SHAPE(2, 3), 0, 1, 0, 2, 3, 1);
    cr_tensor *y0 = cr_concat(ctx, ac, 2, 0);
    CHECK(y0, CR_SHAPE(3, 2), 0, 1, 2, 3, 0, 1);
    assert_true(cr_is_contiguous(y1));
    assert_string_equal(cr_grad_fn(y1), "concat");
    /* a transposed input is read through its strides */
    cr_tensor *at[2] = {cr_transpose(ctx, a, 0, 1), b};
    CHECK(cr_concat(ctx, at, 2, 1), CR_SHAPE(2, 3), 0, 2, 0, 1, 3, 1);
    /* seed 1..6 over [2,3]: a gets columns 0-1, b column 2 */
    assert_int_equal(cr_backward_seed(ctx, y1, seed_for(ctx, y1)), CR_OK);
    CHECK(cr_grad(a), CR_SHAPE(2, 2), 1, 2, 4, 5);
    CHECK(cr_grad(b), CR_SHAPE(2, 1), 3, 6);
    /* along axis 0: a gets rows 0-1, c row 2 (a accumulates) */
    assert_int_equal(cr_backward_seed(ctx, y0, seed_for(ctx, y0)), CR_OK);
    CHECK(cr_grad(a), CR_SHAPE(2, 2), 2, 4, 7, 9);
    CHECK(cr_grad(c), CR_SHAPE(1, 2), 5, 6);
    cr_tensor_free(a);
    cr_tensor_free(b);
    cr_tensor_free(c);
  }
}

static void test_stack_values_and_grads(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *a = param(ctx, (cr_dtype)dt, CR_SHAPE(3)); /* 0 1 2 */
    cr_tensor *b = param(ctx, (cr_dtype)dt, CR_SHAPE(3));
    for (int i = 0; i < 3; i++)
      cr_set_flat(b, i, 3 + i); /* 3 4 5 */
    cr_tensor *ab[2] = {a, b};
    cr_tensor *y0 = cr_stack(ctx, ab, 2, 0);
    CHECK(y0, CR_SHAPE(2, 3), 0, 1, 2, 3, 4, 5);
    cr_tensor *y1 = cr_stack(ctx, ab, 2, -1);
    CHECK(y1, CR_SHAPE(3, 2), 0, 3, 1, 4, 2, 5);
    CHECK(cr_stack(ctx, ab, 2, 1), CR_SHAPE(3, 2), 0, 3, 1, 4, 2, 5);
    CHECK(cr_stack(ctx, ab, 2, -2), CR_SHAPE(2, 3), 0, 1, 2, 3, 4, 5);
    assert_string_equal(cr_grad_fn(y1), "stack");
    /* seed [[1,2],[3,4],[5,6]]: a gets column 0 */
    assert_int_equal(cr_backward_seed(ctx, y1, seed_for(ctx, y1)), CR_OK);
    CHECK(cr_grad(a), CR_SHAPE(3), 1, 3, 5);
    CHECK(cr_grad(b), CR_SHAPE(3), 2, 4, 6);
    /* 2-d inputs along the middle axis: [2,2] x 2 -> [2,2,2] */
    cr_tensor *m = grid(ctx, (cr_dtype)dt, 2, 2);
    cr_tensor *mm[2] = {m, cr_mul_scalar(ctx, m, 10)};
    CHECK(cr_stack(ctx, mm, 2, 1), CR_SHAPE(2, 2, 2), 0, 1, 0, 10, 2, 3, 20, 30);
    cr_tensor_free(a);
    cr_tensor_free(b);
  }
}

static void test_split_and_chunk(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = grid(ctx, CR_F64, 3, 7);
  cr_tensor *p[3];
  assert_int_equal(cr_split(ctx, x, 1, (const int64_t[]){2, 3, 2}, 3, p), CR_OK);
  CHECK(p[0], CR_SHAPE(3, 2), 0, 1, 7, 8, 14, 15);
  CHECK(p[1], CR_SHAPE(3, 3), 2, 3, 4, 9, 10, 11, 16, 17, 18);
  CHECK(p[2], CR_SHAPE(3, 2), 5, 6, 12, 13, 19, 20);
  for (int i = 0; i < 3; i++)
    assert_false(cr_is_contiguous(p[i]));
  cr_set_flat(x, 11, -1); /* x[1][4] = p[1][1][2] */
  assert_true(cr_get(p[1], (const int64_t[]){1, 2}) == -1);

  /* [2,8] into 4 chunks along axis 1: chunk k holds columns 2k, 2k+1 */
  cr_tensor *y = grid(ctx, CR_F32, 2, 8);
  cr_tensor *c[4];
  assert_int_equal(cr_chunk(ctx, y, 4, 1, c), CR_OK);
  for (int k = 0; k < 4; k++) {
    CHECK(c[k], CR_SHAPE(2, 2), 2 * k, 2 * k + 1, 8 + 2 * k, 9 + 2 * k);
    assert_false(cr_is_contiguous(c[k]));
  }
  /* along axis 0 the chunks are contiguous views into y's data */
  cr_tensor *r[2];
  assert_int_equal(cr_chunk(ctx, y, 2, -2, r), CR_OK);
  assert_true(cr_is_contiguous(r[1]));
  assert_ptr_equal(cr_data(r[1]), (float *)cr_data(y) + 8);

  /* pieces are slice nodes and their gradients meet in x */
  cr_tensor *w = param(ctx, CR_F64, CR_SHAPE(2, 4));
  cr_tensor *h[2];
  assert_int_equal(cr_chunk(ctx, w, 2, 1, h), CR_OK);
  assert_string_equal(cr_grad_fn(h[0]), "slice");
  cr_tensor *prod = cr_mul(ctx, h[0], h[1]); /* d/dh0 = h1, d/dh1 = h0 */
  assert_int_equal(cr_backward_seed(ctx, prod, cr_ones(ctx, CR_F64, CR_SHAPE(2, 2))), CR_OK);
  CHECK(cr_grad(w), CR_SHAPE(2, 4), 2, 3, 0, 1, 6, 7, 4, 5);
  cr_tensor_free(w);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
}

static void test_index_select(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *x = param(ctx, (cr_dtype)dt, CR_SHAPE(5, 3));
    int64_t idx[3] = {4, 1, 4};
    cr_tensor *y = cr_index_select(ctx, x, 0, idx, 3);
    CHECK(y, CR_SHAPE(3, 3), 12, 13, 14, 3, 4, 5, 12, 13, 14);
    assert_string_equal(cr_grad_fn(y), "index_select");
    CHECK(cr_index_select(ctx, x, -1, (const int64_t[]){2, 0}, 2), CR_SHAPE(5, 2), 2, 0, 5, 3, 8, 6,
          11, 9, 14, 12);
    /* of a transposed view: x^T [3,5], columns 4 and 0 */
    CHECK(cr_index_select(ctx, cr_transpose(ctx, x, 0, 1), 1, (const int64_t[]){4, 0}, 2),
          CR_SHAPE(3, 2), 12, 0, 13, 1, 14, 2);
    /* the indices were copied: changing them does not change the gradient */
    idx[0] = idx[1] = idx[2] = 0;
    assert_int_equal(cr_backward_seed(ctx, y, seed_for(ctx, y)), CR_OK);
    /* row 4 gets seed rows 0 and 2 (1+7, 2+8, 3+9), row 1 seed row 1 */
    CHECK(cr_grad(x), CR_SHAPE(5, 3), 0, 0, 0, 4, 5, 6, 0, 0, 0, 0, 0, 0, 8, 10, 12);
    cr_tensor_free(x);
  }
}

static void test_embedding(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = CR_F32; dt <= CR_F64; dt++) {
    cr_tensor *W = param(ctx, (cr_dtype)dt, CR_SHAPE(4, 3)); /* row v = 3v, 3v+1, 3v+2 */
    int64_t ids[4] = {3, 0, 3, 1};
    cr_tensor *y = cr_embedding(ctx, W, ids, CR_SHAPE(2, 2));
    CHECK(y, CR_SHAPE(2, 2, 3), 9, 10, 11, 0, 1, 2, 9, 10, 11, 3, 4, 5);
    assert_string_equal(cr_grad_fn(y), "embedding");
    assert_int_equal(cr_dtype_of(y), dt);
    ids[0] = 2; /* copied at the call */
    /* seed 1..12: row 3 gets seeds 1-3 and 7-9, row 0 4-6, row 1 10-12 */
    assert_int_equal(cr_backward_seed(ctx, y, seed_for(ctx, y)), CR_OK);
    CHECK(cr_grad(W), CR_SHAPE(4, 3), 4, 5, 6, 10, 11, 12, 0, 0, 0, 8, 10, 12);
    /* 1-d ids and a transposed table W'^T with W' [3,4] */
    cr_tensor *Wt = cr_transpose(ctx, grid(ctx, (cr_dtype)dt, 3, 4), 0, 1);
    CHECK(cr_embedding(ctx, Wt, (const int64_t[]){2, 2}, CR_SHAPE(2)), CR_SHAPE(2, 3), 2, 6, 10, 2,
          6, 10);
    cr_tensor_free(W);
  }
}

static void test_cast(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = cr_tensor_new(ctx, CR_F64, CR_SHAPE(2, 2));
  const double v[4] = {0.1, 1.0 / 3.0, -2.5, 1e-3};
  for (int i = 0; i < 4; i++)
    cr_set_flat(x, i, v[i]);
  cr_set_requires_grad(x, true);
  assert_ptr_equal(cr_cast(ctx, x, CR_F64), x); /* already f64 */
  cr_tensor *y = cr_cast(ctx, x, CR_F32);
  assert_int_equal(cr_dtype_of(y), CR_F32);
  assert_string_equal(cr_grad_fn(y), "cast");
  const float *fy = cr_data(y);
  assert_non_null(fy);
  for (int i = 0; i < 4; i++)
    assert_true(fy[i] == (float)v[i]);
  assert_true(fy[1] != v[1]); /* really rounded to f32 */
  /* of a transposed view */
  cr_tensor *yt = cr_cast(ctx, cr_transpose(ctx, x, 0, 1), CR_F32);
  CHECK(yt, CR_SHAPE(2, 2), (float)0.1, (float)-2.5, (float)(1.0 / 3.0), (float)1e-3);
  /* back to f64: exact */
  cr_tensor *z = cr_cast(ctx, y, CR_F64);
  CHECK(z, CR_SHAPE(2, 2), (float)0.1, (float)(1.0 / 3.0), -2.5, (float)1e-3);
  /* gradient: an f32 seed comes back as f64 */
  cr_tensor *seed = cr_from_array(ctx, CR_F32, CR_SHAPE(2, 2), (const float[]){1.5f, -2, 0.25f, 8});
  assert_int_equal(cr_backward_seed(ctx, y, seed), CR_OK);
  assert_int_equal(cr_dtype_of(cr_grad(x)), CR_F64);
  CHECK(cr_grad(x), CR_SHAPE(2, 2), 1.5, -2, 0.25, 8);
  /* and through the transposed cast it accumulates transposed */
  cr_tensor *seed2 = cr_from_array(ctx, CR_F32, CR_SHAPE(2, 2), (const float[]){1, 10, 100, 1000});
  assert_int_equal(cr_backward_seed(ctx, yt, seed2), CR_OK);
  CHECK(cr_grad(x), CR_SHAPE(2, 2), 2.5, 98, 10.25, 1008);
  /* two casts of the same f32 value both add into its gradient:
   * y2 = cast(y) + 3 cast(y), so dy2/dy = 4 */
  cr_tensor *y2 =
      cr_add(ctx, cr_cast(ctx, y, CR_F64), cr_mul_scalar(ctx, cr_cast(ctx, y, CR_F64), 3));
  cr_tensor *seed3 = cr_from_array(ctx, CR_F64, CR_SHAPE(2, 2), (const double[]){1, 2, 3, 4});
  cr_zero_grad(x);
  cr_retain_grad(y);
  assert_int_equal(cr_backward_seed(ctx, y2, seed3), CR_OK);
  assert_int_equal(cr_dtype_of(cr_grad(y)), CR_F32);
  CHECK(cr_grad(y), CR_SHAPE(2, 2), 4, 8, 12, 16);
  CHECK(cr_grad(x), CR_SHAPE(2, 2), 4, 8, 12, 16);
  cr_tensor_free(x);
}

static void test_error_messages(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = cr_zeros(ctx, CR_F32, CR_SHAPE(3, 4));
  cr_tensor *c = cr_zeros(ctx, CR_F32, CR_SHAPE(3, 5));
  cr_tensor *xs[3] = {a, a, c};
  assert_null(cr_concat(ctx, xs, 3, 0));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "concat: input 2 [3,5] vs input 0 [3,4]: dim 1 "
                                         "differs (only the concat axis 0 may differ)");
  cr_ctx_clear_error(ctx);
  cr_tensor *v = cr_zeros(ctx, CR_F32, CR_SHAPE(4));
  cr_tensor *av[2] = {a, v};
  assert_null(cr_concat(ctx, av, 2, 1));
  assert_string_equal(cr_ctx_error(ctx), "concat: input 1 [4] vs input 0 [3,4]: 1 dims vs 2");
  cr_ctx_clear_error(ctx);
  assert_null(cr_concat(ctx, xs, 2, -3));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "concat: [3,4]: axis -3 out of range for 2 dims");
  cr_ctx_clear_error(ctx);
  cr_tensor *ac[2] = {a, c};
  assert_null(cr_stack(ctx, ac, 2, 0));
  assert_string_equal(cr_ctx_error(ctx), "stack: input 1 [3,5] vs input 0 [3,4]: shapes "
                                         "differ (stack needs equal shapes)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_stack(ctx, xs, 2, 3));
  assert_string_equal(cr_ctx_error(ctx), "stack: [3,4]: axis 3 out of range for the 3-dim "
                                         "result");
  cr_ctx_clear_error(ctx);
  assert_null(cr_concat(ctx, xs, 0, 0));
  assert_string_equal(cr_ctx_error(ctx), "concat: 0 inputs: need at least one tensor");
  cr_ctx_clear_error(ctx);

  /* chunk: not divisible; out[] is cleared */
  cr_tensor *b = cr_zeros(ctx, CR_F64, CR_SHAPE(2, 7));
  cr_tensor *out[4] = {a, a, a, a};
  assert_int_equal(cr_chunk(ctx, b, 4, 1, out), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "chunk: [2,7] axis 1: dim 7 does not divide into 4 "
                                         "equal chunks");
  for (int i = 0; i < 4; i++)
    assert_null(out[i]);
  cr_ctx_clear_error(ctx);
  out[0] = out[1] = a;
  assert_int_equal(cr_split(ctx, b, 1, (const int64_t[]){3, 3}, 2, out), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "split: [2,7] axis 1: sizes sum to 6, not the dim 7");
  assert_null(out[0]);
  assert_null(out[1]);
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_split(ctx, b, 1, (const int64_t[]){3, 0, 4}, 3, out), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "split: [2,7] axis 1: size 0 at position 1 is out of "
                                         "range [1,7]");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_chunk(ctx, b, 2, 2, out), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "chunk: [2,7]: axis 2 out of range for 2 dims");
  cr_ctx_clear_error(ctx);

  /* index_select / embedding: index out of range */
  cr_tensor *x = cr_zeros(ctx, CR_F64, CR_SHAPE(5, 3));
  assert_null(cr_index_select(ctx, x, 0, (const int64_t[]){0, 4, 7}, 3));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "index_select: [5,3] axis 0: index 7 at position 2 "
                                         "is out of range [0,5)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_index_select(ctx, x, 1, (const int64_t[]){-1}, 1));
  assert_string_equal(cr_ctx_error(ctx), "index_select: [5,3] axis 1: index -1 at position 0 "
                                         "is out of range [0,3)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_embedding(ctx, x, (const int64_t[]){1, 5}, CR_SHAPE(2)));
  assert_string_equal(cr_ctx_error(ctx), "embedding: weight [5,3]: id 5 at position 1 is out "
                                         "of range [0,5)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_embedding(ctx, v, (const int64_t[]){1}, CR_SHAPE(1)));
  assert_string_equal(cr_ctx_error(ctx), "embedding: weight [4]: must be 2-d [V,E]");
  cr_ctx_clear_error(ctx);

  /* slice: bad axis, empty, step */
  assert_null(cr_slice(ctx, x, 2, 0, 1, 1));
  assert_string_equal(cr_ctx_error(ctx), "slice: [5,3]: axis 2 out of range for 2 dims");
  cr_ctx_clear_error(ctx);
  assert_null(cr_slice(ctx, x, 0, 4, 2, 1));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "slice: [5,3] axis 0: 4:2:1 selects no elements "
                                         "(empty tensors are not supported)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_slice(ctx, x, -1, 0, 3, 0));
  assert_string_equal(cr_ctx_error(ctx), "slice: [5,3] axis 1: step 0 must be >= 1");
  cr_ctx_clear_error(ctx);

  /* cast: unknown dtype */
  assert_null(cr_cast(ctx, x, (cr_dtype)7));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_DTYPE);
  assert_string_equal(cr_ctx_error(ctx), "cast: [5,3] f64 to dtype 7: only f32 and f64 are "
                                         "supported");
  cr_ctx_clear_error(ctx);

  /* a NULL input keeps the first message; split reports the pending status */
  assert_null(cr_slice(ctx, x, 0, 9, 10, 1));
  cr_tensor *bad[2] = {a, cr_tanh(ctx, a)};
  assert_null(bad[1]);
  assert_null(cr_concat(ctx, bad, 2, 0));
  out[0] = a;
  assert_int_equal(cr_chunk(ctx, bad[1], 1, 0, out), CR_ERR_SHAPE);
  assert_null(out[0]);
  assert_string_equal(cr_ctx_error(ctx), "slice: [5,3] axis 0: 9:10:1 selects no elements "
                                         "(empty tensors are not supported)");
  cr_ctx_clear_error(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_slice_values_and_view, setup, teardown),
      cmocka_unit_test_setup_teardown(test_slice_records_and_grads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_select_records_and_grads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concat_values_and_grads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stack_values_and_grads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_split_and_chunk, setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_select, setup, teardown),
      cmocka_unit_test_setup_teardown(test_embedding, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cast, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
