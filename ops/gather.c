/* gather.c — ops that pick rows by integer index.
 *
 *   index_select: y[.., j, ..] = x[.., idx[j], ..] along axis;
 *                 gx[.., idx[j], ..] += gy[.., j, ..]   for every j
 *   embedding:    y[p, :] = weight[ids[p], :]   (weight [V,E], p over ids);
 *                 gweight[ids[p], :] += gy[p, :]        for every p
 *
 * The VJPs are scatter-adds: a repeated index receives the sum of its
 * rows' gradients, which is why they add row by row in order and never
 * write.  The indices are copied into the arena when a node is recorded,
 * since the caller's array need not live until backward.
 *
 * embedding is index_select along axis 0 of a 2-d table with ids of any
 * shape; it is its own op because it sits on the hot path of a character
 * language model, so its loops are plain row copies and row additions. */
#include "op.h"

static void index_select_vjp(cr_ctx *ctx, cr_node *nd);
static void embedding_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_index_select = {"index_select", 1, index_select_vjp, false};
const cr_op_desc cr__op_embedding = {"embedding", 1, embedding_vjp, false};

/* An arena copy of n indices; NULL (with the error set) when out of memory. */
static int64_t *save_indices(cr_ctx *ctx, const int64_t *idx, int64_t n) {
  int64_t *p = cr__alloc(ctx, (size_t)n * sizeof *p);
  if (p)
    memcpy(p, idx, (size_t)n * sizeof *p);
  return p;
}

/* ---- index_select */

/* For j < n, the slab j of `pos` (along axis) and the slab idx[j] of `ind`
 * are matched: gather (add false) pos[j] = ind[idx[j]], or scatter-add
 * (add true) ind[idx[j]] += pos[j].  slab is the shape with axis set to 1;
 * strides are in elements. */
static void slabs(cr_dtype dt, bool add, int ndim, const int64_t *slab, int axis,
                  const int64_t *idx, int64_t n, void *pos, const int64_t *pos_stride,
                  void *ind, const int64_t *ind_stride) {
  /* operand 0 is written, operand 1 read */
  const int64_t *st[2] = {add ? ind_stride : pos_stride, add ? pos_stride : ind_stride};
#define SLABS(T)                                                               \
  for (int64_t j = 0; j < n; j++) {                                            \
    T *p = (T *)pos + j * pos_stride[axis];                                    \
    T *q = (T *)ind + idx[j] * ind_stride[axis];                               \
    T *d = add ? q : p;                                                        \
    const T *s = add ? p : q;                                                  \
    cr__iter it;                                                               \
    cr__iter_init(&it, ndim, slab, 2, st);                                     \
    for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                \
      T *dr = d + it.off[0];                                                   \
      const T *sr = s + it.off[1];                                             \
      const int64_t sd = it.istr[0], ss = it.istr[1];                          \
      if (add)                                                                 \
        for (int64_t i = 0; i < it.inner; i++)                                 \
          dr[i * sd] += sr[i * ss];                                            \
      else                                                                     \
        for (int64_t i = 0; i < it.inner; i++)                                 \
          dr[i * sd] = sr[i * ss];                                             \
    }                                                                          \
  }
  CR_DISPATCH(dt, SLABS);
#undef SLABS
}

cr_tensor *cr_index_select(cr_ctx *ctx, cr_tensor *x, int axis, const int64_t *idx,
                           int64_t n) {
  if (!cr__check_inputs(ctx, "index_select", 1, &x) ||
      !cr__axis(ctx, "index_select", x, &axis))
    return NULL;
  if (!idx || n < 1)
    return cr__fail(ctx, CR_ERR_ARG, "index_select: %s axis %d: %lld indices%s: need at "
                    "least one", cr__shp(x), axis, (long long)n, idx ? "" : " (idx is NULL)");
  const int64_t dim = x->shape[axis];
  for (int64_t j = 0; j < n; j++)
    if (idx[j] < 0 || idx[j] >= dim)
      return cr__fail(ctx, CR_ERR_ARG, "index_select: %s axis %d: index %lld at position "
                      "%lld is out of range [0,%lld)", cr__shp(x), axis, (long long)idx[j],
                      (long long)j, (long long)dim);
  int64_t shape[CR_MAX_DIMS], slab[CR_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  memcpy(slab, x->shape, sizeof slab);
  shape[axis] = n;
  slab[axis] = 1;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, shape);
  if (!y)
    return NULL;
  slabs(x->dtype, false, x->ndim, slab, axis, idx, n, y->data, y->stride, x->data,
        x->stride);
  cr_node *nd = cr__record(ctx, &cr__op_index_select, y, 1, &x);
  if (nd) {
    nd->iattr[0] = axis;
    nd->saved = save_indices(ctx, idx, n);
    if (!nd->saved)
      return NULL;
  }
  return y;
}

/* gx[.., idx[j], ..] += gy[.., j, ..] */
static void index_select_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out, *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  int axis = (int)nd->iattr[0];
  int64_t slab[CR_MAX_DIMS];
  memcpy(slab, x->shape, sizeof slab);
  slab[axis] = 1;
  slabs(x->dtype, true, x->ndim, slab, axis, nd->saved, y->shape[axis], y->grad->data,
        y->grad->stride, gx->data, gx->stride);
}

/* ---- embedding */

cr_tensor *cr_embedding(cr_ctx *ctx, cr_tensor *weight, const int64_t *ids, int ndim,
                        const int64_t *ids_shape) {
  if (!cr__check_inputs(ctx, "embedding", 1, &weight))
    return NULL;
  if (weight->ndim != 2)
    return cr__fail(ctx, CR_ERR_SHAPE, "embedding: weight %s: must be 2-d [V,E]",
                    cr__shp(weight));
  if (!ids)
    return cr__fail(ctx, CR_ERR_ARG, "embedding: weight %s: ids is NULL", cr__shp(weight));
  if (ndim > CR_MAX_DIMS - 1)
    return cr__fail(ctx, CR_ERR_SHAPE, "embedding: weight %s: ids of %d dims: at most %d, "
                    "since the result [ids..., E] adds a dim", cr__shp(weight), ndim,
                    CR_MAX_DIMS - 1);
  if (!cr__check_shape(ctx, "embedding", ndim, ids_shape))
    return NULL;
  const int64_t V = weight->shape[0], E = weight->shape[1];
  const int64_t P = cr__numel(ndim, ids_shape); /* lookups */
  for (int64_t p = 0; p < P; p++)
    if (ids[p] < 0 || ids[p] >= V)
      return cr__fail(ctx, CR_ERR_ARG, "embedding: weight %s: id %lld at position %lld is "
                      "out of range [0,%lld)", cr__shp(weight), (long long)ids[p],
                      (long long)p, (long long)V);
  int64_t shape[CR_MAX_DIMS];
  memcpy(shape, ids_shape, (size_t)ndim * sizeof *shape);
  shape[ndim] = E;
  cr_tensor *y = cr__new(ctx, weight->dtype, ndim + 1, shape); /* (P,E) */
  if (!y)
    return NULL;
  const int64_t sv = weight->stride[0], se = weight->stride[1];
#define EMB_FWD(T)                                                             \
  {                                                                            \
    const T *w = weight->data;                                                 \
    T *out = y->data;                                                          \
    if (se == 1) {                                                             \
      for (int64_t p = 0; p < P; p++)                                          \
        memcpy(out + p * E, w + ids[p] * sv, (size_t)E * sizeof(T));           \
    } else {                                                                   \
      for (int64_t p = 0; p < P; p++)                                          \
        for (int64_t e = 0; e < E; e++)                                        \
          out[p * E + e] = w[ids[p] * sv + e * se];                            \
    }                                                                          \
  }
  CR_DISPATCH(y->dtype, EMB_FWD);
#undef EMB_FWD
  cr_node *nd = cr__record(ctx, &cr__op_embedding, y, 1, &weight);
  if (nd) {
    nd->iattr[0] = P;
    nd->saved = save_indices(ctx, ids, P);
    if (!nd->saved)
      return NULL;
  }
  return y;
}

/* gweight[ids[p], :] += gy[p, :] */
static void embedding_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gw = cr__grad_acc(ctx, nd->in[0]), *gy = nd->out->grad;
  if (!gw)
    return;
  const int64_t *ids = nd->saved;
  const int64_t P = nd->iattr[0], E = gw->shape[1];
  CR_ASSERT(cr__is_contig(gy) && cr__is_contig(gw), "embedding: gradients not contiguous");
#define EMB_BWD(T)                                                             \
  {                                                                            \
    T *g = gw->data;                                                           \
    const T *up = gy->data;                                                    \
    for (int64_t p = 0; p < P; p++) {                                          \
      T *row = g + ids[p] * E;                                                 \
      const T *src = up + p * E;                                               \
      for (int64_t e = 0; e < E; e++)                                          \
        row[e] += src[e];                                                      \
    }                                                                          \
  }
  CR_DISPATCH(gw->dtype, EMB_BWD);
#undef EMB_BWD
}
