/* custom.c — ops defined by the user (chainrule/function.h).
 *
 *   function: y = def->forward(x_0 .. x_{n-1});
 *             gx_k += def->backward(gy)[k]
 *
 * The forward runs with grad mode off.  The backward is made of ops, so it
 * is at once the kernel VJP (run with grad mode off, its results added
 * into the gradient buffers) and the graph VJP (run as it is, recorded
 * when backward records its own graph). */
#include "chainrule/function.h"

#include "op.h"

struct cr_fn_ctx {
  const cr_function_def *def;
  void *user;
  cr_node *node; /* NULL until recorded */
  cr_tensor *const *in;
  int n_in;
  cr_tensor *out;
  int n_saved;
  cr_tensor *saved[CR_FN_MAX_SAVED];
};

static void function_vjp(cr_ctx *ctx, cr_node *nd);
static cr_status function_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx);

const cr_op_desc cr__op_function = {.name = "function",
                                    .n_inputs = -1,
                                    .vjp = function_vjp,
                                    .vjp_graph = function_vjp_graph,
                                    .reads = CR__READS_ALL};

cr_status cr_fn_save(cr_fn_ctx *fc, cr_tensor *t) {
  if (!fc || !t || fc->n_saved >= CR_FN_MAX_SAVED)
    return CR_ERR_ARG;
  fc->saved[fc->n_saved++] = t;
  return CR_OK;
}
cr_tensor *cr_fn_saved(const cr_fn_ctx *fc, int i) {
  return fc && i >= 0 && i < fc->n_saved ? fc->saved[i] : NULL;
}
cr_tensor *cr_fn_input(const cr_fn_ctx *fc, int i) {
  return fc && i >= 0 && i < fc->n_in ? fc->in[i] : NULL;
}
cr_tensor *cr_fn_output(const cr_fn_ctx *fc) { return fc ? fc->out : NULL; }
bool cr_fn_needs_grad(const cr_fn_ctx *fc, int i) {
  return fc && i >= 0 && i < fc->n_in && fc->in[i]->requires_grad;
}

cr_tensor *cr_function_apply(cr_ctx *ctx, const cr_function_def *def, cr_tensor *const *in, int n,
                             void *user) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  const char *name = def && def->name ? def->name : "function";
  if (!def || !def->forward || !def->backward)
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: the function definition is NULL or lacks forward "
                    "or backward",
                    name);
  if (!in || n < 1 || n > CR_FN_MAX_INPUTS || (def->n_inputs >= 0 && n != def->n_inputs))
    return cr__fail(ctx, CR_ERR_ARG, "%s: %d inputs given, it takes %d (at most %d)", name, n,
                    def->n_inputs, CR_FN_MAX_INPUTS);
  if (!cr__check_inputs(ctx, name, n, in))
    return NULL;
  cr_fn_ctx *fc = cr__alloc(ctx, sizeof *fc);
  cr_tensor **ins = cr__alloc(ctx, (size_t)n * sizeof *ins);
  if (!fc || !ins)
    return NULL;
  memcpy(ins, in, (size_t)n * sizeof *ins);
  *fc = (cr_fn_ctx){def, user, NULL, ins, n, NULL, 0, {NULL}};
  bool was = cr_set_grad_enabled(ctx, false);
  cr_tensor *y = def->forward(ctx, fc, ins, n, user);
  cr_set_grad_enabled(ctx, was);
  if (!y || ctx->status != CR_OK)
    return ctx->status != CR_OK ? NULL
                                : cr__fail(ctx, CR_ERR_ARG,
                                           "%s: forward returned NULL "
                                           "without an error",
                                           name);
  /* the output needs a header of its own (not an input, nor a tensor
   * made elsewhere) for the node to hang on */
  bool own = !y->node && !y->persistent;
  for (int k = 0; k < n; k++)
    own &= y != in[k];
  if (!own && !(y = cr_detach(ctx, y)))
    return NULL;
  fc->out = y;
  cr_node *nd = cr__record(ctx, &cr__op_function, y, n, ins);
  if (nd) {
    nd->name = name;
    nd->saved = fc;
    fc->node = nd;
  }
  return ctx->status == CR_OK ? y : NULL;
}

/* Run the user's backward; check what it returned against the inputs. */
static cr_status run_backward(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  cr_fn_ctx *fc = nd->saved;
  for (int k = 0; k < nd->n_in; k++)
    gx[k] = NULL;
  cr_status st = fc->def->backward(ctx, fc, gy, gx, fc->user);
  if (st == CR_OK && ctx->status != CR_OK)
    st = ctx->status;
  if (st != CR_OK)
    return ctx->status != CR_OK ? ctx->status
                                : cr_ctx_set_error(ctx, st,
                                                   "%s: backward failed (status %s) "
                                                   "without a message",
                                                   nd->name, cr_status_name(st));
  for (int k = 0; k < nd->n_in; k++) {
    cr_tensor *x = nd->in[k], *g = gx[k];
    if (!g)
      continue;
    if (g->magic != CR__TENSOR_MAGIC || g->dtype != x->dtype || g->ndim != x->ndim ||
        memcmp(g->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) != 0)
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                              "%s: backward returned gradient %s %s for "
                              "input %d, which is %s %s",
                              nd->name, cr__shp(g), cr_dtype_name(g->dtype), k, cr__shp(x),
                              cr_dtype_name(x->dtype));
    if (!x->requires_grad)
      gx[k] = NULL;
  }
  return CR_OK;
}

static void function_vjp(cr_ctx *ctx, cr_node *nd) {
  cr_tensor *gx[CR_FN_MAX_INPUTS];
  bool was = cr_set_grad_enabled(ctx, false);
  cr_status st = run_backward(ctx, nd, nd->out->grad, gx);
  cr_set_grad_enabled(ctx, was);
  for (int k = 0; st == CR_OK && k < nd->n_in; k++) {
    if (!gx[k])
      continue;
    bool fresh;
    cr_tensor *buf = cr__grad_acc_fresh(ctx, nd->in[k], &fresh);
    if (buf)
      cr__copy_convert(buf, gx[k], !fresh);
  }
}

static cr_status function_vjp_graph(cr_ctx *ctx, cr_node *nd, cr_tensor *gy, cr_tensor **gx) {
  return run_backward(ctx, nd, gy, gx);
}
