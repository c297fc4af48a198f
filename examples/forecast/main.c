/* main.c — forecast: an LSTM forecasts the yearly sunspot numbers
 * (1700-2008, examples/data/sunspots_yearly.csv) and is scored on the
 * held-out last --test years against the naive and the seasonal-naive
 * forecasts, one step and --horizon steps ahead, in the series' own units.
 *
 *   usage: forecast [--steps N] [--hidden N] [--window N] [--horizon N] [--test N]
 *                   [--lr X] [--seed N] [--threads N] [--data FILE] [--csv FILE]
 *                   [--plot FILE.png|FILE.svg]
 *
 * Origins: every held-out year t + 1 is forecast from origin t with the
 * values up to x_t only (one step); the multi-step score averages horizons
 * 1..K over every origin whose K next years are all held out. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forecast.h"

#define USAGE                                                                                      \
  "usage: forecast [--steps N] [--hidden N] [--window N] [--horizon N] [--test N] [--lr X]\n"      \
  "                [--ensemble N] [--augment A] [--seed N] [--threads N] [--data FILE]\n"          \
  "                [--csv FILE] [--plot FILE.png|.svg]\n"

static bool parse_long(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi)
    return false;
  *out = x;
  return true;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* 0 ok, 1 error (printed), 2 --help */
static int parse_args(int argc, char **argv, fc_opts *o) {
  *o = (fc_opts){.data = FORECAST_DEFAULT_DATA,
                 .steps = 300,
                 .hidden = 32,
                 .window = 32,
                 .horizon = FC_PERIOD,
                 .test = 40,
                 .seed = 1,
                 .threads = 1,
                 .ensemble = 5,
                 .lr = 3e-3,
                 .augment = 0.7};
  struct {
    const char *flag;
    long *dst, lo, hi;
  } longs[] = {{"--steps", &o->steps, 1, 100000000}, {"--hidden", &o->hidden, 1, 4096},
               {"--window", &o->window, 2, 10000},   {"--horizon", &o->horizon, 1, 100},
               {"--test", &o->test, 1, 100000},      {"--seed", &o->seed, 0, 0x7fffffffL},
               {"--threads", &o->threads, 1, 256},   {"--ensemble", &o->ensemble, 1, 1000}};
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char want[64] = "";
    bool known = false;
    if (!strcmp(a, "--help") || !strcmp(a, "-h"))
      return fputs(USAGE, stdout), 2;
    for (size_t k = 0; k < sizeof longs / sizeof longs[0]; k++)
      if (!strcmp(a, longs[k].flag)) {
        known = true;
        if (!parse_long(v, longs[k].lo, longs[k].hi, longs[k].dst))
          snprintf(want, sizeof want, "an integer in [%ld, %ld]", longs[k].lo, longs[k].hi);
      }
    if (!strcmp(a, "--lr") || !strcmp(a, "--augment")) {
      const bool lr = a[2] == 'l';
      char *end = NULL;
      known = true;
      errno = 0;
      double x = v ? strtod(v, &end) : -1;
      if (!v || !*v || *end || errno || !(lr ? x > 0 && x <= 10 : x >= 0 && x <= 3))
        snprintf(want, sizeof want, lr ? "a number in (0, 10]" : "a number in [0, 3]");
      *(lr ? &o->lr : &o->augment) = x;
    } else if (!strcmp(a, "--data") || !strcmp(a, "--csv") || !strcmp(a, "--plot")) {
      known = true;
      *(a[2] == 'd' ? &o->data : a[2] == 'c' ? &o->csv : &o->plot) = v;
      if (!v || !*v)
        snprintf(want, sizeof want, "a file name");
      else if (a[2] == 'p' && !ends_with(v, ".png") && !ends_with(v, ".svg"))
        snprintf(want, sizeof want, "a file name ending in .png or .svg");
    }
    if (!known) {
      fprintf(stderr, "forecast: unknown option '%s'\n" USAGE, a);
      return 1;
    }
    if (*want) {
      fprintf(stderr, "forecast: %s %s: expected %s\n", a, v ? v : "(missing)", want);
      return 1;
    }
  }
  if (o->horizon > o->test) {
    fprintf(stderr, "forecast: --horizon %ld is longer than the --test %ld held-out years\n",
            o->horizon, o->test);
    return 1;
  }
  return 0;
}

static void report(const char *what, fc_err lstm, fc_err naive, fc_err seas) {
  printf("  %-22s %10.1f %7.2f   %10.1f %7.2f   %10.1f %7.2f   %s\n", what, lstm.mse, lstm.mae,
         naive.mse, naive.mae, seas.mse, seas.mae,
         lstm.mse < naive.mse && lstm.mse < seas.mse ? "LSTM best" : "LSTM NOT best");
}

int main(int argc, char **argv) {
  fc_opts o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc == 2 ? 0 : 1;
  fc_series s;
  if (!fc_series_load(o.data, o.test, &s))
    return 1;
  cr_set_num_threads((int)o.threads);
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new((uint64_t)o.seed);
  const int64_t K = o.horizon, t0 = s.n_train - 1, n_orig = o.test; /* origins t0 .. n - 2 */
  double *f = malloc((size_t)(4 * n_orig * K) * sizeof *f);
  fc_model m = {0};
  rc = 1;
  if (!ctx || !rng || !f) {
    fprintf(stderr, "forecast: out of memory\n");
    goto done;
  }
  double *f_lstm = f, *f_naive = f + n_orig * K, *f_seas = f + 2 * n_orig * K;
  double *f_one = f + 3 * n_orig * K; /* one member's forecasts */
  char info[256];
  printf("chainrule forecast: %s\n", cr_runtime_describe(info, sizeof info));
  printf("data %s: %lld years %d-%d; train %d-%d (mean %.1f, std %.1f), held out %d-%d\n", o.data,
         (long long)s.n, s.year[0], s.year[s.n - 1], s.year[0], s.year[t0], s.mean, s.std,
         s.year[s.n_train], s.year[s.n - 1]);
  /* the forecast is the mean of --ensemble LSTMs, each drawn and trained
   * with the generator's next numbers */
  printf("training %ld LSTM(1, %ld) over %ld-year windows, Linear(%ld, %lld) forecasting the next "
         "%lld years at once; each %ld steps of %d windows from %d-%d, amplitudes scaled by "
         "exp(U(-%g, %g)), Adam lr %g (cosine), clip 1\n",
         o.ensemble, o.hidden, o.window, o.hidden, (long long)K, (long long)K, o.steps, FC_BATCH,
         s.year[0], s.year[t0], o.augment, o.augment, o.lr);
  for (int64_t i = 0; i < n_orig * K; i++)
    f_lstm[i] = 0;
  for (long e = 0; e < o.ensemble; e++) {
    double loss;
    if (!fc_model_new(ctx, rng, &o, &m) || !fc_train(ctx, &m, &s, &o, rng, &loss) ||
        !fc_predict(ctx, &m, &s, t0, n_orig, f_one))
      goto done;
    fc_err one = fc_errors(&s, t0, n_orig, K, 1, f_one);
    printf("  member %ld: %lld parameters, training mse %.4f (normalised), held-out one-step "
           "mse %.1f\n",
           e + 1, (long long)cr_module_num_params(m.m), loss, one.mse);
    for (int64_t i = 0; i < n_orig * K; i++)
      f_lstm[i] += f_one[i] / (double)o.ensemble;
    cr_module_free(m.m);
    m.m = NULL;
  }
  for (int64_t i = 0; i < n_orig; i++) {
    fc_naive(&s, t0 + i, K, f_naive + i * K);
    fc_seasonal(&s, t0 + i, K, f_seas + i * K);
  }
  printf("held-out errors (sunspot numbers; MSE and MAE):\n");
  printf("  %-22s %10s %7s   %10s %7s   %10s %7s\n", "", "LSTM MSE", "MAE", "naive MSE", "MAE",
         "seasonal", "MAE");
  char what[64];
  snprintf(what, sizeof what, "one step (%lld years)", (long long)n_orig);
  report(what, fc_errors(&s, t0, n_orig, K, 1, f_lstm), fc_errors(&s, t0, n_orig, K, 1, f_naive),
         fc_errors(&s, t0, n_orig, K, 1, f_seas));
  const int64_t n_multi = n_orig - K + 1; /* origins whose K next years are held out */
  snprintf(what, sizeof what, "1-%lld steps (%lld origins)", (long long)K, (long long)n_multi);
  report(what, fc_errors(&s, t0, n_multi, K, K, f_lstm), fc_errors(&s, t0, n_multi, K, K, f_naive),
         fc_errors(&s, t0, n_multi, K, K, f_seas));
  if (o.csv || o.plot) {
    char csv[4096];
    if (o.csv)
      snprintf(csv, sizeof csv, "%s", o.csv);
    else
      snprintf(csv, sizeof csv, "%.*s.csv", (int)strlen(o.plot) - 4, o.plot);
    if (!fc_write_csv(csv, &s, K, f_lstm, f_naive, f_seas))
      goto done;
    printf("forecasts: %s\n", csv);
    if (o.plot && !fc_plot(csv, o.plot, &s, K))
      goto done;
  }
  rc = 0;
done:
  cr_module_free(m.m);
  free(f);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  fc_series_free(&s);
  return rc;
}
