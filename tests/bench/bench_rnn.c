/* bench_rnn.c — training speed of the character model (examples/char_model.c).
 *
 * One training step, exactly as a training loop runs it:
 *   ids [T,B] (random, vocab V = 65, seeded) -> embedding [V,E], E = 64
 *   (--embed N; --embed-equals-hidden for E = H)
 *   -> one recurrent layer (rnn_tanh, lstm or gru) -> linear head [V,H]
 *   -> cr_cross_entropy -> cr_backward -> cr_optim_step (SGD, lr 0.1)
 *   -> cr_ctx_reset
 * in float32, for three sizes and 1 and 2 threads.  Each row is warmed up,
 * then timed over enough steps for about 1.5 s and at least 10 steps
 * (CLOCK_MONOTONIC).  The embedding is 64 wide by default, as in the
 * project's reference comparison; --embed-equals-hidden gives the older
 * E = H configuration (bench_torch.py has the same two options).
 *
 * Columns: ms/step is the median time of the timed steps (robust to other
 * processes on a shared machine; "mean ms" is the mean); tokens/s counts
 * T*B tokens per step; GFLOP/s counts 3x the
 * forward matrix-product FLOPs of a step (forward, and the two products of
 * each backward), i.e. per step
 *   3 * (2*T*B*E*G*H  [input projection]  + 2*T*B*H*G*H  [recurrent]
 *        + 2*T*B*H*V  [head])                       G = 1 rnn, 4 lstm, 3 gru
 * which is the convention of the PyTorch twin (bench_torch.py), so the two
 * tables compare directly.  "allocations during timed steps" is the change
 * of cr_alloc_count() over the timed steps: 0 proves that a steady-state
 * step never calls malloc.  "loss" is the loss of the last timed step (the
 * same batch every step, so it falls as SGD fits it).
 *
 * Run:  meson test -C build --benchmark --verbose
 *   or  taskset -c 0 build/tests/bench/bench-rnn [--quick] [--cells lstm,gru]
 *         [--configs tiny,small] [--threads 1,2] [--steps N] [--min-steps N]
 *         [--embed N | --embed-equals-hidden] [--anomaly] [--machine]
 * (--min-steps: at least N timed steps besides the time budget, default 10;
 * --anomaly: every row in anomaly mode, cr_set_detect_anomaly, whose
 * checks of every result and gradient are the difference to a plain run;
 * --machine: one "RESULT ..." line per row, for run_all.sh / compare.py.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "chainrule.h"
#include "chainrule/optim.h"
#include "char_model.h"

#define VOCAB 65
#define MAX_ITEMS 8
#define MAX_STEPS 200000

/* durations of the timed steps (s); a static buffer, so that the timing
 * itself allocates nothing */
static double step_s[MAX_STEPS];

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  const char *name;
  int64_t hidden, batch, seq;
} bench_config;

static const bench_config all_configs[] = {
    {"tiny", 32, 1, 32},
    {"small", 128, 32, 64},
    {"medium", 512, 32, 64},
};
static const char *const all_cells[] = {"rnn_tanh", "lstm", "gru"};

typedef struct {
  bool quick, machine, anomaly;
  int steps;     /* fixed timed steps, 0: by time */
  int min_steps; /* timed steps at least, when timing by time */
  int64_t embed; /* E; 0: E = H */
  int n_cells, n_configs, n_threads;
  const char *cells[MAX_ITEMS];
  const bench_config *configs[MAX_ITEMS];
  int threads[MAX_ITEMS];
} options;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* G: gate blocks of the input and recurrent weights (mgu: [2H,I] and two [H,H]). */
static int gates_of(const char *cell) {
  return !strcmp(cell, "lstm") ? 4 : !strcmp(cell, "gru") ? 3 : !strcmp(cell, "mgu") ? 2 : 1;
}

/* Forward matrix-product FLOPs of one step. */
static double forward_flops(const bench_config *c, int G, int64_t embed) {
  double TB = (double)c->seq * (double)c->batch, H = (double)c->hidden, E = (double)embed;
  return 2 * TB * E * G * H + 2 * TB * H * G * H + 2 * TB * H * VOCAB;
}

/* Split a comma list into items; false on an empty or overlong list. */
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
  fprintf(f, "usage: bench-rnn [--quick] [--cells rnn_tanh,lstm,gru] "
             "[--configs tiny,small,medium] [--threads 1,2] [--steps N] [--min-steps N] "
             "[--embed N | --embed-equals-hidden] [--anomaly] [--machine]\n");
}

static bool parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  for (int i = 0; i < 3; i++)
    o->cells[i] = all_cells[i], o->configs[i] = &all_configs[i];
  o->n_cells = o->n_configs = 3;
  o->threads[0] = 1, o->threads[1] = 2, o->n_threads = 2;
  o->embed = 64, o->min_steps = 10;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *items[MAX_ITEMS];
    int n;
    if (!strcmp(a, "--quick")) {
      o->quick = true;
      o->min_steps = 3;
      continue;
    }
    if (!strcmp(a, "--machine")) {
      o->machine = true;
      continue;
    }
    if (!strcmp(a, "--anomaly")) {
      o->anomaly = true;
      continue;
    }
    if (!strcmp(a, "--embed-equals-hidden")) {
      o->embed = 0;
      continue;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "bench-rnn: unknown option or missing value: %s\n", a);
      return false;
    }
    char *v = argv[++i];
    if (!strcmp(a, "--steps") || !strcmp(a, "--min-steps")) {
      int k = atoi(v);
      if (k < 1 || k > MAX_STEPS) {
        fprintf(stderr, "bench-rnn: %s %s: need a count in 1..%d\n", a, v, MAX_STEPS);
        return false;
      }
      *(!strcmp(a, "--steps") ? &o->steps : &o->min_steps) = k;
    } else if (!strcmp(a, "--embed")) {
      o->embed = atoll(v);
      if (o->embed < 1) {
        fprintf(stderr, "bench-rnn: --embed %s: need a positive size\n", v);
        return false;
      }
    } else if (!strcmp(a, "--cells")) {
      if (!split_list(v, items, &n))
        return false;
      for (int k = 0; k < n; k++) {
        if (!cm_cell_by_name(items[k])) {
          fprintf(stderr, "bench-rnn: unknown cell '%s' (rnn_tanh, lstm, gru, mgu)\n", items[k]);
          return false;
        }
        o->cells[k] = items[k];
      }
      o->n_cells = n;
    } else if (!strcmp(a, "--configs")) {
      if (!split_list(v, items, &n))
        return false;
      for (int k = 0; k < n; k++) {
        o->configs[k] = NULL;
        for (size_t c = 0; c < sizeof all_configs / sizeof all_configs[0]; c++)
          if (!strcmp(items[k], all_configs[c].name))
            o->configs[k] = &all_configs[c];
        if (!o->configs[k]) {
          fprintf(stderr, "bench-rnn: unknown config '%s' (tiny, small, medium)\n", items[k]);
          return false;
        }
      }
      o->n_configs = n;
    } else if (!strcmp(a, "--threads")) {
      if (!split_list(v, items, &n))
        return false;
      for (int k = 0; k < n; k++) {
        o->threads[k] = atoi(items[k]);
        if (o->threads[k] < 1) {
          fprintf(stderr, "bench-rnn: bad thread count '%s'\n", items[k]);
          return false;
        }
      }
      o->n_threads = n;
    } else {
      fprintf(stderr, "bench-rnn: unknown option %s\n", a);
      return false;
    }
  }
  return true;
}

typedef struct {
  double ms_per_step, ms_mean, loss; /* median and mean step time */
  int steps;
  size_t allocs;
} row_result;

/* One training step; returns the loss (NAN on error, message in ctx). */
static double train_step(cr_ctx *ctx, char_model *m, cr_optim *opt, const int64_t *ids,
                         const int64_t *targets, int64_t T, int64_t B) {
  cr_optim_zero_grad(opt);
  /* logits [T*B, V] */
  cr_tensor *logits = cm_logits(ctx, m, ids, T, B, NULL, NULL, NULL);
  cr_tensor *loss = cr_cross_entropy(ctx, logits, targets, CR_NO_IGNORE);
  double value = loss ? cr_item(loss) : NAN;
  if (!loss || cr_backward(ctx, loss) != CR_OK || cr_optim_step(ctx, opt) != CR_OK)
    value = NAN;
  cr_ctx_reset(ctx);
  return value;
}

static bool run_row(const options *o, const char *cell, const bench_config *c, int threads,
                    row_result *r) {
  const int64_t T = c->seq, B = c->batch, H = c->hidden;
  bool ok = false;
  cr_set_num_threads(threads);
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1234);
  if (ctx && o->anomaly)
    cr_set_detect_anomaly(ctx, true);
  const int64_t E = o->embed ? o->embed : H;
  cm_config mc = {cm_cell_by_name(cell), VOCAB, E, H, 1, 0.0, CR_F32};
  char_model *m = ctx && rng ? cm_new(ctx, &mc, rng) : NULL;
  cr_optim_opts oo;
  cr_optim_default_opts(CR_SGD, &oo);
  oo.lr = 0.1;
  cr_optim *opt = m ? cr_optim_new(ctx, &oo, m->params, m->n_params) : NULL;
  /* ids [T,B] and next-character targets [T*B], all drawn from the seed */
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)((T + 1) * B));
  if (!opt || !ids) {
    fprintf(stderr, "bench-rnn: %s %s: setup failed: %s\n", cell, c->name,
            ctx ? cr_ctx_error(ctx) : "no context");
    goto done;
  }
  for (int64_t i = 0; i < (T + 1) * B; i++)
    ids[i] = (int64_t)cr_rng_below(rng, VOCAB);
  const int64_t *targets = ids + B;

  /* warm-up: the arena grows to its steady size here */
  int warm = o->quick ? 2 : 3;
  for (int s = 0; s < warm; s++) {
    if (!isfinite(train_step(ctx, m, opt, ids, targets, T, B))) {
      fprintf(stderr, "bench-rnn: %s %s: step failed: %s\n", cell, c->name,
              cr_ctx_status(ctx) ? cr_ctx_error(ctx) : "loss is not finite");
      goto done;
    }
  }
  /* timed steps: a fixed count, or until the time budget is spent (and at
   * least min_steps) */
  double budget = o->quick ? 0.25 : 1.5;
  size_t allocs0 = cr_alloc_count();
  double start = now_s(), last = start, elapsed = 0, loss = 0;
  int steps = 0;
  for (;;) {
    loss = train_step(ctx, m, opt, ids, targets, T, B);
    double t = now_s();
    if (steps < MAX_STEPS)
      step_s[steps] = t - last;
    last = t;
    steps++;
    elapsed = t - start;
    if (!isfinite(loss) ||
        (o->steps ? steps >= o->steps : steps >= o->min_steps && elapsed >= budget))
      break;
  }
  r->allocs = cr_alloc_count() - allocs0;
  if (!isfinite(loss)) {
    fprintf(stderr, "bench-rnn: %s %s: step failed: %s\n", cell, c->name,
            cr_ctx_status(ctx) ? cr_ctx_error(ctx) : "loss is not finite");
    goto done;
  }
  r->loss = loss;
  r->steps = steps;
  r->ms_mean = 1e3 * elapsed / steps;
  int n = steps < MAX_STEPS ? steps : MAX_STEPS;
  qsort(step_s, (size_t)n, sizeof *step_s, cmp_double);
  r->ms_per_step = 1e3 * (n % 2 ? step_s[n / 2] : 0.5 * (step_s[n / 2 - 1] + step_s[n / 2]));
  ok = true;
done:
  free(ids);
  cr_optim_free(opt);
  cm_free(m);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return ok;
}

int main(int argc, char **argv) {
  options o;
  if (!parse_args(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }
  char rt[256], emb[32];
  cr_runtime_init();
  if (o.embed)
    snprintf(emb, sizeof emb, "E = %lld", (long long)o.embed);
  else
    snprintf(emb, sizeof emb, "E = H");
  const char *pre = o.machine ? "# " : ""; /* --machine: only RESULT lines are data */
  printf("%schainrule training step: embedding -> 1-layer cell -> linear -> cross_entropy -> "
         "backward -> SGD(lr 0.1); f32, vocab %d, %s%s\n",
         pre, VOCAB, emb, o.anomaly ? "; anomaly mode on" : "");
  printf("%sruntime: %s\n", pre, cr_runtime_describe(rt, sizeof rt));
  double load = NAN; /* 1-minute load average, Linux */
  FILE *lf = fopen("/proc/loadavg", "r");
  if (lf) {
    if (fscanf(lf, "%lf", &load) != 1)
      load = NAN;
    fclose(lf);
  }
  if (!o.machine) {
    printf("ms/step is the median step (tokens/s and GFLOP/s use it), mean ms the mean; GFLOP/s "
           "counts 3x the forward matmul FLOPs%s\n",
           o.quick ? " (--quick: short timing)" : "");
    printf("load average before the run: %.2f (a busy machine slows every row)\n\n", load);
    printf("%-9s %-7s %4s %4s %5s %4s %4s %6s %11s %9s %9s %8s %7s\n", "cell", "config", "E", "H",
           "batch", "seq", "thr", "steps", "tokens/s", "ms/step", "mean ms", "GFLOP/s", "loss");
  }
  bool failed = false;
  size_t total_allocs = 0;
  for (int ci = 0; ci < o.n_cells; ci++)
    for (int fi = 0; fi < o.n_configs; fi++)
      for (int ti = 0; ti < o.n_threads; ti++) {
        const bench_config *c = o.configs[fi];
        const int64_t E = o.embed ? o.embed : c->hidden;
        row_result r = {0};
        if (!run_row(&o, o.cells[ci], c, o.threads[ti], &r)) {
          failed = true;
          continue;
        }
        double tokens = (double)(c->seq * c->batch);
        double gflops = 3 * forward_flops(c, gates_of(o.cells[ci]), E) / (r.ms_per_step * 1e6);
        if (o.machine)
          printf("RESULT peer=chainrule kind=char cell=%s config=%s embed=%lld hidden=%lld "
                 "threads=%d ms=%.6f ms_mean=%.6f reps=%d gflops=%.3f loss=%.5f allocs=%zu\n",
                 o.cells[ci], c->name, (long long)E, (long long)c->hidden, o.threads[ti],
                 r.ms_per_step, r.ms_mean, r.steps, gflops, r.loss, r.allocs);
        else
          printf("%-9s %-7s %4lld %4lld %5lld %4lld %4d %6d %11.0f %9.3f %9.3f %8.2f %7.4f  "
                 "allocations during timed steps: %zu\n",
                 o.cells[ci], c->name, (long long)E, (long long)c->hidden, (long long)c->batch,
                 (long long)c->seq, o.threads[ti], r.steps, tokens / (r.ms_per_step * 1e-3),
                 r.ms_per_step, r.ms_mean, gflops, r.loss, r.allocs);
        fflush(stdout);
        total_allocs += r.allocs;
      }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("\n%speak RSS: %.1f MiB\n", pre, (double)ru.ru_maxrss / 1024.0);
  if (total_allocs) {
    printf("FAIL: %zu heap allocations during timed steps (a steady-state step must not "
           "malloc)\n",
           total_allocs);
    failed = true;
  }
  return failed ? 1 : 0;
}
