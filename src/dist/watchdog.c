/* watchdog.c — a thread that ends this process when one collective has
 * waited longer than the group's timeout.
 *
 * MPI has no timeout: a blocking collective whose peer is stopped, stuck
 * or never calls it waits forever, and cannot be interrupted.  So the
 * calling thread records when it starts waiting (cr__dist_wait_begin) and
 * when it is done (cr__dist_wait_end); the watchdog wakes up every
 * timeout/8 (at most 1 s), and once a wait is older than the timeout it
 * prints what waits on which rank and calls _exit(CR_DIST_TIMEOUT_EXIT).
 * mpirun then sees a process end with a failure status and ends the
 * others.  The watchdog never calls MPI (under MPI_THREAD_FUNNELED only
 * the main thread may), and costs a mutex per collective.  PyTorch's NCCL
 * process group has the same kind of watchdog. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist_impl.h"

double cr__dist_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *watch(void *arg) {
  cr__dist_watchdog *w = arg;
  double period = w->timeout / 8 < 1 ? w->timeout / 8 : 1;
  pthread_mutex_lock(&w->mu);
  while (!w->stop) {
    if (w->since > 0 && cr__dist_now() - w->since > w->timeout) {
      /* stderr is unbuffered: the line is out before the process ends */
      fprintf(stderr,
              "cr_dist: rank %d of %d: %s has waited %g s for the other ranks: one "
              "died, stopped or is not calling it; exiting with status %d\n",
              w->rank, w->size, w->what, w->timeout, CR_DIST_TIMEOUT_EXIT);
      _exit(CR_DIST_TIMEOUT_EXIT);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* pthread_cond_timedwait's clock */
    double t = (double)until.tv_sec + 1e-9 * (double)until.tv_nsec + period;
    until.tv_sec = (time_t)t;
    until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
    pthread_cond_timedwait(&w->cv, &w->mu, &until);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

bool cr__dist_watchdog_start(cr__dist_watchdog *w, double timeout, int rank, int size) {
  memset(w, 0, sizeof *w);
  w->timeout = timeout;
  w->rank = rank;
  w->size = size;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (timeout <= 0)
    return true;
  w->running = pthread_create(&w->thread, NULL, watch, w) == 0;
  return w->running;
}

void cr__dist_watchdog_stop(cr__dist_watchdog *w) {
  if (w->running) {
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->running = false;
  }
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

void cr__dist_wait_begin(cr__dist_watchdog *w, const char *fmt, ...) {
  if (!w->running)
    return;
  pthread_mutex_lock(&w->mu);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->what, sizeof w->what, fmt, ap);
  va_end(ap);
  w->since = cr__dist_now();
  pthread_mutex_unlock(&w->mu);
}

void cr__dist_wait_end(cr__dist_watchdog *w) {
  if (!w->running)
    return;
  pthread_mutex_lock(&w->mu);
  w->since = 0;
  pthread_mutex_unlock(&w->mu);
}
