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

#define T float
#define SFX _f
#include "gather_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "gather_kernels.inc"
#undef T
#undef SFX

typedef struct {
  int axis;
  int64_t n; /* indices (saved in nd->saved) */
} index_attr;
CR__ATTR(index_attr)

static void index_select_vjp(cr_ctx *ctx, cr_node *nd);
static void index_add_vjp(cr_ctx *ctx, cr_node *nd);
static void embedding_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status index_select_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status index_add_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status embedding_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_index_select = {.name = "index_select",
                                        .n_inputs = 1,
                                        .vjp = index_select_vjp,
                                        .vjp_graph = index_select_vjp_graph,
                                        .reads = 0};
const cr_op_desc cr__op_index_add = {.name = "index_add",
                                     .n_inputs = 1,
                                     .vjp = index_add_vjp,
                                     .vjp_graph = index_add_vjp_graph,
                                     .reads = 0};
const cr_op_desc cr__op_embedding = {.name = "embedding",
                                     .n_inputs = 1,
                                     .vjp = embedding_vjp,
                                     .vjp_graph = embedding_vjp_graph,
                                     .reads = 0};

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
 * strides are in elements.  In order of j, so repeated indices add up. */
static void slabs(cr_dtype dt, bool add, int ndim, const int64_t *slab, int axis,
                  const int64_t *idx, int64_t n, void *pos, const int64_t *pos_stride, void *ind,
                  const int64_t *ind_stride) {
  const size_t es = cr_dtype_size(dt);
  cr_tensor p = {.dtype = dt, .ndim = ndim}, q = p;
  memcpy(p.shape, slab, sizeof(int64_t) * (size_t)ndim);
  memcpy(q.shape, slab, sizeof(int64_t) * (size_t)ndim);
  memcpy(p.stride, pos_stride, sizeof(int64_t) * (size_t)ndim);
  memcpy(q.stride, ind_stride, sizeof(int64_t) * (size_t)ndim);
  for (int64_t j = 0; j < n; j++) {
    p.data = (char *)pos + (size_t)(j * pos_stride[axis]) * es;
    q.data = (char *)ind + (size_t)(idx[j] * ind_stride[axis]) * es;
    if (add)
      cr__copy_convert(&q, &p, true);
    else
      cr__copy_convert(&p, &q, false);
  }
}

/* Indices in [0, dim)?  Else an error naming op. */
static bool indices_ok(cr_ctx *ctx, const char *op, const cr_tensor *x, int axis,
                       const int64_t *idx, int64_t n, int64_t dim) {
  for (int64_t j = 0; j < n; j++)
    if (idx[j] < 0 || idx[j] >= dim) {
      cr__fail(ctx, CR_ERR_ARG,
               "%s: %s axis %d: index %lld at position %lld is out of range "
               "[0,%lld)",
               op, cr__shp(x), axis, (long long)idx[j], (long long)j, (long long)dim);
      return false;
    }
  return true;
}

cr_tensor *cr_index_select(cr_ctx *ctx, cr_tensor *x, int axis, const int64_t *idx, int64_t n) {
  if (!cr__check_inputs(ctx, "index_select", 1, &x) || !cr__axis(ctx, "index_select", x, &axis))
    return NULL;
  if (!idx || n < 1)
    return cr__fail(ctx, CR_ERR_ARG,
                    "index_select: %s axis %d: %lld indices%s: need at "
                    "least one",
                    cr__shp(x), axis, (long long)n, idx ? "" : " (idx is NULL)");
  if (!indices_ok(ctx, "index_select", x, axis, idx, n, x->shape[axis]))
    return NULL;
  int64_t shape[CR_MAX_DIMS], slab[CR_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  memcpy(slab, x->shape, sizeof slab);
  shape[axis] = n;
  slab[axis] = 1;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, shape);
  if (!y)
    return NULL;
  slabs(x->dtype, false, x->ndim, slab, axis, idx, n, y->data, y->stride, x->data, x->stride);
  cr_node *nd = cr__record(ctx, &cr__op_index_select, y, 1, &x);
  if (nd) {
    *index_attr_of(nd) = (index_attr){axis, n};
    nd->saved = save_indices(ctx, idx, n);
    if (!nd->saved)
      return NULL;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* gx[.., idx[j], ..] += gy[.., j, ..] */
static void index_select_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out, *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  const index_attr *at = index_attr_of(nd);
  int64_t slab[CR_MAX_DIMS];
  memcpy(slab, x->shape, sizeof slab);
  slab[at->axis] = 1;
  slabs(x->dtype, true, x->ndim, slab, at->axis, nd->saved, at->n, y->grad->data, y->grad->stride,
        gx->data, gx->stride);
}

/* gx = gy scattered back: index_add (below) */
static cr_status index_select_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const index_attr *at = index_attr_of(nd);
  cr_tensor *x = nd->in[0];
  gx[0] = cr__index_add(ctx, gy, x->ndim, x->shape, at->axis, nd->saved);
  return cr_ctx_status(ctx);
}

/* ---- index_add: the adjoint of index_select
 *   index_add: y = zeros(shape); y[.., idx[j], ..] += x[.., j, ..];
 *              gx[.., j, ..] += gy[.., idx[j], ..] */

cr_tensor *cr__index_add(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape, int axis,
                         const int64_t *idx) {
  if (!cr__check_inputs(ctx, "index_add", 1, &x) || !cr__check_shape(ctx, "index_add", ndim, shape))
    return NULL;
  bool ok = ndim == x->ndim && axis >= 0 && axis < ndim && idx;
  for (int d = 0; ok && d < ndim; d++)
    ok = d == axis || shape[d] == x->shape[d];
  if (!ok)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "index_add: %s into %d dims along axis %d: shapes "
                    "differ off the axis, or no indices",
                    cr__shp(x), ndim, axis);
  const int64_t n = x->shape[axis];
  cr_tensor *y = cr__new(ctx, x->dtype, ndim, shape);
  if (!y || !indices_ok(ctx, "index_add", y, axis, idx, n, shape[axis]))
    return NULL;
  memset(y->data, 0, (size_t)y->numel * cr_dtype_size(y->dtype));
  int64_t slab[CR_MAX_DIMS];
  memcpy(slab, x->shape, sizeof slab);
  slab[axis] = 1;
  slabs(x->dtype, true, x->ndim, slab, axis, idx, n, x->data, x->stride, y->data, y->stride);
  cr_node *nd = cr__record(ctx, &cr__op_index_add, y, 1, &x);
  if (nd) {
    *index_attr_of(nd) = (index_attr){axis, n};
    nd->saved = save_indices(ctx, idx, n);
    if (!nd->saved)
      return NULL;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* gx[.., j, ..] += gy[.., idx[j], ..] */
static void index_add_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *gy = nd->out->grad, *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  const index_attr *at = index_attr_of(nd);
  const int64_t *idx = nd->saved;
  int64_t slab[CR_MAX_DIMS];
  memcpy(slab, x->shape, sizeof slab);
  slab[at->axis] = 1;
  /* gather gy's slabs into a scratch of x's shape, then add */
  cr_tensor *g = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!g)
    return;
  slabs(x->dtype, false, x->ndim, slab, at->axis, idx, at->n, g->data, g->stride, gy->data,
        gy->stride);
  cr__add_dense(gx, g);
}

static cr_status index_add_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const index_attr *at = index_attr_of(nd);
  gx[0] = cr_index_select(ctx, gy, at->axis, nd->saved, at->n);
  return cr_ctx_status(ctx);
}

/* ---- embedding */

cr_tensor *cr_embedding(cr_ctx *ctx, cr_tensor *weight, const int64_t *ids, int ndim,
                        const int64_t *ids_shape) {
  if (!cr__check_inputs(ctx, "embedding", 1, &weight))
    return NULL;
  if (weight->ndim != 2)
    return cr__fail(ctx, CR_ERR_SHAPE, "embedding: weight %s: must be 2-d [V,E]", cr__shp(weight));
  if (!ids)
    return cr__fail(ctx, CR_ERR_ARG, "embedding: weight %s: ids is NULL", cr__shp(weight));
  if (ndim > CR_MAX_DIMS - 1)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "embedding: weight %s: ids of %d dims: at most %d, "
                    "since the result [ids..., E] adds a dim",
                    cr__shp(weight), ndim, CR_MAX_DIMS - 1);
  if (!cr__check_shape(ctx, "embedding", ndim, ids_shape))
    return NULL;
  const int64_t V = weight->shape[0], E = weight->shape[1];
  const int64_t P = cr__numel(ndim, ids_shape); /* lookups */
  for (int64_t p = 0; p < P; p++)
    if (ids[p] < 0 || ids[p] >= V)
      return cr__fail(ctx, CR_ERR_ARG,
                      "embedding: weight %s: id %lld at position %lld is "
                      "out of range [0,%lld)",
                      cr__shp(weight), (long long)ids[p], (long long)p, (long long)V);
  int64_t shape[CR_MAX_DIMS];
  memcpy(shape, ids_shape, (size_t)ndim * sizeof *shape);
  shape[ndim] = E;
  cr_tensor *y = cr__new(ctx, weight->dtype, ndim + 1, shape); /* (P,E) */
  if (!y)
    return NULL;
  /* y[p, :] = weight[ids[p], :]: row copies (element copies for a strided weight) */
  const int64_t sv = weight->stride[0], se = weight->stride[1];
  const size_t es = cr_dtype_size(y->dtype);
  const char *w = weight->data;
  char *out = y->data;
  for (int64_t p = 0; p < P; p++) {
    if (se == 1) {
      memcpy(out + (size_t)(p * E) * es, w + (size_t)(ids[p] * sv) * es, (size_t)E * es);
    } else {
      for (int64_t e = 0; e < E; e++)
        memcpy(out + (size_t)(p * E + e) * es, w + (size_t)(ids[p] * sv + e * se) * es, es);
    }
  }
  cr_node *nd = cr__record(ctx, &cr__op_embedding, y, 1, &weight);
  if (nd) {
    *index_attr_of(nd) = (index_attr){0, P};
    nd->saved = save_indices(ctx, ids, P);
    if (!nd->saved)
      return NULL;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* gweight[ids[p], :] += gy[p, :] */
static void embedding_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gw = cr__grad_acc(ctx, nd->in[0]), *gy = nd->out->grad;
  if (!gw)
    return;
  const int64_t *ids = nd->saved;
  const int64_t P = index_attr_of(nd)->n, E = gw->shape[1];
  CR_ASSERT(cr__is_contig(gy) && cr__is_contig(gw), "embedding: gradients not contiguous");
  if (gw->dtype == CR_F32)
    add_rows_at_f(gw->data, gy->data, ids, P, E);
  else
    add_rows_at_d(gw->data, gy->data, ids, P, E);
}

/* gweight = the rows of gy [P,E] added at ids: index_add along axis 0 */
static cr_status embedding_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *w = nd->in[0];
  cr_tensor *rows = cr_reshape(ctx, gy, CR_SHAPE(index_attr_of(nd)->n, w->shape[1]));
  gx[0] = cr__index_add(ctx, rows, 2, w->shape, 0, nd->saved);
  return cr_ctx_status(ctx);
}
