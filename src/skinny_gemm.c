/* skinny_gemm.c — C = alpha A B + beta C for few rows (m <= 64) in float32,
 * with AVX-512, without packing B.
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

#define MR 8   /* rows per tile */
#define NR 64  /* columns per tile: 4 zmm */
#define KC 512  /* rows of B per pass: a 512 x 64 block of B (128 KiB) stays in L2 */
#define MAX_PACK (64 * 4096) /* floats of packed A^T (m <= 64, k <= 4096) */

static _Thread_local float packed[MAX_PACK] __attribute__((aligned(64)));

bool cr__skinny_ok(int64_t m, int64_t n, int64_t k) {
  int64_t mp = (m + MR - 1) / MR * MR;
  return m >= 1 && m <= 64 && n >= 1 && k >= 1 && mp * k <= MAX_PACK;
}

__attribute__((target("avx512f"))) void
cr__skinny_sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t ai,
                 int64_t ap, const float *B, int64_t bp, float beta, float *C, int64_t rsc) {
  const int64_t mp = (m + MR - 1) / MR * MR;
  /* At[p][i] = alpha * A[i, p], rows past m are 0 */
  for (int64_t p = 0; p < k; p++) {
    float *dst = packed + p * mp;
    for (int64_t i = 0; i < m; i++)
      dst[i] = alpha * A[i * ai + p * ap];
    for (int64_t i = m; i < mp; i++)
      dst[i] = 0.0f;
  }
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
            y = _mm512_fmadd_ps(_mm512_set1_ps(bt), _mm512_maskz_loadu_ps(mask[v], c + 16 * v), y);
          _mm512_mask_storeu_ps(c + 16 * v, mask[v], y);
        }
      }
    }
  }
  }
}
