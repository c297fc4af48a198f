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

static void permute_vjp(cr_ctx *ctx, cr_node *nd);
static void same_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_transpose = {"transpose", 1, permute_vjp, false};
const cr_op_desc cr__op_permute = {"permute", 1, permute_vjp, false};
const cr_op_desc cr__op_reshape = {"reshape", 1, same_vjp, false};
const cr_op_desc cr__op_contiguous = {"contiguous", 1, same_vjp, false};

static cr_tensor *permuted(cr_ctx *ctx, const cr_op_desc *op, cr_tensor *x, const int *perm) {
  int64_t shape[CR_MAX_DIMS], stride[CR_MAX_DIMS];
  for (int k = 0; k < x->ndim; k++) {
    shape[k] = x->shape[perm[k]];
    stride[k] = x->stride[perm[k]];
  }
  cr_tensor *y = cr__view(ctx, x, x->ndim, shape, stride, x->data);
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd)
    for (int k = 0; k < x->ndim; k++)
      nd->iattr[k] = perm[k];
  return y;
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
      return cr__fail(ctx, CR_ERR_ARG, "permute: %s: perm entry %d (%d) is out of range or "
                      "repeated; perm must order all %d axes", cr__shp(x), k, perm[k], x->ndim);
    seen[p[k]] = true;
  }
  return permuted(ctx, &cr__op_permute, x, p);
}

/* gx (seen through perm) += gy */
static void permute_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out;
  bool fresh;
  cr_tensor *gx = cr__grad_acc_fresh(ctx, x, &fresh);
  if (!gx)
    return;
  if (fresh) /* a permutation covers every element once: copy */
    memset(gx->data, 0, (size_t)gx->numel * cr_dtype_size(gx->dtype));
  int64_t gstride[CR_MAX_DIMS];
  for (int k = 0; k < y->ndim; k++)
    gstride[k] = gx->stride[nd->iattr[k]];
  const int64_t *st[2] = {gstride, y->grad->stride};
  cr__iter it;
  cr__iter_init(&it, y->ndim, y->shape, 2, st);
  if (it.ndim == 1 && it.istr[0] != 1 && it.stride[0][0] == 1 && it.istr[1] == 1) {
    /* a 2-d transpose: add in 32 x 32 tiles so both sides stay in cache
     * (a plain loop strides through gx a cache line per element) */
    const int64_t R = it.rows, C = it.inner, ds = it.istr[0], ss = it.stride[1][0];
#define TILED_ADD(T)                                                           \
  {                                                                            \
    T *d = gx->data;                                                           \
    const T *src = y->grad->data;                                              \
    for (int64_t r0 = 0; r0 < R; r0 += 32)                                     \
      for (int64_t c0 = 0; c0 < C; c0 += 32)                                   \
        for (int64_t c = c0; c < c0 + 32 && c < C; c++)                        \
          for (int64_t r = r0; r < r0 + 32 && r < R; r++)                      \
            d[r + c * ds] += src[r * ss + c];                                  \
  }
    CR_DISPATCH(x->dtype, TILED_ADD);
#undef TILED_ADD
    return;
  }
#define PERM_ADD(T)                                                            \
  for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                  \
    T *d = (T *)gx->data + it.off[0];                                          \
    const T *s = (const T *)y->grad->data + it.off[1];                         \
    for (int64_t i = 0; i < it.inner; i++)                                     \
      d[i * it.istr[0]] += s[i * it.istr[1]];                                  \
  }
  CR_DISPATCH(x->dtype, PERM_ADD);
#undef PERM_ADD
}

static void same_vjp(cr_ctx *ctx, cr_node *nd) {
  if (nd->op == &cr__op_reshape && nd->out->grad && nd->in[0]->grad &&
      nd->out->grad->data == nd->in[0]->grad->data)
    return; /* the reshape's gradient already is its input's (common.c) */
  bool fresh;
  cr_tensor *gx = cr__grad_acc_fresh(ctx, nd->in[0], &fresh);
  if (!gx)
    return;
  /* same numel, both dense row-major */
  if (fresh)
    memcpy(gx->data, nd->out->grad->data, (size_t)gx->numel * cr_dtype_size(gx->dtype));
  else
    cr__add_dense(gx, nd->out->grad);
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
  return y;
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
      return cr__fail(ctx, CR_ERR_SHAPE, "reshape: %s to %s: more than 2^40 elements",
                      cr__shp(x), (cr_shape_str(want, sizeof want, ndim, shape), want));
  }
  if (infer >= 0) {
    if (x->numel % known != 0)
      return cr__fail(ctx, CR_ERR_SHAPE, "reshape: %s to %s: %lld elements do not divide "
                      "into the known dims", cr__shp(x),
                      (cr_shape_str(want, sizeof want, ndim, shape), want), (long long)x->numel);
    s[infer] = x->numel / known;
    known *= s[infer];
  }
  if (known != x->numel)
    return cr__fail(ctx, CR_ERR_SHAPE, "reshape: %s to %s: element counts %lld and %lld "
                    "differ", cr__shp(x), (cr_shape_str(want, sizeof want, ndim, shape), want),
                    (long long)x->numel, (long long)known);
  cr_tensor *c = cr_contiguous(ctx, x);
  if (!c)
    return NULL;
  int64_t stride[CR_MAX_DIMS];
  cr__contig_strides(ndim, s, stride);
  cr_tensor *y = cr__view(ctx, c, ndim, s, stride, c->data);
  cr__record(ctx, &cr__op_reshape, y, 1, &c);
  return y;
}
