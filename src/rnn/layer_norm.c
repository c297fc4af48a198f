/* layer_norm.c — layer normalisation composed from ops (it has no op of
 * its own, so its gradient is the chain rule over these):
 *   mu  = mean(v)                    over the last axis
 *   var = mean((v - mu)^2)           (population variance)
 *   LN(v) = (v - mu) / sqrt(var + eps) */
#include "layer_norm.h"

cr_tensor *cr__layer_norm(cr_ctx *ctx, cr_tensor *v, double eps) {
  if (!v)
    return NULL;
  cr_tensor *d = cr_sub(ctx, v, cr_mean_axis(ctx, v, -1, true)); /* v - mu */
  cr_tensor *var = cr_mean_axis(ctx, cr_square(ctx, d), -1, true);
  return cr_mul(ctx, d, cr_pow_scalar(ctx, cr_add_scalar(ctx, var, eps), -0.5));
}

/* v [..., G*H] normalised per group of H: reshaped to [..., G, H] (a view)
 * and back. */
cr_tensor *cr__layer_norm_groups(cr_ctx *ctx, cr_tensor *v, int G, double eps) {
  if (!v)
    return NULL;
  int64_t shape[CR_MAX_DIMS];
  const int n = cr_ndim(v);
  if (n + 1 > CR_MAX_DIMS)
    return cr__fail(ctx, CR_ERR_SHAPE, "layer_norm: %s has too many dims to group", cr__shp(v));
  memcpy(shape, cr_shape(v), sizeof(int64_t) * (size_t)n);
  shape[n - 1] = G;
  shape[n] = cr_shape(v)[n - 1] / G;
  cr_tensor *y = cr__layer_norm(ctx, cr_reshape(ctx, v, n + 1, shape), eps);
  return cr_reshape(ctx, y, n, cr_shape(v));
}
