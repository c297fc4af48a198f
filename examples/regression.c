/* regression.c — a two-layer MLP learns y = sin(3x) on [-1, 1].
 *
 * The smallest complete training loop: the model is PyTorch's
 * nn.Sequential(nn.Linear(1, H), nn.Tanh(), nn.Linear(H, 1)) as chainrule
 * modules, each step builds its graph in the context's arena, backward
 * fills the parameters' gradients, SGD updates them, and a reset frees the
 * step.  Prints the model, the loss as it falls and the peak RSS at the
 * end, which stays flat however many steps run (the arena is reused).
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
      fprintf(stderr,
              "regression: unknown or incomplete option '%s'\n"
              "usage: regression [--steps N] [--hidden H] [--lr LR] [--seed S]\n",
              a);
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
  /* the model: 0.weight [H,1], 0.bias [H], 2.weight [1,H], 2.bias [1] */
  int64_t H = hidden;
  cr_module *fc1 = cr_nn_linear(ctx, 1, H, true, CR_F64, rng);
  cr_module *net =
      CR_SEQUENTIAL(ctx, fc1, cr_nn_tanh(ctx), cr_nn_linear(ctx, H, 1, true, CR_F64, rng));
  cr_optim *opt = cr_module_optim(ctx, net, CR_SGD, lr);
  if (!opt) {
    fprintf(stderr, "regression: %s\n", cr_ctx_error(ctx));
    return 1;
  }
  cr_module_print(stdout, net);

  const int64_t N = 64; /* batch of points */
  double first = 0, last = 0;
  for (long step = 1; step <= steps; step++) {
    /* pred = net(x) [N,1];  loss = mean((pred - sin(3x))^2) */
    cr_tensor *x = cr_rand_uniform(ctx, rng, CR_F64, CR_SHAPE(N, 1), -1, 1);
    cr_tensor *y = cr_sin(ctx, cr_mul_scalar(ctx, x, 3));
    cr_tensor *loss = cr_mse(ctx, cr_module_forward(ctx, net, x), y);
    cr_module_zero_grad(net);
    if (!loss || cr_backward(ctx, loss) != CR_OK || cr_optim_step(ctx, opt) != CR_OK) {
      fprintf(stderr, "regression: step %ld: %s\n", step, cr_ctx_error(ctx));
      return 1;
    }
    last = cr_item(loss);
    if (step == 1)
      first = last;
    if (step == 1 || step % (steps / 10 > 0 ? steps / 10 : 1) == 0)
      printf("step %6ld  loss %.6f\n", step, last);
    cr_ctx_reset(ctx);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("loss %.6f -> %.6f over %ld steps; peak RSS %ld KiB\n", first, last, steps, ru.ru_maxrss);
  cr_optim_free(opt);
  cr_module_free(net);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return last < first ? 0 : 1;
}
