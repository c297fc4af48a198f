/* stats.c — reductions beyond sum, mean and max: log-sum-exp along an
 * axis, variance over a set of axes, and sums and means over several axes.
 *
 *   logsumexp: y[p] = m[p] + log sum_k exp(x[p,k] - m[p]),  m[p] = max_k x[p,k];
 *              gx[p,k] += gy[p] exp(x[p,k] - y[p])
 *   var:       y[q] = sum_r (x[q,r] - mu[q])^2 / (N - c),  mu[q] = sum_r x[q,r] / N;
 *              gx[q,r] += gy[q] 2 (x[q,r] - mu[q]) / (N - c)
 *
 * p runs over x's positions off the axis and k along it; for var, q over
 * the positions kept and r over the N reduced ones, c the correction (1:
 * unbiased, PyTorch's default; 0: the population variance).  var's
 * gradient has no term through mu, as sum_r (x[q,r] - mu[q]) = 0.
 * Subtracting the max keeps every exp in (0, 1]; var takes two passes (the
 * mean, then the squared deviations), both summed in double, so a large
 * mean does not cancel the variance away.
 *
 * Compositions:  std = sqrt(var);  sum_axes = sum_to the kept shape (then
 * reshaped without the reduced axes);  mean_axes = sum_axes / N.
 *
 * Shapes: keepdim keeps the reduced axes with size 1; without it they are
 * removed, and removing every axis gives [1]. */
#include "op.h"

#define T float
#define SFX _f
#include "stats_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "stats_kernels.inc"
#undef T
#undef SFX

/* Which axes a reduction removes, and the shapes around it. */
typedef struct {
  bool red[CR_MAX_DIMS];     /* axis d is reduced */
  int64_t keep[CR_MAX_DIMS]; /* x's shape with the reduced axes set to 1 */
  int ndim;                  /* of the result */
  int64_t out[CR_MAX_DIMS];  /* the result's shape */
  int64_t n;                 /* elements reduced into each result element */
} axes_plan;

typedef struct {
  unsigned axes; /* bit d: axis d reduced */
  bool keepdim;
  double div; /* var: N - correction */
} stats_attr;
CR__ATTR(stats_attr)

static void lse_vjp(cr_ctx *ctx, cr_node *nd);
static void var_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status lse_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status var_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_logsumexp = {.name = "logsumexp",
                                     .n_inputs = 1,
                                     .vjp = lse_vjp,
                                     .vjp_graph = lse_vjp_graph,
                                     .reads = CR__READS_IN(0) | CR__READS_OUT};
const cr_op_desc cr__op_var = {.name = "var",
                               .n_inputs = 1,
                               .vjp = var_vjp,
                               .vjp_graph = var_vjp_graph,
                               .reads = CR__READS_IN(0)};

/* The plan for reducing x over the axes whose bits are set in mask. */
static void plan_of(const cr_tensor *x, unsigned mask, bool keepdim, axes_plan *p) {
  memset(p, 0, sizeof *p);
  p->n = 1;
  for (int d = 0; d < x->ndim; d++) {
    p->red[d] = (mask >> d) & 1u;
    p->keep[d] = p->red[d] ? 1 : x->shape[d];
    if (p->red[d])
      p->n *= x->shape[d];
    if (keepdim || !p->red[d])
      p->out[p->ndim++] = p->keep[d];
  }
  if (p->ndim == 0)
    p->out[p->ndim++] = 1; /* every axis removed */
}

/* The mask of axes[0..n) (NULL and 0: every axis) for x, and its plan;
 * false and an error naming op for a bad or repeated axis. */
static bool plan_axes(cr_ctx *ctx, const char *op, const cr_tensor *x, const int *axes, int n,
                      bool keepdim, unsigned *mask, axes_plan *p) {
  if (n < 0 || (n > 0 && !axes) || (!axes && n != 0) || n > x->ndim) {
    cr__fail(ctx, CR_ERR_ARG, "%s: %s: %d axes%s: give 1 to %d axes, or NULL and 0 for all", op,
             cr__shp(x), n, axes ? "" : " (axes is NULL)", x->ndim);
    return false;
  }
  *mask = n == 0 ? (1u << x->ndim) - 1 : 0;
  for (int k = 0; k < n; k++) {
    int a = axes[k];
    if (!cr__axis(ctx, op, x, &a))
      return false;
    if ((*mask >> a) & 1u) {
      cr__fail(ctx, CR_ERR_ARG, "%s: %s: axis %d given twice", op, cr__shp(x), a);
      return false;
    }
    *mask |= 1u << a;
  }
  plan_of(x, *mask, keepdim, p);
  return true;
}

/* The plan a node was recorded with. */
static axes_plan node_plan(const cr_node *nd) {
  axes_plan p;
  const stats_attr *at = stats_attr_of(nd);
  plan_of(nd->in[0], at->axes, at->keepdim, &p);
  return p;
}

/* Strides of the kept position over x's shape: dense over the kept shape,
 * 0 along the reduced axes. */
static void kept_strides(const cr_tensor *x, const axes_plan *p, int64_t *st) {
  cr__contig_strides(x->ndim, p->keep, st);
  for (int d = 0; d < x->ndim; d++)
    if (p->red[d])
      st[d] = 0;
}

/* gy seen with the reduced axes kept (size 1), then broadcast to x */
static cr_tensor *spread(cr_ctx *ctx, cr_tensor *gy, const cr_tensor *x, const axes_plan *p) {
  return cr_expand(ctx, cr_reshape(ctx, gy, x->ndim, p->keep), x->ndim, x->shape);
}

/* ---- logsumexp */

/* An iterator over the lines along the one reduced axis: operand 0 a
 * dense tensor of the kept shape, then the strides given. */
static void lines(cr__iter *it, const cr_tensor *x, const axes_plan *p, int nops, const int64_t *s1,
                  const int64_t *s2) {
  int64_t dense[CR_MAX_DIMS];
  cr__contig_strides(x->ndim, p->keep, dense);
  const int64_t *st[3] = {dense, s1, s2};
  cr__iter_init(it, x->ndim, p->keep, nops, st);
}

static int the_axis(const axes_plan *p) {
  int a = 0;
  while (!p->red[a])
    a++;
  return a;
}

cr_tensor *cr_logsumexp(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim) {
  axes_plan p;
  unsigned mask;
  if (!cr__check_inputs(ctx, "logsumexp", 1, &x) ||
      !plan_axes(ctx, "logsumexp", x, &axis, 1, keepdim, &mask, &p))
    return NULL;
  cr_tensor *y = cr__new(ctx, x->dtype, p.ndim, p.out);
  if (!y)
    return NULL;
  const int a = the_axis(&p);
  cr__iter it;
  lines(&it, x, &p, 2, x->stride, NULL);
  if (x->dtype == CR_F32)
    lse_lines_f(&it, y->data, x->data, x->shape[a], x->stride[a]);
  else
    lse_lines_d(&it, y->data, x->data, x->shape[a], x->stride[a]);
  cr_node *nd = cr__record(ctx, &cr__op_logsumexp, y, 1, &x);
  if (nd)
    *stats_attr_of(nd) = (stats_attr){mask, keepdim, 1};
  return ctx->status == CR_OK ? y : NULL;
}

/* gx += gy exp(x - y) */
static void lse_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out, *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  const axes_plan pl = node_plan(nd), *p = &pl;
  const int a = the_axis(p);
  cr__iter it;
  lines(&it, x, p, 3, x->stride, gx->stride);
  if (x->dtype == CR_F32)
    lse_grad_lines_f(&it, gx->data, x->data, y->data, y->grad->data, x->shape[a], x->stride[a],
                     gx->stride[a]);
  else
    lse_grad_lines_d(&it, gx->data, x->data, y->data, y->grad->data, x->shape[a], x->stride[a],
                     gx->stride[a]);
}

/* gx = gy exp(x - y), gy and y broadcast back along the axis */
static cr_status lse_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0];
  const axes_plan pl = node_plan(nd), *p = &pl;
  cr_tensor *y = cr_reshape(ctx, nd->out, x->ndim, p->keep);
  gx[0] = cr_mul(ctx, spread(ctx, gy, x, p), cr_exp(ctx, cr_sub(ctx, x, y)));
  return cr_ctx_status(ctx);
}

/* ---- var */

cr_tensor *cr_var(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, double correction,
                  bool keepdim) {
  axes_plan p;
  unsigned mask;
  if (!cr__check_inputs(ctx, "var", 1, &x) ||
      !plan_axes(ctx, "var", x, axes, n, keepdim, &mask, &p))
    return NULL;
  const double div = (double)p.n - correction;
  if (!(correction >= 0) || !(div > 0))
    return cr__fail(ctx, CR_ERR_ARG,
                    "var: %s: correction %g with %lld values per result "
                    "leaves no degrees of freedom (need 0 <= correction < N)",
                    cr__shp(x), correction, (long long)p.n);
  cr_tensor *y = cr__new(ctx, x->dtype, p.ndim, p.out);
  const int64_t m = y ? y->numel : 0;
  double *mean = cr__alloc(ctx, (size_t)m * sizeof *mean); /* [m] kept for the VJP */
  double *ss = cr__alloc(ctx, (size_t)m * sizeof *ss);
  if (!y || !mean || !ss)
    return NULL;
  memset(mean, 0, (size_t)m * sizeof *mean);
  memset(ss, 0, (size_t)m * sizeof *ss);
  int64_t ko[CR_MAX_DIMS];
  kept_strides(x, &p, ko);
  const int64_t *st[2] = {x->stride, ko};
  for (int pass = 0; pass < 2; pass++) {
    cr__iter it;
    cr__iter_init(&it, x->ndim, x->shape, 2, st);
    if (x->dtype == CR_F32)
      moments_f(&it, x->data, pass ? mean : NULL, pass ? ss : mean);
    else
      moments_d(&it, x->data, pass ? mean : NULL, pass ? ss : mean);
    for (int64_t o = 0; !pass && o < m; o++)
      mean[o] /= (double)p.n;
  }
  for (int64_t o = 0; o < m; o++)
    cr_set_flat(y, o, ss[o] / div);
  cr_node *nd = cr__record(ctx, &cr__op_var, y, 1, &x);
  if (nd) {
    *stats_attr_of(nd) = (stats_attr){mask, keepdim, div};
    nd->saved = mean;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* gx += gy 2 (x - mu) / (N - c) */
static void var_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  const stats_attr *at = stats_attr_of(nd);
  const axes_plan p = node_plan(nd);
  int64_t ko[CR_MAX_DIMS];
  kept_strides(x, &p, ko);
  const int64_t *st[3] = {gx->stride, x->stride, ko};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 3, st);
  if (x->dtype == CR_F32)
    var_grad_f(&it, gx->data, x->data, nd->saved, nd->out->grad->data, 2 / at->div);
  else
    var_grad_d(&it, gx->data, x->data, nd->saved, nd->out->grad->data, 2 / at->div);
}

/* gx = gy (x - mean(x)) 2 / (N - c), with mean(x) built of ops (sum_to / N),
 * so the second derivative sees it */
static cr_status var_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0];
  const stats_attr *at = stats_attr_of(nd);
  const axes_plan pl = node_plan(nd), *p = &pl;
  cr_tensor *mu = cr_div_scalar(ctx, cr_sum_to(ctx, x, x->ndim, p->keep), (double)p->n);
  gx[0] = cr_mul(ctx, spread(ctx, gy, x, p), cr_mul_scalar(ctx, cr_sub(ctx, x, mu), 2 / at->div));
  return cr_ctx_status(ctx);
}

cr_tensor *cr_std(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, double correction,
                  bool keepdim) {
  return cr_sqrt(ctx, cr_var(ctx, x, axes, n, correction, keepdim));
}

/* ---- sums and means over several axes */

cr_tensor *cr_sum_axes(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, bool keepdim) {
  axes_plan p;
  unsigned mask;
  if (!cr__check_inputs(ctx, "sum_axes", 1, &x) ||
      !plan_axes(ctx, "sum_axes", x, axes, n, keepdim, &mask, &p))
    return NULL;
  cr_tensor *s = cr_sum_to(ctx, x, x->ndim, p.keep);
  return keepdim ? s : cr_reshape(ctx, s, p.ndim, p.out);
}

cr_tensor *cr_mean_axes(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, bool keepdim) {
  axes_plan p;
  unsigned mask;
  if (!cr__check_inputs(ctx, "mean_axes", 1, &x) ||
      !plan_axes(ctx, "mean_axes", x, axes, n, keepdim, &mask, &p))
    return NULL;
  return cr_div_scalar(ctx, cr_sum_axes(ctx, x, axes, n, keepdim), (double)p.n);
}
