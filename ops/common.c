/* common.c — machinery every op uses: recording nodes, gradient buffers,
 * broadcasting and strided iteration. */
#include "op.h"

cr_node *cr__record(cr_ctx *ctx, const cr_op_desc *op, cr_tensor *out, int n_in,
                    cr_tensor *const *in) {
  if (!out || !ctx->grad_enabled)
    return NULL;
  bool need = false;
  for (int i = 0; i < n_in; i++)
    need |= in[i]->requires_grad;
  if (!need)
    return NULL;
  cr_node *nd = cr__alloc(ctx, sizeof *nd);
  cr_tensor **ins = cr__alloc(ctx, (size_t)n_in * sizeof *ins);
  if (!nd || !ins)
    return NULL;
  memset(nd, 0, sizeof *nd);
  memcpy(ins, in, (size_t)n_in * sizeof *ins);
  nd->op = op;
  nd->out = out;
  nd->n_in = n_in;
  nd->in = ins;
  out->node = nd;
  out->requires_grad = true;
  ctx->nodes++;
  return nd;
}

extern const cr_op_desc cr__op_reshape, cr__op_slice;

/* The gradient of a slice as a view into its input's gradient (see
 * mark_slice_consumers in autograd.c): the slice's VJP then has nothing to
 * do.  The input's gradient is zeroed first, as slices need not cover it. */
static cr_tensor *slice_alias(cr_ctx *ctx, cr_tensor *t) {
  const cr_node *nd = t->node;
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (!gx)
    return NULL;
  int axis = (int)nd->iattr[0];
  int64_t stride[CR_MAX_DIMS];
  memcpy(stride, gx->stride, sizeof(int64_t) * (size_t)gx->ndim);
  stride[axis] *= nd->iattr[2];
  char *base = (char *)gx->data + (size_t)(nd->iattr[1] * gx->stride[axis]) * cr_dtype_size(gx->dtype);
  if (!t->grad || !t->grad_is_view || t->grad->data != base) {
    t->grad = cr__view(ctx, gx, t->ndim, t->shape, stride, base);
    if (!t->grad)
      return NULL;
    t->grad_is_view = true;
  }
  t->grad_pass = ctx->pass;
  return t->grad;
}

/* The gradient of a reshape of a dense tensor is its input's gradient under
 * another shape: share the buffer (the reshape's VJP then has nothing to
 * do), saving a copy of every such gradient. */
static cr_tensor *reshape_alias(cr_ctx *ctx, cr_tensor *t, bool *fresh) {
  cr_tensor *x = t->node->in[0];
  cr_tensor *gx = cr__grad_acc_fresh(ctx, x, fresh);
  if (!gx)
    return NULL;
  if (!t->grad || t->grad->data != gx->data) {
    t->grad = cr__view(ctx, gx, t->ndim, t->shape, t->stride, gx->data);
    if (!t->grad)
      return NULL;
  }
  t->grad_pass = ctx->pass;
  return t->grad;
}

cr_tensor *cr__grad_acc_fresh(cr_ctx *ctx, cr_tensor *t, bool *fresh) {
  *fresh = false;
  if (!t->requires_grad)
    return NULL;
  if (t->node && t->node->op == &cr__op_reshape && t->node->in[0]->requires_grad &&
      cr__is_contig(t->node->in[0]))
    return reshape_alias(ctx, t, fresh);
  if (t->node && t->node->op == &cr__op_slice && t->alias_pass == ctx->pass && !t->alias_bad &&
      t->node->in[0]->requires_grad)
    return slice_alias(ctx, t);
  if (t->grad_is_view) { /* was a view in an earlier pass; now it needs its own buffer */
    t->grad = NULL;
    t->grad_is_view = false;
  }
  bool first_use = !t->grad || (t->node && t->grad_pass != ctx->pass);
  if (!t->grad) {
    if (t->persistent)
      t->grad = cr_tensor_new(ctx, t->dtype, t->ndim, t->shape); /* zeros */
    else
      t->grad = cr__new(ctx, t->dtype, t->ndim, t->shape); /* written below or by caller */
    if (!t->grad)
      return NULL;
  }
  t->grad_pass = ctx->pass;
  /* a leaf accumulates across passes; an intermediate's gradient is
   * recomputed by each pass, so its first contribution may overwrite */
  *fresh = first_use && !t->persistent && t->node;
  if (first_use && !t->persistent && !t->node)
    memset(t->grad->data, 0, (size_t)t->numel * cr_dtype_size(t->dtype)); /* arena leaf */
  return t->grad;
}

cr_tensor *cr__grad_acc(cr_ctx *ctx, cr_tensor *t) {
  bool fresh;
  cr_tensor *g = cr__grad_acc_fresh(ctx, t, &fresh);
  if (g && fresh)
    memset(g->data, 0, (size_t)g->numel * cr_dtype_size(g->dtype));
  return g;
}

void cr__iter_init(cr__iter *it, int ndim, const int64_t *shape, int nops,
                   const int64_t *const *strides) {
  CR_ASSERT(nops >= 1 && nops <= 4 && ndim >= 1 && ndim <= CR_MAX_DIMS,
            "cr__iter_init: %d operands over %d dims", nops, ndim);
  it->nops = nops;
  /* copy, dropping size-1 dims, then merge dims contiguous for all ops */
  int nd = 0;
  int64_t shp[CR_MAX_DIMS], st[4][CR_MAX_DIMS];
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1)
      continue;
    shp[nd] = shape[d];
    for (int k = 0; k < nops; k++)
      st[k][nd] = strides[k][d];
    nd++;
  }
  if (nd == 0) {
    shp[0] = 1;
    for (int k = 0; k < nops; k++)
      st[k][0] = 0;
    nd = 1;
  }
  int m = 0; /* merged dim count */
  for (int d = 1; d < nd; d++) {
    bool merge = true;
    for (int k = 0; k < nops; k++)
      merge &= st[k][m] == st[k][d] * shp[d];
    if (merge) {
      shp[m] *= shp[d];
      for (int k = 0; k < nops; k++)
        st[k][m] = st[k][d];
    } else {
      m++;
      shp[m] = shp[d];
      for (int k = 0; k < nops; k++)
        st[k][m] = st[k][d];
    }
  }
  nd = m + 1;
  it->inner = shp[nd - 1];
  for (int k = 0; k < nops; k++) {
    it->istr[k] = st[k][nd - 1];
    it->off[k] = 0;
  }
  it->ndim = nd - 1;
  it->rows = 1;
  for (int d = 0; d < it->ndim; d++) {
    it->shape[d] = shp[d];
    it->idx[d] = 0;
    it->rows *= shp[d];
    for (int k = 0; k < nops; k++)
      it->stride[k][d] = st[k][d];
  }
}

void cr__iter_next(cr__iter *it) {
  for (int d = it->ndim - 1; d >= 0; d--) {
    if (++it->idx[d] < it->shape[d]) {
      for (int k = 0; k < it->nops; k++)
        it->off[k] += it->stride[k][d];
      return;
    }
    it->idx[d] = 0;
    for (int k = 0; k < it->nops; k++)
      it->off[k] -= it->stride[k][d] * (it->shape[d] - 1);
  }
}

void cr__bcast_strides(const cr_tensor *t, int out_ndim, const int64_t *out_shape,
                       int64_t *stride) {
  int lead = out_ndim - t->ndim;
  for (int d = 0; d < out_ndim; d++) {
    int td = d - lead;
    stride[d] = (td < 0 || (t->shape[td] == 1 && out_shape[d] != 1)) ? 0 : t->stride[td];
  }
}

bool cr__bcast_shape(cr_ctx *ctx, const char *op, const cr_tensor *a, const cr_tensor *b,
                     int *ndim, int64_t *shape) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < nd; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      cr__fail(ctx, CR_ERR_SHAPE, "%s: %s and %s: dim %d (%lld vs %lld) do not broadcast",
               op, cr__shp(a), cr__shp(b), d - nd, (long long)sa, (long long)sb);
      return false;
    }
    shape[d] = sa > sb ? sa : sb;
  }
  *ndim = nd;
  return true;
}

bool cr__axis(cr_ctx *ctx, const char *op, const cr_tensor *x, int *axis) {
  int a = *axis;
  if (a < -x->ndim || a >= x->ndim) {
    cr__fail(ctx, CR_ERR_ARG, "%s: %s: axis %d out of range for %d dims", op, cr__shp(x), a,
             x->ndim);
    return false;
  }
  *axis = a < 0 ? a + x->ndim : a;
  return true;
}

CR_KERNEL void cr__add_dense(cr_tensor *dst, const cr_tensor *src) {
  int64_t n = dst->numel;
#define ADD_DENSE(T)                                                           \
  {                                                                            \
    T *d = dst->data;                                                          \
    const T *s = src->data;                                                    \
    for (int64_t i = 0; i < n; i++)                                            \
      d[i] += s[i];                                                            \
  }
  CR_DISPATCH(dst->dtype, ADD_DENSE);
#undef ADD_DENSE
}

CR_KERNEL void cr__add_reduced(cr_tensor *dst, const cr_tensor *src) {
  int64_t sd[CR_MAX_DIMS];
  cr__bcast_strides(dst, src->ndim, src->shape, sd);
  const int64_t *strides[2] = {sd, src->stride};
  cr__iter it;
  cr__iter_init(&it, src->ndim, src->shape, 2, strides);
#define ADD_RED(T)                                                             \
  {                                                                            \
    T *d = dst->data;                                                          \
    const T *s = src->data;                                                    \
    for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                \
      T *dr = d + it.off[0];                                                   \
      const T *sr = s + it.off[1];                                             \
      if (it.istr[0] == 0) {                                                   \
        T acc = 0;                                                             \
        for (int64_t i = 0; i < it.inner; i++)                                 \
          acc += sr[i * it.istr[1]];                                           \
        dr[0] += acc;                                                          \
      } else if (it.istr[0] == 1 && it.istr[1] == 1) {                         \
        _Pragma("omp simd") for (int64_t i = 0; i < it.inner; i++) dr[i] += sr[i]; \
      } else {                                                                 \
        for (int64_t i = 0; i < it.inner; i++)                                 \
          dr[i * it.istr[0]] += sr[i * it.istr[1]];                            \
      }                                                                        \
    }                                                                          \
  }
  CR_DISPATCH(dst->dtype, ADD_RED);
#undef ADD_RED
}
