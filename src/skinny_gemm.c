/* skinny_gemm.c — C = alpha A B + beta C for few rows (m <= 64) in float32,
 * with AVX-512 or AVX2+FMA, without packing B.
 *
 * The per-step products of a recurrent layer have m = batch rows against a
 * large weight B (e.g. [32,512] @ [512,2048]).  BLIS packs all of B into its
 * panel format on every call — T times per step for the same weight — and
 * at m = 32 that copy costs about as much as the arithmetic.  Here B is read
 * in place, one block of 64 columns at a time (512 x 64 floats stay in L2),
 * against A^T scaled by alpha, packed once per call (m x k floats, small):
 * each 8 x 64 tile of C lives in 32 zmm registers while k runs.
 *
 * Requires op(B) rows contiguous (B[p, j] at B + p * bp + j) and C rows
 * contiguous; callers check cr__skinny_ok() first. */
#include <immintrin.h>

#include "internal.h"

#define MR 8                 /* rows per tile */
#define NR 64                /* columns per tile: 4 zmm */
#define KC 512               /* rows of B per pass: a 512 x 64 block of B (128 KiB) stays in L2 */
#define MAX_PACK (64 * 4096) /* floats of packed A^T (m <= 64, k <= 4096) */

static _Thread_local float packed[MAX_PACK] __attribute__((aligned(64)));

bool cr__skinny_ok(int64_t m, int64_t n, int64_t k) {
  /* rows are padded to a multiple of 8 (AVX-512) or 6 (AVX2): m + 7 bounds both */
  return m >= 1 && m <= 64 && n >= 1 && k >= 1 && k <= MAX_PACK / (m + 7);
}

/* At[p][i] = alpha * A[i, p] for i < mp (rows past m are 0) */
static void pack_a(int64_t m, int64_t mp, int64_t k, float alpha, const float *A, int64_t ai,
                   int64_t ap) {
  for (int64_t p = 0; p < k; p++) {
    float *dst = packed + p * mp;
    for (int64_t i = 0; i < m; i++)
      dst[i] = alpha * A[i * ai + p * ap];
    for (int64_t i = m; i < mp; i++)
      dst[i] = 0.0f;
  }
}

__attribute__((target("avx512f"))) static void
skinny_avx512(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t ai, int64_t ap,
              const float *B, int64_t bp, float beta, float *C, int64_t rsc) {
  const int64_t mp = (m + MR - 1) / MR * MR;
  pack_a(m, mp, k, alpha, A, ai, ap);
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    const int64_t kb = k - k0 < KC ? k - k0 : KC;
    const float bt = k0 == 0 ? beta : 1.0f; /* later passes add to C */
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
      __mmask16 mask[4];
      for (int v = 0; v < 4; v++) {
        int64_t left = n - j0 - 16 * v;
        mask[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
      }
      for (int64_t i0 = 0; i0 < mp; i0 += MR) {
        __m512 acc[MR][4];
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
          for (int v = 0; v < 4; v++)
            acc[r][v] = _mm512_setzero_ps();
        const float *bcol = B + k0 * bp + j0;
        const float *a = packed + k0 * mp + i0;
        for (int64_t p = 0; p < kb; p++, bcol += bp, a += mp) {
          __m512 b0 = _mm512_maskz_loadu_ps(mask[0], bcol);
          __m512 b1 = _mm512_maskz_loadu_ps(mask[1], bcol + 16);
          __m512 b2 = _mm512_maskz_loadu_ps(mask[2], bcol + 32);
          __m512 b3 = _mm512_maskz_loadu_ps(mask[3], bcol + 48);
#pragma GCC unroll 8
          for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[r]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(av, b3, acc[r][3]);
          }
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
          if (i0 + r >= m)
            break;
          float *c = C + (i0 + r) * rsc + j0;
#pragma GCC unroll 4
          for (int v = 0; v < 4; v++) {
            if (!mask[v])
              continue;
            __m512 y = acc[r][v];
            if (bt != 0.0f)
              y = _mm512_fmadd_ps(_mm512_set1_ps(bt), _mm512_maskz_loadu_ps(mask[v], c + 16 * v),
                                  y);
            _mm512_mask_storeu_ps(c + 16 * v, mask[v], y);
          }
        }
      }
    }
  }
}

/* ---- AVX2 + FMA: 6 x 16 tiles (12 ymm accumulators, 2 for B, 1 for A),
 * the register blocking of BLIS's haswell kernel.  Zen 4's 512-bit FMAs are
 * no faster than two 256-bit ones, so this serves there as well. */
#define MR2 6
#define NR2 16

/* the mask of the first `left` of 8 lanes, for partial tiles */
__attribute__((target("avx2"))) static __m256i lanes(int64_t left) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int32_t l = left <= 0 ? 0 : left >= 8 ? 8 : (int32_t)left;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), idx);
}

__attribute__((target("avx2,fma"))) static void skinny_avx2(int64_t m, int64_t n, int64_t k,
                                                            float alpha, const float *A, int64_t ai,
                                                            int64_t ap, const float *B, int64_t bp,
                                                            float beta, float *C, int64_t rsc) {
  const int64_t mp = (m + MR2 - 1) / MR2 * MR2;
  pack_a(m, mp, k, alpha, A, ai, ap);
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    const int64_t kb = k - k0 < KC ? k - k0 : KC;
    const float bt = k0 == 0 ? beta : 1.0f; /* later passes add to C */
    for (int64_t j0 = 0; j0 < n; j0 += NR2) {
      const bool full = n - j0 >= NR2;
      const __m256i m0 = lanes(n - j0), m1 = lanes(n - j0 - 8);
      for (int64_t i0 = 0; i0 < mp; i0 += MR2) {
        __m256 acc[MR2][2];
#pragma GCC unroll 6
        for (int r = 0; r < MR2; r++)
          acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        const float *bcol = B + k0 * bp + j0;
        const float *a = packed + k0 * mp + i0;
        if (full) {
          for (int64_t p = 0; p < kb; p++, bcol += bp, a += mp) {
            const __m256 b0 = _mm256_loadu_ps(bcol), b1 = _mm256_loadu_ps(bcol + 8);
#pragma GCC unroll 6
            for (int r = 0; r < MR2; r++) {
              const __m256 av = _mm256_broadcast_ss(a + r);
              acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
              acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
          }
        } else {
          for (int64_t p = 0; p < kb; p++, bcol += bp, a += mp) {
            const __m256 b0 = _mm256_maskload_ps(bcol, m0), b1 = _mm256_maskload_ps(bcol + 8, m1);
#pragma GCC unroll 6
            for (int r = 0; r < MR2; r++) {
              const __m256 av = _mm256_broadcast_ss(a + r);
              acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
              acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
          }
        }
#pragma GCC unroll 6
        for (int r = 0; r < MR2; r++) {
          if (i0 + r >= m)
            break;
          float *c = C + (i0 + r) * rsc + j0;
          __m256 y0 = acc[r][0], y1 = acc[r][1];
          if (full) {
            if (bt != 0.0f) {
              y0 = _mm256_fmadd_ps(_mm256_set1_ps(bt), _mm256_loadu_ps(c), y0);
              y1 = _mm256_fmadd_ps(_mm256_set1_ps(bt), _mm256_loadu_ps(c + 8), y1);
            }
            _mm256_storeu_ps(c, y0);
            _mm256_storeu_ps(c + 8, y1);
          } else {
            if (bt != 0.0f) {
              y0 = _mm256_fmadd_ps(_mm256_set1_ps(bt), _mm256_maskload_ps(c, m0), y0);
              y1 = _mm256_fmadd_ps(_mm256_set1_ps(bt), _mm256_maskload_ps(c + 8, m1), y1);
            }
            _mm256_maskstore_ps(c, m0, y0);
            _mm256_maskstore_ps(c + 8, m1, y1);
          }
        }
      }
    }
  }
}

void cr__skinny_sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t ai,
                      int64_t ap, const float *B, int64_t bp, float beta, float *C, int64_t rsc) {
  if (cr__skinny_isa == CR__SKINNY_AVX512)
    skinny_avx512(m, n, k, alpha, A, ai, ap, B, bp, beta, C, rsc);
  else
    skinny_avx2(m, n, k, alpha, A, ai, ap, B, bp, beta, C, rsc);
}
