/* shape.c — ops that cut, join and convert tensors.
 *
 *   slice:  y = x[.., start:stop:step, ..] along axis (a view);
 *           gx[.., start:stop:step, ..] += gy
 *   select: y = x[.., index, ..], the axis dropped (a view; a slice of one
 *           entry without its unit axis, one node);  gx[.., index, ..] += gy
 *   concat: y = [x_0 | x_1 | ... | x_{n-1}] along an existing axis;
 *           gx_k += the piece of gy at x_k's offset along axis
 *   stack:  y[.., k, ..] = x_k along a new axis;
 *           gx_k += gy[.., k, ..]
 *   cast:   y = x converted to another dtype;
 *           gx += gy converted back to x's dtype
 *
 * split and chunk are no ops of their own: they return slice views, so
 * each piece is a "slice" node and the pieces' gradients meet in gx.
 *
 * unslice (internal) is slice's adjoint, the gradient of a slice as an op
 * (its own gradient is a slice again), used by the differentiable VJPs.
 *
 * Every gradient here is a copy of gy (or a part of it) added into a region
 * of gx, so one strided kernel, region_move, does the forward copies and
 * the VJP additions; a transposed or sliced input is read through its own
 * strides and never materialised. */
#include "op.h"

typedef struct {
  int axis;
  int64_t start, step; /* the first element taken, and the stride along axis */
  bool drop;           /* select: y has no axis `axis` (one entry, step 1) */
} slice_attr;
CR__ATTR(slice_attr)

typedef struct {
  int axis;
} axis_attr;
CR__ATTR(axis_attr)

static void slice_vjp(cr_ctx *ctx, cr_node *nd);
static void unslice_vjp(cr_ctx *ctx, cr_node *nd);
static void concat_vjp(cr_ctx *ctx, cr_node *nd);
static void stack_vjp(cr_ctx *ctx, cr_node *nd);
static void cast_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status slice_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status unslice_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status concat_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status stack_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_status cast_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_tensor *slice_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh);
static bool takes_view(const cr_node *nd, int k) { return (void)nd, (void)k, true; }

const cr_op_desc cr__op_slice = {.name = "slice",
                                 .n_inputs = 1,
                                 .vjp = slice_vjp,
                                 .vjp_graph = slice_vjp_graph,
                                 .reads = 0,
                                 .grad_alias = slice_grad_alias,
                                 .takes_view_grad = takes_view};
const cr_op_desc cr__op_select = {.name = "select",
                                  .n_inputs = 1,
                                  .vjp = slice_vjp,
                                  .vjp_graph = slice_vjp_graph,
                                  .reads = 0,
                                  .grad_alias = slice_grad_alias,
                                  .takes_view_grad = takes_view};
const cr_op_desc cr__op_unslice = {.name = "unslice",
                                   .n_inputs = 1,
                                   .vjp = unslice_vjp,
                                   .vjp_graph = unslice_vjp_graph,
                                   .reads = 0};
const cr_op_desc cr__op_concat = {
    .name = "concat", .n_inputs = -1, .vjp = concat_vjp, .vjp_graph = concat_vjp_graph, .reads = 0};
const cr_op_desc cr__op_stack = {
    .name = "stack", .n_inputs = -1, .vjp = stack_vjp, .vjp_graph = stack_vjp_graph, .reads = 0};
const cr_op_desc cr__op_cast = {
    .name = "cast", .n_inputs = 1, .vjp = cast_vjp, .vjp_graph = cast_vjp_graph, .reads = 0};

/* Address of the element `off` elements past data. */
static void *elem_at(const void *data, int64_t off, cr_dtype dt) {
  return (char *)data + off * (int64_t)cr_dtype_size(dt);
}

/* Over shape (ndim dims): dst = src, or dst += src when add.  Both are given
 * by a base pointer and element strides (any layout; dst and src must not
 * overlap). */
static void region_move(cr_dtype dt, bool add, int ndim, const int64_t *shape, void *dst,
                        const int64_t *dst_stride, const void *src, const int64_t *src_stride) {
  cr__move_strided(dt, dst, dst_stride, dt, src, src_stride, ndim, shape, add);
}

/* ---- slice */

/* Python's rule for a slice bound: negative counts from the end, then
 * clamp to [0, dim]. */
static int64_t clamp_bound(int64_t b, int64_t dim) {
  if (b < 0)
    b = b < -dim ? 0 : b + dim;
  return b > dim ? dim : b;
}

cr_tensor *cr_slice(cr_ctx *ctx, cr_tensor *x, int axis, int64_t start, int64_t stop,
                    int64_t step) {
  if (!cr__check_inputs(ctx, "slice", 1, &x) || !cr__axis(ctx, "slice", x, &axis))
    return NULL;
  const int64_t dim = x->shape[axis];
  if (step < 1)
    return cr__fail(ctx, CR_ERR_ARG, "slice: %s axis %d: step %lld must be >= 1", cr__shp(x), axis,
                    (long long)step);
  int64_t b = clamp_bound(start, dim), e = clamp_bound(stop, dim);
  int64_t count = e > b ? (e - b - 1) / step + 1 : 0;
  if (count == 0)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "slice: %s axis %d: %lld:%lld:%lld selects no "
                    "elements (empty tensors are not supported)",
                    cr__shp(x), axis, (long long)start, (long long)stop, (long long)step);
  if (count == 1)
    step = 1; /* one element: the step is moot (and stride * step might overflow) */
  int64_t shape[CR_MAX_DIMS], stride[CR_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  memcpy(stride, x->stride, sizeof stride);
  shape[axis] = count;
  stride[axis] = x->stride[axis] * step; /* count >= 2: step < dim, no overflow */
  cr_tensor *y =
      cr__view(ctx, x, x->ndim, shape, stride, elem_at(x->data, b * x->stride[axis], x->dtype));
  cr_node *nd = cr__record(ctx, &cr__op_slice, y, 1, &x);
  if (nd)
    *slice_attr_of(nd) = (slice_attr){axis, b, step, false};
  return ctx->status == CR_OK ? y : NULL;
}

/* shape and stride of x without dim `axis` */
static void drop_dim(int ndim, const int64_t *in, int axis, int64_t *out) {
  memcpy(out, in, (size_t)axis * sizeof *out);
  memcpy(out + axis, in + axis + 1, (size_t)(ndim - axis - 1) * sizeof *out);
}

cr_tensor *cr_select(cr_ctx *ctx, cr_tensor *x, int axis, int64_t index) {
  if (!cr__check_inputs(ctx, "select", 1, &x) || !cr__axis(ctx, "select", x, &axis))
    return NULL;
  const int64_t dim = x->shape[axis];
  if (index < -dim || index >= dim)
    return cr__fail(ctx, CR_ERR_ARG, "select: %s axis %d: index %lld out of range [%lld,%lld)",
                    cr__shp(x), axis, (long long)index, (long long)-dim, (long long)dim);
  if (index < 0)
    index += dim;
  if (x->ndim == 1) /* tensors have at least one dim: [n] -> [1] */
    return cr_slice(ctx, x, axis, index, index + 1, 1);
  int64_t shape[CR_MAX_DIMS] = {0}, stride[CR_MAX_DIMS] = {0};
  drop_dim(x->ndim, x->shape, axis, shape);
  drop_dim(x->ndim, x->stride, axis, stride);
  cr_tensor *y = cr__view(ctx, x, x->ndim - 1, shape, stride,
                          elem_at(x->data, index * x->stride[axis], x->dtype));
  cr_node *nd = cr__record(ctx, &cr__op_select, y, 1, &x);
  if (nd)
    *slice_attr_of(nd) = (slice_attr){axis, index, 1, true};
  return ctx->status == CR_OK ? y : NULL;
}

/* gx seen through the slice's layout: its base and strides in gx */
static void slice_region(const cr_node *nd, const cr_tensor *gx, int64_t *stride, void **base) {
  const slice_attr *at = slice_attr_of(nd);
  memcpy(stride, gx->stride, sizeof(int64_t) * CR_MAX_DIMS);
  stride[at->axis] *= at->step;
  *base = elem_at(gx->data, at->start * gx->stride[at->axis], gx->dtype);
  if (at->drop) /* select: the region has y's dims */
    drop_dim(gx->ndim, gx->stride, at->axis, stride);
}

/* gx[slice] += gy */
static void slice_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *y = nd->out, *x = nd->in[0];
  if (y->grad_is_view && x->grad && x->grad_pass == ctx->pass && y->grad_pass == ctx->pass)
    return; /* the slice's gradient was a view into gx all along (slice_grad_alias) */
  cr_tensor *gx = cr__grad_acc(ctx, x);
  if (!gx)
    return;
  int64_t stride[CR_MAX_DIMS];
  void *base;
  slice_region(nd, gx, stride, &base);
  region_move(gx->dtype, true, y->ndim, y->shape, base, stride, y->grad->data, y->grad->stride);
}

/* strides of a dense row-major layout of shape (unit dims any stride) */
static bool dense(int ndim, const int64_t *shape, const int64_t *stride) {
  int64_t want = 1;
  for (int d = ndim - 1; d >= 0; want *= shape[d--])
    if (shape[d] != 1 && stride[d] != want)
      return false;
  return true;
}

/* When every consumer of the slice writes its gradient through strides,
 * or the slice's region of the input's gradient is dense (a select along
 * the first axis: a recurrent layer's step), that gradient is a view into
 * the input's gradient: no buffer of its own and nothing to copy back.
 * The slices need not cover the input, so its gradient reads zeros where
 * none wrote; a slice of whole rows (along axis 0, step 1) is handed out
 * fresh instead where no other slice wrote them yet (cr__grad_acc_rows),
 * so T steps' selects fill the input projections' gradient with no memset
 * and no read of zeros. */
static cr_tensor *slice_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh) {
  cr_tensor *t = nd->out, *x = nd->in[0];
  const slice_attr *at = slice_attr_of(nd);
  *fresh = false;
  if (!x->requires_grad || !cr__may_alias(ctx, t))
    return NULL;
  const bool views = cr__consumers_take_views(ctx, t);
  if (!views && !dense(t->ndim, t->shape, t->stride))
    return NULL; /* (x's gradient is dense where x is, as a rule: then so is the region) */
  const bool rows = at->axis == 0 && (at->drop || at->step == 1) && x->ndim >= 1;
  const int64_t r1 = at->start + (at->drop ? 1 : rows ? t->shape[0] : 0);
  bool fresh_rows = false;
  cr_tensor *gx =
      rows ? cr__grad_acc_rows(ctx, x, at->start, r1, &fresh_rows) : cr__grad_acc(ctx, x);
  if (!gx)
    return NULL;
  int64_t stride[CR_MAX_DIMS];
  void *base;
  slice_region(nd, gx, stride, &base);
  if (!views && !dense(t->ndim, t->shape, stride))
    return NULL; /* the slice's VJP adds it into gx (never fresh: whole rows are dense) */
  cr_tensor *g = t->grad;
  if (!g || !t->grad_is_view || g->data != base)
    g = cr__view_for(ctx, t, gx, t->ndim, t->shape, stride, base);
  if (!g)
    return NULL;
  cr__grad_set(ctx, t, g, true);
  *fresh = fresh_rows;
  return g;
}

/* gx = gy placed back where the slice came from, zeros elsewhere */
static cr_status slice_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const slice_attr *at = slice_attr_of(nd);
  cr_tensor *x = nd->in[0];
  if (at->drop)
    gy = cr_unsqueeze(ctx, gy, at->axis);
  gx[0] = cr__unslice(ctx, gy, x->ndim, x->shape, at->axis, at->start, at->step);
  return cr_ctx_status(ctx);
}

/* ---- unslice: the adjoint of slice (its gradient as an op)
 *   unslice: y = zeros(shape); y[.., start::step, ..] = x  (count = x's dim);
 *            gx += gy[.., start::step, ..] */

cr_tensor *cr__unslice(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape, int axis,
                       int64_t start, int64_t step) {
  if (!cr__check_inputs(ctx, "unslice", 1, &x))
    return NULL;
  bool ok = ndim == x->ndim && axis >= 0 && axis < ndim && step >= 1 && start >= 0;
  for (int d = 0; ok && d < ndim; d++) {
    int64_t span, last; /* the last index written, start + (n - 1) step, checked */
    ok = d == axis ? cr__mul_ok(x->shape[d] - 1, step, &span) && cr__add_ok(start, span, &last) &&
                         last < shape[d]
                   : shape[d] == x->shape[d];
  }
  if (!ok) {
    char want[96];
    cr_shape_str(want, sizeof want, ndim, shape);
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "unslice: %s into %s at axis %d, start %lld, step %lld: "
                    "does not fit",
                    cr__shp(x), want, axis, (long long)start, (long long)step);
  }
  cr_tensor *y = cr__new(ctx, x->dtype, ndim, shape);
  if (!y)
    return NULL;
  memset(y->data, 0, (size_t)y->numel * cr_dtype_size(y->dtype));
  int64_t stride[CR_MAX_DIMS];
  memcpy(stride, y->stride, sizeof stride);
  stride[axis] *= step;
  region_move(y->dtype, false, x->ndim, x->shape,
              elem_at(y->data, start * y->stride[axis], y->dtype), stride, x->data, x->stride);
  cr_node *nd = cr__record(ctx, &cr__op_unslice, y, 1, &x);
  if (nd)
    *slice_attr_of(nd) = (slice_attr){axis, start, step, false};
  return ctx->status == CR_OK ? y : NULL;
}

static void unslice_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *gx = cr__grad_acc(ctx, x), *gy = nd->out->grad;
  if (!gx)
    return;
  int64_t stride[CR_MAX_DIMS];
  void *base;
  slice_region(nd, gy, stride, &base);
  region_move(gx->dtype, true, x->ndim, x->shape, gx->data, gx->stride, base, stride);
}

static cr_status unslice_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const slice_attr *at = slice_attr_of(nd);
  int64_t n = nd->in[0]->shape[at->axis];
  gx[0] = cr_slice(ctx, gy, at->axis, at->start, at->start + (n - 1) * at->step + 1, at->step);
  return cr_ctx_status(ctx);
}

/* ---- concat and stack */

/* Common checks of a list of inputs; false with the error stored. */
static bool check_list(cr_ctx *ctx, const char *op, cr_tensor *const *xs, int n) {
  if (!ctx || ctx->status != CR_OK)
    return false;
  if (!xs || n < 1) {
    cr__fail(ctx, CR_ERR_ARG, "%s: %d inputs%s: need at least one tensor", op, n,
             xs ? "" : " (xs is NULL)");
    return false;
  }
  return cr__check_inputs(ctx, op, n, xs);
}

cr_tensor *cr_concat(cr_ctx *ctx, cr_tensor *const *xs, int n, int axis) {
  if (!check_list(ctx, "concat", xs, n) || !cr__axis(ctx, "concat", xs[0], &axis))
    return NULL;
  const cr_tensor *x0 = xs[0];
  int64_t shape[CR_MAX_DIMS];
  memcpy(shape, x0->shape, sizeof shape);
  shape[axis] = 0;
  for (int k = 0; k < n; k++) {
    const cr_tensor *x = xs[k];
    if (x->ndim != x0->ndim)
      return cr__fail(ctx, CR_ERR_SHAPE, "concat: input %d %s vs input 0 %s: %d dims vs %d", k,
                      cr__shp(x), cr__shp(x0), x->ndim, x0->ndim);
    for (int d = 0; d < x0->ndim; d++)
      if (d != axis && x->shape[d] != x0->shape[d])
        return cr__fail(ctx, CR_ERR_SHAPE,
                        "concat: input %d %s vs input 0 %s: dim %d "
                        "differs (only the concat axis %d may differ)",
                        k, cr__shp(x), cr__shp(x0), d, axis);
    shape[axis] += x->shape[axis];
  }
  cr_tensor *y = cr__new(ctx, x0->dtype, x0->ndim, shape);
  if (!y)
    return NULL;
  int64_t at = 0; /* offset of input k along axis */
  for (int k = 0; k < n; k++) {
    const cr_tensor *x = xs[k];
    region_move(y->dtype, false, x->ndim, x->shape,
                elem_at(y->data, at * y->stride[axis], y->dtype), y->stride, x->data, x->stride);
    at += x->shape[axis];
  }
  cr_node *nd = cr__record(ctx, &cr__op_concat, y, n, xs);
  if (nd)
    axis_attr_of(nd)->axis = axis;
  return ctx->status == CR_OK ? y : NULL;
}

/* gx_k += gy[.., at_k : at_k + len_k, ..] */
static void concat_vjp(cr_ctx *ctx, cr_node *nd) {
  const cr_tensor *gy = nd->out->grad;
  const int axis = axis_attr_of(nd)->axis;
  int64_t at = 0;
  for (int k = 0; k < nd->n_in; k++) {
    bool fresh; /* a first contribution is written, not added to zeros */
    cr_tensor *x = nd->in[k], *gx = cr__grad_acc_fresh(ctx, x, &fresh);
    if (gx)
      region_move(gx->dtype, !fresh, x->ndim, x->shape, gx->data, gx->stride,
                  elem_at(gy->data, at * gy->stride[axis], gy->dtype), gy->stride);
    at += x->shape[axis];
  }
}

/* y's strides without the stacked axis: where x's elements sit in y. */
static void drop_axis(const int64_t *ystride, int ndim, int axis, int64_t *out) {
  for (int d = 0, j = 0; d < ndim + 1; d++)
    if (d != axis)
      out[j++] = ystride[d];
}

cr_tensor *cr_stack(cr_ctx *ctx, cr_tensor *const *xs, int n, int axis) {
  if (!check_list(ctx, "stack", xs, n))
    return NULL;
  const cr_tensor *x0 = xs[0];
  const int nd_out = x0->ndim + 1;
  if (nd_out > CR_MAX_DIMS)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "stack: %s: the result would have %d dims, more "
                    "than %d",
                    cr__shp(x0), nd_out, CR_MAX_DIMS);
  if (axis < -nd_out || axis >= nd_out)
    return cr__fail(ctx, CR_ERR_ARG,
                    "stack: %s: axis %d out of range for the %d-dim "
                    "result",
                    cr__shp(x0), axis, nd_out);
  if (axis < 0)
    axis += nd_out;
  for (int k = 1; k < n; k++) {
    const cr_tensor *x = xs[k];
    if (x->ndim != x0->ndim ||
        memcmp(x->shape, x0->shape, (size_t)x0->ndim * sizeof x0->shape[0]) != 0)
      return cr__fail(ctx, CR_ERR_SHAPE,
                      "stack: input %d %s vs input 0 %s: shapes differ "
                      "(stack needs equal shapes)",
                      k, cr__shp(x), cr__shp(x0));
  }
  int64_t shape[CR_MAX_DIMS];
  for (int d = 0, j = 0; d < nd_out; d++)
    shape[d] = d == axis ? n : x0->shape[j++];
  cr_tensor *y = cr__new(ctx, x0->dtype, nd_out, shape);
  if (!y)
    return NULL;
  int64_t ys[CR_MAX_DIMS];
  drop_axis(y->stride, x0->ndim, axis, ys);
  for (int k = 0; k < n; k++)
    region_move(y->dtype, false, x0->ndim, x0->shape,
                elem_at(y->data, k * y->stride[axis], y->dtype), ys, xs[k]->data, xs[k]->stride);
  cr_node *nd = cr__record(ctx, &cr__op_stack, y, n, xs);
  if (nd)
    axis_attr_of(nd)->axis = axis;
  return ctx->status == CR_OK ? y : NULL;
}

/* gx_k += gy[.., k, ..] */
static void stack_vjp(cr_ctx *ctx, cr_node *nd) {
  const cr_tensor *gy = nd->out->grad;
  const int axis = axis_attr_of(nd)->axis;
  int64_t gs[CR_MAX_DIMS];
  drop_axis(gy->stride, nd->in[0]->ndim, axis, gs);
  for (int k = 0; k < nd->n_in; k++) {
    bool fresh; /* a first contribution is written, not added to zeros */
    cr_tensor *x = nd->in[k], *gx = cr__grad_acc_fresh(ctx, x, &fresh);
    if (gx)
      region_move(gx->dtype, !fresh, x->ndim, x->shape, gx->data, gx->stride,
                  elem_at(gy->data, k * gy->stride[axis], gy->dtype), gs);
  }
}

/* gx_k = gy[.., at_k : at_k + len_k, ..] */
static cr_status concat_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const int axis = axis_attr_of(nd)->axis;
  int64_t at = 0;
  for (int k = 0; k < nd->n_in; k++) {
    int64_t len = nd->in[k]->shape[axis];
    if (nd->in[k]->requires_grad)
      gx[k] = cr_slice(ctx, gy, axis, at, at + len, 1);
    at += len;
  }
  return cr_ctx_status(ctx);
}

/* gx_k = gy[.., k, ..] (the slice k:k+1 without its axis) */
static cr_status stack_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const int axis = axis_attr_of(nd)->axis;
  for (int k = 0; k < nd->n_in; k++) {
    cr_tensor *x = nd->in[k];
    if (x->requires_grad)
      gx[k] = cr_reshape(ctx, cr_slice(ctx, gy, axis, k, k + 1, 1), x->ndim, x->shape);
  }
  return cr_ctx_status(ctx);
}

/* ---- split and chunk: slice views */

static cr_status list_fail(cr_ctx *ctx) { return ctx->status != CR_OK ? ctx->status : CR_ERR_ARG; }

cr_status cr_split(cr_ctx *ctx, cr_tensor *x, int axis, const int64_t *sizes, int n,
                   cr_tensor **out) {
  for (int i = 0; out && i < n; i++)
    out[i] = NULL;
  if (!ctx)
    return CR_ERR_ARG;
  if (!cr__check_inputs(ctx, "split", 1, &x))
    return list_fail(ctx);
  if (!out || !sizes || n < 1)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "split: %s: %d pieces%s: need n >= 1, sizes "
                            "and out",
                            cr__shp(x), n,
                            !out     ? " (out is NULL)"
                            : !sizes ? " (sizes is NULL)"
                                     : "");
  if (!cr__axis(ctx, "split", x, &axis))
    return ctx->status;
  const int64_t dim = x->shape[axis];
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (sizes[i] < 1 || sizes[i] > dim)
      return cr_ctx_set_error(ctx, CR_ERR_ARG,
                              "split: %s axis %d: size %lld at position %d "
                              "is out of range [1,%lld]",
                              cr__shp(x), axis, (long long)sizes[i], i, (long long)dim);
    total += sizes[i];
  }
  if (total != dim)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                            "split: %s axis %d: sizes sum to %lld, not "
                            "the dim %lld",
                            cr__shp(x), axis, (long long)total, (long long)dim);
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    out[i] = cr_slice(ctx, x, axis, at, at + sizes[i], 1);
    if (!out[i]) {
      for (int j = 0; j < i; j++)
        out[j] = NULL;
      return list_fail(ctx);
    }
    at += sizes[i];
  }
  return CR_OK;
}

cr_status cr_chunk(cr_ctx *ctx, cr_tensor *x, int n, int axis, cr_tensor **out) {
  for (int i = 0; out && i < n; i++)
    out[i] = NULL;
  if (!ctx)
    return CR_ERR_ARG;
  if (!cr__check_inputs(ctx, "chunk", 1, &x))
    return list_fail(ctx);
  if (!out || n < 1)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "chunk: %s: %d chunks%s: need n >= 1 and out",
                            cr__shp(x), n, out ? "" : " (out is NULL)");
  if (!cr__axis(ctx, "chunk", x, &axis))
    return ctx->status;
  const int64_t dim = x->shape[axis];
  if (dim % n != 0)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                            "chunk: %s axis %d: dim %lld does not divide "
                            "into %d equal chunks",
                            cr__shp(x), axis, (long long)dim, n);
  const int64_t len = dim / n;
  for (int i = 0; i < n; i++) {
    out[i] = cr_slice(ctx, x, axis, i * len, (i + 1) * len, 1);
    if (!out[i]) {
      for (int j = 0; j < i; j++)
        out[j] = NULL;
      return list_fail(ctx);
    }
  }
  return CR_OK;
}

/* ---- cast */

cr_tensor *cr_cast(cr_ctx *ctx, cr_tensor *x, cr_dtype dt) {
  if (!cr__check_inputs(ctx, "cast", 1, &x))
    return NULL;
  if (dt != CR_F32 && dt != CR_F64)
    return cr__fail(ctx, CR_ERR_DTYPE,
                    "cast: %s %s to dtype %d: only f32 and f64 are "
                    "supported",
                    cr__shp(x), cr_dtype_name(x->dtype), (int)dt);
  if (x->dtype == dt)
    return x;
  cr_tensor *y = cr__new(ctx, dt, x->ndim, x->shape);
  if (!y)
    return NULL;
  cr__copy_convert(y, x, false);
  cr__record(ctx, &cr__op_cast, y, 1, &x);
  return ctx->status == CR_OK ? y : NULL;
}

static void cast_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx = cr__grad_acc(ctx, nd->in[0]);
  if (gx)
    cr__copy_convert(gx, nd->out->grad, true);
}

static cr_status cast_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  gx[0] = cr_cast(ctx, gy, nd->in[0]->dtype);
  return cr_ctx_status(ctx);
}
