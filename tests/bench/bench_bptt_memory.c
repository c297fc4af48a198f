/* bench_bptt_memory.c — memory-efficient BPTT: peak memory and time per
 * step of full BPTT against checkpointed segments (auto, fixed lengths,
 * memory budgets), for an LSTM and a GRU layer (hidden 128, batch 16,
 * input 128, float32) over T = 100, 1000, 5000 steps.
 *
 * A step is forward + backward of the layer, seeded with a fixed gradient w
 * for the output (the loss sum(output * w) without materialising it).
 * Each configuration runs in a process of its own, so its peak RSS is its
 * own; the arena peak is chainrule's measure of what a step holds
 * (cr_ctx_stats.arena_bytes_peak).  "activations" is that peak less the
 * layer's output and the output's gradient (2 T B H floats: the layer's
 * interface, the same in every row); "saved" compares activations with
 * full BPTT's at the same T, "overhead" the time per step (the best of N steps).  The gradients of
 * every row are the same bits as full BPTT's (tests/test_rnn.c checks that).
 *
 *   bench-bptt-memory [--quick] [--steps N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chainrule.h"
#include "op.h" /* the graph walk of the footprint table */

typedef struct {
  double ms, arena_mib, act_mib, rss_mib;
  int64_t K;
  int ok;
  char err[200];
} result;

/* wall time; CR_BENCH_CLOCK=cpu: the process's CPU time (one thread, a
 * development aid on a machine shared with other jobs) */
static double now(void) {
  static int cpu = -1;
  if (cpu < 0) {
    const char *c = getenv("CR_BENCH_CLOCK");
    cpu = c && !strcmp(c, "cpu");
  }
  struct timespec t;
  clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* one configuration, in this process */
static result run(const cr_cell_def *cell, int64_t T, int64_t every, size_t budget, int steps) {
  enum { B = 16, I = 128, H = 128 };
  result r = {0};
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_rnn_config cfg = {cell, I, H, 1, 0.0, false, CR_F32};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(T, B, I), 0, 1));
  cr_tensor *w = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(T, B, H), 0, 1));
  if (!rnn || !x || !w) {
    snprintf(r.err, sizeof r.err, "%s", cr_ctx_error(ctx));
    return r;
  }
  double *t = calloc((size_t)steps, sizeof *t);
  size_t peak = 0;
  for (int s = -1; s < steps; s++) { /* one warm-up step */
    cr_rnn_forward_opts o = {
        .checkpoint_every = every, .checkpoint_budget = budget, .checkpoint_chosen = &r.K};
    cr_tensor *out;
    cr_ctx_clear_peak(ctx);
    double t0 = now();
    cr_status st = cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL);
    if (st == CR_OK)
      st = cr_backward_seed(ctx, out, w);
    if (st != CR_OK) {
      snprintf(r.err, sizeof r.err, "%s", cr_ctx_error(ctx));
      free(t);
      return r;
    }
    if (s >= 0)
      t[s] = now() - t0;
    cr_ctx_stats stats;
    cr_ctx_get_stats(ctx, &stats);
    peak = stats.arena_bytes_peak;
    for (int i = 0; i < cr_rnn_num_params(rnn); i++)
      cr_zero_grad(cr_rnn_param(rnn, i));
    cr_ctx_reset(ctx);
  }
  qsort(t, (size_t)steps, sizeof *t, cmp);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  r.ms = 1e3 * t[0]; /* the best step: the least disturbed by other jobs */
  r.arena_mib = (double)peak / 1048576.0;
  r.act_mib = ((double)peak - 2.0 * (double)(T * B * H) * 4.0) / 1048576.0;
  r.rss_mib = (double)ru.ru_maxrss / 1024.0;
  r.ok = 1;
  free(t);
  cr_tensor_free(x);
  cr_tensor_free(w);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return r;
}

/* the same in a child process: a clean peak RSS */
static result run_apart(const cr_cell_def *cell, int64_t T, int64_t every, size_t budget,
                        int steps) {
  int fd[2];
  result r = {0};
  if (pipe(fd) != 0)
    return run(cell, T, every, budget, steps);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    result c = run(cell, T, every, budget, steps);
    ssize_t w = write(fd[1], &c, sizeof c);
    _exit(w == (ssize_t)sizeof c ? 0 : 1);
  }
  close(fd[1]);
  if (pid < 0 || read(fd[0], &r, sizeof r) != (ssize_t)sizeof r)
    snprintf(r.err, sizeof r.err, "the child process failed");
  close(fd[0]);
  if (pid > 0)
    waitpid(pid, NULL, 0);
  return r;
}

/* ---- full BPTT's footprint per step: the bytes of values the forward
 * keeps (distinct buffers of op results reachable from the output, not
 * released, and what nodes save apart: a fused chain's results) against
 * the least its VJPs need (the buffers some VJP reads, by the nodes'
 * `reads` sets, and those saved results), per cell */

static cr_tensor *owner(cr_tensor *t) { return t->root ? t->root : t; }

static void footprint(const cr_cell_def *cell, int64_t T) {
  enum { B = 16, I = 128, H = 128 };
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_rnn_config cfg = {cell, I, H, 1, 0.0, false, CR_F32};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(T, B, I), 0, 1));
  cr_ctx_reset(ctx);
  for (int keep = 1; keep >= 0; keep--) {
    cr_ctx_stats a, b;
    cr_ctx_get_stats(ctx, &a);
    cr_rnn_forward_opts o = {.keep_activations = keep};
    cr_tensor *out;
    if (cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL) != CR_OK) {
      printf("%s: %s\n", cell->name, cr_ctx_error(ctx));
      return;
    }
    cr_ctx_get_stats(ctx, &b);
    size_t n = 0;
    cr_node **order = cr__topo_order(ctx, 1, &out, &n);
    double kept = 0, need = 0;
    for (size_t i = 0; i < n; i++) { /* marks: view_ok kept, grad_is_view needed */
      owner(order[i]->out)->view_ok = owner(order[i]->out)->grad_is_view = false;
      for (int k = 0; k < order[i]->n_in; k++)
        owner(order[i]->in[k])->view_ok = owner(order[i]->in[k])->grad_is_view = false;
    }
    for (size_t i = 0; i < n; i++) {
      cr_node *nd = order[i];
      if (nd->op->saved_bytes) { /* kept apart from tensors, for the VJP */
        kept += (double)nd->op->saved_bytes(nd);
        need += (double)nd->op->saved_bytes(nd);
      }
      const uint32_t reads = cr__reads(nd);
      for (int k = -1; k < nd->n_in; k++) {
        cr_tensor *t = k < 0 ? nd->out : nd->in[k], *o = owner(t);
        bool read =
            k < 0 ? (reads & CR__READS_OUT) != 0 : (reads & CR__READS_IN(k < 30 ? k : 30)) != 0;
        double bytes = (double)o->numel * (double)cr_dtype_size(o->dtype);
        if (o->op_result && !o->released && !o->persistent && !o->view_ok) {
          o->view_ok = true;
          kept += bytes;
        }
        if (read && !o->persistent && !o->grad_is_view) {
          o->grad_is_view = true;
          need += bytes;
        }
      }
    }
    for (size_t i = 0; i < n; i++) { /* leave the fields as the engine wants them */
      owner(order[i]->out)->grad_is_view = false;
      for (int k = 0; k < order[i]->n_in; k++)
        owner(order[i]->in[k])->grad_is_view = false;
    }
    double bh = (double)(B * H) * 4.0;
    printf("%-9s %-19s %12.1f %12.1f %8.2fx %14.1f\n", cell->name,
           keep ? "keep_activations" : "default (released)", kept / (double)T / bh,
           need / (double)T / bh, kept / need,
           (double)(b.arena_bytes_used - a.arena_bytes_used) / (double)T / bh);
    cr_ctx_reset(ctx);
  }
  cr_tensor_free(x);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
}

int main(int argc, char **argv) {
  bool quick = false;
  int steps = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick"))
      quick = true;
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
      steps = atoi(argv[++i]) > 0 ? atoi(argv[++i - 1]) : 5;
    else {
      fprintf(stderr, "usage: bench-bptt-memory [--quick] [--steps N]\n");
      return 2;
    }
  }
  char rt[256];
  printf("memory-efficient BPTT: one layer, hidden 128, batch 16, input 128, f32, 1 thread; "
         "best of %d steps (forward + backward; %s time)\nruntime: %s\n\n",
         steps,
         getenv("CR_BENCH_CLOCK") && !strcmp(getenv("CR_BENCH_CLOCK"), "cpu") ? "CPU" : "wall",
         cr_runtime_describe(rt, sizeof rt));
  printf("full BPTT's footprint per step, T=200 (in units of B x H floats = 8 KiB): values the "
         "forward keeps, the least the VJPs read, their ratio, and all arena bytes (with "
         "headers, nodes, indices)\n");
  printf("%-9s %-19s %12s %12s %9s %14s\n", "cell", "forward", "kept/step", "needed/step", "ratio",
         "arena/step");
  const cr_cell_def *all[4] = {&cr_cell_rnn_tanh, &cr_cell_lstm, &cr_cell_gru, &cr_cell_rnn_relu};
  for (int c = 0; c < 4; c++)
    footprint(all[c], 200);
  printf("\nfull BPTT against checkpointed segments (activations: the arena's peak less the "
         "layer's output and its gradient)\n");
  printf("%-5s %5s  %-16s %6s %10s %12s %9s %9s %9s %9s\n", "cell", "T", "schedule", "K",
         "arena MiB", "activations", "saved", "RSS MiB", "ms/step", "overhead");
  const cr_cell_def *cells[2] = {&cr_cell_lstm, &cr_cell_gru};
  const int64_t Ts[3] = {100, 1000, 5000};
  for (int c = 0; c < 2; c++)
    for (int ti = 0; ti < (quick ? 2 : 3); ti++) {
      const int64_t T = Ts[ti];
      struct {
        const char *name;
        int64_t every;
        size_t budget;
      } rows[] = {{"full BPTT", 0, 0},
                  {"auto", CR_RNN_CHECKPOINT_AUTO, 0},
                  {"every 64 steps", 64, 0},
                  {"budget 64 MiB", 0, (size_t)64 << 20},
                  {"budget 16 MiB", 0, (size_t)16 << 20}};
      result full = {0};
      for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        if (T == 5000 && k == 0 && quick)
          continue;
        result r = run_apart(cells[c], T, rows[k].every, rows[k].budget,
                             T >= 5000 ? (steps < 3 ? steps : 3) : steps);
        if (k == 0)
          full = r;
        if (!r.ok) {
          printf("%-5s %5lld  %-16s %s\n", cells[c]->name, (long long)T, rows[k].name, r.err);
          continue;
        }
        char saved[16] = "", over[16] = "";
        if (k > 0 && full.ok) {
          snprintf(saved, sizeof saved, "%.1f%%", 100.0 * (1 - r.act_mib / full.act_mib));
          snprintf(over, sizeof over, "%+.1f%%", 100.0 * (r.ms / full.ms - 1));
        }
        printf("%-5s %5lld  %-16s %6lld %10.1f %12.1f %9s %9.1f %9.1f %9s\n", cells[c]->name,
               (long long)T, rows[k].name, (long long)r.K, r.arena_mib, r.act_mib, saved, r.rss_mib,
               r.ms, over);
      }
    }
  return 0;
}
