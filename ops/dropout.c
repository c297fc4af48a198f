/* dropout.c — inverted dropout.
 *
 *   dropout: mask[i] = [u_i >= p] with u_i ~ U[0,1) drawn from rng;
 *            y[i] = x[i] * mask[i] / (1 - p);   gx[i] += gy[i] * mask[i] / (1 - p)
 *
 * "Inverted": the kept elements are scaled up during training so that the
 * expected value of y is x, and evaluation needs no rescaling — in
 * evaluation mode (cr_training false), or with p == 0, y is x itself.
 * The mask is drawn in x's row-major element order, one cr_rng_uniform per
 * element, so the same rng state gives the same mask whatever x's strides;
 * it is kept in the arena (one byte per element) for the VJP. */
#include "op.h"

static void dropout_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_dropout = {"dropout", 1, dropout_vjp, false};

cr_tensor *cr_dropout(cr_ctx *ctx, cr_tensor *x, double p, cr_rng *rng) {
  if (!cr__check_inputs(ctx, "dropout", 1, &x))
    return NULL;
  if (!(p >= 0 && p < 1))
    return cr__fail(ctx, CR_ERR_ARG, "dropout: %s: p %g is out of range [0,1)", cr__shp(x), p);
  if (!rng)
    return cr__fail(ctx, CR_ERR_ARG, "dropout: %s: rng is NULL (create one with cr_rng_new)",
                    cr__shp(x));
  if (!cr_training(ctx) || p == 0)
    return x;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  unsigned char *mask = cr__alloc(ctx, (size_t)x->numel); /* [numel] 1 = kept */
  if (!y || !mask)
    return NULL;
  for (int64_t i = 0; i < x->numel; i++)
    mask[i] = cr_rng_uniform(rng) >= p;
  const double scale = 1.0 / (1.0 - p);
  /* y is contiguous: its offset is the row-major index into mask */
  const int64_t *st[2] = {y->stride, x->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 2, st);
#define DROPOUT_FWD(T)                                                                             \
  {                                                                                                \
    const T s = (T)scale;                                                                          \
    for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                                    \
      T *py = (T *)y->data + it.off[0];                                                            \
      const T *px = (const T *)x->data + it.off[1];                                                \
      const unsigned char *pm = mask + it.off[0];                                                  \
      for (int64_t i = 0; i < it.inner; i++)                                                       \
        py[i * it.istr[0]] = pm[i * it.istr[0]] ? px[i * it.istr[1]] * s : (T)0;                   \
    }                                                                                              \
  }
  CR_DISPATCH(x->dtype, DROPOUT_FWD);
#undef DROPOUT_FWD
  cr_node *nd = cr__record(ctx, &cr__op_dropout, y, 1, &x);
  if (nd) {
    nd->saved = mask;
    nd->dattr[0] = scale;
  }
  return y;
}

/* gx, gy and mask are all dense row-major over x's shape. */
static void dropout_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (!gx)
    return;
  const unsigned char *mask = nd->saved;
  const cr_tensor *gy = nd->out->grad;
#define DROPOUT_BWD(T)                                                                             \
  {                                                                                                \
    const T s = (T)nd->dattr[0];                                                                   \
    T *g = gx->data;                                                                               \
    const T *pgy = gy->data;                                                                       \
    for (int64_t i = 0; i < gx->numel; i++)                                                        \
      if (mask[i])                                                                                 \
        g[i] += pgy[i] * s;                                                                        \
  }
  CR_DISPATCH(gx->dtype, DROPOUT_BWD);
#undef DROPOUT_BWD
}
