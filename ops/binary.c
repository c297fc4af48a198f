/* binary.c — elementwise binary ops with NumPy broadcasting.
 *
 *   add: y = a + b;  ga += gy;           gb += gy
 *   sub: y = a - b;  ga += gy;           gb -= gy
 *   mul: y = a * b;  ga += gy * b;       gb += gy * a
 *   div: y = a / b;  ga += gy / b;       gb -= gy * a / (b*b)
 *   maximum: y = max(a, b);  ga += gy * ([a > b] + [a == b]/2);  gb alike
 *   minimum: y = min(a, b);  ga += gy * ([a < b] + [a == b]/2);  gb alike
 *
 * When an input was broadcast, its gradient is the sum of the terms above
 * over the broadcast dims (iterating over y's shape with a 0 stride on the
 * broadcast dims of the gradient adds them up).  The formulas are the rows
 * of elementwise.def. */
#include "op.h"

typedef enum {
#define CR_BINARY(ID, name, FWD, READS, GA, GB, GRAPH_A, GRAPH_B) B_##ID,
#include "elementwise.def"
#undef CR_BINARY
  B_COUNT
} bin_kind;

typedef struct {
  bin_kind kind;
} binary_attr;
CR__ATTR(binary_attr)

#define T float
#define SFX _f
#include "binary_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "binary_kernels.inc"
#undef T
#undef SFX

static void bin_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status bin_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
/* the kernel VJP writes both gradients through their strides */
static bool takes_view(const cr_node *nd, int k) { return (void)nd, (void)k, true; }

#define CR_BINARY(ID, NAME, FWD, READS, GA, GB, GRAPH_A, GRAPH_B)                                  \
  const cr_op_desc cr__op_##NAME = {.name = #NAME,                                                 \
                                    .n_inputs = 2,                                                 \
                                    .vjp = bin_vjp,                                                \
                                    .vjp_graph = bin_vjp_graph,                                    \
                                    .reads = READS,                                                \
                                    .takes_view_grad = takes_view};
#include "elementwise.def"
#undef CR_BINARY

static const cr_op_desc *const descs[B_COUNT] = {
#define CR_BINARY(ID, name, FWD, READS, GA, GB, GRAPH_A, GRAPH_B) &cr__op_##name,
#include "elementwise.def"
#undef CR_BINARY
};

/* one map over (a part of) the iteration: y = a op b, or one input's
 * gradient term */
typedef struct {
  bin_kind k;
  int which;
  bool f32, assign;
  void *out;
  const void *a, *b, *gy;
} bin_args;

static void bin_forward_part(void *arg, cr__iter *it) {
  const bin_args *u = arg;
  if (u->f32)
    bin_forward_f(u->k, it, u->out, u->a, u->b);
  else
    bin_forward_d(u->k, it, u->out, u->a, u->b);
}

static void bin_grad_part(void *arg, cr__iter *it) {
  const bin_args *u = arg;
  if (u->f32)
    bin_grad_f(u->k, u->which, it, u->out, u->a, u->b, u->gy, u->assign);
  else
    bin_grad_d(u->k, u->which, it, u->out, u->a, u->b, u->gy, u->assign);
}

static cr_tensor *binary(cr_ctx *ctx, bin_kind k, cr_tensor *a, cr_tensor *b) {
  const cr_op_desc *op = descs[k];
  cr_tensor *in[2] = {a, b};
  if (!cr__check_inputs(ctx, op->name, 2, in))
    return NULL;
  int nd;
  int64_t shape[CR_MAX_DIMS];
  if (!cr__bcast_shape(ctx, op->name, a, b, &nd, shape))
    return NULL;
  cr_tensor *y = cr__new(ctx, a->dtype, nd, shape);
  if (!y)
    return NULL;
  int64_t sa[CR_MAX_DIMS], sb[CR_MAX_DIMS];
  cr__bcast_strides(a, y->ndim, y->shape, sa);
  cr__bcast_strides(b, y->ndim, y->shape, sb);
  const int64_t *st[3] = {y->stride, sa, sb};
  cr__iter it;
  cr__iter_init(&it, y->ndim, y->shape, 3, st);
  bin_args u = {k, 0, y->dtype == CR_F32, false, y->data, a->data, b->data, NULL};
  cr__iter_run(&it, bin_forward_part, &u);
  cr_node *node = cr__record(ctx, op, y, 2, in);
  if (node)
    binary_attr_of(node)->kind = k;
  return ctx->status == CR_OK ? y : NULL;
}

cr_tensor *cr__binary_kind(cr_ctx *ctx, int kind, cr_tensor *a, cr_tensor *b) {
  return binary(ctx, (bin_kind)kind, a, b);
}

cr_tensor *cr__binary_as(cr_ctx *ctx, int kind, cr_tensor *a, cr_tensor *b, cr_tensor *y) {
  cr_tensor *in[2] = {a, b};
  cr_node *node = cr__record(ctx, descs[kind], y, 2, in);
  if (node)
    binary_attr_of(node)->kind = (bin_kind)kind;
  return ctx->status == CR_OK ? y : NULL;
}
cr_tensor *cr_add(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, B_ADD, a, b); }
cr_tensor *cr_sub(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, B_SUB, a, b); }
cr_tensor *cr_mul(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, B_MUL, a, b); }
cr_tensor *cr_div(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, B_DIV, a, b); }
cr_tensor *cr_maximum(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) {
  return binary(ctx, B_MAXIMUM, a, b);
}
cr_tensor *cr_minimum(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) {
  return binary(ctx, B_MINIMUM, a, b);
}

static void bin_vjp(cr_ctx *ctx, cr_node *nd) {
  bin_kind k = binary_attr_of(nd)->kind;
  cr_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out, *gy = y->grad;
  for (int which = 0; which < 2; which++) {
    bool fresh;
    cr_tensor *g = cr__grad_acc_fresh(ctx, nd->in[which], &fresh);
    if (!g)
      continue;
    /* a fresh buffer is overwritten by the first term when it covers every
     * element once (no broadcast), else zeroed and accumulated into */
    bool assign = fresh && g->numel == y->numel;
    if (fresh && !assign)
      memset(g->data, 0, (size_t)g->numel * cr_dtype_size(g->dtype));
    int64_t sg[CR_MAX_DIMS], sa[CR_MAX_DIMS], sb[CR_MAX_DIMS];
    cr__bcast_strides(g, y->ndim, y->shape, sg);
    cr__bcast_strides(a, y->ndim, y->shape, sa);
    cr__bcast_strides(b, y->ndim, y->shape, sb);
    const int64_t *st[4] = {sg, sa, sb, gy->stride};
    cr__iter it;
    cr__iter_init(&it, y->ndim, y->shape, 4, st);
    bin_args u = {k, which, y->dtype == CR_F32, assign, g->data, a->data, b->data, gy->data};
    if (g->numel == y->numel) /* each element of g once: parts are disjoint */
      cr__iter_run(&it, bin_grad_part, &u);
    else /* summed over broadcast dims: one thread, in one order */
      bin_grad_part(&u, &it);
  }
}

/* ga, gb = the row's GRAPH_A, GRAPH_B in ops on GY, A, B, summed back over
 * the dims where a or b was broadcast */
static cr_status bin_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *GY, cr_tensor **gx) {
  cr_tensor *A = nd->in[0], *B = nd->in[1];
  switch (binary_attr_of(nd)->kind) {
#define CR_BINARY(ID, name, FWD, READS, GA, GB, GRAPH_A, GRAPH_B)                                  \
  case B_##ID:                                                                                     \
    gx[0] = A->requires_grad ? cr__reduce_to(ctx, (GRAPH_A), A) : NULL;                            \
    gx[1] = B->requires_grad ? cr__reduce_to(ctx, (GRAPH_B), B) : NULL;                            \
    break;
#include "elementwise.def"
#undef CR_BINARY
  case B_COUNT: break;
  }
  return cr_ctx_status(ctx);
}
