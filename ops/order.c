/* order.c — positions by order along an axis: argmax, argmin, topk, and
 * the minimum.
 *
 *   argmax, argmin: y[p] = the first k attaining max_k (min_k) x[p,k], as an
 *                   i64 tensor; not differentiable (no node)
 *   topk:           idx[p, :] = the positions of the k largest (or
 *                   smallest) x[p, :], in order (i64, no node);
 *                   values = gather(x, axis, idx), so the values'
 *                   gradient is scattered back to the chosen positions
 *   min_axis:       -max_axis(-x): the gradient goes to the first minimum
 *
 * p runs over the positions off the axis, k along it.  A NaN counts as the
 * extreme for argmax and argmin (it is found, as in PyTorch) and as larger
 * than every number for topk.  Ties go to the lower position. */
#include "op.h"

/* A value and its position along the axis, for sorting. */
typedef struct {
  double v;
  int64_t pos;
} cr__ranked;

/* qsort orders: descending (NaN first) and ascending (NaN last), ties by
 * position */
static int ranked_desc(const void *pa, const void *pb) {
  const cr__ranked *a = pa, *b = pb;
  const bool na = a->v != a->v, nb = b->v != b->v;
  if (na != nb)
    return na ? -1 : 1;
  if (!na && a->v != b->v)
    return a->v > b->v ? -1 : 1;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}
static int ranked_asc(const void *pa, const void *pb) {
  const cr__ranked *a = pa, *b = pb;
  const bool na = a->v != a->v, nb = b->v != b->v;
  if (na != nb)
    return na ? 1 : -1;
  if (!na && a->v != b->v)
    return a->v < b->v ? -1 : 1;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

#define T float
#define SFX _f
#include "order_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "order_kernels.inc"
#undef T
#undef SFX

/* x's shape with the axis set to len */
static void with_axis(const cr_tensor *x, int axis, int64_t len, int64_t *shape) {
  for (int d = 0; d < x->ndim; d++)
    shape[d] = d == axis ? len : x->shape[d];
}

static cr_tensor *arg_extreme(cr_ctx *ctx, const char *op, cr_tensor *x, int axis, bool keepdim,
                              bool max) {
  if (!cr__check_inputs(ctx, op, 1, &x) || !cr__axis(ctx, op, x, &axis))
    return NULL;
  int64_t line[CR_MAX_DIMS], shape[CR_MAX_DIMS], dense[CR_MAX_DIMS];
  with_axis(x, axis, 1, line);
  int ndim = 0;
  for (int d = 0; d < x->ndim; d++)
    if (keepdim || d != axis)
      shape[ndim++] = line[d];
  if (ndim == 0)
    shape[ndim++] = 1;
  cr_tensor *y = cr__new(ctx, CR_I64, ndim, shape);
  if (!y)
    return NULL;
  cr__contig_strides(x->ndim, line, dense);
  const int64_t *st[2] = {dense, x->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, line, 2, st);
  if (x->dtype == CR_F32)
    arg_lines_f(&it, y->data, x->data, x->shape[axis], x->stride[axis], max);
  else
    arg_lines_d(&it, y->data, x->data, x->shape[axis], x->stride[axis], max);
  return y; /* indices: no node */
}

cr_tensor *cr_argmax(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim) {
  return arg_extreme(ctx, "argmax", x, axis, keepdim, true);
}
cr_tensor *cr_argmin(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim) {
  return arg_extreme(ctx, "argmin", x, axis, keepdim, false);
}

cr_tensor *cr_min_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim) {
  return cr_neg(ctx, cr_max_axis(ctx, cr_neg(ctx, x), axis, keepdim));
}

cr_tensor *cr_topk(cr_ctx *ctx, cr_tensor *x, int64_t k, int axis, bool largest,
                   cr_tensor **indices) {
  if (indices)
    *indices = NULL;
  if (!cr__check_inputs(ctx, "topk", 1, &x) || !cr__axis(ctx, "topk", x, &axis))
    return NULL;
  const int64_t K = x->shape[axis];
  if (k < 1 || k > K)
    return cr__fail(ctx, CR_ERR_ARG, "topk: %s axis %d: k %lld out of range [1,%lld]", cr__shp(x),
                    axis, (long long)k, (long long)K);
  int64_t line[CR_MAX_DIMS], shape[CR_MAX_DIMS];
  with_axis(x, axis, 1, line);
  with_axis(x, axis, k, shape);
  cr_tensor *idx = cr__new(ctx, CR_I64, x->ndim, shape);
  cr__ranked *scratch = cr__alloc(ctx, (size_t)K * sizeof *scratch);
  if (!idx || !scratch)
    return NULL;
  const int64_t *st[2] = {idx->stride, x->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, line, 2, st);
  if (x->dtype == CR_F32)
    topk_lines_f(&it, idx->data, idx->stride[axis], x->data, K, x->stride[axis], k, largest,
                 scratch);
  else
    topk_lines_d(&it, idx->data, idx->stride[axis], x->data, K, x->stride[axis], k, largest,
                 scratch);
  cr_tensor *values = cr_gather(ctx, x, axis, idx);
  if (values && indices)
    *indices = idx;
  return values;
}
