/* parallel.c — splitting one product (or one pass over a large tensor)
 * across cores: a pool of cr_get_num_threads() - 1 worker threads that
 * spin briefly between jobs (a recurrent layer's per-step products come
 * every few microseconds to milliseconds) and sleep after that.
 *
 * A job is fn(arg, 0) .. fn(arg, n - 1); the calling thread takes tasks
 * too, and returns when every task has run and every worker has left the
 * job (so the next job can reuse the descriptor).  Which thread runs which
 * task varies, so a task must write only its own outputs; callers cut work
 * into the same tasks whatever the timing, so results are the same bits on
 * any number of threads.  One job at a time: a second caller (another
 * context in another thread), or a task that asks for a job itself, runs
 * its tasks on its own thread. */
#include <pthread.h>
#include <stdatomic.h>

#include "chainrule/runtime.h"
#include "internal.h"

#define MAX_WORKERS 63
#define SPINS 4000 /* pause loops before a worker sleeps: ~100 us (PAUSE is ~65 cycles on Zen) */

static struct {
  pthread_mutex_t busy; /* held by the thread running a job */
  pthread_mutex_t sleep_mx;
  pthread_cond_t wake;
  pthread_t tid[MAX_WORKERS];
  int n_workers;
  atomic_uint gen;  /* job number: a change wakes the workers */
  atomic_long next; /* the next task to take */
  atomic_long done; /* tasks finished */
  atomic_int left;  /* workers that have left the current job */
  atomic_int sleeping;
  atomic_bool stop;
  long n_tasks;
  int active; /* workers taking tasks in this job (the others only check in) */
  cr__task_fn fn;
  void *arg;
} P = {.busy = PTHREAD_MUTEX_INITIALIZER,
       .sleep_mx = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER};

static _Thread_local bool in_job; /* this thread is running a task */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void take_tasks(void) {
  for (;;) {
    long i = atomic_fetch_add_explicit(&P.next, 1, memory_order_acq_rel);
    if (i >= P.n_tasks)
      return;
    P.fn(P.arg, (int64_t)i);
    atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
  }
}

static void *worker(void *self) {
  const int me = (int)(intptr_t)self;
  unsigned seen = 0;
  in_job = true; /* a task on a worker never starts a job of its own */
  for (;;) {
    for (long spins = 0; atomic_load_explicit(&P.gen, memory_order_acquire) == seen; spins++) {
      if (atomic_load(&P.stop))
        return NULL;
      if (spins < SPINS) {
        cpu_relax();
        continue;
      }
      pthread_mutex_lock(&P.sleep_mx);
      atomic_fetch_add(&P.sleeping, 1);
      while (atomic_load(&P.gen) == seen && !atomic_load(&P.stop))
        pthread_cond_wait(&P.wake, &P.sleep_mx);
      atomic_fetch_sub(&P.sleeping, 1);
      pthread_mutex_unlock(&P.sleep_mx);
      spins = 0;
    }
    seen = atomic_load_explicit(&P.gen, memory_order_acquire);
    if (atomic_load(&P.stop))
      return NULL;
    if (me < P.active)
      take_tasks();
    atomic_fetch_add_explicit(&P.left, 1, memory_order_release);
  }
}

static void stop_workers(void) {
  pthread_mutex_lock(&P.busy);
  atomic_store(&P.stop, true);
  pthread_mutex_lock(&P.sleep_mx);
  pthread_cond_broadcast(&P.wake);
  pthread_mutex_unlock(&P.sleep_mx);
  for (int i = 0; i < P.n_workers; i++)
    pthread_join(P.tid[i], NULL);
  P.n_workers = 0;
  pthread_mutex_unlock(&P.busy);
}

/* start workers up to `want` (under P.busy); false when none could start */
static bool have_workers(int want) {
  static bool registered;
  if (want > MAX_WORKERS)
    want = MAX_WORKERS;
  while (P.n_workers < want) {
    if (pthread_create(&P.tid[P.n_workers], NULL, worker, (void *)(intptr_t)P.n_workers) != 0)
      break;
    P.n_workers++;
    if (!registered) {
      registered = true;
      atexit(stop_workers);
    }
  }
  return P.n_workers > 0;
}

int cr__parallel_threads(void) { return in_job ? 1 : cr_get_num_threads(); }

void cr__parallel_for(int64_t n, cr__task_fn fn, void *arg) {
  const int threads = cr__parallel_threads();
  if (n <= 1 || threads <= 1 || pthread_mutex_trylock(&P.busy) != 0) {
    for (int64_t i = 0; i < n; i++)
      fn(arg, i);
    return;
  }
  if (!have_workers(threads - 1)) {
    pthread_mutex_unlock(&P.busy);
    for (int64_t i = 0; i < n; i++)
      fn(arg, i);
    return;
  }
  P.fn = fn;
  P.arg = arg;
  P.n_tasks = (long)n;
  P.active = threads - 1 < P.n_workers ? threads - 1 : P.n_workers;
  atomic_store_explicit(&P.next, 0, memory_order_relaxed);
  atomic_store_explicit(&P.done, 0, memory_order_relaxed);
  atomic_store_explicit(&P.left, 0, memory_order_relaxed);
  atomic_fetch_add(&P.gen, 1); /* publishes the job (seq_cst: against `sleeping`) */
  if (atomic_load(&P.sleeping) > 0) {
    pthread_mutex_lock(&P.sleep_mx);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.sleep_mx);
  }
  in_job = true;
  take_tasks();
  in_job = false;
  while (atomic_load_explicit(&P.done, memory_order_acquire) < (long)n ||
         atomic_load_explicit(&P.left, memory_order_acquire) < P.n_workers)
    cpu_relax();
  pthread_mutex_unlock(&P.busy);
}

/* ---- memory-bound passes over large buffers (zeroing a gradient,
 * copying one): one core alone does not reach the memory's bandwidth, and
 * on one thread these passes are what a second core waits on.  A buffer
 * of 2 PAR_BYTES or more is cut into parts of at least PAR_BYTES (ends on
 * 64-byte lines), one per thread.  Bytes are bytes: the same result on
 * any thread count. */
#define PAR_BYTES ((size_t)32 << 10)

typedef struct {
  char *dst;
  const char *src; /* NULL: zero */
  size_t bytes;
  int64_t parts;
} mem_job;

static void mem_part(void *arg, int64_t part) {
  const mem_job *j = arg;
  const size_t lines = (j->bytes + 63) / 64;
  const size_t b0 = lines * (size_t)part / (size_t)j->parts * 64;
  size_t b1 = lines * (size_t)(part + 1) / (size_t)j->parts * 64;
  b1 = b1 < j->bytes ? b1 : j->bytes;
  if (b1 <= b0)
    return;
  if (j->src)
    memcpy(j->dst + b0, j->src + b0, b1 - b0);
  else
    memset(j->dst + b0, 0, b1 - b0);
}

static void mem_pass(void *dst, const void *src, size_t bytes) {
  if (!bytes)
    return;
  int64_t parts = bytes < 2 * PAR_BYTES ? 1 : cr__parallel_threads();
  if (parts > (int64_t)(bytes / PAR_BYTES))
    parts = (int64_t)(bytes / PAR_BYTES);
  if (parts <= 1) {
    if (src)
      memcpy(dst, src, bytes);
    else
      memset(dst, 0, bytes);
    return;
  }
  mem_job j = {dst, src, bytes, parts};
  cr__parallel_for(parts, mem_part, &j);
}

void cr__par_zero(void *p, size_t bytes) { mem_pass(p, NULL, bytes); }

void cr__par_copy(void *dst, const void *src, size_t bytes) { mem_pass(dst, src, bytes); }
