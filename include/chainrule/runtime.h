/* chainrule/runtime.h — the BLIS runtime: CPU sub-configuration and threads.
 *
 * Debian's BLIS 0.9 does not recognise every CPU and then falls back to its
 * slow "generic" kernels.  At initialisation chainrule picks the fastest
 * sub-configuration the CPU really supports, from CPUID feature bits and
 * the OS's saved register state: skx when AVX-512F/DQ/BW/VL are usable,
 * else zen3 (AMD) or haswell (others) when AVX2 and FMA are, else BLIS's
 * own choice.  A BLIS_ARCH_TYPE already in the environment always wins.
 *
 * Threads: a large product is split across up to cr_get_num_threads()
 * threads (a pool of workers that spin briefly between products and sleep
 * when idle), in blocks of columns or rows that each run the kernel the
 * whole product would, and so is an elementwise map of 8192 elements or
 * more, by ranges of rows or columns; so results are the same bits on any
 * number of threads.  Products below about 2 MFLOP per thread run on one.
 * The initial count is BLIS_NUM_THREADS from the environment, else 1.
 *
 * Most float32 products bypass BLIS: those with at most 128 rows, and with
 * AVX-512 any with at most 1M output elements, run in chainrule's own
 * kernel (AVX-512 or AVX2+FMA, the same bits either way) against the right
 * operand packed into panels — a weight once, kept with it until its
 * values change; the per-step products of a recurrent layer are of this
 * kind.  Other products of fewer than 40,000 multiply-adds run as plain
 * vectorised loops (a BLIS call costs 5-8 us).  BLIS's "sup" path is not
 * used: on every layer-shaped product measured it was slower than BLIS's
 * conventional one.
 */
#ifndef CHAINRULE_RUNTIME_H
#define CHAINRULE_RUNTIME_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Initialise the runtime (idempotent; cr_ctx_new calls it). */
void cr_runtime_init(void);
/* Use up to n >= 1 threads in large products (n < 1 is taken as 1).  With a
 * single-threaded BLIS build the count is recorded but has no effect. */
void cr_set_num_threads(int n);
int cr_get_num_threads(void);

typedef struct cr_runtime_info {
  const char *blis_version; /* e.g. "0.9.0" */
  const char *arch;         /* sub-configuration in use, e.g. "skx" */
  const char *arch_reason;  /* how it was chosen */
  const char *threading;    /* "pthreads", "openmp" or "none" */
  int num_threads;
} cr_runtime_info;
void cr_get_runtime_info(cr_runtime_info *info);
/* One line: "BLIS 0.9.0, sub-config skx (chosen from CPUID: AVX-512),
 * threading pthreads, 1 thread".  Returns buf. */
const char *cr_runtime_describe(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
