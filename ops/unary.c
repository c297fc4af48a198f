/* unary.c — elementwise ops of one tensor (and optional scalars).
 *
 *   neg:         y = -x;                 gx -= gy
 *   exp:         y = exp(x);             gx += gy * y
 *   log:         y = log(x);             gx += gy / x
 *   sqrt:        y = sqrt(x);            gx += gy / (2 y)
 *   square:      y = x*x;                gx += gy * 2 x
 *   tanh:        y = tanh(x);            gx += gy * (1 - y*y)
 *   sigmoid:     y = 1 / (1 + exp(-x));  gx += gy * y (1 - y)
 *   relu:        y = max(x, 0);          gx += gy * [x > 0]
 *   abs:         y = |x|;                gx += gy * sign(x)
 *   clamp:       y = min(max(x,lo),hi);  gx += gy * [lo <= x <= hi]
 *   add_scalar:  y = x + s;              gx += gy
 *   sub_scalar:  y = x - s;              gx += gy
 *   rsub_scalar: y = s - x;              gx -= gy
 *   mul_scalar:  y = x * s;              gx += gy * s
 *   div_scalar:  y = x / s;              gx += gy / s
 *   pow_scalar:  y = x^p;                gx += gy * p * x^(p-1)
 *
 * sigmoid is computed as exp(x) / (1 + exp(x)) for x < 0 so it never
 * overflows.  relu and abs take the subgradient 0 at x = 0, clamp counts
 * the bounds as inside (as PyTorch does). */
#include "op.h"

typedef enum {
  U_NEG, U_EXP, U_LOG, U_SQRT, U_SQUARE, U_TANH, U_SIGMOID, U_RELU, U_ABS, U_CLAMP,
  U_ADD_S, U_SUB_S, U_RSUB_S, U_MUL_S, U_DIV_S, U_POW_S, U_COUNT
} un_kind;

static void un_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_neg = {"neg", 1, un_vjp, true};
const cr_op_desc cr__op_exp = {"exp", 1, un_vjp, true};
const cr_op_desc cr__op_log = {"log", 1, un_vjp, true};
const cr_op_desc cr__op_sqrt = {"sqrt", 1, un_vjp, true};
const cr_op_desc cr__op_square = {"square", 1, un_vjp, true};
const cr_op_desc cr__op_tanh = {"tanh", 1, un_vjp, true};
const cr_op_desc cr__op_sigmoid = {"sigmoid", 1, un_vjp, true};
const cr_op_desc cr__op_relu = {"relu", 1, un_vjp, true};
const cr_op_desc cr__op_abs = {"abs", 1, un_vjp, true};
const cr_op_desc cr__op_clamp = {"clamp", 1, un_vjp, true};
const cr_op_desc cr__op_add_scalar = {"add_scalar", 1, un_vjp, true};
const cr_op_desc cr__op_sub_scalar = {"sub_scalar", 1, un_vjp, true};
const cr_op_desc cr__op_rsub_scalar = {"rsub_scalar", 1, un_vjp, true};
const cr_op_desc cr__op_mul_scalar = {"mul_scalar", 1, un_vjp, true};
const cr_op_desc cr__op_div_scalar = {"div_scalar", 1, un_vjp, true};
const cr_op_desc cr__op_pow_scalar = {"pow_scalar", 1, un_vjp, true};

static const cr_op_desc *const descs[U_COUNT] = {
    &cr__op_neg,        &cr__op_exp,        &cr__op_log,        &cr__op_sqrt,
    &cr__op_square,     &cr__op_tanh,       &cr__op_sigmoid,    &cr__op_relu,
    &cr__op_abs,        &cr__op_clamp,      &cr__op_add_scalar, &cr__op_sub_scalar,
    &cr__op_rsub_scalar, &cr__op_mul_scalar, &cr__op_div_scalar, &cr__op_pow_scalar};

/* y[i] = F(x[i]) over a possibly strided x; y is contiguous. */
#define UN_FWD(T, F)                                                           \
  for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                  \
    T *py = (T *)y->data + it.off[0];                                          \
    const T *px = (const T *)x->data + it.off[1];                              \
    const int64_t sx = it.istr[1];                                             \
    if (sx == 1) {                                                             \
      _Pragma("omp simd") for (int64_t i = 0; i < it.inner; i++) {             \
        const T v = px[i];                                                     \
        py[i] = (F);                                                           \
      }                                                                        \
    } else {                                                                   \
      for (int64_t i = 0; i < it.inner; i++) {                                 \
        const T v = px[i * sx];                                                \
        py[i] = (F);                                                           \
      }                                                                        \
    }                                                                          \
  }

static inline double sigmoid_d(double v) {
  return v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v));
}
#define SIGMOID(T, v) _Generic((v), float: cr__sigmoidf, default: sigmoid_d)(v)

CR_KERNEL static void un_forward(un_kind k, cr_tensor *y, const cr_tensor *x, double s0, double s1) {
  const int64_t *st[2] = {y->stride, x->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 2, st);
#define FWD_T(T)                                                               \
  {                                                                            \
    const T a = (T)s0, b = (T)s1;                                              \
    (void)a, (void)b;                                                          \
    switch (k) {                                                               \
    case U_NEG: UN_FWD(T, -v); break;                                          \
    case U_EXP: UN_FWD(T, CR_EXP(v)); break;                                   \
    case U_LOG: UN_FWD(T, CR_LOG(v)); break;                                   \
    case U_SQRT: UN_FWD(T, CR_SQRT(v)); break;                                 \
    case U_SQUARE: UN_FWD(T, v * v); break;                                    \
    case U_TANH: UN_FWD(T, CR_TANH(v)); break;                                 \
    case U_SIGMOID: UN_FWD(T, SIGMOID(T, v)); break;                           \
    case U_RELU: UN_FWD(T, v > 0 ? v : (T)0); break;                           \
    case U_ABS: UN_FWD(T, CR_FABS(v)); break;                                  \
    case U_CLAMP: UN_FWD(T, v < a ? a : (v > b ? b : v)); break;               \
    case U_ADD_S: UN_FWD(T, v + a); break;                                     \
    case U_SUB_S: UN_FWD(T, v - a); break;                                     \
    case U_RSUB_S: UN_FWD(T, a - v); break;                                    \
    case U_MUL_S: UN_FWD(T, v * a); break;                                     \
    case U_DIV_S: UN_FWD(T, v / a); break;                                     \
    case U_POW_S: UN_FWD(T, CR_POW(v, a)); break;                              \
    case U_COUNT: break;                                                       \
    }                                                                          \
  }
  CR_DISPATCH(y->dtype, FWD_T);
#undef FWD_T
}

static cr_tensor *unary(cr_ctx *ctx, un_kind k, cr_tensor *x, double s0, double s1) {
  const cr_op_desc *op = descs[k];
  if (!cr__check_inputs(ctx, op->name, 1, &x))
    return NULL;
  if (k == U_CLAMP && !(s0 <= s1))
    return cr__fail(ctx, CR_ERR_ARG, "clamp: %s: lo %g > hi %g", cr__shp(x), s0, s1);
  if (k == U_DIV_S && s0 == 0)
    return cr__fail(ctx, CR_ERR_ARG, "div_scalar: %s: division by zero", cr__shp(x));
  if (k != U_CLAMP && !isfinite(s0))
    return cr__fail(ctx, CR_ERR_ARG, "%s: %s: scalar %g is not finite", op->name, cr__shp(x),
                    s0);
  cr_tensor *y = cr__new(ctx, x->dtype, x->ndim, x->shape);
  if (!y)
    return NULL;
  un_forward(k, y, x, s0, s1);
  cr_node *nd = cr__record(ctx, op, y, 1, &x);
  if (nd) {
    nd->iattr[0] = k;
    nd->dattr[0] = s0;
    nd->dattr[1] = s1;
  }
  return y;
}

/* gx[i] += gy[i] * D (or = when gx is fresh), with v = x[i] (strided) and
 * w = y[i]. */
#define UN_BWD(T, D)                                                           \
  for (int64_t r = 0; r < it.rows; r++, cr__iter_next(&it)) {                  \
    T *pg = (T *)gx->data + it.off[0];                                         \
    const T *px = (const T *)x->data + it.off[1];                              \
    const T *py = (const T *)y->data + it.off[2];                              \
    const T *pgy = (const T *)gy->data + it.off[3];                            \
    const int64_t sx = it.istr[1], sg = it.istr[0];                            \
    if (sg != 1 && it.inner > 1) { /* gx is a strided view: a slice gradient */ \
      for (int64_t i = 0; i < it.inner; i++) {                                 \
        const T v = px[i * sx], w = py[i], g = pgy[i];                         \
        (void)v, (void)w;                                                      \
        pg[i * sg] += g * (D);                                                 \
      }                                                                        \
    } else if (fresh) {                                                        \
      _Pragma("omp simd") for (int64_t i = 0; i < it.inner; i++) {             \
        const T v = px[i * sx], w = py[i], g = pgy[i];                         \
        (void)v, (void)w;                                                      \
        pg[i] = g * (D);                                                       \
      }                                                                        \
    } else {                                                                   \
      _Pragma("omp simd") for (int64_t i = 0; i < it.inner; i++) {             \
        const T v = px[i * sx], w = py[i], g = pgy[i];                         \
        (void)v, (void)w;                                                      \
        pg[i] += g * (D);                                                      \
      }                                                                        \
    }                                                                          \
  }

CR_KERNEL static void un_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *x = nd->in[0], *y = nd->out, *gy = y->grad;
  bool fresh;
  cr_tensor *gx = cr__grad_acc_fresh(ctx, x, &fresh);
  if (!gx)
    return;
  un_kind k = (un_kind)nd->iattr[0];
  const int64_t *st[4] = {gx->stride, x->stride, y->stride, gy->stride};
  cr__iter it;
  cr__iter_init(&it, x->ndim, x->shape, 4, st);
  double s0 = nd->dattr[0], s1 = nd->dattr[1];
#define BWD_T(T)                                                               \
  {                                                                            \
    const T a = (T)s0, b = (T)s1;                                              \
    (void)a, (void)b;                                                          \
    switch (k) {                                                               \
    case U_NEG: UN_BWD(T, (T)-1); break;                                       \
    case U_EXP: UN_BWD(T, w); break;                                           \
    case U_LOG: UN_BWD(T, (T)1 / v); break;                                    \
    case U_SQRT: UN_BWD(T, (T)0.5 / w); break;                                 \
    case U_SQUARE: UN_BWD(T, (T)2 * v); break;                                 \
    case U_TANH: UN_BWD(T, (T)1 - w * w); break;                               \
    case U_SIGMOID: UN_BWD(T, w * ((T)1 - w)); break;                          \
    case U_RELU: UN_BWD(T, v > 0 ? (T)1 : (T)0); break;                        \
    case U_ABS: UN_BWD(T, v > 0 ? (T)1 : (v < 0 ? (T)-1 : (T)0)); break;       \
    case U_CLAMP: UN_BWD(T, (v >= a && v <= b) ? (T)1 : (T)0); break;          \
    case U_ADD_S:                                                              \
    case U_SUB_S: UN_BWD(T, (T)1); break;                                      \
    case U_RSUB_S: UN_BWD(T, (T)-1); break;                                    \
    case U_MUL_S: UN_BWD(T, a); break;                                         \
    case U_DIV_S: UN_BWD(T, (T)1 / a); break;                                  \
    case U_POW_S: UN_BWD(T, a * CR_POW(v, a - (T)1)); break;                   \
    case U_COUNT: break;                                                       \
    }                                                                          \
  }
  CR_DISPATCH(x->dtype, BWD_T);
#undef BWD_T
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
cr_tensor *cr_rsub_scalar(cr_ctx *c, cr_tensor *x, double s) {
  return unary(c, U_RSUB_S, x, s, 0);
}
cr_tensor *cr_mul_scalar(cr_ctx *c, cr_tensor *x, double s) { return unary(c, U_MUL_S, x, s, 0); }
cr_tensor *cr_div_scalar(cr_ctx *c, cr_tensor *x, double s) { return unary(c, U_DIV_S, x, s, 0); }
cr_tensor *cr_pow_scalar(cr_ctx *c, cr_tensor *x, double p) { return unary(c, U_POW_S, x, p, 0); }
