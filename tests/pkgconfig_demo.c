/* The README's 15-line example, built by tests/test_pkgconfig.sh against the
 * installed library through pkg-config, as an outside program would be. */
#include <chainrule.h>
#include <stdio.h>

int main(void) {
  cr_ctx *ctx = cr_ctx_new();
  cr_tensor *W = cr_tensor_new(ctx, CR_F64, CR_SHAPE(2, 2)); /* a parameter */
  if (cr_copy_into(ctx, W, cr_from_array(ctx, CR_F64, CR_SHAPE(2, 2), (double[]){.1, .2, .3, .4})))
    return 1;
  cr_set_requires_grad(W, true);
  cr_tensor *x = cr_from_array(ctx, CR_F64, CR_SHAPE(2, 1), (double[]){1, 2});
  cr_tensor *L = cr_sum(ctx, cr_tanh(ctx, cr_matmul(ctx, W, x))); /* L = sum(tanh(W x)) */
  if (!L || cr_backward(ctx, L)) {
    fprintf(stderr, "%s\n", cr_ctx_error(ctx));
    return 1;
  }
  cr_print(stdout, cr_grad(W)); /* dL/dW = (1 - tanh(Wx)^2) x^T */
  cr_tensor_free(W);
  cr_ctx_free(ctx);
  return 0;
}
