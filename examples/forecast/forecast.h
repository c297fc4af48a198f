/* forecast.h — the parts of the forecast program, one job per file:
 *   main.c    the run: options, the report of errors against the baselines
 *   series.c  the series: reading the CSV, the split, normalisation, the
 *             baselines and the error measures
 *   model.c   the LSTM, its training on windows of the early part, and its
 *             forecasts from any origin
 *   plot.c    the forecasts as CSV, and a gnuplot picture of them
 * Every function that can fail prints one line "forecast: ..." and returns
 * false; none aborts. */
#ifndef CHAINRULE_EXAMPLE_FORECAST_H
#define CHAINRULE_EXAMPLE_FORECAST_H

#include <stdbool.h>
#include <stdint.h>

#include "chainrule.h"

#ifndef FORECAST_DEFAULT_DATA
#define FORECAST_DEFAULT_DATA "examples/data/sunspots_yearly.csv"
#endif

enum {
  FC_PERIOD = 11, /* the solar cycle, years: the seasonal-naive lag */
  FC_BATCH = 32   /* training windows per step */
};

typedef struct fc_opts {
  const char *data, *plot, *csv;
  long steps, hidden, window, horizon, test, seed, threads, ensemble;
  double lr, augment; /* augment: amplitudes scaled by exp(U(-a, a)) in training */
} fc_opts;

/* ---- series.c */

typedef struct fc_series {
  int64_t n, n_train; /* x[0..n_train) train, the rest the held-out tail */
  double *x;          /* in original units */
  int *year;
  double mean, std; /* of the training part */
} fc_series;

/* x -> z = (x - mean) / std, and back */
double fc_norm(const fc_series *s, double x);
double fc_denorm(const fc_series *s, double z);

/* "YEAR","VALUE" lines after a header; years consecutive. */
bool fc_series_load(const char *path, int64_t n_test, fc_series *s);
void fc_series_free(fc_series *s);

/* Forecasts of x[t + 1 .. t + H] from origin t, in original units. */
void fc_naive(const fc_series *s, int64_t t, int64_t H, double *out);    /* x_t */
void fc_seasonal(const fc_series *s, int64_t t, int64_t H, double *out); /* x_{t+h-11} */

/* Squared and absolute errors of forecasts f[o * H + h] made from the
 * origins t0 .. t0 + n_orig - 1, at horizons 1 .. use (<= H). */
typedef struct fc_err {
  double mse, mae;
} fc_err;
fc_err fc_errors(const fc_series *s, int64_t t0, int64_t n_orig, int64_t H, int64_t use,
                 const double *f);

/* ---- model.c */

typedef struct fc_model {
  cr_module *m, *rnn, *head; /* rnn: LSTM(1, H); head: Linear(H, horizon) */
  int64_t window, horizon;
} fc_model;

bool fc_model_new(cr_ctx *ctx, cr_rng *rng, const fc_opts *o, fc_model *m);
/* Train on windows lying wholly (inputs and targets) in the training part;
 * the last steps' average loss (normalised units) into *final_loss. */
bool fc_train(cr_ctx *ctx, fc_model *m, const fc_series *s, const fc_opts *o, cr_rng *rng,
              double *final_loss);
/* Forecasts f[o * horizon + h] of x[t + 1 + h] from origins t0 .. t0 + n - 1,
 * each from the window of the `window` values up to and including x_t. */
bool fc_predict(cr_ctx *ctx, fc_model *m, const fc_series *s, int64_t t0, int64_t n, double *f);

/* ---- plot.c */

/* Write csv: every held-out year with the actual value, the one-step
 * forecasts and the multi-step forecasts from origins every `horizon`
 * years (f1, fh: from fc_predict, origins n_train - 1 ...; naive and
 * seasonal the same for the baselines). */
bool fc_write_csv(const char *path, const fc_series *s, int64_t H, const double *f_lstm,
                  const double *f_naive, const double *f_seas);
/* Draw csv into png (pngcairo) or svg by png's extension with gnuplot; a
 * missing gnuplot is a message and true. */
bool fc_plot(const char *csv, const char *out, const fc_series *s, int64_t H);

#endif
