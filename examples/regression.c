/* regression.c — a two-layer MLP learns y = sin(3x) on [-1, 1].
 *
 * The smallest complete training loop: parameters are persistent tensors,
 * each step builds its graph in the context's arena, backward fills the
 * parameters' gradients, plain SGD updates them, and a reset frees the
 * step.  Prints the loss as it falls and the peak RSS at the end, which
 * stays flat however many steps run (the arena is reused).
 *
 *   usage: regression [--steps N] [--hidden H] [--lr LR] [--seed S]
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "chainrule.h"

static bool parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

static void sgd_step(cr_tensor **params, int n, double lr) {
  for (int i = 0; i < n; i++) {
    double *p = cr_data(params[i]);
    const double *g = cr_data(cr_grad(params[i]));
    for (int64_t k = 0; k < cr_numel(params[i]); k++)
      p[k] -= lr * g[k];
  }
}

int main(int argc, char **argv) {
  long steps = 2000, hidden = 32, seed = 1;
  double lr = 0.1;
  for (int i = 1; i < argc; i += 2) { /* every option takes a value */
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = v != NULL;
    if (!strcmp(a, "--steps") && ok)
      ok = parse_long(v, 1, 100000000, &steps);
    else if (!strcmp(a, "--hidden") && ok)
      ok = parse_long(v, 1, 4096, &hidden);
    else if (!strcmp(a, "--seed") && ok)
      ok = parse_long(v, 0, 1L << 62, &seed);
    else if (!strcmp(a, "--lr") && ok) {
      char *end;
      lr = strtod(v, &end);
      ok = *end == '\0' && lr > 0 && lr < 10;
    } else {
      fprintf(stderr, "regression: unknown or incomplete option '%s'\n"
                      "usage: regression [--steps N] [--hidden H] [--lr LR] [--seed S]\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "regression: bad value '%s' for %s\n", v, a);
      return 2;
    }
  }
  char info[256];
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new((uint64_t)seed);
  printf("chainrule regression example: %s\n", cr_runtime_describe(info, sizeof info));
  /* parameters: W1 [1,H], b1 [H], W2 [H,1], b2 [1] */
  int64_t H = hidden;
  cr_tensor *W1 = cr_tensor_new(ctx, CR_F64, CR_SHAPE(1, H));
  cr_tensor *b1 = cr_tensor_new(ctx, CR_F64, CR_SHAPE(H));
  cr_tensor *W2 = cr_tensor_new(ctx, CR_F64, CR_SHAPE(H, 1));
  cr_tensor *b2 = cr_tensor_new(ctx, CR_F64, CR_SHAPE(1));
  cr_tensor *params[4] = {W1, b1, W2, b2};
  if (cr_fill_uniform(ctx, W1, rng, -1, 1) || cr_fill_uniform(ctx, W2, rng, -1 / sqrt((double)H), 1 / sqrt((double)H))) {
    fprintf(stderr, "regression: %s\n", cr_ctx_error(ctx));
    return 1;
  }
  for (int i = 0; i < 4; i++)
    cr_set_requires_grad(params[i], true);

  const int64_t N = 64; /* batch of points */
  double first = 0, last = 0;
  for (long step = 1; step <= steps; step++) {
    cr_tensor *x = cr_rand_uniform(ctx, rng, CR_F64, CR_SHAPE(N, 1), -1, 1);
    cr_tensor *y = cr_from_array(ctx, CR_F64, CR_SHAPE(N, 1), cr_data(x)); /* then sin(3x) */
    double *yv = cr_data(y);
    for (int64_t i = 0; i < N; i++)
      yv[i] = sin(3 * yv[i]);
    /* pred = tanh(x W1 + b1) W2 + b2;  loss = mean((pred - y)^2) */
    cr_tensor *h = cr_tanh(ctx, cr_add(ctx, cr_matmul(ctx, x, W1), b1));
    cr_tensor *pred = cr_add(ctx, cr_matmul(ctx, h, W2), b2);
    cr_tensor *loss = cr_mse(ctx, pred, y);
    for (int i = 0; i < 4; i++)
      cr_zero_grad(params[i]);
    if (!loss || cr_backward(ctx, loss) != CR_OK) {
      fprintf(stderr, "regression: step %ld: %s\n", step, cr_ctx_error(ctx));
      return 1;
    }
    last = cr_item(loss);
    if (step == 1)
      first = last;
    sgd_step(params, 4, lr);
    if (step == 1 || step % (steps / 10 > 0 ? steps / 10 : 1) == 0)
      printf("step %6ld  loss %.6f\n", step, last);
    cr_ctx_reset(ctx);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("loss %.6f -> %.6f over %ld steps; peak RSS %ld KiB\n", first, last, steps, ru.ru_maxrss);
  for (int i = 0; i < 4; i++)
    cr_tensor_free(params[i]);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return last < first ? 0 : 1;
}
