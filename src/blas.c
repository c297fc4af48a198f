/* blas.c — the only file that calls BLIS: runtime selection of the CPU
 * sub-configuration, the thread count, and the typed gemm every matrix
 * product goes through. */
#include <blis.h>
#include <cpuid.h>
#include <pthread.h>

#include "chainrule/runtime.h"
#include "internal.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_threads = 1;
/* the skinny products' instruction set, from CPUID (a variable so tests
 * can choose a kernel the CPU has) */
int cr__skinny_isa = CR__SKINNY_NONE;
/* largest m sent to the skinny kernel (a variable so tests can move it) */
int64_t cr__skinny_max_m = 32;
static const char *g_reason = "BLIS's own detection";

/* ---- CPU features (x86-64 CPUID + XGETBV) */

#if defined(__x86_64__) || defined(__i386__)
static uint64_t xgetbv0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

/* The BLIS arch id to use, or -1 to leave BLIS's choice alone. */
static int pick_arch(const char **reason) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d) || a < 7)
    return -1;
  bool amd = b == 0x68747541; /* "Auth"enticAMD */
  __get_cpuid(1, &a, &b, &c, &d);
  bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!osxsave || !avx)
    return -1;
  uint64_t xcr0 = xgetbv0();
  bool ymm_ok = (xcr0 & 0x6) == 0x6;   /* SSE + AVX state saved by the OS */
  bool zmm_ok = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
  __cpuid_count(7, 0, a, b, c, d);
  bool avx2 = b & (1u << 5);
  bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  cr__skinny_isa = zmm_ok && f             ? CR__SKINNY_AVX512
                   : ymm_ok && avx2 && fma ? CR__SKINNY_AVX2
                                           : CR__SKINNY_NONE;
  if (zmm_ok && f && dq && bw && vl && fma) {
    *reason = "chosen from CPUID: AVX-512F/DQ/BW/VL";
    return BLIS_ARCH_SKX;
  }
  if (ymm_ok && avx2 && fma) {
    *reason = amd ? "chosen from CPUID: AVX2+FMA, AMD" : "chosen from CPUID: AVX2+FMA";
    return amd ? BLIS_ARCH_ZEN3 : BLIS_ARCH_HASWELL;
  }
  return -1;
}
#else
static int pick_arch(const char **reason) {
  (void)reason;
  return -1;
}
#endif

static void runtime_init_once(void) {
  const char *user = getenv("BLIS_ARCH_TYPE");
  if (user && *user) {
    const char *unused;
    (void)pick_arch(&unused); /* for the CPU features only */
    g_reason = "BLIS_ARCH_TYPE from the environment";
  } else {
    const char *why = NULL;
    int id = pick_arch(&why);
    if (id >= 0) {
      char buf[16];
      snprintf(buf, sizeof buf, "%d", id);
      setenv("BLIS_ARCH_TYPE", buf, 0); /* read by bli_init */
      g_reason = why;
    }
  }
  bli_init();
  /* release BLIS's memory pools at exit, so leak checkers see a clean exit */
  atexit(bli_finalize);
  const char *nt = getenv("BLIS_NUM_THREADS");
  if (nt && atoi(nt) > 0)
    g_threads = atoi(nt);
}

void cr_runtime_init(void) { pthread_once(&g_once, runtime_init_once); }

void cr_set_num_threads(int n) {
  cr_runtime_init();
  g_threads = n < 1 ? 1 : n;
}

int cr_get_num_threads(void) {
  cr_runtime_init();
  return g_threads;
}

void cr_get_runtime_info(cr_runtime_info *info) {
  cr_runtime_init();
  info->blis_version = bli_info_get_version_str();
  info->arch = bli_arch_string(bli_arch_query_id());
  info->arch_reason = g_reason;
  info->threading = bli_info_get_enable_pthreads() ? "pthreads"
                    : bli_info_get_enable_openmp() ? "openmp"
                                                   : "none";
  info->num_threads = g_threads;
}

const char *cr_runtime_describe(char *buf, size_t n) {
  cr_runtime_info in;
  cr_get_runtime_info(&in);
  snprintf(buf, n, "BLIS %s, sub-config %s (%s), threading %s, %d thread%s", in.blis_version,
           in.arch, in.arch_reason, in.threading, in.num_threads, in.num_threads == 1 ? "" : "s");
  return buf;
}

/* Threads pay for themselves only on large products: below about 2 MFLOP
 * per thread the fork/join and the split panels cost more than they save
 * (measured: 1x128x64 and 32x512x192 get slower with two threads). */
static int threads_for(int64_t m, int64_t n, int64_t k) {
  const int avail = cr__parallel_threads();
  if (avail <= 1)
    return 1;
  double flops = 2.0 * (double)m * (double)n * (double)k;
  int64_t t = (int64_t)(flops / 2e6);
  if (t < 1)
    t = 1;
  if (t > avail)
    t = avail;
  /* a thread needs 16 columns or 8 rows of its own */
  int64_t most = n >= m ? n / 16 : m / 8;
  if (t > most)
    t = most < 1 ? 1 : most;
  return (int)t;
}

/* Products this small are faster as plain loops than as a BLIS call, whose
 * fixed cost (5-8 us: packing, blocking, dispatch) would dominate.  The
 * threshold is m*n*k (measured with tests/bench/bench-gemm). */
#define CR__SMALL_MNK 40000
/* the threshold as a variable, so a benchmark can move it */
int64_t cr__small_gemm_mnk = CR__SMALL_MNK;

#define CR__CAT_(a, b) a##b
#define CR__CAT(a, b) CR__CAT_(a, b)
#define T float
#define SFX _f
#include "small_gemm.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "small_gemm.inc"
#undef T
#undef SFX

typedef enum { PATH_LOOPS, PATH_SKINNY, PATH_BLIS } gemm_path;

typedef struct gemm_args {
  cr_dtype dt;
  bool ta, tb;
  int64_t m, n, k;
  double alpha, beta;
  const char *a, *b;
  char *c;
  int64_t rsa, csa, rsb, csb, rsc, csc;
} gemm_args;

/* One product on this thread by the path chosen for the whole product (a
 * block of a split product goes the same way, so the split changes no
 * rounding). */
static void gemm_on_one(gemm_path path, const gemm_args *g) {
  if (path == PATH_LOOPS) {
    (g->dt == CR_F32 ? small_gemm_f : small_gemm_d)(g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->a,
                                                    g->rsa, g->csa, g->b, g->rsb, g->csb, g->beta,
                                                    g->c, g->rsc, g->csc);
  } else if (path == PATH_SKINNY) {
    /* few rows against a large right operand: skip BLIS's packing of B */
    cr__skinny_sgemm(g->m, g->n, g->k, (float)g->alpha, (const float *)g->a,
                     g->ta ? g->csa : g->rsa, g->ta ? g->rsa : g->csa, (const float *)g->b,
                     g->tb ? g->csb : g->rsb, (float)g->beta, (float *)g->c, g->rsc);
  } else {
    /* BLIS's "sup" path for small and skinny products was slower than its
     * conventional one on every product shape of a recurrent layer here
     * (zen3, 1 thread: 256x2048x64 32 vs 61 GFLOP/s, 256x512x128 44 vs 68,
     * 512x2048x256 equal), and its edge kernels sum in another order than
     * its main ones, so a block of a split product would round apart from
     * the same rows computed whole: use the conventional path always */
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    trans_t tra = g->ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    trans_t trb = g->tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    if (g->dt == CR_F32) {
      float al = (float)g->alpha, be = (float)g->beta;
      bli_sgemm_ex(tra, trb, g->m, g->n, g->k, &al, (float *)g->a, g->rsa, g->csa, (float *)g->b,
                   g->rsb, g->csb, &be, (float *)g->c, g->rsc, g->csc, NULL, &rntm);
    } else {
      double al = g->alpha, be = g->beta;
      bli_dgemm_ex(tra, trb, g->m, g->n, g->k, &al, (double *)g->a, g->rsa, g->csa, (double *)g->b,
                   g->rsb, g->csb, &be, (double *)g->c, g->rsc, g->csc, NULL, &rntm);
    }
  }
}

typedef struct split_job {
  gemm_args whole;
  gemm_path path;
  int parts;
  bool by_columns;
} split_job;

/* block `part` of the split: columns (multiples of 16) or rows (of 8) */
static void split_task(void *arg, int64_t part) {
  const split_job *j = arg;
  gemm_args g = j->whole;
  const size_t es = cr_dtype_size(g.dt);
  const int64_t len = j->by_columns ? g.n : g.m, unit = j->by_columns ? 16 : 8;
  const int64_t units = (len + unit - 1) / unit;
  const int64_t u0 = units * part / j->parts, u1 = units * (part + 1) / j->parts;
  const int64_t i0 = u0 * unit, i1 = u1 * unit < len ? u1 * unit : len;
  if (i1 <= i0)
    return;
  if (j->by_columns) { /* op(B)[:, i0:i1] and C[:, i0:i1] */
    g.b += (size_t)(i0 * (g.tb ? g.rsb : g.csb)) * es;
    g.c += (size_t)(i0 * g.csc) * es;
    g.n = i1 - i0;
  } else { /* op(A)[i0:i1, :] and C[i0:i1, :] */
    g.a += (size_t)(i0 * (g.ta ? g.csa : g.rsa)) * es;
    g.c += (size_t)(i0 * g.rsc) * es;
    g.m = i1 - i0;
  }
  gemm_on_one(j->path, &g);
}

void cr__gemm(cr_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
              const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb, int64_t csb,
              double beta, void *c, int64_t rsc, int64_t csc) {
  const gemm_args g = {dt, ta, tb, m, n, k, alpha, beta, a, b, c, rsa, csa, rsb, csb, rsc, csc};
  gemm_path path = PATH_BLIS;
  if ((double)m * (double)n * (double)k <= (double)cr__small_gemm_mnk)
    path = PATH_LOOPS;
  else if (dt == CR_F32 && cr__skinny_isa != CR__SKINNY_NONE && m <= cr__skinny_max_m &&
           (tb ? rsb : csb) == 1 && csc == 1 && cr__skinny_ok(m, n, k))
    path = PATH_SKINNY;
  const int nt = path == PATH_LOOPS ? 1 : threads_for(m, n, k);
  if (nt <= 1) {
    gemm_on_one(path, &g);
    return;
  }
  split_job job = {g, path, nt, n >= m};
  cr__parallel_for(nt, split_task, &job);
}
