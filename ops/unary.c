/* unary.c — elementwise ops of one tensor (and optional scalars a, b).
 *
 *   neg:         y = -x;                 gx += gy * -1
 *   exp:         y = exp(x);             gx += gy * y
 *   log:         y = log(x);             gx += gy / x
 *   sqrt:        y = sqrt(x);            gx += gy * 0.5 / y
 *   square:      y = x*x;                gx += gy * 2 x
 *   tanh:        y = tanh(x);            gx += gy * (1 - y*y)
 *   sigmoid:     y = 1 / (1 + exp(-x));  gx += gy * y (1 - y)
 *   relu:        y = max(x, 0);          gx += gy * [x > 0]
 *   abs:         y = |x|;                gx += gy * sign(x)
 *   clamp:       y = min(max(x,a),b);    gx += gy * [a <= x <= b]
 *   add_scalar:  y = x + a;              gx += gy
 *   sub_scalar:  y = x - a;              gx += gy
 *   rsub_scalar: y = a - x;              gx -= gy
 *   mul_scalar:  y = x * a;              gx += gy * a
 *   div_scalar:  y = x / a;              gx += gy / a
 *   pow_scalar:  y = x^a;                gx += gy * a x^(a-1)
 *   sin:         y = sin x;              gx += gy * cos x
 *   cos:         y = cos x;              gx -= gy * sin x
 *   erf:         y = erf x;              gx += gy * 2/sqrt(pi) exp(-x*x)
 *   gelu:        y = x Phi(x);           gx += gy * (Phi(x) + x phi(x))
 *                (Phi(x) = (1 + erf(x/sqrt 2))/2, phi its density: exact gelu)
 *   softplus:    y = log(1 + exp(a x))/a, or x where a x > b;
 *                                        gx += gy * sigmoid(a x), or gy
 *
 * The formulas live once, as the rows of elementwise.def; this file turns
 * them into the op descriptors, the public functions and both VJPs.
 * sigmoid is computed as exp(x) / (1 + exp(x)) for x < 0 so it never
 * overflows.  relu and abs take the subgradient 0 at x = 0, clamp counts
 * the bounds as inside (as PyTorch does).  softplus is evaluated as
 * (max(a x, 0) + log1p(exp(-|a x|))) / a, which never overflows. */
#include "op.h"

typedef enum {
#define CR_UNARY(ID, name, FWD, DER, READS, GRAPH) U_##ID,
#include "elementwise.def"
#undef CR_UNARY
  U_COUNT
} un_kind;

typedef struct {
  un_kind kind;
  double a, b; /* the op's scalars */
} unary_attr;
CR__ATTR(unary_attr)

#define T float
#define SFX _f
#include "unary_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "unary_kernels.inc"
#undef T
#undef SFX

static void un_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status un_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
/* the kernel VJP writes gx through its strides */
static bool takes_view(const cr_node *nd, int k) { return (void)nd, (void)k, true; }

#define CR_UNARY(ID, NAME, FWD, DER, READS, GRAPH)                                                 \
  const cr_op_desc cr__op_##NAME = {.name = #NAME,                                                 \
                                    .n_inputs = 1,                                                 \
                                    .vjp = un_vjp,                                                 \
                                    .vjp_graph = un_vjp_graph,                                     \
                                    .reads = READS,                                                \
                                    .takes_view_grad = takes_view};
#include "elementwise.def"
#undef CR_UNARY

static const cr_op_desc *const descs[U_COUNT] = {
#define CR_UNARY(ID, name, FWD, DER, READS, GRAPH) &cr__op_##name,
#include "elementwise.def"
#undef CR_UNARY
};

/* one map over (a part of) the iteration: y = f(x), or the VJP's gx */
typedef struct {
  un_kind k;
  bool f32, fresh;
  double a, b;
  void *out;
  const void *x, *y, *gy;
} un_args;

static void un_forward_part(void *arg, cr__iter *it) {
  const un_args *u = arg;
  if (u->f32)
    un_forward_f(u->k, it, u->out, u->x, (float)u->a, (float)u->b);
  else
    un_forward_d(u->k, it, u->out, u->x, u->a, u->b);
}

static void un_backward_part(void *arg, cr__iter *it) {
  const un_args *u = arg;
  if (u->f32)
    un_backward_f(u->k, it, u->out, u->x, u->y, u->gy, (float)u->a, (float)u->b, u->fresh);
  else
    un_backward_d(u->k, it, u->out, u->x, u->y, u->gy, u->a, u->b, u->fresh);
}

bool cr__unary_scalars_ok(cr_ctx *ctx, int kind, const cr_tensor *x, double s0, double s1) {
  const un_kind k = (un_kind)kind;
  if (k == U_CLAMP && !(s0 <= s1))
    return cr__fail(ctx, CR_ERR_ARG, "clamp: %s: lo %g > hi %g", cr__shp(x), s0, s1), false;
  if (k == U_DIV_S && s0 == 0)
    return cr__fail(ctx, CR_ERR_ARG, "div_scalar: %s: division by zero", cr__shp(x)), false;
  if (k == U_SOFTPLUS && (!(s0 > 0) || !isfinite(s0) || s1 != s1))
    return cr__fail(ctx, CR_ERR_ARG,
                    "softplus: %s: beta %g must be finite and > 0, threshold "
                    "%g not NaN",
                    cr__shp(x), s0, s1),
           false;
  if (k != U_CLAMP && !isfinite(s0))
    return cr__fail(ctx, CR_ERR_ARG, "%s: %s: scalar %g is not finite", descs[k]->name, cr__shp(x),
                    s0),
           false;
  return true;
}

static cr_tensor *unary(cr_ctx *ctx, un_kind k, cr_tensor *x, double s0, double s1) {
  const cr_op_desc *op = descs[k];
  if (!cr__check_inputs(ctx, op->name, 1, &x) || !cr__unary_scalars_ok(ctx, k, x, s0, s1))
    return NULL;
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!y)
    return NULL;
  const int64_t *st[2] = {y->stride, x->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 2, st);
  un_args u = {k, x->dtype == CR_F32, false, s0, s1, y->data, x->data, NULL, NULL};
  cr__iter_run(&it, un_forward_part, &u);
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd)
    *unary_attr_of(nd) = (unary_attr){k, s0, s1};
  return ctx->status == CR_OK ? y : NULL;
}

static void un_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out, *gy = y->grad;
  bool fresh;
  cr_tensor *gx = cr__grad_acc_fresh(ctx, x, &fresh);
  if (!gx)
    return;
  const unary_attr *at = unary_attr_of(nd);
  const int64_t *st[4] = {gx->stride, x->stride, y->stride, gy->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 4, st);
  un_args u = {at->kind, x->dtype == CR_F32, fresh, at->a, at->b, gx->data, x->data, y->data,
               gy->data};
  cr__iter_run(&it, un_backward_part, &u);
}

/* dy/dx of node nd as a constant tensor (no graph) of x's shape. */
static cr_tensor *const_derivative(cr_ctx *ctx, const cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out, *d = cr__const_like(ctx, x);
  if (!d)
    return NULL;
  const unary_attr *at = unary_attr_of(nd);
  const int64_t *st[3] = {d->stride, x->stride, y->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 3, st);
  if (x->dtype == CR_F32)
    un_derivative_f(at->kind, &it, d->data, x->data, y->data, (float)at->a, (float)at->b);
  else
    un_derivative_d(at->kind, &it, d->data, x->data, y->data, at->a, at->b);
  return d;
}

/* gx = the row's GRAPH_VJP, in ops on GY, X, Y, A, B */
static cr_status un_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *GY, cr_tensor **gx) {
  cr_tensor *X = nd->in[0], *Y = nd->out;
  const unary_attr *at = unary_attr_of(nd);
  const double A = at->a, B = at->b;
  (void)X, (void)Y, (void)A, (void)B;
#define G_CONST_DER G_MUL(GY, const_derivative(ctx, nd))
  switch (at->kind) {
#define CR_UNARY(ID, name, FWD, DER, READS, GRAPH)                                                 \
  case U_##ID:                                                                                     \
    gx[0] = (GRAPH);                                                                               \
    break;
#include "elementwise.def"
#undef CR_UNARY
  case U_COUNT: break;
  }
#undef G_CONST_DER
  return cr_ctx_status(ctx);
}

cr_tensor *cr__unary_kind(cr_ctx *c, int kind, cr_tensor *x, double a, double b) {
  return unary(c, (un_kind)kind, x, a, b);
}

cr_tensor *cr__unary_as(cr_ctx *c, int kind, cr_tensor *x, double a, double b, cr_tensor *y) {
  cr_node *nd = cr__record(c, descs[kind], y, 1, &x);
  if (nd)
    *unary_attr_of(nd) = (unary_attr){(un_kind)kind, a, b};
  return c->status == CR_OK ? y : NULL;
}
cr_tensor *cr_neg(cr_ctx *c, cr_tensor *x) { return unary(c, U_NEG, x, 0, 0); }
cr_tensor *cr_exp(cr_ctx *c, cr_tensor *x) { return unary(c, U_EXP, x, 0, 0); }
cr_tensor *cr_log(cr_ctx *c, cr_tensor *x) { return unary(c, U_LOG, x, 0, 0); }
cr_tensor *cr_sqrt(cr_ctx *c, cr_tensor *x) { return unary(c, U_SQRT, x, 0, 0); }
cr_tensor *cr_square(cr_ctx *c, cr_tensor *x) { return unary(c, U_SQUARE, x, 0, 0); }
cr_tensor *cr_tanh(cr_ctx *c, cr_tensor *x) { return unary(c, U_TANH, x, 0, 0); }
cr_tensor *cr_sigmoid(cr_ctx *c, cr_tensor *x) { return unary(c, U_SIGMOID, x, 0, 0); }
cr_tensor *cr_relu(cr_ctx *c, cr_tensor *x) { return unary(c, U_RELU, x, 0, 0); }
cr_tensor *cr_abs(cr_ctx *c, cr_tensor *x) { return unary(c, U_ABS, x, 0, 0); }
cr_tensor *cr_clamp(cr_ctx *c, cr_tensor *x, double lo, double hi) {
  return unary(c, U_CLAMP, x, lo, hi);
}
cr_tensor *cr_add_scalar(cr_ctx *c, cr_tensor *x, double s) { return unary(c, U_ADD_S, x, s, 0); }
cr_tensor *cr_sub_scalar(cr_ctx *c, cr_tensor *x, double s) { return unary(c, U_SUB_S, x, s, 0); }
cr_tensor *cr_rsub_scalar(cr_ctx *c, cr_tensor *x, double s) { return unary(c, U_RSUB_S, x, s, 0); }
cr_tensor *cr_mul_scalar(cr_ctx *c, cr_tensor *x, double s) { return unary(c, U_MUL_S, x, s, 0); }
cr_tensor *cr_div_scalar(cr_ctx *c, cr_tensor *x, double s) { return unary(c, U_DIV_S, x, s, 0); }
cr_tensor *cr_pow_scalar(cr_ctx *c, cr_tensor *x, double p) { return unary(c, U_POW_S, x, p, 0); }
cr_tensor *cr_sin(cr_ctx *c, cr_tensor *x) { return unary(c, U_SIN, x, 0, 0); }
cr_tensor *cr_cos(cr_ctx *c, cr_tensor *x) { return unary(c, U_COS, x, 0, 0); }
cr_tensor *cr_erf(cr_ctx *c, cr_tensor *x) { return unary(c, U_ERF, x, 0, 0); }
cr_tensor *cr_gelu(cr_ctx *c, cr_tensor *x) { return unary(c, U_GELU, x, 0, 0); }
cr_tensor *cr_softplus(cr_ctx *c, cr_tensor *x, double beta, double threshold) {
  return unary(c, U_SOFTPLUS, x, beta, threshold);
}
