/* matmul.c — matrix products through BLIS.
 *
 *   matmul: y = a @ b;   ga += gy @ b^T;   gb += a^T @ gy
 *
 * Shapes: [M,K] @ [K,N] -> [M,N]; [B,M,K] @ [B,K,N] -> [B,M,N] (one product
 * per batch entry); [B,M,K] @ [K,N] -> [B,M,N] (b shared: gb sums over B).
 * The transposes in the VJPs are BLIS transpose flags and strided views are
 * passed by their strides: no transposed copy is ever made.  The VJPs call
 * gemm with beta = 1, so they add straight into the gradient buffers. */
#include "op.h"

static void matmul_vjp(cr_ctx *ctx, cr_node *nd);
const cr_op_desc cr__op_matmul = {"matmul", 2, matmul_vjp};

/* Layout of an operand seen as `batch` matrices of rows x cols. */
typedef struct {
  int64_t batch, rows, cols;
  int64_t bs, rs, cs; /* batch, row, col strides (elements) */
} mat_view;

static mat_view view_of(const cr_tensor *t) {
  mat_view v;
  int d = t->ndim;
  v.rows = t->shape[d - 2];
  v.cols = t->shape[d - 1];
  v.rs = t->stride[d - 2];
  v.cs = t->stride[d - 1];
  v.batch = d == 3 ? t->shape[0] : 1;
  v.bs = d == 3 ? t->stride[0] : 0;
  /* BLIS wants a non-zero stride even for a dimension of size 1 */
  if (v.rows == 1)
    v.rs = v.cols * (v.cs ? v.cs : 1);
  if (v.cols == 1)
    v.cs = 1;
  return v;
}

/* Can the batch of a be folded into its rows (one gemm for all)? */
static bool foldable(const mat_view *a) { return a->batch == 1 || a->bs == a->rows * a->rs; }

static size_t esize(const cr_tensor *t) { return cr_dtype_size(t->dtype); }
static const char *at(const cr_tensor *t, int64_t off) {
  return (const char *)t->data + off * (int64_t)esize(t);
}

cr_tensor *cr_matmul(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) {
  cr_tensor *in[2] = {a, b};
  if (!cr__check_inputs(ctx, "matmul", 2, in))
    return NULL;
  if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3 || (a->ndim == 2 && b->ndim == 3))
    return cr__fail(ctx, CR_ERR_SHAPE, "matmul: %s @ %s: supported are [M,K] @ [K,N], "
                    "[B,M,K] @ [B,K,N] and [B,M,K] @ [K,N]", cr__shp(a), cr__shp(b));
  mat_view va = view_of(a), vb = view_of(b);
  if (va.cols != vb.rows)
    return cr__fail(ctx, CR_ERR_SHAPE, "matmul: %s @ %s: inner dimensions %lld and %lld differ",
                    cr__shp(a), cr__shp(b), (long long)va.cols, (long long)vb.rows);
  if (b->ndim == 3 && va.batch != vb.batch)
    return cr__fail(ctx, CR_ERR_SHAPE, "matmul: %s @ %s: batch sizes %lld and %lld differ",
                    cr__shp(a), cr__shp(b), (long long)va.batch, (long long)vb.batch);
  int64_t M = va.rows, K = va.cols, N = vb.cols, B = va.batch;
  int64_t shape3[3] = {B, M, N};
  cr_tensor *y = a->ndim == 3 ? cr__new(ctx, a->dtype, 3, shape3)
                              : cr__new(ctx, a->dtype, 2, shape3 + 1);
  if (!y)
    return NULL;
  if (b->ndim == 2 && foldable(&va)) {
    cr__gemm(a->dtype, false, false, B * M, N, K, 1.0, a->data, va.rs, va.cs, b->data, vb.rs,
             vb.cs, 0.0, y->data, N, 1);
  } else {
    for (int64_t i = 0; i < B; i++)
      cr__gemm(a->dtype, false, false, M, N, K, 1.0, at(a, i * va.bs), va.rs, va.cs,
               at(b, i * vb.bs), vb.rs, vb.cs, 0.0, (char *)y->data + i * M * N * (int64_t)esize(y),
               N, 1);
  }
  cr__record(ctx, &cr__op_matmul, y, 2, in);
  return y;
}

static void matmul_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *a = nd->in[0], *b = nd->in[1], *gy = nd->out->grad;
  mat_view va = view_of(a), vb = view_of(b);
  int64_t M = va.rows, K = va.cols, N = vb.cols, B = va.batch;
  cr_dtype dt = a->dtype;
  size_t es = esize(a);
  cr_tensor *ga = cr__grad_acc(ctx, a);
  cr_tensor *gb = cr__grad_acc(ctx, b);
  /* ga[i] += gy[i] @ b[i]^T   ([M,N] @ [N,K]) */
  if (ga) {
    if (b->ndim == 2)
      cr__gemm(dt, false, true, B * M, K, N, 1.0, gy->data, N, 1, b->data, vb.rs, vb.cs, 1.0,
               ga->data, K, 1);
    else
      for (int64_t i = 0; i < B; i++)
        cr__gemm(dt, false, true, M, K, N, 1.0, (char *)gy->data + i * M * N * (int64_t)es, N,
                 1, at(b, i * vb.bs), vb.rs, vb.cs, 1.0,
                 (char *)ga->data + i * M * K * (int64_t)es, K, 1);
  }
  /* gb[i] += a[i]^T @ gy[i]   ([K,M] @ [M,N]); shared b sums over the batch */
  if (gb) {
    if (b->ndim == 2 && foldable(&va))
      cr__gemm(dt, true, false, K, N, B * M, 1.0, a->data, va.rs, va.cs, gy->data, N, 1, 1.0,
               gb->data, N, 1);
    else
      for (int64_t i = 0; i < B; i++)
        cr__gemm(dt, true, false, K, N, M, 1.0, at(a, i * va.bs), va.rs, va.cs,
                 (char *)gy->data + i * M * N * (int64_t)es, N, 1, 1.0,
                 (char *)gb->data + (b->ndim == 3 ? i * K * N * (int64_t)es : 0), N, 1);
  }
}
