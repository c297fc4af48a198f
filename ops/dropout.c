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

typedef struct {
  double scale; /* 1 / (1 - p) */
} dropout_attr;
CR__ATTR(dropout_attr)

#define T float
#define SFX _f
#include "dropout_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "dropout_kernels.inc"
#undef T
#undef SFX

static void dropout_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status dropout_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_dropout = {.name = "dropout",
                                   .n_inputs = 1,
                                   .vjp = dropout_vjp,
                                   .vjp_graph = dropout_vjp_graph,
                                   .reads = 0};

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
  if (x->dtype == CR_F32)
    dropout_apply_f(&it, y->data, x->data, mask, (float)scale);
  else
    dropout_apply_d(&it, y->data, x->data, mask, scale);
  cr_node *nd = cr__record(ctx, &cr__op_dropout, y, 1, &x);
  if (nd) {
    nd->saved = mask;
    dropout_attr_of(nd)->scale = scale;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* gx, gy and mask are all dense row-major over x's shape. */
static void dropout_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (!gx)
    return;
  const double s = dropout_attr_of(nd)->scale;
  if (gx->dtype == CR_F32)
    dropout_grad_f(gx->data, nd->out->grad->data, nd->saved, (float)s, gx->numel);
  else
    dropout_grad_d(gx->data, nd->out->grad->data, nd->saved, s, gx->numel);
}

/* gx = gy * (mask / (1 - p)), the mask a constant */
static cr_status dropout_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0], *m = cr_zeros(ctx, x->dtype, x->ndim, x->shape);
  if (!m)
    return cr_ctx_status(ctx);
  const double s = dropout_attr_of(nd)->scale;
  if (m->dtype == CR_F32)
    dropout_grad_f(m->data, NULL, nd->saved, (float)s, m->numel);
  else
    dropout_grad_d(m->data, NULL, nd->saved, s, m->numel);
  gx[0] = cr_mul(ctx, gy, m);
  return cr_ctx_status(ctx);
}
