/* softmax.c — softmax and log-softmax along one axis.
 *
 *   softmax:     y[p,k] = exp(x[p,k] - m[p]) / s[p];
 *                gx[p,k] += y[p,k] * (gy[p,k] - sum_j gy[p,j] y[p,j])
 *   log_softmax: y[p,k] = x[p,k] - m[p] - log s[p];
 *                gx[p,k] += gy[p,k] - exp(y[p,k]) * sum_j gy[p,j]
 *
 * with m[p] = max_k x[p,k] and s[p] = sum_k exp(x[p,k] - m[p]): subtracting
 * the max keeps every exp in (0, 1], so large logits never overflow.  p runs
 * over the positions of x with the axis left out, k along the axis.  y has
 * x's shape and is contiguous; x may be strided (a transposed view).  The
 * VJPs only read y, so x is not needed after the forward pass. */
#include "op.h"

typedef struct {
  int axis;
} softmax_attr;
CR__ATTR(softmax_attr)

#define T float
#define SFX _f
#include "softmax_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "softmax_kernels.inc"
#undef T
#undef SFX

static void softmax_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status softmax_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_softmax = {.name = "softmax",
                                   .n_inputs = 1,
                                   .vjp = softmax_vjp,
                                   .vjp_graph = softmax_vjp_graph,
                                   .reads = CR__READS_OUT};
const cr_op_desc cr__op_log_softmax = {.name = "log_softmax",
                                       .n_inputs = 1,
                                       .vjp = softmax_vjp,
                                       .vjp_graph = softmax_vjp_graph,
                                       .reads = CR__READS_OUT};

/* An iterator over the start of every line along axis of a tensor of
 * x's shape: x's shape with the axis set to 1. */
static void lines_init(cr__iter *it, const cr_tensor *x, int axis, int nops,
                       const int64_t *const *strides) {
  int64_t shape[CR_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++)
    shape[d] = d == axis ? 1 : x->shape[d];
  cr__iter_init(it, x->ndim, shape, nops, strides);
}

static cr_tensor *softmax_impl(cr_ctx *ctx, const cr_op_desc *op, bool log_form, cr_tensor *x,
                               int axis) {
  if (!cr__check_inputs(ctx, op->name, 1, &x))
    return NULL;
  if (!cr__axis(ctx, op->name, x, &axis))
    return NULL;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!y)
    return NULL;
  const int64_t *st[2] = {y->stride, x->stride};
  cr__iter it;
  lines_init(&it, x, axis, 2, st);
  const int64_t K = x->shape[axis], sx = x->stride[axis], sy = y->stride[axis];
  if (x->dtype == CR_F32)
    softmax_lines_f(&it, y->data, x->data, K, sy, sx, log_form);
  else
    softmax_lines_d(&it, y->data, x->data, K, sy, sx, log_form);
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd)
    softmax_attr_of(nd)->axis = axis;
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_softmax(cr_ctx *ctx, cr_tensor *x, int axis) {
  return softmax_impl(ctx, &cr__op_softmax, false, x, axis);
}
cr_tensor *cr_log_softmax(cr_ctx *ctx, cr_tensor *x, int axis) {
  return softmax_impl(ctx, &cr__op_log_softmax, true, x, axis);
}

/* y, gy and gx are all contiguous with x's shape: one set of strides. */
static void softmax_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (!gx)
    return;
  const cr_tensor *y = nd->out, *gy = y->grad;
  const int axis = softmax_attr_of(nd)->axis;
  const bool log_form = nd->op == &cr__op_log_softmax;
  const int64_t *st[1] = {y->stride};
  cr__iter it;
  lines_init(&it, y, axis, 1, st);
  const int64_t K = y->shape[axis], sk = y->stride[axis];
  if (y->dtype == CR_F32)
    softmax_vjp_lines_f(&it, gx->data, y->data, gy->data, K, sk, log_form);
  else
    softmax_vjp_lines_d(&it, gx->data, y->data, gy->data, K, sk, log_form);
}

/* softmax: gx = y * (gy - sum(gy * y));  log_softmax: gx = gy - exp(y) * sum(gy)
 * (sums along the axis, kept as a size-1 dim that broadcasts back) */
static cr_status softmax_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *y = nd->out;
  const int axis = softmax_attr_of(nd)->axis;
  if (nd->op == &cr__op_log_softmax)
    gx[0] = cr_sub(ctx, gy, cr_mul(ctx, cr_exp(ctx, y), cr_sum_axis(ctx, gy, axis, true)));
  else
    gx[0] = cr_mul(ctx, y, cr_sub(ctx, gy, cr_sum_axis(ctx, cr_mul(ctx, gy, y), axis, true)));
  return cr_ctx_status(ctx);
}
