/* hooks.c — looking at gradients as they flow: hooks, retained gradients,
 * the graph-carrying gradients of create_graph, and anomaly mode's switch. */
#include "op.h"

cr_status cr_register_hook(cr_ctx *ctx, cr_tensor *t, cr_grad_hook fn, void *user) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!cr__check_inputs(ctx, "register_hook", 1, &t))
    return ctx->status ? ctx->status : CR_ERR_ARG;
  if (!fn)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "register_hook: %s: the hook is NULL", cr__shp(t));
  if (!t->requires_grad)
    return cr_ctx_set_error(ctx, CR_ERR_STATE,
                            "register_hook: %s does not require grad, so no "
                            "gradient will reach it",
                            cr__shp(t));
  cr__hook *h = t->persistent ? cr__malloc(sizeof *h) : cr__alloc_for(ctx, t, sizeof *h);
  if (!h)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "register_hook: out of memory");
  *h = (cr__hook){NULL, fn, user, t->persistent};
  cr__hook **end = &t->hooks;
  while (*end)
    end = &(*end)->next;
  *end = h;
  return CR_OK;
}

void cr_clear_hooks(cr_tensor *t) {
  if (!t || t->magic != CR__TENSOR_MAGIC)
    return;
  for (cr__hook *h = t->hooks, *next; h; h = next) {
    next = h->next;
    if (h->heap)
      free(h);
  }
  t->hooks = NULL;
}

cr_tensor *cr__run_hooks(cr_ctx *ctx, cr_tensor *t, cr_tensor *g) {
  for (cr__hook *h = t->hooks; h && g; h = h->next) {
    cr_tensor *r = h->fn(ctx, t, g, h->user);
    if (!r) {
      if (ctx->status == CR_OK)
        cr__fail(ctx, CR_ERR_ARG, "hook on %s returned NULL without an error", cr__shp(t));
      return NULL;
    }
    if (r->magic != CR__TENSOR_MAGIC || r->ndim != g->ndim || r->dtype != g->dtype ||
        memcmp(r->shape, g->shape, sizeof(int64_t) * (size_t)g->ndim) != 0) {
      cr__fail(ctx, CR_ERR_SHAPE, "hook on %s returned %s %s, expected the gradient's %s %s",
               cr__shp(t), cr__shp(r), cr_dtype_name(r->dtype), cr__shape_only(g),
               cr_dtype_name(g->dtype));
      return NULL;
    }
    g = r;
  }
  return g;
}

void cr_retain_grad(cr_tensor *t) {
  if (t && t->magic == CR__TENSOR_MAGIC && t->node)
    t->retain_grad = true;
}

cr_tensor *cr_grad_graph(const cr_ctx *ctx, const cr_tensor *t) {
  if (!ctx || !t || t->magic != CR__TENSOR_MAGIC || !t->grad_graph)
    return NULL;
  return t->grad_graph_ctx == ctx && t->grad_graph_epoch == ctx->epoch ? t->grad_graph : NULL;
}

bool cr_set_detect_anomaly(cr_ctx *ctx, bool on) {
  if (!ctx)
    return false;
  bool old = ctx->anomaly;
  ctx->anomaly = on;
  return old;
}

bool cr_detect_anomaly(const cr_ctx *ctx) { return ctx && ctx->anomaly; }
