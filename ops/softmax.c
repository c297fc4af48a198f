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

static void softmax_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_softmax = {"softmax", 1, softmax_vjp, false};
const cr_op_desc cr__op_log_softmax = {"log_softmax", 1, softmax_vjp, false};

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
#define SOFTMAX_FWD(T)                                                                             \
  for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                                      \
    for (int64_t i = 0; i < it.inner; i++) {                                                       \
      const T *px = (const T *)x->data + it.off[1] + i * it.istr[1];                               \
      T *py = (T *)y->data + it.off[0] + i * it.istr[0];                                           \
      T m = px[0];                                                                                 \
      for (int64_t k = 1; k < K; k++)                                                              \
        m = px[k * sx] > m ? px[k * sx] : m;                                                       \
      T s = 0;                                                                                     \
      for (int64_t k = 0; k < K; k++) {                                                            \
        const T e = CR_EXP(px[k * sx] - m);                                                        \
        s += e;                                                                                    \
        py[k * sy] = e;                                                                            \
      }                                                                                            \
      if (log_form) {                                                                              \
        const T ls = m + CR_LOG(s);                                                                \
        for (int64_t k = 0; k < K; k++)                                                            \
          py[k * sy] = px[k * sx] - ls;                                                            \
      } else {                                                                                     \
        const T inv = (T)1 / s;                                                                    \
        for (int64_t k = 0; k < K; k++)                                                            \
          py[k * sy] *= inv;                                                                       \
      }                                                                                            \
    }                                                                                              \
  }
  CR_DISPATCH(x->dtype, SOFTMAX_FWD);
#undef SOFTMAX_FWD
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd)
    nd->iattr[0] = axis;
  return y;
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
  const int axis = (int)nd->iattr[0];
  const bool log_form = nd->op == &cr__op_log_softmax;
  const int64_t *st[1] = {y->stride};
  cr__iter it;
  lines_init(&it, y, axis, 1, st);
  const int64_t K = y->shape[axis], sk = y->stride[axis];
#define SOFTMAX_BWD(T)                                                                             \
  for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                                      \
    for (int64_t i = 0; i < it.inner; i++) {                                                       \
      const int64_t o = it.off[0] + i * it.istr[0];                                                \
      const T *py = (const T *)y->data + o, *pgy = (const T *)gy->data + o;                        \
      T *pgx = (T *)gx->data + o;                                                                  \
      T dot = 0; /* softmax: sum gy*y;  log_softmax: sum gy */                                     \
      for (int64_t k = 0; k < K; k++)                                                              \
        dot += log_form ? pgy[k * sk] : pgy[k * sk] * py[k * sk];                                  \
      for (int64_t k = 0; k < K; k++) {                                                            \
        const int64_t j = k * sk;                                                                  \
        pgx[j] += log_form ? pgy[j] - CR_EXP(py[j]) * dot : py[j] * (pgy[j] - dot);                \
      }                                                                                            \
    }                                                                                              \
  }
  CR_DISPATCH(y->dtype, SOFTMAX_BWD);
#undef SOFTMAX_BWD
}
