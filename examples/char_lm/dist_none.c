/* dist_none.c — the process group of a char-lm built without MPI
 * (-Dmpi=disabled, or no MPI found): one process, rank 0 of 1.  Started
 * by mpirun anyway, it refuses, rather than train N separate copies. */
#include <stdlib.h>

#include "char_lm.h"

bool cl_dist_init(cl_run *t) {
  t->rank = 0;
  t->size = 1;
  const char *n = getenv("OMPI_COMM_WORLD_SIZE");
  if (!n)
    n = getenv("PMI_SIZE");
  if (n && atoi(n) > 1)
    return cl_fail("started as one of %s processes (mpirun?), but this char-lm was built without "
                   "MPI: each would train alone (install libopenmpi-dev and rebuild, see "
                   "README.md)",
                   n),
           false;
  return true;
}

int cl_dist_finish(cl_run *t, int rc) {
  (void)t;
  return rc;
}

bool cl_dist_all_ok(cl_run *t, bool ok) {
  (void)t;
  return ok;
}

bool cl_dist_start(cl_run *t) {
  (void)t;
  return true;
}

bool cl_dist_reduce(cl_run *t, double *loss) {
  (void)t;
  (void)loss;
  return true;
}

bool cl_dist_sum(cl_run *t, double *v, int n) {
  (void)t;
  (void)v;
  (void)n;
  return true;
}

bool cl_dist_before_save(cl_run *t) {
  (void)t;
  return true;
}

void cl_dist_describe(const cl_run *t, char *buf, size_t n) {
  (void)t;
  if (n)
    *buf = '\0';
}

void cl_dist_stats_line(const cl_run *t, char *buf, size_t n) { cl_dist_describe(t, buf, n); }
