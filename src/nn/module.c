/* module.c — the module tree: building it, names and lookup, the
 * flattened state dict, parameters for the optimizers, freezing, forward
 * (see chainrule/module.h).  The built-in modules are module_layers.c and
 * module_rnn.c, printing module_print.c, saving and loading module_state.c. */
#include <fnmatch.h>

#include "module_impl.h"

/* ---- building */

cr_module *cr__module_make(cr_ctx *ctx, const char *op, const char *type) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  cr_module *m = cr__calloc(1, sizeof *m);
  if (!m)
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  snprintf(m->type, sizeof m->type, "%s", type && *type ? type : "Module");
  return m;
}

cr_module *cr_module_new(cr_ctx *ctx, const char *type_name) {
  return cr__module_make(ctx, "module_new", type_name);
}

static void flat_free(cr__mod_flat *f) {
  for (int i = 0; i < f->n; i++)
    free(f->names[i]);
  free(f->names);
  free(f->t);
  free(f->buffer);
  free(f->params);
  free(f->pnames);
  free(f->trainable);
  memset(f, 0, sizeof *f);
}

static void module_free(cr_module *m) {
  for (int i = 0; i < m->n_kids; i++)
    module_free(m->kids[i]);
  for (int i = 0; i < m->n_tensors; i++)
    if (m->tensors[i].owned)
      cr_tensor_free(m->tensors[i].t);
  if (m->impl_free)
    m->impl_free(m->impl);
  free(m->kids);
  free(m->tensors);
  flat_free(&m->flat);
  free(m);
}

void cr_module_free(cr_module *m) {
  if (m && !m->parent)
    module_free(m);
}

/* The tree below m changed: m's and its ancestors' flattened lists are stale. */
static void invalidate(cr_module *m) {
  for (; m; m = m->parent)
    m->flat.valid = false;
}

/* A local name: [A-Za-z0-9_]{1,63}, not yet used in m.  Else false and an
 * error naming op and what ("parameter", "submodule", ...). */
static bool name_ok(cr_ctx *ctx, const char *op, const cr_module *m, const char *name,
                    const char *what) {
  size_t len = name ? strlen(name) : 0;
  bool chars = len > 0 && len < CR__MOD_NAME_MAX;
  for (size_t i = 0; chars && i < len; i++) {
    char c = name[i];
    chars = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  if (!chars)
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: %s name '%.70s' for %s: use 1 to %d letters, digits "
                    "or '_' (a '.' would split the state dict's path)",
                    op, what, name ? name : "(NULL)", m->type, CR__MOD_NAME_MAX - 1),
           false;
  for (int i = 0; i < m->n_tensors; i++)
    if (!strcmp(m->tensors[i].name, name))
      return cr__fail(ctx, CR_ERR_ARG, "%s: %s already has a %s '%s'", op, m->type,
                      m->tensors[i].buffer ? "buffer" : "parameter", name),
             false;
  for (int i = 0; i < m->n_kids; i++)
    if (!strcmp(m->kids[i]->name, name))
      return cr__fail(ctx, CR_ERR_ARG, "%s: %s already has a submodule '%s'", op, m->type, name),
             false;
  return true;
}

/* Room for one more of n used in *arr of *cap elements of size sz. */
static bool grow(void **arr, int *cap, int n, size_t sz) {
  if (n < *cap)
    return true;
  int nc = *cap ? 2 * *cap : 4;
  void *p = realloc(*arr, (size_t)nc * sz);
  if (!p)
    return false;
  *arr = p;
  *cap = nc;
  return true;
}

cr_module *cr_module_add(cr_ctx *ctx, cr_module *parent, const char *name, cr_module *child) {
  static const char op[] = "module_add";
  if (!child)
    return NULL;
  if (child->parent) { /* owned by its tree: left alone */
    if (ctx && ctx->status == CR_OK)
      cr__fail(ctx, CR_ERR_ARG, "%s: %s '%s' is already submodule '%s' of %s", op, child->type,
               name ? name : "", child->name, child->parent->type);
    return NULL;
  }
  for (const cr_module *a = parent; a; a = a->parent)
    if (a == child) { /* parent is in child's tree: freeing child would free parent */
      if (ctx && ctx->status == CR_OK)
        cr__fail(ctx, CR_ERR_ARG, "%s: %s would contain itself", op, child->type);
      return NULL;
    }
  if (!ctx || ctx->status != CR_OK || !parent || !name_ok(ctx, op, parent, name, "submodule") ||
      !grow((void **)&parent->kids, &parent->cap_kids, parent->n_kids, sizeof *parent->kids)) {
    if (ctx && ctx->status == CR_OK)
      cr__fail(ctx, parent ? CR_ERR_NOMEM : CR_ERR_ARG, "%s: %s (adding %s '%s')", op,
               parent ? "out of memory" : "parent is NULL", child->type, name ? name : "");
    cr_module_free(child);
    return NULL;
  }
  parent->kids[parent->n_kids++] = child;
  snprintf(child->name, sizeof child->name, "%s", name);
  child->parent = parent;
  invalidate(parent);
  return child;
}

bool cr__module_put(cr_ctx *ctx, const char *op, cr_module *m, const char *name, cr_tensor *t,
                    bool buffer, bool owned) {
  if (!name_ok(ctx, op, m, name, buffer ? "buffer" : "parameter"))
    return false;
  if (!grow((void **)&m->tensors, &m->cap_tensors, m->n_tensors, sizeof *m->tensors))
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op), false;
  cr__mod_tensor *e = &m->tensors[m->n_tensors++];
  snprintf(e->name, sizeof e->name, "%s", name);
  e->t = t;
  e->buffer = buffer;
  e->owned = owned;
  if (!*cr_name(t))
    cr_set_name(t, name);
  invalidate(m);
  return true;
}

static cr_tensor *add_tensor(cr_ctx *ctx, const char *op, cr_module *m, const char *name,
                             cr_dtype dt, int ndim, const int64_t *shape, bool buffer) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  if (!m)
    return cr__fail(ctx, CR_ERR_ARG, "%s: module is NULL (adding '%s')", op, name ? name : "");
  if (dt != CR_F32 && dt != CR_F64)
    return cr__fail(ctx, CR_ERR_DTYPE,
                    "%s: '%s' of %s: dtype must be f32 or f64 (what "
                    "checkpoints store)",
                    op, name ? name : "", m->type);
  if (!name_ok(ctx, op, m, name, buffer ? "buffer" : "parameter"))
    return NULL;
  cr_tensor *t = cr_tensor_new(ctx, dt, ndim, shape);
  if (!t)
    return NULL;
  cr_set_requires_grad(t, !buffer);
  if (!cr__module_put(ctx, op, m, name, t, buffer, true)) {
    cr_tensor_free(t);
    return NULL;
  }
  return t;
}

cr_tensor *cr_module_add_param(cr_ctx *ctx, cr_module *m, const char *name, cr_dtype dt, int ndim,
                               const int64_t *shape) {
  return add_tensor(ctx, "module_add_param", m, name, dt, ndim, shape, false);
}

cr_tensor *cr_module_add_buffer(cr_ctx *ctx, cr_module *m, const char *name, cr_dtype dt, int ndim,
                                const int64_t *shape) {
  return add_tensor(ctx, "module_add_buffer", m, name, dt, ndim, shape, true);
}

/* ---- forward */

void cr_module_set_forward(cr_module *m, cr_module_forward_fn fn, void *user) {
  if (!m)
    return;
  m->forward = fn;
  m->user = user;
}

void *cr_module_user(const cr_module *m) { return m ? m->user : NULL; }

cr_tensor *cr_module_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x) {
  if (!ctx || ctx->status != CR_OK || !x)
    return NULL;
  if (!m)
    return cr__fail(ctx, CR_ERR_ARG, "module_forward: module is NULL");
  if (!m->forward)
    return cr__fail(ctx, CR_ERR_ARG,
                    "module_forward: %s has no forward: call your own "
                    "function, or give it one with cr_module_set_forward",
                    m->type);
  cr_tensor *y = m->forward(ctx, m, x);
  if (!y && ctx->status == CR_OK)
    cr__fail(ctx, CR_ERR_ARG,
             "module_forward: the forward of %s returned NULL without an "
             "error",
             m->type);
  return y;
}

/* ---- names and lookup */

const char *cr_module_type(const cr_module *m) { return m ? m->type : ""; }
const char *cr_module_name(const cr_module *m) { return m ? m->name : ""; }

/* The child of m called by the first len bytes of name, or NULL. */
static cr_module *child_n(const cr_module *m, const char *name, size_t len) {
  for (int i = 0; i < m->n_kids; i++)
    if (strlen(m->kids[i]->name) == len && !strncmp(m->kids[i]->name, name, len))
      return m->kids[i];
  return NULL;
}

cr_module *cr_module_get(const cr_module *m, const char *path) {
  if (!m || !path || !*path)
    return NULL;
  for (const char *dot; m && (dot = strchr(path, '.')); path = dot + 1)
    m = child_n(m, path, (size_t)(dot - path));
  return m ? child_n(m, path, strlen(path)) : NULL;
}

cr_tensor *cr_module_tensor(const cr_module *m, const char *name) {
  if (!m || !name)
    return NULL;
  const char *dot = strrchr(name, '.');
  if (dot) {
    char path[512];
    size_t len = (size_t)(dot - name);
    if (len >= sizeof path)
      return NULL;
    memcpy(path, name, len);
    path[len] = '\0';
    m = cr_module_get(m, path);
    name = dot + 1;
  }
  for (int i = 0; m && i < m->n_tensors; i++)
    if (!strcmp(m->tensors[i].name, name))
      return m->tensors[i].t;
  return NULL;
}

/* ---- the flattened tree */

/* Room for need entries in every array of f (cap grows only when all of
 * them could grow, so a failure leaves f consistent). */
static bool flat_reserve(cr__mod_flat *f, int need) {
  if (need <= f->cap)
    return true;
  size_t nc = (size_t)(need > 2 * f->cap ? need : 2 * f->cap);
  nc = nc < 8 ? 8 : nc;
#define GROW(field)                                                                                \
  do {                                                                                             \
    void *p = realloc((void *)f->field, nc * sizeof *f->field);                                    \
    if (!p)                                                                                        \
      return false;                                                                                \
    f->field = p;                                                                                  \
  } while (0)
  GROW(names);
  GROW(t);
  GROW(buffer);
  GROW(params);
  GROW(pnames);
  GROW(trainable);
#undef GROW
  f->cap = (int)nc;
  return true;
}

/* Append prefix + e's name; false when out of memory. */
static bool flat_push(cr__mod_flat *f, const char *prefix, const cr__mod_tensor *e) {
  size_t len = strlen(prefix) + strlen(e->name) + 1;
  char *name = flat_reserve(f, f->n + 1) ? cr__malloc(len) : NULL;
  if (!name)
    return false;
  snprintf(name, len, "%s%s", prefix, e->name);
  f->names[f->n] = name;
  f->t[f->n] = e->t;
  f->buffer[f->n] = e->buffer;
  f->n++;
  return true;
}

/* m's state dict under prefix: own parameters, own buffers, children. */
static bool flat_walk(cr__mod_flat *f, const cr_module *m, const char *prefix) {
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < m->n_tensors; i++)
      if (m->tensors[i].buffer == (pass == 1) && !flat_push(f, prefix, &m->tensors[i]))
        return false;
  for (int i = 0; i < m->n_kids; i++) {
    size_t len = strlen(prefix) + strlen(m->kids[i]->name) + 2;
    char *sub = cr__malloc(len);
    if (!sub)
      return false;
    snprintf(sub, len, "%s%s.", prefix, m->kids[i]->name);
    bool ok = flat_walk(f, m->kids[i], sub);
    free(sub);
    if (!ok)
      return false;
  }
  return true;
}

const cr__mod_flat *cr__module_flat(cr_module *m) {
  cr__mod_flat *f = &m->flat;
  if (f->valid)
    return f;
  for (int i = 0; i < f->n; i++)
    free(f->names[i]);
  f->n = 0;
  f->n_params = 0;
  if (!flat_reserve(f, 1) || !flat_walk(f, m, ""))
    return NULL;
  for (int i = 0; i < f->n; i++)
    if (!f->buffer[i]) {
      f->params[f->n_params] = f->t[i];
      f->pnames[f->n_params++] = f->names[i];
    }
  f->valid = true;
  return f;
}

cr_tensor *const *cr_module_parameters(cr_module *m, int *n) {
  const cr__mod_flat *f = m ? cr__module_flat(m) : NULL;
  int k = 0;
  for (int i = 0; f && i < f->n_params; i++)
    if (cr_requires_grad(f->params[i]))
      f->trainable[k++] = f->params[i];
  if (n)
    *n = k;
  return f ? f->trainable : NULL;
}

cr_optim *cr_module_optim(cr_ctx *ctx, cr_module *m, cr_optim_kind kind, double lr) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  if (!m)
    return cr__fail(ctx, CR_ERR_ARG, "module_optim: module is NULL");
  int n;
  cr_tensor *const *p = cr_module_parameters(m, &n);
  if (!p)
    return cr__fail(ctx, CR_ERR_NOMEM, "module_optim: out of memory");
  if (n == 0)
    return cr__fail(ctx, CR_ERR_ARG, "module_optim: %s has no trainable parameters", m->type);
  cr_optim_opts o;
  cr_optim_default_opts(kind, &o);
  o.lr = lr;
  return cr_optim_new(ctx, &o, p, n);
}

cr_tensor *const *cr_module_named_parameters(cr_module *m, int *n, const char *const **names) {
  const cr__mod_flat *f = m ? cr__module_flat(m) : NULL;
  if (n)
    *n = f ? f->n_params : 0;
  if (names)
    *names = f ? f->pnames : NULL;
  return f ? f->params : NULL;
}

cr_tensor *const *cr_module_state_dict(cr_module *m, int *n, const char *const **names,
                                       const bool **is_buffer) {
  const cr__mod_flat *f = m ? cr__module_flat(m) : NULL;
  if (n)
    *n = f ? f->n : 0;
  if (names)
    *names = f ? (const char *const *)f->names : NULL;
  if (is_buffer)
    *is_buffer = f ? f->buffer : NULL;
  return f ? f->t : NULL;
}

/* ---- counting, zeroing, freezing (by walking the tree: no allocation) */

static int64_t count(const cr_module *m, bool trainable_only) {
  int64_t s = 0;
  for (int i = 0; m && i < m->n_tensors; i++)
    if (!m->tensors[i].buffer && (!trainable_only || cr_requires_grad(m->tensors[i].t)))
      s += cr_numel(m->tensors[i].t);
  for (int i = 0; m && i < m->n_kids; i++)
    s += count(m->kids[i], trainable_only);
  return s;
}

int64_t cr_module_num_params(const cr_module *m) { return count(m, false); }
int64_t cr_module_num_trainable(const cr_module *m) { return count(m, true); }

void cr_module_zero_grad(cr_module *m) {
  for (int i = 0; m && i < m->n_tensors; i++)
    if (!m->tensors[i].buffer)
      cr_zero_grad(m->tensors[i].t);
  for (int i = 0; m && i < m->n_kids; i++)
    cr_module_zero_grad(m->kids[i]);
}

/* Does the full name match the pattern: the name, a glob, or the path of
 * a submodule holding it ("rnn" for "rnn.weight_ih_l0")? */
static bool matches(const char *pattern, const char *name) {
  if (!pattern || fnmatch(pattern, name, 0) == 0)
    return true;
  size_t len = strlen(pattern);
  return !strpbrk(pattern, "*?[") && !strncmp(name, pattern, len) && name[len] == '.';
}

static int set_trainable(cr_ctx *ctx, const char *op, cr_module *m, const char *pattern, bool on) {
  if (!ctx || ctx->status != CR_OK)
    return -1;
  if (!m)
    return cr__fail(ctx, CR_ERR_ARG, "%s: module is NULL", op), -1;
  const char *const *names;
  int n, hit = 0;
  cr_tensor *const *p = cr_module_named_parameters(m, &n, &names);
  if (!p)
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op), -1;
  for (int i = 0; i < n; i++)
    if (matches(pattern, names[i])) {
      cr_set_requires_grad(p[i], on);
      hit++;
    }
  if (hit)
    return hit;
  char have[200] = "";
  size_t k = 0;
  for (int i = 0; i < n && k < sizeof have; i++)
    k += (size_t)snprintf(have + k, sizeof have - k, "%s%s", i ? ", " : "", names[i]);
  if (k >= sizeof have)
    memcpy(have + sizeof have - 5, "...", 4);
  return cr__fail(ctx, CR_ERR_ARG, "%s: '%.80s' matches no parameter of %s (it has %s)", op,
                  pattern, m->type, n ? have : "none"),
         -1;
}

int cr_module_freeze(cr_ctx *ctx, cr_module *m, const char *pattern) {
  return set_trainable(ctx, "module_freeze", m, pattern, false);
}

int cr_module_unfreeze(cr_ctx *ctx, cr_module *m, const char *pattern) {
  return set_trainable(ctx, "module_unfreeze", m, pattern, true);
}
