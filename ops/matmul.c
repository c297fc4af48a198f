/* matmul.c — matrix products through BLIS.
 *
 *   matmul: y = a @ b;       ga += gy @ b^T;   gb += a^T @ gy
 *   addmm:  y = c + a @ b;   gc += gy (summed over rows when c is [N]);
 *                            ga += gy @ b^T;   gb += a^T @ gy
 *
 * Shapes: [M,K] @ [K,N] -> [M,N]; [B,M,K] @ [B,K,N] -> [B,M,N] (one product
 * per batch entry); [B,M,K] @ [K,N] -> [B,M,N] (b shared: gb sums over B).
 * The transposes in the VJPs are BLIS transpose flags and strided views are
 * passed by their strides: no transposed copy is ever made.  The VJPs call
 * gemm with beta = 1, so they add straight into the gradient buffers. */
#include "chainrule/runtime.h"
#include "op.h"

static void matmul_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status matmul_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
/* A 2-d right operand's gradient is written by BLIS through its strides,
 * so it may be a strided view (a transposed weight's gradient: a view into
 * the weight's own, with no transposed copy back) */
static bool matmul_takes_view(const cr_node *nd, int k) { return k == 1 && nd->in[1]->ndim == 2; }
const cr_op_desc cr__op_matmul = {.name = "matmul",
                                  .n_inputs = 2,
                                  .vjp = matmul_vjp,
                                  .vjp_graph = matmul_vjp_graph,
                                  .reads = CR__READS_IN(0) | CR__READS_IN(1),
                                  .takes_view_grad = matmul_takes_view};

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

/* ---- deferred weight gradients
 * A weight shared by T time steps receives T contributions a_t^T @ gy_t,
 * each a thin product (a_t has only B rows).  Instead of T thin gemms the
 * VJP stages them (op.h: pending accumulations): the rows of a_t and gy_t
 * are copied at once into a staging area of the weight gradient, and
 * every stage_rows(K, N) rows — or when the gradient is about to be read — the
 * staged sum_t a_t^T gy_t = A^T G is added in one efficient gemm.
 * Copying at once lets a_t and gy_t go (memory-efficient BPTT releases
 * them), and the chunks depend only on the order the products come in, so
 * any two runs of the same ops sum alike. */
/* Rows staged per gemm [K,R]^T-side @ [R,N].  Measured (BLIS 0.9 zen3, one
 * core, gb += A^T G): K,N = 128,512: R = 128 and 256 both ~50 GFLOP/s;
 * 512,2048: R = 128 50, R = 256 68, R = 512 69; 1024,4096: 42 / 71 / 71.
 * So 256 rows for a gradient of 256K elements or more (1 MiB in f32), else
 * 128 (half the staging memory, which checkpointed BPTT counts).  A product
 * with more rows than that runs at once (it is efficient already).  From
 * 512K elements (2 MiB in f32) 512 rows: each flush reads and writes the
 * whole gradient, which has left the caches since the last one (timed
 * inside an LSTM 64x512 layer, Zen 5: a 2048x512x256 flush ran at 192-203
 * GFLOP/s, the same call again at once at 230), so half as many flushes
 * spend half as long on it; paired runs, new/old time: lstm 64x512 0.97,
 * 512x512 0.98, 64x1024 0.97, gru 64x512 0.97-0.98, 512x512 0.98,
 * rnn_tanh 64x1024 0.97; 1024 rows gained 1-2% more, within the noise. */
static int64_t stage_rows(int64_t K, int64_t N) {
  return K * N >= 524288 ? 512 : K * N >= 262144 ? 256 : 128;
}

/* How a weight gradient gb [K,N] += a^T gy can go through the few-row
 * kernel: not at all (BLIS), with gy as the packed right operand (gb's rows
 * contiguous), or as gb^T += gy^T a with a packed (gb's columns
 * contiguous: a transposed weight's gradient). */
typedef enum { PACK_NONE, PACK_GY, PACK_A } weight_packing;

static weight_packing weight_packing_of(const cr_tensor *gb, int64_t K, int64_t N) {
  if (gb->dtype != CR_F32)
    return PACK_NONE;
  if (gb->stride[1] == 1 && cr__packed_suits(K, N))
    return PACK_GY;
  return gb->stride[0] == 1 && cr__packed_suits(N, K) ? PACK_A : PACK_NONE;
}

/* gb += the product of M rows, from the packed right operand (packed for kp
 * rows) and the left one, left[i, p] = left[i*li + p*lp]: a^T for PACK_GY,
 * gy^T for PACK_A. */
static void add_from_panels(weight_packing how, int64_t K, int64_t N, int64_t M, const float *left,
                            int64_t li, int64_t lp, const float *panels, int64_t kp, void *gb,
                            int64_t rs, int64_t cs) {
  if (how == PACK_GY)
    cr__skinny_sgemm_packed(K, N, M, 1.0f, left, li, lp, panels, kp, 1.0f, gb, rs);
  else
    cr__skinny_sgemm_packed(N, K, M, 1.0f, left, li, lp, panels, kp, 1.0f, gb, cs);
}

typedef struct {
  cr__pending base; /* target: gb's data, gb += A[:rows]^T @ G[:rows] */
  cr_dtype dt;      /* gb's layout, copied: the tensor may be a view that */
  int64_t rs, cs;   /* goes before the products are added (a region's) */
  int64_t K, N, rows, cap;
  char *A, *G; /* [cap, K] and [cap, N], dense; NULL when packed instead */
  /* with `how` not PACK_NONE, the right operand (G for PACK_GY, A for
   * PACK_A) is staged straight into the kernel's panels, packed for cap
   * rows */
  weight_packing how;
  float *panels;
} staged_products;

static void settle_products(cr_ctx *ctx, cr__pending *first, void *target);

static void flush(staged_products *s) {
  if (s->rows && s->how == PACK_GY)
    add_from_panels(PACK_GY, s->K, s->N, s->rows, (const float *)s->A, 1, s->K, s->panels, s->cap,
                    s->base.target, s->rs, s->cs);
  else if (s->rows && s->how == PACK_A)
    add_from_panels(PACK_A, s->K, s->N, s->rows, (const float *)s->G, 1, s->N, s->panels, s->cap,
                    s->base.target, s->rs, s->cs);
  else if (s->rows)
    cr__gemm(s->dt, true, false, s->K, s->N, s->rows, 1.0, s->A, s->K, 1, s->G, s->N, 1, 1.0,
             s->base.target, s->rs, s->cs);
  s->rows = 0;
}

/* The staging area of gb for this pass, made at its first product. */
static staged_products *staging(cr_ctx *ctx, cr_tensor *gb, int64_t K, int64_t N) {
  for (cr__pending *p = ctx->pending; p; p = p->next)
    if (!p->done && p->target == gb->data && p->settle == settle_products) {
      staged_products *s = (staged_products *)p;
      if (s->K == K && s->N == N && s->dt == gb->dtype && s->rs == gb->stride[0] &&
          s->cs == gb->stride[1])
        return s;
    }
  size_t es = cr_dtype_size(gb->dtype);
  const int64_t cap = stage_rows(K, N);
  const weight_packing how = weight_packing_of(gb, K, N);
  staged_products *s = cr__alloc_main(ctx, sizeof *s); /* owned by the pass */
  char *A = how == PACK_A ? NULL : cr__alloc_main(ctx, (size_t)(cap * K) * es);
  char *G = how == PACK_GY ? NULL : cr__alloc_main(ctx, (size_t)(cap * N) * es);
  float *panels = how == PACK_NONE
                      ? NULL
                      : cr__alloc_main(ctx, cr__skinny_packed_floats(cap, how == PACK_A ? K : N) *
                                                sizeof(float));
  if (!s || (!A && how != PACK_A) || (!G && how != PACK_GY) || (!panels && how != PACK_NONE))
    return NULL;
  *s = (staged_products){{NULL, gb->data, settle_products, false},
                         gb->dtype,
                         gb->stride[0],
                         gb->stride[1],
                         K,
                         N,
                         0,
                         cap,
                         A,
                         G,
                         how,
                         panels};
  cr__pending_add(ctx, &s->base);
  return s;
}

/* gb += a^T gy ([M,K]^T @ [M,N]) at once: through the few-row kernel,
 * its right operand packed into a buffer from the pool (gy, or a for
 * gb^T += gy^T a when gb's columns are contiguous), where that beats
 * BLIS; else through cr__gemm. */
static void add_product_now(cr_ctx *ctx, cr_tensor *gb, cr_tensor *a, cr_tensor *gy) {
  const int64_t M = a->shape[0], K = a->shape[1], N = gy->shape[1];
  const int64_t rs = gb->stride[0], cs = gb->stride[1];
  const weight_packing how = weight_packing_of(gb, K, N);
  if (how != PACK_NONE) {
    const size_t bytes = cr__skinny_packed_floats(M, how == PACK_A ? K : N) * sizeof(float);
    float *buf = cr__pool_take(ctx, false, bytes);
    if (!buf)
      buf = cr__alloc_main(ctx, bytes);
    if (buf) {
      if (how == PACK_GY) { /* a^T[i,p] = a[p,i] */
        cr__skinny_pack(M, N, gy->data, N, 1, buf);
        add_from_panels(how, K, N, M, a->data, a->stride[1], a->stride[0], buf, M, gb->data, rs,
                        cs);
      } else {
        cr__skinny_pack(M, K, a->data, a->stride[0], a->stride[1], buf);
        add_from_panels(how, K, N, M, gy->data, 1, N, buf, M, gb->data, rs, cs);
      }
      cr__pool_give(ctx, false, buf, bytes);
      return;
    }
    cr_ctx_clear_error(ctx); /* no memory for the panels: BLIS needs none */
  }
  mat_view va = view_of(a);
  cr__gemm(a->dtype, true, false, K, N, M, 1.0, a->data, va.rs, va.cs, gy->data, N, 1, 1.0,
           gb->data, rs, cs);
}

static void defer_or_run(cr_ctx *ctx, cr_tensor *gb, cr_tensor *a, cr_tensor *gy) {
  int64_t M = a->shape[0], K = a->shape[1], N = gy->shape[1];
  staged_products *s =
      M <= stage_rows(K, N) && cr__pending_allowed(ctx) ? staging(ctx, gb, K, N) : NULL;
  if (!s) {
    if (ctx->status == CR_ERR_NOMEM)
      cr_ctx_clear_error(ctx); /* no arena memory to stage: add it now */
    add_product_now(ctx, gb, a, gy);
    return;
  }
  if (s->rows + M > s->cap)
    flush(s);
  size_t es = cr_dtype_size(gb->dtype);
  if (s->how == PACK_A) /* a's rows into the panels, whatever its strides */
    cr__skinny_pack_rows(s->cap, s->rows, M, K, a->data, a->stride[0], a->stride[1], s->panels);
  else
    cr__gather(a, s->A + (size_t)(s->rows * K) * es); /* dense rows, whatever a's strides */
  if (s->how == PACK_GY)
    cr__skinny_pack_rows(s->cap, s->rows, M, N, gy->data, N, 1, s->panels);
  else
    cr__par_copy(s->G + (size_t)(s->rows * N) * es, gy->data, (size_t)(M * N) * es);
  s->rows += M;
}

/* the engine reads the gradient next: add what is staged */
static void settle_products(cr_ctx *ctx, cr__pending *first, void *target) {
  (void)ctx;
  for (cr__pending *p = first; p; p = p->next)
    if (!p->done && p->target == target && p->settle == settle_products) {
      flush((staged_products *)p);
      p->done = true;
    }
}

/* For a product reading b transposed (ga += gy @ b^T), BLIS packs fastest
 * when b^T's rows are contiguous, i.e. b is column-major.  A contiguous
 * copy of a transposed view (see cr_contiguous) is row-major, but its
 * source view holds the same values column-major: use that one. */
static cr_tensor *best_for_transposed_read(cr_tensor *b) {
  if (b->ndim == 2 && b->alt && b->alt->ndim == 2 && b->alt->stride[0] == 1 && b->stride[0] != 1)
    return b->alt;
  return b;
}

/* The panels of op(b) [K,N] (op(b)[p,j] = data[p*rs + j*cs]) for the
 * few-row kernel: packed at the first such product and kept with the
 * tensor owning the data, reused while its data is unchanged — the T
 * steps of a recurrent layer, and every transposed view a user's cell
 * makes of the same weight, share one packing.  NULL when no memory. */
static float *panels_for(cr_ctx *ctx, cr_tensor *b, int64_t K, int64_t N, int64_t rs, int64_t cs) {
  cr_tensor *root = b->root ? b->root : b;
  cr__packed *e = root->packed;
  int count = 0;
  for (; e; e = e->next, count++)
    if (e->data == b->data && e->k == K && e->n == N && e->rs == rs && e->cs == cs &&
        (root->persistent || (e->ctx == ctx && e->epoch == ctx->epoch)))
      break;
  if (e && e->version == root->version)
    return e->panels;
  size_t bytes = cr__skinny_packed_floats(K, N) * sizeof(float);
  if (!e) {
    if (root->persistent) { /* kept across resets, on the heap */
      if (count >= 8)
        return NULL; /* a weight used in this many layouts: go without */
      e = cr__malloc(sizeof *e);
      float *p = e ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
      if (!p) {
        free(e);
        return NULL;
      }
      *e = (cr__packed){root->packed, NULL, 0, 0, b->data, K, N, rs, cs, p};
    } else { /* with the arena */
      e = cr__alloc_for(ctx, root, sizeof *e);
      float *p = e ? cr__alloc_for(ctx, root, bytes) : NULL;
      if (!p) {
        cr_ctx_clear_error(ctx);
        return NULL;
      }
      *e = (cr__packed){root->packed, ctx, ctx->epoch, 0, b->data, K, N, rs, cs, p};
    }
    root->packed = e;
  }
  cr__skinny_pack(K, N, b->data, rs, cs, e->panels);
  e->version = root->version;
  return e->panels;
}

/* C[M,N] = a[M,K] @ op(b) + beta Cin, Cin given by its rows (rsin apart,
 * 0: one row repeated; unit column stride; NULL: Cin is C itself): the
 * few-row kernel reads Cin as it writes C, where BLIS gets a copy first.
 * The kernel takes even the smallest products (a batch-1 step's [1,32] @
 * [32,32]): with b's panels packed once per forward it beats the plain
 * loops, whose dot products against a transposed weight reduce across
 * lanes (measured: batch-1 rnn_tanh layer 0.035 -> 0.027 ms). */
static void times_right_from(cr_ctx *ctx, int64_t M, int64_t K, int64_t N, const void *a,
                             int64_t rsa, int64_t csa, cr_tensor *b, bool transb, double beta,
                             const void *cin, int64_t rsin, void *c, int64_t rsc) {
  mat_view vb = view_of(b);
  if (b->dtype == CR_F32 && b->ndim == 2 && cr__skinny_isa != CR__SKINNY_NONE &&
      cr__packed_suits(M, N) && cr__skinny_max_m > 0 && M > 0 && N > 0 && K > 0) {
    float *panels = panels_for(ctx, b, K, N, transb ? vb.cs : vb.rs, transb ? vb.rs : vb.cs);
    if (panels) {
      cr__skinny_sgemm_packed_from(M, N, K, 1.0f, a, rsa, csa, panels, K, (float)beta,
                                   cin ? cin : c, cin ? rsin : rsc, c, rsc);
      return;
    }
  }
  if (cin) { /* C = Cin, then C += a @ op(b) */
    const size_t es = cr_dtype_size(b->dtype);
    for (int64_t i = 0; i < M; i++)
      memcpy((char *)c + (size_t)(i * rsc) * es, (const char *)cin + (size_t)(i * rsin) * es,
             (size_t)N * es);
  }
  cr__gemm(b->dtype, false, transb, M, N, K, 1.0, a, rsa, csa, b->data, vb.rs, vb.cs, beta, c, rsc,
           1);
}

/* C[M,N] (= or += by beta) a[M,K] @ op(b), op(b) = b or b^T ([K,N]): with
 * few rows through b's packed panels, else through cr__gemm. */
static void times_right(cr_ctx *ctx, int64_t M, int64_t K, int64_t N, const void *a, int64_t rsa,
                        int64_t csa, cr_tensor *b, bool transb, double beta, void *c, int64_t rsc) {
  times_right_from(ctx, M, K, N, a, rsa, csa, b, transb, beta, NULL, 0, c, rsc);
}

cr_tensor *cr_matmul(cr_ctx *ctx, cr_tensor *a, cr_tensor *b) {
  cr_tensor *in[2] = {a, b};
  if (!cr__check_inputs(ctx, "matmul", 2, in))
    return NULL;
  if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3 || (a->ndim == 2 && b->ndim == 3))
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "matmul: %s @ %s: supported are [M,K] @ [K,N], "
                    "[B,M,K] @ [B,K,N] and [B,M,K] @ [K,N]",
                    cr__shp(a), cr__shp(b));
  mat_view va = view_of(a), vb = view_of(b);
  if (va.cols != vb.rows)
    return cr__fail(ctx, CR_ERR_SHAPE, "matmul: %s @ %s: inner dimensions %lld and %lld differ",
                    cr__shp(a), cr__shp(b), (long long)va.cols, (long long)vb.rows);
  if (b->ndim == 3 && va.batch != vb.batch)
    return cr__fail(ctx, CR_ERR_SHAPE, "matmul: %s @ %s: batch sizes %lld and %lld differ",
                    cr__shp(a), cr__shp(b), (long long)va.batch, (long long)vb.batch);
  int64_t M = va.rows, K = va.cols, N = vb.cols, B = va.batch;
  int64_t shape3[3] = {B, M, N};
  cr_tensor *y =
      a->ndim == 3 ? cr__new(ctx, a->dtype, 3, shape3) : cr__new(ctx, a->dtype, 2, shape3 + 1);
  if (!y)
    return NULL;
  if (b->ndim == 2 && foldable(&va)) {
    times_right(ctx, B * M, K, N, a->data, va.rs, va.cs, b, false, 0.0, y->data, N);
  } else {
    for (int64_t i = 0; i < B; i++)
      cr__gemm(a->dtype, false, false, M, N, K, 1.0, at(a, i * va.bs), va.rs, va.cs,
               at(b, i * vb.bs), vb.rs, vb.cs, 0.0, (char *)y->data + i * M * N * (int64_t)esize(y),
               N, 1);
  }
  cr__record(ctx, &cr__op_matmul, y, 2, in);
  return ctx->status == CR_OK ? y : NULL;
}

static void matmul_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *a = nd->in[0], *b = nd->in[1], *gy = nd->out->grad;
  mat_view va = view_of(a), vb = view_of(b);
  int64_t M = va.rows, K = va.cols, N = vb.cols, B = va.batch;
  cr_dtype dt = a->dtype;
  size_t es = esize(a);
  bool fresh_a;
  cr_tensor *ga = cr__grad_acc_fresh(ctx, a, &fresh_a);
  cr_tensor *gb = cr__grad_acc(ctx, b);
  double beta_a = fresh_a ? 0.0 : 1.0; /* a fresh buffer is overwritten */
  /* ga[i] += gy[i] @ b[i]^T   ([M,N] @ [N,K]) */
  if (ga) {
    if (b->ndim == 2)
      times_right(ctx, B * M, N, K, gy->data, N, 1, best_for_transposed_read(b), true, beta_a,
                  ga->data, K);
    else
      for (int64_t i = 0; i < B; i++)
        cr__gemm(dt, false, true, M, K, N, 1.0, (char *)gy->data + i * M * N * (int64_t)es, N, 1,
                 at(b, i * vb.bs), vb.rs, vb.cs, beta_a, (char *)ga->data + i * M * K * (int64_t)es,
                 K, 1);
  }
  /* gb[i] += a[i]^T @ gy[i]   ([K,M] @ [M,N]); shared b sums over the batch */
  if (gb) {
    if (a->ndim == 2 && b->ndim == 2)
      defer_or_run(ctx, gb, a, gy);
    else if (b->ndim == 2 && foldable(&va))
      cr__gemm(dt, true, false, K, N, B * M, 1.0, a->data, va.rs, va.cs, gy->data, N, 1, 1.0,
               gb->data, gb->stride[0], gb->stride[1]);
    else
      for (int64_t i = 0; i < B; i++)
        cr__gemm(dt, true, false, K, N, M, 1.0, at(a, i * va.bs), va.rs, va.cs,
                 (char *)gy->data + i * M * N * (int64_t)es, N, 1, 1.0,
                 (char *)gb->data + (b->ndim == 3 ? i * K * N * (int64_t)es : 0), N, 1);
  }
}

/* ---- addmm: y = c + a @ b ------------------------------------------------- */

static void addmm_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status addmm_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static cr_tensor *addmm_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh);
static bool addmm_takes_view(const cr_node *nd, int k) { return (void)nd, k == 2; }
const cr_op_desc cr__op_addmm = {.name = "addmm",
                                 .n_inputs = 3,
                                 .vjp = addmm_vjp,
                                 .vjp_graph = addmm_vjp_graph,
                                 .reads = CR__READS_IN(1) | CR__READS_IN(2),
                                 .grad_alias = addmm_grad_alias,
                                 .takes_view_grad = addmm_takes_view};

cr_tensor *cr_addmm(cr_ctx *ctx, cr_tensor *c, cr_tensor *a, cr_tensor *b) {
  cr_tensor *in[3] = {c, a, b};
  if (!cr__check_inputs(ctx, "addmm", 3, in))
    return NULL;
  if (a->ndim != 2 || b->ndim != 2)
    return cr__fail(ctx, CR_ERR_SHAPE, "addmm: %s @ %s: a and b must be 2-d", cr__shp(a),
                    cr__shp(b));
  mat_view va = view_of(a), vb = view_of(b);
  int64_t M = va.rows, K = va.cols, N = vb.cols;
  if (K != vb.rows)
    return cr__fail(ctx, CR_ERR_SHAPE, "addmm: %s @ %s: inner dimensions %lld and %lld differ",
                    cr__shp(a), cr__shp(b), (long long)K, (long long)vb.rows);
  bool row = c->ndim == 1 || (c->ndim == 2 && c->shape[0] == 1);
  if (c->shape[c->ndim - 1] != N || c->ndim > 2 || (c->ndim == 2 && !row && c->shape[0] != M))
    return cr__fail(ctx, CR_ERR_SHAPE, "addmm: %s + %s @ %s: c must be [%lld,%lld] or [%lld]",
                    cr__shp(c), cr__shp(a), cr__shp(b), (long long)M, (long long)N, (long long)N);
  int64_t shape[2] = {M, N};
  cr_tensor *y = cr__new(ctx, a->dtype, 2, shape);
  if (!y)
    return NULL;
  /* y = c (rows broadcast) + a @ b */
  int64_t cs = c->stride[c->ndim - 1], rs = row ? 0 : c->stride[0];
  if (cs == 1) {
    times_right_from(ctx, M, K, N, a->data, va.rs, va.cs, b, false, 1.0, c->data, rs, y->data, N);
  } else { /* a strided c: copied into y first */
    size_t es = cr_dtype_size(y->dtype);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++)
        memcpy((char *)y->data + (size_t)(i * N + j) * es,
               (const char *)c->data + (size_t)(i * rs + j * cs) * es, es);
    times_right(ctx, M, K, N, a->data, va.rs, va.cs, b, false, 1.0, y->data, N);
  }
  cr__record(ctx, &cr__op_addmm, y, 3, in);
  return ctx->status == CR_OK ? y : NULL;
}

/* gc = gy exactly when c has y's shape: where c is an intermediate whose
 * only use is this product (a recurrent step's gates = xp_t + h W_hh^T),
 * y's gradient is c's own buffer (its layout dense as y's), so the ops
 * after y write their terms straight into it and nothing is copied. */
static cr_tensor *addmm_grad_alias(cr_ctx *ctx, cr_node *nd, bool *fresh) {
  cr_tensor *y = nd->out, *c = nd->in[0];
  *fresh = false;
  if (!c->node || c->ndim != 2 || c->shape[0] != y->shape[0] || c->shape[1] != y->shape[1] ||
      !cr__sole_use(ctx, c) || !cr__may_alias(ctx, c) || (c->grad && c->grad_pass == ctx->pass))
    return NULL;
  bool fresh_c;
  cr_tensor *gc = cr__grad_acc_fresh(ctx, c, &fresh_c);
  if (!gc)
    return NULL;
  if (!cr__is_contig(gc)) {
    if (fresh_c) /* c's buffer stays c's: it now takes the VJP's terms */
      cr__par_zero(gc->data, (size_t)gc->numel * cr_dtype_size(gc->dtype));
    return NULL;
  }
  cr_tensor *g = cr__view_for(ctx, y, gc, 2, y->shape, (int64_t[]){y->shape[1], 1}, gc->data);
  if (!g)
    return NULL;
  cr__grad_set(ctx, y, g, true);
  *fresh = fresh_c;
  return g;
}

static void addmm_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *c = nd->in[0], *a = nd->in[1], *b = nd->in[2], *gy = nd->out->grad;
  mat_view va = view_of(a), vb = view_of(b);
  int64_t M = va.rows, K = va.cols, N = vb.cols;
  bool fresh_c = false, fresh_a;
  const bool aliased = nd->out->grad_is_view && c->grad && c->grad_pass == ctx->pass &&
                       c->grad->data == gy->data; /* addmm_grad_alias: gc is gy already */
  cr_tensor *gc = aliased ? NULL : cr__grad_acc_fresh(ctx, c, &fresh_c),
            *ga = cr__grad_acc_fresh(ctx, a, &fresh_a);
  cr_tensor *gb = cr__grad_acc(ctx, b);
  if (gc) {
    if (fresh_c && gc->numel == gy->numel) /* gc = gy */
      cr__par_copy(gc->data, gy->data, (size_t)gy->numel * cr_dtype_size(gy->dtype));
    else {
      if (fresh_c)
        cr__par_zero(gc->data, (size_t)gc->numel * cr_dtype_size(gc->dtype));
      cr__add_reduced(gc, gy); /* sums over the rows when c was broadcast */
    }
  }
  if (ga) /* ga += gy @ b^T  (= when fresh) */
    times_right(ctx, M, N, K, gy->data, N, 1, best_for_transposed_read(b), true,
                fresh_a ? 0.0 : 1.0, ga->data, K);
  if (gb) /* gb += a^T @ gy, deferred to one product over all uses of b */
    defer_or_run(ctx, gb, a, gy);
}

/* ---- the VJPs as ops (create_graph) */

/* The transpose of the last two axes (a view). */
static cr_tensor *mT(cr_ctx *ctx, cr_tensor *x) { return cr_transpose(ctx, x, -2, -1); }

/* ga = gy @ b^T;  gb = a^T @ gy (for a shared b [K,N] under a batched a,
 * the batch folds into the rows: gb = a'^T @ gy' with a' [B*M,K]) */
static cr_status matmul_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *a = nd->in[0], *b = nd->in[1];
  if (a->requires_grad)
    gx[0] = cr_matmul(ctx, gy, mT(ctx, b));
  if (b->requires_grad) {
    if (a->ndim == 3 && b->ndim == 2) {
      int64_t K = a->shape[2], N = gy->shape[2];
      gx[1] = cr_matmul(ctx, mT(ctx, cr_reshape(ctx, a, CR_SHAPE(-1, K))),
                        cr_reshape(ctx, gy, CR_SHAPE(-1, N)));
    } else {
      gx[1] = cr_matmul(ctx, mT(ctx, a), gy);
    }
  }
  return cr_ctx_status(ctx);
}

/* gc = gy summed to c's shape;  ga = gy @ b^T;  gb = a^T @ gy */
static cr_status addmm_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_tensor *c = nd->in[0], *a = nd->in[1], *b = nd->in[2];
  if (c->requires_grad)
    gx[0] = cr__reduce_to(ctx, gy, c);
  if (a->requires_grad)
    gx[1] = cr_matmul(ctx, gy, mT(ctx, b));
  if (b->requires_grad)
    gx[2] = cr_matmul(ctx, mT(ctx, a), gy);
  return cr_ctx_status(ctx);
}
