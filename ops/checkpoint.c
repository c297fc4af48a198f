/* checkpoint.c — a piece of the graph kept as one node and recomputed in
 * backward (gradient checkpointing; memory-efficient BPTT).
 *
 *   checkpoint: (y_0, .., y_{n-1}) = f(closure), ys of one shape;
 *               in backward: f runs again, its graph is differentiated from
 *               the ys' gradients, and dropped.
 *
 * The forward runs f in a region (ctx.c): its whole graph lives in the
 * scratch arena and is dropped at once, keeping only f's outputs (copied
 * into one result Y [n, shape], whose rows the caller sees as views) and
 * the list of tensors from outside f that its ops read and that need
 * gradients (the node's inputs).  The VJP runs f again in a region, seeds
 * its outputs with the rows of gY, runs the VJPs of f's nodes with the
 * engine's own loop inside the same pass — contributions to outside
 * tensors (parameters, the states f started from) land in their buffers
 * exactly as an unsegmented backward would put them — and drops the region.
 * Since f builds the same ops in the same order both times, and backward
 * walks nodes in creation order, the gradients are bit-identical to those
 * of the graph f would have left had it been kept. */
#include "chainrule/rnn.h"
#include "op.h"

typedef struct {
  cr__checkpoint_fn fn;
  void *closure;
  int n_out, n_unique;
  int map[CR__CHECKPOINT_MAX_OUT]; /* output j is row map[j] of Y */
} ckpt_saved;

static void checkpoint_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status checkpoint_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_checkpoint = {.name = "checkpoint",
                                      .n_inputs = -1,
                                      .vjp = checkpoint_vjp,
                                      .vjp_graph = checkpoint_vjp_graph,
                                      /* the recompute reads every input */
                                      .reads = ~CR__READS_OUT};

/* The distinct tensors among outs (unique[0..n_unique)), and map. */
static int dedupe(int n, cr_tensor *const *outs, cr_tensor **unique, int *map) {
  int u = 0;
  for (int j = 0; j < n; j++) {
    int k = 0;
    while (k < u && unique[k] != outs[j])
      k++;
    if (k == u)
      unique[u++] = outs[j];
    map[j] = k;
  }
  return u;
}

/* Run f; its outputs checked (count, one shape and dtype) and deduplicated. */
static cr_status run_fn(cr_ctx *ctx, const ckpt_saved *sv, int expect, int *n_out,
                        cr_tensor **unique, int *map, int *n_unique) {
  cr_tensor *outs[CR__CHECKPOINT_MAX_OUT] = {0};
  int n = 0;
  cr_status st = sv->fn(ctx, sv->closure, &n, outs);
  if (st == CR_OK && ctx->status != CR_OK)
    st = ctx->status;
  if (st != CR_OK)
    return st;
  if (n < 1 || n > CR__CHECKPOINT_MAX_OUT || (expect && n != expect))
    return cr_ctx_set_error(ctx, CR_ERR_STATE,
                            "checkpoint: the segment returned %d outputs "
                            "(expected %d, at most %d)",
                            n, expect ? expect : n, CR__CHECKPOINT_MAX_OUT);
  for (int j = 0; j < n; j++)
    if (!outs[j] || outs[j]->dtype != outs[0]->dtype || outs[j]->ndim != outs[0]->ndim ||
        memcmp(outs[j]->shape, outs[0]->shape, sizeof(int64_t) * (size_t)outs[0]->ndim))
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                              "checkpoint: output %d %s differs from output "
                              "0 %s: a segment's outputs share one shape and dtype",
                              j, cr__shp(outs[j]), cr__shp(outs[0]));
  *n_out = n;
  *n_unique = dedupe(n, outs, unique, map);
  return CR_OK;
}

cr_status cr__checkpoint(cr_ctx *ctx, cr__checkpoint_fn fn, void *closure, int *n_out,
                         cr_tensor **outs) {
  if (!ctx || ctx->status != CR_OK)
    return ctx ? ctx->status : CR_ERR_ARG;
  ckpt_saved *sv = cr__alloc(ctx, sizeof *sv);
  if (!sv)
    return ctx->status;
  *sv = (ckpt_saved){fn, closure, 0, 0, {0}};
  const uint64_t serial0 = ctx->tensor_serial, seq0 = ctx->node_seq;
  cr__mark m = cr__region_begin(ctx);
  cr_tensor *unique[CR__CHECKPOINT_MAX_OUT];
  cr_status st = run_fn(ctx, sv, 0, &sv->n_out, unique, sv->map, &sv->n_unique);
  const int U = sv->n_unique;
  /* what f read from outside that needs a gradient: the node's inputs */
  cr_tensor **ins = NULL;
  int n_in = 0;
  size_t n_nodes = 0;
  cr_node **order = st == CR_OK ? cr__topo_order_after(ctx, U, unique, seq0, &n_nodes) : NULL;
  if (order) {
    size_t cap = 0;
    for (size_t i = 0; i < n_nodes; i++)
      cap += (size_t)order[i]->n_in;
    ins = cr__alloc(ctx, (cap + (size_t)U + 1) * sizeof *ins); /* scratch; kept below */
    for (size_t i = 0; ins && i < n_nodes; i++) {
      const cr_node *nd = order[i];
      for (int k = 0; k < nd->n_in; k++) {
        cr_tensor *t = nd->in[k];
        if (t->serial > serial0 || !t->requires_grad)
          continue;
        int q = 0;
        while (q < n_in && ins[q] != t)
          q++;
        if (q == n_in)
          ins[n_in++] = t;
      }
    }
    for (int u = 0; ins && u < U; u++) /* an outside tensor passed through */
      if (unique[u]->serial <= serial0 && unique[u]->requires_grad) {
        int q = 0;
        while (q < n_in && ins[q] != unique[u])
          q++;
        if (q == n_in)
          ins[n_in++] = unique[u];
      }
  }
  /* Y [U, shape]: f's outputs, kept; the rest of f's graph is dropped */
  cr_tensor *Y = NULL;
  if (st == CR_OK && ctx->status == CR_OK && ins) {
    const cr_tensor *o = unique[0];
    int64_t shape[CR_MAX_DIMS];
    shape[0] = U;
    memcpy(shape + 1, o->shape, sizeof(int64_t) * (size_t)o->ndim);
    if (o->ndim + 1 > CR_MAX_DIMS)
      cr_ctx_set_error(ctx, CR_ERR_SHAPE, "checkpoint: outputs %s have %d dims; at most %d",
                       cr__shp(o), o->ndim, CR_MAX_DIMS - 1);
    else if ((Y = cr__new_for(ctx, &(cr_tensor){.scratch = false}, o->dtype, o->ndim + 1,
                              shape))) /* main arena: outlives the region */
      for (int u = 0; u < U; u++)
        cr__gather(unique[u], (char *)Y->data + (size_t)(u * o->numel) * cr_dtype_size(o->dtype));
  }
  cr_tensor **kept = Y && n_in ? cr__alloc_main(ctx, (size_t)n_in * sizeof *kept) : NULL;
  if (kept)
    memcpy(kept, ins, (size_t)n_in * sizeof *kept);
  cr__region_end(ctx, &m, true);
  ins = kept;
  if (!Y || (n_in && !ins))
    return ctx->status ? ctx->status : st;
  if (n_in > 0 && ctx->grad_enabled) {
    cr_node *nd = cr__record(ctx, &cr__op_checkpoint, Y, n_in, ins);
    if (nd)
      nd->saved = sv;
  }
  /* the outputs, as views of Y's rows */
  for (int j = 0; j < sv->n_out && ctx->status == CR_OK; j++) {
    cr_tensor *row = cr_slice(ctx, Y, 0, sv->map[j], sv->map[j] + 1, 1);
    outs[j] = cr_reshape(ctx, row, Y->ndim - 1, Y->shape + 1);
  }
  *n_out = sv->n_out;
  return ctx->status;
}

/* f again, in a region: seeded with gY's rows, its VJPs run inside this
 * pass, then all of it dropped. */
static void checkpoint_vjp(cr_ctx *ctx, cr_node *nd) {
  const ckpt_saved *sv = nd->saved;
  const cr_tensor *gY = nd->out->grad;
  const uint64_t serial0 = ctx->tensor_serial, seq0 = ctx->node_seq;
  cr__mark m = cr__region_begin(ctx);
  bool was = cr_set_grad_enabled(ctx, true);
  cr_tensor *unique[CR__CHECKPOINT_MAX_OUT];
  int map[CR__CHECKPOINT_MAX_OUT], n_out = 0, U = 0;
  cr_status st = run_fn(ctx, sv, sv->n_out, &n_out, unique, map, &U);
  cr_set_grad_enabled(ctx, was);
  if (st == CR_OK && (U != sv->n_unique || memcmp(map, sv->map, sizeof(int) * (size_t)n_out)))
    st = cr_ctx_set_error(ctx, CR_ERR_STATE,
                          "checkpoint: the segment built other outputs when "
                          "recomputed (it must build the same ops from the same inputs)");
  /* seed: the gradient of output u is row u of gY */
  for (int u = 0; st == CR_OK && u < U; u++) {
    cr_tensor *t = unique[u];
    cr_tensor row = *gY;
    row.ndim = gY->ndim - 1;
    memcpy(row.shape, gY->shape + 1, sizeof(int64_t) * (size_t)row.ndim);
    memcpy(row.stride, gY->stride + 1, sizeof(int64_t) * (size_t)row.ndim);
    row.data = (char *)gY->data + (size_t)(u * gY->stride[0]) * cr_dtype_size(gY->dtype);
    bool fresh;
    cr_tensor *g = cr__grad_acc_fresh(ctx, t, &fresh);
    if (g)
      cr__copy_convert(g, &row, !fresh || t->serial <= serial0);
  }
  /* f's own nodes, in the engine's loop */
  size_t n = 0;
  cr_node **order = st == CR_OK ? cr__topo_order_after(ctx, U, unique, seq0, &n) : NULL;
  if (order) {
    cr__mark_view_consumers(ctx, order, n);
    cr__run_vjps(ctx, order, n);
  }
  cr__region_end(ctx, &m, true);
}

/* As ops: f again (kept: the result may be differentiated once more), and
 * the gradients of its outside inputs by a graph pass of its own. */
static cr_status checkpoint_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const ckpt_saved *sv = nd->saved;
  bool create = ctx->grad_enabled;
  bool was = cr_set_grad_enabled(ctx, true);
  cr_tensor *unique[CR__CHECKPOINT_MAX_OUT], *seeds[CR__CHECKPOINT_MAX_OUT];
  int map[CR__CHECKPOINT_MAX_OUT], n_out = 0, U = 0;
  cr_status st = run_fn(ctx, sv, sv->n_out, &n_out, unique, map, &U);
  cr_set_grad_enabled(ctx, create);
  for (int u = 0; st == CR_OK && u < U; u++)
    seeds[u] =
        cr_reshape(ctx, cr_slice(ctx, gy, 0, u, u + 1, 1), unique[u]->ndim, unique[u]->shape);
  if (st == CR_OK && ctx->status == CR_OK) {
    /* a pass of its own inside this one: keep this pass's number */
    uint32_t pass = ctx->pass;
    bool graph = ctx->graph_pass;
    cr_node *vjp_node = ctx->vjp_node;
    cr_autograd_opts o = {.create_graph = create, .zeros_for_unused = true};
    st = cr_autograd_grad(ctx, U, unique, seeds, nd->n_in, nd->in, &o, gx);
    ctx->pass = pass;
    ctx->graph_pass = graph;
    ctx->vjp_node = vjp_node;
  }
  cr_set_grad_enabled(ctx, was);
  return st != CR_OK ? st : cr_ctx_status(ctx);
}

/* ---- a chain of checkpointed segments (memory-efficient BPTT)
 *
 *   chain: state_0 = init;  for s: (outs_s, state_{s+1}) = f_s(state_s);
 *          Y = [outs_0 | outs_1 | ... | state_n]   (flattened, in order)
 *
 * One node for the whole chain: the forward keeps only Y and the states at
 * the segment boundaries (values); the VJP goes through the segments from
 * the last, each rebuilt in a region from its boundary state (a leaf of the
 * region), seeded and differentiated, its initial state's gradient carried
 * to the previous segment.  The seeds reproduce the order in which full
 * BPTT's consumers add to each boundary tensor — its output row first, then
 * the next segment's ops (then, for the very last state, as `finals_first`
 * says) — so the sums are the same bits.  The outputs share one shape; each
 * state keeps its initial state's shape (an LSTM with a projection: h [B,P],
 * c [B,H]). */

typedef struct {
  cr__chain_fn fn;
  void *closure;
  int n_seg, S;
  int64_t n_rows;
  bool finals_first;
  int64_t *row0;      /* [n_seg + 1] first output row of each segment */
  int *same;          /* [n_seg * S] out index (in its segment) that is state j, or -1 */
  cr_tensor **init;   /* [S] the initial states, as given */
  char *bnd;          /* [n_seg] blocks of the S boundary states (values); block 0 unused */
  cr_tensor out_like; /* an output's shape and dtype */
  cr_tensor st_like[CR_CELL_MAX_STATES]; /* each state's */
  size_t out_bytes, blk_bytes;           /* one output; the S states together */
  size_t st_off[CR_CELL_MAX_STATES + 1]; /* state j within a block (and within Y's tail) */
} chain_saved;

static void chain_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status chain_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_checkpoint_chain = {.name = "checkpoint_chain",
                                            .n_inputs = -1,
                                            .vjp = chain_vjp,
                                            .vjp_graph = chain_vjp_graph,
                                            .reads = ~CR__READS_OUT};

/* A contiguous tensor of like's shape and dtype over data (no graph). */
static cr_tensor row_of(const cr_tensor *like, void *data) {
  cr_tensor r = *like;
  r.data = data;
  r.node = NULL;
  r.grad = NULL;
  r.alt = NULL;
  r.hooks = NULL;
  r.packed = NULL;
  r.root = NULL;
  r.requires_grad = r.retain_grad = r.op_result = r.persistent = r.scratch = false;
  r.name[0] = '\0';
  cr__contig_strides(r.ndim, r.shape, r.stride);
  return r;
}

static bool same_shape(const cr_tensor *a, const cr_tensor *b) {
  return a->dtype == b->dtype && a->ndim == b->ndim &&
         !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

/* Output row r of the chain's result (data of Y or of its gradient). */
static char *out_row(const chain_saved *cs, const void *base, int64_t r) {
  return (char *)base + (size_t)r * cs->out_bytes;
}
/* Final state j in Y's tail. */
static char *final_row(const chain_saved *cs, const void *base, int j) {
  return (char *)base + (size_t)cs->n_rows * cs->out_bytes + cs->st_off[j];
}

static cr_status chain_segment(cr_ctx *ctx, const chain_saved *cs, int s, cr_tensor *const *in,
                               cr_tensor **outs, int *n_out, cr_tensor **next) {
  cr_status st = cs->fn(ctx, cs->closure, s, in, outs, n_out, next);
  if (st == CR_OK && ctx->status != CR_OK)
    st = ctx->status;
  if (st != CR_OK)
    return st;
  const int64_t want = cs->row0 ? cs->row0[s + 1] - cs->row0[s] : *n_out;
  if (*n_out < 0 || *n_out != want || (s == 0 && cs->n_rows > 0 && *n_out == 0))
    return cr_ctx_set_error(ctx, CR_ERR_STATE,
                            "checkpoint_chain: segment %d made %d outputs, "
                            "expected %lld",
                            s, *n_out, (long long)(want ? want : 1));
  const cr_tensor *o = cs->out_like.ndim ? &cs->out_like : *n_out ? outs[0] : NULL;
  for (int j = 0; j < *n_out + cs->S; j++) {
    const cr_tensor *t = j < *n_out ? outs[j] : next[j - *n_out];
    const cr_tensor *like = j < *n_out ? o : &cs->st_like[j - *n_out];
    if (!t || !same_shape(t, like))
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                              "checkpoint_chain: segment %d: %s %d %s "
                              "differs from %s: outputs share one shape, each state keeps its "
                              "initial shape",
                              s, j < *n_out ? "output" : "state", j < *n_out ? j : j - *n_out,
                              cr__shp(t), cr__shp(like));
  }
  return CR_OK;
}

/* Add t to ins[0..*n) (arena: main) unless it is there or needs no gradient. */
static bool add_input(cr_ctx *ctx, cr_tensor ***ins, int *n, int *cap, cr_tensor *t) {
  if (!t || !t->requires_grad)
    return true;
  for (int u = 0; u < *n; u++)
    if ((*ins)[u] == t)
      return true;
  if (*n == *cap) { /* main arena: kept for the node */
    *cap = *cap ? 2 * *cap : 16;
    cr_tensor **grown = cr__alloc_main(ctx, (size_t)*cap * sizeof *grown);
    if (!grown)
      return false;
    if (*n)
      memcpy(grown, *ins, (size_t)*n * sizeof *grown);
    *ins = grown;
  }
  (*ins)[(*n)++] = t;
  return true;
}

cr_tensor *cr__checkpoint_chain_ex(cr_ctx *ctx, cr__chain_fn fn, void *closure,
                                   const cr__chain_spec *sp) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  const int n_seg = sp->n_seg, S = sp->n_state;
  const int64_t n_rows = sp->n_rows;
  if (S < 1 || S > CR_CELL_MAX_STATES || n_seg < 1)
    return cr__fail(ctx, CR_ERR_ARG,
                    "checkpoint_chain: %d segments of %d states: need >= 1 "
                    "and 1..%d",
                    n_seg, S, CR_CELL_MAX_STATES);
  chain_saved *cs = cr__alloc(ctx, sizeof *cs);
  int64_t *row0 = cr__alloc(ctx, (size_t)(n_seg + 1) * sizeof *row0);
  int *same = cr__alloc(ctx, (size_t)(n_seg * S) * sizeof *same);
  cr_tensor **init_copy = cr__alloc(ctx, (size_t)S * sizeof *init_copy);
  if (!cs || !row0 || !same || !init_copy)
    return NULL;
  memcpy(init_copy, sp->init, (size_t)S * sizeof *init_copy);
  *cs = (chain_saved){.fn = fn,
                      .closure = closure,
                      .n_seg = n_seg,
                      .S = S,
                      .n_rows = n_rows,
                      .finals_first = sp->finals_first,
                      .same = same,
                      .init = init_copy};
  for (int j = 0; j < S; j++) { /* each state's shape: its initial state's */
    const cr_tensor *t = sp->init[j];
    if (!t || t->dtype != sp->init[0]->dtype || t->ndim + 1 > CR_MAX_DIMS)
      return cr__fail(ctx, CR_ERR_SHAPE,
                      "checkpoint_chain: initial state %d %s: states share "
                      "a dtype and have at most %d dims",
                      j, cr__shp(t), CR_MAX_DIMS - 1);
    cs->st_like[j] = row_of(t, NULL);
    cs->st_off[j] = cs->blk_bytes;
    cs->blk_bytes += (size_t)t->numel * cr_dtype_size(t->dtype);
  }
  cs->st_off[S] = cs->blk_bytes;
  row0[0] = 0;
  cr_tensor *Y = NULL, *state[CR_CELL_MAX_STATES], *outs_buf[CR__CHECKPOINT_MAX_OUT];
  cr_tensor holder[CR_CELL_MAX_STATES];
  memcpy(state, sp->init, (size_t)S * sizeof *state);
  cr_tensor **ins = NULL;
  int n_in = 0, cap_in = 0;
  for (int s = 0; s < n_seg; s++) {
    const uint64_t serial0 = ctx->tensor_serial, seq0 = ctx->node_seq;
    cr__mark m = cr__region_begin(ctx);
    cr_tensor *next[CR_CELL_MAX_STATES] = {NULL};
    int k = 0;
    /* the first segment records its graph, to find what it reads from
     * outside; the others (the same ops, from plain values) run without */
    bool was = s > 0 ? cr_set_grad_enabled(ctx, false) : cr_grad_enabled(ctx);
    cr_status st = chain_segment(ctx, cs, s, state, outs_buf, &k, next);
    cr_set_grad_enabled(ctx, was);
    if (st == CR_OK && !Y) { /* the result and the boundary store, once the shapes are known */
      if (k > 0) {
        cs->out_like = row_of(outs_buf[0], NULL);
        cs->out_bytes = (size_t)outs_buf[0]->numel * cr_dtype_size(outs_buf[0]->dtype);
      }
      int64_t total = (int64_t)((size_t)n_rows * cs->out_bytes + cs->blk_bytes) /
                      (int64_t)cr_dtype_size(sp->init[0]->dtype);
      if (!(Y = cr__new_for(ctx, &(cr_tensor){.scratch = false}, sp->init[0]->dtype, 1,
                            &total)) || /* main arena: outlives the region */
          !(cs->bnd = cr__alloc_main(ctx, (size_t)n_seg * cs->blk_bytes)))
        st = ctx->status;
      for (int j = 0; st == CR_OK && j < S; j++) /* this context's tensors, as templates */
        holder[j] = cs->st_like[j] = row_of(next[j], NULL);
    }
    if (st == CR_OK && row0[s] + k > n_rows)
      st = cr_ctx_set_error(ctx, CR_ERR_STATE, "checkpoint_chain: more than %lld outputs",
                            (long long)n_rows);
    for (int j = 0; st == CR_OK && j < k; j++) /* outputs into Y's rows */
      cr__gather(outs_buf[j], out_row(cs, Y->data, row0[s] + j));
    for (int j = 0; st == CR_OK && j < S; j++) {
      same[s * S + j] = -1;
      for (int q = 0; q < k; q++)
        if (outs_buf[q] == next[j])
          same[s * S + j] = q;
      char *dst = s + 1 < n_seg ? cs->bnd + (size_t)(s + 1) * cs->blk_bytes + cs->st_off[j]
                                : final_row(cs, Y->data, j);
      cr__gather(next[j], dst);
    }
    /* the tensors from outside that the segment's ops read and that need gradients */
    size_t n_nodes = 0;
    cr_tensor *roots[CR__CHECKPOINT_MAX_OUT + CR_CELL_MAX_STATES];
    if (st == CR_OK) {
      memcpy(roots, outs_buf, (size_t)k * sizeof *roots);
      memcpy(roots + k, next, (size_t)S * sizeof *roots);
    }
    cr_node **order =
        st == CR_OK && s == 0 ? cr__topo_order_after(ctx, k + S, roots, seq0, &n_nodes) : NULL;
    for (size_t i = 0; order && st == CR_OK && i < n_nodes; i++)
      for (int q = 0; q < order[i]->n_in; q++) {
        cr_tensor *t = order[i]->in[q];
        if (t->serial <= serial0 && !add_input(ctx, &ins, &n_in, &cap_in, t)) {
          st = ctx->status;
          break;
        }
      }
    cr__region_end(ctx, &m, true);
    if (st != CR_OK)
      return NULL;
    row0[s + 1] = row0[s] + k;
    for (int j = 0; j < S && s + 1 < n_seg; j++) { /* the next segment starts from values */
      holder[j].data = cs->bnd + (size_t)(s + 1) * cs->blk_bytes + cs->st_off[j];
      state[j] = &holder[j];
    }
  }
  if (!Y || row0[n_seg] != n_rows) {
    if (ctx->status == CR_OK)
      cr_ctx_set_error(ctx, CR_ERR_STATE, "checkpoint_chain: %lld outputs, expected %lld",
                       (long long)row0[n_seg], (long long)n_rows);
    return NULL;
  }
  cs->row0 = row0;
  /* inputs also: the initial states themselves, and what the caller says
   * later segments may read */
  for (int j = 0; j < S; j++)
    if (!add_input(ctx, &ins, &n_in, &cap_in, sp->init[j]))
      return NULL;
  for (int j = 0; j < sp->n_extra; j++)
    if (!add_input(ctx, &ins, &n_in, &cap_in, sp->extra[j]))
      return NULL;
  if (n_in > 0 && ctx->grad_enabled) {
    cr_node *nd = cr__record(ctx, &cr__op_checkpoint_chain, Y, n_in, ins);
    if (nd)
      nd->saved = cs;
  }
  return ctx->status == CR_OK ? Y : NULL;
}

cr_tensor *cr__checkpoint_chain(cr_ctx *ctx, cr__chain_fn fn, void *closure, int n_seg, int S,
                                cr_tensor *const *init, int64_t n_rows, bool finals_first) {
  for (int j = 1; ctx && j < S; j++)
    if (init[j] && init[0] && !same_shape(init[j], init[0]))
      return cr__fail(ctx, CR_ERR_SHAPE,
                      "checkpoint_chain: state %d %s differs from state 0 "
                      "%s (use cr__checkpoint_chain_ex)",
                      j, cr__shp(init[j]), cr__shp(init[0]));
  cr__chain_spec sp = {n_seg, S, init, n_rows, finals_first, 0, NULL};
  cr_tensor *Y = cr__checkpoint_chain_ex(ctx, fn, closure, &sp);
  if (!Y)
    return NULL;
  int64_t shape[CR_MAX_DIMS]; /* [n_rows + S, shape...]: every row has a state's shape */
  shape[0] = n_rows + S;
  memcpy(shape + 1, init[0]->shape, sizeof(int64_t) * (size_t)init[0]->ndim);
  return cr_reshape(ctx, Y, init[0]->ndim + 1, shape);
}

/* g (a fresh or zeroed gradient buffer of a region's tensor) = 0 + row, as
 * full BPTT's first contribution to that tensor is made */
static void seed(cr_ctx *ctx, cr_tensor *t, const cr_tensor *row) {
  cr_tensor *g = cr__grad_acc(ctx, t); /* zeroed */
  if (g)
    cr__copy_convert(g, row, true);
}

static void chain_vjp(cr_ctx *ctx, cr_node *nd) {
  const chain_saved *cs = nd->saved;
  const cr_tensor *gY = nd->out->grad;
  const int S = cs->S;
  /* the gradient reaching each state from the segment after it (values) */
  char *carry = cr__alloc_main(ctx, cs->blk_bytes);
  if (!carry)
    return;
  for (int s = cs->n_seg - 1; s >= 0 && ctx->status == CR_OK; s--) {
    const uint64_t seq0 = ctx->node_seq;
    cr__mark m = cr__region_begin(ctx);
    bool was = cr_set_grad_enabled(ctx, true);
    cr_tensor *in[CR_CELL_MAX_STATES], *next[CR_CELL_MAX_STATES] = {NULL};
    cr_tensor *outs[CR__CHECKPOINT_MAX_OUT];
    for (int j = 0; j < S; j++) {
      if (s == 0) {
        in[j] = cs->init[j];
        continue;
      }
      /* the boundary state, a leaf of the region, seeded with its own
       * output row's gradient first (as the stack of outputs adds first in
       * full BPTT); the segment's ops then add theirs */
      const cr_tensor *like = &cs->st_like[j];
      in[j] = cr__new(ctx, like->dtype, like->ndim, like->shape);
      if (!in[j])
        break;
      memcpy(in[j]->data, cs->bnd + (size_t)s * cs->blk_bytes + cs->st_off[j],
             cs->st_off[j + 1] - cs->st_off[j]);
      cr_set_requires_grad(in[j], true);
      int q = cs->same[(s - 1) * S + j];
      if (q >= 0) {
        cr_tensor r = row_of(like, out_row(cs, gY->data, cs->row0[s - 1] + q));
        seed(ctx, in[j], &r);
      }
    }
    int k = 0;
    cr_status st =
        ctx->status == CR_OK ? chain_segment(ctx, cs, s, in, outs, &k, next) : ctx->status;
    cr_set_grad_enabled(ctx, was);
    /* seeds: outputs their rows; the last states what came back from the
     * next segment (or, for the last segment, the final rows) */
    for (int j = 0; st == CR_OK && j < S; j++) {
      const cr_tensor *like = &cs->st_like[j];
      if (cs->same[s * S + j] >= 0 && s + 1 < cs->n_seg)
        continue; /* a boundary: carried below, already holding its row */
      if (s + 1 == cs->n_seg) {
        cr_tensor fin = row_of(like, final_row(cs, gY->data, j));
        int q = cs->same[s * S + j];
        if (q >= 0 && !cs->finals_first) {
          cr_tensor r = row_of(like, out_row(cs, gY->data, cs->row0[s] + q));
          seed(ctx, next[j], &r);
          cr__copy_convert(next[j]->grad, &fin, true);
        } else {
          seed(ctx, next[j], &fin);
          if (q >= 0) {
            cr_tensor r = row_of(like, out_row(cs, gY->data, cs->row0[s] + q));
            cr__copy_convert(next[j]->grad, &r, true);
          }
        }
      } else {
        cr_tensor c = row_of(like, carry + cs->st_off[j]);
        bool fresh;
        cr_tensor *g = cr__grad_acc_fresh(ctx, next[j], &fresh);
        if (g)
          cr__copy_convert(g, &c, !fresh); /* the next segment's sum, as computed there */
      }
    }
    for (int j = 0; st == CR_OK && j < S && s + 1 < cs->n_seg; j++)
      if (cs->same[s * S + j] >= 0) { /* boundary state that is also an output */
        cr_tensor c = row_of(&cs->st_like[j], carry + cs->st_off[j]);
        bool fresh;
        cr_tensor *g = cr__grad_acc_fresh(ctx, next[j], &fresh);
        if (g)
          cr__copy_convert(g, &c, false); /* its row and the next segment's adds, in order */
      }
    for (int q = 0; st == CR_OK && q < k; q++) {
      bool boundary = false;
      for (int j = 0; j < S; j++)
        boundary |= cs->same[s * S + j] == q;
      if (boundary)
        continue;
      cr_tensor r = row_of(&cs->out_like, out_row(cs, gY->data, cs->row0[s] + q));
      seed(ctx, outs[q], &r);
    }
    /* the segment's own nodes, in the engine's loop */
    size_t n = 0;
    cr_node **order;
    cr_tensor *roots[CR__CHECKPOINT_MAX_OUT + CR_CELL_MAX_STATES];
    memcpy(roots, outs, (size_t)k * sizeof *roots);
    memcpy(roots + k, next, (size_t)S * sizeof *roots);
    order = st == CR_OK ? cr__topo_order_after(ctx, k + S, roots, seq0, &n) : NULL;
    if (order) {
      cr__mark_view_consumers(ctx, order, n);
      cr__run_vjps(ctx, order, n);
    }
    /* what reached this segment's initial state goes to the one before */
    for (int j = 0; s > 0 && ctx->status == CR_OK && j < S; j++) {
      cr__grad_settle_rows(ctx, in[j]);
      const cr_tensor *g = in[j]->grad;
      if (g)
        cr__gather(g, carry + cs->st_off[j]);
      else
        memset(carry + cs->st_off[j], 0, cs->st_off[j + 1] - cs->st_off[j]);
    }
    cr__region_end(ctx, &m, true);
  }
}

/* Piece [at, at + like's numel) of the flat gy, shaped like like. */
static cr_tensor *piece(cr_ctx *ctx, cr_tensor *gy, int64_t at, const cr_tensor *like) {
  return cr_reshape(ctx, cr_slice(ctx, gy, 0, at, at + like->numel, 1), like->ndim, like->shape);
}

/* As ops: the chain rebuilt whole (kept) and differentiated by a pass of
 * its own (the higher-order path; no memory saving). */
static cr_status chain_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  const chain_saved *cs = nd->saved;
  const int S = cs->S;
  bool create = ctx->grad_enabled;
  bool was = cr_set_grad_enabled(ctx, true);
  cr_tensor *state[CR_CELL_MAX_STATES], *next[CR_CELL_MAX_STATES];
  cr_tensor **all = cr__alloc(ctx, (size_t)(cs->n_rows + S) * sizeof *all);
  cr_status st = all ? CR_OK : ctx->status;
  memcpy(state, cs->init, (size_t)S * sizeof *state);
  for (int s = 0; st == CR_OK && s < cs->n_seg; s++) {
    int k = 0;
    st = chain_segment(ctx, cs, s, state, all + cs->row0[s], &k, next);
    memcpy(state, next, (size_t)S * sizeof *state);
  }
  memcpy(all + cs->n_rows, state, (size_t)S * sizeof *state);
  cr_set_grad_enabled(ctx, create);
  cr_tensor **seeds = st == CR_OK ? cr__alloc(ctx, (size_t)(cs->n_rows + S) * sizeof *seeds) : NULL;
  const size_t es = cr_dtype_size(cs->st_like[0].dtype);
  for (int64_t r = 0; seeds && r < cs->n_rows; r++)
    seeds[r] = piece(ctx, gy, r * cs->out_like.numel, &cs->out_like);
  for (int j = 0; seeds && j < S; j++)
    seeds[cs->n_rows + j] =
        piece(ctx, gy, (int64_t)(((size_t)cs->n_rows * cs->out_bytes + cs->st_off[j]) / es),
              &cs->st_like[j]);
  if (seeds && ctx->status == CR_OK) {
    uint32_t pass = ctx->pass;
    bool graph = ctx->graph_pass;
    cr_node *vjp_node = ctx->vjp_node;
    cr_autograd_opts o = {.create_graph = create, .zeros_for_unused = true};
    /* outputs that are the same tensor count once: cr_autograd_grad adds
     * every seed given for a tensor */
    st = cr_autograd_grad(ctx, (int)(cs->n_rows + S), all, seeds, nd->n_in, nd->in, &o, gx);
    ctx->pass = pass;
    ctx->graph_pass = graph;
    ctx->vjp_node = vjp_node;
  }
  cr_set_grad_enabled(ctx, was);
  return st != CR_OK ? st : cr_ctx_status(ctx);
}
