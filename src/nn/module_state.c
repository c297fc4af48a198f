/* module_state.c — state dicts and checkpoints (see chainrule/module.h):
 * a model's tensors under their full names, plus the optimizer's state
 * (cr_optim_save / cr_optim_load, under a prefix), the generator's state
 * (80 hex digits of metadata) and tensors of the caller's own.
 *
 * Loading checks everything, then commits: the model's and the extras'
 * tensors are each read once into scratch memory to see that they fit and
 * are finite; then the optimizer loads (itself all or nothing); only then
 * are the tensors read into place, which cannot fail any more (a read of
 * a checked tensor into a persistent tensor is a copy or a conversion,
 * without allocation), and the generator's state is set. */
#include <inttypes.h>

#include "module_impl.h"

#define KEY_MAX 512
#define RNG_HEX 80 /* 5 state words, 16 hex digits each */

/* ---- messages made of several parts ("...; missing 'a', 'b'; ...") */

typedef struct msg {
  char s[480];
  size_t n;
} msg;

__attribute__((format(printf, 2, 3))) static void say(msg *m, const char *fmt, ...) {
  if (m->n >= sizeof m->s - 1)
    return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(m->s + m->n, sizeof m->s - m->n, fmt, ap);
  va_end(ap);
  m->n = k < 0 ? m->n : m->n + (size_t)k >= sizeof m->s ? sizeof m->s - 1 : m->n + (size_t)k;
  if (m->n == sizeof m->s - 1)
    memcpy(m->s + sizeof m->s - 4, "...", 4);
}

/* Append name to a comma-separated report list of CR_LOAD_REPORT_LEN. */
static void list_add(char *list, const char *name) {
  size_t n = strlen(list);
  if (n + 4 >= CR_LOAD_REPORT_LEN)
    return;
  int k = snprintf(list + n, CR_LOAD_REPORT_LEN - n, "%s%s", n ? ", " : "", name);
  if (k < 0 || n + (size_t)k >= CR_LOAD_REPORT_LEN)
    memcpy(list + CR_LOAD_REPORT_LEN - 4, "...", 4);
}

/* prefix + name into k[KEY_MAX]; false and an error naming op if too long. */
static bool make_key(cr_ctx *ctx, const char *op, char *k, const char *prefix, const char *name) {
  int len = snprintf(k, KEY_MAX, "%s%s", prefix ? prefix : "", name);
  if (len >= 0 && len < KEY_MAX)
    return true;
  return cr__fail(ctx, CR_ERR_ARG, "%s: the name '%.40s...' is too long", op, k), false;
}

static bool starts_with(const char *s, const char *prefix) {
  return prefix && *prefix && !strncmp(s, prefix, strlen(prefix));
}

/* ---- saving */

cr_status cr_module_save(cr_ctx *ctx, cr_module *m, cr_st_writer *w, const char *prefix) {
  static const char op[] = "module_save";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!m || !w)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op, m ? "writer" : "module");
  const cr__mod_flat *f = cr__module_flat(m);
  if (!f)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  char k[KEY_MAX];
  for (int i = 0; i < f->n; i++)
    if (!make_key(ctx, op, k, prefix, f->names[i]) || cr_st_writer_add(ctx, w, k, f->t[i]))
      return ctx->status;
  return CR_OK;
}

/* ---- checking tensors of a file against tensors of ours */

/* The file's tensor name fits t: same shape (a scalar [] fits [1]) and
 * dtype (or convert); its values read as t's dtype are finite when
 * finite is set.  Else false and the reason in m (the first one only). */
static bool fits(cr_ctx *ctx, const cr_st_file *f, const char *name, const cr_tensor *t,
                 bool convert, bool finite, msg *m, cr_status *code) {
  const cr_st_info *in = cr_st_find(f, name);
  CR_ASSERT(in, "module_load: fits() called for a tensor '%s' that is not in the file", name);
  bool same = in->ndim == 0 ? t->numel == 1 && t->ndim == 1 : in->ndim == t->ndim;
  for (int d = 0; same && d < in->ndim; d++)
    same = in->shape[d] == t->shape[d];
  char have[96], want[96];
  cr_shape_str(have, sizeof have, in->ndim, in->shape);
  cr_shape_str(want, sizeof want, t->ndim, t->shape);
  if (!same) {
    say(m, "%s: tensor '%s' is %s, this model needs %s", cr_st_path(f), name, have, want);
    *code = CR_ERR_SHAPE;
    return false;
  }
  if (in->dtype != t->dtype && !convert) {
    say(m,
        "%s: tensor '%s' is %s %s, this model's is %s %s (set cr_load_opts.convert_dtype to "
        "convert)",
        cr_st_path(f), name, cr_dtype_name(in->dtype), have, cr_dtype_name(t->dtype), want);
    *code = CR_ERR_DTYPE;
    return false;
  }
  if (!finite)
    return true;
  cr_tensor *s = cr_tensor_new(ctx, t->dtype, t->ndim, t->shape);
  bool ok = s && cr_st_read_into(ctx, f, name, s) == CR_OK && cr_all_finite(s);
  cr_tensor_free(s);
  if (!ok && ctx->status == CR_OK) {
    say(m,
        "%s: tensor '%s' holds NaN or infinite values (saved from a run that diverged?); "
        "nothing was loaded",
        cr_st_path(f), name);
    *code = CR_ERR_FORMAT;
  }
  return ok;
}

/* What else a checkpoint file holds besides the model: names under the
 * optimizer's prefix and the extras are not "unexpected". */
typedef struct others {
  const char *optim_prefix;
  const char *const *extra_names;
} others;

static bool claimed(const others *o, const char *name) {
  if (!o)
    return false;
  if (starts_with(name, o->optim_prefix))
    return true;
  for (int i = 0; o->extra_names && o->extra_names[i]; i++)
    if (!strcmp(o->extra_names[i], name))
      return true;
  return false;
}

/* A model load, checked: which entries of the flattened tree the file
 * holds (present, malloc'd), so that commit_model can read them. */
typedef struct model_plan {
  const cr__mod_flat *flat;
  bool *present;
} model_plan;

static bool check_model(cr_ctx *ctx, const char *op, cr_module *mod, const cr_st_file *f,
                        const char *prefix, const cr_load_opts *o, const others *oth,
                        model_plan *plan) {
  cr_load_report local, *rep = o->report ? o->report : &local;
  memset(rep, 0, sizeof *rep);
  const cr__mod_flat *fl = plan->flat = cr__module_flat(mod);
  plan->present = fl ? cr__calloc((size_t)(fl->n ? fl->n : 1), sizeof *plan->present) : NULL;
  if (!plan->present)
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op), false;
  msg bad = {{0}, 0};
  cr_status code = CR_OK;
  char k[KEY_MAX];
  int found = 0;
  for (int i = 0; i < fl->n; i++) {
    if (!make_key(ctx, op, k, prefix, fl->names[i]))
      return false;
    if (!cr_st_find(f, k)) {
      rep->n_missing++;
      list_add(rep->missing, k);
      continue;
    }
    found++;
    if (code == CR_OK)
      plan->present[i] = fits(ctx, f, k, fl->t[i], o->convert_dtype, !fl->buffer[i], &bad, &code);
    if (ctx->status != CR_OK)
      return false;
  }
  /* the file's tensors under the prefix that are not the model's */
  int under = 0;
  for (int j = 0; j < cr_st_count(f); j++) {
    const char *name = cr_st_name(f, j);
    under += (!prefix || !*prefix || starts_with(name, prefix)) && !claimed(oth, name);
  }
  for (int j = 0; under > found && j < cr_st_count(f); j++) {
    const char *name = cr_st_name(f, j);
    if ((prefix && *prefix && !starts_with(name, prefix)) || claimed(oth, name))
      continue;
    bool ours = false;
    for (int i = 0; !ours && i < fl->n; i++)
      ours = make_key(ctx, op, k, prefix, fl->names[i]) && !strcmp(k, name);
    if (!ours) {
      rep->n_unexpected++;
      list_add(rep->unexpected, name);
    }
  }
  bool strict_bad = !o->non_strict && (rep->n_missing || rep->n_unexpected);
  if (code == CR_OK && !strict_bad)
    return true;
  msg m = {{0}, 0};
  if (code != CR_OK)
    say(&m, "%s", bad.s);
  else
    say(&m, "%s: ", cr_st_path(f));
  if (strict_bad && rep->n_missing)
    say(&m, "%smissing %s", code != CR_OK ? "; " : "", rep->missing);
  if (strict_bad && rep->n_unexpected)
    say(&m, "%sunexpected %s", code != CR_OK || rep->n_missing ? "; " : "", rep->unexpected);
  if (strict_bad)
    say(&m,
        " (strict load of %s; a non-strict one keeps missing tensors and ignores unexpected "
        "ones)",
        mod->type);
  cr__fail(ctx, code != CR_OK ? code : CR_ERR_ARG, "%s", m.s);
  return false;
}

/* Read every present tensor into place: checked, so it cannot fail. */
static void commit_model(cr_ctx *ctx, const model_plan *plan, const cr_st_file *f,
                         const char *prefix) {
  char k[KEY_MAX];
  for (int i = 0; i < plan->flat->n; i++) {
    if (!plan->present[i])
      continue;
    snprintf(k, sizeof k, "%s%s", prefix ? prefix : "", plan->flat->names[i]);
    cr_status st = cr_st_read_into(ctx, f, k, plan->flat->t[i]);
    CR_ASSERT(st == CR_OK, "module_load: reading checked tensor '%s' failed: %s", k,
              cr_ctx_error(ctx));
  }
}

static const cr_load_opts no_opts = {false, false, NULL};

cr_status cr_module_load(cr_ctx *ctx, cr_module *m, const cr_st_file *f, const char *prefix,
                         const cr_load_opts *opts) {
  static const char op[] = "module_load";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!m || !f)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op, m ? "file" : "module");
  model_plan plan = {NULL, NULL};
  if (check_model(ctx, op, m, f, prefix, opts ? opts : &no_opts, NULL, &plan))
    commit_model(ctx, &plan, f, prefix);
  free(plan.present);
  return ctx->status;
}

/* ---- the generator's state: 80 lowercase hex digits */

static void rng_hex(const cr_rng *rng, char out[RNG_HEX + 1]) {
  uint64_t s[5];
  cr_rng_get_state(rng, s);
  for (int i = 0; i < 5; i++)
    snprintf(out + 16 * i, 17, "%016" PRIx64, s[i]);
}

/* Parse the state; xoshiro256** must not be all zero; the fifth word is a
 * spare normal (finite) or none (all ones).  false and an error. */
static bool rng_parse(cr_ctx *ctx, const cr_st_file *f, const char *key, uint64_t s[5]) {
  const char *v = cr_st_meta(f, key);
  bool ok = v && strlen(v) == RNG_HEX;
  for (int i = 0; ok && i < RNG_HEX; i++)
    ok = (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f');
  for (int i = 0; ok && i < 5; i++) {
    char part[17];
    memcpy(part, v + 16 * i, 16);
    part[16] = '\0';
    s[i] = strtoull(part, NULL, 16);
  }
  double spare;
  if (ok)
    memcpy(&spare, &s[4], sizeof spare);
  ok = ok && (s[0] | s[1] | s[2] | s[3]) != 0 && (s[4] == UINT64_MAX || isfinite(spare));
  if (ok)
    return true;
  if (!v)
    return cr__fail(ctx, CR_ERR_FORMAT,
                    "%s: metadata '%s' is missing: no generator state to "
                    "load (saved without an rng?)",
                    cr_st_path(f), key),
           false;
  return cr__fail(ctx, CR_ERR_FORMAT,
                  "%s: metadata '%s' is '%.84s', expected 80 lowercase hex "
                  "digits (the generator's state: 4 words not all zero, a finite spare or "
                  "ffffffffffffffff)",
                  cr_st_path(f), key, v),
         false;
}

/* ---- checkpoints */

static const char *optim_prefix(const cr_checkpoint *ck) {
  return ck->optim_prefix ? ck->optim_prefix : "optim.";
}
static const char *rng_key(const cr_checkpoint *ck) {
  return ck->rng_key ? ck->rng_key : "rng.state";
}

/* The checkpoint's fields make sense: something to save or load, extras
 * with tensors, metadata in pairs whose keys collide with nothing. */
static bool ck_ok(cr_ctx *ctx, const char *op, const cr_checkpoint *ck, bool saving) {
  if (!ck || (!ck->model && !ck->optim && !ck->rng))
    return cr__fail(ctx, CR_ERR_ARG, "%s: %s", op,
                    ck ? "the checkpoint names no model, "
                         "optimizer or rng"
                       : "checkpoint is NULL"),
           false;
  for (int i = 0; ck->extra_names && ck->extra_names[i]; i++) {
    if (!ck->extra || !ck->extra[i])
      return cr__fail(ctx, CR_ERR_ARG, "%s: extra tensor '%s' is NULL", op, ck->extra_names[i]),
             false;
    if (starts_with(ck->extra_names[i], optim_prefix(ck)))
      return cr__fail(ctx, CR_ERR_ARG,
                      "%s: extra tensor '%s' is inside the optimizer's prefix "
                      "'%s'",
                      op, ck->extra_names[i], optim_prefix(ck)),
             false;
  }
  for (int i = 0; saving && ck->meta && ck->meta[i]; i += 2) {
    const char *key = ck->meta[i];
    if (!ck->meta[i + 1])
      return cr__fail(ctx, CR_ERR_ARG,
                      "%s: metadata '%s' has no value (meta holds key, value "
                      "pairs, then NULL)",
                      op, key),
             false;
    if (starts_with(key, optim_prefix(ck)) || !strcmp(key, rng_key(ck)))
      return cr__fail(ctx, CR_ERR_ARG,
                      "%s: metadata key '%s' is the checkpoint's own (the "
                      "optimizer's prefix '%s', the generator's '%s')",
                      op, key, optim_prefix(ck), rng_key(ck)),
             false;
    for (int j = 0; j < i; j += 2)
      if (!strcmp(ck->meta[j], key))
        return cr__fail(ctx, CR_ERR_ARG, "%s: metadata key '%s' is given twice", op, key), false;
  }
  return true;
}

cr_status cr_checkpoint_write(cr_ctx *ctx, const cr_checkpoint *ck, cr_st_writer *w) {
  static const char op[] = "checkpoint_write";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!w)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: writer is NULL", op);
  if (!ck_ok(ctx, op, ck, true))
    return ctx->status;
  if (ck->model && ck->optim) {
    int n;
    const char *const *names;
    if (!cr_module_state_dict(ck->model, &n, &names, NULL))
      return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
    for (int i = 0; i < n; i++)
      if (starts_with(names[i], optim_prefix(ck)))
        return cr_ctx_set_error(ctx, CR_ERR_ARG,
                                "%s: the model's tensor '%s' is inside the "
                                "optimizer's prefix '%s' (set optim_prefix)",
                                op, names[i], optim_prefix(ck));
  }
  char hex[RNG_HEX + 1];
  if (ck->model && cr_module_save(ctx, ck->model, w, "") != CR_OK)
    return ctx->status;
  if (ck->optim && cr_optim_save(ctx, ck->optim, w, optim_prefix(ck)) != CR_OK)
    return ctx->status;
  if (ck->rng) {
    rng_hex(ck->rng, hex);
    if (cr_st_writer_set_meta(ctx, w, rng_key(ck), hex) != CR_OK)
      return ctx->status;
  }
  for (int i = 0; ck->extra_names && ck->extra_names[i]; i++)
    if (cr_st_writer_add(ctx, w, ck->extra_names[i], ck->extra[i]) != CR_OK)
      return ctx->status;
  for (int i = 0; ck->meta && ck->meta[i]; i += 2)
    if (cr_st_writer_set_meta(ctx, w, ck->meta[i], ck->meta[i + 1]) != CR_OK)
      return ctx->status;
  return CR_OK;
}

cr_status cr_checkpoint_save(cr_ctx *ctx, const cr_checkpoint *ck, const char *path) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  cr_st_writer *w = cr_st_writer_new();
  if (!w)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "checkpoint_save: out of memory");
  cr_status st = cr_checkpoint_write(ctx, ck, w);
  if (st == CR_OK)
    st = cr_st_writer_save(ctx, w, path);
  cr_st_writer_free(w);
  return st;
}

/* Every extra is in f, fits and is finite. */
static bool check_extras(cr_ctx *ctx, const cr_checkpoint *ck, const cr_st_file *f,
                         const cr_load_opts *o) {
  for (int i = 0; ck->extra_names && ck->extra_names[i]; i++) {
    const char *name = ck->extra_names[i];
    msg bad = {{0}, 0};
    cr_status code = CR_OK;
    if (!cr_st_find(f, name))
      return cr__fail(ctx, CR_ERR_ARG,
                      "%s: no tensor named '%s' (an extra tensor of the "
                      "checkpoint)",
                      cr_st_path(f), name),
             false;
    if (!fits(ctx, f, name, ck->extra[i], o->convert_dtype, true, &bad, &code)) {
      if (ctx->status == CR_OK)
        cr__fail(ctx, code, "%s", bad.s);
      return false;
    }
  }
  return true;
}

cr_status cr_checkpoint_read(cr_ctx *ctx, const cr_checkpoint *ck, const cr_st_file *f,
                             const cr_load_opts *opts) {
  static const char op[] = "checkpoint_load";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!f)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: file is NULL", op);
  if (!ck_ok(ctx, op, ck, false))
    return ctx->status;
  const cr_load_opts *o = opts ? opts : &no_opts;
  if (o->report)
    memset(o->report, 0, sizeof *o->report);
  /* 1. check: the model, the extras, the generator */
  model_plan plan = {NULL, NULL};
  const others oth = {optim_prefix(ck), ck->extra_names};
  uint64_t rs[5];
  bool ok = (!ck->model || check_model(ctx, op, ck->model, f, "", o, &oth, &plan)) &&
            check_extras(ctx, ck, f, o) && (!ck->rng || rng_parse(ctx, f, rng_key(ck), rs));
  /* 2. the optimizer checks and loads itself, all or nothing */
  ok = ok && (!ck->optim || cr_optim_load(ctx, ck->optim, f, optim_prefix(ck)) == CR_OK);
  /* 3. commit what was checked */
  if (ok && ck->model)
    commit_model(ctx, &plan, f, "");
  for (int i = 0; ok && ck->extra_names && ck->extra_names[i]; i++) {
    cr_status st = cr_st_read_into(ctx, f, ck->extra_names[i], ck->extra[i]);
    CR_ASSERT(st == CR_OK, "checkpoint_load: reading checked tensor '%s' failed",
              ck->extra_names[i]);
  }
  if (ok && ck->rng)
    cr_rng_set_state(ck->rng, rs);
  free(plan.present);
  return ctx->status;
}

cr_status cr_checkpoint_load(cr_ctx *ctx, const cr_checkpoint *ck, const char *path,
                             const cr_load_opts *opts) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  cr_st_file *f = cr_st_open(ctx, path);
  cr_status st = f ? cr_checkpoint_read(ctx, ck, f, opts) : ctx->status;
  cr_st_close(f);
  return st;
}
