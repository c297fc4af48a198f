/* fused.c — a chain of elementwise ops as one node (chainrule/fused.h).
 *
 * Forward: y = op_m(... op_1(in) ...), each op over a chunk of CHUNK
 * elements of one row at a time, the intermediates in a stack buffer but
 * for the results the VJP reads (cr__fused_plan: sigmoid, tanh, ...),
 * which go to buffers the node keeps.  VJP: per chunk, the other values
 * it needs recomputed (one-flop ops), then every op's own VJP terms, last
 * op first (fused_kernels.inc):
 *   g_in = (d y / d in)^T g_y   by the chain rule through the chain.
 * Rows are the result's last dim; a large tensor's rows split across
 * threads, each element on one thread, so the bits do not depend on the
 * thread count. */
#include "fused_impl.h"

#define CHUNK 128 /* elements per pass of the chain: its slots stay in L1 */

#define T float
#define SFX _f
#include "fused_kernels.inc"
#undef T
#undef SFX
#define T double
#define SFX _d
#include "fused_kernels.inc"
#undef T
#undef SFX

/* what a node keeps: its chain, planned, and the saved ops' values */
typedef struct {
  fused_prog *p;
  void *saved[CR_FUSED_MAX_OPS]; /* [numel] each where p->ops[j].saved (the last: y's data) */
} fused_node;

/* ---- running a chain over rows */

/* one tensor seen as rows of its last dim */
typedef struct {
  char *data;
  const int64_t *shape, *stride;
  int ndim;
} rows_of;

static rows_of rows_view(const cr_tensor *t) {
  return (rows_of){t->data, t->shape, t->stride, t->ndim};
}

/* element offset of row r (an index over every dim but the last; r is
 * below their product, so the first dim takes r whole: no division for a
 * matrix) */
static int64_t row_offset(const rows_of *t, int64_t r) {
  int64_t off = 0;
  for (int d = t->ndim - 2; d > 0; d--) {
    off += (r % t->shape[d]) * t->stride[d];
    r /= t->shape[d];
  }
  return t->ndim > 1 ? off + r * t->stride[0] : off;
}

typedef struct {
  const fused_prog *p;
  bool f32, backward;
  int64_t rows, inner, parts;
  uint64_t compute;                  /* the ops (bit j) to run; the others are saved or unused */
  void *const *saved;                /* op j's values where saved (NULL: nothing saved) */
  rows_of in[CR_FUSED_MAX_INPUTS];   /* per input tensor */
  rows_of out;                       /* forward: y; backward: gy */
  rows_of grad[CR_FUSED_MAX_INPUTS]; /* backward: each input's gradient (data NULL: none) */
  bool fresh[CR_FUSED_MAX_INPUTS];   /* its buffer is overwritten by the first term */
  int8_t canon[SLOTS];               /* the slot whose adjoint a slot shares */
} fused_job;

/* Row r of t: its first element and its stride along the row. */
typedef struct {
  char *at;
  int64_t s;
} row_ptr;

static row_ptr row_of(const rows_of *t, int64_t r, int es) {
  if (!t->data)
    return (row_ptr){NULL, 0};
  return (row_ptr){t->data + row_offset(t, r) * es, t->stride[t->ndim - 1]};
}

/* the elements [c0, c0 + n) of a row as a unit-stride pointer: the row's
 * own memory where it is dense, else gathered into buf */
static void *chunk_at(row_ptr row, int64_t c0, int64_t n, int es, void *buf, bool gather) {
  char *base = row.at + c0 * row.s * es;
  if (row.s == 1 || n == 1)
    return base;
  for (int64_t i = 0; gather && i < n; i++)
    memcpy((char *)buf + i * es, base + i * row.s * es, (size_t)es);
  return buf;
}

static void chunk_scatter(row_ptr row, int64_t c0, int64_t n, int es, const void *buf) {
  char *base = row.at + c0 * row.s * es;
  if (row.s == 1 || n == 1)
    return;
  for (int64_t i = 0; i < n; i++)
    memcpy(base + i * row.s * es, (const char *)buf + i * es, (size_t)es);
}

/* Ask for the first elements of a dense row ahead of their use (write: for
 * a gradient the pass adds to).  A step's saved values, inputs and input
 * gradients were written long before its VJP reads them, so they come from
 * L3 or memory; rows of blocks are too short and far apart for the
 * hardware's stream prefetch to see (a GRU at 64x128x32x64: the VJP took
 * 2.7x longer per step than with the step's data in cache). */
static void prefetch_row(const char *at, int64_t s, int64_t n, int es, bool write) {
  if (!at || s != 1)
    return;
  const int64_t bytes = (n < 2 * CHUNK ? n : 2 * CHUNK) * es;
  for (int64_t b = 0; b < bytes; b += 64) {
    if (write)
      __builtin_prefetch(at + b, 1);
    else
      __builtin_prefetch(at + b, 0);
  }
}

/* every row the pass reads at row r (the next one's, while this one runs) */
static void prefetch_next_row(const fused_job *j, int64_t r) {
  const fused_prog *p = j->p;
  const int es = j->f32 ? 4 : 8;
  for (int k = 0; k < p->n_in; k++) {
    const int t = p->tensor_of[k];
    const int64_t off = p->block_of[k] * j->inner;
    if (!j->backward || (p->need >> k & 1)) {
      const row_ptr in = row_of(&j->in[t], r, es);
      prefetch_row(in.at + off * es, in.s, j->inner, es, false);
    }
    if (j->backward && j->canon[k] == k) {
      const row_ptr g = row_of(&j->grad[t], r, es);
      prefetch_row(g.at ? g.at + off * es : NULL, g.s, j->inner, es, true);
    }
  }
  if (!j->backward)
    return;
  for (int s = 0; j->saved && s < p->n_ops; s++)
    prefetch_row(j->saved[s] ? (const char *)j->saved[s] + r * j->inner * es : NULL, 1, j->inner,
                 es, false);
  const row_ptr gy = row_of(&j->out, r, es);
  prefetch_row(gy.at, gy.s, j->inner, es, false);
}

static void run_rows(const fused_job *j, int64_t r0, int64_t r1) {
  const fused_prog *p = j->p;
  const int nv = p->n_in + p->n_ops, es = j->f32 ? 4 : 8;
  _Alignas(64) char vbuf[SLOTS][CHUNK * 8], gbuf[SLOTS][CHUNK * 8];
  void *v[SLOTS], *g[SLOTS];
  bool set[SLOTS];
  row_ptr in[CR_FUSED_MAX_INPUTS], grad[CR_FUSED_MAX_INPUTS], out;
  for (int64_t r = r0; r < r1; r++) {
    for (int k = 0; k < p->n_tensors; k++) { /* each tensor's row, once */
      in[k] = row_of(&j->in[k], r, es);
      grad[k] = row_of(&j->grad[k], r, es);
    }
    out = row_of(&j->out, r, es);
    if (r + 1 < r1)
      prefetch_next_row(j, r + 1);
    for (int64_t c0 = 0; c0 < j->inner; c0 += CHUNK) {
      const int64_t n = j->inner - c0 < CHUNK ? j->inner - c0 : CHUNK, at = r * j->inner + c0;
      for (int k = 0; k < p->n_in; k++) /* the VJP reads only the inputs it needs */
        v[k] = !j->backward || (p->need >> k & 1)
                   ? chunk_at(in[p->tensor_of[k]], p->block_of[k] * j->inner + c0, n, es, vbuf[k],
                              true)
                   : vbuf[k];
      for (int s = p->n_in; s < nv; s++) {
        void *kept = j->saved ? j->saved[s - p->n_in] : NULL;
        v[s] = kept ? (char *)kept + at * es : vbuf[s];
      }
      if (!j->backward) /* the result straight into y (contiguous) */
        v[nv - 1] = out.at + c0 * es;
      if (j->f32)
        fused_forward_f(p, (float *const *)v, j->compute, n);
      else
        fused_forward_d(p, (double *const *)v, j->compute, n);
      if (!j->backward)
        continue;
      for (int s = 0; s < nv; s++) {
        g[s] = gbuf[s];
        set[s] = false;
      }
      g[nv - 1] = chunk_at(out, c0, n, es, gbuf[nv - 1], true);
      set[nv - 1] = true;
      for (int k = 0; k < p->n_in; k++)
        if (grad[p->tensor_of[k]].at && j->canon[k] == k) {
          set[k] = !j->fresh[p->tensor_of[k]];
          g[k] = chunk_at(grad[p->tensor_of[k]], p->block_of[k] * j->inner + c0, n, es, gbuf[k],
                          set[k]);
        }
      if (j->f32)
        fused_backward_f(p, (float *const *)v, (float *const *)g, set, j->canon, n);
      else
        fused_backward_d(p, (double *const *)v, (double *const *)g, set, j->canon, n);
      for (int k = 0; k < p->n_in; k++)
        if (grad[p->tensor_of[k]].at && j->canon[k] == k) {
          if (!set[k]) /* no op passed anything back to it: a fresh buffer reads 0 */
            memset(g[k], 0, (size_t)(n * es));
          chunk_scatter(grad[p->tensor_of[k]], p->block_of[k] * j->inner + c0, n, es, g[k]);
        }
    }
  }
}

/* Elements per thread below which a chain runs on one thread (as the
 * unfused maps: ops/common.c). */
#define FUSED_PER_THREAD 4096

static void rows_part(void *arg, int64_t part) {
  const fused_job *j = arg;
  run_rows(j, j->rows * part / j->parts, j->rows * (part + 1) / j->parts);
}

static void run_job(fused_job *j) {
  const int64_t numel = j->rows * j->inner;
  j->parts = numel < 2 * FUSED_PER_THREAD ? 1 : cr__parallel_threads();
  if (j->parts > j->rows)
    j->parts = j->rows;
  if (j->parts <= 1)
    run_rows(j, 0, j->rows);
  else
    cr__parallel_for(j->parts, rows_part, j);
}

static void fused_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status fused_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);
static bool takes_view(const cr_node *nd, int k) { return (void)nd, (void)k, true; }

/* the inputs in the chain's need (cr__fused_plan), and the result when it is
 * a saved op's */
static uint32_t fused_reads(const cr_node *nd) {
  const fused_prog *p = ((const fused_node *)nd->saved)->p;
  uint32_t r = 0;
  for (int k = 0; k < p->n_in; k++)
    if (p->need >> k & 1)
      r |= CR__READS_IN(p->tensor_of[k]);
  return p->ops[p->n_ops - 1].saved ? r | CR__READS_OUT : r;
}

/* the saved results but the last (that is y) */
static size_t fused_saved_bytes(const cr_node *nd) {
  const fused_node *kept = nd->saved;
  size_t n = 0;
  for (int j = 0; j + 1 < kept->p->n_ops; j++)
    if (kept->saved[j])
      n += (size_t)nd->out->numel * cr_dtype_size(nd->out->dtype);
  return n;
}

const cr_op_desc cr__op_fused = {.name = "fused",
                                 .n_inputs = -1,
                                 .vjp = fused_vjp,
                                 .vjp_graph = fused_vjp_graph,
                                 .reads = CR__READS_ALL & ~CR__READS_OUT,
                                 .reads_of = fused_reads,
                                 .saved_bytes = fused_saved_bytes,
                                 .takes_view_grad = takes_view};

static void job_init(fused_job *j, const fused_prog *p, cr_tensor *const *in, const cr_tensor *y) {
  j->p = p; /* every field the run reads, and no more (a step's worth of these) */
  j->f32 = y->dtype == CR_F32;
  j->backward = false;
  j->inner = y->shape[y->ndim - 1];
  j->rows = 1; /* the product of the other dims (no division: a step's worth of these) */
  for (int d = 0; d + 1 < y->ndim; d++)
    j->rows *= y->shape[d];
  j->saved = NULL;
  for (int k = 0; k < p->n_tensors; k++) {
    j->in[k] = rows_view(in[k]);
    j->grad[k].data = NULL;
    j->fresh[k] = false;
  }
  for (int s = 0; s < SLOTS; s++)
    j->canon[s] = (int8_t)s;
  bool repeated = false; /* an input tensor given twice (else every slot is its own) */
  for (int k = 1; k < p->n_tensors && !repeated; k++)
    for (int i = 0; i < k; i++)
      repeated |= in[i] == in[k];
  for (int k = 0; repeated && k < p->n_in; k++) /* a block of an input given twice */
    for (int i = 0; i < k; i++)
      if (in[p->tensor_of[i]] == in[p->tensor_of[k]] && p->block_of[i] == p->block_of[k] &&
          j->canon[k] == k)
        j->canon[k] = (int8_t)i;
}

/* The result's shape (the inputs' but for the last dim: their width over
 * their blocks), or false with a message naming the offending input. */
static bool result_shape(cr_ctx *ctx, const fused_prog *p, cr_tensor *const *in, int64_t *shape) {
  int w = 0; /* the input that sets the width: one of one block if any */
  for (int k = 1; k < p->n_tensors; k++)
    if (p->blocks[w] > 1 && p->blocks[k] == 1)
      w = k;
  const int nd = in[w]->ndim;
  const int64_t W = in[w]->shape[nd - 1] / p->blocks[w];
  memcpy(shape, in[w]->shape, (size_t)nd * sizeof *shape);
  shape[nd - 1] = W;
  for (int k = 0; k < p->n_tensors; k++) {
    const cr_tensor *t = in[k];
    bool ok = t->ndim == nd && t->shape[nd - 1] == p->blocks[k] * W;
    for (int d = 0; ok && d < nd - 1; d++)
      ok = t->shape[d] == shape[d];
    if (!ok) {
      char want[96];
      int64_t ws[CR_MAX_DIMS];
      memcpy(ws, shape, (size_t)nd * sizeof *ws);
      ws[nd - 1] = p->blocks[k] * W;
      cr_shape_str(want, sizeof want, nd, ws);
      if (p->blocks[k] > 1)
        snprintf(want + strlen(want), sizeof want - strlen(want), " (%d column blocks of %lld)",
                 p->blocks[k], (long long)W);
      cr__fail(ctx, CR_ERR_SHAPE,
               "fused: input %d %s and input %d %s: input %d should be %s (a fused chain does "
               "not broadcast)",
               k, cr__shp(t), w, cr__shp(in[w]), k, want);
      return false;
    }
  }
  return true;
}

bool cr_set_fusion(cr_ctx *ctx, bool on) {
  if (!ctx)
    return false;
  const bool was = !ctx->unfused;
  ctx->unfused = !on;
  return was;
}

bool cr_fusion_enabled(const cr_ctx *ctx) { return ctx && !ctx->unfused; }

/* the chain as its ops, each its own node */
static bool input_slots(cr_ctx *ctx, const fused_prog *p, cr_tensor *const *in, cr_tensor **val) {
  for (int s = 0; s < p->n_in; s += p->blocks[p->tensor_of[s]]) {
    cr_tensor *t = in[p->tensor_of[s]];
    if (p->blocks[p->tensor_of[s]] == 1)
      val[s] = t;
    else if (cr_chunk(ctx, t, p->blocks[p->tensor_of[s]], t->ndim - 1, val + s) != CR_OK)
      return false;
  }
  return true;
}

static cr_tensor *run_as_ops(cr_ctx *ctx, const fused_prog *p, cr_tensor *const *in) {
  cr_tensor *val[SLOTS];
  if (!input_slots(ctx, p, in, val)) /* column blocks as views */
    return NULL;
  for (int i = 0; i < p->n_ops; i++) {
    const fused_step *s = &p->ops[i];
    val[p->n_in + i] = s->binary ? cr__binary_kind(ctx, s->kind, val[s->x], val[s->y])
                                 : cr__unary_kind(ctx, s->kind, val[s->x], s->a, s->b);
  }
  return val[p->n_in + p->n_ops - 1];
}

cr_tensor *cr_fused_apply(cr_ctx *ctx, const cr_fused *f, cr_tensor *const *in) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  if (!f || f->err[0])
    return cr__fail(ctx, CR_ERR_ARG, "fused: %s", cr_fused_error(f));
  const fused_prog *p = &f->prog;
  if (p->n_ops == 0)
    return cr__fail(ctx, CR_ERR_ARG, "fused: the chain has no op (cr_fused_op)");
  if (!in)
    return cr__fail(ctx, CR_ERR_ARG, "fused: no inputs (NULL)");
  int64_t shape[CR_MAX_DIMS];
  if (!cr__check_inputs(ctx, "fused", p->n_tensors, in) || !result_shape(ctx, p, in, shape))
    return NULL;
  for (int i = 0; i < p->n_ops; i++) /* the scalars, as each op checks its own */
    if (!p->ops[i].binary &&
        !cr__unary_scalars_ok(ctx, p->ops[i].kind, in[0], p->ops[i].a, p->ops[i].b))
      return NULL;
  if (ctx->unfused || ctx->anomaly) /* anomaly mode names the very op that overflowed */
    return run_as_ops(ctx, p, in);
  cr_tensor *y = cr__new(ctx, in[0]->dtype, in[0]->ndim, shape);
  if (!y)
    return NULL;
  fused_node *kept = NULL;
  if (cr__will_record(ctx, p->n_tensors, in)) { /* the VJP's own copy: f may change or go */
    /* one allocation, in y's arena: the node, its copy of the chain, and
     * the saved ops' values but y's (each on a 64-byte boundary) */
    const size_t bytes = offsetof(fused_prog, ops) + (size_t)p->n_ops * sizeof(fused_step);
    const size_t head = (sizeof *kept + 63) & ~(size_t)63, prog = (bytes + 63) & ~(size_t)63;
    const size_t each = ((size_t)y->numel * cr_dtype_size(y->dtype) + 63) & ~(size_t)63;
    int n_saved = 0;
    for (int j = 0; j + 1 < p->n_ops; j++)
      n_saved += p->ops[j].saved;
    char *mem = cr__alloc_for(ctx, y, head + prog + (size_t)n_saved * each);
    if (!mem)
      return NULL;
    kept = (fused_node *)mem;
    kept->p = (fused_prog *)(mem + head);
    memcpy(kept->p, p, bytes); /* planned as it was built */
    char *next = mem + head + prog;
    for (int j = 0; j + 1 < p->n_ops; j++) {
      kept->saved[j] = p->ops[j].saved ? next : NULL;
      next += p->ops[j].saved ? each : 0;
    }
    kept->saved[p->n_ops - 1] = p->ops[p->n_ops - 1].saved ? y->data : NULL; /* y itself */
  }
  fused_job j;
  job_init(&j, p, in, y);
  j.out = rows_view(y);
  j.compute = ~0ull;
  j.saved = kept ? kept->saved : NULL;
  run_job(&j);
  cr_node *nd = cr__record(ctx, &cr__op_fused, y, p->n_tensors, in);
  if (nd)
    nd->saved = kept;
  return ctx->status == CR_OK ? y : NULL;
}

/* whether input k of nd is not an input given before it */
static bool first_use(const cr_node *nd, int k) {
  for (int i = 0; i < k; i++)
    if (nd->in[i] == nd->in[k])
      return false;
  return true;
}

static void fused_vjp(cr_ctx *ctx, cr_node *nd) {
  const fused_node *kept = nd->saved;
  const fused_prog *p = kept->p;
  cr_tensor *y = nd->out;
  fused_job j;
  job_init(&j, p, nd->in, y);
  j.backward = true;
  j.compute = cr__fused_recomputed(p);
  j.saved = kept->saved;
  j.out = rows_view(y->grad);
  for (int k = 0; k < p->n_tensors; k++) {
    if (!first_use(nd, k))
      continue; /* its slots share the first one's adjoints (canon) */
    cr_tensor *g = cr__grad_acc_fresh(ctx, nd->in[k], &j.fresh[k]);
    if (ctx->status != CR_OK)
      return;
    if (g)
      j.grad[k] = rows_view(g);
  }
  run_job(&j);
}

/* The same with ops, differentiable again: the chain is rebuilt as its
 * ops, each recorded (so each has its node), then each op's own graph VJP
 * runs, last op first, and the terms for a slot are summed.  The rebuilt
 * values are what the VJP has: a saved op's kept values (recorded as that
 * op of its operand), a recomputed op computed again from needed values,
 * and an op whose values no VJP reads a node over a buffer marked
 * released — the inputs outside the plan may be gone (released). */
static cr_status fused_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const fused_node *kept = nd->saved;
  const fused_prog *p = kept->p;
  const int nv = p->n_in + p->n_ops;
  const cr_tensor *y = nd->out;
  cr_tensor *val[SLOTS] = {0}, *adj[SLOTS] = {0};
  const bool was = cr_set_grad_enabled(ctx, true);
  /* column blocks as views (of an input the forward released too: views
   * read nothing, and the plan reads no slot of a released input) */
  bool released[CR_FUSED_MAX_INPUTS];
  for (int k = 0; k < p->n_tensors; k++) {
    released[k] = nd->in[k]->released;
    nd->in[k]->released = false;
  }
  input_slots(ctx, p, nd->in, val);
  for (int k = 0; k < p->n_tensors; k++)
    nd->in[k]->released = released[k];
  for (int s = 0; s < p->n_in; s++)
    if (val[s] && val[s] != nd->in[p->tensor_of[s]])
      val[s]->released = released[p->tensor_of[s]];
  for (int i = 0; i < p->n_ops && ctx->status == CR_OK; i++) {
    const fused_step *s = &p->ops[i];
    cr_tensor *a = val[s->x], *b = s->binary ? val[s->y] : NULL;
    if ((p->need >> (p->n_in + i) & 1) && !s->saved) {
      val[p->n_in + i] = s->binary ? cr__binary_kind(ctx, s->kind, a, b)
                                   : cr__unary_kind(ctx, s->kind, a, s->a, s->b);
      continue;
    }
    cr_tensor *t = cr__new(ctx, y->dtype, y->ndim, y->shape);
    if (!t)
      break;
    if (s->saved)
      memcpy(t->data, kept->saved[i], (size_t)y->numel * cr_dtype_size(y->dtype));
    else
      t->released = true; /* nothing reads it */
    val[p->n_in + i] = s->binary ? cr__binary_as(ctx, s->kind, a, b, t)
                                 : cr__unary_as(ctx, s->kind, a, s->a, s->b, t);
  }
  cr_set_grad_enabled(ctx, was);
  adj[nv - 1] = gy;
  int canon[SLOTS]; /* an input given twice collects its terms at its first slots */
  for (int k = 0; k < nv; k++) {
    canon[k] = k;
    for (int i = 0; i < k && k < p->n_in; i++)
      if (nd->in[p->tensor_of[i]] == nd->in[p->tensor_of[k]] && p->block_of[i] == p->block_of[k] &&
          canon[k] == k)
        canon[k] = i;
  }
  for (int i = p->n_ops - 1; i >= 0 && ctx->status == CR_OK; i--) {
    const int sy = p->n_in + i;
    cr_node *op = val[sy] ? val[sy]->node : NULL;
    if (!adj[sy] || !op)
      continue;
    cr_tensor *terms[2] = {0};
    if (op->op->vjp_graph(ctx, op, adj[sy], terms) != CR_OK)
      break;
    for (int k = 0; k < op->n_in; k++) {
      const int to = canon[k == 0 ? p->ops[i].x : p->ops[i].y];
      if (terms[k])
        adj[to] = adj[to] ? cr_add(ctx, adj[to], terms[k]) : terms[k];
    }
  }
  for (int s = 0; s < p->n_in && ctx->status == CR_OK; s += p->blocks[p->tensor_of[s]]) {
    const int k = p->tensor_of[s], nb = p->blocks[k];
    gx[k] = NULL;
    if (!first_use(nd, k) || !nd->in[k]->requires_grad)
      continue;
    bool any = false;
    for (int b = 0; b < nb; b++)
      any |= adj[s + b] != NULL;
    if (!any || nb == 1) {
      gx[k] = adj[s];
      continue;
    }
    cr_tensor *parts[CR_FUSED_MAX_INPUTS]; /* the blocks' terms side by side, zeros where none */
    for (int b = 0; b < nb; b++)
      parts[b] = adj[s + b] ? adj[s + b] : cr_zeros(ctx, y->dtype, y->ndim, y->shape);
    gx[k] = cr_concat(ctx, parts, nb, y->ndim - 1);
  }
  return cr_ctx_status(ctx);
}
