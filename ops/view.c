/* view.c — ops that reinterpret a tensor's layout without computing.
 *
 *   transpose:  y = x with axes i, j swapped (a view);  gx += swap back (gy)
 *   permute:    y[.. k ..] = x[.. perm[k] ..] (a view); gx += inverse-permute(gy)
 *   reshape:    y = x with a new shape (a view of contiguous x); gx += gy
 *   contiguous: y = dense copy of x;                     gx += gy
 *
 * The VJP of a view adds gy into gx seen through the same strided layout,
 * so a transposed gradient is never materialised separately. */
#include "op.h"

#define T float
#define SFX _f
#include "view_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "view_kernels.inc"
#undef T
#undef SFX

typedef struct {
  int perm[CR_MAX_DIMS]; /* result axis i is input axis perm[i] */
} permute_attr;
CR__ATTR(permute_attr)

static void permute_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status permute_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static void same_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status reshape_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status contiguous_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_tensor *reshape_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh);
static bool takes_view(const cr_node *nd, int k) { return (void)nd, (void)k, true; }

static cr_tensor *permute_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh);
const cr_op_desc cr__op_transpose = {.name = "transpose",
                                     .n_inputs = 1,
                                     .vjp = permute_vjp,
                                     .vjp_graph = permute_vjp_graph,
                                     .reads = 0,
                                     .grad_alias = permute_grad_alias,
                                     .takes_view_grad = takes_view};
const cr_op_desc cr__op_permute = {.name = "permute",
                                   .n_inputs = 1,
                                   .vjp = permute_vjp,
                                   .vjp_graph = permute_vjp_graph,
                                   .reads = 0,
                                   .grad_alias = permute_grad_alias,
                                   .takes_view_grad = takes_view};
const cr_op_desc cr__op_reshape = {.name = "reshape",
                                   .n_inputs = 1,
                                   .vjp = same_vjp,
                                   .vjp_graph = reshape_vjp_graph,
                                   .reads = 0,
                                   .grad_alias = reshape_grad_alias,
                                   .takes_view_grad = takes_view};
const cr_op_desc cr__op_contiguous = {.name = "contiguous",
                                      .n_inputs = 1,
                                      .vjp = same_vjp,
                                      .vjp_graph = contiguous_vjp_graph,
                                      .reads = 0,
                                      .takes_view_grad = takes_view};

static cr_tensor *permuted(cr_ctx *ctx, const cr_op_desc *op, cr_tensor *x, const int *perm) {
  int64_t shape[CR_MAX_DIMS], stride[CR_MAX_DIMS];
  for (int k = 0; k < x->ndim; k++) {
    shape[k] = x->shape[perm[k]];
    stride[k] = x->stride[perm[k]];
  }
  cr_tensor *y = cr__view(ctx, x, x->ndim, shape, stride, x->data);
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd)
    memcpy(permute_attr_of(nd)->perm, perm, sizeof(int) * (size_t)x->ndim);
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_transpose(cr_ctx *ctx, cr_tensor *x, int a0, int a1) {
  if (!cr__check_inputs(ctx, "transpose", 1, &x))
    return NULL;
  if (!cr__axis(ctx, "transpose", x, &a0) || !cr__axis(ctx, "transpose", x, &a1))
    return NULL;
  int perm[CR_MAX_DIMS];
  for (int k = 0; k < x->ndim; k++)
    perm[k] = k;
  perm[a0] = a1;
  perm[a1] = a0;
  return permuted(ctx, &cr__op_transpose, x, perm);
}

cr_tensor *cr_permute(cr_ctx *ctx, cr_tensor *x, const int *perm) {
  if (!cr__check_inputs(ctx, "permute", 1, &x))
    return NULL;
  if (!perm)
    return cr__fail(ctx, CR_ERR_ARG, "permute: %s: perm is NULL", cr__shp(x));
  bool seen[CR_MAX_DIMS] = {false};
  int p[CR_MAX_DIMS];
  for (int k = 0; k < x->ndim; k++) {
    p[k] = perm[k] < 0 ? perm[k] + x->ndim : perm[k];
    if (p[k] < 0 || p[k] >= x->ndim || seen[p[k]])
      return cr__fail(ctx, CR_ERR_ARG,
                      "permute: %s: perm entry %d (%d) is out of range or "
                      "repeated; perm must order all %d axes",
                      cr__shp(x), k, perm[k], x->ndim);
    seen[p[k]] = true;
  }
  return permuted(ctx, &cr__op_permute, x, p);
}

/* When every consumer of a permuted view writes its gradient through
 * strides, that gradient is the same permutation of the input's gradient
 * buffer (a transposed weight's gradient lands in the weight's own, with no
 * transposed copy back): nothing is left for the VJP. */
static cr_tensor *permute_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh) {
  cr_tensor *t = nd->out, *x = nd->in[0];
  *fresh = false;
  if (!x->requires_grad || !cr__consumers_take_views(ctx, t))
    return NULL;
  cr_tensor *gx = cr__grad_acc(ctx, x); /* zeroed: consumers writing through
                                          strides accumulate */
  if (!gx)
    return NULL;
  const int *perm = permute_attr_of(nd)->perm;
  int64_t stride[CR_MAX_DIMS];
  for (int k = 0; k < t->ndim; k++)
    stride[k] = gx->stride[perm[k]];
  cr_tensor *g = t->grad;
  if (!g || !t->grad_is_view || g->data != gx->data ||
      memcmp(g->stride, stride, sizeof(int64_t) * (size_t)t->ndim))
    g = cr__view_for(ctx, t, gx, t->ndim, t->shape, stride, gx->data);
  if (!g)
    return NULL;
  cr__grad_set(ctx, t, g, true);
  return g;
}

/* gx (seen through perm) += gy */
static void permute_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out;
  if (y->grad_is_view && y->grad_pass == ctx->pass && x->grad && x->grad_pass == ctx->pass &&
      y->grad->data == x->grad->data)
    return; /* the gradient was a view into gx all along (permute_grad_alias) */
  bool fresh;
  cr_tensor *gx = cr__grad_acc_fresh(ctx, x, &fresh);
  if (!gx)
    return;
  if (fresh) /* a permutation covers every element once: copy */
    memset(gx->data, 0, (size_t)gx->numel * cr_dtype_size(gx->dtype));
  int64_t gstride[CR_MAX_DIMS];
  const int *perm = permute_attr_of(nd)->perm;
  for (int k = 0; k < y->ndim; k++)
    gstride[k] = gx->stride[perm[k]];
  const int64_t *st[2] = {gstride, y->grad->stride};
  cr__iter it;
  cr__iter_init(&it, y->ndim, y->shape, 2, st);
  if (it.ndim == 1 && it.istr[0] != 1 && it.stride[0][0] == 1 && it.istr[1] == 1) {
    /* a 2-d transpose */
    const int64_t R = it.rows, C = it.inner, ds = it.istr[0], ss = it.stride[1][0];
    if (x->dtype == CR_F32)
      tiled_transpose_add_f(gx->data, ds, y->grad->data, ss, R, C);
    else
      tiled_transpose_add_d(gx->data, ds, y->grad->data, ss, R, C);
    return;
  }
  /* gx seen through the permutation += gy */
  cr_tensor view = *gx;
  view.ndim = y->ndim;
  memcpy(view.shape, y->shape, sizeof view.shape);
  memcpy(view.stride, gstride, sizeof view.stride);
  cr__copy_convert(&view, y->grad, true);
}

/* gx += gy, element by element in row-major order (same count; gy dense,
 * gx dense or, for a reshape whose input gradient is a view, strided). */
static void same_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *gy = nd->out->grad;
  if (gy && x->grad && gy->data == x->grad->data && x->grad_pass == ctx->pass)
    return; /* the output's gradient already is its input's (reshape_grad_alias) */
  bool fresh;
  cr_tensor *gx = cr__grad_acc_fresh(ctx, x, &fresh);
  if (!gx)
    return;
  if (cr__is_contig(gx)) {
    if (fresh)
      memcpy(gx->data, gy->data, (size_t)gx->numel * cr_dtype_size(gx->dtype));
    else
      cr__add_dense(gx, gy);
    return;
  }
  /* gy's elements seen with x's shape: contiguous strides of that shape */
  cr_tensor g = *gy;
  g.ndim = x->ndim;
  memcpy(g.shape, x->shape, sizeof g.shape);
  cr__contig_strides(x->ndim, x->shape, g.stride);
  cr__copy_convert(gx, &g, !fresh);
}

/* A reshape's gradient is its input's gradient under another shape: when
 * that buffer is dense, share it (the VJP then has nothing to do), saving
 * a copy of every such gradient. */
static cr_tensor *reshape_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh) {
  cr_tensor *t = nd->out, *x = nd->in[0];
  if (!x->requires_grad)
    return NULL;
  cr_tensor *gx = cr__grad_acc_fresh(ctx, x, fresh);
  if (!gx || !cr__is_contig(gx)) {
    *fresh = false;
    return NULL; /* (a strided view: same_vjp adds through it) */
  }
  cr_tensor *g = t->grad;
  if (!g || g->data != gx->data || !t->grad_is_view)
    g = cr__view_for(ctx, t, gx, t->ndim, t->shape, t->stride, gx->data);
  if (!g)
    return NULL;
  cr__grad_set(ctx, t, g, true);
  return g;
}

static cr_status permute_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const int *perm = permute_attr_of(nd)->perm;
  int inv[CR_MAX_DIMS];
  for (int k = 0; k < gy->ndim; k++)
    inv[perm[k]] = k;
  gx[0] = cr_permute(ctx, gy, inv);
  return cr_ctx_status(ctx);
}

static cr_status reshape_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0];
  gx[0] = cr_reshape(ctx, gy, x->ndim, x->shape);
  return cr_ctx_status(ctx);
}

static cr_status contiguous_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  (void)nd;
  gx[0] = gy;
  return cr_ctx_status(ctx);
}

cr_tensor *cr_contiguous(cr_ctx *ctx, cr_tensor *x) {
  if (!cr__check_inputs(ctx, "contiguous", 1, &x))
    return NULL;
  if (cr__is_contig(x))
    return x;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!y)
    return NULL;
  cr__gather(x, y->data);
  y->alt = x; /* the strided original holds the same values */
  cr__record(ctx, &cr__op_contiguous, y, 1, &x);
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr_reshape(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape) {
  if (!cr__check_inputs(ctx, "reshape", 1, &x))
    return NULL;
  if (ndim < 1 || ndim > CR_MAX_DIMS || !shape)
    return cr__fail(ctx, CR_ERR_SHAPE, "reshape: %s: new shape needs 1 to %d dims", cr__shp(x),
                    CR_MAX_DIMS);
  int64_t s[CR_MAX_DIMS], known = 1;
  int infer = -1;
  char want[96] = "";
  for (int k = 0; k < ndim; k++) {
    s[k] = shape[k];
    if (s[k] == -1 && infer < 0)
      infer = k;
    else if (s[k] < 1)
      return cr__fail(ctx, CR_ERR_SHAPE, "reshape: %s to %s: dim %d is invalid", cr__shp(x),
                      (cr_shape_str(want, sizeof want, ndim, shape), want), k);
    else if (!cr__mul_ok(known, s[k], &known) || known > CR__MAX_NUMEL)
      return cr__fail(ctx, CR_ERR_SHAPE, "reshape: %s to %s: more than 2^40 elements", cr__shp(x),
                      (cr_shape_str(want, sizeof want, ndim, shape), want));
  }
  if (infer >= 0) {
    if (x->numel % known != 0)
      return cr__fail(ctx, CR_ERR_SHAPE,
                      "reshape: %s to %s: %lld elements do not divide "
                      "into the known dims",
                      cr__shp(x), (cr_shape_str(want, sizeof want, ndim, shape), want),
                      (long long)x->numel);
    s[infer] = x->numel / known;
    known *= s[infer];
  }
  if (known != x->numel)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "reshape: %s to %s: element counts %lld and %lld "
                    "differ",
                    cr__shp(x), (cr_shape_str(want, sizeof want, ndim, shape), want),
                    (long long)x->numel, (long long)known);
  cr_tensor *c = cr_contiguous(ctx, x);
  if (!c)
    return NULL;
  int64_t stride[CR_MAX_DIMS];
  cr__contig_strides(ndim, s, stride);
  cr_tensor *y = cr__view(ctx, c, ndim, s, stride, c->data);
  cr__record(ctx, &cr__op_reshape, y, 1, &c);
  return ctx->status == CR_OK ? y : NULL;
}
