/* custom_op.c — ops of your own, the equivalent of torch.autograd.Function:
 * a forward and its vector-Jacobian product, gradient-checked like a
 * built-in (chainrule/function.h).
 *
 *   logsumexp(x) over the last axis, stable:  y = m + log sum_j exp(x_j - m)
 *                                            gx = gy * exp(x - y)  (softmax)
 *   sign with a straight-through estimator:  y = sign(x),  gx = gy
 *
 * logsumexp's backward is made of ops, so it is differentiable again:
 * gradgradcheck checks its second derivative.  The straight-through
 * estimator is a deliberate lie (sign's true derivative is 0), used to
 * train through a quantiser; gradcheck would rightly reject it, so it is
 * shown by what it computes instead.  Built by the tests against the
 * installed library through pkg-config:
 *   cc custom_op.c $(pkg-config --cflags --libs chainrule) */
#include <chainrule.h>
#include <stdio.h>

/* ---- logsumexp */

static cr_tensor *lse_forward(cr_ctx *ctx, cr_fn_ctx *fc, cr_tensor *const *in, int n, void *user) {
  (void)fc, (void)n, (void)user;
  cr_tensor *m = cr_max_axis(ctx, in[0], -1, true); /* [N,1]: exp(x - m) <= 1 */
  cr_tensor *s = cr_sum_axis(ctx, cr_exp(ctx, cr_sub(ctx, in[0], m)), -1, true);
  return cr_add(ctx, m, cr_log(ctx, s)); /* [N,1] */
}

static cr_status lse_backward(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                              void *user) {
  (void)user;
  cr_tensor *x = cr_fn_input(fc, 0), *y = cr_fn_output(fc);
  gx[0] = cr_mul(ctx, gy, cr_exp(ctx, cr_sub(ctx, x, y))); /* gy * softmax(x) */
  return cr_ctx_status(ctx);
}

static const cr_function_def logsumexp = {"logsumexp", 1, lse_forward, lse_backward};

/* ---- sign, straight through */

static cr_tensor *sign_forward(cr_ctx *ctx, cr_fn_ctx *fc, cr_tensor *const *in, int n,
                               void *user) {
  (void)fc, (void)n, (void)user;
  /* sign(x) = x / |x| (x != 0 here), computed with ops in no-grad mode */
  return cr_div(ctx, in[0], cr_abs(ctx, in[0]));
}

static cr_status ste_backward(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                              void *user) {
  (void)fc, (void)user;
  gx[0] = gy; /* pretend sign were the identity */
  return cr_ctx_status(ctx);
}

static const cr_function_def sign_ste = {"sign_ste", 1, sign_forward, ste_backward};

/* the function gradchecked: L = sum(logsumexp(x)^2) */
static cr_tensor *lse_squared(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  (void)n, (void)user;
  return cr_sum(ctx, cr_square(ctx, cr_function_apply(ctx, &logsumexp, in, 1, NULL)));
}

int main(void) {
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_tensor *x = cr_tensor_new(ctx, CR_F64, CR_SHAPE(3, 5));
  if (!ctx || !rng || !x || cr_fill_normal(ctx, x, rng, 0, 2) != CR_OK) {
    fprintf(stderr, "custom-op: %s\n", ctx ? cr_ctx_error(ctx) : "out of memory");
    return 1;
  }
  /* stable where the naive formula overflows: logsumexp([1000, 1000]) */
  cr_tensor *big = cr_from_f64(ctx, CR_SHAPE(1, 2), (const double[]){1000, 1000});
  cr_tensor *lb = cr_function_apply(ctx, &logsumexp, &big, 1, NULL);
  if (!lb) {
    fprintf(stderr, "custom-op: %s\n", cr_ctx_error(ctx));
    return 1;
  }
  printf("logsumexp([1000, 1000]) = %.6f (1000 + log 2)\n", cr_item(lb));

  int failed = 0;
  cr_gradcheck_report rep;
  bool ok = cr_gradcheck(lse_squared, &x, 1, NULL, NULL, &rep);
  printf("gradcheck of logsumexp: %s, max abs err %.2e over %lld elements\n", ok ? "pass" : "FAIL",
         rep.max_abs_err, (long long)rep.n_checked);
  failed += !ok;
  ok = cr_gradgradcheck(lse_squared, &x, 1, NULL, NULL, &rep);
  printf("gradgradcheck of logsumexp: %s, max abs err %.2e\n", ok ? "pass" : "FAIL",
         rep.max_abs_err);
  failed += !ok;

  /* straight through: the gradient of sum(w * sign(x)) reaches x as w */
  cr_tensor *v = cr_from_f64(ctx, CR_SHAPE(3), (const double[]){-0.7, 0.2, 1.5});
  cr_set_requires_grad(v, true);
  cr_tensor *w = cr_from_f64(ctx, CR_SHAPE(3), (const double[]){1, 2, 3});
  cr_tensor *q = cr_function_apply(ctx, &sign_ste, &v, 1, NULL);
  if (!q || cr_backward(ctx, cr_sum(ctx, cr_mul(ctx, q, w))) != CR_OK) {
    fprintf(stderr, "custom-op: %s\n", cr_ctx_error(ctx));
    return 1;
  }
  printf("sign_ste([-0.7, 0.2, 1.5]) = [%g, %g, %g], gradient through it = [%g, %g, %g]\n",
         cr_get_flat(q, 0), cr_get_flat(q, 1), cr_get_flat(q, 2), cr_get_flat(cr_grad(v), 0),
         cr_get_flat(cr_grad(v), 1), cr_get_flat(cr_grad(v), 2));
  cr_tensor_free(x);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return failed ? 1 : 0;
}
