/* scan.c — cumulative sums along an axis.
 *
 *   cumsum: y[.., k, ..] = sum_{j <= k} x[.., j, ..];
 *           gx[.., j, ..] += sum_{k >= j} gy[.., k, ..]   (a reversed cumsum)
 *
 * The op carries a `reverse` flag so that its VJP is the same op reversed,
 * and the graph VJP of a reversed cumsum is a forward one again.  Sums
 * accumulate in double for both dtypes (as PyTorch's CPU kernel does). */
#include "op.h"

#define T float
#define SFX _f
#include "scan_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "scan_kernels.inc"
#undef T
#undef SFX

typedef struct {
  int axis;
  bool reverse; /* sums over j >= k */
} cumsum_attr;
CR__ATTR(cumsum_attr)

static void cumsum_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status cumsum_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_cumsum = {
    .name = "cumsum", .n_inputs = 1, .vjp = cumsum_vjp, .vjp_graph = cumsum_vjp_graph, .reads = 0};

/* d (= or +=) cumsum of s along axis (d, s of one shape) */
static void scan(cr_tensor *d, const cr_tensor *s, int axis, bool reverse, bool add) {
  int64_t shape[CR_MAX_DIMS];
  for (int k = 0; k < s->ndim; k++)
    shape[k] = k == axis ? 1 : s->shape[k];
  const int64_t *st[2] = {d->stride, s->stride};
  cr__iter it;
  cr__iter_init(&it, s->ndim, shape, 2, st);
  const int64_t K = s->shape[axis];
  if (d->dtype == CR_F32)
    cumsum_lines_f(&it, d->data, s->data, K, d->stride[axis], s->stride[axis], reverse, add);
  else
    cumsum_lines_d(&it, d->data, s->data, K, d->stride[axis], s->stride[axis], reverse, add);
}

static cr_tensor *cumsum(cr_ctx *ctx, cr_tensor *x, int axis, bool reverse) {
  if (!cr__check_inputs(ctx, "cumsum", 1, &x) || !cr__axis(ctx, "cumsum", x, &axis))
    return NULL;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!y)
    return NULL;
  scan(y, x, axis, reverse, false);
  cr_node *nd = cr__record(ctx, &cr__op_cumsum, y, 1, &x);
  if (nd)
    *cumsum_attr_of(nd) = (cumsum_attr){axis, reverse};
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_cumsum(cr_ctx *ctx, cr_tensor *x, int axis) { return cumsum(ctx, x, axis, false); }

/* gx += the cumsum of gy in the other direction */
static void cumsum_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  const cumsum_attr *at = cumsum_attr_of(nd);
  if (gx)
    scan(gx, nd->out->grad, at->axis, !at->reverse, true);
}

static cr_status cumsum_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const cumsum_attr *at = cumsum_attr_of(nd);
  gx[0] = cumsum(ctx, gy, at->axis, !at->reverse);
  return cr_ctx_status(ctx);
}
