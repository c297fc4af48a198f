/* The graph and reverse-mode autodiff: values against hand-derived
 * gradients, accumulation, diamonds, weight sharing over time, grad mode,
 * detach, arena resets, steady-state allocation, and error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "internal.h" /* test_slice_gradient_views reads the engine's buffer */

static int setup(void **state) {
  *state = cr_ctx_new();
  return *state ? 0 : -1;
}
static int teardown(void **state) {
  cr_ctx_free(*state);
  return 0;
}

static cr_tensor *param(cr_ctx *ctx, int ndim, const int64_t *shape, const double *v) {
  cr_tensor *p = cr_tensor_new(ctx, CR_F64, ndim, shape);
  for (int64_t i = 0; i < cr_numel(p); i++)
    cr_set_flat(p, i, v[i]);
  cr_set_requires_grad(p, true);
  return p;
}

/* L = sum(a*b + a): dL/da = b + 1, dL/db = a */
static void test_hand_values(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = param(ctx, CR_SHAPE(2), (const double[]){1, 2});
  cr_tensor *b = param(ctx, CR_SHAPE(2), (const double[]){3, 4});
  cr_tensor *L = cr_sum(ctx, cr_add(ctx, cr_mul(ctx, a, b), a));
  assert_non_null(L);
  assert_true(cr_item(L) == 1 * 3 + 2 * 4 + 1 + 2);
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  assert_true(cr_get_flat(cr_grad(a), 0) == 4 && cr_get_flat(cr_grad(a), 1) == 5);
  assert_true(cr_get_flat(cr_grad(b), 0) == 1 && cr_get_flat(cr_grad(b), 1) == 2);
  cr_tensor_free(a);
  cr_tensor_free(b);
}

/* [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]];  L = sum(A@B):
 * dL/dA = 1 B^T -> rows [11,15]; dL/dB = A^T 1 -> [[4,4],[6,6]] */
static void test_matmul_values(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *A = param(ctx, CR_SHAPE(2, 2), (const double[]){1, 2, 3, 4});
  cr_tensor *B = param(ctx, CR_SHAPE(2, 2), (const double[]){5, 6, 7, 8});
  cr_tensor *Y = cr_matmul(ctx, A, B);
  const double want[4] = {19, 22, 43, 50};
  for (int i = 0; i < 4; i++)
    assert_true(cr_get_flat(Y, i) == want[i]);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, Y)), CR_OK);
  const double ga[4] = {11, 15, 11, 15}, gb[4] = {4, 4, 6, 6};
  for (int i = 0; i < 4; i++) {
    assert_true(cr_get_flat(cr_grad(A), i) == ga[i]);
    assert_true(cr_get_flat(cr_grad(B), i) == gb[i]);
  }
  /* f32 gives the same numbers */
  cr_tensor *a32 = cr_cast(ctx, A, CR_F32), *b32 = cr_cast(ctx, B, CR_F32);
  cr_tensor *y32 = cr_matmul(ctx, a32, b32);
  for (int i = 0; i < 4; i++)
    assert_true(cr_get_flat(y32, i) == want[i]);
  cr_tensor_free(A);
  cr_tensor_free(B);
}

/* The matmul forward and both VJPs agree between the BLIS path (large
 * products) and the plain-loop path (small ones), on plain and transposed
 * operands, in both dtypes. */
extern int64_t cr__small_gemm_mnk; /* internal: the small-product threshold */
extern int64_t cr__skinny_max_m;   /* internal: rows up to which the few-row kernel runs */
extern int cr__skinny_isa;         /* internal: its instruction set (0 none, 1 AVX2, 2 AVX-512) */

static void matmul_both_paths(cr_ctx *ctx, cr_dtype dt, bool ta, bool tb, int64_t M, int64_t K,
                              int64_t N, double *max_diff) {
  cr_rng *rng = cr_rng_new(17);
  cr_tensor *A =
      cr_persist(ctx, cr_rand_normal(ctx, rng, dt, ta ? 2 : 2,
                                     ta ? (const int64_t[]){K, M} : (const int64_t[]){M, K}, 0, 1));
  cr_tensor *B =
      cr_persist(ctx, cr_rand_normal(ctx, rng, dt, 2,
                                     tb ? (const int64_t[]){N, K} : (const int64_t[]){K, N}, 0, 1));
  cr_tensor *seed = cr_persist(ctx, cr_rand_normal(ctx, rng, dt, CR_SHAPE(M, N), 0, 1));
  cr_set_requires_grad(A, true);
  cr_set_requires_grad(B, true);
  int64_t most = M * N > M * K ? (M * N > K * N ? M * N : K * N) : (M * K > K * N ? M * K : K * N);
  double *got[5][3];
  for (int p = 0; p < 5; p++)
    for (int w = 0; w < 3; w++)
      got[p][w] = malloc(sizeof(double) * (size_t)most);
  int64_t saved = cr__small_gemm_mnk, saved_skinny = cr__skinny_max_m;
  int saved_isa = cr__skinny_isa;
  for (int path = 0; path < 5; path++) {
    /* 0: always BLIS; 1: always the plain loops; 2: the few-row kernel of
     * the CPU's best instruction set wherever its layout allows (BLIS
     * elsewhere, or without AVX2); 3: the same with the AVX2 kernel; 4: as
     * 2 with b the leaf itself (transposed: its gradient a view whose
     * columns are contiguous, staged as gb^T += G^T A) */
    cr__small_gemm_mnk = path == 1 ? INT64_MAX : 0;
    cr__skinny_max_m = path >= 2 ? 64 : 0;
    cr__skinny_isa = path == 3 && saved_isa != 0 ? 1 : saved_isa;
    cr_zero_grad(A);
    cr_zero_grad(B);
    cr_tensor *a = ta ? cr_transpose(ctx, A, 0, 1) : A, *b = tb ? cr_transpose(ctx, B, 0, 1) : B;
    /* b made by an op (here a copy), as a layer's weight view is: the
     * few-row kernel then reads it from panels packed once */
    if (path == 2 || path == 3)
      b = cr_mul_scalar(ctx, b, 1.0);
    cr_tensor *y = cr_matmul(ctx, a, b);
    assert_non_null(y);
    assert_int_equal(cr_backward_seed(ctx, y, seed), CR_OK);
    cr_to_doubles(y, got[path][0]);
    cr_to_doubles(cr_grad(A), got[path][1]);
    cr_to_doubles(cr_grad(B), got[path][2]);
    cr_ctx_reset(ctx);
  }
  cr__small_gemm_mnk = saved;
  cr__skinny_max_m = saved_skinny;
  cr__skinny_isa = saved_isa;
  /* and the loops agree with a reference triple loop in double */
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double ref = 0;
      for (int64_t p = 0; p < K; p++)
        ref +=
            cr_get_flat(A, ta ? p * M + i : i * K + p) * cr_get_flat(B, tb ? j * K + p : p * N + j);
      *max_diff = fmax(*max_diff, fabs(ref - got[1][0][i * N + j]) / (1 + fabs(ref)));
    }
  int64_t sizes[3] = {M * N, M * K, K * N};
  for (int path = 0; path < 5; path += 1 + (path == 0))
    for (int w = 0; w < 3; w++)
      for (int64_t i = 0; i < sizes[w]; i++)
        *max_diff =
            fmax(*max_diff, fabs(got[path][w][i] - got[1][w][i]) / (1 + fabs(got[1][w][i])));
  for (int p = 0; p < 5; p++)
    for (int w = 0; w < 3; w++)
      free(got[p][w]);
  cr_tensor_free(A);
  cr_tensor_free(B);
  cr_tensor_free(seed);
  cr_rng_free(rng);
}

static void test_matmul_blis_and_loop_paths_agree(void **state) {
  cr_ctx *ctx = *state;
  for (int dt = 0; dt < 2; dt++) {
    double max_diff = 0;
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        /* k > 512: several passes; m <= 32: packed; m = 150: a weight
         * gradient of more rows than are staged, added at once */
        for (int size = 0; size < 4; size++)
          matmul_both_paths(ctx, dt ? CR_F64 : CR_F32, ta, tb,
                            (const int64_t[]){37, 5, 32, 150}[size],
                            (const int64_t[]){45, 600, 300, 40}[size],
                            (const int64_t[]){29, 70, 37, 70}[size], &max_diff);
    printf("matmul %s: BLIS vs the few-row kernels vs loops vs reference, max relative "
           "difference %.2e\n",
           dt ? "f64" : "f32", max_diff);
    assert_true(max_diff < (dt ? 1e-13 : 1e-4));
  }
}

/* addmm in f32, y = c + a @ b, with c a full [M,N], a bias row [N], a
 * [1,N] row and a transposed (column-strided) [M,N] view, through the
 * few-row kernel (which reads c as it writes y, k across two blocks) and
 * through BLIS: y against a double reference, and both paths alike. */
static void test_addmm_f32_every_c_layout(void **state) {
  cr_ctx *ctx = *state;
  enum { M = 7, K = 300, N = 40 };
  cr_rng *rng = cr_rng_new(23);
  cr_tensor *a = cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(M, K), 0, 1);
  cr_tensor *w = cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(K, N), 0, 1);
  cr_tensor *cs[4] = {
      cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(M, N), 0, 1),
      cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(N), 0, 1),
      cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(1, N), 0, 1),
      cr_transpose(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(N, M), 0, 1), 0, 1)};
  const int64_t saved = cr__skinny_max_m;
  for (int k = 0; k < 4; k++) {
    double got[2][M * N];
    for (int path = 0; path < 2; path++) { /* 0: the few-row kernel (if any); 1: BLIS */
      cr__skinny_max_m = path ? 0 : saved;
      int64_t small = cr__small_gemm_mnk;
      cr__small_gemm_mnk = 0;
      cr_tensor *y = cr_addmm(ctx, cs[k], a, w);
      cr__small_gemm_mnk = small;
      if (!y)
        printf("addmm c layout %d: %s\n", k, cr_ctx_error(ctx));
      assert_non_null(y);
      cr_to_doubles(y, got[path]);
    }
    cr__skinny_max_m = saved;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        const cr_tensor *c = cs[k];
        double want = cr_get_flat(c, c->ndim == 1 ? j : c->shape[0] == 1 ? j : i * N + j), sc = 1;
        if (k == 3)
          want = cr_get(c, (const int64_t[]){i, j});
        for (int64_t p = 0; p < K; p++) {
          const double t = cr_get_flat(a, i * K + p) * cr_get_flat(w, p * N + j);
          want += t;
          sc += fabs(t);
        }
        for (int path = 0; path < 2; path++)
          assert_true(fabs(got[path][i * N + j] - want) <= 1e-5 * sc);
      }
  }
  cr_rng_free(rng);
  cr_ctx_reset(ctx);
}

/* The packed few-row kernel against a double-precision reference, on every
 * tile shape it cuts m into (6..1 rows, 1..4 panels), partial panels, k
 * across block boundaries, a transposed source, alpha and beta:
 * |C - ref| <= 1e-5 (sum_p |alpha a_ip b_pj| + 0.1), nothing written past C.
 * Where the CPU has AVX-512 both kernels run and must agree bit for bit
 * (the same FMAs in the same order), as must consecutive calls, which walk
 * few-row products' columns in opposite directions; the panels are also
 * staged row by row into a packing made for more rows than the product
 * uses, as the weight gradients' staging does, and A is also read by
 * columns (a^T: ai = 1, ap = m), which passes of many rows copy first. */
static void packed_case(int64_t m, int64_t n, int64_t k, bool trans, float alpha, float beta) {
  float *A = malloc((size_t)(m * k) * sizeof *A), *B = malloc((size_t)(k * n) * sizeof *B);
  float *C = malloc((size_t)(m * n + 64) * sizeof *C); /* 64 guard floats after */
  double *want = malloc((size_t)(m * n) * sizeof *want), *scale = malloc((size_t)(m * n) * 8);
  float *P = aligned_alloc(64, (cr__skinny_packed_floats(k, n) * sizeof(float) + 63) / 64 * 64);
  assert_true(A && B && C && want && scale && P);
  for (int64_t i = 0; i < m * k; i++)
    A[i] = (float)((double)(i * 7919 % 1000) / 500.0 - 1.0);
  for (int64_t i = 0; i < k * n; i++)
    B[i] = (float)((double)(i * 104729 % 1000) / 500.0 - 1.0);
  for (int64_t i = 0; i < m * n + 64; i++)
    C[i] = i < m * n ? (float)(i % 5) - 2.0f : 12345.0f;
  const int64_t rs = trans ? 1 : n, cs = trans ? k : 1; /* op(B)[p, j] = B[p*rs + j*cs] */
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double w = beta * (double)C[i * n + j], sc = 1e-1;
      for (int64_t p = 0; p < k; p++) {
        const double t = (double)alpha * A[i * k + p] * B[p * rs + j * cs];
        w += t;
        sc += fabs(t);
      }
      want[i * n + j] = w;
      scale[i * n + j] = sc;
    }
  const int64_t kp = k + 37; /* staged: packed for more rows than used */
  float *S = aligned_alloc(64, (cr__skinny_packed_floats(kp, n) * sizeof(float) + 63) / 64 * 64);
  float *C0 = malloc((size_t)(m * n + 64) * sizeof *C0);
  float *At = malloc((size_t)(m * k) * sizeof *At); /* At[p*m + i] = A[i*k + p] */
  assert_true(S && C0 && At);
  for (int64_t i = 0; i < m; i++)
    for (int64_t p = 0; p < k; p++)
      At[p * m + i] = A[i * k + p];
  memcpy(C0, C, (size_t)(m * n + 64) * sizeof *C);
  cr__skinny_pack(k, n, B, rs, cs, P);
  for (int64_t p0 = 0; p0 < k; p0 += 5) /* 5 rows at a time */
    cr__skinny_pack_rows(kp, p0, k - p0 < 5 ? k - p0 : 5, n, B + p0 * rs, rs, cs, S);
  const int saved_isa = cr__skinny_isa;
  float *first = NULL;
  for (int isa = CR__SKINNY_AVX2; isa <= saved_isa; isa++)
    for (int staged = 0; staged < 3; staged++) { /* 2: A by columns */
      cr__skinny_isa = isa;
      memcpy(C, C0, (size_t)(m * n + 64) * sizeof *C);
      if (staged == 1)
        cr__skinny_sgemm_packed(m, n, k, alpha, A, k, 1, S, kp, beta, C, n);
      else if (staged == 2)
        cr__skinny_sgemm_packed(m, n, k, alpha, At, 1, m, P, k, beta, C, n);
      else
        cr__skinny_sgemm_packed(m, n, k, alpha, A, k, 1, P, k, beta, C, n);
      cr__skinny_isa = saved_isa;
      for (int64_t i = 0; i < m * n; i++)
        if (!(fabs(C[i] - want[i]) <= 1e-5 * scale[i])) {
          printf("packed kernel (isa %d, staged %d) m=%lld n=%lld k=%lld trans=%d: C[%lld] = %g, "
                 "want %g\n",
                 isa, staged, (long long)m, (long long)n, (long long)k, trans, (long long)i, C[i],
                 want[i]);
          fail();
        }
      for (int64_t i = m * n; i < m * n + 64; i++)
        assert_true(C[i] == 12345.0f); /* nothing written past C */
      if (!first) {
        first = malloc((size_t)(m * n) * sizeof *first);
        assert_non_null(first);
        memcpy(first, C, (size_t)(m * n) * sizeof *C);
      } else {
        assert_memory_equal(first, C, (size_t)(m * n) * sizeof *C); /* the same bits */
      }
    }
  free(A), free(At), free(B), free(C), free(C0), free(want), free(scale), free(P), free(S),
      free(first);
}

static void test_packed_kernel_every_tile(void **state) {
  (void)state;
  if (cr__skinny_isa == CR__SKINNY_NONE)
    skip();
  const int64_t ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 13, 32, 33, 100, 250}; /* 250: passes of MC rows */
  /* 300: more than 4 column steps, where passes of many rows copy A read by columns */
  const int64_t ns[] = {1, 15, 17, 65, 130, 300}, ks[] = {1, 255, 257, 600};
  for (size_t im = 0; im < sizeof ms / sizeof *ms; im++)
    for (size_t in = 0; in < sizeof ns / sizeof *ns; in++)
      for (size_t ik = 0; ik < sizeof ks / sizeof *ks; ik++) {
        packed_case(ms[im], ns[in], ks[ik], false, 1.0f, 0.0f);
        packed_case(ms[im], ns[in], ks[ik], true, -0.5f, 1.0f);
      }
}

static void test_accumulates_over_two_backward_calls(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(3), (const double[]){0.5, -1, 2});
  for (int call = 1; call <= 2; call++) {
    cr_tensor *L = cr_sum(ctx, cr_square(ctx, x)); /* dL/dx = 2x */
    assert_int_equal(cr_backward(ctx, L), CR_OK);
    for (int i = 0; i < 3; i++)
      assert_true(cr_get_flat(cr_grad(x), i) == call * 2 * cr_get_flat(x, i));
  }
  /* the same graph walked twice: leaves accumulate, intermediates do not */
  cr_zero_grad(x);
  cr_tensor *h = cr_mul_scalar(ctx, x, 3.0);
  cr_retain_grad(h);
  cr_tensor *L = cr_sum(ctx, h);
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  assert_true(cr_get_flat(cr_grad(h), 0) == 1.0);
  assert_true(cr_get_flat(cr_grad(x), 0) == 6.0);
  cr_zero_grad(x);
  assert_true(cr_get_flat(cr_grad(x), 2) == 0.0);
  cr_tensor_free(x);
}

/* x -> a = 2x, b = 3x -> y = a*b = 6x^2: both paths reach x, dy/dx = 12x */
static void test_diamond(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2), (const double[]){1.5, -2});
  cr_tensor *a = cr_mul_scalar(ctx, x, 2), *b = cr_mul_scalar(ctx, x, 3);
  cr_tensor *y = cr_sum(ctx, cr_mul(ctx, a, b));
  cr_retain_grad(a);
  assert_int_equal(cr_backward(ctx, y), CR_OK);
  assert_true(fabs(cr_get_flat(cr_grad(x), 0) - 18.0) < 1e-12);
  assert_true(fabs(cr_get_flat(cr_grad(x), 1) + 24.0) < 1e-12);
  /* the gradient of each branch is kept for inspection: dy/da = b */
  assert_true(fabs(cr_get_flat(cr_grad(a), 0) - cr_get_flat(b, 0)) < 1e-12);
  cr_tensor_free(x);
}

/* h_{t+1} = tanh(w h_t + x_t), a weight shared across 50 steps.  The
 * gradient from backward must equal the hand-derived BPTT sum
 *   dL/dw = sum_t dL/dh_{t+1} * (1 - h_{t+1}^2) * h_t,
 *   dL/dh_t = dL/dh_{t+1} * (1 - h_{t+1}^2) * w. */
static void test_weight_shared_over_50_steps(void **state) {
  cr_ctx *ctx = *state;
  enum { T = 50 };
  double xs[T];
  for (int t = 0; t < T; t++)
    xs[t] = 0.3 * sin(0.7 * t);
  cr_tensor *w = param(ctx, CR_SHAPE(1), (const double[]){0.9});
  cr_tensor *h = cr_full(ctx, CR_F64, CR_SHAPE(1), 0.1);
  double hv[T + 1];
  hv[0] = 0.1;
  cr_tensor *hs[T + 1];
  hs[0] = h;
  for (int t = 0; t < T; t++) {
    cr_tensor *x = cr_full(ctx, CR_F64, CR_SHAPE(1), xs[t]);
    h = cr_tanh(ctx, cr_add(ctx, cr_mul(ctx, w, h), x));
    cr_retain_grad(h); /* to read dL/dh_t below */
    hs[t + 1] = h;
    hv[t + 1] = tanh(0.9 * hv[t] + xs[t]);
  }
  assert_int_equal(cr_backward(ctx, h), CR_OK); /* L = h_T */
  double dh = 1.0, dw = 0.0;
  for (int t = T; t >= 1; t--) {
    double da = dh * (1 - hv[t] * hv[t]);
    dw += da * hv[t - 1];
    dh = da * 0.9;
  }
  assert_true(fabs(cr_get_flat(cr_grad(w), 0) - dw) < 1e-12);
  /* and the per-time-step gradient dL/dh_t agrees at t = 25 */
  double d25 = 1.0;
  for (int t = T; t > 25; t--)
    d25 *= (1 - hv[t] * hv[t]) * 0.9;
  assert_true(fabs(cr_get_flat(cr_grad(hs[25]), 0) - d25) < 1e-12);
  cr_tensor_free(w);
}

/* A weight shared by products of various rows — below, at and beyond the
 * rows the engine stages per weight-gradient gemm (128 for a small weight,
 * 256 for one of 256K elements) — in both orders:
 *   dL/dW = sum_t a_t^T g_t  for  L = sum_t <a_t W, g_t>. */
static void shared_weight_case(cr_ctx *ctx, int64_t K, int64_t N, const int64_t *rows, int steps) {
  cr_rng *rng = cr_rng_new(11);
  double *want = calloc((size_t)(K * N), sizeof *want);
  assert_non_null(want);
  for (int order = 0; order < 2; order++) {
    cr_tensor *w = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(K, N), 0, 1));
    cr_set_requires_grad(w, true);
    memset(want, 0, (size_t)(K * N) * sizeof *want);
    cr_tensor *loss = NULL;
    for (int s = 0; s < steps; s++) {
      const int64_t M = rows[order ? steps - 1 - s : s];
      cr_tensor *a = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(M, K), 0, 1);
      cr_tensor *g = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(M, N), 0, 1);
      cr_tensor *term = cr_sum(ctx, cr_mul(ctx, cr_matmul(ctx, a, w), g));
      loss = loss ? cr_add(ctx, loss, term) : term;
      const double *ad = cr_data_const(a), *gd = cr_data_const(g);
      for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
          for (int64_t n = 0; n < N; n++)
            want[k * N + n] += ad[m * K + k] * gd[m * N + n];
    }
    assert_int_equal(cr_backward(ctx, loss), CR_OK);
    const double *got = cr_data_const(cr_grad(w));
    for (int64_t i = 0; i < K * N; i++)
      assert_true(fabs(got[i] - want[i]) < 1e-10 * (1 + fabs(want[i])));
    cr_tensor_free(w);
    cr_ctx_reset(ctx);
  }
  free(want);
  cr_rng_free(rng);
}

static void test_shared_weight_products_of_any_rows(void **state) {
  shared_weight_case(*state, 3, 5, (const int64_t[]){1, 7, 127, 128, 129, 300, 700}, 7);
  shared_weight_case(*state, 256, 1024, (const int64_t[]){100, 157, 256, 257}, 4);
}

static void test_no_grad_mode(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *w = param(ctx, CR_SHAPE(2), (const double[]){1, 2});
  bool was = cr_set_grad_enabled(ctx, false);
  assert_true(was);
  cr_tensor *y = cr_sum(ctx, cr_tanh(ctx, w));
  assert_false(cr_requires_grad(y));
  assert_null(cr_grad_fn(y));
  cr_ctx_stats st;
  cr_ctx_get_stats(ctx, &st);
  assert_int_equal(st.nodes, 0);
  assert_int_equal(cr_backward(ctx, y), CR_ERR_STATE);
  assert_non_null(strstr(cr_ctx_error(ctx), "does not require grad"));
  cr_ctx_clear_error(ctx);
  cr_set_grad_enabled(ctx, true);
  y = cr_sum(ctx, cr_tanh(ctx, w));
  assert_string_equal(cr_grad_fn(y), "sum");
  cr_tensor_free(w);
}

/* y = x * detach(x): the detached factor is a constant, so dy/dx = x */
static void test_detach(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2), (const double[]){3, -4});
  cr_tensor *d = cr_detach(ctx, x);
  assert_false(cr_requires_grad(d));
  assert_true(cr_get_flat(d, 1) == -4);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_mul(ctx, x, d))), CR_OK);
  assert_true(cr_get_flat(cr_grad(x), 0) == 3 && cr_get_flat(cr_grad(x), 1) == -4);
  cr_tensor_free(x);
}

static void test_backward_seed(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(3), (const double[]){1, 2, 3});
  cr_tensor *y = cr_mul_scalar(ctx, x, 2);
  assert_int_equal(cr_backward(ctx, y), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx),
                      "backward: [3]: output has 3 elements; backward needs a one-element "
                      "loss, or a seed gradient (cr_backward_seed)");
  cr_ctx_clear_error(ctx);
  cr_tensor *seed = cr_from_array(ctx, CR_F64, CR_SHAPE(3), (const double[]){1, 10, 100});
  assert_int_equal(cr_backward_seed(ctx, y, seed), CR_OK);
  assert_true(cr_get_flat(cr_grad(x), 2) == 200);
  cr_tensor_free(x);
}

static void test_use_after_reset(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = cr_ones(ctx, CR_F32, CR_SHAPE(2, 2));
  cr_ctx_reset(ctx);
  assert_null(cr_tanh(ctx, a));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_STATE);
  assert_string_equal(cr_ctx_error(ctx),
                      "tanh: input 0 [2,2] was made before the last cr_ctx_reset and is no "
                      "longer valid (copy state that must survive a reset with cr_persist or "
                      "cr_copy_into)");
  cr_ctx_clear_error(ctx);
  cr_ctx_stats st;
  cr_ctx_get_stats(ctx, &st);
  assert_int_equal(st.epoch, 1);
  assert_int_equal(st.arena_bytes_used, 0);
}

static void test_error_messages(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *a = cr_zeros(ctx, CR_F32, CR_SHAPE(32, 65));
  cr_tensor *b = cr_zeros(ctx, CR_F32, CR_SHAPE(64, 256));
  assert_null(cr_matmul(ctx, a, b));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx),
                      "matmul: [32,65] @ [64,256]: inner dimensions 65 and 64 differ");
  /* an op given NULL returns NULL and keeps the first message */
  assert_null(cr_tanh(ctx, cr_matmul(ctx, a, b)));
  assert_null(cr_add(ctx, a, a)); /* still failing while an error is pending */
  assert_string_equal(cr_ctx_error(ctx),
                      "matmul: [32,65] @ [64,256]: inner dimensions 65 and 64 differ");
  cr_ctx_clear_error(ctx);
  assert_null(
      cr_add(ctx, cr_zeros(ctx, CR_F32, CR_SHAPE(3, 4)), cr_zeros(ctx, CR_F32, CR_SHAPE(5))));
  assert_string_equal(cr_ctx_error(ctx), "add: [3,4] and [5]: dim -1 (4 vs 5) do not broadcast");
  cr_ctx_clear_error(ctx);
  assert_null(cr_mul(ctx, cr_zeros(ctx, CR_F32, CR_SHAPE(2)), cr_zeros(ctx, CR_F64, CR_SHAPE(2))));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_DTYPE);
  assert_string_equal(cr_ctx_error(ctx), "mul: [2] f32 and [2] f64: dtypes differ (use cr_cast)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_transpose(ctx, a, 0, 2));
  assert_string_equal(cr_ctx_error(ctx), "transpose: [32,65]: axis 2 out of range for 2 dims");
  cr_ctx_clear_error(ctx);
  assert_null(cr_matmul(ctx, cr_zeros(ctx, CR_F32, CR_SHAPE(2, 3, 4)),
                        cr_zeros(ctx, CR_F32, CR_SHAPE(3, 4, 5))));
  assert_string_equal(cr_ctx_error(ctx), "matmul: [2,3,4] @ [3,4,5]: batch sizes 2 and 3 differ");
  cr_ctx_clear_error(ctx);
  assert_null(cr_reshape(ctx, a, CR_SHAPE(7, -1)));
  assert_string_equal(cr_ctx_error(ctx), "reshape: [32,65] to [7,-1]: 2080 elements do not "
                                         "divide into the known dims");
  cr_ctx_clear_error(ctx);
}

/* A training loop reaches a steady state where a step calls no malloc. */
static void test_steady_state_does_not_malloc(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(1);
  cr_tensor *W = cr_tensor_new(ctx, CR_F32, CR_SHAPE(16, 8));
  assert_int_equal(cr_fill_uniform(ctx, W, rng, -0.5, 0.5), CR_OK);
  cr_set_requires_grad(W, true);
  size_t after_warmup = 0;
  for (int step = 0; step < 30; step++) {
    if (step == 5)
      after_warmup = cr_alloc_count();
    cr_tensor *x = cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(4, 16), 0, 1);
    cr_tensor *h = x;
    for (int t = 0; t < 3 + (step % 3); t++) /* slightly different graphs */
      h = cr_tanh(ctx, cr_matmul(ctx, h, cr_matmul(ctx, W, cr_transpose(ctx, W, 0, 1))));
    cr_tensor *L = cr_mean(ctx, cr_square(ctx, h));
    cr_zero_grad(W);
    assert_int_equal(cr_backward(ctx, L), CR_OK);
    cr_ctx_reset(ctx);
  }
  assert_int_equal(cr_alloc_count(), after_warmup);
  cr_tensor_free(W);
  cr_rng_free(rng);
}

/* A slice consumed only by ops that write gradients through strides gets
 * its gradient buffer as a view into its input's gradient (no buffer of
 * its own); consumed by a matmul it gets a dense buffer; retained it gets
 * its own.  Values are right either way.  (The buffer is internal: read
 * through the tensor struct.) */
static const cr_tensor *grad_buffer(const cr_tensor *t) { return t->grad; }

static void test_slice_gradient_views(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2, 4), (const double[]){1, 2, 3, 4, 5, 6, 7, 8});
  cr_tensor *cols = cr_slice(ctx, x, 1, 1, 4, 2); /* columns 1 and 3 */
  cr_tensor *L = cr_sum(ctx, cr_square(ctx, cols));
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  assert_false(cr_is_contiguous(grad_buffer(cols))); /* a strided view into dL/dx */
  assert_ptr_equal(cr_grad(cols), NULL);             /* not retained: not shown */
  const double want[8] = {0, 4, 0, 8, 0, 12, 0, 16}; /* 2x on the sliced columns */
  for (int i = 0; i < 8; i++)
    assert_true(cr_get_flat(cr_grad(x), i) == want[i]);
  cr_zero_grad(x);
  cr_tensor *w = cr_ones(ctx, CR_F64, CR_SHAPE(2, 1));
  L = cr_sum(ctx, cr_matmul(ctx, cols, w)); /* matmul needs a dense gradient */
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  /* a dense buffer of its own, and dead once consumed: given back for reuse */
  assert_null(grad_buffer(cols));
  const double want2[8] = {0, 1, 0, 1, 0, 1, 0, 1};
  for (int i = 0; i < 8; i++)
    assert_true(cr_get_flat(cr_grad(x), i) == want2[i]);
  /* retained: a buffer of its own, holding exactly dL/dcols = 2 cols */
  cr_zero_grad(x);
  cr_retain_grad(cols);
  L = cr_sum(ctx, cr_square(ctx, cols));
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  assert_true(cr_is_contiguous(cr_grad(cols)));
  for (int i = 0; i < 4; i++)
    assert_true(cr_get_flat(cr_grad(cols), i) == 2 * cr_get_flat(cols, i));
  for (int i = 0; i < 8; i++)
    assert_true(cr_get_flat(cr_grad(x), i) == want[i]);
  cr_tensor_free(x);
}

/* y = addmm(c, a, b), L = sum(w * y) + u sum(w2 * c) with c = x * x:
 *   dL/dx = 2 x (w + u w2),  dL/da = w b^T,  dL/db = a^T w.
 * Where c's only use is the product (u = 0), y's gradient is c's own
 * buffer (addmm_grad_alias) and nothing is copied; a second use, a
 * retained c or a leaf c (whose gradient accumulates over passes) keep a
 * buffer of their own.  Each way the numbers are the hand-derived ones. */
static void addmm_c_case(cr_ctx *ctx, int how) {
  cr_tensor *x = param(ctx, CR_SHAPE(2, 3), (const double[]){1, -2, 3, 0.5, 4, -1});
  cr_tensor *a = param(ctx, CR_SHAPE(2, 2), (const double[]){1, 2, -3, 1});
  cr_tensor *b = param(ctx, CR_SHAPE(2, 3), (const double[]){2, 0, 1, -1, 3, 2});
  const double wv[6] = {1, 2, 3, -1, 0.5, 4}, w2v[6] = {3, -2, 1, 0, 5, 2};
  cr_tensor *w = cr_tensor_new(ctx, CR_F64, CR_SHAPE(2, 3)),
            *w2 = cr_tensor_new(ctx, CR_F64, CR_SHAPE(2, 3));
  for (int i = 0; i < 6; i++) {
    cr_set_flat(w, i, wv[i]);
    cr_set_flat(w2, i, w2v[i]);
  }
  const bool leaf = how == 3;
  cr_tensor *c = leaf ? x : cr_mul(ctx, x, x);
  if (how == 2)
    cr_retain_grad(c);
  cr_tensor *y = cr_addmm(ctx, c, a, b);
  cr_tensor *L = cr_sum(ctx, cr_mul(ctx, w, y));
  if (how == 1)
    L = cr_add(ctx, L, cr_sum(ctx, cr_mul(ctx, w2, c)));
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  assert_int_equal(y->grad_is_view, how == 0);
  if (leaf) /* a second pass adds to the leaf's gradient */
    assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_mul(ctx, w, cr_addmm(ctx, c, a, b)))), CR_OK);
  for (int i = 0; i < 6; i++) {
    const double xi = cr_get_flat(x, i), gc = wv[i] + (how == 1 ? w2v[i] : 0);
    assert_true(cr_get_flat(cr_grad(x), i) == (leaf ? 2 * wv[i] : 2 * xi * gc));
    if (how == 2)
      assert_true(cr_get_flat(cr_grad(c), i) == wv[i]);
  }
  const double passes = leaf ? 2 : 1;
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 2; k++) { /* dL/da[i,k] = sum_j w[i,j] b[k,j] */
      double ga = 0;
      for (int j = 0; j < 3; j++)
        ga += wv[i * 3 + j] * cr_get_flat(b, k * 3 + j);
      assert_true(cr_get_flat(cr_grad(a), i * 2 + k) == passes * ga);
    }
  for (int k = 0; k < 2; k++)
    for (int j = 0; j < 3; j++) { /* dL/db[k,j] = sum_i a[i,k] w[i,j] */
      double gb = 0;
      for (int i = 0; i < 2; i++)
        gb += cr_get_flat(a, i * 2 + k) * wv[i * 3 + j];
      assert_true(cr_get_flat(cr_grad(b), k * 3 + j) == passes * gb);
    }
  cr_tensor_free(x);
  cr_tensor_free(a);
  cr_tensor_free(b);
  cr_tensor_free(w);
  cr_tensor_free(w2);
  cr_ctx_reset(ctx);
}

static void test_addmm_gradient_into_c(void **state) {
  for (int how = 0; how < 4; how++)
    addmm_c_case(*state, how);
}

/* Row slices of an intermediate x = 2 p [4, 40] (rows of 320 bytes: the
 * engine hands such rows out to be written, not zeroed first, and owes
 * zeros to the rows none wrote: cr__grad_acc_rows):
 *   L = sum(w1 * x[1:3]) + sum(w2 * x[2]) + sum(w0 * x[0]) (+ sum(v * x))
 * dL/dp = 2 G with G's row 0 = w0, row 1 = w1[0], row 2 = w1[1] + w2,
 * row 3 = 0 (+ v).  Backward meets x[0] and x[2] first (fresh rows), then
 * x[1:3], half written already; with the whole-x term the rows owed zeros
 * get them before it adds. */
static void test_row_slices_fill_gradient(void **state) {
  cr_ctx *ctx = *state;
  enum { R = 4, C = 40 };
  for (int whole = 0; whole < 2; whole++)
    for (int dt = 0; dt < 2; dt++) {
      const cr_dtype type = dt ? CR_F32 : CR_F64;
      cr_rng *rng = cr_rng_new(5 + (uint64_t)dt);
      cr_tensor *p = cr_tensor_new(ctx, type, CR_SHAPE(R, C));
      cr_tensor *p0 = cr_rand_normal(ctx, rng, type, CR_SHAPE(R, C), 0, 1);
      for (int64_t i = 0; i < R * C; i++)
        cr_set_flat(p, i, cr_get_flat(p0, i));
      cr_set_requires_grad(p, true);
      cr_tensor *w1 = cr_rand_normal(ctx, rng, type, CR_SHAPE(2, C), 0, 1);
      cr_tensor *w2 = cr_rand_normal(ctx, rng, type, CR_SHAPE(C), 0, 1);
      cr_tensor *w0 = cr_rand_normal(ctx, rng, type, CR_SHAPE(C), 0, 1);
      cr_tensor *v = cr_rand_normal(ctx, rng, type, CR_SHAPE(R, C), 0, 1);
      for (int pass = 0; pass < 2; pass++) { /* the pool's buffers hold old values */
        cr_tensor *x = cr_mul_scalar(ctx, p, 2.0);
        cr_tensor *L = cr_sum(ctx, cr_mul(ctx, w1, cr_slice(ctx, x, 0, 1, 3, 1)));
        L = cr_add(ctx, L, cr_sum(ctx, cr_mul(ctx, w2, cr_select(ctx, x, 0, 2))));
        L = cr_add(ctx, L, cr_sum(ctx, cr_mul(ctx, w0, cr_select(ctx, x, 0, 0))));
        if (whole)
          L = cr_add(ctx, L, cr_sum(ctx, cr_mul(ctx, v, x)));
        cr_zero_grad(p);
        assert_int_equal(cr_backward(ctx, L), CR_OK);
        for (int i = 0; i < R; i++)
          for (int j = 0; j < C; j++) {
            double g = i == 0   ? cr_get_flat(w0, j)
                       : i == 1 ? cr_get_flat(w1, j)
                       : i == 2 ? cr_get_flat(w1, C + j) + cr_get_flat(w2, j)
                                : 0.0;
            if (whole)
              g += cr_get_flat(v, i * C + j);
            const double got = cr_get_flat(cr_grad(p), i * C + j);
            /* the terms of a row are summed in the engine's order */
            assert_true(fabs(got - 2 * g) <= (dt ? 1e-6 : 1e-14) * (1 + fabs(2 * g)));
          }
      }
      cr_tensor_free(p);
      cr_rng_free(rng);
      cr_ctx_reset(ctx);
    }
}

/* The few-row kernel keeps a weight's packed panels with the weight: a
 * change to the weight's values (an optimizer step, cr_set_flat, cr_data,
 * cr_copy_into) must be seen by the next product, in the same epoch and
 * after a reset. */
static void test_packed_weights_follow_their_values(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(8);
  cr_tensor *W = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(64, 96), 0, 1));
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(8, 96), 0, 1));
  cr_set_requires_grad(W, true);
  for (int change = 0; change < 5; change++) {
    /* y = x W^T through a transposed view, a product of 8 rows: packed */
    cr_tensor *y = cr_matmul(ctx, x, cr_transpose(ctx, W, 0, 1));
    double ref = 0; /* y[3,5] by hand */
    for (int p = 0; p < 96; p++)
      ref += cr_get_flat(x, 3 * 96 + p) * cr_get_flat(W, 5 * 96 + p);
    assert_true(fabs(cr_get_flat(y, 3 * 64 + 5) - ref) < 1e-4 * (1 + fabs(ref)));
    switch (change) {
    case 0: cr_set_flat(W, 5 * 96 + 7, 3.0); break;
    case 1: ((float *)cr_data(W))[5 * 96 + 8] = -2.0f; break;
    case 2:
      assert_int_equal(cr_copy_into(ctx, W, cr_full(ctx, CR_F32, CR_SHAPE(64, 96), 0.25)), CR_OK);
      break;
    case 3: { /* an optimizer step */
      cr_optim_opts o;
      cr_optim_default_opts(CR_SGD, &o);
      cr_optim *opt = cr_optim_new(ctx, &o, &W, 1);
      assert_int_equal(cr_backward(ctx, cr_sum(ctx, y)), CR_OK);
      assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
      cr_optim_free(opt);
      break;
    }
    default: break;
    }
    if (change == 2)
      cr_ctx_reset(ctx);
  }
  cr_tensor_free(W);
  cr_tensor_free(x);
  cr_rng_free(rng);
}

static void test_graph_dot(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2), (const double[]){1, 2});
  cr_tensor *y = cr_sum(ctx, cr_tanh(ctx, x));
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_graph_dot(f, y);
  fclose(f);
  assert_non_null(strstr(buf, "label=\"tanh\\n[2]\""));
  assert_non_null(strstr(buf, "label=\"sum\\n[1]\""));
  assert_non_null(strstr(buf, "requires_grad"));
  free(buf);
  cr_tensor_free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_hand_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_matmul_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_matmul_blis_and_loop_paths_agree, setup, teardown),
      cmocka_unit_test_setup_teardown(test_addmm_f32_every_c_layout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_addmm_gradient_into_c, setup, teardown),
      cmocka_unit_test_setup_teardown(test_row_slices_fill_gradient, setup, teardown),
      cmocka_unit_test(test_packed_kernel_every_tile),
      cmocka_unit_test_setup_teardown(test_accumulates_over_two_backward_calls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_diamond, setup, teardown),
      cmocka_unit_test_setup_teardown(test_weight_shared_over_50_steps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_weight_products_of_any_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_grad_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backward_seed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_use_after_reset, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_steady_state_does_not_malloc, setup, teardown),
      cmocka_unit_test_setup_teardown(test_slice_gradient_views, setup, teardown),
      cmocka_unit_test_setup_teardown(test_packed_weights_follow_their_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_graph_dot, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
