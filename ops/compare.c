/* compare.c — comparisons, which make constant masks, and the selection
 * ops that take them.
 *
 *   gt, ge, lt, le, eq:  y = [a op b] as 1 or 0 in the inputs' (float)
 *                        dtype, with NumPy broadcasting.  Not
 *                        differentiable: y is a constant (no node), as
 *                        PyTorch's boolean masks are.
 *   where:        y = m != 0 ? a : b        (m, a, b broadcast together);
 *                 ga += gy [m != 0];  gb += gy [m == 0]  (summed over the
 *                 dims where a or b was broadcast); m gets no gradient
 *   masked_fill:  y = where(m, v, x) for a scalar v: x's shape, m
 *                 broadcast to it;  gx += gy [m == 0]
 *
 * The comparisons are the CR_COMPARE rows of elementwise.def.  The graph
 * form of where's VJP is where again: ga = where(m, gy, 0),
 * gb = where(m, 0, gy). */
#include "op.h"

typedef enum {
#define CR_COMPARE(ID, name, FWD) C_##ID,
#include "elementwise.def"
#undef CR_COMPARE
  C_COUNT
} cmp_kind;

static const char *const cmp_names[C_COUNT] = {
#define CR_COMPARE(ID, name, FWD) #name,
#include "elementwise.def"
#undef CR_COMPARE
};

#define T float
#define SFX _f
#include "compare_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "compare_kernels.inc"
#undef T
#undef SFX

static void where_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status where_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_where = {.name = "where",
                                 .n_inputs = 3,
                                 .vjp = where_vjp,
                                 .vjp_graph = where_vjp_graph,
                                 .reads = CR__READS_IN(0)};

cr_tensor *cr__scalar_like(cr_ctx *ctx, const cr_tensor *like, double v) {
  if (!like)
    return NULL;
  return cr_full(ctx, like->dtype, CR_SHAPE(1), v);
}

/* ---- comparisons */

static cr_tensor *compare(cr_ctx *ctx, cmp_kind k, cr_tensor *a, cr_tensor *b) {
  const char *name = cmp_names[k];
  cr_tensor *in[2] = {a, b};
  if (!cr__check_inputs(ctx, name, 2, in))
    return NULL;
  int nd;
  int64_t shape[CR_MAX_DIMS];
  if (!cr__bcast_shape(ctx, name, a, b, &nd, shape))
    return NULL;
  cr_tensor *y = cr__new(ctx, a->dtype, nd, shape);
  if (!y)
    return NULL;
  int64_t sa[CR_MAX_DIMS], sb[CR_MAX_DIMS];
  cr__bcast_strides(a, nd, shape, sa);
  cr__bcast_strides(b, nd, shape, sb);
  const int64_t *st[3] = {y->stride, sa, sb};
  cr__iter it;
  cr__iter_init(&it, nd, shape, 3, st);
  if (y->dtype == CR_F32)
    cmp_forward_f(k, &it, y->data, a->data, b->data);
  else
    cmp_forward_d(k, &it, y->data, a->data, b->data);
  return y; /* a constant: no node, whatever its inputs require */
}

cr_tensor *cr_gt(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return compare(ctx, C_GT, a, b); }
cr_tensor *cr_ge(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return compare(ctx, C_GE, a, b); }
cr_tensor *cr_lt(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return compare(ctx, C_LT, a, b); }
cr_tensor *cr_le(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return compare(ctx, C_LE, a, b); }
cr_tensor *cr_eq(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return compare(ctx, C_EQ, a, b); }

/* ---- where */

/* The broadcast shape of n tensors (NumPy rules), or false and an error
 * naming op and every shape. */
static bool bcast_n(cr_ctx *ctx, const char *op, int n, cr_tensor *const *t,
                    const char *const *what, int *ndim, int64_t *shape) {
  int nd = 0;
  for (int k = 0; k < n; k++)
    nd = t[k]->ndim > nd ? t[k]->ndim : nd;
  for (int d = 0; d < nd; d++) {
    int64_t s = 1;
    for (int k = 0; k < n; k++) {
      int dk = d - (nd - t[k]->ndim);
      int64_t sk = dk >= 0 ? t[k]->shape[dk] : 1;
      if (sk != 1 && s != 1 && sk != s) {
        char msg[256];
        size_t at = 0;
        for (int j = 0; j < n && at < sizeof msg; j++)
          at += (size_t)snprintf(msg + at, sizeof msg - at, "%s%s %s", j ? ", " : "", what[j],
                                 cr__shp(t[j]));
        cr__fail(ctx, CR_ERR_SHAPE, "%s: %s: dim %d does not broadcast (%lld vs %lld)", op, msg,
                 d - nd, (long long)s, (long long)sk);
        return false;
      }
      s = sk != 1 ? sk : s;
    }
    shape[d] = s;
  }
  *ndim = nd;
  return true;
}

cr_tensor *cr_where(cr_ctx *ctx, cr_tensor *mask, cr_tensor *a, cr_tensor *b) {
  cr_tensor *in[3] = {mask, a, b};
  static const char *const what[3] = {"mask", "a", "b"};
  if (!cr__check_inputs(ctx, "where", 3, in))
    return NULL;
  int nd;
  int64_t shape[CR_MAX_DIMS];
  if (!bcast_n(ctx, "where", 3, in, what, &nd, shape))
    return NULL;
  cr_tensor *y = cr__new(ctx, a->dtype, nd, shape);
  if (!y)
    return NULL;
  int64_t sm[CR_MAX_DIMS], sa[CR_MAX_DIMS], sb[CR_MAX_DIMS];
  cr__bcast_strides(mask, nd, shape, sm);
  cr__bcast_strides(a, nd, shape, sa);
  cr__bcast_strides(b, nd, shape, sb);
  const int64_t *st[4] = {y->stride, sm, sa, sb};
  cr__iter it;
  cr__iter_init(&it, nd, shape, 4, st);
  if (y->dtype == CR_F32)
    where_forward_f(&it, y->data, mask->data, a->data, b->data);
  else
    where_forward_d(&it, y->data, mask->data, a->data, b->data);
  cr__record(ctx, &cr__op_where, y, 3, in);
  return ctx->status == CR_OK ? y : NULL;
}

/* ga += gy [m != 0];  gb += gy [m == 0] (each summed to its input's shape) */
static void where_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *m = nd->in[0], *y = nd->out, *gy = y->grad;
  for (int k = 1; k < 3; k++) {
    bool fresh;
    cr_tensor *g = cr__grad_acc_fresh(ctx, nd->in[k], &fresh);
    if (!g)
      continue;
    /* a fresh buffer is written once per element unless it was broadcast */
    bool assign = fresh && g->numel == y->numel;
    if (fresh && !assign)
      memset(g->data, 0, (size_t)g->numel * cr_dtype_size(g->dtype));
    int64_t sg[CR_MAX_DIMS], sm[CR_MAX_DIMS];
    cr__bcast_strides(g, y->ndim, y->shape, sg);
    cr__bcast_strides(m, y->ndim, y->shape, sm);
    const int64_t *st[3] = {sg, sm, gy->stride};
    cr__iter it;
    cr__iter_init(&it, y->ndim, y->shape, 3, st);
    if (y->dtype == CR_F32)
      where_grad_f(&it, g->data, m->data, gy->data, assign, k == 1);
    else
      where_grad_d(&it, g->data, m->data, gy->data, assign, k == 1);
  }
}

/* ga = where(m, gy, 0);  gb = where(m, 0, gy), summed to a's and b's shapes */
static cr_status where_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *m = nd->in[0], *a = nd->in[1], *b = nd->in[2];
  cr_tensor *zero = cr__scalar_like(ctx, gy, 0.0);
  if (a->requires_grad)
    gx[1] = cr__reduce_to(ctx, cr_where(ctx, m, gy, zero), a);
  if (b->requires_grad)
    gx[2] = cr__reduce_to(ctx, cr_where(ctx, m, zero, gy), b);
  return cr_ctx_status(ctx);
}

/* ---- masked_fill */

cr_tensor *cr_masked_fill(cr_ctx *ctx, cr_tensor *x, cr_tensor *mask, double value) {
  cr_tensor *in[2] = {x, mask};
  if (!cr__check_inputs(ctx, "masked_fill", 2, in))
    return NULL;
  int nd;
  int64_t shape[CR_MAX_DIMS];
  if (!cr__bcast_shape(ctx, "masked_fill", x, mask, &nd, shape))
    return NULL;
  if (nd != x->ndim || memcmp(shape, x->shape, sizeof(int64_t) * (size_t)nd) != 0)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "masked_fill: x %s, mask %s: the mask must broadcast "
                    "to x's shape",
                    cr__shp(x), cr__shp(mask));
  return cr_where(ctx, mask, cr__scalar_like(ctx, x, value), x);
}
