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
 * backpropagation through time is this loop on the unrolled graph. */
#include "op.h"

/* Nodes reachable from root, in post-order (inputs before consumers). */
static cr_node **topo_order(cr_ctx *ctx, cr_node *root, size_t *count) {
  size_t cap = ctx->nodes + 1;
  cr_node **order = cr__alloc(ctx, cap * sizeof *order);
  /* explicit stack of (node, next input to visit) */
  cr_node **stack = cr__alloc(ctx, cap * sizeof *stack);
  int *next_in = cr__alloc(ctx, cap * sizeof *next_in);
  if (!order || !stack || !next_in)
    return NULL;
  size_t n = 0, sp = 0;
  uint32_t pass = ctx->pass;
  root->mark = pass;
  stack[sp] = root;
  next_in[sp++] = 0;
  while (sp) {
    cr_node *nd = stack[sp - 1];
    int i = next_in[sp - 1]++;
    if (i < nd->n_in) {
      cr_tensor *in = nd->in[i];
      cr_node *child = in ? in->node : NULL;
      if (child && child->mark != pass) {
        child->mark = pass;
        CR_ASSERT(sp < cap, "graph walk overflow");
        stack[sp] = child;
        next_in[sp++] = 0;
      }
    } else {
      order[n++] = nd;
      sp--;
    }
  }
  *count = n;
  return order;
}

extern const cr_op_desc cr__op_slice, cr__op_reshape;

/* A slice's gradient can be a strided view into its input's gradient (so
 * no separate buffer and no copy back) when every op that consumes the
 * slice in this graph writes input gradients through strides, or is a
 * reshape of a contiguous axis-0 slice (whose view is dense). */
static void mark_slice_consumers(cr_ctx *ctx, cr_node *const *order, size_t n) {
  for (size_t i = 0; i < n; i++) {
    cr_node *nd = order[i];
    for (int k = 0; k < nd->n_in; k++) {
      cr_tensor *t = nd->in[k];
      if (!t || !t->node || t->node->op != &cr__op_slice)
        continue;
      if (t->alias_pass != ctx->pass) {
        t->alias_pass = ctx->pass;
        t->alias_bad = false;
      }
      const cr_node *sl = t->node;
      bool dense_view = sl->iattr[0] == 0 && sl->iattr[2] == 1 && !(sl->in[0]->node &&
                        sl->in[0]->node->op == &cr__op_slice);
      bool ok = nd->op->strided_input_grads || (nd->op == &cr__op_reshape && dense_view);
      t->alias_bad |= !ok;
    }
  }
}

static cr_status backward_impl(cr_ctx *ctx, cr_tensor *y, cr_tensor *seed) {
  ctx->pass++;
  ctx->deferred = NULL;
  ctx->n_owed = 0;
  cr_tensor *gy = cr__grad_acc(ctx, y);
  if (!gy)
    return ctx->status ? ctx->status : CR_ERR_NOMEM;
  if (seed) {
    /* gy += seed (gy is fresh for an intermediate; a leaf accumulates) */
    cr_tensor *s = seed;
    if (!cr__is_contig(s)) {
      s = cr__new(ctx, seed->dtype, seed->ndim, seed->shape);
      if (!s)
        return ctx->status;
      cr__gather(seed, s->data);
    }
    if (s->dtype != gy->dtype) {
      for (int64_t i = 0; i < gy->numel; i++)
        cr_set_flat(gy, i, cr_get_flat(gy, i) + cr_get_flat(s, i));
    } else {
      cr__add_dense(gy, s);
    }
  } else {
    cr_set_flat(gy, 0, cr_get_flat(gy, 0) + 1.0);
  }
  if (!y->node)
    return CR_OK; /* a leaf: its own gradient is the seed */
  size_t n;
  cr_node **order = topo_order(ctx, y->node, &n);
  if (!order)
    return ctx->status;
  mark_slice_consumers(ctx, order, n);
  for (size_t i = n; i-- > 0;) {
    cr_node *nd = order[i];
    cr_tensor *g = nd->out->grad;
    if (g && nd->out->grad_pass == ctx->pass) {
      cr__settle_deferred(ctx, g); /* its gradient is complete only now */
      nd->op->vjp(ctx, nd);
    }
    if (ctx->status != CR_OK)
      break;
  }
  cr__settle_all_deferred(ctx);
  return ctx->status;
}

static bool backward_check(cr_ctx *ctx, const char *op, cr_tensor *y) {
  if (!cr__check_inputs(ctx, op, 1, &y))
    return false;
  if (!y->requires_grad) {
    cr__fail(ctx, CR_ERR_STATE, "%s: %s does not require grad: no input of the graph "
             "that made it requires grad (did you forget cr_set_requires_grad, or "
             "build it with grad mode off?)", op, cr__shp(y));
    return false;
  }
  return true;
}

cr_status cr_backward(cr_ctx *ctx, cr_tensor *loss) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!backward_check(ctx, "backward", loss))
    return ctx->status ? ctx->status : CR_ERR_ARG;
  if (loss->numel != 1)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "backward: %s: output has %lld elements; "
                            "backward needs a one-element loss, or a seed gradient "
                            "(cr_backward_seed)", cr__shp(loss), (long long)loss->numel);
  return backward_impl(ctx, loss, NULL);
}

cr_status cr_backward_seed(cr_ctx *ctx, cr_tensor *y, cr_tensor *seed) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!backward_check(ctx, "backward_seed", y))
    return ctx->status ? ctx->status : CR_ERR_ARG;
  if (!seed)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "backward_seed: seed is NULL");
  if (!cr__check_inputs(ctx, "backward_seed", 1, &seed))
    return ctx->status;
  if (seed->ndim != y->ndim ||
      memcmp(seed->shape, y->shape, sizeof(int64_t) * (size_t)y->ndim) != 0)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "backward_seed: output %s, seed %s: shapes "
                            "differ", cr__shp(y), cr__shp(seed));
  return backward_impl(ctx, y, seed);
}

cr_tensor *cr_detach(cr_ctx *ctx, cr_tensor *x) {
  if (!cr__check_inputs(ctx, "detach", 1, &x))
    return NULL;
  cr_tensor *v = cr__view(ctx, x, x->ndim, x->shape, x->stride, x->data);
  return v; /* no node, requires_grad false */
}

const char *cr_grad_fn(const cr_tensor *t) {
  return t && t->node ? t->node->op->name : NULL;
}

void cr_graph_dot(FILE *f, const cr_tensor *t) {
  fprintf(f, "digraph chainrule {\n  rankdir=BT;\n  node [fontname=\"monospace\"];\n");
  if (t && t->node && t->ctx) {
    cr_ctx *ctx = t->ctx;
    ctx->pass++;
    size_t n;
    cr_node **order = topo_order(ctx, t->node, &n);
    for (size_t i = 0; order && i < n; i++) {
      cr_node *nd = order[i];
      fprintf(f, "  n%p [shape=box,label=\"%s\\n%s\"];\n", (void *)nd, nd->op->name,
              cr__shp(nd->out));
      for (int k = 0; k < nd->n_in; k++) {
        cr_tensor *in = nd->in[k];
        if (in->node) {
          fprintf(f, "  n%p -> n%p;\n", (void *)in->node, (void *)nd);
        } else {
          fprintf(f, "  t%p [shape=ellipse,label=\"%s%s\"];\n  t%p -> n%p;\n", (void *)in,
                  cr__shp(in), in->requires_grad ? "\\nrequires_grad" : "", (void *)in,
                  (void *)nd);
        }
      }
    }
  }
  fprintf(f, "}\n");
}
