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

#define T float
#define SFX _f
#include "loss_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "loss_kernels.inc"
#undef T
#undef SFX

static void cross_entropy_vjp(cr_ctx *ctx, cr_node *nd);
static void mse_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status cross_entropy_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status mse_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_cross_entropy = {.name = "cross_entropy",
                                         .n_inputs = 1,
                                         .vjp = cross_entropy_vjp,
                                         .vjp_graph = cross_entropy_vjp_graph,
                                         .reads = CR__READS_IN(0)};
const cr_op_desc cr__op_mse = {.name = "mse",
                               .n_inputs = 2,
                               .vjp = mse_vjp,
                               .vjp_graph = mse_vjp_graph,
                               .reads = CR__READS_IN(0) | CR__READS_IN(1)};

/* ---- cross_entropy */

typedef struct {
  int64_t *target; /* [N] copy of the caller's targets */
  double *lse;     /* [N] log-sum-exp of each counted row */
  int64_t count;   /* rows counted (not ignored) */
  int64_t ignore;  /* the ignore_index */
} ce_saved;

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
  ce_saved *sv = NULL;
  if (cr__will_record(ctx, 1, &x)) {
    sv = cr__alloc(ctx, sizeof *sv);
    int64_t *tcopy = cr__alloc(ctx, (size_t)N * sizeof *tcopy);
    double *lse = cr__alloc(ctx, (size_t)N * sizeof *lse);
    if (!sv || !tcopy || !lse)
      return NULL;
    memcpy(tcopy, targets, (size_t)N * sizeof *tcopy);
    *sv = (ce_saved){tcopy, lse, count, ignore_index};
  }
  const int64_t rs = x->stride[0], cs = x->stride[1];
  double *lse = sv ? sv->lse : NULL;
  double total = x->dtype == CR_F32 ? ce_total_f(x->data, N, C, rs, cs, targets, ignore_index, lse)
                                    : ce_total_d(x->data, N, C, rs, cs, targets, ignore_index, lse);
  double mean = count ? total / (double)count : 0;
  if (x->dtype == CR_F32)
    *(float *)y->data = (float)mean;
  else
    *(double *)y->data = mean;
  cr_node *nd = cr__record(ctx, &cr__op_cross_entropy, y, 1, &x);
  if (nd)
    nd->saved = sv;
  return ctx->status == CR_OK ? y : NULL;
}

static void cross_entropy_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0];
  cr_tensor *gx = cr__grad_acc(ctx, x);
  const ce_saved *sv = nd->saved;
  if (!gx || sv->count == 0)
    return;
  const int64_t N = x->shape[0], C = x->shape[1], rs = x->stride[0], cs = x->stride[1];
  const double c = cr_get_flat(nd->out->grad, 0) / (double)sv->count;
  if (x->dtype == CR_F32)
    ce_grad_f(gx->data, x->data, N, C, rs, cs, sv->target, sv->ignore, sv->lse, (float)c);
  else
    ce_grad_d(gx->data, x->data, N, C, rs, cs, sv->target, sv->ignore, sv->lse, c);
}

/* gx = (softmax(x) * m - onehot) * gy / count, with m[i] = 1 for the rows
 * counted and onehot[i, t_i] = 1 on them (both constants) */
static cr_status cross_entropy_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0];
  const ce_saved *sv = nd->saved;
  const int64_t N = x->shape[0];
  if (sv->count == 0)
    return cr_ctx_status(ctx); /* no gradient */
  cr_tensor *rows = cr_zeros(ctx, x->dtype, CR_SHAPE(N, 1));
  cr_tensor *onehot = cr_zeros(ctx, x->dtype, x->ndim, x->shape);
  if (!rows || !onehot)
    return cr_ctx_status(ctx);
  for (int64_t i = 0; i < N; i++)
    if (sv->target[i] != sv->ignore) {
      cr_set_flat(rows, i, 1.0);
      cr_set_flat(onehot, i * x->shape[1] + sv->target[i], 1.0);
    }
  cr_tensor *p = cr_mul(ctx, cr_softmax(ctx, x, 1), rows);
  gx[0] = cr_mul(ctx, cr_sub(ctx, p, onehot), cr_div_scalar(ctx, gy, (double)sv->count));
  return cr_ctx_status(ctx);
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
  void *diff = NULL; /* [numel] pred - target, row-major, for the VJP */
  if (cr__will_record(ctx, 2, in) &&
      !(diff = cr__alloc(ctx, (size_t)pred->numel * cr_dtype_size(pred->dtype))))
    return NULL;
  int64_t dstride[CR_MAX_DIMS];
  cr__contig_strides(pred->ndim, pred->shape, dstride);
  const int64_t *st[3] = {dstride, pred->stride, target->stride};
  cr__iter it;
  cr__iter_init(&it, pred->ndim, pred->shape, 3, st);
  const double n = (double)pred->numel;
  if (pred->dtype == CR_F32)
    *(float *)y->data = (float)(sq_diff_f(&it, pred->data, target->data, diff) / n);
  else
    *(double *)y->data = sq_diff_d(&it, pred->data, target->data, diff) / n;
  cr_node *nd = cr__record(ctx, &cr__op_mse, y, 2, in);
  if (nd)
    nd->saved = diff;
  return ctx->status == CR_OK ? y : NULL;
}

static void mse_vjp(cr_ctx *ctx, cr_node *nd) {
  const int64_t n = nd->in[0]->numel;
  const double gy = cr_get_flat(nd->out->grad, 0);
  for (int which = 0; which < 2; which++) {
    cr_tensor *g = cr__grad_acc(ctx, nd->in[which]);
    if (!g)
      continue;
    /* pred: +2 gy / n;  target: -2 gy / n */
    const double c = gy * ((which == 0 ? 2.0 : -2.0) / (double)n);
    if (g->dtype == CR_F32)
      axpy_f(g->data, nd->saved, (float)c, n);
    else
      axpy_d(g->data, nd->saved, c, n);
  }
}

/* ga = (a - b) * gy * 2/n;  gb = -ga */
static cr_status mse_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *a = nd->in[0], *b = nd->in[1];
  cr_tensor *g = cr_mul(ctx, cr_sub(ctx, a, b), cr_mul_scalar(ctx, gy, 2.0 / (double)a->numel));
  if (a->requires_grad)
    gx[0] = g;
  if (b->requires_grad)
    gx[1] = cr_neg(ctx, g);
  return cr_ctx_status(ctx);
}
