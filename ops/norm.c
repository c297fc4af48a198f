/* norm.c — layer normalisation over the last k dims (PyTorch's
 * F.layer_norm), with an optional elementwise affine weight and bias.
 *
 *   layer_norm: mu[r] = mean_f x[r,f];  var[r] = mean_f (x[r,f] - mu[r])^2  (biased);
 *               s[r] = 1 / sqrt(var[r] + eps);  xhat = (x - mu) s;
 *               y[r,f] = xhat[r,f] w[f] + b[f]
 *               g = gy w;   gx[r,f] += s[r] (g - mean_f g - xhat mean_f (g xhat))
 *               gw[f] += sum_r gy xhat;   gb[f] += sum_r gy
 *
 * r runs over the leading dims (the rows), f over the M elements of the
 * last k dims; w and b have the shape of those k dims.  The row means and
 * s are saved for the kernel VJP; the graph VJP recomputes them with ops
 * (sum_to, pow) so the second derivative sees x through them. */
#include "op.h"

#define T float
#define SFX _f
#include "norm_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "norm_kernels.inc"
#undef T
#undef SFX

typedef struct {
  int k;             /* dims normalized */
  bool has_w, has_b; /* inputs: x, then w when has_w, then b when has_b */
  double eps;
} ln_attr;
CR__ATTR(ln_attr)

typedef struct {
  double *mean, *rstd; /* [rows] */
} ln_saved;

static void ln_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status ln_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_layer_norm = {.name = "layer_norm",
                                      .n_inputs = -1,
                                      .vjp = ln_vjp,
                                      .vjp_graph = ln_vjp_graph,
                                      .reads = CR__READS_IN(0) |
                                               CR__READS_IN(1)}; /* x, w (b is never read) */

/* x's shape with the last k dims set to 1: the row shape */
static void row_shape(const cr_tensor *x, int k, int64_t *shape) {
  for (int d = 0; d < x->ndim; d++)
    shape[d] = d >= x->ndim - k ? 1 : x->shape[d];
}

/* The iterator of norm_kernels.inc: operand 0 dense over x's shape, 1 x,
 * 2 the row index, 3 the feature index. */
static void ln_iter(cr__iter *it, const cr_tensor *x, int k) {
  int64_t dense[CR_MAX_DIMS], rs[CR_MAX_DIMS], fs[CR_MAX_DIMS], rows[CR_MAX_DIMS];
  cr__contig_strides(x->ndim, x->shape, dense);
  row_shape(x, k, rows);
  cr__contig_strides(x->ndim, rows, rs);
  for (int d = 0; d < x->ndim; d++) {
    const bool feat = d >= x->ndim - k;
    fs[d] = feat ? dense[d] : 0; /* the last k dims, dense: an index into a [M] table */
    if (feat)
      rs[d] = 0;
  }
  const int64_t *st[4] = {dense, x->stride, rs, fs};
  cr__iter_init(it, x->ndim, x->shape, 4, st);
}

/* t's values in a dense array (t itself when contiguous), or NULL. */
static const void *dense_values(cr_ctx *ctx, const cr_tensor *t) {
  if (!t || cr__is_contig(t))
    return t ? t->data : NULL;
  void *p = cr__alloc(ctx, (size_t)t->numel * cr_dtype_size(t->dtype));
  if (p)
    cr__gather(t, p);
  return p;
}

cr_tensor *cr_layer_norm(cr_ctx *ctx, cr_tensor *x, int k, cr_tensor *weight, cr_tensor *bias,
                         double eps) {
  cr_tensor *in[3] = {x};
  int n = 1;
  if (weight)
    in[n++] = weight;
  if (bias)
    in[n++] = bias;
  if (!cr__check_inputs(ctx, "layer_norm", n, in))
    return NULL;
  if (k < 1 || k > x->ndim)
    return cr__fail(ctx, CR_ERR_ARG, "layer_norm: %s: normalizing %d dims: need 1 to %d",
                    cr__shp(x), k, x->ndim);
  if (!(eps >= 0) || !isfinite(eps))
    return cr__fail(ctx, CR_ERR_ARG, "layer_norm: %s: eps %g must be finite and >= 0", cr__shp(x),
                    eps);
  const int64_t *fshape = x->shape + (x->ndim - k);
  for (int j = 1; j < n; j++)
    if (in[j]->ndim != k || memcmp(in[j]->shape, fshape, sizeof(int64_t) * (size_t)k) != 0) {
      char want[96];
      cr_shape_str(want, sizeof want, k, fshape);
      return cr__fail(ctx, CR_ERR_SHAPE,
                      "layer_norm: %s, %s %s: must have the normalized "
                      "shape %s",
                      cr__shp(x), in[j] == weight ? "weight" : "bias", cr__shp(in[j]), want);
    }
  int64_t rows[CR_MAX_DIMS];
  row_shape(x, k, rows);
  const int64_t R = cr__numel(x->ndim, rows), M = x->numel / R;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  double *mean = cr__alloc(ctx, (size_t)R * sizeof *mean);
  double *rstd = cr__alloc(ctx, (size_t)R * sizeof *rstd);
  const void *w = dense_values(ctx, weight), *b = dense_values(ctx, bias);
  if (!y || !mean || !rstd || (weight && !w) || (bias && !b))
    return NULL;
  memset(mean, 0, (size_t)R * sizeof *mean);
  memset(rstd, 0, (size_t)R * sizeof *rstd);
  for (int pass = 0; pass < 2; pass++) { /* the mean, then the squared deviations */
    cr__iter it;
    ln_iter(&it, x, k);
    if (x->dtype == CR_F32)
      ln_moments_f(&it, x->data, pass ? mean : NULL, pass ? rstd : mean);
    else
      ln_moments_d(&it, x->data, pass ? mean : NULL, pass ? rstd : mean);
    for (int64_t r = 0; r < R; r++)
      if (pass)
        rstd[r] = 1 / sqrt(rstd[r] / (double)M + eps);
      else
        mean[r] /= (double)M;
  }
  cr__iter it;
  ln_iter(&it, x, k);
  if (x->dtype == CR_F32)
    ln_forward_f(&it, y->data, x->data, mean, rstd, w, b);
  else
    ln_forward_d(&it, y->data, x->data, mean, rstd, w, b);
  cr_node *nd = cr__record(ctx, &cr__op_layer_norm, y, n, in);
  if (nd) {
    *ln_attr_of(nd) = (ln_attr){k, weight != NULL, bias != NULL, eps};
    ln_saved *sv = cr__alloc(ctx, sizeof *sv);
    if (!sv)
      return NULL;
    *sv = (ln_saved){mean, rstd};
    nd->saved = sv;
  }
  return ctx->status == CR_OK ? y : NULL;
}

static void ln_vjp(cr_ctx *ctx, cr_node *nd) {
  const ln_attr *at = ln_attr_of(nd);
  const ln_saved *sv = nd->saved;
  cr_tensor *x = nd->in[0], *gy = nd->out->grad;
  cr_tensor *w = at->has_w ? nd->in[1] : NULL, *b = at->has_b ? nd->in[at->has_w ? 2 : 1] : NULL;
  cr_tensor *gx = cr__grad_acc(ctx, x);
  cr_tensor *gw = w ? cr__grad_acc(ctx, w) : NULL, *gb = b ? cr__grad_acc(ctx, b) : NULL;
  if (!gx && !gw && !gb)
    return;
  int64_t rows[CR_MAX_DIMS];
  row_shape(x, at->k, rows);
  const int64_t R = cr__numel(x->ndim, rows), M = x->numel / R;
  double *sg = cr__alloc(ctx, (size_t)R * sizeof *sg),
         *sgx = cr__alloc(ctx, (size_t)R * sizeof *sgx);
  const void *wv = dense_values(ctx, w);
  if (!sg || !sgx || (w && !wv))
    return;
  memset(sg, 0, (size_t)R * sizeof *sg);
  memset(sgx, 0, (size_t)R * sizeof *sgx);
  CR_ASSERT(cr__is_contig(gy) && (!gx || cr__is_contig(gx)), "layer_norm: gradients not dense");
  cr__iter it;
  ln_iter(&it, x, at->k);
  if (x->dtype == CR_F32)
    ln_sums_f(&it, gy->data, x->data, sv->mean, sv->rstd, wv, sg, sgx, gw ? gw->data : NULL,
              gb ? gb->data : NULL);
  else
    ln_sums_d(&it, gy->data, x->data, sv->mean, sv->rstd, wv, sg, sgx, gw ? gw->data : NULL,
              gb ? gb->data : NULL);
  if (!gx)
    return;
  ln_iter(&it, x, at->k);
  if (x->dtype == CR_F32)
    ln_grad_x_f(&it, gx->data, gy->data, x->data, sv->mean, sv->rstd, wv, sg, sgx, (double)M);
  else
    ln_grad_x_d(&it, gx->data, gy->data, x->data, sv->mean, sv->rstd, wv, sg, sgx, (double)M);
}

/* The same with ops: the row mean and variance by sum_to over the
 * normalized dims, s = (var + eps)^(-1/2); then
 * gx = s (g - mean(g) - xhat mean(g xhat)),  gw = sum_to(gy xhat),  gb = sum_to(gy) */
static cr_status ln_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const ln_attr *at = ln_attr_of(nd);
  cr_tensor *x = nd->in[0];
  cr_tensor *w = at->has_w ? nd->in[1] : NULL, *b = at->has_b ? nd->in[at->has_w ? 2 : 1] : NULL;
  int64_t rows[CR_MAX_DIMS];
  row_shape(x, at->k, rows);
  const int nd_ = x->ndim;
  const double M = (double)(x->numel / cr__numel(nd_, rows));
#define ROW_MEAN(t) cr_div_scalar(ctx, cr_sum_to(ctx, (t), nd_, rows), M)
  cr_tensor *xc = cr_sub(ctx, x, ROW_MEAN(x));
  cr_tensor *s =
      cr_pow_scalar(ctx, cr_add_scalar(ctx, ROW_MEAN(cr_square(ctx, xc)), at->eps), -0.5);
  cr_tensor *xhat = cr_mul(ctx, xc, s);
  if (x->requires_grad) {
    cr_tensor *g = w ? cr_mul(ctx, gy, w) : gy;
    cr_tensor *inner =
        cr_sub(ctx, cr_sub(ctx, g, ROW_MEAN(g)), cr_mul(ctx, xhat, ROW_MEAN(cr_mul(ctx, g, xhat))));
    gx[0] = cr_mul(ctx, s, inner);
  }
  if (w && w->requires_grad)
    gx[1] = cr__reduce_to(ctx, cr_mul(ctx, gy, xhat), w);
  if (b && b->requires_grad)
    gx[w ? 2 : 1] = cr__reduce_to(ctx, gy, b);
#undef ROW_MEAN
  return cr_ctx_status(ctx);
}
