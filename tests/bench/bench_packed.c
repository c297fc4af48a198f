/* bench_packed.c — the few-row packed kernel (src/packed_gemm.c) alone:
 * C += A op(B) with op(B) packed into panels, for the products a recurrent
 * layer and matmul's VJP send it, in GFLOP/s and % of a given peak.
 *
 * A shape is m x n x k with A read by rows (A[i, p] at A + i k + p: a
 * step's h W^T, the input projection) or by columns (A[i, p] at A + p m + i:
 * the weight gradients gb^T += gy^T a, where A = gy^T).  Each product runs
 * repeatedly for --min-time seconds, 5 times; the best time is kept (a busy
 * machine only slows a run down).  Operands are filled once; C accumulates
 * (beta = 1), as the gradients do.  The same product through BLIS
 * (cr__gemm, B unpacked: what matmul calls where cr__packed_suits says
 * no) runs in turn with each run, so the two columns see the same machine:
 * the measurement behind cr__packed_suits, on the CPU at hand.
 *
 *   taskset -c 1 build/tests/bench/bench-packed [--shapes MxNxK[r|c],...]
 *       [--min-time S] [--quick] [--peak GFLOPS] [--isa avx2|avx512]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chainrule.h"
#include "internal.h"

/* a recurrent layer's products at H = 512, I = 64, B = 32 (LSTM: 4H =
 * 2048; staged gradients flush every 256 rows) and matmul's VJP of a
 * linear map 64 -> 2048 over 2048 rows at once */
static const char *default_shapes = "32x2048x512r,32x512x2048r,256x2048x64r,256x64x2048r,"
                                    "2048x512x256c,2048x64x256c,2048x64x2048c,1024x64x2048c,"
                                    "2048x128x2048c,512x64x2048c";

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(FILE *to, int rc) {
  fprintf(to, "usage: bench-packed [--shapes MxNxK[r|c],...] [--min-time S] [--quick] "
              "[--peak GFLOPS] [--isa avx2|avx512]\n");
  exit(rc);
}

/* a positive number for flag, or a message and exit 2 */
static double positive(const char *flag, const char *text) {
  char *end;
  const double v = strtod(text, &end);
  if (end == text || *end || !(v > 0) || v > 1e6) {
    fprintf(stderr, "bench-packed: %s '%s': want a positive number\n", flag, text);
    exit(2);
  }
  return v;
}

/* "MxNxK", "MxNxKr" or "MxNxKc" into m, n, k and by_columns */
static bool parse_shape(const char *s, long *m, long *n, long *k, bool *by_columns) {
  char how = 'r', end = 0;
  const int got = sscanf(s, "%ldx%ldx%ld%c%c", m, n, k, &how, &end);
  *by_columns = how == 'c';
  return got >= 3 && got <= 4 && (how == 'r' || how == 'c') && *m >= 1 && *n >= 1 && *k >= 1 &&
         *m <= 65536 && *n <= 65536 && *k <= 65536;
}

static float *aligned_floats(long n) {
  float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
  if (p)
    memset(p, 0, (size_t)n * sizeof(float));
  return p;
}

/* one product's best time of 5 runs, µs, through each path */
typedef struct {
  double packed_us, blis_us;
} product_times;

/* one run: the product repeated for >= min_time seconds through the packed
 * kernel (blis false) or through BLIS; µs per product */
static double run_for(bool blis, long m, long n, long k, const float *A, int64_t ai, int64_t ap,
                      const float *B, const float *P, float *C, double min_time) {
  long reps = 0;
  const double t0 = now();
  double t;
  do {
    if (blis)
      cr__gemm(CR_F32, false, false, m, n, k, 1.0, A, ai, ap, B, n, 1, 1.0, C, n, 1);
    else
      cr__skinny_sgemm_packed(m, n, k, 1.0f, A, ai, ap, P, k, 1.0f, C, n);
    reps++;
  } while ((t = now() - t0) < min_time);
  return t / (double)reps * 1e6;
}

/* 5 runs of each path, taking turns, so both see the same machine */
static product_times time_product(long m, long n, long k, bool by_columns, double min_time) {
  /* 64-byte aligned: the packing must be (its AVX2 tiles load aligned) */
  float *A = aligned_floats(m * k), *B = aligned_floats(k * n), *C = aligned_floats(m * n);
  float *P = aligned_floats((long)cr__skinny_packed_floats(k, n));
  if (!A || !B || !C || !P) {
    fprintf(stderr, "bench-packed: out of memory for %ldx%ldx%ld\n", m, n, k);
    exit(1);
  }
  for (long i = 0; i < m * k; i++)
    A[i] = (float)(i % 13) * 0.01f - 0.06f;
  for (long i = 0; i < k * n; i++)
    B[i] = (float)(i % 7) * 0.01f - 0.03f;
  cr__skinny_pack(k, n, B, n, 1, P);
  const int64_t ai = by_columns ? 1 : k, ap = by_columns ? m : 1;
  product_times best = {1e30, 1e30};
  for (int run = 0; run < 5; run++) {
    const double packed = run_for(false, m, n, k, A, ai, ap, B, P, C, min_time);
    const double blis = run_for(true, m, n, k, A, ai, ap, B, P, C, min_time);
    best.packed_us = packed < best.packed_us ? packed : best.packed_us;
    best.blis_us = blis < best.blis_us ? blis : best.blis_us;
  }
  free(A), free(B), free(C), free(P);
  return best;
}

int main(int argc, char **argv) {
  const char *shapes = default_shapes, *isa = NULL;
  double min_time = 0.3, peak = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shapes") && i + 1 < argc)
      shapes = argv[++i];
    else if (!strcmp(argv[i], "--min-time") && i + 1 < argc)
      min_time = positive("--min-time", argv[++i]);
    else if (!strcmp(argv[i], "--peak") && i + 1 < argc)
      peak = positive("--peak", argv[++i]);
    else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
      isa = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      min_time = 0.02;
    else if (!strcmp(argv[i], "--help"))
      usage(stdout, 0);
    else
      usage(stderr, 2);
  }
  cr_runtime_init(); /* CPUID: the kernel's instruction set */
  if (isa && !strcmp(isa, "avx2") && cr__skinny_isa != CR__SKINNY_NONE)
    cr__skinny_isa = CR__SKINNY_AVX2;
  else if (isa && strcmp(isa, "avx512"))
    usage(stderr, 2);
  else if (isa && cr__skinny_isa != CR__SKINNY_AVX512) {
    fprintf(stderr, "bench-packed: --isa avx512: this CPU or OS has no AVX-512\n");
    return 1;
  }
  if (cr__skinny_isa == CR__SKINNY_NONE) {
    fprintf(stderr, "bench-packed: the packed kernel needs AVX2+FMA or AVX-512\n");
    return 1;
  }
  char *list = strdup(shapes);
  if (!list)
    return 1;
  for (char *save = NULL, *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
    long m, n, k;
    bool by_columns;
    if (!parse_shape(s, &m, &n, &k, &by_columns)) { /* every shape checked before any runs */
      fprintf(stderr, "bench-packed: bad shape '%s' (want MxNxK, each 1..65536, r or c after it)\n",
              s);
      free(list);
      return 2;
    }
  }
  strcpy(list, shapes); /* strtok_r cut it */
  cr_set_num_threads(1);
  printf(
      "packed kernel alone and BLIS beside it, 1 thread, %s tiles; best of 5 runs of >= %.2f s\n",
      cr__skinny_isa == CR__SKINNY_AVX512 ? "AVX-512" : "AVX2", min_time);
  printf("%-16s %-8s %10s %9s%s %10s %9s%s %8s\n", "m x n x k", "A read", "us", "GFLOP/s",
         peak > 0 ? "   % peak" : "", "BLIS us", "GFLOP/s", peak > 0 ? "   % peak" : "", "BLIS/pk");
  for (char *save = NULL, *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
    long m, n, k;
    bool by_columns;
    parse_shape(s, &m, &n, &k, &by_columns);
    const product_times t = time_product(m, n, k, by_columns, min_time);
    const double kflop = 2.0 * (double)m * (double)n * (double)k * 1e-3; /* / us = GFLOP/s */
    char dims[48];
    snprintf(dims, sizeof dims, "%ldx%ldx%ld", m, n, k);
    printf("%-16s %-8s", dims, by_columns ? "columns" : "rows");
    const double us[2] = {t.packed_us, t.blis_us};
    for (int which = 0; which < 2; which++) {
      printf(" %10.1f %9.1f", us[which], kflop / us[which]);
      if (peak > 0)
        printf("   %5.1f%%", 100.0 * kflop / us[which] / peak);
    }
    printf(" %7.2fx\n", t.blis_us / t.packed_us);
  }
  free(list);
  return 0;
}
