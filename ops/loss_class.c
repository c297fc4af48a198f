/* loss_class.c — losses over class scores with i64 class targets, in
 * PyTorch's semantics (nn.CrossEntropyLoss, nn.NLLLoss).
 *
 *   cross_entropy_ex: x logits, t targets; for each position p (every
 *       element of x with the class axis left out) that is counted
 *       (t_p != ignore_index), with lse_p = log sum_c exp x[p,c] and
 *       W = sum_c w_c:
 *         l_p = (1-e) w_t (lse_p - x[p,t]) + (e/C) sum_c w_c (lse_p - x[p,c])
 *         gx[p,j] += k_p (softmax(x_p)_j a_p - b_pj),
 *         a_p = (1-e) w_t + e W / C,   b_pj = (1-e) w_t [j == t] + e w_j / C
 *   nll_loss: x log-probabilities;
 *         l_p = -w_t x[p,t];   gx[p,t] -= w_t k_p
 *
 * w the class weights (1 when none), e the label smoothing.  Ignored
 * positions have l_p = 0 and no gradient.  Reduction: none gives l (the
 * targets' shape), k_p = gy[p]; sum gives sum_p l_p, k_p = gy; mean gives
 * sum_p l_p / D with D = sum of w_t over the counted positions (their
 * count when unweighted), k_p = gy / D, and 0 with no gradient when
 * nothing is counted (PyTorch gives NaN there).
 *
 * Layout: classes on the last axis ([N,C], [B,T,C]) by default, or on
 * axis 1 ([N,C,d1,...], PyTorch's) with classes_at_dim1; the targets have
 * x's shape without the class axis ([1] for a 1-d x).  The class weights
 * are constants (copied; they get no gradient).  The graph VJPs build the
 * same formulas from softmax(x) and constant tensors. */
#include "op.h"

/* What the forward pass leaves for the VJPs. */
typedef struct {
  int ca;          /* the class axis */
  int64_t C, P;    /* classes, positions */
  int64_t *target; /* [P] copy of the targets */
  int64_t ignore;  /* ignore_index */
  double *w;       /* [C] class weights, or NULL */
  double wsum;     /* sum of w (C when NULL) */
  double eps;      /* label smoothing */
  double *lse;     /* [P] log-sum-exp of each counted position (cross_entropy) */
  cr_reduction red;
  double denom; /* mean: sum of w_t over the counted positions */
} class_saved;

#define T float
#define SFX _f
#include "loss_class_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "loss_class_kernels.inc"
#undef T
#undef SFX

static void ce_vjp(cr_ctx *ctx, cr_node *nd);
static void nll_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status ce_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status nll_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_cross_entropy_ex = {.name = "cross_entropy_ex",
                                            .n_inputs = 1,
                                            .vjp = ce_vjp,
                                            .vjp_graph = ce_vjp_graph,
                                            .reads = CR__READS_IN(0)};
const cr_op_desc cr__op_nll_loss = {
    .name = "nll_loss", .n_inputs = 1, .vjp = nll_vjp, .vjp_graph = nll_vjp_graph, .reads = 0};

/* ---- shared: checks, layout and the saved state */

/* Check the arguments and fill sv (arena arrays); NULL and an error naming
 * op on any mistake. */
static class_saved *class_setup(cr_ctx *ctx, const char *op, cr_tensor *x, cr_tensor *targets,
                                int64_t ignore, const cr_class_loss_opts *opts, bool smoothing) {
  static const cr_class_loss_opts defaults = {0};
  const cr_class_loss_opts *o = opts ? opts : &defaults;
  cr_tensor *in[2] = {x, o->weight};
  if (!cr__check_inputs(ctx, op, o->weight ? 2 : 1, in) ||
      !cr__check_index(ctx, op, "targets", targets))
    return NULL;
  if (o->reduction != CR_REDUCE_MEAN && o->reduction != CR_REDUCE_SUM &&
      o->reduction != CR_REDUCE_NONE)
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: %s: reduction %d: use CR_REDUCE_MEAN, _SUM or _NONE "
                    "(batchmean is kl_div's)",
                    op, cr__shp(x), (int)o->reduction);
  if (!smoothing && o->label_smoothing != 0)
    return cr__fail(ctx, CR_ERR_ARG, "%s: %s: label_smoothing is cross-entropy's option", op,
                    cr__shp(x));
  if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
    return cr__fail(ctx, CR_ERR_ARG, "%s: %s: label_smoothing %g must be in [0, 1]", op, cr__shp(x),
                    o->label_smoothing);
  const int ca = o->classes_at_dim1 ? 1 : x->ndim - 1;
  if (ca >= x->ndim)
    return cr__fail(ctx, CR_ERR_SHAPE, "%s: %s: classes_at_dim1 needs at least 2 dims [N,C,...]",
                    op, cr__shp(x));
  const int64_t C = x->shape[ca], P = x->numel / C;
  /* the targets' shape: x's without the class axis ([1] for a 1-d x) */
  int64_t tshape[CR_MAX_DIMS];
  int tnd = 0;
  for (int d = 0; d < x->ndim; d++)
    if (d != ca)
      tshape[tnd++] = x->shape[d];
  if (tnd == 0)
    tshape[tnd++] = 1;
  if (targets->ndim != tnd || memcmp(targets->shape, tshape, sizeof(int64_t) * (size_t)tnd)) {
    char want[96];
    cr_shape_str(want, sizeof want, tnd, tshape);
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "%s: scores %s, targets %s: the targets must be %s "
                    "(the scores without the class axis %d)",
                    op, cr__shp(x), cr__shp(targets), want, ca);
  }
  if (o->weight && (o->weight->ndim != 1 || o->weight->shape[0] != C))
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "%s: scores %s, weight %s: need one weight per class "
                    "[%lld]",
                    op, cr__shp(x), cr__shp(o->weight), (long long)C);
  class_saved *sv = cr__alloc(ctx, sizeof *sv);
  int64_t *tgt = cr__alloc(ctx, (size_t)P * sizeof *tgt);
  double *lse = cr__alloc(ctx, (size_t)P * sizeof *lse);
  double *w = o->weight ? cr__alloc(ctx, (size_t)C * sizeof *w) : NULL;
  if (!sv || !tgt || !lse || (o->weight && !w))
    return NULL;
  memcpy(tgt, targets->data, (size_t)P * sizeof *tgt); /* i64 tensors are contiguous */
  double wsum = (double)C;
  if (w) {
    cr_to_doubles(o->weight, w);
    wsum = 0;
    for (int64_t c = 0; c < C; c++)
      wsum += w[c];
  }
  double denom = 0;
  for (int64_t p = 0; p < P; p++) {
    if (tgt[p] == ignore)
      continue;
    if (tgt[p] < 0 || tgt[p] >= C)
      return cr__fail(ctx, CR_ERR_ARG,
                      "%s: %s: target %lld at position %lld is out of range "
                      "[0,%lld)",
                      op, cr__shp(x), (long long)tgt[p], (long long)p, (long long)C);
    denom += w ? w[tgt[p]] : 1.0;
  }
  *sv = (class_saved){ca, C, P, tgt, ignore, w, wsum, o->label_smoothing, lse, o->reduction, denom};
  return sv;
}

/* The positions iterator: operand 0 dense over the positions, 1 x, 2 g. */
static void positions(cr__iter *it, const cr_tensor *x, int ca, const cr_tensor *g) {
  int64_t shape[CR_MAX_DIMS], dense[CR_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++)
    shape[d] = d == ca ? 1 : x->shape[d];
  cr__contig_strides(x->ndim, shape, dense);
  const int64_t *st[3] = {dense, x->stride, g ? g->stride : x->stride};
  cr__iter_init(it, x->ndim, shape, 3, st);
}

/* The reduced result from the per-position losses l[P]. */
static cr_tensor *reduced(cr_ctx *ctx, const cr_tensor *x, const cr_tensor *targets,
                          const class_saved *sv, const double *l) {
  if (sv->red == CR_REDUCE_NONE) {
    cr_tensor *y = cr__new(ctx, x->dtype, targets->ndim, targets->shape);
    for (int64_t p = 0; y && p < sv->P; p++)
      cr_set_flat(y, p, l[p]);
    return y;
  }
  double s = 0;
  for (int64_t p = 0; p < sv->P; p++)
    s += l[p];
  if (sv->red == CR_REDUCE_MEAN)
    s = sv->denom != 0 ? s / sv->denom : 0;
  cr_tensor *y = cr__new(ctx, x->dtype, CR_SHAPE(1));
  if (y)
    cr_set_flat(y, 0, s);
  return y;
}

/* k_p = gy[p * gstep] * scale: the upstream gradient per position */
static void upstream(const class_saved *sv, int64_t *gstep, double *scale) {
  *gstep = sv->red == CR_REDUCE_NONE ? 1 : 0;
  *scale = sv->red == CR_REDUCE_MEAN ? 1 / sv->denom : 1;
}

/* No gradient at all: mean over nothing counted. */
static bool no_gradient(const class_saved *sv) {
  return sv->red == CR_REDUCE_MEAN && sv->denom == 0;
}

/* gy as k_p over x's shape: [positions with the class axis 1], or [1] */
static cr_tensor *upstream_graph(cr_ctx *ctx, const cr_tensor *x, const class_saved *sv,
                                 cr_tensor *gy) {
  if (sv->red == CR_REDUCE_NONE) {
    int64_t shape[CR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++)
      shape[d] = d == sv->ca ? 1 : x->shape[d];
    return cr_reshape(ctx, gy, x->ndim, shape);
  }
  return sv->red == CR_REDUCE_MEAN ? cr_div_scalar(ctx, gy, sv->denom) : gy;
}

/* The constant b_pj (or, for nll, -w_t [j == t]) over x's shape, and
 * a_p over the positions (class axis 1; NULL for nll). */
static bool graph_constants(cr_ctx *ctx, const cr_tensor *x, const class_saved *sv, bool nll,
                            cr_tensor **b, cr_tensor **a) {
  int64_t shape[CR_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++)
    shape[d] = d == sv->ca ? 1 : x->shape[d];
  *b = cr_zeros(ctx, x->dtype, x->ndim, x->shape);
  *a = nll ? NULL : cr_zeros(ctx, x->dtype, x->ndim, shape);
  if (!*b || (!nll && !*a))
    return false;
  /* position p, class j sit at flat index (p / inner) * C * inner + j * inner + p % inner
   * of x's shape, inner the size of the dims after the class axis */
  int64_t inner = 1;
  for (int d = sv->ca + 1; d < x->ndim; d++)
    inner *= x->shape[d];
  const double e = sv->eps, C = (double)sv->C;
  for (int64_t p = 0; p < sv->P; p++) {
    const int64_t t = sv->target[p];
    if (t == sv->ignore)
      continue;
    const int64_t base = (p / inner) * sv->C * inner + p % inner;
    const double wt = sv->w ? sv->w[t] : 1.0;
    if (nll) {
      cr_set_flat(*b, base + t * inner, -wt);
      continue;
    }
    cr_set_flat(*a, p, (1 - e) * wt + e * sv->wsum / C);
    for (int64_t j = 0; j < sv->C; j++)
      cr_set_flat(*b, base + j * inner,
                  e * (sv->w ? sv->w[j] : 1.0) / C + (j == t ? (1 - e) * wt : 0));
  }
  return true;
}

/* ---- cross_entropy_ex */

cr_tensor *cr_cross_entropy_ex(cr_ctx *ctx, cr_tensor *logits, cr_tensor *targets,
                               int64_t ignore_index, const cr_class_loss_opts *opts) {
  cr_tensor *x = logits;
  class_saved *sv = class_setup(ctx, "cross_entropy", x, targets, ignore_index, opts, true);
  if (!sv)
    return NULL;
  double *l = cr__alloc(ctx, (size_t)sv->P * sizeof *l);
  if (!l)
    return NULL;
  cr__iter it;
  positions(&it, x, sv->ca, NULL);
  if (x->dtype == CR_F32)
    ce_lines_f(&it, x->data, x->stride[sv->ca], sv, l);
  else
    ce_lines_d(&it, x->data, x->stride[sv->ca], sv, l);
  cr_tensor *y = reduced(ctx, x, targets, sv, l);
  cr_node *nd = cr__record(ctx, &cr__op_cross_entropy_ex, y, 1, &x);
  if (nd)
    nd->saved = sv;
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_cross_entropy_t(cr_ctx *ctx, cr_tensor *logits, cr_tensor *targets,
                              int64_t ignore_index) {
  if (!cr__check_inputs(ctx, "cross_entropy", 1, &logits) ||
      !cr__check_index(ctx, "cross_entropy", "targets", targets))
    return NULL;
  /* [N,C] logits with [N] targets take the fused kernels of cr_cross_entropy */
  if (logits->ndim == 2 && targets->ndim == 1 && targets->shape[0] == logits->shape[0])
    return cr_cross_entropy(ctx, logits, targets->data, ignore_index);
  return cr_cross_entropy_ex(ctx, logits, targets, ignore_index, NULL);
}

static void ce_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *gx = cr__grad_acc(ctx, x);
  const class_saved *sv = nd->saved;
  if (!gx || no_gradient(sv))
    return;
  int64_t gstep;
  double scale;
  upstream(sv, &gstep, &scale);
  cr__iter it;
  positions(&it, x, sv->ca, gx);
  if (x->dtype == CR_F32)
    ce_grad_lines_f(&it, gx->data, x->data, x->stride[sv->ca], gx->stride[sv->ca], sv,
                    nd->out->grad->data, gstep, scale);
  else
    ce_grad_lines_d(&it, gx->data, x->data, x->stride[sv->ca], gx->stride[sv->ca], sv,
                    nd->out->grad->data, gstep, scale);
}

/* gx = (softmax(x) a - b) k */
static cr_status ce_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0], *a, *b;
  const class_saved *sv = nd->saved;
  if (no_gradient(sv) || !graph_constants(ctx, x, sv, false, &b, &a))
    return cr_ctx_status(ctx);
  cr_tensor *p = cr_softmax(ctx, x, sv->ca);
  gx[0] = cr_mul(ctx, cr_sub(ctx, cr_mul(ctx, p, a), b), upstream_graph(ctx, x, sv, gy));
  return cr_ctx_status(ctx);
}

/* ---- nll_loss */

cr_tensor *cr_nll_loss(cr_ctx *ctx, cr_tensor *logp, cr_tensor *targets, int64_t ignore_index,
                       const cr_class_loss_opts *opts) {
  cr_tensor *x = logp;
  class_saved *sv = class_setup(ctx, "nll_loss", x, targets, ignore_index, opts, false);
  if (!sv)
    return NULL;
  double *l = cr__alloc(ctx, (size_t)sv->P * sizeof *l);
  if (!l)
    return NULL;
  cr__iter it;
  positions(&it, x, sv->ca, NULL);
  if (x->dtype == CR_F32)
    nll_lines_f(&it, x->data, x->stride[sv->ca], sv, l);
  else
    nll_lines_d(&it, x->data, x->stride[sv->ca], sv, l);
  cr_tensor *y = reduced(ctx, x, targets, sv, l);
  cr_node *nd = cr__record(ctx, &cr__op_nll_loss, y, 1, &x);
  if (nd)
    nd->saved = sv;
  return ctx->status == CR_OK ? y : NULL;
}

static void nll_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *gx = cr__grad_acc(ctx, x);
  const class_saved *sv = nd->saved;
  if (!gx || no_gradient(sv))
    return;
  int64_t gstep;
  double scale;
  upstream(sv, &gstep, &scale);
  cr__iter it;
  positions(&it, x, sv->ca, gx);
  if (x->dtype == CR_F32)
    nll_grad_lines_f(&it, gx->data, gx->stride[sv->ca], sv, nd->out->grad->data, gstep, scale);
  else
    nll_grad_lines_d(&it, gx->data, gx->stride[sv->ca], sv, nd->out->grad->data, gstep, scale);
}

/* gx = b k with b = -w_t at [p, t]: linear in gy, independent of x */
static cr_status nll_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0], *a, *b;
  const class_saved *sv = nd->saved;
  if (no_gradient(sv) || !graph_constants(ctx, x, sv, true, &b, &a))
    return cr_ctx_status(ctx);
  gx[0] = cr_mul(ctx, b, upstream_graph(ctx, x, sv, gy));
  return cr_ctx_status(ctx);
}
