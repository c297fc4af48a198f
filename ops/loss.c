/* loss.c — fused losses that end a forward pass in one [1] value.
 *
 *   cross_entropy: logits x [N,C], class targets t[N];  R = rows with
 *                  t[i] != ignore_index, n = |R|
 *                  lse[i] = m[i] + log sum_j exp(x[i,j] - m[i]),  m[i] = max_j x[i,j]
 *                  y = sum_{i in R} (lse[i] - x[i,t[i]]) / n      (y = 0 when n = 0)
 *                  gx[i,j] += gy * (exp(x[i,j] - lse[i]) - [j == t[i]]) / n   for i in R
 *                  (rows not in R get no gradient)
 *   mse:           y = sum_i (a[i] - b[i])^2 / n
 *                  ga[i] += gy * 2 (a[i] - b[i]) / n;   gb[i] -= gy * 2 (a[i] - b[i]) / n
 *
 * Cross-entropy is log_softmax and a pick fused: the log-sum-exp with the
 * max subtracted never overflows, and the gradient (softmax - onehot) needs
 * no [N,C] intermediate.  The targets are copied into the arena, so the
 * caller's array may go away before backward; lse[i] is saved per row. */
#include "op.h"

static void cross_entropy_vjp(cr_ctx *ctx, cr_node *nd);
static void mse_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_cross_entropy = {"cross_entropy", 1, cross_entropy_vjp, false};
const cr_op_desc cr__op_mse = {"mse", 2, mse_vjp, false};

/* ---- cross_entropy */

typedef struct {
  int64_t *target; /* [N] copy of the caller's targets */
  double *lse;     /* [N] log-sum-exp of each counted row */
  int64_t count;   /* rows counted (not ignored) */
} ce_saved;

/* Row kernels, vectorised over the classes when they are contiguous:
 *   lse = m + log sum_j exp(x_j - m),  m = max_j x_j
 *   g_j += c * exp(x_j - lse)          (c = gy / count) */
#define ROW_KERNELS(T, SFX)                                                    \
  CR_KERNEL static double row_lse_##SFX(const T *row, int64_t C, int64_t cs) { \
    T m = row[0], s = 0;                                                       \
    if (cs == 1) {                                                             \
      _Pragma("omp simd reduction(max : m)") for (int64_t j = 1; j < C; j++)   \
        m = row[j] > m ? row[j] : m;                                           \
      _Pragma("omp simd reduction(+ : s)") for (int64_t j = 0; j < C; j++)     \
        s += CR_EXP(row[j] - m);                                               \
    } else {                                                                   \
      for (int64_t j = 1; j < C; j++)                                          \
        m = row[j * cs] > m ? row[j * cs] : m;                                 \
      for (int64_t j = 0; j < C; j++)                                          \
        s += CR_EXP(row[j * cs] - m);                                          \
    }                                                                          \
    return (double)m + (double)CR_LOG(s);                                      \
  }                                                                            \
  CR_KERNEL static void row_grad_##SFX(T *g, const T *row, int64_t C, int64_t cs, T c, T lse) { \
    if (cs == 1) {                                                             \
      _Pragma("omp simd") for (int64_t j = 0; j < C; j++) g[j] += c * CR_EXP(row[j] - lse); \
    } else {                                                                   \
      for (int64_t j = 0; j < C; j++)                                          \
        g[j] += c * CR_EXP(row[j * cs] - lse);                                 \
    }                                                                          \
  }
ROW_KERNELS(float, f)
ROW_KERNELS(double, d)
#undef ROW_KERNELS

cr_tensor *cr_cross_entropy(cr_ctx *ctx, cr_tensor *logits, const int64_t *targets,
                            int64_t ignore_index) {
  cr_tensor *x = logits;
  if (!cr__check_inputs(ctx, "cross_entropy", 1, &x))
    return NULL;
  if (x->ndim != 2)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "cross_entropy: %s: logits must be 2-d [N,C] "
                    "(reshape a batch of sequences to [B*T,C])",
                    cr__shp(x));
  if (!targets)
    return cr__fail(ctx, CR_ERR_ARG, "cross_entropy: %s: targets is NULL", cr__shp(x));
  const int64_t N = x->shape[0], C = x->shape[1];
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++) {
    if (targets[i] == ignore_index)
      continue;
    if (targets[i] < 0 || targets[i] >= C)
      return cr__fail(ctx, CR_ERR_ARG,
                      "cross_entropy: %s: target %lld at row %lld is out of "
                      "range [0,%lld)",
                      cr__shp(x), (long long)targets[i], (long long)i, (long long)C);
    count++;
  }
  const int64_t one = 1;
  cr_tensor *y = cr__new(ctx, x->dtype, 1, &one);
  if (!y)
    return NULL;
  cr_node *nd = cr__record(ctx, &cr__op_cross_entropy, y, 1, &x);
  ce_saved *sv = NULL;
  if (nd) {
    sv = cr__alloc(ctx, sizeof *sv);
    int64_t *tcopy = cr__alloc(ctx, (size_t)N * sizeof *tcopy);
    double *lse = cr__alloc(ctx, (size_t)N * sizeof *lse);
    if (!sv || !tcopy || !lse)
      return NULL;
    memcpy(tcopy, targets, (size_t)N * sizeof *tcopy);
    *sv = (ce_saved){tcopy, lse, count};
    nd->saved = sv;
    nd->iattr[0] = ignore_index;
  }
  const int64_t rs = x->stride[0], cs = x->stride[1];
  double total = 0;
#define CE_FWD(T)                                                                                  \
  for (int64_t i = 0; i < N; i++) {                                                                \
    if (targets[i] == ignore_index)                                                                \
      continue;                                                                                    \
    const T *row = (const T *)x->data + i * rs;                                                    \
    const double lse = _Generic(row[0], float: row_lse_f, default: row_lse_d)(row, C, cs);        \
    if (sv)                                                                                        \
      sv->lse[i] = lse;                                                                            \
    total += lse - (double)row[targets[i] * cs];                                                   \
  }                                                                                                \
  *(T *)y->data = count ? (T)(total / (double)count) : (T)0;
  CR_DISPATCH(x->dtype, CE_FWD);
#undef CE_FWD
  return y;
}

static void cross_entropy_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0];
  cr_tensor *gx = cr__grad_acc(ctx, x);
  const ce_saved *sv = nd->saved;
  if (!gx || sv->count == 0)
    return;
  const int64_t N = x->shape[0], C = x->shape[1], rs = x->stride[0], cs = x->stride[1];
  const int64_t ignore = nd->iattr[0];
#define CE_BWD(T)                                                                                  \
  {                                                                                                \
    const T c = (T)(((const T *)nd->out->grad->data)[0] / (double)sv->count);                      \
    for (int64_t i = 0; i < N; i++) {                                                              \
      if (sv->target[i] == ignore)                                                                 \
        continue;                                                                                  \
      const T *row = (const T *)x->data + i * rs;                                                  \
      T *g = (T *)gx->data + i * C;                                                                \
      _Generic(c, float: row_grad_f, default: row_grad_d)(g, row, C, cs, c, (T)sv->lse[i]);        \
      g[sv->target[i]] -= c;                                                                       \
    }                                                                                              \
  }
  CR_DISPATCH(x->dtype, CE_BWD);
#undef CE_BWD
}

/* ---- mse */

cr_tensor *cr_mse(cr_ctx *ctx, cr_tensor *pred, cr_tensor *target) {
  cr_tensor *in[2] = {pred, target};
  if (!cr__check_inputs(ctx, "mse", 2, in))
    return NULL;
  if (pred->ndim != target->ndim ||
      memcmp(pred->shape, target->shape, (size_t)pred->ndim * sizeof(int64_t)) != 0)
    return cr__fail(ctx, CR_ERR_SHAPE, "mse: %s and %s: shapes differ (mse does not broadcast)",
                    cr__shp(pred), cr__shp(target));
  const int64_t one = 1;
  cr_tensor *y = cr__new(ctx, pred->dtype, 1, &one);
  if (!y)
    return NULL;
  cr_node *nd = cr__record(ctx, &cr__op_mse, y, 2, in);
  void *diff = NULL; /* [numel] pred - target, row-major, for the VJP */
  if (nd) {
    diff = cr__alloc(ctx, (size_t)pred->numel * cr_dtype_size(pred->dtype));
    if (!diff)
      return NULL;
    nd->saved = diff;
  }
  int64_t dstride[CR_MAX_DIMS];
  cr__contig_strides(pred->ndim, pred->shape, dstride);
  const int64_t *st[3] = {dstride, pred->stride, target->stride};
  cr__iter it;
  cr__iter_init(&it, pred->ndim, pred->shape, 3, st);
  const double n = (double)pred->numel;
#define MSE_FWD(T)                                                                                 \
  {                                                                                                \
    double acc = 0;                                                                                \
    for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                                    \
      const T *pa = (const T *)pred->data + it.off[1];                                             \
      const T *pb = (const T *)target->data + it.off[2];                                           \
      for (int64_t i = 0; i < it.inner; i++) {                                                     \
        const T d = pa[i * it.istr[1]] - pb[i * it.istr[2]];                                       \
        acc += (double)d * (double)d;                                                              \
        if (diff)                                                                                  \
          ((T *)diff)[it.off[0] + i * it.istr[0]] = d;                                             \
      }                                                                                            \
    }                                                                                              \
    *(T *)y->data = (T)(acc / n);                                                                  \
  }
  CR_DISPATCH(pred->dtype, MSE_FWD);
#undef MSE_FWD
  return y;
}

static void mse_vjp(cr_ctx *ctx, cr_node *nd) {
  const cr_tensor *y = nd->out;
  const int64_t n = nd->in[0]->numel;
  for (int which = 0; which < 2; which++) {
    cr_tensor *g = cr__grad_acc(ctx, nd->in[which]);
    if (!g)
      continue;
    /* pred: +2 gy / n;  target: -2 gy / n */
    const double scale = (which == 0 ? 2.0 : -2.0) / (double)n;
#define MSE_BWD(T)                                                                                 \
  {                                                                                                \
    const T c = (T)(((const T *)y->grad->data)[0] * scale);                                        \
    const T *d = nd->saved;                                                                        \
    T *pg = g->data;                                                                               \
    for (int64_t i = 0; i < n; i++)                                                                \
      pg[i] += c * d[i];                                                                           \
  }
    CR_DISPATCH(g->dtype, MSE_BWD);
#undef MSE_BWD
  }
}
