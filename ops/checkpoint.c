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
    return cr_ctx_set_error(ctx, CR_ERR_STATE, "checkpoint: the segment returned %d outputs "
                            "(expected %d, at most %d)", n, expect ? expect : n,
                            CR__CHECKPOINT_MAX_OUT);
  for (int j = 0; j < n; j++)
    if (!outs[j] || outs[j]->dtype != outs[0]->dtype || outs[j]->ndim != outs[0]->ndim ||
        memcmp(outs[j]->shape, outs[0]->shape, sizeof(int64_t) * (size_t)outs[0]->ndim))
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "checkpoint: output %d %s differs from output "
                              "0 %s: a segment's outputs share one shape and dtype", j,
                              cr__shp(outs[j]), cr__shp(outs[0]));
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
    st = cr_ctx_set_error(ctx, CR_ERR_STATE, "checkpoint: the segment built other outputs when "
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
    seeds[u] = cr_reshape(ctx, cr_slice(ctx, gy, 0, u, u + 1, 1), unique[u]->ndim,
                          unique[u]->shape);
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
 *          Y = [outs_0 | outs_1 | ... | state_n]   (one row per output)
 *
 * One node for the whole chain: the forward keeps only Y and the states at
 * the segment boundaries (values); the VJP goes through the segments from
 * the last, each rebuilt in a region from its boundary state (a leaf of the
 * region), seeded and differentiated, its initial state's gradient carried
 * to the previous segment.  The seeds reproduce the order in which full
 * BPTT's consumers add to each boundary tensor — its output row first, then
 * the next segment's ops (then, for the very last state, as `finals_first`
 * says) — so the sums are the same bits. */

typedef struct {
  cr__chain_fn fn;
  void *closure;
  int n_seg, S;
  int64_t n_rows;
  bool finals_first;
  int64_t *row0;    /* [n_seg + 1] first output row of each segment */
  int *same;        /* [n_seg * S] out index (in its segment) that is state j, or -1 */
  cr_tensor **init; /* [S] the initial states, as given */
  char *bnd;        /* [n_seg * S] boundary states (values); entry 0 unused */
} chain_saved;

static void chain_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status chain_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_checkpoint_chain = {.name = "checkpoint_chain",
                                            .n_inputs = -1,
                                            .vjp = chain_vjp,
                                            .vjp_graph = chain_vjp_graph,
                                            .reads = ~CR__READS_OUT};

/* A tensor over one row of a [rows, shape...] buffer. */
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

static cr_status chain_segment(cr_ctx *ctx, const chain_saved *cs, int s, cr_tensor *const *in,
                               cr_tensor **outs, int *n_out, cr_tensor **next) {
  cr_status st = cs->fn(ctx, cs->closure, s, in, outs, n_out, next);
  if (st == CR_OK && ctx->status != CR_OK)
    st = ctx->status;
  if (st != CR_OK)
    return st;
  const int64_t want = cs->row0 ? cs->row0[s + 1] - cs->row0[s] : *n_out;
  if (*n_out < 0 || *n_out != want)
    return cr_ctx_set_error(ctx, CR_ERR_STATE, "checkpoint_chain: segment %d made %d outputs, "
                            "expected %lld", s, *n_out, (long long)want);
  const cr_tensor *o = *n_out ? outs[0] : next[0];
  for (int j = 0; j < *n_out + cs->S; j++) {
    const cr_tensor *t = j < *n_out ? outs[j] : next[j - *n_out];
    if (!t || t->dtype != o->dtype || t->ndim != o->ndim ||
        memcmp(t->shape, o->shape, sizeof(int64_t) * (size_t)o->ndim))
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "checkpoint_chain: segment %d: output %d %s "
                              "differs from %s: outputs and states share one shape", s, j,
                              cr__shp(t), cr__shp(o));
  }
  return CR_OK;
}

cr_tensor *cr__checkpoint_chain(cr_ctx *ctx, cr__chain_fn fn, void *closure, int n_seg, int S,
                                cr_tensor *const *init, int64_t n_rows, bool finals_first) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  chain_saved *cs = cr__alloc(ctx, sizeof *cs);
  int64_t *row0 = cr__alloc(ctx, (size_t)(n_seg + 1) * sizeof *row0);
  int *same = cr__alloc(ctx, (size_t)(n_seg * S) * sizeof *same);
  cr_tensor **init_copy = cr__alloc(ctx, (size_t)S * sizeof *init_copy);
  if (!cs || !row0 || !same || !init_copy)
    return NULL;
  memcpy(init_copy, init, (size_t)S * sizeof *init_copy);
  *cs = (chain_saved){fn, closure, n_seg, S, n_rows, finals_first, NULL, same, init_copy, NULL};
  row0[0] = 0;
  cr_tensor *Y = NULL, *state[CR_CELL_MAX_STATES], *outs_buf[CR__CHECKPOINT_MAX_OUT];
  cr_tensor holder[CR_CELL_MAX_STATES];
  memcpy(state, init, (size_t)S * sizeof *state);
  cr_tensor **ins = NULL;
  int n_in = 0, cap_in = 0;
  size_t row_bytes = 0;
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
    if (st == CR_OK && !Y) { /* the result and the boundary store, once the shape is known */
      const cr_tensor *o = next[0];
      int64_t shape[CR_MAX_DIMS];
      shape[0] = n_rows + S;
      memcpy(shape + 1, o->shape, sizeof(int64_t) * (size_t)o->ndim);
      row_bytes = (size_t)o->numel * cr_dtype_size(o->dtype);
      if (o->ndim + 1 > CR_MAX_DIMS)
        st = cr_ctx_set_error(ctx, CR_ERR_SHAPE, "checkpoint_chain: states %s have %d dims; "
                              "at most %d", cr__shp(o), o->ndim, CR_MAX_DIMS - 1);
      else if (!(Y = cr__new_for(ctx, &(cr_tensor){.scratch = false}, o->dtype, o->ndim + 1,
                                 shape)) ||
               !(cs->bnd = cr__alloc_main(ctx, (size_t)(n_seg * S) * row_bytes)))
        st = ctx->status;
      for (int j = 0; st == CR_OK && j < S; j++)
        holder[j] = row_of(o, NULL);
    }
    if (st == CR_OK && row0[s] + k > n_rows)
      st = cr_ctx_set_error(ctx, CR_ERR_STATE, "checkpoint_chain: more than %lld outputs",
                            (long long)n_rows);
    for (int j = 0; st == CR_OK && j < k; j++) /* outputs into Y's rows */
      cr__gather(outs_buf[j], (char *)Y->data + (size_t)(row0[s] + j) * row_bytes);
    for (int j = 0; st == CR_OK && j < S; j++) {
      same[s * S + j] = -1;
      for (int q = 0; q < k; q++)
        if (outs_buf[q] == next[j])
          same[s * S + j] = q;
      char *dst = s + 1 < n_seg ? cs->bnd + (size_t)((s + 1) * S + j) * row_bytes
                                : (char *)Y->data + (size_t)(n_rows + j) * row_bytes;
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
    for (size_t i = 0; order && i < n_nodes; i++)
      for (int q = 0; q < order[i]->n_in; q++) {
        cr_tensor *t = order[i]->in[q];
        if (t->serial > serial0 || !t->requires_grad)
          continue;
        int u = 0;
        while (u < n_in && ins[u] != t)
          u++;
        if (u < n_in)
          continue;
        if (n_in == cap_in) { /* main arena: kept for the node */
          cap_in = cap_in ? 2 * cap_in : 16;
          cr_tensor **grown = cr__alloc_main(ctx, (size_t)cap_in * sizeof *grown);
          if (!grown) {
            st = ctx->status;
            break;
          }
          if (n_in)
            memcpy(grown, ins, (size_t)n_in * sizeof *grown);
          ins = grown;
        }
        ins[n_in++] = t;
      }
    cr__region_end(ctx, &m, true);
    if (st != CR_OK)
      return NULL;
    row0[s + 1] = row0[s] + k;
    for (int j = 0; j < S && s + 1 < n_seg; j++) { /* the next segment starts from values */
      holder[j].data = cs->bnd + (size_t)((s + 1) * S + j) * row_bytes;
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
  for (int j = 0; j < S; j++) /* inputs also: the initial states themselves */
    if (init[j]->requires_grad) {
      int u = 0;
      while (u < n_in && ins[u] != init[j])
        u++;
      if (u == n_in) {
        cr_tensor **grown = cr__alloc_main(ctx, (size_t)(n_in + 1) * sizeof *grown);
        if (!grown)
          return NULL;
        if (n_in)
          memcpy(grown, ins, (size_t)n_in * sizeof *grown);
        ins = grown;
        ins[n_in++] = init[j];
      }
    }
  if (n_in > 0 && ctx->grad_enabled) {
    cr_node *nd = cr__record(ctx, &cr__op_checkpoint_chain, Y, n_in, ins);
    if (nd)
      nd->saved = cs;
  }
  return ctx->status == CR_OK ? Y : NULL;
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
  const size_t es = cr_dtype_size(gY->dtype);
  cr_tensor like = *nd->out;
  like.ndim--;
  memmove(like.shape, like.shape + 1, sizeof(int64_t) * (size_t)like.ndim);
  like.numel /= nd->out->shape[0];
  const size_t row_bytes = (size_t)like.numel * es;
  /* the gradient reaching each state from the segment after it (values) */
  char *carry = cr__alloc_main(ctx, (size_t)S * row_bytes);
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
      in[j] = cr__new(ctx, like.dtype, like.ndim, like.shape);
      if (!in[j])
        break;
      memcpy(in[j]->data, cs->bnd + (size_t)(s * S + j) * row_bytes, row_bytes);
      cr_set_requires_grad(in[j], true);
      int q = cs->same[(s - 1) * S + j];
      if (q >= 0) {
        cr_tensor r = row_of(&like, (char *)gY->data + (size_t)(cs->row0[s - 1] + q) * row_bytes);
        seed(ctx, in[j], &r);
      }
    }
    int k = 0;
    cr_status st = ctx->status == CR_OK ? chain_segment(ctx, cs, s, in, outs, &k, next) : ctx->status;
    cr_set_grad_enabled(ctx, was);
    /* seeds: outputs their rows; the last states what came back from the
     * next segment (or, for the last segment, the final rows) */
    for (int j = 0; st == CR_OK && j < S; j++) {
      if (cs->same[s * S + j] >= 0 && s + 1 < cs->n_seg)
        continue; /* a boundary: carried below, already holding its row */
      if (s + 1 == cs->n_seg) {
        cr_tensor fin = row_of(&like, (char *)gY->data + (size_t)(cs->n_rows + j) * row_bytes);
        int q = cs->same[s * S + j];
        if (q >= 0 && !cs->finals_first) {
          cr_tensor r = row_of(&like, (char *)gY->data + (size_t)(cs->row0[s] + q) * row_bytes);
          seed(ctx, next[j], &r);
          cr__copy_convert(next[j]->grad, &fin, true);
        } else {
          seed(ctx, next[j], &fin);
          if (q >= 0) {
            cr_tensor r = row_of(&like, (char *)gY->data + (size_t)(cs->row0[s] + q) * row_bytes);
            cr__copy_convert(next[j]->grad, &r, true);
          }
        }
      } else {
        cr_tensor c = row_of(&like, carry + (size_t)j * row_bytes);
        bool fresh;
        cr_tensor *g = cr__grad_acc_fresh(ctx, next[j], &fresh);
        if (g)
          cr__copy_convert(g, &c, !fresh); /* the next segment's sum, as computed there */
      }
    }
    for (int j = 0; st == CR_OK && j < S && s + 1 < cs->n_seg; j++)
      if (cs->same[s * S + j] >= 0) { /* boundary state that is also an output */
        cr_tensor c = row_of(&like, carry + (size_t)j * row_bytes);
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
      cr_tensor r = row_of(&like, (char *)gY->data + (size_t)(cs->row0[s] + q) * row_bytes);
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
      const cr_tensor *g = in[j]->grad;
      if (g)
        cr__gather(g, carry + (size_t)j * row_bytes);
      else
        memset(carry + (size_t)j * row_bytes, 0, row_bytes);
    }
    cr__region_end(ctx, &m, true);
  }
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
  for (int64_t r = 0; seeds && r < cs->n_rows + S; r++)
    seeds[r] = cr_reshape(ctx, cr_slice(ctx, gy, 0, r, r + 1, 1), all[r]->ndim, all[r]->shape);
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
