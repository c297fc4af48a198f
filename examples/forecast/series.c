/* series.c — the yearly series, its split and the baselines.
 *
 * Baselines, from origin t (the last value seen) for horizon h = 1..H:
 *   naive           x^_{t+h} = x_t
 *   seasonal naive  x^_{t+h} = x_{t+h-11k}, k the least with h - 11k <= 0
 *                   (the value one solar cycle, ~11 years, earlier)
 * Errors over origins and horizons: MSE = mean (x - x^)^2, MAE = mean |x - x^|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forecast.h"

static bool fail(const char *path, int line, const char *why) {
  fprintf(stderr, "forecast: %s:%d: %s\n", path, line, why);
  return false;
}

bool fc_series_load(const char *path, int64_t n_test, fc_series *s) {
  memset(s, 0, sizeof *s);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "forecast: cannot open %s (--data FILE)\n", path);
    return false;
  }
  char line[256];
  int64_t cap = 0;
  int lineno = 0;
  bool ok = true;
  while (ok && fgets(line, sizeof line, f)) {
    lineno++;
    if (lineno == 1 || line[0] == '\n' || line[0] == '\r')
      continue; /* the header, empty lines */
    char *end;
    long year = strtol(line, &end, 10);
    double v = *end == ',' ? strtod(end + 1, &end) : NAN;
    while (*end == '\r' || *end == '\n' || *end == ' ')
      end++;
    if (*end || !isfinite(v)) {
      ok = fail(path, lineno, "expected YEAR,VALUE");
      break;
    }
    if (s->n && year != s->year[s->n - 1] + 1) {
      ok = fail(path, lineno, "years must be consecutive");
      break;
    }
    if (s->n == cap) {
      cap = cap ? 2 * cap : 512;
      double *x = realloc(s->x, (size_t)cap * sizeof *x);
      if (x)
        s->x = x;
      int *y = x ? realloc(s->year, (size_t)cap * sizeof *y) : NULL;
      if (y)
        s->year = y;
      if (!x || !y) {
        ok = fail(path, lineno, "out of memory");
        break;
      }
    }
    s->x[s->n] = v;
    s->year[s->n++] = (int)year;
  }
  fclose(f);
  if (ok && s->n < n_test + 3 * FC_PERIOD) {
    fprintf(stderr, "forecast: %s: %lld values; need more than --test %lld + %d\n", path,
            (long long)s->n, (long long)n_test, 3 * FC_PERIOD);
    ok = false;
  }
  if (!ok) {
    fc_series_free(s);
    return false;
  }
  s->n_train = s->n - n_test;
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < s->n_train; i++)
    sum += s->x[i];
  s->mean = sum / (double)s->n_train;
  for (int64_t i = 0; i < s->n_train; i++)
    sq += (s->x[i] - s->mean) * (s->x[i] - s->mean);
  s->std = sqrt(sq / (double)s->n_train);
  return true;
}

double fc_norm(const fc_series *s, double x) { return (x - s->mean) / s->std; }
double fc_denorm(const fc_series *s, double z) { return s->mean + s->std * z; }

void fc_series_free(fc_series *s) {
  free(s->x);
  free(s->year);
  memset(s, 0, sizeof *s);
}

void fc_naive(const fc_series *s, int64_t t, int64_t H, double *out) {
  for (int64_t h = 1; h <= H; h++)
    out[h - 1] = s->x[t];
}

void fc_seasonal(const fc_series *s, int64_t t, int64_t H, double *out) {
  for (int64_t h = 1; h <= H; h++) {
    int64_t back = h;
    while (back > 0)
      back -= FC_PERIOD;
    out[h - 1] = s->x[t + back]; /* t + h - 11k, k the least with that <= t */
  }
}

fc_err fc_errors(const fc_series *s, int64_t t0, int64_t n_orig, int64_t H, int64_t use,
                 const double *f) {
  double se = 0, ae = 0;
  int64_t n = 0;
  for (int64_t o = 0; o < n_orig; o++)
    for (int64_t h = 0; h < use; h++) {
      const double e = s->x[t0 + o + 1 + h] - f[o * H + h];
      se += e * e;
      ae += fabs(e);
      n++;
    }
  return (fc_err){se / (double)n, ae / (double)n};
}
