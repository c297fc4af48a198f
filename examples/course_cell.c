/* course_cell.c — a handout: define a recurrent cell (Elman's, h_t = tanh(x_t W^T +
 * h_{t-1} U^T + b)), unroll it, gradcheck it, look at its gradient flow.  No gradient
 * is written by hand: the cell is ops, the unrolled graph is ops, backward is the chain rule. */
#include "chainrule.h"
#include <math.h>
#include <stdio.h>

enum { T = 12, B = 2, I = 3, H = 5 };

/* 1. Define it: the shapes of its parameters, and one step written with ops. */
static void shapes(int i, int64_t in, int64_t hid, int *nd, int64_t *s) {
  *nd = i < 2 ? 2 : 1; /* weight_ih [H,I], weight_hh [H,H], bias [H] */
  s[0] = hid, s[1] = i == 0 ? in : hid;
}
static cr_status step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x, cr_tensor *const *h,
                      cr_tensor **h_new, cr_tensor **out) {
  cr_tensor *const *p = L->params; /* in the order of param_names */
  cr_tensor *a = cr_add(ctx, cr_linear(ctx, x, p[0], p[2]), cr_linear(ctx, h[0], p[1], NULL));
  *h_new = *out = cr_tanh(ctx, a); /* h_t = tanh(x W^T + b + h U^T) */
  return cr_ctx_status(ctx);
}
static const cr_cell_def elman = {.name = "elman",
                                  .n_states = 1,
                                  .n_params = 3,
                                  .param_names = {"weight_ih", "weight_hh", "bias"},
                                  .param_shape = shapes,
                                  .step = step};

/* The loss of the unrolled cell as a function of its parameters and input,
 * L = sum_t sum(h_t * w_t) (w fixed random weights), for the gradient check. */
static cr_rnn_config cfg = {&elman, I, H, 1, 0.0, false, CR_F64};
static cr_tensor *unrolled(cr_ctx *ctx, cr_tensor *const *in, int n, void *w) {
  cr_tensor *out;
  (void)n;
  if (cr_rnn_forward_params(ctx, &cfg, in, in[3], NULL, NULL, NULL, &out, NULL))
    return NULL;
  return cr_sum(ctx, cr_mul(ctx, out, w));
}

int main(void) {
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng); /* parameters weight_ih_l0, ... */
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, I), 0, 1);
  cr_tensor *w = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, B, H), 0, 1));
  if (!rnn || !x || !w)
    return fprintf(stderr, "%s\n", cr_ctx_error(ctx)), 1;

  /* 2. Gradcheck it, unrolled over T steps: backward against central
   *    differences for every element of every parameter and of x. */
  cr_tensor *in[4] = {cr_rnn_param(rnn, 0), cr_rnn_param(rnn, 1), cr_rnn_param(rnn, 2), x};
  cr_gradcheck_report rep;
  bool ok = cr_gradcheck(unrolled, in, 4, w, NULL, &rep);
  printf("gradcheck of %s unrolled over %d steps: %s (%lld elements, max abs error %.1e)\n",
         elman.name, T, ok ? "pass" : rep.message, (long long)rep.n_checked, rep.max_abs_err);

  /* 3. Unroll it with every step's state kept, and 4. look at the gradient
   *    flow: with the loss on the last step only, ||dL/dh_t|| for each t. */
  cr_tensor *h[T], *out;
  cr_rnn_forward_opts o = {.step_states = h, .retain_step_grads = true};
  if (cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL) ||
      cr_backward(ctx, cr_sum(ctx, h[T - 1])))
    return fprintf(stderr, "%s\n", cr_ctx_error(ctx)), 1;
  printf("gradient flow, L = sum(h_%d) (one * per factor 10^(1/12)):\n", T - 1);
  double top = 0; /* the last step's norm: the bars' scale */
  for (int t = T - 1; t >= 0; t--) {
    const cr_tensor *g = cr_grad(h[t]); /* dL/dh_t, [B,H] */
    double s = 0;
    for (int64_t i = 0; i < cr_numel(g); i++)
      s += cr_get_flat(g, i) * cr_get_flat(g, i);
    top = top ? top : sqrt(s);
    printf("  %-5s ||dL/dh_t|| = %.3e %.*s\n", cr_name(h[t]), sqrt(s),
           (int)fmax(0, 40 + 12 * log10(sqrt(s) / top)),
           "****************************************");
  }
  cr_tensor_free(w), cr_rnn_free(rnn), cr_rng_free(rng), cr_ctx_free(ctx);
  return ok ? 0 : 1;
}
