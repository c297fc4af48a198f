/* packed_gemm.c — C = alpha A op(B) + beta C in float32 for few rows of A
 * (m <= 128) against op(B) [k, n] packed once into panels (AVX2 + FMA).
 *
 * A recurrent layer multiplies the same weight by B rows at every step;
 * packing it once per forward and streaming the panels at each step beats
 * BLIS, which repacks the weight on every call.
 *
 * Layout of the packing: op(B) in blocks of KC rows, one after the other;
 * within a block, panels of 16 columns, each kb x 16 floats, contiguous
 * (zero past n).  One pass over a block reads memory sequentially, so the
 * hardware prefetchers keep up even when the weight is far larger than L2
 * (H = 1024: a 16 MiB W_hh).
 *
 * Register tiles: R rows x 16 W columns, R x 2W ymm accumulators while p
 * runs over the block (C[i, j] += a[i, p] * b[p, j]).  Zen's FMAs have a
 * latency of 4 cycles on 2 pipes, so a tile needs >= 8 independent
 * accumulators: (6,1) 12, (5,1) 10, (4,1) 8, (3,2) 12, (2,2) 8, (1,4) 8.
 * m is cut into 6-row tiles and at the end one or two smaller ones, so no
 * row is computed in vain (m = 32: 6,6,6,6,4,4; m = 1: one (1,4) tile per
 * 64 columns).  Zen 4's 512-bit FMAs are no faster than two 256-bit ones,
 * so AVX2 serves there as well. */
#include <immintrin.h>
#include <string.h>

#include "internal.h"

#define KC 256 /* rows of op(B) per block: 4 panels (64 KiB) stay in L2 */
#define NP 16  /* columns per panel: two ymm */
#define JB 4   /* panels per column step: the widest tile */

size_t cr__skinny_packed_floats(int64_t k, int64_t n) {
  return (size_t)((n + NP - 1) / NP) * (size_t)k * NP;
}

void cr__skinny_pack(int64_t k, int64_t n, const float *B, int64_t rs, int64_t cs, float *out) {
  const int64_t np = (n + NP - 1) / NP;
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    const int64_t kb = k - k0 < KC ? k - k0 : KC;
    for (int64_t q = 0; q < np; q++) {
      float *dst = out + k0 * np * NP + q * kb * NP;
      const int64_t j0 = q * NP, w = n - j0 < NP ? n - j0 : NP;
      for (int64_t p = 0; p < kb; p++) {
        const float *src = B + (k0 + p) * rs + j0 * cs;
        if (cs == 1 && w == NP) {
          memcpy(dst + p * NP, src, NP * sizeof(float));
        } else { /* a transposed source, or the last panel */
          for (int64_t jj = 0; jj < w; jj++)
            dst[p * NP + jj] = src[jj * cs];
          for (int64_t jj = w; jj < NP; jj++)
            dst[p * NP + jj] = 0.0f;
        }
      }
    }
  }
}

/* the mask of the first `left` of 8 lanes */
__attribute__((target("avx2"))) static inline __m256i lanes(int64_t left) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int32_t l = left <= 0 ? 0 : left >= 8 ? 8 : (int32_t)left;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), idx);
}

/* One R x 16W tile over a block of kb rows: a[r] points at A[i0 + r, k0]
 * (stride ap between p), b at the first of W consecutive panels of the
 * block (each kb x 16), c at C[i0, j0]; left = n - j0 columns exist.
 * C = alpha acc + bt C (bt 0: C is not read). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile(const int R, const int W, const float *const *a, int64_t ap, const float *b, int64_t kb,
     float alpha, float bt, float *c, int64_t rsc, int64_t left) {
  __m256 acc[6][8];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < 2 * W; v++)
      acc[r][v] = _mm256_setzero_ps();
  const int64_t ps = kb * NP; /* floats from one panel to the next */
  for (int64_t p = 0; p < kb; p++) {
    __m256 bv[8];
    for (int w = 0; w < W; w++) {
      bv[2 * w] = _mm256_load_ps(b + w * ps + p * NP);
      bv[2 * w + 1] = _mm256_load_ps(b + w * ps + p * NP + 8);
    }
    for (int r = 0; r < R; r++) {
      const __m256 av = _mm256_broadcast_ss(a[r] + p * ap);
      for (int v = 0; v < 2 * W; v++)
        acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  const __m256 al = _mm256_set1_ps(alpha), be = _mm256_set1_ps(bt);
  const bool full = left >= (int64_t)NP * W;
  for (int r = 0; r < R; r++) {
    float *cr = c + r * rsc;
    for (int v = 0; v < 2 * W; v++) {
      __m256 y = _mm256_mul_ps(al, acc[r][v]);
      if (full) {
        if (bt != 0.0f)
          y = _mm256_fmadd_ps(be, _mm256_loadu_ps(cr + 8 * v), y);
        _mm256_storeu_ps(cr + 8 * v, y);
      } else {
        const __m256i mk = lanes(left - 8 * v);
        if (bt != 0.0f)
          y = _mm256_fmadd_ps(be, _mm256_maskload_ps(cr + 8 * v, mk), y);
        _mm256_maskstore_ps(cr + 8 * v, mk, y);
      }
    }
  }
}

#define TILE_CASE(R, W)                                                                            \
  case (R)*8 + (W): tile(R, W, a, ap, b, kb, alpha, bt, c, rsc, left); break;

__attribute__((target("avx2,fma"))) static void run_tile(int R, int W, const float *const *a,
                                                         int64_t ap, const float *b, int64_t kb,
                                                         float alpha, float bt, float *c,
                                                         int64_t rsc, int64_t left) {
  switch (R * 8 + W) {
    TILE_CASE(6, 1)
    TILE_CASE(5, 1)
    TILE_CASE(4, 1)
    TILE_CASE(3, 1)
    TILE_CASE(3, 2)
    TILE_CASE(2, 1)
    TILE_CASE(2, 2)
    TILE_CASE(1, 1)
    TILE_CASE(1, 2)
    TILE_CASE(1, 3)
    TILE_CASE(1, 4)
  default: break;
  }
}

/* Rows of the next tile when rem rows are left: 6s, then a 4 before a
 * remainder of 4 or 3 (8 = 4 + 4, 7 = 4 + 3), then what is left. */
static int tile_rows(int64_t rem) {
  if (rem == 8 || rem == 7)
    return 4;
  return rem >= 6 ? 6 : (int)rem;
}

/* panels a tile of R rows takes at once */
static int tile_panels(int R) { return R >= 4 ? 1 : R >= 2 ? 2 : 4; }

/* columns [16 q_begin, 16 q_end) of the product */
__attribute__((target("avx2,fma"))) static void
packed_panels(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t ai, int64_t ap,
              const float *Bp, float beta, float *C, int64_t rsc, int64_t q_begin, int64_t q_end) {
  const int64_t np = (n + NP - 1) / NP;
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    const int64_t kb = k - k0 < KC ? k - k0 : KC;
    const float bt = k0 == 0 ? beta : 1.0f; /* later blocks add to C */
    const float *block = Bp + k0 * np * NP;
    for (int64_t q0 = q_begin; q0 < q_end; q0 += JB) {
      const int64_t qe = q0 + JB < q_end ? q0 + JB : q_end;
      for (int64_t i0 = 0; i0 < m;) {
        const int R = tile_rows(m - i0);
        const float *a[6];
        for (int r = 0; r < R; r++)
          a[r] = A + (i0 + r) * ai + k0 * ap;
        for (int64_t q = q0; q < qe;) {
          const int W = (int)(qe - q < tile_panels(R) ? qe - q : tile_panels(R));
          run_tile(R, W, a, ap, block + q * kb * NP, kb, alpha, bt, C + i0 * rsc + q * NP, rsc,
                   n - q * NP);
          q += W;
        }
        i0 += R;
      }
    }
  }
}

typedef struct packed_job {
  int64_t m, n, k, ai, ap, rsc, parts;
  float alpha, beta;
  const float *A, *Bp;
  float *C;
} packed_job;

/* part of the columns: whole groups of JB panels, so each thread's tiles
 * are those of the single-threaded product */
static void packed_task(void *arg, int64_t part) {
  const packed_job *j = arg;
  const int64_t np = (j->n + NP - 1) / NP, groups = (np + JB - 1) / JB;
  const int64_t g0 = groups * part / j->parts, g1 = groups * (part + 1) / j->parts;
  const int64_t q1 = g1 * JB < np ? g1 * JB : np;
  if (g0 * JB < q1)
    packed_panels(j->m, j->n, j->k, j->alpha, j->A, j->ai, j->ap, j->Bp, j->beta, j->C, j->rsc,
                  g0 * JB, q1);
}

void cr__skinny_sgemm_packed(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                             int64_t ai, int64_t ap, const float *Bp, float beta, float *C,
                             int64_t rsc) {
  /* threads for products of >= 1 M multiply-adds per thread, in groups of
   * JB panels (64 columns) each */
  const int64_t groups = ((n + NP - 1) / NP + JB - 1) / JB;
  int64_t parts = cr__parallel_threads();
  if (parts > groups)
    parts = groups;
  if (parts > m * n * k / 1000000)
    parts = m * n * k / 1000000;
  if (parts <= 1) {
    packed_panels(m, n, k, alpha, A, ai, ap, Bp, beta, C, rsc, 0, (n + NP - 1) / NP);
    return;
  }
  packed_job j = {m, n, k, ai, ap, rsc, parts, alpha, beta, A, Bp, C};
  cr__parallel_for(parts, packed_task, &j);
}
