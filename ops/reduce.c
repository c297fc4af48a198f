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

static void reduce_all_vjp(cr_ctx *ctx, cr_node *nd);
static void reduce_axis_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_sum = {"sum", 1, reduce_all_vjp, false};
const cr_op_desc cr__op_mean = {"mean", 1, reduce_all_vjp, false};
const cr_op_desc cr__op_sum_axis = {"sum_axis", 1, reduce_axis_vjp, false};
const cr_op_desc cr__op_mean_axis = {"mean_axis", 1, reduce_axis_vjp, false};
const cr_op_desc cr__op_max_axis = {"max_axis", 1, reduce_axis_vjp, false};

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
#define SUM_ALL(T)                                                                                 \
  {                                                                                                \
    double acc = 0;                                                                                \
    for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                                    \
      const T *px = (const T *)x->data + it.off[0];                                                \
      for (int64_t i = 0; i < it.inner; i++)                                                       \
        acc += px[i * it.istr[0]];                                                                 \
    }                                                                                              \
    *(T *)y->data = (T)(acc / div);                                                                \
  }
  CR_DISPATCH(x->dtype, SUM_ALL);
#undef SUM_ALL
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd)
    nd->dattr[0] = div;
  return y;
}

cr_tensor *cr_sum(cr_ctx *ctx, cr_tensor *x) { return reduce_all(ctx, R_SUM, x); }
cr_tensor *cr_mean(cr_ctx *ctx, cr_tensor *x) { return reduce_all(ctx, R_MEAN, x); }

/* gx[i] += gy / div for every i */
static void reduce_all_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (!gx)
    return;
  const cr_tensor *gy = nd->out->grad;
  double div = nd->dattr[0];
#define SUM_ALL_BWD(T)                                                                             \
  {                                                                                                \
    T *g = gx->data;                                                                               \
    const T d = (T)(((const T *)gy->data)[0] / div);                                               \
    for (int64_t i = 0; i < gx->numel; i++)                                                        \
      g[i] += d;                                                                                   \
  }
  CR_DISPATCH(gx->dtype, SUM_ALL_BWD);
#undef SUM_ALL_BWD
}

/* ---- along one axis: sum_axis, mean_axis, max_axis */

/* x's shape with the axis set to 1 (the shape y has under keepdim). */
static void line_shape(const cr_tensor *x, int axis, int64_t *shape) {
  for (int d = 0; d < x->ndim; d++)
    shape[d] = d == axis ? 1 : x->shape[d];
}

/* y[p] = reduce_k x[p,k]; arg (may be NULL) receives k* for max. */
static void axis_forward(red_kind k, cr_tensor *y, const cr_tensor *x, int axis, int64_t *arg) {
  int64_t shape[CR_MAX_DIMS], ystride[CR_MAX_DIMS];
  line_shape(x, axis, shape);
  cr__contig_strides(x->ndim, shape, ystride);
  const int64_t *st[2] = {ystride, x->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, shape, 2, st);
  const int64_t K = x->shape[axis], sk = x->stride[axis];
  const double div = k == R_MEAN_AXIS ? (double)K : 1.0;
#define AX_FWD(T)                                                                                  \
  for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                                      \
    for (int64_t i = 0; i < it.inner; i++) {                                                       \
      const int64_t yo = it.off[0] + i * it.istr[0];                                               \
      const T *line = (const T *)x->data + it.off[1] + i * it.istr[1];                             \
      T *py = (T *)y->data + yo;                                                                   \
      if (k == R_MAX_AXIS) {                                                                       \
        T best = line[0];                                                                          \
        int64_t bk = 0;                                                                            \
        for (int64_t j = 1; j < K; j++) {                                                          \
          const T v = line[j * sk];                                                                \
          if (v > best || (v != v && best == best)) {                                              \
            best = v;                                                                              \
            bk = j;                                                                                \
          }                                                                                        \
        }                                                                                          \
        *py = best;                                                                                \
        if (arg)                                                                                   \
          arg[yo] = bk;                                                                            \
      } else {                                                                                     \
        double acc = 0;                                                                            \
        for (int64_t j = 0; j < K; j++)                                                            \
          acc += line[j * sk];                                                                     \
        *py = (T)(acc / div);                                                                      \
      }                                                                                            \
    }                                                                                              \
  }
  CR_DISPATCH(x->dtype, AX_FWD);
#undef AX_FWD
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
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  int64_t *arg = NULL; /* [y's numel] winning k for the VJP of max */
  if (nd) {
    nd->iattr[0] = axis;
    nd->iattr[1] = k;
    if (k == R_MAX_AXIS) {
      arg = cr__alloc(ctx, (size_t)y->numel * sizeof *arg);
      if (!arg)
        return NULL;
      nd->saved = arg;
    }
  }
  axis_forward(k, y, x, axis, arg);
  return y;
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
  const int axis = (int)nd->iattr[0];
  const red_kind k = (red_kind)nd->iattr[1];
  const int64_t *arg = nd->saved;
  int64_t shape[CR_MAX_DIMS], ystride[CR_MAX_DIMS];
  line_shape(x, axis, shape);
  cr__contig_strides(x->ndim, shape, ystride);
  const int64_t *st[2] = {ystride, gx->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, shape, 2, st);
  const int64_t K = x->shape[axis], sk = gx->stride[axis];
  const double div = k == R_MEAN_AXIS ? (double)K : 1.0;
#define AX_BWD(T)                                                                                  \
  for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                                      \
    for (int64_t i = 0; i < it.inner; i++) {                                                       \
      const int64_t yo = it.off[0] + i * it.istr[0];                                               \
      T *line = (T *)gx->data + it.off[1] + i * it.istr[1];                                        \
      const T g = ((const T *)gy->data)[yo];                                                       \
      if (k == R_MAX_AXIS) {                                                                       \
        line[arg[yo] * sk] += g;                                                                   \
      } else {                                                                                     \
        const T d = (T)(g / div);                                                                  \
        for (int64_t j = 0; j < K; j++)                                                            \
          line[j * sk] += d;                                                                       \
      }                                                                                            \
    }                                                                                              \
  }
  CR_DISPATCH(x->dtype, AX_BWD);
#undef AX_BWD
}
