/* broadcast.c — broadcasting as ops, a pair of adjoints.
 *
 *   expand: y = x broadcast to shape S;   gx += sum of gy over the dims
 *                                         where x was broadcast
 *   sum_to: y = x summed down to shape S; gx += gy broadcast back to x's shape
 *
 * Each is the other's VJP, which is what the differentiable VJPs of the
 * broadcasting ops (add, mul, ..., addmm's bias) are made of. */
#include "op.h"

static void expand_vjp(cr_ctx *ctx, cr_node *nd);
static void sum_to_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status expand_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status sum_to_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_expand = {
    .name = "expand", .n_inputs = 1, .vjp = expand_vjp, .vjp_graph = expand_vjp_graph, .reads = 0};
const cr_op_desc cr__op_sum_to = {
    .name = "sum_to", .n_inputs = 1, .vjp = sum_to_vjp, .vjp_graph = sum_to_vjp_graph, .reads = 0};

/* Does small broadcast to big (NumPy rules)?  Else an error naming op. */
static bool broadcasts(cr_ctx *ctx, const char *op, int small_nd, const int64_t *small, int big_nd,
                       const int64_t *big, const char *what) {
  bool ok = small_nd <= big_nd;
  for (int d = 0; ok && d < small_nd; d++) {
    int64_t s = small[small_nd - 1 - d], b = big[big_nd - 1 - d];
    ok = s == b || s == 1;
  }
  if (!ok) {
    char a[96], b[96];
    cr_shape_str(a, sizeof a, small_nd, small);
    cr_shape_str(b, sizeof b, big_nd, big);
    cr__fail(ctx, CR_ERR_SHAPE,
             "%s: %s %s %s: each dim must equal the other's or be 1, "
             "aligned at the right",
             op, a, what, b);
  }
  return ok;
}

/* x's values seen over shape (ndim dims): 0 strides where x is broadcast */
static cr_tensor bcast_view(const cr_tensor *x, int ndim, const int64_t *shape) {
  cr_tensor v = *x;
  v.ndim = ndim;
  memcpy(v.shape, shape, sizeof(int64_t) * (size_t)ndim);
  cr__bcast_strides(x, ndim, shape, v.stride);
  return v;
}

cr_tensor *cr_expand(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape) {
  if (!cr__check_inputs(ctx, "expand", 1, &x) || !cr__check_shape(ctx, "expand", ndim, shape))
    return NULL;
  if (!broadcasts(ctx, "expand", x->ndim, x->shape, ndim, shape, "to"))
    return NULL;
  cr_tensor *y = cr__new(ctx, x->dtype, ndim, shape);
  if (!y)
    return NULL;
  cr_tensor v = bcast_view(x, ndim, shape);
  cr__copy_convert(y, &v, false);
  cr__record(ctx, &cr__op_expand, y, 1, &x);
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_sum_to(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape) {
  if (!cr__check_inputs(ctx, "sum_to", 1, &x) || !cr__check_shape(ctx, "sum_to", ndim, shape))
    return NULL;
  if (!broadcasts(ctx, "sum_to", ndim, shape, x->ndim, x->shape, "from"))
    return NULL;
  cr_tensor *y = cr__new(ctx, x->dtype, ndim, shape);
  if (!y)
    return NULL;
  memset(y->data, 0, (size_t)y->numel * cr_dtype_size(y->dtype));
  cr__add_reduced(y, x);
  cr__record(ctx, &cr__op_sum_to, y, 1, &x);
  return ctx->status == CR_OK ? y : NULL;
}

/* gx += sum of gy over the broadcast dims */
static void expand_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (gx)
    cr__add_reduced(gx, nd->out->grad);
}

/* gx += gy broadcast to x's shape */
static void sum_to_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  cr_tensor v = bcast_view(nd->out->grad, x->ndim, x->shape);
  cr__copy_convert(gx, &v, true);
}

static cr_status expand_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  gx[0] = cr__reduce_to(ctx, gy, nd->in[0]);
  return cr_ctx_status(ctx);
}

static cr_status sum_to_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0];
  gx[0] = cr_expand(ctx, gy, x->ndim, x->shape);
  return cr_ctx_status(ctx);
}
