/* reduce.c — sums, means and maxima, over everything or along one axis.
 *
 *   sum:       y = sum_i x[i]              -> [1];  gx[i] += gy
 *   mean:      y = sum_i x[i] / n          -> [1];  gx[i] += gy / n
 *   sum_axis:  y[p] = sum_k x[p,k];                 gx[p,k] += gy[p]
 *   mean_axis: y[p] = sum_k x[p,k] / K;             gx[p,k] += gy[p] / K
 *   max_axis:  y[p] = max_k x[p,k];                 gx[p,k*] += gy[p]
 *
 * Here p runs over every position of x with the axis left out and k along
 * the axis (K = its size); k* is the FIRST k attaining the maximum, so on a
 * tie exactly one element receives the gradient (a NaN counts as maximal,
 * so it propagates).  Sums accumulate in double for both dtypes.
 *
 * Shapes: keepdim keeps the axis with size 1; without it the axis is
 * removed, and removing the only axis of a 1-d tensor gives [1].  The
 * result and its gradient are contiguous, so y's elements lie in the same
 * order as those of x's shape with the axis set to 1; every loop below
 * walks that "line" shape with cr__iter (x may be strided) and steps along
 * the axis by hand. */
#include "op.h"

typedef enum { R_SUM, R_MEAN, R_SUM_AXIS, R_MEAN_AXIS, R_MAX_AXIS, R_COUNT } red_kind;

typedef struct {
  red_kind kind;
  int axis;   /* the axis reduced (axis ops) */
  double div; /* 1 for sums, the element count for means */
} reduce_attr;
CR__ATTR(reduce_attr)

#define T float
#define SFX _f
#include "reduce_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "reduce_kernels.inc"
#undef T
#undef SFX

static void reduce_all_vjp(cr_ctx *ctx, cr_node *nd);
static void reduce_axis_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status reduce_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_sum = {
    .name = "sum", .n_inputs = 1, .vjp = reduce_all_vjp, .vjp_graph = reduce_vjp_graph, .reads = 0};
const cr_op_desc cr__op_mean = {.name = "mean",
                                .n_inputs = 1,
                                .vjp = reduce_all_vjp,
                                .vjp_graph = reduce_vjp_graph,
                                .reads = 0};
const cr_op_desc cr__op_sum_axis = {.name = "sum_axis",
                                    .n_inputs = 1,
                                    .vjp = reduce_axis_vjp,
                                    .vjp_graph = reduce_vjp_graph,
                                    .reads = 0};
const cr_op_desc cr__op_mean_axis = {.name = "mean_axis",
                                     .n_inputs = 1,
                                     .vjp = reduce_axis_vjp,
                                     .vjp_graph = reduce_vjp_graph,
                                     .reads = 0};
const cr_op_desc cr__op_max_axis = {.name = "max_axis",
                                    .n_inputs = 1,
                                    .vjp = reduce_axis_vjp,
                                    .vjp_graph = reduce_vjp_graph,
                                    .reads = 0};

static const cr_op_desc *const descs[R_COUNT] = {&cr__op_sum, &cr__op_mean, &cr__op_sum_axis,
                                                 &cr__op_mean_axis, &cr__op_max_axis};

/* ---- over all elements: sum, mean */

static cr_tensor *reduce_all(cr_ctx *ctx, red_kind k, cr_tensor *x) {
  const cr_op_desc *op = descs[k];
  if (!cr__check_inputs(ctx, op->name, 1, &x))
    return NULL;
  const int64_t one = 1;
  cr_tensor *y = cr__new(ctx, x->dtype, 1, &one);
  if (!y)
    return NULL;
  double div = k == R_MEAN ? (double)x->numel : 1.0;
  const int64_t *st[1] = {x->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 1, st);
  if (x->dtype == CR_F32)
    *(float *)y->data = (float)(sum_all_f(&it, x->data) / div);
  else
    *(double *)y->data = sum_all_d(&it, x->data) / div;
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd)
    *reduce_attr_of(nd) = (reduce_attr){k, 0, div};
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_sum(cr_ctx *ctx, cr_tensor *x) { return reduce_all(ctx, R_SUM, x); }
cr_tensor *cr_mean(cr_ctx *ctx, cr_tensor *x) { return reduce_all(ctx, R_MEAN, x); }

/* gx[i] += gy / div for every i */
static void reduce_all_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (!gx)
    return;
  const cr_tensor *gy = nd->out->grad;
  double div = reduce_attr_of(nd)->div;
  if (gx->dtype == CR_F32)
    add_const_f(gx->data, (float)(((const float *)gy->data)[0] / div), gx->numel);
  else
    add_const_d(gx->data, ((const double *)gy->data)[0] / div, gx->numel);
}

/* ---- along one axis: sum_axis, mean_axis, max_axis */

/* x's shape with the axis set to 1 (the shape y has under keepdim). */
static void line_shape(const cr_tensor *x, int axis, int64_t *shape) {
  for (int d = 0; d < x->ndim; d++)
    shape[d] = d == axis ? 1 : x->shape[d];
}

/* An iterator over the starts of x's lines along axis: operand 0 walks a
 * dense tensor of the line shape (y, gy), operand 1 the strides of t. */
static void lines_iter(cr__iter *it, const cr_tensor *x, int axis, const cr_tensor *t) {
  int64_t shape[CR_MAX_DIMS], ystride[CR_MAX_DIMS];
  line_shape(x, axis, shape);
  cr__contig_strides(x->ndim, shape, ystride);
  const int64_t *st[2] = {ystride, t->stride};
  cr__iter_init(it, x->ndim, shape, 2, st);
}

static cr_tensor *reduce_axis(cr_ctx *ctx, red_kind k, cr_tensor *x, int axis, bool keepdim) {
  const cr_op_desc *op = descs[k];
  if (!cr__check_inputs(ctx, op->name, 1, &x))
    return NULL;
  if (!cr__axis(ctx, op->name, x, &axis))
    return NULL;
  int64_t shape[CR_MAX_DIMS];
  int ndim = 0;
  for (int d = 0; d < x->ndim; d++)
    if (keepdim || d != axis)
      shape[ndim++] = d == axis ? 1 : x->shape[d];
  if (ndim == 0)
    shape[ndim++] = 1; /* the only axis of a 1-d tensor removed */
  cr_tensor *y = cr__new(ctx, x->dtype, ndim, shape);
  if (!y)
    return NULL;
  int64_t *arg = NULL; /* [y's numel] winning k, for the VJPs of max */
  if (k == R_MAX_AXIS && cr__will_record(ctx, 1, &x) &&
      !(arg = cr__alloc(ctx, (size_t)y->numel * sizeof *arg)))
    return NULL;
  const int64_t K = x->shape[axis], sk = x->stride[axis];
  const double div = k == R_MEAN_AXIS ? (double)K : 1.0;
  cr__iter it;
  lines_iter(&it, x, axis, x);
  if (x->dtype == CR_F32)
    axis_reduce_f(&it, y->data, x->data, K, sk, div, k == R_MAX_AXIS, arg);
  else
    axis_reduce_d(&it, y->data, x->data, K, sk, div, k == R_MAX_AXIS, arg);
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd) {
    *reduce_attr_of(nd) = (reduce_attr){k, axis, div};
    nd->saved = arg;
  }
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_sum_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim) {
  return reduce_axis(ctx, R_SUM_AXIS, x, axis, keepdim);
}
cr_tensor *cr_mean_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim) {
  return reduce_axis(ctx, R_MEAN_AXIS, x, axis, keepdim);
}
cr_tensor *cr_max_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim) {
  return reduce_axis(ctx, R_MAX_AXIS, x, axis, keepdim);
}

/* sum, mean: gx[p,k] += gy[p] / div for every k;  max: gx[p,k*] += gy[p] */
static void reduce_axis_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0];
  cr_tensor *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  const cr_tensor *gy = nd->out->grad;
  const reduce_attr *at = reduce_attr_of(nd);
  const int64_t *arg = at->kind == R_MAX_AXIS ? nd->saved : NULL;
  cr__iter it;
  lines_iter(&it, x, at->axis, gx);
  const int64_t K = x->shape[at->axis], sk = gx->stride[at->axis];
  if (x->dtype == CR_F32)
    axis_spread_f(&it, gx->data, gy->data, K, sk, at->div, arg);
  else
    axis_spread_d(&it, gx->data, gy->data, K, sk, at->div, arg);
}

/* The one-hot mask of max's winners: 1 at gx[p, arg[p]], 0 elsewhere (a
 * constant: the derivative of max is piecewise constant). */
static cr_tensor *winner_mask(cr_ctx *ctx, const cr_node *nd) {
  cr_tensor *x = nd->in[0], *m = cr__const_like(ctx, x);
  if (!m)
    return NULL;
  memset(m->data, 0, (size_t)m->numel * cr_dtype_size(m->dtype));
  const reduce_attr *at = reduce_attr_of(nd);
  int64_t shape[CR_MAX_DIMS];
  line_shape(x, at->axis, shape);
  cr_tensor *ones = cr_full(ctx, x->dtype, x->ndim, shape, 1.0);
  if (!ones)
    return NULL;
  cr__iter it;
  lines_iter(&it, x, at->axis, m);
  if (x->dtype == CR_F32)
    axis_spread_f(&it, m->data, ones->data, x->shape[at->axis], m->stride[at->axis], 1, nd->saved);
  else
    axis_spread_d(&it, m->data, ones->data, x->shape[at->axis], m->stride[at->axis], 1, nd->saved);
  return m;
}

/* gx = gy / div broadcast back over x's shape (through the keepdim shape
 * for the axis ops); for max only the winners: times the one-hot mask */
static cr_status reduce_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0];
  const reduce_attr *at = reduce_attr_of(nd);
  cr_tensor *g = at->div != 1.0 ? cr_div_scalar(ctx, gy, at->div) : gy;
  if (at->kind != R_SUM && at->kind != R_MEAN) {
    int64_t shape[CR_MAX_DIMS];
    line_shape(x, at->axis, shape);
    g = cr_reshape(ctx, g, x->ndim, shape);
  }
  g = cr_expand(ctx, g, x->ndim, x->shape);
  if (at->kind == R_MAX_AXIS)
    g = cr_mul(ctx, g, winner_mask(ctx, nd));
  gx[0] = g;
  return cr_ctx_status(ctx);
}
