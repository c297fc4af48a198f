/* linear.c — the affine map every layer uses:  y = x @ W^T + b
 * for x [..., in], W [out, in], b [out].  A composition of ops (addmm of
 * the bias and a product with a transposed view of W), so it has no
 * gradient of its own. */
#include "chainrule/rnn.h"
#include "internal.h"

cr_tensor *cr_linear(cr_ctx *ctx, cr_tensor *x, cr_tensor *W, cr_tensor *b) {
  if (!x || !W)
    return NULL;
  if (W->ndim != 2 || x->shape[x->ndim - 1] != W->shape[1])
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "linear: x %s, W %s: W must be [out, in] with in = "
                    "x's last dim",
                    cr__shp(x), cr__shp(W));
  cr_tensor *Wt = cr_transpose(ctx, W, 0, 1); /* [in, out], a view */
  /* fold the leading dims into rows: [..., in] -> [N, in] */
  cr_tensor *x2 = x->ndim == 2 ? x : cr_reshape(ctx, x, CR_SHAPE(-1, x->shape[x->ndim - 1]));
  cr_tensor *y = b ? cr_addmm(ctx, b, x2, Wt) : cr_matmul(ctx, x2, Wt);
  if (x->ndim == 2 || !y)
    return y;
  int64_t shape[CR_MAX_DIMS]; /* [N, out] -> [..., out] */
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[x->ndim - 1] = W->shape[0];
  return cr_reshape(ctx, y, x->ndim, shape);
}
