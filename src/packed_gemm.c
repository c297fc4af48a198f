/* packed_gemm.c — C = alpha A op(B) + beta C in float32 for few rows of A
 * against op(B) [k, n] packed once into panels (AVX-512, or AVX2 + FMA);
 * cr__packed_suits says for which shapes it beats BLIS.
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
 * row is computed in vain (m = 32: 6,6,6,6,4,4; m = 1: one-row tiles that
 * sum in four chains, below).  Where the CPU has AVX-512, tiles of R rows x 4 panels run
 * on zmm registers (R x 4 accumulators, below): on Zen 4 no faster than
 * AVX2, on Zen 5 twice as fast.  The loop order over blocks, column steps
 * and rows (packed_panels) is chosen for the caches; no order changes a
 * bit of the result. */
#include <immintrin.h>
#include <string.h>

#include "internal.h"

/* Rows of op(B) per block: a column step's 4 panels (128 KiB) stay in L2.
 * 512 rather than 256 halves how often a tile writes and rereads C: Zen 4,
 * one core, alone: 32x2048x512 112 -> 114 GFLOP/s, 32x512x2048 112.5 ->
 * 114, 256x64x2048 112-113 -> 114-115, the rest within 1%; in the layers
 * (bench-layer, 4 interleaved rounds) lstm 64x512 / 512x512 / 64x1024 took
 * 0.97 / 0.98 / 0.96 of the time, gru 0.98 / 0.99 / 0.97, rnn_tanh 1.00 /
 * 1.00 / 0.97, H = 128 and tiny within 1.5%.  1024 was slower (bench-packed
 * 1-10% lower: a block's panels outgrow L2). */
#define KC 512
#define NP 16  /* columns per panel: two ymm */
#define JB 4   /* panels per column step: the widest tile */
#define MC 120 /* rows of A per pass over a block: 120 x KC floats (240 KiB) stay in L2 */
/* A few-row product whose packed B is larger than this (bytes) has each
 * column step's first row tile prefetch (into L2) the panels the next step
 * reads, one 64-byte line per panel row, while it computes: such a B
 * streams from L3.  Zen 3 (512 KiB L2), layer forward+backward, paired
 * runs, new/old time: H = 1024 (16 MiB W_hh) lstm 0.986, gru 0.974,
 * rnn_tanh 0.990; bench-packed 32x4096x1024 65-69 -> 71-76 GFLOP/s;
 * H = 512 (4 MiB) 1.004, neutral.  Below it (H = 128: 256 KiB; tiny: 16
 * KiB) the instructions only cost: tiny lstm 1.02 with them. */
#define PREFETCH_AHEAD_BYTES (1 << 20)
#define MCP 48 /* the same through a copy of A on the stack (96 KiB) */

size_t cr__skinny_packed_floats(int64_t k, int64_t n) {
  return (size_t)((n + NP - 1) / NP) * (size_t)k * NP;
}

static void pack_rows(int64_t kp, int64_t p0, int64_t rows, int64_t n, const float *B, int64_t rs,
                      int64_t cs, float *out) {
  const int64_t np = (n + NP - 1) / NP;
  for (int64_t p = p0; p < p0 + rows; p++) {
    const int64_t k0 = p / KC * KC, kb = kp - k0 < KC ? kp - k0 : KC;
    const float *src = B + (p - p0) * rs;
    for (int64_t q = 0; q < np; q++) {
      float *dst = out + k0 * np * NP + q * kb * NP + (p - k0) * NP;
      const int64_t j0 = q * NP, w = n - j0 < NP ? n - j0 : NP;
      if (cs == 1 && w == NP) {
        memcpy(dst, src + j0, NP * sizeof(float));
      } else { /* a transposed source, or the last panel */
        for (int64_t jj = 0; jj < w; jj++)
          dst[jj] = src[(j0 + jj) * cs];
        for (int64_t jj = w; jj < NP; jj++)
          dst[jj] = 0.0f;
      }
    }
  }
}

/* Packing many rows is a memory-bound pass (a step's rows staged for the
 * weight gradient: 64 KiB at B = 32, H = 512) that the other threads
 * would wait on: rows in parts of at least 8K floats, one per thread. */
typedef struct {
  int64_t kp, p0, rows, n, rs, cs, parts;
  const float *B;
  float *out;
} pack_job;

static void pack_part(void *arg, int64_t part) {
  const pack_job *j = arg;
  const int64_t r0 = j->rows * part / j->parts, r1 = j->rows * (part + 1) / j->parts;
  pack_rows(j->kp, j->p0 + r0, r1 - r0, j->n, j->B + r0 * j->rs, j->rs, j->cs, j->out);
}

void cr__skinny_pack_rows(int64_t kp, int64_t p0, int64_t rows, int64_t n, const float *B,
                          int64_t rs, int64_t cs, float *out) {
  int64_t parts = rows * n < 16384 ? 1 : cr__parallel_threads();
  if (parts > rows * n / 8192)
    parts = rows * n / 8192;
  if (parts > rows)
    parts = rows;
  if (parts <= 1) {
    pack_rows(kp, p0, rows, n, B, rs, cs, out);
    return;
  }
  pack_job j = {kp, p0, rows, n, rs, cs, parts, B, out};
  cr__parallel_for(parts, pack_part, &j);
}

void cr__skinny_pack(int64_t k, int64_t n, const float *B, int64_t rs, int64_t cs, float *out) {
  cr__skinny_pack_rows(k, 0, k, n, B, rs, cs, out);
}

bool cr__packed_suits(int64_t m, int64_t n) {
  if (cr__skinny_isa == CR__SKINNY_NONE)
    return false;
  /* Measured, one core, C += A op(B) with op(B) packed against BLIS 0.9's
   * conventional path (GFLOP/s, k = 256..2048): Zen 3 (AVX2, BLIS zen3)
   * 72-98 vs 46-90 at m = 32..256; Zen 5 (AVX-512, BLIS skx) 218-232 vs
   * 130-213 at m = 32..512 with n <= 2048 and at m = 2048, n = 512.
   * Larger products on Zen 5 (bench-packed): a layer's input projection
   * over many steps at once, A read by rows, 1024x2048x512 251 vs 210,
   * 2048x2048x512 252 vs 207; a staged weight gradient's flush, A read by
   * columns, 4096x1024x512 244 vs 203.  In the layers, paired runs, new/old
   * time with products up to 4M elements of C here instead of 1M: lstm
   * 512x512 0.96, gru 512x512 0.96 (the projection); lstm 64x1024 0.98,
   * gru 64x1024 0.96 (the flush, at 512 rows a flush: ops/matmul.c; at 256
   * it was 1.03 for lstm).  Past that BLIS, whose packing of A pays once A
   * and C outgrow the caches, is left the products. */
  return m <= 128 || (cr__skinny_isa == CR__SKINNY_AVX512 && m * n <= ((int64_t)1 << 22));
}

/* The tiles below unroll their loops over rows and registers first
 * (#pragma GCC unroll): without that, gcc 12 keeps the accumulators in a
 * stack array as well as in registers and stores them on every p (the
 * epilogue indexes the array in a loop): on Zen 3 (one 256-bit store a
 * cycle, against two FMAs) the AVX2 kernel ran at 27 GFLOP/s at 32 rows,
 * k = 512, against 71-86 with the unrolling (weights of 2-4 MiB). */

/* the mask of the first `left` of 8 lanes */
__attribute__((target("avx2"))) static inline __m256i lanes(int64_t left) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int32_t l = left <= 0 ? 0 : left >= 8 ? 8 : (int32_t)left;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), idx);
}

/* c[0, 8) = y + bt ci[0, 8) (bt 0: ci is not read), for the first `left`
 * of the 8 lanes only unless full: plain loads and stores where the lanes
 * are all there, masked ones (slow on Zen 3) only at the end of a row */
__attribute__((target("avx2,fma"), always_inline)) static inline void
store8(__m256 y, float bt, const float *ci, float *c, bool full, int64_t left) {
  const __m256 be = _mm256_set1_ps(bt);
  if (full) {
    if (bt != 0.0f)
      y = _mm256_fmadd_ps(be, _mm256_loadu_ps(ci), y);
    _mm256_storeu_ps(c, y);
  } else {
    const __m256i mk = lanes(left);
    if (bt != 0.0f)
      y = _mm256_fmadd_ps(be, _mm256_maskload_ps(ci, mk), y);
    _mm256_maskstore_ps(c, mk, y);
  }
}

/* A tile reading A by columns (ap != 1: the weight gradient's gy^T, its
 * R rows side by side in gy's row p) takes one or two new cache lines per
 * p, ap floats apart, which the hardware prefetchers do not follow: the
 * tile asks for the lines of p + A_AHEAD, both ends of its R floats (they
 * straddle a line boundary for some i0).  Measured (Zen 4, one core, m x n
 * x k with A read by columns, ap = m; the gradient of a linear map
 * 64 -> m over a batch of k = 2048 rows, which matmul's VJP adds at once):
 * 1024x64x2048 60 -> 98-104 GFLOP/s, 2048x64x2048 56-62 -> 96-99,
 * 2048x128x2048 73-80 -> 100-104; with the first line alone 72-80.
 * Unchanged within noise: 512x64x2048, 3072x64x2048, the staged flushes of
 * a recurrent layer (2048x512x256, 2048x64x256, whose k of 256 rows stays
 * in cache) and every product reading A by rows.  AVX-512 tiles only: the
 * AVX2 tiles (one panel wide at 6 rows, so four tiles read each line of A)
 * ran slower with it, 2048x64x2048 83 -> 52 and 2048x64x256 89 -> 52. */
#define A_AHEAD 16

__attribute__((always_inline)) static inline void prefetch_a(const float *const *a, const int R,
                                                             int64_t p, int64_t ap) {
  _mm_prefetch((const char *)(a[0] + p * ap), _MM_HINT_T0);
  _mm_prefetch((const char *)(a[R - 1] + p * ap), _MM_HINT_T0);
}

/* One R x 16W tile over kb rows of a block: a[r] points at A[i0 + r, k0]
 * (stride ap between p), b at the first of W consecutive panels of the
 * block (each kbp x 16, kbp >= kb rows packed), c at C[i0, j0]; left =
 * n - j0 columns exist.  pf (NULL: none) is W panels of pfs / 16 rows,
 * pfs floats apart, to prefetch into L2 on the way (PREFETCH_AHEAD_BYTES).
 * C = alpha acc + bt C (bt 0: C is not read). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile(const int R, const int W, const float *const *a, int64_t ap, const float *b, int64_t kbp,
     int64_t kb, const float *pf, int64_t pfs, float alpha, float bt, const float *ci, int64_t rsi,
     float *c, int64_t rsc, int64_t left) {
  __m256 acc[6][8];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int v = 0; v < 2 * W; v++)
      acc[r][v] = _mm256_setzero_ps();
  const int64_t ps = kbp * NP;      /* floats from one panel to the next */
  const int64_t pf_rows = pfs / NP; /* the prefetched panels' rows (a last block may be short) */
  for (int64_t p = 0; p < kb; p++) {
    __m256 bv[8];
#pragma GCC unroll 8
    for (int w = 0; w < W; w++) {
      bv[2 * w] = _mm256_load_ps(b + w * ps + p * NP);
      bv[2 * w + 1] = _mm256_load_ps(b + w * ps + p * NP + 8);
      if (p < pf_rows) /* a 64-byte line: one panel row */
        _mm_prefetch((const char *)(pf + w * pfs + p * NP), _MM_HINT_T1);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m256 av = _mm256_broadcast_ss(a[r] + p * ap);
#pragma GCC unroll 8
      for (int v = 0; v < 2 * W; v++)
        acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  const __m256 al = _mm256_set1_ps(alpha);
  const bool full = left >= (int64_t)NP * W;
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int v = 0; v < 2 * W; v++)
      store8(_mm256_mul_ps(al, acc[r][v]), bt, ci + r * rsi + 8 * v, c + r * rsc + 8 * v, full,
             left - 8 * v);
}

#define TILE_CASE(R, W)                                                                            \
  case (R)*8 + (W): tile(R, W, a, ap, b, kbp, kb, pf, pfs, alpha, bt, ci, rsi, c, rsc, left); break;

__attribute__((target("avx2,fma"))) static void
run_tile(int R, int W, const float *const *a, int64_t ap, const float *b, int64_t kbp, int64_t kb,
         const float *pf, int64_t pfs, float alpha, float bt, const float *ci, int64_t rsi,
         float *c, int64_t rsc, int64_t left) {
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

/* ---- AVX-512: one zmm per panel row, tiles of R rows x W panels (R x W
 * zmm accumulators, W <= 4 = JB).  The same products in the same order as
 * the AVX2 tiles (per element: FMAs over p in order, then alpha, then
 * beta C), so both kernels give the same bits; on Zen 5, whose FMA pipes
 * are 512 bits wide, it has twice the throughput. */

/* the mask of the first `left` of 16 lanes */
static inline __mmask16 lanes16(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

__attribute__((target("avx512f"), always_inline)) static inline void
tile512(const int R, const int W, const bool pf, const float *const *a, int64_t ap, const float *b,
        int64_t kbp, int64_t kb, float alpha, float bt, const float *ci, int64_t rsi, float *c,
        int64_t rsc, int64_t left) {
  __m512 acc[6][JB];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int w = 0; w < W; w++) {
      acc[r][w] = _mm512_setzero_ps();
      /* C's lines, while the tile computes: a large C comes from memory */
      _mm_prefetch((const char *)(c + r * rsc + NP * w), _MM_HINT_T0);
      /* and those of the matrix beta scales where it is another (a first
       * block's addmm input: a step's input projection, computed steps ago) */
      if (bt != 0.0f && ci != c)
        _mm_prefetch((const char *)(ci + r * rsi + NP * w), _MM_HINT_T0);
    }
  const int64_t ps = kbp * NP; /* floats from one panel to the next */
  for (int64_t p = 0; p < kb; p++) {
    __m512 bv[JB];
    if (pf)
      prefetch_a(a, R, p + A_AHEAD, ap);
#pragma GCC unroll 8
    for (int w = 0; w < W; w++)
      bv[w] = _mm512_loadu_ps(b + w * ps + p * NP);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m512 av = _mm512_set1_ps(a[r][p * ap]);
#pragma GCC unroll 8
      for (int w = 0; w < W; w++)
        acc[r][w] = _mm512_fmadd_ps(av, bv[w], acc[r][w]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(bt);
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    float *cr = c + r * rsc;
    const float *cir = ci + r * rsi;
#pragma GCC unroll 8
    for (int w = 0; w < W; w++) {
      const __mmask16 mk = lanes16(left - NP * w);
      __m512 y = _mm512_mul_ps(al, acc[r][w]);
      if (bt != 0.0f)
        y = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(mk, cir + NP * w), y);
      _mm512_mask_storeu_ps(cr + NP * w, mk, y);
    }
  }
}

#define TILE512_CASE(R, W)                                                                         \
  case (R)*8 + (W):                                                                                \
    if (pf)                                                                                        \
      tile512(R, W, true, a, ap, b, kbp, kb, alpha, bt, ci, rsi, c, rsc, left);                    \
    else                                                                                           \
      tile512(R, W, false, a, ap, b, kbp, kb, alpha, bt, ci, rsi, c, rsc, left);                   \
    break;
#define TILE512_ROW(R) TILE512_CASE(R, 1) TILE512_CASE(R, 2) TILE512_CASE(R, 3) TILE512_CASE(R, 4)

__attribute__((target("avx512f"))) static void
run_tile512(int R, int W, bool pf, const float *const *a, int64_t ap, const float *b, int64_t kbp,
            int64_t kb, float alpha, float bt, const float *ci, int64_t rsi, float *c, int64_t rsc,
            int64_t left) {
  switch (R * 8 + W) {
    TILE512_ROW(6)
    TILE512_ROW(5)
    TILE512_ROW(4)
    TILE512_ROW(3)
    TILE512_ROW(2)
    TILE512_ROW(1)
  default: break;
  }
}

/* ---- one-row products (a batch-1 step's h W^T and its VJP).  One row
 * has at most JB accumulators (AVX-512; 2 per panel with AVX2), too few to
 * hide the FMA latency of 4 cycles: Zen 4 needs 4 in flight, Zen 5 8, and
 * a product of n = 32 columns has 2.  So a one-row product sums its k in
 * four interleaved chains per element, p = 0, 4, 8, .. / 1, 5, 9, .. /
 * 2, .. / 3, .., added as (s0 + s1) + (s2 + s3) at the end of each block;
 * both instruction sets sum so; the rows of products of several rows are
 * summed in order, as before.  Measured (Zen 4, one core, the few-row
 * kernel alone): [1,128] @ [128,32] 0.161 -> 0.116 us, [1,96] @ [96,32]
 * 0.123 -> 0.093 us; a batch-1 LSTM layer (32x32x1x32) 0.058 -> 0.057 ms,
 * as most of its time is per-op work.  Zen 5, whose FMAs need twice as
 * many chains, should gain more (not measured). */
#define ROW_CHAINS 4

/* chain acc += a_p * (row p of the panel(s): one panel, two ymm, with
 * AVX2; W panels ps floats apart with AVX-512) */
__attribute__((target("avx2,fma"), always_inline)) static inline void row_fma(__m256 *acc, float ap,
                                                                              const float *b) {
  const __m256 av = _mm256_set1_ps(ap);
  acc[0] = _mm256_fmadd_ps(av, _mm256_load_ps(b), acc[0]);
  acc[1] = _mm256_fmadd_ps(av, _mm256_load_ps(b + 8), acc[1]);
}

__attribute__((target("avx512f"), always_inline)) static inline void
row_fma512(__m512 *acc, const int W, float ap, const float *b, int64_t ps) {
  const __m512 av = _mm512_set1_ps(ap);
#pragma GCC unroll 8
  for (int w = 0; w < W; w++)
    acc[w] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + w * ps), acc[w]);
}

/* One panel with AVX2 (ROW_CHAINS x 2 ymm accumulators).  A full panel
 * reads and writes C with plain loads and stores, as the tiles of several
 * rows do: Zen 3's masked ones cost about as much as the k = 32 products
 * of a batch-1 step (one core, the kernel alone: [1,32] @ [32,128] 22-24.5
 * -> 31.6-32.6 GFLOP/s, [1,128] @ [128,32] 32-34.5 -> 33-38.7; the LSTM
 * layer 32x32x1x32 0.968 of the time, the GRU 0.977, median of 30 / 20
 * alternated runs). */
__attribute__((target("avx2,fma"))) static void row_tile(const float *a, int64_t ap, const float *b,
                                                         int64_t kb, float alpha, float bt,
                                                         const float *ci, float *c, int64_t left) {
  __m256 acc[ROW_CHAINS][2];
#pragma GCC unroll 8
  for (int s = 0; s < ROW_CHAINS; s++)
    acc[s][0] = acc[s][1] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + ROW_CHAINS <= kb; p += ROW_CHAINS)
#pragma GCC unroll 8
    for (int s = 0; s < ROW_CHAINS; s++)
      row_fma(acc[s], a[(p + s) * ap], b + (p + s) * NP);
#pragma GCC unroll 8
  for (int s = 0; s < ROW_CHAINS - 1; s++) /* the last kb % 4 rows: p % 4 == s */
    if (p + s < kb)
      row_fma(acc[s], a[(p + s) * ap], b + (p + s) * NP);
  const __m256 al = _mm256_set1_ps(alpha);
#pragma GCC unroll 8
  for (int v = 0; v < 2; v++) {
    const __m256 sum =
        _mm256_add_ps(_mm256_add_ps(acc[0][v], acc[1][v]), _mm256_add_ps(acc[2][v], acc[3][v]));
    store8(_mm256_mul_ps(al, sum), bt, ci + 8 * v, c + 8 * v, left >= NP, left - 8 * v);
  }
}

__attribute__((target("avx512f"), always_inline)) static inline void
row_tile512(const int W, const float *a, int64_t ap, const float *b, int64_t kbp, int64_t kb,
            float alpha, float bt, const float *ci, float *c, int64_t left) {
  __m512 acc[ROW_CHAINS][JB];
#pragma GCC unroll 8
  for (int s = 0; s < ROW_CHAINS; s++)
#pragma GCC unroll 8
    for (int w = 0; w < W; w++)
      acc[s][w] = _mm512_setzero_ps();
  const int64_t ps = kbp * NP;
  int64_t p = 0;
  for (; p + ROW_CHAINS <= kb; p += ROW_CHAINS)
#pragma GCC unroll 8
    for (int s = 0; s < ROW_CHAINS; s++)
      row_fma512(acc[s], W, a[(p + s) * ap], b + (p + s) * NP, ps);
#pragma GCC unroll 8
  for (int s = 0; s < ROW_CHAINS - 1; s++) /* the last kb % 4 rows: p % 4 == s */
    if (p + s < kb)
      row_fma512(acc[s], W, a[(p + s) * ap], b + (p + s) * NP, ps);
  const __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(bt);
#pragma GCC unroll 8
  for (int w = 0; w < W; w++) {
    const __mmask16 mk = lanes16(left - NP * w);
    const __m512 sum =
        _mm512_add_ps(_mm512_add_ps(acc[0][w], acc[1][w]), _mm512_add_ps(acc[2][w], acc[3][w]));
    __m512 y = _mm512_mul_ps(al, sum);
    if (bt != 0.0f)
      y = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(mk, ci + NP * w), y);
    _mm512_mask_storeu_ps(c + NP * w, mk, y);
  }
}

__attribute__((target("avx512f"))) static void run_row512(int W, const float *a, int64_t ap,
                                                          const float *b, int64_t kbp, int64_t kb,
                                                          float alpha, float bt, const float *ci,
                                                          float *c, int64_t left) {
  switch (W) {
  case 1: row_tile512(1, a, ap, b, kbp, kb, alpha, bt, ci, c, left); break;
  case 2: row_tile512(2, a, ap, b, kbp, kb, alpha, bt, ci, c, left); break;
  case 3: row_tile512(3, a, ap, b, kbp, kb, alpha, bt, ci, c, left); break;
  default: row_tile512(4, a, ap, b, kbp, kb, alpha, bt, ci, c, left); break;
  }
}

/* A one-row tile of W panels through the CPU's kernel (W = 1 with AVX2:
 * four chains of two ymm each) */
static void run_row(bool zmm, int W, const float *a, int64_t ap, const float *b, int64_t kbp,
                    int64_t kb, float alpha, float bt, const float *ci, float *c, int64_t left) {
  if (zmm)
    run_row512(W, a, ap, b, kbp, kb, alpha, bt, ci, c, left);
  else
    row_tile(a, ap, b, kb, alpha, bt, ci, c, left);
}

/* Rows of the next tile when rem rows are left: 6s, then a 4 before a
 * remainder of 4 or 3 (8 = 4 + 4, 7 = 4 + 3), then what is left. */
static int tile_rows(int64_t rem) {
  if (rem == 8 || rem == 7)
    return 4;
  return rem >= 6 ? 6 : (int)rem;
}

/* panels a tile of R rows takes at once: AVX2 keeps 8..12 ymm
 * accumulators, AVX-512 every row's JB panels (4..24 zmm) */
static int tile_panels(int R, bool zmm) { return zmm ? JB : R >= 4 ? 1 : R >= 2 ? 2 : 4; }

/* The operands of one product, for the loops below. */
typedef struct {
  int64_t m, n, k, ai, ap, kp, rsin, rsc;
  float alpha, beta;
  const float *A, *Bp, *Cin;
  float *C;
  bool one_row; /* the product has one row: its tiles sum in ROW_CHAINS chains */
} packed_args;

/* A copy of A[ib:ie, k0:k0+kb] for a pass of many rows whose A steps
 * between p by ap != 1 (a transposed operand: the weight gradient
 * dW += gy^T a reads gy's columns).  Read in place, each p of a tile is a
 * cache line of its own, ap floats apart; at ap = 2048 (LSTM H = 512) the
 * kb lines of a tile fall into one L1 set and the kernel ran at 97 GFLOP/s
 * against 105 from rows (Zen 4, m = 2048, n = 512, k = 256, alone), and at
 * 86-87 against 92-94 with the copy inside an LSTM 512x512 layer.  The copy
 * keeps each tile's R rows together p by p, tile[(i0 - ib) kb + p R + r] =
 * A[i0 + r, k0 + p], the order the tile reads them; it changes no bit. */
static void pack_row_tiles(const packed_args *g, int64_t k0, int64_t kb, int64_t ib, int64_t ie,
                           float *tiles) {
  if (g->ai == 1) {
    /* A's row p (gy's row, contiguous here) at once, its floats dealt out
     * to the tiles, 8 rows prefetched ahead: each source line is read once,
     * in order, where a tile at a time walked kb lines ap floats apart and
     * stalled on them (perf, LSTM 64x512 layer: the copy's share of the
     * samples 2.3% -> 1.7%; alone 2048x512x256c 106.8 -> 108-109 GFLOP/s) */
    int rows[MCP], n_tiles = 0;
    for (int64_t i0 = ib; i0 < ie; i0 += rows[n_tiles++])
      rows[n_tiles] = tile_rows(ie - i0);
    for (int64_t p = 0; p < kb; p++) {
      const float *src = g->A + ib + (k0 + p) * g->ap;
      if (p + 8 < kb) /* 8 rows ahead: the prefetchers do not follow ap */
        for (int64_t j = 0; j < ie - ib; j += 16)
          _mm_prefetch((const char *)(src + 8 * g->ap + j), _MM_HINT_T0);
      float *t = tiles;
      for (int q = 0; q < n_tiles; q++) {
        const int R = rows[q];
        if (R == 6)
          memcpy(t + p * 6, src, 6 * sizeof(float));
        else
          memcpy(t + p * R, src, (size_t)R * sizeof(float));
        src += R;
        t += R * kb;
      }
    }
    return;
  }
  for (int64_t i0 = ib; i0 < ie;) {
    const int R = tile_rows(ie - i0);
    float *t = tiles + (i0 - ib) * kb;
    const float *src = g->A + i0 * g->ai + k0 * g->ap;
    for (int64_t p = 0; p < kb; p++)
      for (int r = 0; r < R; r++)
        t[p * R + r] = src[r * g->ai + p * g->ap];
    i0 += R;
  }
}

/* The panels a column step will read next, for its first row tile to
 * prefetch into L2 while it reads its own (AVX2 tiles): panel q0 + w of
 * the block at `at`, its panels `stride` floats apart, for w < n. */
typedef struct {
  const float *at;
  int64_t stride, n;
} next_panels;

/* Panels [q0, qe) of the block of op(B) rows k0.., for rows [ib, ie) of A,
 * read from A itself or (tiles not NULL) from pack_row_tiles' copy; next
 * (n = 0: none) is prefetched on the way. */
static void column_step(const packed_args *g, const float *tiles, int64_t k0, int64_t q0,
                        int64_t qe, int64_t ib, int64_t ie, next_panels next) {
  const int64_t np = (g->n + NP - 1) / NP;
  const bool zmm = cr__skinny_isa == CR__SKINNY_AVX512;
  const int64_t kb = g->k - k0 < KC ? g->k - k0 : KC;    /* rows used */
  const int64_t kbp = g->kp - k0 < KC ? g->kp - k0 : KC; /* rows packed */
  const float bt = k0 == 0 ? g->beta : 1.0f;             /* later blocks add to C */
  const float *ci = k0 == 0 ? g->Cin : g->C;             /* what beta scales */
  const int64_t rsi = k0 == 0 ? g->rsin : g->rsc;
  const float *block = g->Bp + k0 * np * NP;
  const bool pf = zmm && !tiles && g->ap != 1 && g->ai == 1; /* A read in place by columns */
  for (int64_t i0 = ib; i0 < ie;) {
    const int R = tile_rows(ie - i0);
    const float *a[6];
    const int64_t ap = tiles ? R : g->ap;
    for (int r = 0; r < R; r++)
      a[r] = tiles ? tiles + (i0 - ib) * kb + r : g->A + (i0 + r) * g->ai + k0 * g->ap;
    for (int64_t q = q0; q < qe;) {
      const int most = g->one_row ? (zmm ? JB : 1) : tile_panels(R, zmm);
      const int W = (int)(qe - q < most ? qe - q : most);
      if (g->one_row)
        run_row(zmm, W, a[0], ap, block + q * kbp * NP, kbp, kb, g->alpha, bt, ci + q * NP,
                g->C + q * NP, g->n - q * NP);
      else if (zmm) /* only these tiles prefetch A (prefetch_a) */
        run_tile512(R, W, pf, a, ap, block + q * kbp * NP, kbp, kb, g->alpha, bt,
                    ci + i0 * rsi + q * NP, rsi, g->C + i0 * g->rsc + q * NP, g->rsc,
                    g->n - q * NP);
      else { /* the first row tile prefetches the next step's panels */
        const bool ahead = i0 == ib && q - q0 + W <= next.n;
        run_tile(R, W, a, ap, block + q * kbp * NP, kbp, kb,
                 ahead ? next.at + (q - q0) * next.stride : NULL, ahead ? next.stride : 0, g->alpha,
                 bt, ci + i0 * rsi + q * NP, rsi, g->C + i0 * g->rsc + q * NP, g->rsc,
                 g->n - q * NP);
      }
      q += W;
    }
    i0 += R;
  }
}

/* Columns [16 q_begin, 16 q_end) of the product.  Every element sums its
 * k in the same order (block after block, C updated after each) whatever
 * the loop order, so the order is chosen for the caches alone:
 *  - many rows: block by block, rows in passes of MC, so a pass's rows of
 *    A stay in L2 while the block's panels stream by;
 *  - few rows (a recurrent step's): column step by column step, each
 *    through every block, and every other call from the last column step
 *    back to the first.  A weight larger than the cache it can keep (a
 *    16 MiB W_hh at H = 1024 ran at 182 GFLOP/s against 227 at 8 MiB, Zen
 *    5) is then read from where the previous step left off, whose panels
 *    are still in cache, instead of from the end the cache has dropped. */
static void packed_panels(const packed_args *g, int64_t q_begin, int64_t q_end) {
  if (g->m <= MC) {
    static _Thread_local unsigned calls;
    const bool back = calls++ & 1;
    const int64_t steps = (q_end - q_begin + JB - 1) / JB;
    const int64_t np = (g->n + NP - 1) / NP;
    const bool ahead = (double)g->kp * np * NP * sizeof(float) > PREFETCH_AHEAD_BYTES;
    for (int64_t t = 0; t < steps; t++) {
      const int64_t q0 = q_begin + (back ? steps - 1 - t : t) * JB;
      const int64_t qe = q0 + JB < q_end ? q0 + JB : q_end;
      for (int64_t k0 = 0; k0 < g->k; k0 += KC) {
        /* after this block: the next block of the step, or the next step's first */
        const bool more = k0 + KC < g->k;
        const int64_t tn = back ? steps - 2 - t : t + 1;
        next_panels next = {NULL, 0, 0};
        if (ahead && (more || t + 1 < steps)) {
          const int64_t k1 = more ? k0 + KC : 0, q1 = more ? q0 : q_begin + tn * JB;
          const int64_t kbp1 = g->kp - k1 < KC ? g->kp - k1 : KC;
          next = (next_panels){g->Bp + k1 * np * NP + q1 * kbp1 * NP, kbp1 * NP,
                               (q1 + JB < q_end ? q1 + JB : q_end) - q1};
        }
        column_step(g, NULL, k0, q0, qe, 0, g->m, next);
      }
    }
    return;
  }
  /* rows in passes of MC from A itself, or of MCP through a copy where
   * A is read by columns in more than 4 column steps (fewer did not repay
   * the copy: 2 steps ran at 88 against 99 GFLOP/s without it) */
  float tiles[MCP * KC];
  const bool copy = g->ap != 1 && q_end - q_begin > 4 * JB;
  const int64_t mc = copy ? MCP : MC;
  for (int64_t k0 = 0; k0 < g->k; k0 += KC)
    for (int64_t ib = 0; ib < g->m; ib += mc) {
      const int64_t ie = g->m - ib < mc ? g->m : ib + mc;
      if (copy)
        pack_row_tiles(g, k0, g->k - k0 < KC ? g->k - k0 : KC, ib, ie, tiles);
      for (int64_t q0 = q_begin; q0 < q_end; q0 += JB)
        column_step(g, copy ? tiles : NULL, k0, q0, q0 + JB < q_end ? q0 + JB : q_end, ib, ie,
                    (next_panels){NULL, 0, 0});
    }
}

typedef struct packed_job {
  packed_args g;
  int64_t parts;
  bool by_rows;
} packed_job;

/* One part of the product: whole groups of JB panels of the columns, so
 * each thread's tiles are those of the single-threaded product; or, where
 * the columns make too few groups to share (a layer's input-side products
 * at I = 64: n = 64, one group), a range of rows, whole 6-row tiles where
 * possible.  Every element sums its k in the same order either way, so
 * the bits are those of one thread. */
static void packed_task(void *arg, int64_t part) {
  const packed_job *j = arg;
  const int64_t np = (j->g.n + NP - 1) / NP;
  if (j->by_rows) {
    const int64_t tiles = (j->g.m + 5) / 6;
    const int64_t i0 = 6 * (tiles * part / j->parts);
    int64_t i1 = 6 * (tiles * (part + 1) / j->parts);
    i1 = i1 < j->g.m ? i1 : j->g.m;
    if (i0 >= i1)
      return;
    packed_args g = j->g;
    g.m = i1 - i0;
    g.A += i0 * g.ai;
    g.Cin += i0 * g.rsin;
    g.C += i0 * g.rsc;
    packed_panels(&g, 0, np);
    return;
  }
  const int64_t groups = (np + JB - 1) / JB;
  const int64_t g0 = groups * part / j->parts, g1 = groups * (part + 1) / j->parts;
  const int64_t q1 = g1 * JB < np ? g1 * JB : np;
  if (g0 * JB < q1)
    packed_panels(&j->g, g0 * JB, q1);
}

void cr__skinny_sgemm_packed(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                             int64_t ai, int64_t ap, const float *Bp, int64_t kp, float beta,
                             float *C, int64_t rsc) {
  cr__skinny_sgemm_packed_from(m, n, k, alpha, A, ai, ap, Bp, kp, beta, C, rsc, C, rsc);
}

void cr__skinny_sgemm_packed_from(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                                  int64_t ai, int64_t ap, const float *Bp, int64_t kp, float beta,
                                  const float *Cin, int64_t rsin, float *C, int64_t rsc) {
  /* threads for products of >= 1 M multiply-adds per thread: by groups of
   * JB panels (64 columns) where there are at least two per thread, else
   * by rows where there are at least two 6-row tiles per thread */
  const int64_t groups = ((n + NP - 1) / NP + JB - 1) / JB;
  int64_t parts = cr__parallel_threads();
  if (parts > m * n * k / 1000000)
    parts = m * n * k / 1000000;
  const bool by_rows = groups < 2 * parts && m >= 12 * parts;
  if (!by_rows && parts > groups)
    parts = groups;
  const packed_args g = {m, n, k, ai, ap, kp, rsin, rsc, alpha, beta, A, Bp, Cin, C, m == 1};
  if (parts <= 1) {
    packed_panels(&g, 0, (n + NP - 1) / NP);
    return;
  }
  packed_job j = {g, parts, by_rows};
  cr__parallel_for(parts, packed_task, &j);
}
