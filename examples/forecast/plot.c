/* plot.c — the held-out years as CSV (NaN where a column has no value) and
 * a gnuplot script that draws them; gnuplot is run without a shell, and
 * when it is not installed the CSV and the script stay for later. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "forecast.h"

extern char **environ;

/* columns: year, actual, then one-step and multi-step forecasts of the
 * LSTM, naive and seasonal naive.  Multi-step: the paths from origins
 * n_train - 1, n_train - 1 + H, ..., each H years long.  The rows start
 * 2H years before the held-out tail, for context. */
bool fc_write_csv(const char *path, const fc_series *s, int64_t H, const double *f_lstm,
                  const double *f_naive, const double *f_seas) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "forecast: cannot write %s: %s\n", path, strerror(errno));
    return false;
  }
  const int64_t t0 = s->n_train - 1;
  fprintf(f, "year,actual,lstm_1,naive_1,seasonal_1,lstm_multi,naive_multi,seasonal_multi,"
             "origin\n");
  for (int64_t i = s->n_train - 2 * H > 0 ? s->n_train - 2 * H : 0; i < s->n; i++) {
    fprintf(f, "%d,%.1f", s->year[i], s->x[i]);
    if (i < s->n_train) {
      fprintf(f, ",NaN,NaN,NaN,NaN,NaN,NaN,NaN\n");
      continue;
    }
    const int64_t one = (i - 1 - t0) * H;             /* origin i - 1, horizon 1 */
    const int64_t o = t0 + (i - s->n_train) / H * H;  /* this year's path's origin */
    const int64_t multi = (o - t0) * H + (i - o - 1); /* ... at horizon i - o */
    fprintf(f, ",%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%d\n", f_lstm[one], f_naive[one], f_seas[one],
            f_lstm[multi], f_naive[multi], f_seas[multi], s->year[o]);
  }
  bool ok = !ferror(f);
  ok &= fclose(f) == 0;
  if (!ok)
    fprintf(stderr, "forecast: writing %s failed\n", path);
  return ok;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

bool fc_plot(const char *csv, const char *out, const fc_series *s, int64_t H) {
  const bool svg = ends_with(out, ".svg");
  char gp[4096];
  if (snprintf(gp, sizeof gp, "%s.gp", out) >= (int)sizeof gp) {
    fprintf(stderr, "forecast: --plot %s: name too long\n", out);
    return false;
  }
  FILE *f = fopen(gp, "w");
  if (!f) {
    fprintf(stderr, "forecast: cannot write %s: %s\n", gp, strerror(errno));
    return false;
  }
  fprintf(f,
          "# gnuplot %s: draws %s from %s (written by chainrule's forecast example)\n"
          "set terminal %s size 960,540 font ',11'\n"
          "set output '%s'\n"
          "set datafile separator ','\n"
          "set key top right\n"
          "set xlabel 'year'\n"
          "set ylabel 'yearly mean sunspot number'\n"
          "set title 'Held-out years %d-%d: %lld-year forecasts, a new origin every %lld years "
          "(origins marked)'\n"
          "set grid\n",
          gp, out, csv, svg ? "svg dynamic" : "pngcairo", out, s->year[s->n_train],
          s->year[s->n - 1], (long long)H, (long long)H);
  for (int64_t o = s->n_train - 1; o < s->n - 1; o += H) /* the origins */
    fprintf(f, "set arrow from %d, graph 0 to %d, graph 1 nohead dt 4 lc rgb '#1f77b4'\n",
            s->year[o], s->year[o]);
  fprintf(
      f,
      "plot '%s' using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb 'black' title 'actual', \\\n"
      "     '' using 1:6 with lines lw 2 lc rgb '#1f77b4' title 'LSTM, 1-%lld years ahead of each "
      "origin', \\\n"
      "     '' using 1:8 with lines lw 1.5 dt 2 lc rgb '#d62728' title 'seasonal naive (11 "
      "years back)', \\\n"
      "     '' using 1:7 with lines lw 1.5 dt 3 lc rgb '#7f7f7f' title 'naive (last value)', \\\n"
      "     '' using 1:3 with lines lw 1 lc rgb '#2ca02c' title 'LSTM, one step ahead'\n",
      csv, (long long)H);
  bool ok = !ferror(f);
  ok &= fclose(f) == 0;
  if (!ok) {
    fprintf(stderr, "forecast: writing %s failed\n", gp);
    return false;
  }
  fflush(NULL);
  pid_t pid;
  char *argv[] = {"gnuplot", gp, NULL};
  int err = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
  if (err == ENOENT) {
    printf("gnuplot is not installed: the data is in %s and the script in %s (Debian: apt-get "
           "install gnuplot-nox, then gnuplot %s)\n",
           csv, gp, gp);
    return true;
  }
  int status = 0;
  if (err || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
    fprintf(stderr, "forecast: gnuplot %s failed (%s)\n", gp,
            err ? strerror(err) : "see its message above");
    return false;
  }
  printf("plot: %s (gnuplot %s; data %s)\n", out, gp, csv);
  return true;
}
