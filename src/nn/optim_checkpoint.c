/* optim_checkpoint.c — saving an optimizer's state into a safetensors
 * writer and loading it back (cr_optim_save / cr_optim_load, see optim.h).
 * Loading checks everything before it changes anything. */
#include "optim_impl.h"

#include <errno.h>
#include <inttypes.h>

/* Layout (P the prefix; see optim.h): metadata P"kind", P"steps",
 * P"num_params", P"num_groups", P"group_sizes", P"param_steps"; tensors
 * P"lr", P"base_lr" [G], and for every parameter i P"<i>.<buffer>" (its
 * shape and dtype) for each buffer that exists and P"<i>.<scalar>" [1] f64
 * for each scalar of the optimizer's row. */

#define KEY_MAX 512

/* prefix + suffix into k[KEY_MAX]; false and an error naming op if too long. */
static bool make_key(cr_ctx *ctx, const char *op, char *k, const char *prefix, const char *suffix) {
  int len = snprintf(k, KEY_MAX, "%s%s", prefix, suffix);
  if (len >= 0 && len < KEY_MAX)
    return true;
  cr__fail(ctx, CR_ERR_ARG, "%s: prefix '%.40s...' is too long", op, prefix);
  return false;
}

/* P"<i>.<name>", the key of parameter i's buffer. */
static bool buffer_key(cr_ctx *ctx, const char *op, char *k, const char *prefix, int i,
                       const char *name) {
  char suffix[64];
  snprintf(suffix, sizeof suffix, "%d.%s", i, name);
  return make_key(ctx, op, k, prefix, suffix);
}

/* Metadata P<name> = "v0,v1,..." (n values). */
static cr_status save_counts(cr_ctx *ctx, cr_st_writer *w, const char *prefix, const char *name,
                             const int64_t *v, int n) {
  char k[KEY_MAX];
  if (!make_key(ctx, "optim_save", k, prefix, name))
    return ctx->status;
  size_t cap = (size_t)n * 21 + 1, len = 0;
  char *s = cr__malloc(cap);
  if (!s)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "optim_save: out of memory");
  s[0] = '\0';
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(s + len, cap - len, i ? ",%" PRId64 : "%" PRId64, v[i]);
  cr_status st = cr_st_writer_set_meta(ctx, w, k, s);
  free(s);
  return st;
}

/* Tensor P<name> [G]: every group's lr (base false) or base lr (base true). */
static cr_status save_lrs(cr_ctx *ctx, cr_st_writer *w, const cr_optim *opt, const char *prefix,
                          const char *name, bool base) {
  char k[KEY_MAX];
  if (!make_key(ctx, "optim_save", k, prefix, name))
    return ctx->status;
  cr_tensor *t = cr_tensor_new(ctx, CR_F64, CR_SHAPE(opt->n_groups));
  if (!t)
    return ctx->status;
  for (int g = 0; g < opt->n_groups; g++)
    CR__D(t)[g] = base ? opt->groups[g].base_lr : opt->groups[g].lr;
  cr_status st = cr_st_writer_add(ctx, w, k, t);
  cr_tensor_free(t);
  return st;
}

/* Tensor k [1] f64 holding v (a parameter's scalar state). */
static cr_status save_scalar(cr_ctx *ctx, cr_st_writer *w, const char *k, double v) {
  cr_tensor *t = cr_tensor_new(ctx, CR_F64, CR_SHAPE(1));
  if (!t)
    return ctx->status;
  CR__D(t)[0] = v;
  cr_status st = cr_st_writer_add(ctx, w, k, t);
  cr_tensor_free(t);
  return st;
}

cr_status cr_optim_save(cr_ctx *ctx, const cr_optim *opt, cr_st_writer *w, const char *prefix) {
  static const char op[] = "optim_save";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!opt || !w)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op, opt ? "writer" : "optimizer");
  if (!prefix)
    prefix = "";
  const int G = opt->n_groups, N = opt->n_params;
  int64_t *v = cr__calloc((size_t)(N > G ? N : G), sizeof *v);
  if (!v)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  char k[KEY_MAX];
  cr_status st = make_key(ctx, op, k, prefix, "kind") ? CR_OK : ctx->status;
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, k, opt->def->name);
  const int64_t counts[3] = {opt->steps, N, G};
  static const char *const count_names[3] = {"steps", "num_params", "num_groups"};
  for (int i = 0; i < 3 && st == CR_OK; i++)
    st = save_counts(ctx, w, prefix, count_names[i], &counts[i], 1);
  for (int g = 0; g < G; g++)
    v[g] = opt->groups[g].n;
  if (st == CR_OK)
    st = save_counts(ctx, w, prefix, "group_sizes", v, G);
  for (int i = 0; i < N; i++)
    v[i] = opt->params[i].step;
  if (st == CR_OK)
    st = save_counts(ctx, w, prefix, "param_steps", v, N);
  free(v);
  if (st == CR_OK)
    st = save_lrs(ctx, w, opt, prefix, "lr", false);
  if (st == CR_OK)
    st = save_lrs(ctx, w, opt, prefix, "base_lr", true);
  for (int i = 0; i < N && st == CR_OK; i++) {
    for (int b = 0; b < NBUF && st == CR_OK; b++)
      if (opt->buf_name[b])
        st = buffer_key(ctx, op, k, prefix, i, opt->buf_name[b])
                 ? cr_st_writer_add(ctx, w, k, opt->params[i].buf[b])
                 : ctx->status;
    for (int c = 0; c < NSCALAR && st == CR_OK; c++)
      if (opt->def->scalar[c].name)
        st = buffer_key(ctx, op, k, prefix, i, opt->def->scalar[c].name)
                 ? save_scalar(ctx, w, k, opt->params[i].scalar[c])
                 : ctx->status;
  }
  return st;
}

static void st_path(const cr_st_file *f, char *out, size_t n) {
  snprintf(out, n, "%s", cr_st_path(f));
}

/* Exactly n comma-separated counts >= 0 from s into out. */
static bool parse_counts(const char *s, int64_t *out, int n) {
  if (!s)
    return false;
  for (int i = 0; i < n; i++) {
    if (*s < '0' || *s > '9')
      return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno)
      return false;
    out[i] = v;
    s = end;
    if (i + 1 < n && *s++ != ',')
      return false;
  }
  return *s == '\0';
}

/* Metadata P<name> as n counts into out; false and an error naming the file
 * and the key if it is missing or malformed. */
static bool load_counts(cr_ctx *ctx, const cr_st_file *f, const char *path, const char *prefix,
                        const char *name, int64_t *out, int n) {
  char k[KEY_MAX];
  if (!make_key(ctx, "optim_load", k, prefix, name))
    return false;
  const char *v = cr_st_meta(f, k);
  if (parse_counts(v, out, n))
    return true;
  if (!v)
    cr__fail(ctx, CR_ERR_FORMAT, "%s: metadata '%s' is missing", path, k);
  else
    cr__fail(ctx, CR_ERR_FORMAT,
             "%s: metadata '%s' is '%.60s': expected %d comma-separated counts >= 0", path, k, v,
             n);
  return false;
}

/* true if a count in the file equals the optimizer's; else false and an error. */
static bool count_matches(cr_ctx *ctx, const char *path, const char *prefix, const char *name,
                          int64_t in_file, int64_t have, const char *what) {
  if (in_file == have)
    return true;
  cr__fail(ctx, CR_ERR_SHAPE,
           "%s: metadata '%s%s' is %" PRId64 ", but the optimizer has %" PRId64 " %s", path, prefix,
           name, in_file, have, what);
  return false;
}

/* The file's tensor name must exist with dst's shape (a scalar counting as
 * [1], as for cr_st_read_into).  If not, cr_st_read_into itself reports it
 * (naming the file, the tensor and both shapes), failing before it writes. */
static bool tensor_fits(cr_ctx *ctx, const cr_st_file *f, const char *name, cr_tensor *dst) {
  const cr_st_info *in = cr_st_find(f, name);
  if (in &&
      (in->ndim == 0 ? dst->ndim == 1 && dst->shape[0] == 1
                     : in->numel > 0 && in->ndim == dst->ndim &&
                           !memcmp(in->shape, dst->shape, (size_t)dst->ndim * sizeof(int64_t))))
    return true;
  cr_status st = cr_st_read_into(ctx, f, name, dst);
  CR_ASSERT(st != CR_OK, "optim_load: tensor '%s' was read although it does not fit", name);
  return false;
}

/* The file's tensor k, read as dst's dtype into scratch memory, holds only
 * finite values (and none below 0 if nonneg: the row's buffers of squares,
 * whose square roots would be NaN); else false and an error naming the
 * file, the tensor and the first bad index. */
static bool values_ok(cr_ctx *ctx, const cr_st_file *f, const char *k, bool nonneg,
                      const cr_tensor *dst) {
  cr_tensor *t = cr_tensor_new(ctx, dst->dtype, dst->ndim, dst->shape);
  bool ok = t && cr_st_read_into(ctx, f, k, t) == CR_OK;
  for (int64_t i = 0; ok && i < t->numel; i++) {
    double v = cr_get_flat(t, i);
    if (!isfinite(v) || (nonneg && v < 0)) {
      cr__fail(ctx, CR_ERR_FORMAT, "%s: tensor '%s' holds %g at index %" PRId64 ", expected %s",
               cr_st_path(f), k, v, i, nonneg ? "finite values >= 0" : "finite values");
      ok = false;
    }
  }
  cr_tensor_free(t);
  return ok;
}

/* Tensor P<name> [G] into lr[0..G): valid learning rates. */
static bool load_lrs(cr_ctx *ctx, const cr_st_file *f, const char *path, const char *prefix,
                     const char *name, double *lr, int G) {
  char k[KEY_MAX];
  if (!make_key(ctx, "optim_load", k, prefix, name))
    return false;
  cr_tensor *t = cr_tensor_new(ctx, CR_F64, CR_SHAPE(G));
  bool ok = t && tensor_fits(ctx, f, k, t) && cr_st_read_into(ctx, f, k, t) == CR_OK;
  for (int g = 0; ok && g < G; g++) {
    lr[g] = CR__D(t)[g];
    if (!(lr[g] >= 0 && isfinite(lr[g]))) {
      cr__fail(ctx, CR_ERR_FORMAT,
               "%s: tensor '%s': group %d has lr %g, which must be >= 0 and finite", path, k, g,
               lr[g]);
      ok = false;
    }
  }
  cr_tensor_free(t);
  return ok;
}

cr_status cr_optim_load(cr_ctx *ctx, cr_optim *opt, const cr_st_file *f, const char *prefix) {
  static const char op[] = "optim_load";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!opt || !f)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op, opt ? "file" : "optimizer");
  if (!prefix)
    prefix = "";
  const int G = opt->n_groups, N = opt->n_params;
  const cr__optim_def *d = opt->def;
  const char *kind = d->name;
  char k[KEY_MAX], path[300];
  st_path(f, path, sizeof path);

  /* 1. check everything, reading the small values into scratch memory */
  if (!make_key(ctx, op, k, prefix, "kind"))
    return ctx->status;
  const char *file_kind = cr_st_meta(f, k);
  if (!file_kind)
    return cr_ctx_set_error(ctx, CR_ERR_FORMAT,
                            "%s: no optimizer state under prefix '%s' (metadata '%s' is missing)",
                            path, prefix, k);
  if (strcmp(file_kind, kind))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: metadata '%s' is '%s', but the optimizer is %s",
                            path, k, file_kind, kind);
  int64_t steps, n_params, n_groups;
  if (!load_counts(ctx, f, path, prefix, "steps", &steps, 1) ||
      !load_counts(ctx, f, path, prefix, "num_params", &n_params, 1) ||
      !count_matches(ctx, path, prefix, "num_params", n_params, N, "parameters") ||
      !load_counts(ctx, f, path, prefix, "num_groups", &n_groups, 1) ||
      !count_matches(ctx, path, prefix, "num_groups", n_groups, G, "groups"))
    return ctx->status;
  int64_t *sizes = cr__calloc((size_t)G, sizeof *sizes);
  int64_t *param_steps = cr__calloc((size_t)N, sizeof *param_steps);
  double *lrs = cr__calloc(2 * (size_t)G, sizeof *lrs); /* lr [G], then base_lr [G] */
  bool ok = sizes && param_steps && lrs;
  if (!ok)
    cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  ok = ok && load_counts(ctx, f, path, prefix, "group_sizes", sizes, G);
  bool same_sizes = true;
  for (int g = 0; ok && g < G; g++)
    same_sizes = same_sizes && sizes[g] == opt->groups[g].n;
  if (ok && !same_sizes) {
    ok = false;
    char have[128];
    size_t len = 0;
    for (int g = 0; g < G && len < sizeof have; g++)
      len += (size_t)snprintf(have + len, sizeof have - len, g ? ",%d" : "%d", opt->groups[g].n);
    make_key(ctx, op, k, prefix, "group_sizes");
    cr__fail(ctx, CR_ERR_SHAPE,
             "%s: metadata '%s' is '%.60s', but the optimizer's groups have %s parameters", path, k,
             cr_st_meta(f, k), have);
  }
  ok = ok && load_counts(ctx, f, path, prefix, "param_steps", param_steps, N) &&
       load_lrs(ctx, f, path, prefix, "lr", lrs, G) &&
       load_lrs(ctx, f, path, prefix, "base_lr", lrs + G, G);
  for (int i = 0; ok && i < N; i++)
    for (int b = 0; ok && b < NBUF; b++)
      if (opt->buf_name[b])
        ok = buffer_key(ctx, op, k, prefix, i, opt->buf_name[b]) &&
             tensor_fits(ctx, f, k, opt->params[i].buf[b]) &&
             values_ok(ctx, f, k, d->buf[b].nonneg, opt->params[i].buf[b]);
  /* the scalars, read now (they are small) and committed below */
  double *scalars = cr__calloc((size_t)N * NSCALAR + 1, sizeof *scalars);
  cr_tensor *one = cr_tensor_new(ctx, CR_F64, CR_SHAPE(1));
  if (ok && (!scalars || !one))
    ok = false, cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  for (int i = 0; ok && i < N; i++)
    for (int c = 0; ok && c < NSCALAR; c++)
      if (d->scalar[c].name) {
        ok = buffer_key(ctx, op, k, prefix, i, d->scalar[c].name) && tensor_fits(ctx, f, k, one) &&
             values_ok(ctx, f, k, false, one) && cr_st_read_into(ctx, f, k, one) == CR_OK;
        scalars[(size_t)i * NSCALAR + (size_t)c] = ok ? CR__D(one)[0] : 0;
      }
  cr_tensor_free(one);

  /* 2. commit: every read below was checked and cannot fail */
  for (int i = 0; ok && i < N; i++) {
    for (int b = 0; b < NBUF; b++) {
      if (!opt->buf_name[b])
        continue;
      buffer_key(ctx, op, k, prefix, i, opt->buf_name[b]);
      cr_status st = cr_st_read_into(ctx, f, k, opt->params[i].buf[b]);
      CR_ASSERT(st == CR_OK, "optim_load: reading checked tensor '%s' failed", k);
    }
    for (int c = 0; c < NSCALAR; c++)
      if (d->scalar[c].name)
        opt->params[i].scalar[c] = scalars[(size_t)i * NSCALAR + (size_t)c];
    opt->params[i].step = param_steps[i];
  }
  for (int g = 0; ok && g < G; g++) {
    opt->groups[g].lr = lrs[g];
    opt->groups[g].base_lr = lrs[G + g];
  }
  if (ok)
    opt->steps = steps;
  free(sizes);
  free(param_steps);
  free(lrs);
  free(scalars);
  return ok ? CR_OK : ctx->status;
}
