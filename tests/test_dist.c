/* test_dist.c — libchainrule_mpi (chainrule/dist.h) on every rank of
 * mpirun -np N (tests/test_dist.sh runs it on 1, 2 and 3 ranks): every
 * rank runs the same tests, with values that depend on its rank, and
 * checks what it gets against sums it computes itself for every rank.
 *
 *   test-dist              the cmocka tests
 *   test-dist --watchdog   rank 1 sleeps instead of joining a sum: rank 0's
 *                          watchdog must end it (status 124, a message)
 *
 * Tests that need two ranks are skipped on one.  Each test makes its own
 * group on MPI_COMM_WORLD (a group that saw an error stays stopped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule.h"
#include "chainrule/dist.h"

static int RANK, SIZE;

static cr_dist *group(cr_ctx *ctx, bool deterministic, size_t bucket) {
  cr_dist_opts o = {.deterministic = deterministic, .bucket_bytes = bucket, .timeout_s = 60};
  cr_dist *d = cr_dist_init_comm(ctx, MPI_COMM_WORLD, &o);
  if (!d)
    fail_msg("rank %d: %s", RANK, cr_ctx_error(ctx));
  return d;
}

/* A parameter whose gradient is exactly values: L = sum(p * c), dL/dp = c. */
static cr_tensor *param(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape,
                        const char *name) {
  cr_tensor *p = cr_tensor_new(ctx, dt, ndim, shape);
  assert_non_null(p);
  cr_set_requires_grad(p, true);
  cr_set_name(p, name);
  return p;
}

/* The gradient rank r holds for element i of parameter k (rounding matters). */
static double grad_value(int r, int k, int64_t i) {
  return (r + 1) * 0.37 + (double)i * 0.013 + k * 1.1;
}

static void set_grads(cr_ctx *ctx, cr_tensor *const *ps, int n, int r) {
  cr_tensor *total = NULL;
  for (int k = 0; k < n; k++) {
    cr_tensor *p = ps[k];
    if (!cr_requires_grad(p))
      continue;
    cr_zero_grad(p);
    int64_t m = cr_numel(p);
    double *v = malloc((size_t)m * sizeof *v);
    for (int64_t i = 0; i < m; i++)
      v[i] = grad_value(r, k, i);
    cr_tensor *c = cr_cast(ctx, cr_from_f64(ctx, cr_ndim(p), cr_shape(p), v), cr_dtype_of(p));
    free(v);
    cr_tensor *term = cr_cast(ctx, cr_sum(ctx, cr_mul(ctx, p, c)), CR_F64);
    total = total ? cr_add(ctx, total, term) : term;
  }
  assert_non_null(total);
  assert_int_equal(cr_backward(ctx, total), CR_OK);
  cr_ctx_reset(ctx);
}

/* sum_r w_r g_r(k, i) added in rank order in dtype dt, as the fixed order
 * does (each rank's gradient times its weight first). */
static double expected(cr_dtype dt, int k, int64_t i, const double *w) {
  if (dt == CR_F32) {
    float g0 = (float)grad_value(0, k, i), acc = g0 * (float)w[0];
    for (int r = 1; r < SIZE; r++)
      acc += (float)grad_value(r, k, i) * (float)w[r];
    return acc;
  }
  double acc = grad_value(0, k, i) * w[0];
  for (int r = 1; r < SIZE; r++)
    acc += grad_value(r, k, i) * w[r];
  return acc;
}

typedef struct model {
  cr_tensor *p[4];
  int n;
} model;

static model make_model(cr_ctx *ctx) {
  model m;
  m.p[0] = param(ctx, CR_F32, CR_SHAPE(3, 4), "w");
  m.p[1] = param(ctx, CR_F64, CR_SHAPE(5), "b64");
  m.p[2] = param(ctx, CR_F32, CR_SHAPE(7), "b");
  m.p[3] = param(ctx, CR_F32, CR_SHAPE(2), "frozen");
  cr_set_requires_grad(m.p[3], false);
  m.n = 4;
  return m;
}
static void free_model(model *m) {
  for (int k = 0; k < m->n; k++)
    cr_tensor_free(m->p[k]);
}

/* Every gradient is exactly (exact) or within 1e-6 of the rank-order sum. */
static void check_reduced(model *m, const double *w, bool exact) {
  for (int k = 0; k < 3; k++) {
    cr_tensor *g = cr_grad(m->p[k]);
    for (int64_t i = 0; i < cr_numel(g); i++) {
      double want = expected(cr_dtype_of(g), k, i, w), got = cr_get_flat(g, i);
      if (exact ? got != want : fabs(got - want) > 1e-6 * fabs(want))
        fail_msg("rank %d: param %d element %lld: %.17g, expected %.17g", RANK, k, (long long)i,
                 got, want);
    }
  }
  assert_null(cr_grad(m->p[3])); /* frozen: skipped, never given a gradient */
}

static void run_average(bool deterministic, size_t bucket) {
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, deterministic, bucket);
  model m = make_model(ctx);
  double w[64];
  for (int r = 0; r < SIZE; r++)
    w[r] = 1.0 / SIZE;
  set_grads(ctx, m.p, m.n, RANK);
  assert_int_equal(cr_dist_allreduce_grads(ctx, d, m.p, m.n), CR_OK);
  /* two ranks: a + b == b + a, so MPI_Allreduce is exact too */
  check_reduced(&m, w, deterministic || SIZE <= 2);
  cr_dist_stats s;
  cr_dist_get_stats(d, &s);
  assert_int_equal(s.allreduce_calls, 1);
  assert_int_equal(s.bytes, 12 * 4 + 5 * 8 + 7 * 4);
  free_model(&m);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

static void test_average(void **state) {
  (void)state;
  run_average(false, 0);
}
static void test_average_deterministic(void **state) {
  (void)state;
  run_average(true, 0);
}
/* 16-byte buckets: tensors cut into pieces across buckets, every bucket
 * cut into chunks; the fixed order gives the same bits regardless */
static void test_small_buckets(void **state) {
  (void)state;
  run_average(true, 16);
  run_average(false, 16);
  run_average(true, 40);
}

static void test_weighted(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, true, 24);
  model m = make_model(ctx);
  double w[64], total = SIZE * (SIZE + 1) / 2.0;
  for (int r = 0; r < SIZE; r++)
    w[r] = (r + 1) / total; /* slices of 1, 2, 3, ... rows */
  set_grads(ctx, m.p, m.n, RANK);
  assert_int_equal(cr_dist_allreduce_grads_weighted(ctx, d, m.p, m.n, w[RANK]), CR_OK);
  check_reduced(&m, w, true);
  free_model(&m);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

static void test_broadcast_and_in_sync(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, false, 32);
  model m = make_model(ctx);
  for (int k = 0; k < m.n; k++)
    for (int64_t i = 0; i < cr_numel(m.p[k]); i++)
      cr_set_flat(m.p[k], i, 100 * RANK + k + 0.25 * (double)i);
  if (SIZE > 1) { /* different values: the check names rank 1 and parameter 0 */
    assert_int_equal(cr_dist_check_in_sync(ctx, d, m.p, NULL, m.n), CR_ERR_STATE);
    char want[200];
    snprintf(want, sizeof want,
             "dist_check_in_sync: the values of rank 1 of %d differ from rank "
             "0's, first in parameter 0 'w'%s",
             SIZE, SIZE > 2 ? " (2 of the 3 ranks differ)" : "");
    if (!strstr(cr_ctx_error(ctx), want))
      fail_msg("rank %d: '%s'", RANK, cr_ctx_error(ctx));
    cr_ctx_clear_error(ctx);
  }
  assert_int_equal(cr_dist_broadcast_params(ctx, d, m.p, m.n), CR_OK);
  for (int k = 0; k < m.n; k++)
    for (int64_t i = 0; i < cr_numel(m.p[k]); i++)
      assert_true(cr_get_flat(m.p[k], i) == k + 0.25 * (double)i);
  assert_int_equal(cr_dist_check_in_sync(ctx, d, m.p, NULL, m.n), CR_OK);
  if (SIZE > 1) { /* one element of one rank moves */
    if (RANK == SIZE - 1)
      cr_set_flat(m.p[2], 3, 42);
    assert_int_equal(cr_dist_check_in_sync(ctx, d, m.p, NULL, m.n), CR_ERR_STATE);
    char want[200];
    snprintf(want, sizeof want, "rank %d of %d differ from rank 0's, first in parameter 2 'b'",
             SIZE - 1, SIZE);
    assert_non_null(strstr(cr_ctx_error(ctx), want));
  }
  free_model(&m);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

static void test_check_params_same(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, false, 0);
  model m = make_model(ctx);
  const char *names[4] = {"embed.weight", NULL, "head.bias", "x"};
  assert_int_equal(cr_dist_check_params(ctx, d, m.p, names, m.n), CR_OK);
  assert_int_equal(cr_dist_check_params(ctx, d, m.p, NULL, 0), CR_OK);
  free_model(&m);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

/* Rank 1's parameter 0 has another shape: every rank gets the message. */
static void test_check_params_shape(void **state) {
  (void)state;
  if (SIZE < 2)
    skip();
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, false, 0);
  cr_tensor *p[2] = {param(ctx, CR_F32, CR_SHAPE(3, RANK == 1 ? 5 : 4), "rnn.weight_ih_l0"),
                     param(ctx, CR_F64, CR_SHAPE(2), "bias")};
  assert_int_equal(cr_dist_check_params(ctx, d, p, NULL, 2), CR_ERR_SHAPE);
  char want[300];
  snprintf(want, sizeof want,
           "dist_check_params: rank 1 of %d differs from rank 0: parameter 0 "
           "is 'rnn.weight_ih_l0' f32 [3,4] on rank 0 but 'rnn.weight_ih_l0' f32 [3,5] on rank 1",
           SIZE);
  assert_string_equal(cr_ctx_error(ctx), want);
  /* the group is stopped on every rank: no later call waits */
  cr_ctx_clear_error(ctx);
  double v = 1;
  assert_int_equal(cr_dist_sum(ctx, d, &v, 1), CR_ERR_STATE);
  assert_non_null(strstr(cr_ctx_error(ctx), "dist_sum: the process group stopped at an earlier "
                                            "error: dist_check_params: rank 1 of"));
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_dist_agree(ctx, d, NULL), CR_ERR_STATE);
  cr_tensor_free(p[0]);
  cr_tensor_free(p[1]);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

/* The last rank has one parameter more, and a gradient where the others
 * have none: both named. */
static void test_check_params_count_and_grads(void **state) {
  (void)state;
  if (SIZE < 2)
    skip();
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, false, 0);
  bool last = RANK == SIZE - 1;
  cr_tensor *p[3] = {param(ctx, CR_F32, CR_SHAPE(2), "a"), param(ctx, CR_F32, CR_SHAPE(2), "b"),
                     param(ctx, CR_F64, CR_SHAPE(6), "extra")};
  assert_int_equal(cr_dist_check_params(ctx, d, p, NULL, last ? 3 : 2), CR_ERR_SHAPE);
  char want[300];
  snprintf(want, sizeof want,
           "dist_check_params: rank %d of %d differs from rank 0: parameter 2 "
           "is absent on rank 0 but 'extra' f64 [6] on rank %d",
           SIZE - 1, SIZE, SIZE - 1);
  assert_string_equal(cr_ctx_error(ctx), want);
  cr_dist_free(d);
  cr_ctx_clear_error(ctx);

  d = group(ctx, false, 0);
  if (!last)
    cr_set_requires_grad(p[1], false); /* frozen here, trained on the last rank */
  set_grads(ctx, p, 2, RANK);
  assert_int_equal(cr_dist_allreduce_grads(ctx, d, p, 2), CR_ERR_SHAPE);
  snprintf(want, sizeof want,
           "dist_allreduce_grads: rank %d of %d differs from rank 0: parameter "
           "1 is 'b' f32 [2] without a gradient on rank 0 but 'b' f32 [2] with a gradient on "
           "rank %d",
           SIZE - 1, SIZE, SIZE - 1);
  assert_string_equal(cr_ctx_error(ctx), want);
  for (int k = 0; k < 3; k++)
    cr_tensor_free(p[k]);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

/* Rank 0 sums while the others reduce gradients: nobody waits, both say so. */
static void test_different_calls(void **state) {
  (void)state;
  if (SIZE < 2)
    skip();
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, false, 0);
  model m = make_model(ctx);
  set_grads(ctx, m.p, m.n, RANK);
  double v[2] = {1, 2};
  cr_status st = RANK == 0 ? cr_dist_sum(ctx, d, v, 2) : cr_dist_allreduce_grads(ctx, d, m.p, m.n);
  assert_int_equal(st, CR_ERR_STATE);
  char want[300];
  snprintf(want, sizeof want,
           "%s: rank 1 of %d differs from rank 0: the call is dist_sum of 2 "
           "values on rank 0 but dist_allreduce_grads on rank 1",
           RANK == 0 ? "dist_sum" : "dist_allreduce_grads", SIZE);
  assert_true(strncmp(cr_ctx_error(ctx), want, strlen(want)) == 0);
  free_model(&m);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

/* An error pending on rank 1 reaches every rank with its text. */
static void test_failure_propagates(void **state) {
  (void)state;
  if (SIZE < 2)
    skip();
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, false, 0);
  model m = make_model(ctx);
  set_grads(ctx, m.p, m.n, RANK);
  if (RANK == 1)
    cr_ctx_set_error(ctx, CR_ERR_NUMERIC, "step 5: the loss is NaN");
  assert_int_equal(cr_dist_allreduce_grads(ctx, d, m.p, m.n), CR_ERR_NUMERIC);
  char want[200];
  snprintf(want, sizeof want, "dist_allreduce_grads: rank 1 of %d failed: step 5: the loss is NaN",
           SIZE);
  assert_string_equal(cr_ctx_error(ctx), RANK == 1 ? "step 5: the loss is NaN" : want);
  cr_dist_free(d);
  cr_ctx_clear_error(ctx);

  /* a bad argument on one rank is that rank's failure */
  d = group(ctx, false, 0);
  assert_int_equal(cr_dist_allreduce_grads_weighted(ctx, d, m.p, m.n, RANK == 1 ? NAN : 0.5),
                   CR_ERR_ARG);
  snprintf(want, sizeof want, "dist_allreduce_grads: rank 1 of %d: weight nan must be finite",
           SIZE);
  assert_non_null(strstr(cr_ctx_error(ctx), want));
  cr_dist_free(d);
  cr_ctx_clear_error(ctx);

  /* a rank that gives up releases the others from the call they wait in */
  d = group(ctx, false, 0);
  double v = 1;
  cr_status st =
      RANK == 1 ? cr_dist_agree(ctx, d, "gave up: no more data") : cr_dist_sum(ctx, d, &v, 1);
  assert_int_equal(st, CR_ERR_STATE);
  snprintf(want, sizeof want, "%s: rank 1 of %d failed: gave up: no more data",
           RANK == 1 ? "dist_agree" : "dist_sum", SIZE);
  assert_string_equal(cr_ctx_error(ctx), want);
  free_model(&m);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

static void test_init_options_differ(void **state) {
  (void)state;
  if (SIZE < 2)
    skip();
  cr_ctx *ctx = cr_ctx_new();
  cr_dist_opts o = {.deterministic = RANK == 1, .timeout_s = 60};
  assert_null(cr_dist_init_comm(ctx, MPI_COMM_WORLD, &o));
  char want[300];
  snprintf(want, sizeof want,
           "dist_init: rank 1 of %d differs from rank 0: the call is dist_init "
           "with deterministic 0 and bucket_bytes 4194304 on rank 0 but dist_init with "
           "deterministic 1 and bucket_bytes 4194304 on rank 1",
           SIZE);
  assert_string_equal(cr_ctx_error(ctx), want);
  cr_ctx_clear_error(ctx);
  o = (cr_dist_opts){.bucket_bytes = 3};
  assert_null(cr_dist_init_comm(ctx, MPI_COMM_WORLD, &o));
  assert_string_equal(cr_ctx_error(ctx), "dist_init: bucket_bytes 3 is less than one element (8 "
                                         "bytes)");
  cr_ctx_free(ctx);
}

static void test_sum_and_allgather(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  cr_dist *d = group(ctx, false, 0);
  double v[3] = {RANK, 1, 0.1};
  assert_int_equal(cr_dist_sum(ctx, d, v, 3), CR_OK);
  double tenth = 0.1;
  for (int r = 1; r < SIZE; r++)
    tenth += 0.1; /* the same rank order */
  assert_true(v[0] == SIZE * (SIZE - 1) / 2.0 && v[1] == SIZE && v[2] == tenth);
  assert_int_equal(cr_dist_sum(ctx, d, NULL, 0), CR_OK);

  unsigned char mine[8], all[64];
  memset(mine, 'a' + RANK, sizeof mine);
  size_t total = 0;
  assert_int_equal(cr_dist_allgather(ctx, d, mine, (size_t)RANK + 1, all, sizeof all, &total),
                   CR_OK);
  assert_int_equal(total, (size_t)(SIZE * (SIZE + 1) / 2));
  for (int r = 0, at = 0; r < SIZE; at += ++r)
    for (int k = 0; k <= r; k++)
      assert_int_equal(all[at + k], 'a' + r);
  /* too small a buffer: the same refusal on every rank, the group goes on */
  assert_int_equal(cr_dist_allgather(ctx, d, mine, 8, all, 8 * (size_t)SIZE - 1, &total),
                   CR_ERR_ARG);
  assert_non_null(strstr(cr_ctx_error(ctx), "bytes do not fit in"));
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_dist_agree(ctx, d, NULL), CR_OK);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

static void test_bad_arguments(void **state) {
  (void)state;
  cr_ctx *ctx = cr_ctx_new();
  assert_int_equal(cr_dist_sum(ctx, NULL, NULL, 0), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "dist_sum: the group is NULL");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_dist_size(NULL), 0);
  cr_dist_free(NULL);
  cr_dist *d = group(ctx, false, 0);
  model m = make_model(ctx);
  cr_tensor *twice[2] = {m.p[0], m.p[0]};
  assert_int_equal(cr_dist_broadcast_params(ctx, d, twice, 2), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "dist_broadcast_params: param 1 'w' is also param 0: "
                                         "each parameter may be listed once");
  free_model(&m);
  cr_dist_free(d);
  cr_ctx_free(ctx);
}

/* rank 1 never joins: rank 0's watchdog (0.5 s) must end the job */
static int watchdog_mode(void) {
  cr_ctx *ctx = cr_ctx_new();
  cr_dist_opts o = {.timeout_s = 0.5};
  cr_dist *d = cr_dist_init_comm(ctx, MPI_COMM_WORLD, &o);
  if (!d)
    return fprintf(stderr, "%s\n", cr_ctx_error(ctx)), 1;
  if (RANK == 1)
    sleep(30);
  double v = 1;
  cr_status st = cr_dist_sum(ctx, d, &v, 1);
  printf("rank %d: the sum returned %d\n", RANK, st);
  return 2; /* not reached on rank 0 */
}

int main(int argc, char **argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &RANK);
  MPI_Comm_size(MPI_COMM_WORLD, &SIZE);
  if (argc > 1 && !strcmp(argv[1], "--watchdog"))
    return watchdog_mode();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_average),
      cmocka_unit_test(test_average_deterministic),
      cmocka_unit_test(test_small_buckets),
      cmocka_unit_test(test_weighted),
      cmocka_unit_test(test_broadcast_and_in_sync),
      cmocka_unit_test(test_check_params_same),
      cmocka_unit_test(test_check_params_shape),
      cmocka_unit_test(test_check_params_count_and_grads),
      cmocka_unit_test(test_different_calls),
      cmocka_unit_test(test_failure_propagates),
      cmocka_unit_test(test_init_options_differ),
      cmocka_unit_test(test_sum_and_allgather),
      cmocka_unit_test(test_bad_arguments),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return failed ? 1 : 0;
}
