/* adding_problem.c — where gated cells beat the simple RNN: the adding
 * problem (Hochreiter & Schmidhuber, 1997).
 *
 * Task: each step carries a random value in [0, 1] and a marker; exactly
 * two steps are marked, one in the first tenth of the sequence and one in
 * the second half.  After the last step the network must output the sum of
 * the two marked values.  The first value has to survive most of the T
 * steps, and its gradient has to travel back through all of them: with a
 * simple tanh RNN it vanishes (a product of T Jacobians), while the
 * additive cell state of an LSTM and the interpolating update of a GRU keep
 * it alive.  A sequence counts as solved when |output - sum| < 0.04 (the
 * original criterion); always answering 1 (the mean) solves about 8%.
 *
 * Every cell gets the same budget (hidden size, optimizer, learning rate,
 * steps, batch, seed).  Prints the accuracy on fresh test sequences per
 * cell and length, and the test mean squared error (0.167 for the mean).
 *
 *   usage: adding-problem [--steps N] [--lengths 10,50,100] [--hidden H] [--lr LR] [--seed S]
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chainrule.h"

enum { BATCH = 32, TEST = 512 };

/* rnn: one layer of the cell; head: Linear(H, 1) reading its last state */
typedef struct {
  cr_module *m, *rnn, *head;
} model;

/* x [T, B, 2]: (value, marker); sums[b] = sum of the two marked values. */
static cr_tensor *batch(cr_ctx *ctx, cr_rng *rng, int64_t T, int64_t B, float *sums) {
  cr_tensor *x = cr_zeros(ctx, CR_F32, CR_SHAPE(T, B, 2));
  float *d = cr_data(x);
  for (int64_t b = 0; b < B; b++) {
    int64_t first = (int64_t)cr_rng_below(rng, (uint64_t)(T / 10 > 0 ? T / 10 : 1));
    int64_t second = T / 2 + (int64_t)cr_rng_below(rng, (uint64_t)(T - T / 2));
    if (second == first)
      second = T - 1;
    sums[b] = 0;
    for (int64_t t = 0; t < T; t++) {
      float v = (float)cr_rng_uniform(rng);
      d[(t * B + b) * 2] = v;
      if (t == first || t == second) {
        d[(t * B + b) * 2 + 1] = 1.0f;
        sums[b] += v;
      }
    }
  }
  return x;
}

/* the prediction [B, 1] from the last hidden state */
static cr_tensor *predict(cr_ctx *ctx, const model *m, cr_tensor *x) {
  cr_tensor *out, *fin[2]; /* fin[0]: h [L,B,H] */
  if (cr_nn_rnn_forward(ctx, m->rnn, x, NULL, NULL, &out, fin) != CR_OK)
    return NULL;
  return cr_module_forward(ctx, m->head, cr_select(ctx, fin[0], 0, -1));
}

static double g_lr = 3e-3;

static double run(const cr_cell_def *cell, int64_t T, long steps, int64_t H, uint64_t seed,
                  double *final_loss) {
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(seed);
  cr_rnn_config cfg = {cell, 2, H, 1, 0, false, CR_F32};
  model m = {.m = cr_module_new(ctx, "Adder")};
  m.rnn = cr_module_add(ctx, m.m, "rnn", cr_nn_rnn(ctx, &cfg, NULL, rng));
  m.head = cr_module_add(ctx, m.m, "head", cr_nn_linear(ctx, H, 1, true, CR_F32, rng));
  int n;
  cr_tensor *const *params = cr_module_parameters(m.m, &n);
  cr_optim *opt = cr_module_optim(ctx, m.m, CR_ADAM, g_lr);
  double acc = -1;
  if (!opt)
    fprintf(stderr, "adding-problem: %s\n", cr_ctx_error(ctx));
  float sums[TEST];
  double loss_avg = NAN;
  for (long s = 0; opt && s < steps; s++) {
    cr_tensor *x = batch(ctx, rng, T, BATCH, sums);
    cr_tensor *target = cr_from_array(ctx, CR_F32, CR_SHAPE(BATCH, 1), sums);
    cr_tensor *loss = cr_mse(ctx, predict(ctx, &m, x), target);
    cr_optim_zero_grad(opt);
    if (!loss || cr_backward(ctx, loss) != CR_OK) {
      fprintf(stderr, "adding-problem: %s\n", cr_ctx_error(ctx));
      break;
    }
    (void)cr_clip_grad_norm(ctx, params, n, 1.0);
    if (cr_optim_step(ctx, opt) != CR_OK)
      break;
    double l = cr_item(loss);
    loss_avg = isnan(loss_avg) ? l : 0.98 * loss_avg + 0.02 * l;
    cr_ctx_reset(ctx);
  }
  if (opt && cr_ctx_status(ctx) == CR_OK) {
    /* accuracy on fresh sequences, evaluation mode, no graph */
    cr_set_grad_enabled(ctx, false);
    cr_tensor *pred = predict(ctx, &m, batch(ctx, rng, T, TEST, sums));
    int right = 0;
    double se = 0;
    for (int64_t b = 0; pred && b < TEST; b++) {
      double err = cr_get_flat(pred, b) - sums[b];
      right += fabs(err) < 0.04;
      se += err * err;
    }
    acc = pred ? (double)right / TEST : -1;
    *final_loss = se / TEST;
  }
  cr_optim_free(opt);
  cr_module_free(m.m);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return acc;
}

/* v parsed whole as an integer in [lo, hi] into *out */
static bool parse_long(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi)
    return false;
  *out = x;
  return true;
}

/* "10,50,100": up to 8 lengths in 1..10000 */
static bool parse_lengths(const char *v, int64_t *lengths, int *n_len) {
  int n = 0;
  for (const char *p = v;;) {
    char *end;
    errno = 0;
    long t = strtol(p, &end, 10);
    if (end == p || errno || t < 1 || t > 10000 || n == 8)
      return false;
    lengths[n++] = t;
    if (!*end)
      break;
    if (*end != ',')
      return false;
    p = end + 1;
  }
  *n_len = n;
  return true;
}

#define USAGE                                                                                      \
  "usage: adding-problem [--steps N] [--lengths 10,50,100] [--hidden H] [--lr LR] [--seed S]\n"

int main(int argc, char **argv) {
  long steps = 3000, H = 32, seed = 1;
  int64_t lengths[8] = {10, 50, 100};
  int n_len = 3;
  for (int i = 1; i < argc; i += 2) { /* every option takes a value */
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    bool ok;
    if (!strcmp(a, "--steps"))
      ok = parse_long(v, 1, 100000000, &steps);
    else if (!strcmp(a, "--hidden"))
      ok = parse_long(v, 1, 4096, &H);
    else if (!strcmp(a, "--seed"))
      ok = parse_long(v, 0, 0x7fffffffL, &seed);
    else if (!strcmp(a, "--lr")) {
      errno = 0;
      g_lr = v ? strtod(v, &end) : 0;
      ok = v && *v && !*end && !errno && g_lr > 0 && g_lr <= 10;
    } else if (!strcmp(a, "--lengths"))
      ok = v && parse_lengths(v, lengths, &n_len);
    else {
      fprintf(stderr, "adding-problem: unknown option '%s'\n" USAGE, a);
      return 1;
    }
    if (!ok) {
      fprintf(stderr, "adding-problem: %s %s: expected %s\n", a, v ? v : "(missing)",
              !strcmp(a, "--lengths")  ? "up to 8 numbers in 1..10000 like 5,20,50"
              : !strcmp(a, "--lr")     ? "a number in (0, 10]"
              : !strcmp(a, "--steps")  ? "an integer in [1, 100000000]"
              : !strcmp(a, "--hidden") ? "an integer in [1, 4096]"
                                       : "an integer in [0, 2147483647]");
      return 1;
    }
  }
  char info[256];
  printf("chainrule adding-problem: %s\n", cr_runtime_describe(info, sizeof info));
  printf("adding problem: output the sum of the 2 marked values among T (solved: |error| < "
         "0.04); every cell: hidden %ld, Adam lr %g, clip 1, %ld steps of batch %d, seed %ld\n\n",
         H, g_lr, steps, BATCH, seed);
  const cr_cell_def *cells[3] = {&cr_cell_rnn_tanh, &cr_cell_lstm, &cr_cell_gru};
  printf("%-10s", "cell");
  for (int j = 0; j < n_len; j++)
    printf("   T=%-4lld solved (mse)", (long long)lengths[j]);
  printf("\n");
  int failed = 0;
  for (int c = 0; c < 3; c++) {
    printf("%-10s", cells[c]->name);
    fflush(stdout);
    for (int j = 0; j < n_len; j++) {
      double loss = NAN;
      double acc = run(cells[c], lengths[j], steps, H, (uint64_t)seed, &loss);
      failed |= acc < 0;
      printf("   %6.1f%% (%.4f)   ", 100 * acc, loss);
      fflush(stdout);
    }
    printf("\n");
  }
  return failed;
}
