/* custom_cell.c — a recurrent cell of your own, end to end.
 *
 * The minimal gated unit (mgu.c) is defined with chainrule's public cell
 * API: a parameter list and a step function written with ops, nothing
 * else.  This program
 *   1. gradient-checks it unrolled over T = 6 steps with 2 layers (float64
 *      central differences for every parameter, the input and h0), and
 *   2. trains it on a memory task — output the bit seen DELAY steps ago —
 *      where the loss falls from chance (ln 2 = 0.693) towards 0.
 *
 *   usage: custom-cell [--steps N] [--seed S]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "chainrule/optim.h"
#include "mgu.h"

/* ---- 1. gradient check ---------------------------------------------------- */

typedef struct {
  cr_rnn_config cfg;
  int n_params;
  cr_tensor *w; /* loss weights [T,B,H] */
} check_case;

/* loss = sum(rnn(x, h0) * w) as a function of (params..., x, h0) */
static cr_tensor *unrolled_loss(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  (void)n;
  check_case *c = user;
  cr_tensor *out, *init = in[c->n_params + 1];
  if (cr_rnn_forward_params(ctx, &c->cfg, in, in[c->n_params], &init, NULL, NULL, &out, NULL))
    return NULL;
  return cr_sum(ctx, cr_mul(ctx, out, c->w));
}

static bool gradcheck_mgu(cr_ctx *ctx, cr_rng *rng) {
  enum { T = 6, B = 2, I = 3, H = 4, L = 2 };
  check_case c = {{&mgu_cell, I, H, L, 0, false, CR_F64}, 0, NULL};
  cr_rnn *rnn = cr_rnn_new(ctx, &c.cfg, rng);
  if (!rnn)
    return false;
  c.n_params = cr_rnn_num_params(rnn);
  cr_tensor *in[CR_CELL_MAX_PARAMS * L + 2];
  for (int i = 0; i < c.n_params; i++)
    in[i] = cr_rnn_param(rnn, i);
  in[c.n_params] = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1));
  in[c.n_params + 1] = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(L, B, H), 0, 0.5));
  c.w = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, H), 0, 1));
  cr_gradcheck_opts o;
  cr_gradcheck_default_opts(&o);
  o.atol = 1e-7;
  o.rtol = 1e-6;
  cr_gradcheck_report rep;
  bool ok = cr_gradcheck(unrolled_loss, in, c.n_params + 2, &c, &o, &rep);
  printf("gradcheck of the MGU unrolled over T=%d, %d layers: %lld gradient elements, max abs "
         "error %.2e, max rel error %.2e: %s\n",
         T, L, (long long)rep.n_checked, rep.max_abs_err, rep.max_rel_err,
         ok ? "pass" : rep.message);
  cr_tensor_free(in[c.n_params]);
  cr_tensor_free(in[c.n_params + 1]);
  cr_tensor_free(c.w);
  cr_rnn_free(rnn);
  return ok;
}

/* ---- 2. training on delayed recall ---------------------------------------- */

int main(int argc, char **argv) {
  long steps = 400, seed = 7;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--steps") && i + 1 < argc && atol(argv[i + 1]) > 0)
      steps = atol(argv[++i]);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = atol(argv[++i]);
    else {
      fprintf(stderr,
              "custom-cell: unknown or incomplete option '%s'\n"
              "usage: custom-cell [--steps N] [--seed S]\n",
              argv[i]);
      return 2;
    }
  }
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new((uint64_t)seed);
  char info[256];
  printf("chainrule custom cell example: %s\n", cr_runtime_describe(info, sizeof info));
  if (!gradcheck_mgu(ctx, rng))
    return 1;

  enum { T = 20, B = 32, H = 24, DELAY = 3 };
  cr_rnn_config cfg = {&mgu_cell, 1, H, 1, 0, false, CR_F32};
  cr_module *net = cr_module_new(ctx, "Recall"); /* rnn: the MGU, head: Linear(H, 2) */
  cr_module *rnn = cr_module_add(ctx, net, "rnn", cr_nn_rnn(ctx, &cfg, NULL, rng));
  cr_module *head = cr_module_add(ctx, net, "head", cr_nn_linear(ctx, H, 2, true, CR_F32, rng));
  cr_optim *opt = cr_module_optim(ctx, net, CR_ADAM, 1e-2);
  if (!opt)
    return fprintf(stderr, "custom-cell: %s\n", cr_ctx_error(ctx)), 1;
  printf("training the MGU to output the bit it saw %d steps ago (T=%d, batch %d, hidden %d)\n",
         DELAY, T, B, H);
  float bits[T * B];
  int64_t target[T * B];
  double first = 0, last = 0, acc = 0;
  for (long step = 1; step <= steps; step++) {
    for (int i = 0; i < T * B; i++)
      bits[i] = (float)(cr_rng_uniform(rng) < 0.5);
    for (int t = 0; t < T; t++)
      for (int b = 0; b < B; b++)
        target[t * B + b] = t >= DELAY ? (int64_t)bits[(t - DELAY) * B + b] : 0;
    cr_tensor *x = cr_from_array(ctx, CR_F32, CR_SHAPE(T, B, 1), bits);
    /* score only steps t >= DELAY: earlier targets do not exist */
    cr_tensor *hs = cr_slice(ctx, cr_module_forward(ctx, rnn, x), 0, DELAY, T, 1);
    cr_tensor *logits = cr_module_forward(ctx, head, cr_reshape(ctx, hs, CR_SHAPE(-1, H)));
    cr_tensor *loss = cr_cross_entropy(ctx, logits, target + DELAY * B, CR_NO_IGNORE);
    cr_optim_zero_grad(opt);
    if (!loss || cr_backward(ctx, loss) != CR_OK || cr_optim_step(ctx, opt) != CR_OK)
      break;
    last = cr_item(loss);
    if (step == 1)
      first = last;
    if (step == steps) { /* accuracy of the last batch */
      int right = 0;
      for (int64_t i = 0; i < (T - DELAY) * B; i++)
        right += (cr_get_flat(logits, 2 * i + 1) > cr_get_flat(logits, 2 * i)) ==
                 (target[DELAY * B + i] == 1);
      acc = (double)right / ((T - DELAY) * B);
    }
    if (step == 1 || step % (steps / 8 > 0 ? steps / 8 : 1) == 0)
      printf("step %4ld  loss %.4f\n", step, last);
    cr_ctx_reset(ctx);
  }
  int rc = 0;
  if (cr_ctx_status(ctx) != CR_OK)
    rc = fprintf(stderr, "custom-cell: %s\n", cr_ctx_error(ctx)) > 0;
  else
    printf("loss %.4f -> %.4f (chance ln 2 = 0.6931); accuracy on the last batch %.1f%%\n", first,
           last, 100 * acc);
  cr_optim_free(opt);
  cr_module_free(net);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return rc || !(last < first);
}
