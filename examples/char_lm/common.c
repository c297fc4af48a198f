/* common.c — messages, checked allocation and clocks for char-lm. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "char_lm.h"

static int my_rank, n_ranks = 1;
static char last_error[600];

void cl_set_rank(int rank, int size) {
  my_rank = rank;
  n_ranks = size;
}

const char *cl_last_error(void) { return last_error; }

int cl_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  if (n_ranks > 1)
    fprintf(stderr, "char-lm: rank %d: %s\n", my_rank, last_error);
  else
    fprintf(stderr, "char-lm: %s\n", last_error);
  return 1;
}

void *cl_alloc(size_t n, size_t size, const char *what) {
  size_t bytes;
  void *p = NULL;
  if (!__builtin_mul_overflow(n, size, &bytes))
    p = malloc(bytes ? bytes : 1);
  if (!p)
    cl_fail("out of memory for %s (%zu x %zu bytes)", what, n, size);
  return p;
}

double cl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cl_fmt_time(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e7)
    snprintf(buf, n, "--");
  else if (s >= 60)
    snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else
    snprintf(buf, n, "%.0fs", s);
}
