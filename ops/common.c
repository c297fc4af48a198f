/* common.c — machinery every op uses: recording nodes, the anomaly check
 * of results, gradient buffers and their plug-in tricks, queued
 * accumulations, broadcasting and strided iteration. */
#include "op.h"

/* ---- recording */

bool cr__will_record(const cr_ctx *ctx, int n_in, cr_tensor *const *in) {
  if (!ctx->grad_enabled)
    return false;
  for (int i = 0; i < n_in; i++)
    if (in[i]->requires_grad)
      return true;
  return false;
}

/* The first non-finite element of t (row-major), or -1. */
static int64_t first_non_finite(const cr_tensor *t, double *value) {
  if (cr_all_finite(t))
    return -1;
  for (int64_t i = 0; i < t->numel; i++) {
    double v = cr_get_flat(t, i);
    if (!isfinite(v)) {
      *value = v;
      return i;
    }
  }
  return -1;
}

static const char *kind_of(double v) { return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

/* "[2,3] 'x', [3]" — the shapes (and names) of n tensors, into buf. */
static const char *list_shapes(char *buf, size_t size, int n, cr_tensor *const *in) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && k < size; i++)
    k +=
        (size_t)snprintf(buf + k, size - k, "%s%s", i ? ", " : "", in[i] ? cr__shp(in[i]) : "NULL");
  return buf;
}

bool cr__anomaly_forward(cr_ctx *ctx, const char *op, const cr_tensor *out, int n_in,
                         cr_tensor *const *in) {
  double v = 0;
  int64_t at = first_non_finite(out, &v);
  if (at < 0)
    return true;
  char shapes[256];
  list_shapes(shapes, sizeof shapes, n_in, in);
  if (ctx->vjp_node) {
    const cr_node *nd = ctx->vjp_node;
    char fw[256];
    list_shapes(fw, sizeof fw, nd->n_in, nd->in);
    cr__fail(ctx, CR_ERR_NUMERIC,
             "anomaly: VJP of %s %s produced %s (element %lld of %s %s "
             "inside it, computed from %s)",
             nd->name, fw, kind_of(v), (long long)at, op, cr__shape_only(out), shapes);
  } else {
    cr__fail(ctx, CR_ERR_NUMERIC,
             "anomaly: forward op %s %s produced %s in its result %s "
             "(element %lld)%s%s%s",
             op, shapes, kind_of(v), cr__shp(out), (long long)at, ctx->scope ? " in scope '" : "",
             ctx->scope ? ctx->scope : "", ctx->scope ? "'" : "");
  }
  return false;
}

/* Whether out is a view of an input that is itself an op's result: its
 * values are that input's, checked when it was made (ops never write in
 * place), so anomaly mode need not scan them again for every slice of a
 * large tensor.  A view of a leaf is checked: leaves are checked nowhere
 * else. */
static bool view_of_a_result(const cr_tensor *out, int n_in, cr_tensor *const *in) {
  for (int k = 0; k < n_in; k++)
    if (in[k] && in[k]->data && in[k]->op_result && cr__data_inside(out, in[k]))
      return true;
  return false;
}

cr_node *cr__record(cr_ctx *ctx, const cr_op_desc *op, cr_tensor *out, int n_in,
                    cr_tensor *const *in) {
  if (!out)
    return NULL;
  out->op_result = true;
  if (ctx->anomaly && !view_of_a_result(out, n_in, in) &&
      !cr__anomaly_forward(ctx, op->name, out, n_in, in))
    return NULL;
  if (!cr__will_record(ctx, n_in, in))
    return NULL;
  cr_node *nd = cr__alloc(ctx, sizeof *nd);
  cr_tensor **ins = cr__alloc(ctx, (size_t)n_in * sizeof *ins);
  if (!nd || !ins)
    return NULL;
  memset(nd, 0, sizeof *nd);
  memcpy(ins, in, (size_t)n_in * sizeof *ins);
  nd->op = op;
  nd->name = op->name;
  nd->out = out;
  nd->n_in = n_in;
  nd->in = ins;
  nd->seq = ++ctx->node_seq;
  nd->scope = ctx->scope;
  out->node = nd;
  out->requires_grad = true;
  ctx->nodes++;
  return nd;
}

/* ---- gradient buffers of the kernel path */

bool cr__data_inside(const cr_tensor *view, const cr_tensor *buf) {
  const char *p = view->data, *lo = buf->data;
  return p >= lo && p < lo + (size_t)buf->numel * cr_dtype_size(buf->dtype);
}

bool cr__may_alias(const cr_ctx *ctx, const cr_tensor *t) {
  (void)ctx; /* anomaly mode aliases too: it must not change a single bit */
  return !t->hooks && !t->retain_grad;
}

bool cr__consumers_take_views(const cr_ctx *ctx, const cr_tensor *t) {
  return t->view_pass == ctx->pass && t->view_ok && cr__may_alias(ctx, t);
}

bool cr__sole_use(const cr_ctx *ctx, const cr_tensor *t) {
  return t->view_pass == ctx->pass && t->uses == 1;
}

void cr__grad_set(cr_ctx *ctx, cr_tensor *t, cr_tensor *buf, bool is_view) {
  t->grad = buf;
  t->grad_is_view = is_view;
  t->grad_pass = ctx->pass;
}

/* A leaf with hooks collects this pass's contribution apart (pgrad), so
 * the hooks can see and rewrite it before it joins the accumulated grad
 * (the engine does that when the pass ends). */
static cr_tensor *hooked_leaf_buffer(cr_ctx *ctx, cr_tensor *t) {
  if (t->pgrad_pass != ctx->pass || !t->pgrad) {
    cr_tensor *g = cr__new_for(ctx, t, t->dtype, t->ndim, t->shape);
    if (!g)
      return NULL;
    memset(g->data, 0, (size_t)g->numel * cr_dtype_size(g->dtype));
    t->pgrad = g;
    t->pgrad_pass = ctx->pass;
  }
  return t->pgrad;
}

/* ---- recycled gradient buffers: an intermediate's gradient is dead once
 * its node's VJP has run (unless it is retained or hooked: those are
 * shown), so its buffer serves the next tensor of the same size — full
 * BPTT then holds gradients for a few steps, not for all T. */

void *cr__pool_take(cr_ctx *ctx, bool scratch, size_t bytes) {
  cr__pool *pl = &ctx->pools[scratch];
  for (int i = 0; i < pl->n; i++)
    if (pl->size[i].bytes == bytes && pl->size[i].head) {
      void *p = pl->size[i].head;
      memcpy(&pl->size[i].head, p, sizeof(void *));
      return p;
    }
  return NULL;
}

void cr__pool_give(cr_ctx *ctx, bool scratch, void *data, size_t bytes) {
  cr__pool *pl = &ctx->pools[scratch];
  if (bytes < sizeof(void *))
    return;
  int i = 0;
  while (i < pl->n && pl->size[i].bytes != bytes)
    i++;
  if (i == pl->n) {
    if (pl->n == (int)(sizeof pl->size / sizeof pl->size[0]))
      return; /* too many sizes: let this one go */
    pl->size[pl->n].bytes = bytes;
    pl->size[pl->n++].head = NULL;
  }
  memcpy(data, &pl->size[i].head, sizeof(void *));
  pl->size[i].head = data;
}

void cr__grad_release(cr_ctx *ctx, cr_tensor *t) {
  cr_tensor *g = t->grad;
  if (!t->node || t->persistent || t->retain_grad || t->hooks || !g || t->grad_is_view ||
      (g->scratch && !ctx->in_region) || t->grad_pass != ctx->pass || ctx->anomaly)
    return;
  cr__pool_give(ctx, g->scratch, g->data, (size_t)g->numel * cr_dtype_size(g->dtype));
  t->grad = NULL;
}

/* A contiguous gradient buffer for t: a recycled one if there is one. */
static cr_tensor *grad_buffer(cr_ctx *ctx, cr_tensor *t) {
  void *data =
      cr__pool_take(ctx, t->scratch && ctx->in_region, (size_t)t->numel * cr_dtype_size(t->dtype));
  if (!data)
    return cr__new_for(ctx, t, t->dtype, t->ndim, t->shape);
  int64_t stride[CR_MAX_DIMS];
  cr__contig_strides(t->ndim, t->shape, stride);
  return cr__view_for(ctx, t, t, t->ndim, t->shape, stride, data);
}

cr_tensor *cr__grad_acc_fresh(cr_ctx *ctx, cr_tensor *t, bool *fresh) {
  *fresh = false;
  if (!t->requires_grad)
    return NULL;
  if (!t->node && t->hooks)
    return hooked_leaf_buffer(ctx, t);
  if (t->node && t->grad && t->grad_pass == ctx->pass) {
    cr__grad_settle_rows(ctx, t); /* read or added to whole from now on */
    return t->grad;               /* set up earlier in this pass: accumulate */
  }
  if (t->node && t->node->op->grad_alias && cr__may_alias(ctx, t)) {
    cr_tensor *g = t->node->op->grad_alias(ctx, t->node, fresh);
    if (g || ctx->status != CR_OK)
      return g;
  }
  if (t->grad_is_view) { /* a view in an earlier pass; now it needs its own buffer */
    t->grad = NULL;
    t->grad_is_view = false;
  }
  bool first_use = !t->grad || (t->node && t->grad_pass != ctx->pass);
  if (!t->grad) {
    if (t->persistent)
      t->grad = cr_tensor_new(ctx, t->dtype, t->ndim, t->shape); /* zeros */
    else
      t->grad = grad_buffer(ctx, t); /* written below or by caller */
    if (!t->grad)
      return NULL;
  }
  t->grad_pass = ctx->pass;
  /* a leaf accumulates across passes; an intermediate's gradient is
   * recomputed by each pass, so its first contribution may overwrite */
  *fresh = first_use && t->node;
  if (first_use && !t->persistent && !t->node)
    cr__par_zero(t->grad->data, (size_t)t->numel * cr_dtype_size(t->dtype)); /* arena leaf */
  return t->grad;
}

static size_t row_bytes(const cr_tensor *t) {
  return (size_t)(t->numel / t->shape[0]) * cr_dtype_size(t->dtype);
}

void cr__grad_settle_rows(cr_ctx *ctx, cr_tensor *t) {
  if (!t->rows_owed || t->rows_owed_pass != ctx->pass) {
    t->rows_owed = NULL;
    return;
  }
  const size_t row = row_bytes(t);
  for (int64_t i = 0; i < t->shape[0]; i++)
    if (t->rows_owed[i])
      memset((char *)t->grad->data + i * row, 0, row);
  t->rows_owed = NULL;
}

cr_tensor *cr__grad_acc_rows(cr_ctx *ctx, cr_tensor *t, int64_t r0, int64_t r1, bool *fresh) {
  *fresh = false;
  const bool owing =
      t->rows_owed && t->rows_owed_pass == ctx->pass && t->grad && t->grad_pass == ctx->pass;
  if (!owing) {
    bool first;
    cr_tensor *g = cr__grad_acc_fresh(ctx, t, &first);
    if (!g || !first)
      return g;
    /* garbage: owed zeros row by row where the rows are dense and of 256
     * bytes or more (the map is then at most 1/256 of the buffer; a flat
     * buffer's elements are zeroed at once); anomaly mode scans whole
     * buffers: it gets them zeroed */
    t->rows_owed =
        ctx->anomaly || t->ndim < 1 || t->numel == 0 || !cr_is_contiguous(g) || row_bytes(t) < 256
            ? NULL
            : cr__alloc_for(ctx, t, (size_t)t->shape[0]);
    if (!t->rows_owed) {
      cr__par_zero(g->data, (size_t)g->numel * cr_dtype_size(g->dtype));
      return g;
    }
    memset(t->rows_owed, 1, (size_t)t->shape[0]);
    t->rows_owed_pass = ctx->pass;
  }
  bool all = true;
  for (int64_t i = r0; i < r1; i++)
    all &= t->rows_owed[i] != 0;
  const size_t row = row_bytes(t);
  for (int64_t i = r0; i < r1; i++) {
    if (!all && t->rows_owed[i])
      memset((char *)t->grad->data + i * row, 0, row);
    t->rows_owed[i] = 0;
  }
  *fresh = all && r1 > r0;
  return t->grad;
}

cr_tensor *cr__grad_acc(cr_ctx *ctx, cr_tensor *t) {
  bool fresh;
  cr_tensor *g = cr__grad_acc_fresh(ctx, t, &fresh);
  if (g && fresh)
    cr__par_zero(g->data, (size_t)g->numel * cr_dtype_size(g->dtype));
  return g;
}

/* ---- queued accumulations */

bool cr__pending_allowed(const cr_ctx *ctx) {
  (void)ctx; /* anomaly mode checks staged sums when they are added (autograd.c) */
  return true;
}

void cr__pending_add(cr_ctx *ctx, cr__pending *p) {
  p->next = ctx->pending;
  p->done = false;
  ctx->pending = p;
  bool known = ctx->n_owed < 0;
  for (int i = 0; !known && i < ctx->n_owed; i++)
    known = ctx->owed[i] == p->target;
  if (!known) {
    if (ctx->n_owed < (int)(sizeof ctx->owed / sizeof ctx->owed[0]))
      ctx->owed[ctx->n_owed++] = p->target;
    else
      ctx->n_owed = -1; /* too many targets: settle checks every node */
  }
}

static bool owed(const cr_ctx *ctx, const void *target) {
  if (!ctx->pending)
    return false;
  if (ctx->n_owed < 0)
    return true;
  for (int i = 0; i < ctx->n_owed; i++)
    if (ctx->owed[i] == target)
      return true;
  return false;
}

static void settle_target(cr_ctx *ctx, void *target) {
  for (;;) { /* each kind settles all of its entries for the target */
    cr__pending *p = ctx->pending;
    while (p && (p->done || p->target != target))
      p = p->next;
    if (!p)
      break;
    p->settle(ctx, ctx->pending, target);
    CR_ASSERT(p->done, "pending accumulation was not settled");
  }
  for (int i = 0; i < ctx->n_owed; i++) /* settled: forget the target */
    if (ctx->owed[i] == target)
      ctx->owed[i--] = ctx->owed[--ctx->n_owed];
}

bool cr__pending_owed(const cr_ctx *ctx, const cr_tensor *g) { return owed(ctx, g->data); }

void cr__pending_settle(cr_ctx *ctx, const cr_tensor *g) {
  if (owed(ctx, g->data))
    settle_target(ctx, g->data);
}

void cr__pending_settle_all(cr_ctx *ctx) {
  for (cr__pending *p = ctx->pending; p; p = p->next)
    if (!p->done)
      settle_target(ctx, p->target);
  ctx->pending = NULL;
  ctx->n_owed = 0;
}

/* ---- helpers for graph VJPs */

cr_tensor *cr__const_like(cr_ctx *ctx, const cr_tensor *x) {
  return cr__new(ctx, x->dtype, x->ndim, x->shape);
}

cr_tensor *cr__reduce_to(cr_ctx *ctx, cr_tensor *g, const cr_tensor *x) {
  if (!g)
    return NULL;
  if (g->ndim == x->ndim && memcmp(g->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) == 0)
    return g;
  return cr_sum_to(ctx, g, x->ndim, x->shape);
}

/* ---- strided iteration */

void cr__iter_init(cr__iter *it, int ndim, const int64_t *shape, int nops,
                   const int64_t *const *strides) {
  CR_ASSERT(nops >= 1 && nops <= 4 && ndim >= 1 && ndim <= CR_MAX_DIMS,
            "cr__iter_init: %d operands over %d dims", nops, ndim);
  it->nops = nops;
  /* copy, dropping size-1 dims, then merge dims contiguous for all ops */
  int nd = 0;
  int64_t shp[CR_MAX_DIMS], st[4][CR_MAX_DIMS];
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1)
      continue;
    shp[nd] = shape[d];
    for (int k = 0; k < nops; k++)
      st[k][nd] = strides[k][d];
    nd++;
  }
  if (nd == 0) {
    shp[0] = 1;
    for (int k = 0; k < nops; k++)
      st[k][0] = 0;
    nd = 1;
  }
  int m = 0; /* merged dim count */
  for (int d = 1; d < nd; d++) {
    bool merge = true;
    for (int k = 0; k < nops; k++)
      merge &= st[k][m] == st[k][d] * shp[d];
    if (merge) {
      shp[m] *= shp[d];
      for (int k = 0; k < nops; k++)
        st[k][m] = st[k][d];
    } else {
      m++;
      shp[m] = shp[d];
      for (int k = 0; k < nops; k++)
        st[k][m] = st[k][d];
    }
  }
  nd = m + 1;
  it->inner = shp[nd - 1];
  for (int k = 0; k < nops; k++) {
    it->istr[k] = st[k][nd - 1];
    it->off[k] = 0;
  }
  it->ndim = nd - 1;
  it->rows = 1;
  for (int d = 0; d < it->ndim; d++) {
    it->shape[d] = shp[d];
    it->idx[d] = 0;
    it->rows *= shp[d];
    for (int k = 0; k < nops; k++)
      it->stride[k][d] = st[k][d];
  }
}

void cr__iter_next(cr__iter *it) {
  for (int d = it->ndim - 1; d >= 0; d--) {
    if (++it->idx[d] < it->shape[d]) {
      for (int k = 0; k < it->nops; k++)
        it->off[k] += it->stride[k][d];
      return;
    }
    it->idx[d] = 0;
    for (int k = 0; k < it->nops; k++)
      it->off[k] -= it->stride[k][d] * (it->shape[d] - 1);
  }
}

/* Elements per thread below which a map runs on one thread: a job costs
 * about a microsecond of wake-up and join (the workers spin between the
 * steps of a layer).  Measured (Zen 5, 2 threads, bench-layer): 4096
 * threads the [32, 512] gate maps of a hidden-512 layer, and gave
 * 1.68-1.87x over one thread there against 1.40-1.73x with 16384. */
#define CR__MAP_PER_THREAD 4096

typedef struct {
  const cr__iter *whole;
  int64_t parts;
  cr__iter_body body;
  void *arg;
} iter_job;

/* rows [r0, r1) of the whole, or columns [c0, c1) of its single row */
static void iter_part(void *argp, int64_t part) {
  const iter_job *j = argp;
  cr__iter it = *j->whole;
  if (it.rows >= j->parts) {
    const int64_t r0 = it.rows * part / j->parts, r1 = it.rows * (part + 1) / j->parts;
    int64_t rest = r0;
    for (int d = it.ndim - 1; d >= 0; d--) { /* the index of row r0 */
      it.idx[d] = rest % it.shape[d];
      rest /= it.shape[d];
      for (int k = 0; k < it.nops; k++)
        it.off[k] += it.idx[d] * it.stride[k][d];
    }
    it.rows = r1 - r0;
  } else { /* one row: columns in multiples of 64 */
    const int64_t blocks = (it.inner + 63) / 64;
    const int64_t c0 = blocks * part / j->parts * 64;
    const int64_t c1e = blocks * (part + 1) / j->parts * 64;
    const int64_t c1 = c1e < it.inner ? c1e : it.inner;
    if (c1 <= c0)
      return;
    for (int k = 0; k < it.nops; k++)
      it.off[k] += c0 * it.istr[k];
    it.inner = c1 - c0;
  }
  if (it.rows > 0)
    j->body(j->arg, &it);
}

void cr__iter_run(cr__iter *it, cr__iter_body body, void *arg) {
  const int64_t numel = it->rows * it->inner;
  int64_t parts = numel < 2 * CR__MAP_PER_THREAD ? 1 : cr__parallel_threads();
  if (parts > numel / CR__MAP_PER_THREAD)
    parts = numel / CR__MAP_PER_THREAD;
  if (it->rows > 1 && parts > it->rows)
    parts = it->rows;
  if (parts <= 1) { /* the common case at small sizes: no copy, no job */
    body(arg, it);
    return;
  }
  iter_job j = {it, parts, body, arg};
  cr__parallel_for(parts, iter_part, &j);
}

void cr__bcast_strides(const cr_tensor *t, int out_ndim, const int64_t *out_shape,
                       int64_t *stride) {
  int lead = out_ndim - t->ndim;
  for (int d = 0; d < out_ndim; d++) {
    int td = d - lead;
    stride[d] = (td < 0 || (t->shape[td] == 1 && out_shape[d] != 1)) ? 0 : t->stride[td];
  }
}

bool cr__bcast_shape(cr_ctx *ctx, const char *op, const cr_tensor *a, const cr_tensor *b, int *ndim,
                     int64_t *shape) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < nd; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      cr__fail(ctx, CR_ERR_SHAPE, "%s: %s and %s: dim %d (%lld vs %lld) do not broadcast", op,
               cr__shp(a), cr__shp(b), d - nd, (long long)sa, (long long)sb);
      return false;
    }
    shape[d] = sa > sb ? sa : sb;
  }
  *ndim = nd;
  return true;
}

bool cr__axis(cr_ctx *ctx, const char *op, const cr_tensor *x, int *axis) {
  int a = *axis;
  if (a < -x->ndim || a >= x->ndim) {
    cr__fail(ctx, CR_ERR_ARG, "%s: %s: axis %d out of range for %d dims", op, cr__shp(x), a,
             x->ndim);
    return false;
  }
  *axis = a < 0 ? a + x->ndim : a;
  return true;
}

/* ---- the typed kernels (common_kernels.inc) */

#define T float
#define SFX _f
#include "common_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "common_kernels.inc"
#undef T
#undef SFX

void cr__gather_2d(cr_dtype dt, const void *s, void *d, int64_t R, int64_t C, int64_t rs,
                   int64_t cs) {
  if (dt == CR_F32)
    gather_2d_f(s, d, R, C, rs, cs);
  else
    gather_2d_d(s, d, R, C, rs, cs);
}

void cr__add_dense(cr_tensor *dst, const cr_tensor *src) {
  if (dst->dtype == CR_F32)
    add_dense_f(dst->data, src->data, dst->numel);
  else
    add_dense_d(dst->data, src->data, dst->numel);
}

/* Whether strides over shape give each element its own address (no
 * stride 0 on a dim of size > 1): then a pass writing through them can
 * run in parts. */
static bool distinct(int ndim, const int64_t *shape, const int64_t *stride) {
  for (int d = 0; d < ndim; d++)
    if (shape[d] > 1 && stride[d] == 0)
      return false;
  return true;
}

/* A sum into dst's elements: in parts on several threads when dst is
 * not broadcast (each element of dst gets its one term; no reduction
 * crosses the parts) and the pass is large (cr__iter_run) */
typedef struct {
  bool f32;
  void *dst;
  const void *src;
} add_job;

static void add_part(void *arg, cr__iter *it) {
  const add_job *j = arg;
  if (j->f32)
    add_reduced_f(it, j->dst, j->src);
  else
    add_reduced_d(it, j->dst, j->src);
}

void cr__add_reduced(cr_tensor *dst, const cr_tensor *src) {
  int64_t sd[CR_MAX_DIMS];
  cr__bcast_strides(dst, src->ndim, src->shape, sd);
  const int64_t *strides[2] = {sd, src->stride};
  cr__iter it;
  cr__iter_init(&it, src->ndim, src->shape, 2, strides);
  add_job j = {dst->dtype == CR_F32, dst->data, src->data};
  if (distinct(src->ndim, src->shape, sd))
    cr__iter_run(&it, add_part, &j);
  else
    add_part(&j, &it);
}

/* dst (=|+=) src over src's shape, each through its own strides: an
 * elementwise pass, in parts on several threads when large */
typedef struct {
  cr_dtype ddt, sdt;
  void *dst;
  const void *src;
  bool add;
} move_job;

static void move_part(void *arg, cr__iter *it) {
  const move_job *j = arg;
  for (int64_t r = 0; r < it->rows; r++, cr__iter_next(it)) {
    const int64_t sd = it->istr[0], ss = it->istr[1];
    if (j->ddt == CR_F32 && j->sdt == CR_F64) {
      float *d = (float *)j->dst + it->off[0];
      const double *s = (const double *)j->src + it->off[1];
      for (int64_t i = 0; i < it->inner; i++)
        d[i * sd] = j->add ? d[i * sd] + (float)s[i * ss] : (float)s[i * ss];
    } else if (j->ddt == CR_F64 && j->sdt == CR_F32) {
      double *d = (double *)j->dst + it->off[0];
      const float *s = (const float *)j->src + it->off[1];
      for (int64_t i = 0; i < it->inner; i++)
        d[i * sd] = j->add ? d[i * sd] + (double)s[i * ss] : (double)s[i * ss];
    } else if (j->ddt == CR_F32) {
      move_row_f((float *)j->dst + it->off[0], sd, (const float *)j->src + it->off[1], ss,
                 it->inner, j->add);
    } else {
      move_row_d((double *)j->dst + it->off[0], sd, (const double *)j->src + it->off[1], ss,
                 it->inner, j->add);
    }
  }
}

void cr__move_strided(cr_dtype ddt, void *dst, const int64_t *dst_stride, cr_dtype sdt,
                      const void *src, const int64_t *src_stride, int ndim, const int64_t *shape,
                      bool add) {
  const int64_t *st[2] = {dst_stride, src_stride};
  cr__iter it;
  cr__iter_init(&it, ndim, shape, 2, st);
  move_job j = {ddt, sdt, dst, src, add};
  if (distinct(ndim, shape, dst_stride))
    cr__iter_run(&it, move_part, &j);
  else
    move_part(&j, &it);
}

void cr__copy_convert(cr_tensor *dst, const cr_tensor *src, bool add) {
  cr__move_strided(dst->dtype, dst->data, dst->stride, src->dtype, src->data, src->stride,
                   src->ndim, src->shape, add);
}

/* ---- releasing what no VJP reads */

cr__track cr__track_begin(cr_ctx *ctx) {
  ctx->tracking = true;
  return (cr__track){ctx->tracked, ctx->tensor_serial};
}

static cr_tensor *owner(cr_tensor *t) { return t->root ? t->root : t; }

/* Release what was made since tr and no VJP of a node made since reads
 * (nodes made before cannot read newer tensors; later ones see only the
 * escapes). */
static void release_since(cr_ctx *ctx, const cr__track *tr, cr_tensor *const *escapes, int n) {
  cr_tensor *since = tr->head;
  /* mark what must stay with this call's number (no reset pass: a tensor
   * made since cannot carry this number from before) */
  if (++ctx->keep_marks == 0)
    ctx->keep_marks = 1; /* 0 is every new tensor's */
  const uint32_t keep = ctx->keep_marks;
  for (cr_tensor *t = ctx->tracked; t && t != since; t = t->tracked_next) {
    const cr_node *nd = t->node;
    if (!nd || nd->out != t)
      continue;
    const uint32_t reads = cr__reads(nd);
    if (reads & CR__READS_OUT)
      owner(t)->keep_mark = keep;
    for (int k = 0; k < nd->n_in; k++)
      if (reads & CR__READS_IN(k < 30 ? k : 30))
        owner(nd->in[k])->keep_mark = keep;
  }
  for (int i = 0; i < n; i++)
    if (escapes[i])
      owner(escapes[i])->keep_mark = keep;
  /* the rest: an owner's buffer back to the pool, and its views with it */
  for (cr_tensor *t = ctx->tracked; t && t != since; t = t->tracked_next) {
    cr_tensor *o = owner(t);
    if (o->serial <= tr->serial0 || o->keep_mark == keep || o->persistent || !o->op_result ||
        o->hooks || o->retain_grad || (o->scratch && !ctx->in_region))
      continue; /* made before, needed, or not ours to release */
    if (!o->released && o == t)
      cr__pool_give(ctx, t->scratch, t->data, (size_t)t->numel * cr_dtype_size(t->dtype));
    t->released = true;
  }
}

void cr__track_release(cr_ctx *ctx, const cr__track *tr, cr_tensor *const *escapes, int n) {
  release_since(ctx, tr, escapes, n);
  ctx->tracking = false;
  ctx->tracked = tr->head;
}

cr__track cr__track_mark(const cr_ctx *ctx) {
  return (cr__track){ctx->tracked, ctx->tensor_serial};
}

void cr__track_release_step(cr_ctx *ctx, const cr__track *step, cr_tensor *const *escapes, int n) {
  release_since(ctx, step, escapes, n);
}
