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
