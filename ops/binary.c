/* binary.c — elementwise binary ops with NumPy broadcasting.
 *
 *   add: y = a + b;  ga += gy;           gb += gy
 *   sub: y = a - b;  ga += gy;           gb -= gy
 *   mul: y = a * b;  ga += gy * b;       gb += gy * a
 *   div: y = a / b;  ga += gy / b;       gb -= gy * a / (b*b)
 *
 * When an input was broadcast, its gradient is the sum of the terms above
 * over the broadcast dims (iterating over y's shape with a 0 stride on the
 * broadcast dims of the gradient adds them up). */
#include "op.h"

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV } bin_kind;

static void bin_vjp(cr_ctx *ctx, cr_node *nd);

const cr_op_desc cr__op_add = {"add", 2, bin_vjp, true};
const cr_op_desc cr__op_sub = {"sub", 2, bin_vjp, true};
const cr_op_desc cr__op_mul = {"mul", 2, bin_vjp, true};
const cr_op_desc cr__op_div = {"div", 2, bin_vjp, true};

static const cr_op_desc *const descs[] = {&cr__op_add, &cr__op_sub, &cr__op_mul, &cr__op_div};

/* Loop over y's shape with operands 0: out-ish, 1: a, 2: b, 3: gy;
 * BODY sees pointers p0..p3 at the row and i. */
#define BIN_LOOP(T, it, base0, base1, base2, base3, BODY)                      \
  for (int64_t r = 0; r < (it).rows; r++, cr__iter_next(&(it))) {              \
    T *p0 = (T *)(base0) + (it).off[0];                                        \
    const T *p1 = (const T *)(base1) + (it).off[1];                            \
    const T *p2 = (const T *)(base2) + (it).off[2];                            \
    const T *p3 = (const T *)(base3) + (it).off[3];                            \
    const int64_t s0 = (it).istr[0], s1 = (it).istr[1], s2 = (it).istr[2],     \
                  s3 = (it).istr[3];                                           \
    (void)p1, (void)p2, (void)p3, (void)s1, (void)s2, (void)s3;                \
    if (s0 == 1 && s1 == 1 && s2 == 1 && s3 == 1) {                            \
      for (int64_t i = 0; i < (it).inner; i++) {                               \
        enum { S0 = 1, S1 = 1, S2 = 1, S3 = 1 };                               \
        BODY;                                                                  \
      }                                                                        \
    } else if (s0 == 1 && s1 == 1 && s2 == 0 && s3 == 1) {                     \
      for (int64_t i = 0; i < (it).inner; i++) {                               \
        enum { S0 = 1, S1 = 1, S2 = 0, S3 = 1 };                               \
        BODY;                                                                  \
      }                                                                        \
    } else {                                                                   \
      for (int64_t i = 0; i < (it).inner; i++) {                               \
        const int64_t S0 = s0, S1 = s1, S2 = s2, S3 = s3;                      \
        (void)S0, (void)S1, (void)S2, (void)S3;                                \
        BODY;                                                                  \
      }                                                                        \
    }                                                                          \
  }

CR_KERNEL static void bin_forward(bin_kind k, cr_tensor *y, const cr_tensor *a, const cr_tensor *b) {
  int64_t sa[CR_MAX_DIMS], sb[CR_MAX_DIMS];
  cr__bcast_strides(a, y->ndim, y->shape, sa);
  cr__bcast_strides(b, y->ndim, y->shape, sb);
  const int64_t *st[4] = {y->stride, sa, sb, y->stride};
  cr__iter it;
  cr__iter_init(&it, y->ndim, y->shape, 4, st);
#define FWD(T, OPX)                                                            \
  BIN_LOOP(T, it, y->data, a->data, b->data, y->data,                          \
           p0[i * S0] = p1[i * S1] OPX p2[i * S2])
#define FWD_T(T)                                                               \
  switch (k) {                                                                 \
  case OP_ADD:                                                                 \
    FWD(T, +);                                                                 \
    break;                                                                     \
  case OP_SUB:                                                                 \
    FWD(T, -);                                                                 \
    break;                                                                     \
  case OP_MUL:                                                                 \
    FWD(T, *);                                                                 \
    break;                                                                     \
  case OP_DIV:                                                                 \
    FWD(T, /);                                                                 \
    break;                                                                     \
  }
  CR_DISPATCH(y->dtype, FWD_T);
#undef FWD_T
#undef FWD
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
  bin_forward(k, y, a, b);
  cr_node *node = cr__record(ctx, op, y, 2, in);
  if (node)
    node->iattr[0] = k;
  return y;
}

cr_tensor *cr_add(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, OP_ADD, a, b); }
cr_tensor *cr_sub(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, OP_SUB, a, b); }
cr_tensor *cr_mul(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, OP_MUL, a, b); }
cr_tensor *cr_div(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) { return binary(ctx, OP_DIV, a, b); }

/* g (input `which`'s gradient, broadcast over y) += term(gy, a, b). */
CR_KERNEL static void bin_grad(bin_kind k, int which, bool assign, cr_tensor *g, const cr_tensor *y,
                     const cr_tensor *gy, const cr_tensor *a, const cr_tensor *b) {
  int64_t sg[CR_MAX_DIMS], sa[CR_MAX_DIMS], sb[CR_MAX_DIMS];
  cr__bcast_strides(g, y->ndim, y->shape, sg);
  cr__bcast_strides(a, y->ndim, y->shape, sa);
  cr__bcast_strides(b, y->ndim, y->shape, sb);
  const int64_t *st[4] = {sg, sa, sb, gy->stride};
  cr__iter it;
  cr__iter_init(&it, y->ndim, y->shape, 4, st);
  /* p0: g, p1: a, p2: b, p3: gy */
#define GRAD_OPS(T, ACC_, DEC_)                                                              \
  switch (k * 2 + which) {                                                     \
  case OP_ADD * 2 + 0:                                                         \
  case OP_ADD * 2 + 1:                                                         \
  case OP_SUB * 2 + 0:                                                         \
    BIN_LOOP(T, it, g->data, a->data, b->data, gy->data, p0[i * S0] ACC_ p3[i * S3]);         \
    break;                                                                     \
  case OP_SUB * 2 + 1:                                                         \
    BIN_LOOP(T, it, g->data, a->data, b->data, gy->data, p0[i * S0] DEC_ p3[i * S3]);         \
    break;                                                                     \
  case OP_MUL * 2 + 0:                                                         \
    BIN_LOOP(T, it, g->data, a->data, b->data, gy->data,                       \
             p0[i * S0] ACC_ p3[i * S3] * p2[i * S2]);                           \
    break;                                                                     \
  case OP_MUL * 2 + 1:                                                         \
    BIN_LOOP(T, it, g->data, a->data, b->data, gy->data,                       \
             p0[i * S0] ACC_ p3[i * S3] * p1[i * S1]);                           \
    break;                                                                     \
  case OP_DIV * 2 + 0:                                                         \
    BIN_LOOP(T, it, g->data, a->data, b->data, gy->data,                       \
             p0[i * S0] ACC_ p3[i * S3] / p2[i * S2]);                           \
    break;                                                                     \
  case OP_DIV * 2 + 1:                                                         \
    BIN_LOOP(T, it, g->data, a->data, b->data, gy->data,                       \
             p0[i * S0] DEC_ p3[i * S3] * p1[i * S1] / (p2[i * S2] * p2[i * S2])); \
    break;                                                                     \
  }
#define GRAD_T(T)                                                              \
  if (assign) {                                                                \
    GRAD_OPS(T, =, = -)                                                        \
  } else {                                                                     \
    GRAD_OPS(T, +=, -=)                                                        \
  }
  CR_DISPATCH(y->dtype, GRAD_T);
#undef GRAD_T
#undef GRAD_OPS
}

static void bin_vjp(cr_ctx *ctx, cr_node *nd) {
  bin_kind k = (bin_kind)nd->iattr[0];
  cr_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out;
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
    bin_grad(k, which, assign, g, y, y->grad, a, b);
  }
}
