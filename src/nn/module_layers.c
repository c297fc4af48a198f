/* module_layers.c — the built-in modules without recurrence: Linear,
 * Embedding, LayerNorm, Dropout, one-op modules (Tanh, ...) and Sequential,
 * each with PyTorch's parameter names, shapes and default initialisation.
 * Their forwards are the ops: a module adds names, not math. */
#include "chainrule/init.h"
#include "module_impl.h"

/* What a built-in's forward reads besides its tensors. */
typedef struct layer_impl {
  int k;                                       /* LayerNorm: normalised dims */
  double p;                                    /* Dropout: probability; LayerNorm: eps */
  cr_rng *rng;                                 /* Dropout: borrowed */
  cr_tensor *(*fn)(cr_ctx *ctx, cr_tensor *x); /* a one-op module */
} layer_impl;

static layer_impl *impl_of(const cr_module *m) { return m->impl; }

/* A new module of type with forward fn and an impl (zeroed); NULL on error. */
static cr_module *make(cr_ctx *ctx, const char *op, const char *type, cr_module_forward_fn fn) {
  cr_module *m = cr__module_make(ctx, op, type);
  if (m && !(m->impl = cr__calloc(1, sizeof(layer_impl)))) {
    cr_module_free(m);
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  }
  if (m) {
    m->impl_free = free;
    m->forward = fn;
  }
  return m;
}

/* A parameter of m, or NULL (m freed) on error. */
static cr_tensor *param(cr_ctx *ctx, cr_module **m, const char *name, cr_dtype dt, int ndim,
                        const int64_t *shape) {
  cr_tensor *p = cr_module_add_param(ctx, *m, name, dt, ndim, shape);
  if (!p) {
    cr_module_free(*m);
    *m = NULL;
  }
  return p;
}

static bool dtype_ok(cr_ctx *ctx, const char *op, cr_dtype dt) {
  if (dt == CR_F32 || dt == CR_F64)
    return true;
  return cr__fail(ctx, CR_ERR_DTYPE, "%s: dtype must be f32 or f64", op), false;
}

static bool size_ok(cr_ctx *ctx, const char *op, const char *what, int64_t v) {
  if (v >= 1 && v <= CR__MAX_NUMEL)
    return true;
  return cr__fail(ctx, CR_ERR_ARG, "%s: %s %lld must be >= 1", op, what, (long long)v), false;
}

/* ---- Linear: y = x W^T + b */

static cr_tensor *linear_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x) {
  return cr_linear(ctx, x, m->tensors[0].t, m->n_tensors > 1 ? m->tensors[1].t : NULL);
}

cr_module *cr_nn_linear(cr_ctx *ctx, int64_t in, int64_t out, bool bias, cr_dtype dt, cr_rng *rng) {
  static const char op[] = "nn_linear";
  if (!ctx || ctx->status != CR_OK || !size_ok(ctx, op, "in_features", in) ||
      !size_ok(ctx, op, "out_features", out) || !dtype_ok(ctx, op, dt))
    return NULL;
  if (!rng)
    return cr__fail(ctx, CR_ERR_ARG, "%s: rng is NULL (the parameters are drawn from it)", op);
  cr_module *m = make(ctx, op, "Linear", linear_forward);
  cr_tensor *W = m ? param(ctx, &m, "weight", dt, CR_SHAPE(out, in)) : NULL;
  cr_tensor *b = W && bias ? param(ctx, &m, "bias", dt, CR_SHAPE(out)) : NULL;
  if (!m)
    return NULL;
  snprintf(m->extra, sizeof m->extra, "in_features=%lld, out_features=%lld, bias=%s", (long long)in,
           (long long)out, bias ? "True" : "False");
  /* PyTorch's reset_parameters: kaiming_uniform_(W, a=sqrt(5)) is
   * U(-1/sqrt(in), 1/sqrt(in)) up to rounding; the bias U(-1/sqrt(in), 1/sqrt(in)) */
  double bound = 1 / sqrt((double)in);
  if (cr_init_kaiming_uniform(ctx, W, rng, sqrt(5.0), CR_FAN_IN, "leaky_relu") != CR_OK ||
      (b && cr_init_uniform(ctx, b, rng, -bound, bound) != CR_OK)) {
    cr_module_free(m);
    return NULL;
  }
  return m;
}

/* ---- Embedding: y[..., :] = W[ids[...], :] */

static cr_tensor *embedding_forward(cr_ctx *ctx, cr_module *m, cr_tensor *ids) {
  return cr_embedding_t(ctx, m->tensors[0].t, ids);
}

cr_module *cr_nn_embedding(cr_ctx *ctx, int64_t V, int64_t E, cr_dtype dt, cr_rng *rng) {
  static const char op[] = "nn_embedding";
  if (!ctx || ctx->status != CR_OK || !size_ok(ctx, op, "num_embeddings", V) ||
      !size_ok(ctx, op, "embedding_dim", E) || !dtype_ok(ctx, op, dt))
    return NULL;
  if (!rng)
    return cr__fail(ctx, CR_ERR_ARG, "%s: rng is NULL (the parameters are drawn from it)", op);
  cr_module *m = make(ctx, op, "Embedding", embedding_forward);
  cr_tensor *W = m ? param(ctx, &m, "weight", dt, CR_SHAPE(V, E)) : NULL;
  if (!m)
    return NULL;
  snprintf(m->extra, sizeof m->extra, "%lld, %lld", (long long)V, (long long)E);
  if (cr_init_normal(ctx, W, rng, 0, 1) != CR_OK) {
    cr_module_free(m);
    return NULL;
  }
  return m;
}

/* ---- LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias */

static cr_tensor *layer_norm_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x) {
  const layer_impl *im = impl_of(m);
  bool affine = m->n_tensors == 2;
  return cr_layer_norm(ctx, x, im->k, affine ? m->tensors[0].t : NULL,
                       affine ? m->tensors[1].t : NULL, im->p);
}

cr_module *cr_nn_layer_norm(cr_ctx *ctx, int ndim, const int64_t *shape, double eps, bool affine,
                            cr_dtype dt) {
  static const char op[] = "nn_layer_norm";
  if (!ctx || ctx->status != CR_OK || !dtype_ok(ctx, op, dt) ||
      !cr__check_shape(ctx, op, ndim, shape))
    return NULL;
  if (!(eps > 0) || !isfinite(eps))
    return cr__fail(ctx, CR_ERR_ARG, "%s: eps %g must be finite and > 0", op, eps);
  cr_module *m = make(ctx, op, "LayerNorm", layer_norm_forward);
  cr_tensor *w = m && affine ? param(ctx, &m, "weight", dt, ndim, shape) : NULL;
  cr_tensor *b = w ? param(ctx, &m, "bias", dt, ndim, shape) : NULL;
  if (!m)
    return NULL;
  impl_of(m)->k = ndim;
  impl_of(m)->p = eps;
  int k = snprintf(m->extra, sizeof m->extra, "(");
  for (int d = 0; d < ndim; d++)
    k += snprintf(m->extra + k, sizeof m->extra - (size_t)k, "%lld,%s", (long long)shape[d],
                  d + 1 < ndim ? " " : "");
  snprintf(m->extra + k, sizeof m->extra - (size_t)k, "), eps=%g, elementwise_affine=%s", eps,
           affine ? "True" : "False");
  if (affine && (cr_init_ones(ctx, w) != CR_OK || cr_init_zeros(ctx, b) != CR_OK)) {
    cr_module_free(m);
    return NULL;
  }
  return m;
}

/* ---- Dropout */

static cr_tensor *dropout_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x) {
  return cr_dropout(ctx, x, impl_of(m)->p, impl_of(m)->rng);
}

cr_module *cr_nn_dropout(cr_ctx *ctx, double p, cr_rng *rng) {
  static const char op[] = "nn_dropout";
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  if (!(p >= 0 && p < 1))
    return cr__fail(ctx, CR_ERR_ARG, "%s: p %g must be in [0, 1)", op, p);
  if (!rng && p > 0)
    return cr__fail(ctx, CR_ERR_ARG, "%s: rng is NULL (dropout draws its masks from it)", op);
  cr_module *m = make(ctx, op, "Dropout", dropout_forward);
  if (m) {
    impl_of(m)->p = p;
    impl_of(m)->rng = rng;
    snprintf(m->extra, sizeof m->extra, "p=%g", p);
  }
  return m;
}

/* ---- modules of one op */

static cr_tensor *func_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x) {
  return impl_of(m)->fn(ctx, x);
}

cr_module *cr_nn_func(cr_ctx *ctx, const char *type, cr_tensor *(*fn)(cr_ctx *, cr_tensor *)) {
  if (ctx && ctx->status == CR_OK && !fn)
    return cr__fail(ctx, CR_ERR_ARG, "nn_func: fn is NULL (for %s)", type ? type : "Module");
  cr_module *m = make(ctx, "nn_func", type, func_forward);
  if (m)
    impl_of(m)->fn = fn;
  return m;
}

cr_module *cr_nn_tanh(cr_ctx *ctx) { return cr_nn_func(ctx, "Tanh", cr_tanh); }
cr_module *cr_nn_relu(cr_ctx *ctx) { return cr_nn_func(ctx, "ReLU", cr_relu); }
cr_module *cr_nn_sigmoid(cr_ctx *ctx) { return cr_nn_func(ctx, "Sigmoid", cr_sigmoid); }
cr_module *cr_nn_gelu(cr_ctx *ctx) { return cr_nn_func(ctx, "GELU", cr_gelu); }

/* ---- Sequential: x -> m_0(x) -> m_1(...) -> ... */

static cr_tensor *sequential_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x) {
  for (int i = 0; x && i < m->n_kids; i++)
    x = cr_module_forward(ctx, m->kids[i], x);
  return x;
}

cr_module *cr_nn_sequential(cr_ctx *ctx, int n, cr_module *const *mods) {
  static const char op[] = "nn_sequential";
  bool ok = ctx && ctx->status == CR_OK;
  if (ok && (n < 0 || (n > 0 && !mods)))
    ok = cr__fail(ctx, CR_ERR_ARG, "%s: %d modules and mods %s", op, n, mods ? "given" : "NULL") !=
         NULL;
  for (int i = 0; ok && i < n; i++)
    if (!mods[i])
      ok = cr__fail(ctx, CR_ERR_ARG, "%s: module %d is NULL (its constructor failed?)", op, i) !=
           NULL;
  cr_module *m = ok ? make(ctx, op, "Sequential", sequential_forward) : NULL;
  for (int i = 0; i < n && mods; i++) {
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    if (m && !cr_module_add(ctx, m, name, mods[i])) {
      cr_module_free(m); /* with the modules added so far */
      m = NULL;
    } else if (!m) {
      cr_module_free(mods[i]);
    }
  }
  return m;
}
