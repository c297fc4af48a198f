/* autograd.c — reverse-mode differentiation.
 *
 * backward(y, seed):
 *   1. order = the nodes reachable from y, children before parents
 *      (an iterative depth-first search; each node is visited once);
 *   2. y.grad = seed;
 *   3. for node in reversed(order): node.op.vjp(node)
 *      — each VJP adds (+=) into its inputs' grads, so when a node's turn
 *      comes its output gradient already holds the sum over every use.
 * That is the whole algorithm: a weight used at T time steps appears as an
 * input of T nodes, and its gradient is the sum of the T contributions —
 * backpropagation through time is this loop on the unrolled graph.
 *
 * The same loop runs in two forms.  The kernel pass (run_kernels) calls
 * each op's vjp, which adds into gradient buffers: the fast first-order
 * path.  The graph pass (run_graph) calls each op's vjp_graph, which
 * returns the input gradients as tensors made of ops; with grad mode on
 * those ops are recorded too, so the gradients can be differentiated again
 * (create_graph).  Around the loop: hooks see each gradient when it is
 * complete, and anomaly mode checks every VJP's result.  No op is named
 * here: an op's gradient-buffer tricks hang off its descriptor (op.h). */
#include "op.h"

/* hooks.c */
cr_tensor *cr__run_hooks(cr_ctx *ctx, cr_tensor *t, cr_tensor *g);

static int by_creation(const void *a, const void *b) {
  uint64_t x = (*(cr_node *const *)a)->seq, y = (*(cr_node *const *)b)->seq;
  return x < y ? -1 : x > y;
}

/* order[0..n) by creation number.  A training step walks nearly every node
 * made since its start, so their numbers are dense: place each at its
 * number's slot and squeeze out the gaps, O(range) instead of the
 * O(n log n) sort (which took ~8% of a batch-1 LSTM step). */
static void sort_by_creation(cr_ctx *ctx, cr_node **order, size_t n) {
  if (n < 2)
    return;
  uint64_t lo = order[0]->seq, hi = lo;
  for (size_t i = 1; i < n; i++) {
    lo = order[i]->seq < lo ? order[i]->seq : lo;
    hi = order[i]->seq > hi ? order[i]->seq : hi;
  }
  const uint64_t range = hi - lo + 1;
  cr_node **slot = range <= 4 * (uint64_t)n ? cr__alloc(ctx, (size_t)range * sizeof *slot) : NULL;
  if (!slot) {
    if (range <= 4 * (uint64_t)n)
      cr_ctx_clear_error(ctx); /* no memory for the slots: sort instead */
    qsort(order, n, sizeof *order, by_creation);
    return;
  }
  memset(slot, 0, (size_t)range * sizeof *slot);
  for (size_t i = 0; i < n; i++)
    slot[order[i]->seq - lo] = order[i];
  size_t k = 0;
  for (uint64_t r = 0; r < range; r++)
    if (slot[r])
      order[k++] = slot[r];
}

/* The nodes reachable from the roots, in creation order — a topological
 * order (an op's inputs exist before it), and a canonical one: two graphs
 * built by the same ops in the same order are walked alike whatever their
 * shape, which is what lets a checkpointed unroll, recomputed in pieces,
 * reproduce full BPTT bit for bit.  NULL (error stored) when out of
 * memory; *count 0 when no root has a node. */
cr_node **cr__topo_order(cr_ctx *ctx, int n_roots, cr_tensor *const *roots, size_t *count) {
  return cr__topo_order_after(ctx, n_roots, roots, 0, count);
}

cr_node **cr__topo_order_after(cr_ctx *ctx, int n_roots, cr_tensor *const *roots, uint64_t after,
                               size_t *count) {
  size_t cap = ctx->nodes + 1;
  cr_node **order = cr__alloc(ctx, cap * sizeof *order);
  cr_node **stack = cr__alloc(ctx, cap * sizeof *stack);
  if (!order || !stack)
    return NULL;
  size_t n = 0, sp = 0;
  uint32_t mark = ++ctx->walk;
  for (int r = 0; r < n_roots; r++) {
    cr_node *root = roots[r] ? roots[r]->node : NULL;
    if (root && root->mark != mark && root->seq > after) {
      root->mark = mark;
      stack[sp++] = root;
    }
  }
  while (sp) {
    cr_node *nd = stack[--sp];
    order[n++] = nd;
    for (int i = 0; i < nd->n_in; i++) {
      cr_node *child = nd->in[i] ? nd->in[i]->node : NULL;
      if (child && child->mark != mark && child->seq > after) {
        child->mark = mark;
        CR_ASSERT(sp < cap, "graph walk overflow");
        stack[sp++] = child;
      }
    }
  }
  sort_by_creation(ctx, order, n);
  *count = n;
  return order;
}

/* Start a pass: a new pass number (after the walk's), nothing queued. */
static void begin_pass(cr_ctx *ctx, bool graph) {
  ctx->pass = ++ctx->passes;
  ctx->pending = NULL;
  ctx->n_owed = 0;
  ctx->graph_pass = graph;
}

/* The first non-finite element of t, or -1 (and its value in *v). */
static int64_t non_finite_at(const cr_tensor *t, double *v) {
  if (cr_all_finite(t))
    return -1;
  for (int64_t i = 0; i < t->numel; i++)
    if (!isfinite(*v = cr_get_flat(t, i)))
      return i;
  return -1;
}

static const char *kind_of(double v) { return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

/* Anomaly mode, kernel pass: did nd's VJP leave a NaN/Inf in a gradient?
 * An input whose gradient nd's output gradient was a view into (a slice,
 * a reshape: grad_alias) got nothing from this VJP — its new values were
 * written, and checked, as the gradient of nd's consumers' input — so
 * the whole buffer (say the input projections of every step, sliced per
 * gate and step) is not scanned again for every view of it.  A buffer
 * owed queued products (a weight's gradient, one product per step) is
 * checked once they are added (settled_finite). */
static bool vjp_finite(cr_ctx *ctx, const cr_node *nd) {
  const cr_tensor *gy = nd->out->grad_is_view ? nd->out->grad : NULL;
  for (int k = 0; k < nd->n_in; k++) {
    const cr_tensor *x = nd->in[k];
    const cr_tensor *g = !x->node && x->hooks ? (x->pgrad_pass == ctx->pass ? x->pgrad : NULL)
                         : x->grad_pass == ctx->pass ? x->grad
                                                     : NULL;
    if (g && ((gy && cr__data_inside(gy, g)) || cr__pending_owed(ctx, g)))
      continue; /* nothing new from this VJP, or checked once settled */
    double v = 0;
    int64_t at = g && x->requires_grad ? non_finite_at(g, &v) : -1;
    if (at < 0)
      continue;
    char shapes[256] = "";
    size_t len = 0;
    for (int j = 0; j < nd->n_in && len < sizeof shapes; j++)
      len += (size_t)snprintf(shapes + len, sizeof shapes - len, "%s%s", j ? ", " : "",
                              cr__shp(nd->in[j]));
    cr__fail(ctx, CR_ERR_NUMERIC,
             "anomaly: VJP of %s %s produced %s in input %d %s (element "
             "%lld of its gradient; the forward op's result was %s)%s%s%s",
             nd->name, shapes, kind_of(v), k, cr__shp(x), (long long)at, cr__shp(nd->out),
             nd->scope ? "; the op was made in scope '" : "", nd->scope ? nd->scope : "",
             nd->scope ? "'" : "");
    return false;
  }
  return true;
}

/* Anomaly mode: t's gradient g, complete only now (its staged products
 * were added after the VJPs that queued them), is finite. */
static bool settled_finite(cr_ctx *ctx, const cr_tensor *t, const cr_tensor *g) {
  double v = 0;
  int64_t at = non_finite_at(g, &v);
  if (at < 0)
    return true;
  cr__fail(ctx, CR_ERR_NUMERIC,
           "anomaly: the gradient of %s has %s at element %lld once the "
           "products queued for it (one per use, e.g. per time step) were added",
           cr__shp(t), kind_of(v), (long long)at);
  return false;
}

/* A seed (or hook result) g for y: same shape; converted to y's dtype. */
static bool seed_ok(cr_ctx *ctx, const char *op, const cr_tensor *y, const cr_tensor *seed) {
  if (!cr__check_inputs(ctx, op, 1, (cr_tensor *const *)&seed))
    return false;
  if (seed->ndim != y->ndim || memcmp(seed->shape, y->shape, sizeof(int64_t) * (size_t)y->ndim)) {
    cr__fail(ctx, CR_ERR_SHAPE, "%s: output %s, seed %s: shapes differ", op, cr__shp(y),
             cr__shp(seed));
    return false;
  }
  double v = 0;
  int64_t at = ctx->anomaly ? non_finite_at(seed, &v) : -1;
  if (at >= 0) {
    cr__fail(ctx, CR_ERR_NUMERIC, "anomaly: %s: the seed %s has %s at element %lld", op,
             cr__shp(seed), kind_of(v), (long long)at);
    return false;
  }
  return true;
}

/* leaf.grad += g (values), allocating the buffer as a kernel pass would,
 * but bypassing hooks (they ran on g already). */
static bool leaf_accumulate(cr_ctx *ctx, cr_tensor *t, const cr_tensor *g) {
  if (!t->grad) {
    if (t->persistent) {
      t->grad = cr_tensor_new(ctx, t->dtype, t->ndim, t->shape);
    } else if ((t->grad = cr__new_for(ctx, t, t->dtype, t->ndim, t->shape))) {
      memset(t->grad->data, 0, (size_t)t->numel * cr_dtype_size(t->dtype));
    }
    if (!t->grad)
      return false;
  }
  cr__copy_convert(t->grad, g, true);
  return true;
}

/* Leaves of the walk (and y itself) whose gradient this pass collected
 * apart — because they have hooks — run them and join the accumulated grad. */
static void finish_hooked_leaves(cr_ctx *ctx, cr_node *const *order, size_t n, cr_tensor *y) {
  for (size_t i = 0; i <= n && ctx->status == CR_OK; i++) {
    int m = i < n ? order[i]->n_in : 1;
    for (int k = 0; k < m && ctx->status == CR_OK; k++) {
      cr_tensor *t = i < n ? order[i]->in[k] : y;
      if (t->node || !t->hooks || t->pgrad_pass != ctx->pass || !t->pgrad)
        continue;
      t->pgrad_pass = 0; /* once */
      cr_tensor *g = cr__run_hooks(ctx, t, t->pgrad);
      if (g)
        leaf_accumulate(ctx, t, g);
    }
  }
}

void cr__mark_view_consumers(cr_ctx *ctx, cr_node *const *order, size_t n) {
  for (size_t i = 0; i < n; i++) {
    cr_node *nd = order[i];
    for (int k = 0; k < nd->n_in; k++) {
      cr_tensor *t = nd->in[k];
      if (t->view_pass != ctx->pass) {
        t->view_pass = ctx->pass;
        t->view_ok = true;
        t->uses = 0;
      }
      t->uses++;
      t->view_ok &= nd->op->takes_view_grad && nd->op->takes_view_grad(nd, k);
    }
  }
}

/* The loop of backward: order[0..n) in reverse, each node's VJP once its
 * output gradient is complete. */
void cr__run_vjps(cr_ctx *ctx, cr_node *const *order, size_t n) {
  for (size_t i = n; i-- > 0 && ctx->status == CR_OK;) {
    cr_node *nd = order[i];
    cr_tensor *t = nd->out, *g = t->grad;
    if (!g || t->grad_pass != ctx->pass)
      continue;                   /* no gradient reached it */
    cr__grad_settle_rows(ctx, t); /* rows no view wrote read zeros */
    /* its gradient is complete only now (a view's VJP has nothing left to
     * read); in anomaly mode the VJPs that wrote it checked what they
     * wrote, and what was queued is checked once added */
    const bool queued = !t->grad_is_view && cr__pending_owed(ctx, g);
    if (queued)
      cr__pending_settle(ctx, g);
    if (ctx->anomaly && queued && !settled_finite(ctx, t, g))
      break;
    if (t->hooks) {
      cr_tensor *h = cr__run_hooks(ctx, t, g);
      if (!h)
        break;
      if (h != g)
        cr__copy_convert(g, h, false);
    }
    nd->op->vjp(ctx, nd);
    if (ctx->anomaly && ctx->status == CR_OK)
      vjp_finite(ctx, nd);
    cr__grad_release(ctx, t);
  }
}

/* The kernel pass: the fast first-order backward. */
static cr_status run_kernels(cr_ctx *ctx, cr_tensor *y, cr_tensor *seed) {
  size_t n = 0;
  cr_node **order = cr__topo_order(ctx, 1, &y, &n);
  if (!order)
    return ctx->status;
  begin_pass(ctx, false);
  y->view_pass = ctx->pass; /* nothing consumes the root: a view gradient will do */
  y->view_ok = true;
  y->uses = 0;
  /* marked before the seed's buffer is made: a root that is a view of a
   * view (reshape of a slice) gets its gradient as a view all the way in */
  cr__mark_view_consumers(ctx, order, n);
  cr_tensor *gy = cr__grad_acc(ctx, y);
  if (!gy)
    return ctx->status ? ctx->status : CR_ERR_NOMEM;
  if (seed)
    cr__copy_convert(gy, seed, true);
  else
    cr_set_flat(gy, 0, cr_get_flat(gy, 0) + 1.0);
  cr__run_vjps(ctx, order, n);
  cr__pending_settle_all(ctx);
  for (size_t i = 0; ctx->anomaly && ctx->status == CR_OK && i < n; i++)
    for (int k = 0; k < order[i]->n_in && ctx->status == CR_OK; k++) {
      cr_tensor *x = order[i]->in[k]; /* the leaves' staged products too, once each */
      if (!x->node && x->requires_grad && x->grad && x->grad_pass == ctx->pass &&
          x->finite_pass != ctx->pass && settled_finite(ctx, x, x->grad))
        x->finite_pass = ctx->pass;
    }
  finish_hooked_leaves(ctx, order, n, y);
  return ctx->status;
}

/* t.pgrad += g for this graph pass */
static void accumulate(cr_ctx *ctx, cr_tensor *t, cr_tensor *g) {
  if (t->pgrad_pass != ctx->pass || !t->pgrad) {
    t->pgrad = g;
    t->pgrad_pass = ctx->pass;
  } else {
    t->pgrad = cr_add(ctx, t->pgrad, g);
  }
}

/* After a graph pass of cr_backward_ex: a leaf's or retained tensor's
 * gradient joins its buffer as values, and keeps its graph in grad_graph. */
static void keep_graph_grad(cr_ctx *ctx, cr_tensor *t, cr_tensor *g) {
  cr_tensor *before = NULL; /* the accumulated values so far, as a constant */
  if (!t->node && t->grad) {
    before = cr__new_for(ctx, t, t->dtype, t->ndim, t->shape);
    if (!before)
      return;
    cr__gather(t->grad, before->data);
  }
  if (t->node) { /* retained: this pass's gradient only */
    if (!t->grad || t->grad->ndim != t->ndim || t->grad_is_view)
      t->grad = cr__new_for(ctx, t, t->dtype, t->ndim, t->shape);
    if (!t->grad)
      return;
    t->grad_is_view = false;
    t->grad_pass = ctx->pass;
    cr__copy_convert(t->grad, g, false);
  } else if (!leaf_accumulate(ctx, t, g)) {
    return;
  }
  t->grad_graph = before ? cr_add(ctx, before, g) : g;
  t->grad_graph_ctx = ctx;
  t->grad_graph_epoch = ctx->epoch;
}

/* The graph pass: gradients as tensors built by the ops' graph VJPs.
 * With hooks (cr_backward_ex) hooks run and leaves / retained tensors keep
 * their gradients; without (cr_autograd_grad) nothing outside is touched. */
static cr_status run_graph(cr_ctx *ctx, int n_out, cr_tensor *const *outs, cr_tensor *const *seeds,
                           bool create_graph, bool backward) {
  size_t n = 0;
  cr_node **order = cr__topo_order(ctx, n_out, outs, &n);
  if (!order)
    return ctx->status;
  begin_pass(ctx, true);
  bool was = cr_set_grad_enabled(ctx, create_graph);
  for (int i = 0; i < n_out && ctx->status == CR_OK; i++) {
    cr_tensor *g =
        seeds && seeds[i] ? seeds[i] : cr_ones(ctx, outs[i]->dtype, outs[i]->ndim, outs[i]->shape);
    if (g && g->dtype != outs[i]->dtype)
      g = cr_cast(ctx, g, outs[i]->dtype);
    if (g)
      accumulate(ctx, outs[i], g);
  }
  for (size_t i = n; i-- > 0 && ctx->status == CR_OK;) {
    cr_node *nd = order[i];
    cr_tensor *t = nd->out;
    if (t->pgrad_pass != ctx->pass || !t->pgrad)
      continue;
    if (backward && t->hooks && !(t->pgrad = cr__run_hooks(ctx, t, t->pgrad)))
      break;
    if (backward && t->retain_grad)
      keep_graph_grad(ctx, t, t->pgrad);
    cr_tensor **gx = cr__alloc(ctx, (size_t)nd->n_in * sizeof *gx);
    if (!gx)
      break;
    memset(gx, 0, (size_t)nd->n_in * sizeof *gx);
    ctx->vjp_node = nd; /* names the VJP in anomaly messages of the ops it runs */
    cr_status st = nd->op->vjp_graph(ctx, nd, t->pgrad, gx);
    ctx->vjp_node = NULL;
    if (st != CR_OK || ctx->status != CR_OK)
      break;
    for (int k = 0; k < nd->n_in; k++) {
      cr_tensor *x = nd->in[k];
      if (!gx[k] || !x->requires_grad)
        continue;
      CR_ASSERT(gx[k]->ndim == x->ndim &&
                    !memcmp(gx[k]->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) &&
                    gx[k]->dtype == x->dtype,
                "graph VJP of %s: gradient %s for input %d %s", nd->name, cr__shp(gx[k]), k,
                cr__shp(x));
      accumulate(ctx, x, gx[k]);
    }
  }
  /* leaves: hooks, then the accumulated gradient */
  for (size_t i = 0; backward && i <= n && ctx->status == CR_OK; i++) {
    int m = i < n ? order[i]->n_in : n_out;
    for (int k = 0; k < m && ctx->status == CR_OK; k++) {
      cr_tensor *t = i < n ? order[i]->in[k] : outs[k];
      if (t->node || !t->requires_grad || t->pgrad_pass != ctx->pass || !t->pgrad)
        continue;
      t->pgrad_pass = 0; /* once */
      cr_tensor *g = t->hooks ? cr__run_hooks(ctx, t, t->pgrad) : t->pgrad;
      if (g)
        keep_graph_grad(ctx, t, g);
    }
  }
  cr_set_grad_enabled(ctx, was);
  return ctx->status;
}

/* ---- the public entry points */

static bool backward_check(cr_ctx *ctx, const char *op, cr_tensor *y) {
  if (!cr__check_inputs(ctx, op, 1, &y))
    return false;
  if (!y->requires_grad) {
    cr__fail(ctx, CR_ERR_STATE,
             "%s: %s does not require grad: no input of the graph "
             "that made it requires grad (did you forget cr_set_requires_grad, or "
             "build it with grad mode off?)",
             op, cr__shp(y));
    return false;
  }
  return true;
}

static cr_status status_or(cr_ctx *ctx, cr_status st) { return ctx->status ? ctx->status : st; }

cr_status cr_backward_ex(cr_ctx *ctx, cr_tensor *y, cr_tensor *seed, const cr_backward_opts *o) {
  if (!ctx)
    return CR_ERR_ARG;
  const char *op = seed ? "backward_seed" : "backward";
  if (!backward_check(ctx, op, y))
    return status_or(ctx, CR_ERR_ARG);
  if (!seed && y->numel != 1)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                            "backward: %s: output has %lld elements; "
                            "backward needs a one-element loss, or a seed gradient "
                            "(cr_backward_seed)",
                            cr__shp(y), (long long)y->numel);
  if (seed && !seed_ok(ctx, op, y, seed))
    return status_or(ctx, CR_ERR_ARG);
  if (o && o->create_graph)
    return run_graph(ctx, 1, &y, seed ? &seed : NULL, true, true);
  return run_kernels(ctx, y, seed);
}

cr_status cr_backward(cr_ctx *ctx, cr_tensor *loss) {
  return cr_backward_ex(ctx, loss, NULL, NULL);
}

cr_status cr_backward_seed(cr_ctx *ctx, cr_tensor *y, cr_tensor *seed) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!seed) {
    if (ctx->status == CR_OK)
      cr__fail(ctx, CR_ERR_ARG, "backward_seed: seed is NULL");
    return ctx->status;
  }
  return cr_backward_ex(ctx, y, seed, NULL);
}

cr_status cr_autograd_grad(cr_ctx *ctx, int n_out, cr_tensor *const *outputs,
                           cr_tensor *const *seeds, int n_in, cr_tensor *const *inputs,
                           const cr_autograd_opts *o, cr_tensor **grads) {
  if (!ctx)
    return CR_ERR_ARG;
  for (int j = 0; grads && j < n_in; j++)
    grads[j] = NULL;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!outputs || !inputs || !grads || n_out < 1 || n_in < 1)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "autograd_grad: %d outputs, %d inputs: need at "
                            "least one of each, and grads",
                            n_out, n_in);
  for (int i = 0; i < n_out; i++) {
    if (!backward_check(ctx, "autograd_grad", outputs[i]))
      return status_or(ctx, CR_ERR_ARG);
    cr_tensor *s = seeds ? seeds[i] : NULL;
    if (!s && outputs[i]->numel != 1)
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                              "autograd_grad: output %d %s has %lld "
                              "elements: give a seed for it",
                              i, cr__shp(outputs[i]), (long long)outputs[i]->numel);
    if (s && !seed_ok(ctx, "autograd_grad", outputs[i], s))
      return status_or(ctx, CR_ERR_ARG);
  }
  for (int j = 0; j < n_in; j++) {
    if (!cr__check_inputs(ctx, "autograd_grad", 1, &inputs[j]))
      return status_or(ctx, CR_ERR_ARG);
    if (!inputs[j]->requires_grad)
      return cr_ctx_set_error(ctx, CR_ERR_STATE,
                              "autograd_grad: input %d %s does not require "
                              "grad, so no output can depend on it through the graph",
                              j, cr__shp(inputs[j]));
  }
  cr_status st = run_graph(ctx, n_out, outputs, seeds, o && o->create_graph, false);
  for (int j = 0; st == CR_OK && j < n_in; j++) {
    cr_tensor *x = inputs[j];
    if (x->pgrad_pass == ctx->pass && x->pgrad)
      grads[j] = x->pgrad;
    else if (o && o->zeros_for_unused && !(grads[j] = cr_zeros(ctx, x->dtype, x->ndim, x->shape)))
      st = ctx->status;
  }
  if (st != CR_OK)
    for (int j = 0; j < n_in; j++)
      grads[j] = NULL;
  return st;
}

cr_tensor *cr_detach(cr_ctx *ctx, cr_tensor *x) {
  if (!cr__check_inputs(ctx, "detach", 1, &x))
    return NULL;
  cr_tensor *v = cr__view(ctx, x, x->ndim, x->shape, x->stride, x->data);
  return v; /* no node, requires_grad false */
}

const char *cr_grad_fn(const cr_tensor *t) { return t && t->node ? t->node->name : NULL; }
