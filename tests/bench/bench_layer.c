/* bench_layer.c — layer-level forward+backward of a chainrule recurrent
 * layer (the case of layer_common.h): 1 layer, float32, x [T,B,I] ->
 * y [T,B,H] from a zero state, then backward from a fixed seed gy on y,
 * computing gx and every parameter gradient.  Its twins: bench_dnnl.cpp
 * (oneDNN's fused RNN primitives) and bench_torch.py --mode layer
 * (PyTorch's nn.LSTM/GRU/RNN), with the same sizes and FLOP convention.
 *
 * A timed repetition is what a training loop does with the layer:
 *   zero the gradients -> cr_rnn_forward -> cr_backward_seed -> cr_ctx_reset
 * Each row is warmed up (--warmup, the arena grows to its steady size
 * there), then timed over at least --reps repetitions and at least
 * --min-time seconds (CLOCK_MONOTONIC around each repetition).  ms is the
 * median repetition (robust to other processes on a shared machine; mean
 * and min are printed too).  GFLOP/s = 3 * F / median time with
 * F = 2*T*B*G*H*(I+H) the forward product FLOPs (layer_common.h).
 * "allocs" is the change of cr_alloc_count() over the timed repetitions:
 * 0 means a steady-state step never calls malloc.
 *
 * Cells: lstm, gru, rnn_tanh (built-in) and mgu, the user-defined minimal
 * gated unit of examples/mgu.c (cr_cell_def).  An MGU has G = 2 (input
 * weight [2H,I], two recurrent [H,H]); no built-in has, so it is compared
 * with the GRU at the same (I,H,B,T) by GFLOP/s, i.e. time per counted FLOP.
 *
 * Run pinned:  taskset -c 0 build/tests/bench/bench-layer
 *   [--cells lstm,gru,rnn_tanh,mgu] [--sizes tiny,64x512x32x64,...] [--threads 1,2]
 *   [--reps N] [--min-time S] [--warmup N] [--peak GFLOPS] [--machine] [--quick]
 * (--peak: the measured FMA peak of one core from fma-peak, for a "% peak"
 * column; with n threads the percentage is of n times it.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"

#define MAX_ITEMS 16
#define MAX_REPS 100000

static double rep_s[MAX_REPS]; /* static: the timing allocates nothing */

typedef struct {
  int n_cells, n_sizes, n_threads;
  const char *cells[MAX_ITEMS];
  lc_size sizes[MAX_ITEMS];
  int threads[MAX_ITEMS];
  int reps, warmup;
  double min_time, peak;
  bool machine;
} options;

static bool split_list(char *s, const char **out, int *n) {
  *n = 0;
  for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
    if (*n == MAX_ITEMS)
      return false;
    out[(*n)++] = tok;
  }
  return *n > 0;
}

static void usage(FILE *f) {
  fprintf(f, "usage: bench-layer [--cells lstm,gru,rnn_tanh,mgu] [--sizes tiny,IxHxBxT,...] "
             "[--threads 1,2] [--reps N] [--min-time S] [--warmup N] [--peak GFLOPS] "
             "[--machine] [--quick]\n");
}

static bool parse_args(int argc, char **argv, options *o) {
  static const char *const default_cells[] = {"lstm", "gru", "rnn_tanh", "mgu"};
  memset(o, 0, sizeof *o);
  for (int i = 0; i < 4; i++)
    o->cells[i] = default_cells[i];
  o->n_cells = 4;
  int n;
  const lc_size *ds = lc_default_sizes(&n);
  for (int i = 0; i < n; i++)
    o->sizes[i] = ds[i];
  o->n_sizes = n;
  o->threads[0] = 1, o->threads[1] = 2, o->n_threads = 2;
  o->reps = 10, o->warmup = 2, o->min_time = 0.5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *items[MAX_ITEMS];
    if (!strcmp(a, "--machine")) {
      o->machine = true;
      continue;
    }
    if (!strcmp(a, "--quick")) {
      o->reps = 3, o->warmup = 1, o->min_time = 0.05;
      continue;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "bench-layer: unknown option or missing value: %s\n", a);
      return false;
    }
    char *v = argv[++i];
    if (!strcmp(a, "--cells")) {
      if (!split_list(v, items, &n))
        return false;
      for (int k = 0; k < n; k++) {
        if (!lc_gates(items[k])) {
          fprintf(stderr, "bench-layer: unknown cell '%s' (lstm, gru, rnn_tanh, mgu)\n", items[k]);
          return false;
        }
        o->cells[k] = items[k];
      }
      o->n_cells = n;
    } else if (!strcmp(a, "--sizes")) {
      if (!split_list(v, items, &n))
        return false;
      for (int k = 0; k < n; k++)
        if (!lc_parse_size(items[k], &o->sizes[k])) {
          fprintf(stderr, "bench-layer: bad size '%s' (tiny or IxHxBxT)\n", items[k]);
          return false;
        }
      o->n_sizes = n;
    } else if (!strcmp(a, "--threads")) {
      if (!split_list(v, items, &n))
        return false;
      for (int k = 0; k < n; k++)
        if ((o->threads[k] = atoi(items[k])) < 1) {
          fprintf(stderr, "bench-layer: bad thread count '%s'\n", items[k]);
          return false;
        }
      o->n_threads = n;
    } else if (!strcmp(a, "--reps")) {
      o->reps = atoi(v);
    } else if (!strcmp(a, "--warmup")) {
      o->warmup = atoi(v);
    } else if (!strcmp(a, "--min-time")) {
      o->min_time = atof(v);
    } else if (!strcmp(a, "--peak")) {
      o->peak = atof(v);
    } else {
      fprintf(stderr, "bench-layer: unknown option %s\n", a);
      return false;
    }
  }
  if (o->reps < 1 || o->reps > MAX_REPS || o->warmup < 0 || !(o->min_time >= 0) ||
      !(o->peak >= 0)) {
    fprintf(stderr, "bench-layer: need 1 <= --reps <= %d, --warmup >= 0, --min-time >= 0\n",
            MAX_REPS);
    return false;
  }
  return true;
}

typedef struct {
  double ms, ms_mean, ms_min;
  int reps;
  size_t allocs;
} row_result;

static bool run_row(const options *o, const char *cell, const lc_size *s, int threads,
                    row_result *r) {
  char name[64];
  bool ok = false;
  cr_set_num_threads(threads);
  cr_ctx *ctx = cr_ctx_new();
  lc_case *c = ctx ? lc_new(ctx, cell, s) : NULL;
  if (!c) {
    fprintf(stderr, "bench-layer: %s %s: setup failed: %s\n", cell,
            lc_size_str(s, name, sizeof name), ctx ? cr_ctx_error(ctx) : "no context");
    goto done;
  }
  for (int w = 0; w < o->warmup; w++) {
    cr_status st = lc_step(ctx, c);
    cr_ctx_reset(ctx);
    if (st != CR_OK)
      goto fail;
  }
  size_t allocs0 = cr_alloc_count();
  double start = lc_now_s(), last = start;
  int reps = 0;
  while (reps < o->reps || (last - start < o->min_time && reps < MAX_REPS)) {
    cr_status st = lc_step(ctx, c);
    cr_ctx_reset(ctx);
    double t = lc_now_s();
    if (st != CR_OK)
      goto fail;
    rep_s[reps++] = t - last;
    last = t;
  }
  r->allocs = cr_alloc_count() - allocs0;
  r->reps = reps;
  r->ms_mean = 1e3 * (last - start) / reps;
  r->ms = 1e3 * lc_median(rep_s, reps); /* sorts: rep_s[0] is the fastest */
  r->ms_min = 1e3 * rep_s[0];
  ok = true;
  goto done;
fail:
  fprintf(stderr, "bench-layer: %s %s: step failed: %s\n", cell, lc_size_str(s, name, sizeof name),
          cr_ctx_error(ctx));
done:
  lc_free(c);
  cr_ctx_free(ctx);
  return ok;
}

int main(int argc, char **argv) {
  options o;
  if (!parse_args(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }
  char rt[256];
  cr_runtime_init();
  if (o.machine) {
    printf("# chainrule layer forward+backward; runtime: %s\n", cr_runtime_describe(rt, sizeof rt));
  } else {
    printf("chainrule layer forward+backward: 1 layer, f32, [T,B,I], zero initial state, "
           "backward from a seed on the output (gx and all weight gradients)\n");
    printf("runtime: %s\n", cr_runtime_describe(rt, sizeof rt));
    printf("ms: median of >= %d repetitions and >= %.2f s after %d warm-up; GFLOP/s = "
           "3*2*T*B*G*H*(I+H) / ms\n\n",
           o.reps, o.min_time, o.warmup);
    printf("%-9s %-15s %3s %5s %9s %9s %9s %8s%s %7s\n", "cell", "IxHxBxT", "thr", "reps", "ms",
           "mean ms", "min ms", "GFLOP/s", o.peak > 0 ? "  % peak" : "", "allocs");
  }
  bool failed = false;
  for (int ci = 0; ci < o.n_cells; ci++)
    for (int si = 0; si < o.n_sizes; si++)
      for (int ti = 0; ti < o.n_threads; ti++) {
        const char *cell = o.cells[ci];
        const lc_size *s = &o.sizes[si];
        int thr = o.threads[ti];
        row_result r;
        char name[64];
        lc_size_str(s, name, sizeof name);
        if (!run_row(&o, cell, s, thr, &r)) {
          failed = true;
          continue;
        }
        double gflops = lc_flops(cell, s) / (r.ms * 1e6);
        if (o.machine) {
          printf("RESULT peer=chainrule kind=layer cell=%s size=%s threads=%d ms=%.6f "
                 "ms_mean=%.6f ms_min=%.6f reps=%d gflops=%.3f allocs=%zu\n",
                 cell, name, thr, r.ms, r.ms_mean, r.ms_min, r.reps, gflops, r.allocs);
        } else {
          char pct[16] = "";
          if (o.peak > 0)
            snprintf(pct, sizeof pct, " %7.1f%%", 100 * gflops / (o.peak * thr));
          printf("%-9s %-15s %3d %5d %9.3f %9.3f %9.3f %8.2f%s %7zu\n", cell, name, thr, r.reps,
                 r.ms, r.ms_mean, r.ms_min, gflops, pct, r.allocs);
        }
        fflush(stdout);
        if (r.allocs)
          failed = true;
      }
  if (failed)
    fprintf(stderr, "bench-layer: FAIL: a row failed or allocated during its timed steps\n");
  return failed ? 1 : 0;
}
