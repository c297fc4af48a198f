/* loss_pointwise.c — elementwise losses of an input x and a target y, in
 * PyTorch's semantics, as compositions (as layers are): each is a few
 * elementwise ops and a reduction, so its gradients in x and y, and their
 * own derivatives, come from ops that are checked one by one.
 *
 *   l1:         l = |x - y|
 *   mse:        l = (x - y)^2                 (mean: the fused cr_mse)
 *   smooth_l1:  l = d^2 / (2 beta) where d = |x - y| < beta, else d - beta/2
 *               (beta 0: l1)
 *   huber:      l = d^2 / 2 where d < delta, else delta (d - delta/2)
 *   kl_div:     x log-probabilities; l = xlogy(y, y) - y x (0 where y = 0),
 *               or with log_target l = exp(y) (y - x)
 *   bce_with_logits: l = w ((1 - y) x + (1 + (pw - 1) y) softplus(-x)), the
 *               stable form of -w (pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x)))
 *
 * The piecewise ones choose a branch with where() on a constant mask, so
 * neither branch's derivative leaks into the other.  Reduction: none
 * keeps l; sum; mean over all elements; batchmean (kl_div only) the sum
 * over the first dim's size. */
#include "op.h"

/* l reduced as asked (op names the loss in messages). */
static cr_tensor *reduce_loss(cr_ctx *ctx, const char *op, cr_tensor *l, cr_reduction r) {
  if (!l)
    return NULL;
  switch (r) {
  case CR_REDUCE_NONE: return l;
  case CR_REDUCE_SUM: return cr_sum(ctx, l);
  case CR_REDUCE_MEAN: return cr_mean(ctx, l);
  case CR_REDUCE_BATCHMEAN:
    if (strcmp(op, "kl_div") == 0)
      return cr_div_scalar(ctx, cr_sum(ctx, l), (double)cr_dim(l, 0));
    break;
  }
  return cr__fail(ctx, CR_ERR_ARG, "%s: %s: reduction %d: use CR_REDUCE_MEAN, _SUM or _NONE%s", op,
                  cr__shp(l), (int)r, strcmp(op, "kl_div") ? "" : " or _BATCHMEAN");
}

/* Inputs valid, x and y of one shape (the losses do not broadcast). */
static bool same_shape(cr_ctx *ctx, const char *op, cr_tensor *x, cr_tensor *y) {
  cr_tensor *in[2] = {x, y};
  if (!cr__check_inputs(ctx, op, 2, in))
    return false;
  if (x->ndim != y->ndim || memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim)) {
    cr__fail(ctx, CR_ERR_SHAPE,
             "%s: input %s, target %s: shapes differ (the losses do not "
             "broadcast)",
             op, cr__shp(x), cr__shp(y));
    return false;
  }
  return true;
}

cr_tensor *cr_l1_loss(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, cr_reduction r) {
  if (!same_shape(ctx, "l1_loss", x, y))
    return NULL;
  return reduce_loss(ctx, "l1_loss", cr_abs(ctx, cr_sub(ctx, x, y)), r);
}

cr_tensor *cr_mse_loss(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, cr_reduction r) {
  if (!same_shape(ctx, "mse_loss", x, y))
    return NULL;
  if (r == CR_REDUCE_MEAN)
    return cr_mse(ctx, x, y);
  return reduce_loss(ctx, "mse_loss", cr_square(ctx, cr_sub(ctx, x, y)), r);
}

/* where(|d| < s, quad, lin) for d = x - y: the two branches of smooth_l1
 * and huber (quad = d^2 * q, lin = (|d| - s/2) * m) */
static cr_tensor *two_branch(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, double s, double q,
                             double m) {
  cr_tensor *d = cr_sub(ctx, x, y), *ad = cr_abs(ctx, d);
  cr_tensor *inside = cr_lt(ctx, ad, cr__scalar_like(ctx, x, s));
  cr_tensor *quad = cr_mul_scalar(ctx, cr_square(ctx, d), q);
  cr_tensor *lin = cr_sub_scalar(ctx, ad, 0.5 * s);
  return cr_where(ctx, inside, quad, m == 1 ? lin : cr_mul_scalar(ctx, lin, m));
}

cr_tensor *cr_smooth_l1_loss(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, double beta, cr_reduction r) {
  if (!same_shape(ctx, "smooth_l1_loss", x, y))
    return NULL;
  if (!(beta >= 0) || !isfinite(beta))
    return cr__fail(ctx, CR_ERR_ARG, "smooth_l1_loss: %s: beta %g must be finite and >= 0",
                    cr__shp(x), beta);
  if (beta == 0) /* PyTorch's rule: the l1 loss */
    return reduce_loss(ctx, "smooth_l1_loss", cr_abs(ctx, cr_sub(ctx, x, y)), r);
  return reduce_loss(ctx, "smooth_l1_loss", two_branch(ctx, x, y, beta, 0.5 / beta, 1), r);
}

cr_tensor *cr_huber_loss(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, double delta, cr_reduction r) {
  if (!same_shape(ctx, "huber_loss", x, y))
    return NULL;
  if (!(delta > 0) || !isfinite(delta))
    return cr__fail(ctx, CR_ERR_ARG, "huber_loss: %s: delta %g must be finite and > 0", cr__shp(x),
                    delta);
  return reduce_loss(ctx, "huber_loss", two_branch(ctx, x, y, delta, 0.5, delta), r);
}

cr_tensor *cr_kl_div(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, bool log_target, cr_reduction r) {
  if (!same_shape(ctx, "kl_div", x, y))
    return NULL;
  cr_tensor *l;
  if (log_target) {
    l = cr_mul(ctx, cr_exp(ctx, y), cr_sub(ctx, y, x));
  } else {
    /* xlogy(y, y): 0 where y = 0, with log taken of 1 there so that no
     * -inf reaches either branch's gradient */
    cr_tensor *zero = cr__scalar_like(ctx, y, 0), *one = cr__scalar_like(ctx, y, 1);
    cr_tensor *is0 = cr_eq(ctx, y, zero);
    cr_tensor *ylogy = cr_mul(ctx, y, cr_log(ctx, cr_where(ctx, is0, one, y)));
    l = cr_sub(ctx, ylogy, cr_mul(ctx, y, x));
  }
  return reduce_loss(ctx, "kl_div", l, r);
}

/* t (may be NULL) broadcasts to x's shape?  Else an error. */
static bool broadcasts_to(cr_ctx *ctx, const char *what, cr_tensor *t, const cr_tensor *x) {
  if (!t)
    return true;
  int nd;
  int64_t shape[CR_MAX_DIMS];
  if (!cr__bcast_shape(ctx, "bce_with_logits", t, x, &nd, shape))
    return false;
  if (nd != x->ndim || memcmp(shape, x->shape, sizeof(int64_t) * (size_t)nd)) {
    cr__fail(ctx, CR_ERR_SHAPE,
             "bce_with_logits: input %s, %s %s: must broadcast to the "
             "input's shape",
             cr__shp(x), what, cr__shp(t));
    return false;
  }
  return true;
}

cr_tensor *cr_bce_with_logits(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, const cr_bce_opts *opts) {
  static const cr_bce_opts defaults = {0};
  const cr_bce_opts *o = opts ? opts : &defaults;
  if (!same_shape(ctx, "bce_with_logits", x, y))
    return NULL;
  cr_tensor *in[3] = {x, o->weight, o->pos_weight};
  for (int k = 1; k < 3; k++)
    if (in[k] && !cr__check_inputs(ctx, "bce_with_logits", 2, (cr_tensor *[]){x, in[k]}))
      return NULL;
  if (!broadcasts_to(ctx, "weight", o->weight, x) ||
      !broadcasts_to(ctx, "pos_weight", o->pos_weight, x))
    return NULL;
  cr_tensor *sp = cr_softplus(ctx, cr_neg(ctx, x), 1, INFINITY); /* log(1 + exp(-x)) */
  if (o->pos_weight)                                             /* 1 + (pw - 1) y */
    sp = cr_mul(ctx, cr_add_scalar(ctx, cr_mul(ctx, cr_sub_scalar(ctx, o->pos_weight, 1), y), 1),
                sp);
  cr_tensor *l = cr_add(ctx, cr_mul(ctx, cr_rsub_scalar(ctx, y, 1), x), sp);
  if (o->weight)
    l = cr_mul(ctx, l, o->weight);
  return reduce_loss(ctx, "bce_with_logits", l, o->reduction);
}
