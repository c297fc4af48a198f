/* layer_common.c — see layer_common.h. */
#include "layer_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgu.h"

static const lc_size default_sizes[] = {
    {32, 32, 1, 32},    /* tiny */
    {64, 128, 32, 64},  /* H 128 */
    {64, 512, 32, 64},  /* H 512 */
    {512, 512, 32, 64}, /* H 512, wide input */
    {128, 128, 64, 64}, /* H 128, batch 64 */
    {64, 1024, 32, 64}, /* H 1024 (for the H = 1024 vs 512 row) */
};

const lc_size *lc_default_sizes(int *n) {
  *n = (int)(sizeof default_sizes / sizeof default_sizes[0]);
  return default_sizes;
}

bool lc_parse_size(const char *s, lc_size *out) {
  if (!strcmp(s, "tiny")) {
    *out = default_sizes[0];
    return true;
  }
  long long v[4];
  char tail;
  if (sscanf(s, "%lldx%lldx%lldx%lld%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4)
    return false;
  for (int i = 0; i < 4; i++)
    if (v[i] < 1 || v[i] > (1 << 20))
      return false;
  *out = (lc_size){v[0], v[1], v[2], v[3]};
  return true;
}

const char *lc_size_str(const lc_size *s, char *buf, size_t n) {
  snprintf(buf, n, "%lldx%lldx%lldx%lld", (long long)s->I, (long long)s->H, (long long)s->B,
           (long long)s->T);
  return buf;
}

int lc_gates(const char *cell) {
  static const struct {
    const char *name;
    int gates;
  } table[] = {{"lstm", 4}, {"gru", 3}, {"mgu", 2}, {"rnn_tanh", 1}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!strcmp(cell, table[i].name))
      return table[i].gates;
  return 0;
}

const cr_cell_def *lc_cell(const char *cell) {
  return !strcmp(cell, "mgu") ? &mgu_cell : cr_cell_by_name(cell);
}

double lc_flops(const char *cell, const lc_size *s) {
  double F =
      2.0 * (double)s->T * (double)s->B * lc_gates(cell) * (double)s->H * (double)(s->I + s->H);
  return 3 * F;
}

/* A persistent tensor of the given shape, uniform on [-1, 1) from seed. */
static cr_tensor *uniform_tensor(cr_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed) {
  cr_rng *rng = cr_rng_new(seed);
  cr_tensor *t = rng ? cr_tensor_new(ctx, CR_F32, ndim, shape) : NULL;
  if (t && cr_fill_uniform(ctx, t, rng, -1, 1) != CR_OK) {
    cr_tensor_free(t);
    t = NULL;
  }
  cr_rng_free(rng);
  return t;
}

lc_case *lc_new(cr_ctx *ctx, const char *cell, const lc_size *s) {
  const cr_cell_def *def = lc_cell(cell);
  if (!def || strlen(cell) >= sizeof((lc_case *)0)->cell) {
    cr_ctx_set_error(ctx, CR_ERR_ARG, "bench: unknown cell '%s'", cell);
    return NULL;
  }
  lc_case *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  strcpy(c->cell, cell);
  c->size = *s;
  cr_rng *rng = cr_rng_new(1234);
  cr_rnn_config cfg = {def, s->I, s->H, 1, 0.0, false, CR_F32};
  c->rnn = rng ? cr_rnn_new(ctx, &cfg, rng) : NULL;
  cr_rng_free(rng);
  c->x = uniform_tensor(ctx, CR_SHAPE(s->T, s->B, s->I), 99);
  c->gy = uniform_tensor(ctx, CR_SHAPE(s->T, s->B, s->H), 7);
  if (!c->rnn || !c->x || !c->gy) {
    lc_free(c);
    return NULL;
  }
  cr_set_requires_grad(c->x, true); /* gx is computed, as every peer does */
  return c;
}

void lc_free(lc_case *c) {
  if (!c)
    return;
  cr_rnn_free(c->rnn);
  cr_tensor_free(c->x);
  cr_tensor_free(c->gy);
  free(c);
}

cr_status lc_step(cr_ctx *ctx, lc_case *c) {
  for (int i = 0; i < cr_rnn_num_params(c->rnn); i++)
    cr_zero_grad(cr_rnn_param(c->rnn, i));
  cr_zero_grad(c->x);
  cr_tensor *final[CR_CELL_MAX_STATES] = {0};
  cr_status st = cr_rnn_forward(ctx, c->rnn, c->x, NULL, NULL, NULL, &c->y, final);
  if (st != CR_OK)
    return st;
  c->h_T = final[0];
  c->c_T = cr_rnn_get_config(c->rnn)->cell->n_states > 1 ? final[1] : NULL;
  return cr_backward_seed(ctx, c->y, c->gy);
}

/* A malloc'd float copy of t's values, or NULL. */
static float *copy_out(const cr_tensor *t) {
  if (!t)
    return NULL;
  int64_t n = cr_numel(t);
  double *d = malloc(sizeof(double) * (size_t)n);
  float *f = malloc(sizeof(float) * (size_t)n);
  if (d && f) {
    cr_to_doubles(t, d);
    for (int64_t i = 0; i < n; i++)
      f[i] = (float)d[i];
  } else {
    free(f);
    f = NULL;
  }
  free(d);
  return f;
}

int lc_reference(const char *cell, const lc_size *s, bool compute, lc_ref *ref, char *err,
                 size_t n) {
  memset(ref, 0, sizeof *ref);
  if (strcmp(cell, "lstm") && strcmp(cell, "gru") && strcmp(cell, "rnn_tanh")) {
    snprintf(err, n, "lc_reference: %s: only lstm, gru and rnn_tanh", cell);
    return -1;
  }
  cr_ctx *ctx = cr_ctx_new();
  lc_case *c = ctx ? lc_new(ctx, cell, s) : NULL;
  int rc = -1;
  if (!c) {
    snprintf(err, n, "lc_reference: %s", ctx ? cr_ctx_error(ctx) : "out of memory");
    goto done;
  }
  ref->G = lc_gates(cell);
  static const char *const names[4] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
  float **w[4] = {&ref->w_ih, &ref->w_hh, &ref->b_ih, &ref->b_hh};
  float **gw[4] = {&ref->gw_ih, &ref->gw_hh, &ref->gb_ih, &ref->gb_hh};
  ref->x = copy_out(c->x);
  ref->gy = copy_out(c->gy);
  for (int i = 0; i < 4; i++)
    *w[i] = copy_out(cr_rnn_find_param(c->rnn, names[i]));
  if (compute) {
    if (lc_step(ctx, c) != CR_OK) {
      snprintf(err, n, "lc_reference: %s", cr_ctx_error(ctx));
      goto done;
    }
    ref->y = copy_out(c->y);
    ref->h_T = copy_out(c->h_T);
    ref->c_T = copy_out(c->c_T);
    ref->gx = copy_out(cr_grad(c->x));
    for (int i = 0; i < 4; i++)
      *gw[i] = copy_out(cr_grad(cr_rnn_find_param(c->rnn, names[i])));
  }
  bool ok = ref->x && ref->gy && ref->w_ih && ref->w_hh && ref->b_ih && ref->b_hh;
  if (compute)
    ok = ok && ref->y && ref->h_T && ref->gx && ref->gw_ih && ref->gw_hh && ref->gb_ih &&
         ref->gb_hh && (ref->c_T || strcmp(cell, "lstm"));
  if (!ok)
    snprintf(err, n, "lc_reference: %s: a result is missing (out of memory?)", cell);
  rc = ok ? 0 : -1;
done:
  lc_free(c);
  cr_ctx_free(ctx);
  if (rc)
    lc_ref_free(ref);
  return rc;
}

void lc_ref_free(lc_ref *ref) {
  float *all[] = {ref->x,   ref->gy,  ref->w_ih, ref->w_hh,  ref->b_ih,  ref->b_hh,  ref->y,
                  ref->h_T, ref->c_T, ref->gx,   ref->gw_ih, ref->gw_hh, ref->gb_ih, ref->gb_hh};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    free(all[i]);
  memset(ref, 0, sizeof *ref);
}

double lc_now_s(void) {
  /* CR_BENCH_CLOCK=cpu: the process's CPU time, a development aid for
   * 1-thread runs on a loaded machine (time spent waiting for the core is
   * not counted); never for a published table */
  static int clock_id = -1;
  if (clock_id < 0) {
    const char *c = getenv("CR_BENCH_CLOCK");
    clock_id = c && !strcmp(c, "cpu") ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC;
  }
  struct timespec ts;
  clock_gettime((clockid_t)clock_id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double lc_median(double *v, int n) {
  if (n < 1)
    return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
