/* index.c — ops along an axis by an index tensor (dtype i64), flip, and the
 * shape ops that are compositions of existing ones.
 *
 *   gather:      y[.., j, ..] = x[.., idx[.., j, ..], ..] along axis (y has
 *                idx's shape; off the axis idx's dims are at most x's);
 *                gx[.., idx[.., j, ..], ..] += gy[.., j, ..]
 *   scatter_add: y = x;  y[.., idx[.., j, ..], ..] += src[.., j, ..]
 *                (src has idx's shape);
 *                gx += gy;  gsrc[.., j, ..] += gy[.., idx[.., j, ..], ..]
 *   flip:        y = x reversed along some axes;  gx += flip(gy)
 *
 * (PyTorch's torch.gather and Tensor.scatter_add.)  Each of gather and
 * scatter_add is the other's VJP, so their graph VJPs are each other; a
 * repeated index receives the sum of its gradients.  The index is copied
 * into the arena when a node is recorded (the caller's may change).  flip
 * copies through a view with negative strides.
 *
 * Compositions, whose gradients are those of the ops they are made of:
 *   index_select_t, embedding_t  index_select and embedding by an i64 tensor
 *   broadcast_to                 expand
 *   squeeze, unsqueeze           reshape
 *   select                       slice, then reshape without the axis
 *   pad                          unslice along each padded axis (its
 *                                gradient is a slice), where() for a
 *                                non-zero value; negative pads slice
 *   repeat                       concat of copies along each axis */
#include "op.h"

#define T float
#define SFX _f
#include "index_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "index_kernels.inc"
#undef T
#undef SFX

typedef struct {
  int axis;
} along_attr;
CR__ATTR(along_attr)

typedef struct {
  bool flip[CR_MAX_DIMS];
} flip_attr;
CR__ATTR(flip_attr)

static void gather_vjp(cr_ctx *ctx, cr_node *nd);
static void scatter_add_vjp(cr_ctx *ctx, cr_node *nd);
static void flip_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status gather_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status scatter_add_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status flip_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_gather = {
    .name = "gather", .n_inputs = 1, .vjp = gather_vjp, .vjp_graph = gather_vjp_graph, .reads = 0};
const cr_op_desc cr__op_scatter_add = {.name = "scatter_add",
                                       .n_inputs = 2,
                                       .vjp = scatter_add_vjp,
                                       .vjp_graph = scatter_add_vjp_graph,
                                       .reads = 0};
const cr_op_desc cr__op_flip = {
    .name = "flip", .n_inputs = 1, .vjp = flip_vjp, .vjp_graph = flip_vjp_graph, .reads = 0};

/* ---- gather and scatter_add */

/* The values of an index tensor (i64 tensors are always contiguous: no op
 * makes a view of one). */
static const int64_t *idx_data(const cr_tensor *idx) {
  CR_ASSERT(idx->dtype == CR_I64 && cr__is_contig(idx), "index tensor not contiguous i64");
  return idx->data;
}

/* idx fits x along axis: as many dims, off the axis no dim larger than x's,
 * every value in [0, dim).  Else an error naming op. */
static bool index_fits(cr_ctx *ctx, const char *op, const cr_tensor *x, int axis,
                       const cr_tensor *idx) {
  bool ok = idx->ndim == x->ndim;
  for (int d = 0; ok && d < x->ndim; d++)
    ok = d == axis || idx->shape[d] <= x->shape[d];
  if (!ok) {
    cr__fail(ctx, CR_ERR_SHAPE,
             "%s: %s axis %d, index %s: the index needs x's %d dims, none "
             "larger than x's off the axis",
             op, cr__shp(x), axis, cr__shp(idx), x->ndim);
    return false;
  }
  const int64_t *v = idx_data(idx), dim = x->shape[axis];
  for (int64_t i = 0; i < idx->numel; i++)
    if (v[i] < 0 || v[i] >= dim) {
      cr__fail(ctx, CR_ERR_ARG,
               "%s: %s axis %d: index %lld at position %lld is out of range "
               "[0,%lld)",
               op, cr__shp(x), axis, (long long)v[i], (long long)i, (long long)dim);
      return false;
    }
  return true;
}

/* An arena copy of idx (the node keeps it), or NULL when out of memory. */
static cr_tensor *keep_index(cr_ctx *ctx, const cr_tensor *idx) {
  cr_tensor *k = cr__new(ctx, CR_I64, idx->ndim, idx->shape);
  if (k)
    memcpy(k->data, idx_data(idx), (size_t)idx->numel * sizeof(int64_t));
  return k;
}

/* An iterator over idx's shape: operand 0 idx, 1 the dense side (strides
 * dense_stride), 2 the indexed tensor s with its axis stride set to 0. */
static void along_iter(cr__iter *it, const cr_tensor *idx, const int64_t *dense_stride,
                       const cr_tensor *s, int axis) {
  int64_t ss[CR_MAX_DIMS];
  memcpy(ss, s->stride, sizeof ss);
  ss[axis] = 0;
  const int64_t *st[3] = {idx->stride, dense_stride, ss};
  cr__iter_init(it, idx->ndim, idx->shape, 3, st);
}

/* d (= or +=) s[.., idx, ..] over idx's shape */
static void take(const cr_tensor *idx, cr_tensor *d, const int64_t *d_stride, const cr_tensor *s,
                 int axis, bool add) {
  cr__iter it;
  along_iter(&it, idx, d_stride, s, axis);
  if (s->dtype == CR_F32)
    take_along_f(&it, idx_data(idx), d->data, s->data, s->stride[axis], add);
  else
    take_along_d(&it, idx_data(idx), d->data, s->data, s->stride[axis], add);
}

/* s[.., idx, ..] += d over idx's shape */
static void put(const cr_tensor *idx, const cr_tensor *d, cr_tensor *s, int axis) {
  cr__iter it;
  along_iter(&it, idx, d->stride, s, axis);
  if (s->dtype == CR_F32)
    put_along_f(&it, idx_data(idx), d->data, s->data, s->stride[axis]);
  else
    put_along_d(&it, idx_data(idx), d->data, s->data, s->stride[axis]);
}

cr_tensor *cr_gather(cr_ctx *ctx, cr_tensor *x, int axis, cr_tensor *index) {
  if (!cr__check_inputs(ctx, "gather", 1, &x) || !cr__check_index(ctx, "gather", "index", index) ||
      !cr__axis(ctx, "gather", x, &axis) || !index_fits(ctx, "gather", x, axis, index))
    return NULL;
  cr_tensor *y = cr__new(ctx, x->dtype, index->ndim, index->shape);
  if (!y)
    return NULL;
  take(index, y, y->stride, x, axis, false);
  cr_node *nd = cr__record(ctx, &cr__op_gather, y, 1, &x);
  if (nd) {
    along_attr_of(nd)->axis = axis;
    if (!(nd->saved = keep_index(ctx, index)))
      return NULL;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* gx[.., idx, ..] += gy */
static void gather_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (gx)
    put(nd->saved, nd->out->grad, gx, along_attr_of(nd)->axis);
}

/* gx = zeros of x's shape with gy scatter-added */
static cr_status gather_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *x = nd->in[0];
  gx[0] = cr_scatter_add(ctx, cr_zeros(ctx, x->dtype, x->ndim, x->shape), along_attr_of(nd)->axis,
                         nd->saved, gy);
  return cr_ctx_status(ctx);
}

cr_tensor *cr_scatter_add(cr_ctx *ctx, cr_tensor *x, int axis, cr_tensor *index, cr_tensor *src) {
  cr_tensor *in[2] = {x, src};
  if (!cr__check_inputs(ctx, "scatter_add", 2, in) ||
      !cr__check_index(ctx, "scatter_add", "index", index) ||
      !cr__axis(ctx, "scatter_add", x, &axis) || !index_fits(ctx, "scatter_add", x, axis, index))
    return NULL;
  if (src->ndim != index->ndim ||
      memcmp(src->shape, index->shape, sizeof(int64_t) * (size_t)src->ndim) != 0)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "scatter_add: %s axis %d, index %s, src %s: src must "
                    "have the index's shape",
                    cr__shp(x), axis, cr__shp(index), cr__shp(src));
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!y)
    return NULL;
  cr__copy_convert(y, x, false);
  put(index, src, y, axis);
  cr_node *nd = cr__record(ctx, &cr__op_scatter_add, y, 2, in);
  if (nd) {
    along_attr_of(nd)->axis = axis;
    if (!(nd->saved = keep_index(ctx, index)))
      return NULL;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* gx += gy;  gsrc += gy[.., idx, ..] */
static void scatter_add_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gy = nd->out->grad;
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (gx)
    cr__copy_convert(gx, gy, true);
  cr_tensor *gs = cr__grad_acc(ctx, nd->in[1]);
  if (gs)
    take(nd->saved, gs, gs->stride, gy, along_attr_of(nd)->axis, true);
}

/* gx = gy;  gsrc = gather(gy, idx) */
static cr_status scatter_add_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  if (nd->in[0]->requires_grad)
    gx[0] = gy;
  if (nd->in[1]->requires_grad)
    gx[1] = cr_gather(ctx, gy, along_attr_of(nd)->axis, nd->saved);
  return cr_ctx_status(ctx);
}

/* ---- flip */

/* t seen reversed along the flagged axes (negative strides) */
static cr_tensor flipped_view(const cr_tensor *t, const bool *flip) {
  cr_tensor v = *t;
  char *base = t->data;
  for (int d = 0; d < t->ndim; d++)
    if (flip[d]) {
      base += (t->shape[d] - 1) * t->stride[d] * (int64_t)cr_dtype_size(t->dtype);
      v.stride[d] = -t->stride[d];
    }
  v.data = base;
  return v;
}

cr_tensor *cr_flip(cr_ctx *ctx, cr_tensor *x, const int *axes, int n) {
  if (!cr__check_inputs(ctx, "flip", 1, &x))
    return NULL;
  if (!axes || n < 1 || n > x->ndim)
    return cr__fail(ctx, CR_ERR_ARG, "flip: %s: %d axes%s: need 1 to %d axes", cr__shp(x), n,
                    axes ? "" : " (axes is NULL)", x->ndim);
  flip_attr at = {{false}};
  for (int k = 0; k < n; k++) {
    int a = axes[k];
    if (!cr__axis(ctx, "flip", x, &a))
      return NULL;
    if (at.flip[a])
      return cr__fail(ctx, CR_ERR_ARG, "flip: %s: axis %d given twice", cr__shp(x), a);
    at.flip[a] = true;
  }
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!y)
    return NULL;
  cr_tensor v = flipped_view(x, at.flip);
  cr__copy_convert(y, &v, false);
  cr_node *nd = cr__record(ctx, &cr__op_flip, y, 1, &x);
  if (nd)
    *flip_attr_of(nd) = at;
  return ctx->status == CR_OK ? y : NULL;
}

static void flip_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (!gx)
    return;
  cr_tensor v = flipped_view(nd->out->grad, flip_attr_of(nd)->flip);
  cr__copy_convert(gx, &v, true);
}

static cr_status flip_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  int axes[CR_MAX_DIMS], n = 0;
  for (int d = 0; d < gy->ndim; d++)
    if (flip_attr_of(nd)->flip[d])
      axes[n++] = d;
  gx[0] = cr_flip(ctx, gy, axes, n);
  return cr_ctx_status(ctx);
}

/* ---- by an i64 tensor: the tensor forms of index_select and embedding */

cr_tensor *cr_index_select_t(cr_ctx *ctx, cr_tensor *x, int axis, cr_tensor *index) {
  if (!cr__check_index(ctx, "index_select", "index", index))
    return NULL;
  if (index->ndim != 1)
    return cr__fail(ctx, CR_ERR_SHAPE, "index_select: index %s: must be 1-d", cr__shp(index));
  return cr_index_select(ctx, x, axis, idx_data(index), index->numel);
}

cr_tensor *cr_embedding_t(cr_ctx *ctx, cr_tensor *weight, cr_tensor *ids) {
  if (!cr__check_index(ctx, "embedding", "ids", ids))
    return NULL;
  return cr_embedding(ctx, weight, idx_data(ids), ids->ndim, ids->shape);
}

/* ---- shape ops as compositions */

cr_tensor *cr_broadcast_to(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape) {
  return cr_expand(ctx, x, ndim, shape);
}

cr_tensor *cr_squeeze(cr_ctx *ctx, cr_tensor *x, int axis) {
  if (!cr__check_inputs(ctx, "squeeze", 1, &x) || !cr__axis(ctx, "squeeze", x, &axis))
    return NULL;
  if (x->shape[axis] != 1)
    return cr__fail(ctx, CR_ERR_SHAPE, "squeeze: %s axis %d: size %lld, not 1", cr__shp(x), axis,
                    (long long)x->shape[axis]);
  if (x->ndim == 1)
    return x; /* [1] stays [1]: no tensor has 0 dims */
  int64_t shape[CR_MAX_DIMS];
  for (int d = 0, j = 0; d < x->ndim; d++)
    if (d != axis)
      shape[j++] = x->shape[d];
  return cr_reshape(ctx, x, x->ndim - 1, shape);
}

cr_tensor *cr_unsqueeze(cr_ctx *ctx, cr_tensor *x, int axis) {
  if (!cr__check_inputs(ctx, "unsqueeze", 1, &x))
    return NULL;
  const int nd = x->ndim + 1;
  if (nd > CR_MAX_DIMS)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "unsqueeze: %s: the result would have %d dims, more "
                    "than %d",
                    cr__shp(x), nd, CR_MAX_DIMS);
  if (axis < -nd || axis >= nd)
    return cr__fail(ctx, CR_ERR_ARG,
                    "unsqueeze: %s: axis %d out of range for the %d-dim "
                    "result",
                    cr__shp(x), axis, nd);
  if (axis < 0)
    axis += nd;
  int64_t shape[CR_MAX_DIMS];
  for (int d = 0, j = 0; d < nd; d++)
    shape[d] = d == axis ? 1 : x->shape[j++];
  return cr_reshape(ctx, x, nd, shape);
}

cr_tensor *cr_pad(cr_ctx *ctx, cr_tensor *x, const int64_t *pad, int n, double value) {
  if (!cr__check_inputs(ctx, "pad", 1, &x))
    return NULL;
  if (!pad || n < 2 || n % 2 || n / 2 > x->ndim)
    return cr__fail(ctx, CR_ERR_ARG,
                    "pad: %s: %d pad sizes%s: need pairs (before, after) for "
                    "1 to %d axes, the last axis first",
                    cr__shp(x), n, pad ? "" : " (pad is NULL)", x->ndim);
  int64_t out[CR_MAX_DIMS];
  memcpy(out, x->shape, sizeof out);
  for (int k = 0; k < n / 2; k++) {
    const int d = x->ndim - 1 - k;
    const int64_t lo = pad[2 * k], hi = pad[2 * k + 1], dim = x->shape[d];
    int64_t s = 0;
    bool ok = lo >= -dim && hi >= -dim; /* then the cuts below cannot overflow */
    if (ok) {
      s = dim - (lo < 0 ? -lo : 0) - (hi < 0 ? -hi : 0);
      ok = s >= 1 && cr__add_ok(s, lo > 0 ? lo : 0, &s) && cr__add_ok(s, hi > 0 ? hi : 0, &s);
    }
    if (!ok)
      return cr__fail(ctx, CR_ERR_SHAPE,
                      "pad: %s: pads %lld, %lld of axis %d leave no "
                      "elements or overflow",
                      cr__shp(x), (long long)lo, (long long)hi, d);
    out[d] = s;
  }
  int64_t numel;
  if (!cr__numel_ok(x->ndim, out, &numel))
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "pad: %s: the result would have more than 2^40 "
                    "elements",
                    cr__shp(x));
  cr_tensor *y = x, *mask = NULL; /* mask: 1 where y holds x's values (a constant) */
  for (int k = 0; k < n / 2 && y; k++) {
    const int d = x->ndim - 1 - k;
    const int64_t lo = pad[2 * k], hi = pad[2 * k + 1];
    if (lo < 0 || hi < 0) { /* cut first */
      const int64_t b = lo < 0 ? -lo : 0, e = y->shape[d] - (hi < 0 ? -hi : 0);
      y = cr_slice(ctx, y, d, b, e, 1);
      mask = mask ? cr_slice(ctx, mask, d, b, e, 1) : NULL;
    }
    if (y && (lo > 0 || hi > 0)) {
      int64_t shape[CR_MAX_DIMS];
      memcpy(shape, y->shape, sizeof shape);
      shape[d] = out[d];
      if (value != 0 && !mask)
        mask = cr_ones(ctx, y->dtype, y->ndim, y->shape);
      if (mask)
        mask = cr__unslice(ctx, mask, y->ndim, shape, d, lo > 0 ? lo : 0, 1);
      y = cr__unslice(ctx, y, y->ndim, shape, d, lo > 0 ? lo : 0, 1);
    }
  }
  return y && mask ? cr_where(ctx, mask, y, cr__scalar_like(ctx, y, value)) : y;
}

cr_tensor *cr_repeat(cr_ctx *ctx, cr_tensor *x, const int64_t *reps, int n) {
  if (!cr__check_inputs(ctx, "repeat", 1, &x))
    return NULL;
  if (!reps || n < x->ndim || n > CR_MAX_DIMS)
    return cr__fail(ctx, CR_ERR_ARG,
                    "repeat: %s: %d repeat counts%s: need %d to %d (one per "
                    "axis; extra ones add leading axes)",
                    cr__shp(x), n, reps ? "" : " (reps is NULL)", x->ndim, CR_MAX_DIMS);
  int64_t shape[CR_MAX_DIMS], out[CR_MAX_DIMS], numel;
  for (int d = 0; d < n; d++) {
    shape[d] = d < n - x->ndim ? 1 : x->shape[d - (n - x->ndim)];
    if (reps[d] < 1)
      return cr__fail(ctx, CR_ERR_ARG, "repeat: %s: count %lld for axis %d must be >= 1",
                      cr__shp(x), (long long)reps[d], d);
    if (!cr__mul_ok(shape[d], reps[d], &out[d]))
      out[d] = -1;
  }
  if (!cr__numel_ok(n, out, &numel))
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "repeat: %s: the result would have more than 2^40 "
                    "elements",
                    cr__shp(x));
  cr_tensor *y = n > x->ndim ? cr_reshape(ctx, x, n, shape) : x;
  for (int d = 0; d < n && y; d++) {
    if (reps[d] == 1)
      continue;
    if (reps[d] > INT32_MAX)
      return cr__fail(ctx, CR_ERR_SHAPE, "repeat: %s: count %lld too large", cr__shp(x),
                      (long long)reps[d]);
    cr_tensor **copies = cr__alloc(ctx, (size_t)reps[d] * sizeof *copies);
    if (!copies)
      return NULL;
    for (int64_t i = 0; i < reps[d]; i++)
      copies[i] = y;
    y = cr_concat(ctx, copies, (int)reps[d], d);
  }
  return y;
}
