/* optim_registry.c — the one table of optimizers, and what is read from it:
 * names, PyTorch's defaults, hyper-parameters by name and their validation.
 * The rows are in optim_sgd.c, optim_adam.c and optim_adaptive.c. */
#include "optim_impl.h"

#include <assert.h>

/* optim_sgd.c */
extern const cr__optim_def cr__optim_sgd;
/* optim_adam.c */
extern const cr__optim_def cr__optim_adam, cr__optim_adamw, cr__optim_nadam, cr__optim_radam,
    cr__optim_adamax;
/* optim_adaptive.c */
extern const cr__optim_def cr__optim_rmsprop, cr__optim_adagrad, cr__optim_adadelta;

/* Indexed by cr_optim_kind. */
static const cr__optim_def *const table[] = {
    [CR_SGD] = &cr__optim_sgd,           [CR_ADAM] = &cr__optim_adam,
    [CR_ADAMW] = &cr__optim_adamw,       [CR_RMSPROP] = &cr__optim_rmsprop,
    [CR_ADAGRAD] = &cr__optim_adagrad,   [CR_NADAM] = &cr__optim_nadam,
    [CR_RADAM] = &cr__optim_radam,       [CR_ADAMAX] = &cr__optim_adamax,
    [CR_ADADELTA] = &cr__optim_adadelta,
};
#define N_KINDS ((int)(sizeof table / sizeof table[0]))
static_assert(N_KINDS == CR_OPTIM_NUM_KINDS, "every cr_optim_kind has a row");

const cr__optim_def *cr__optim_def_of(cr_optim_kind kind) {
  return (int)kind >= 0 && (int)kind < N_KINDS ? table[kind] : NULL;
}

const char *cr_optim_kind_name(cr_optim_kind kind) {
  const cr__optim_def *d = cr__optim_def_of(kind);
  return d ? d->name : "unknown";
}

int cr_optim_kind_from_name(const char *name) {
  for (int k = 0; name && k < N_KINDS; k++)
    if (!strcmp(name, table[k]->name))
      return k;
  return -1;
}

/* ---- hyper-parameters */

const cr__optim_hyper *cr__optim_hyper_find(const cr__optim_def *d, const char *name) {
  for (int i = 0; d && name && i < NHYPER && d->hyper[i].name; i++)
    if (!strcmp(d->hyper[i].name, name))
      return &d->hyper[i];
  return NULL;
}

double cr__optim_hyper_get(const cr_optim_opts *o, const cr__optim_hyper *h) {
  const char *f = (const char *)o + h->off;
  return h->rule == HR_BOOL ? (double)*(const bool *)f : *(const double *)f;
}

void cr__optim_hyper_set(cr_optim_opts *o, const cr__optim_hyper *h, double v) {
  char *f = (char *)o + h->off;
  if (h->rule == HR_BOOL)
    *(bool *)f = v != 0;
  else
    *(double *)f = v;
}

void cr_optim_default_opts(cr_optim_kind kind, cr_optim_opts *o) {
  if (!o)
    return;
  const cr__optim_def *d = cr__optim_def_of(kind);
  memset(o, 0, sizeof *o);
  if (!d)
    d = table[CR_SGD];
  for (int i = 0; i < NHYPER && d->hyper[i].name; i++)
    cr__optim_hyper_set(o, &d->hyper[i], d->hyper[i].def);
  o->kind = kind;
}

const char *cr_optim_hyper_name(cr_optim_kind kind, int i) {
  const cr__optim_def *d = cr__optim_def_of(kind);
  return d && i >= 0 && i < NHYPER ? d->hyper[i].name : NULL;
}

/* "lr, momentum, ..." into out. */
static void hyper_list(const cr__optim_def *d, char *out, size_t n) {
  size_t len = 0;
  out[0] = '\0';
  for (int i = 0; i < NHYPER && d->hyper[i].name && len < n; i++)
    len += (size_t)snprintf(out + len, n - len, i ? ", %s" : "%s", d->hyper[i].name);
}

cr_status cr_optim_opts_set(cr_ctx *ctx, cr_optim_opts *o, const char *name, double v) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!o || !name)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "optim_opts_set: %s is NULL", o ? "name" : "opts");
  const cr__optim_def *d = cr__optim_def_of(o->kind);
  if (!d)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "optim_opts_set: unknown kind %d", (int)o->kind);
  const cr__optim_hyper *h = cr__optim_hyper_find(d, name);
  if (!h) {
    char names[256];
    hyper_list(d, names, sizeof names);
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "optim_opts_set: %s has no hyper-parameter '%s' (%s)",
                            d->name, name, names);
  }
  cr__optim_hyper_set(o, h, v);
  return CR_OK;
}

/* ---- validation */

bool cr__optim_hyper_ok(cr_ctx *ctx, const char *op, const cr__optim_def *d,
                        const cr__optim_hyper *h, double v) {
  const char *what;
  switch (h->rule) {
  case HR_BOOL: return true;
  case HR_NONNEG:
    if (v >= 0 && isfinite(v))
      return true;
    what = isfinite(v) || isnan(v) ? "must be >= 0" : "must be >= 0 and finite";
    break;
  case HR_BETA:
    if (v >= 0 && v < 1)
      return true;
    what = "must be in [0, 1)";
    break;
  case HR_UNIT:
    if (v >= 0 && v <= 1)
      return true;
    what = "must be in [0, 1]";
    break;
  case HR_FINITE:
    if (isfinite(v))
      return true;
    what = "must be finite";
    break;
  default: CR_ASSERT(false, "optim: %s %s has rule %d", d->name, h->name, (int)h->rule);
  }
  cr__fail(ctx, CR_ERR_ARG, "%s: %s %s %g %s", op, d->name, h->name, v, what);
  return false;
}

bool cr__optim_opts_ok(cr_ctx *ctx, const char *op, const cr_optim_opts *o) {
  if (!o)
    return cr__fail(ctx, CR_ERR_ARG, "%s: opts is NULL (use cr_optim_default_opts)", op), false;
  const cr__optim_def *d = cr__optim_def_of(o->kind);
  if (!d)
    return cr__fail(ctx, CR_ERR_ARG, "%s: unknown kind %d", op, (int)o->kind), false;
  for (int i = 0; i < NHYPER && d->hyper[i].name; i++)
    if (!cr__optim_hyper_ok(ctx, op, d, &d->hyper[i], cr__optim_hyper_get(o, &d->hyper[i])))
      return false;
  return !d->check || d->check(ctx, op, d, o);
}

bool cr__optim_buf_wanted(const cr__optim_def *d, int b, const cr_optim_opts *o) {
  if (!d->buf[b].name)
    return false;
  if (!d->buf[b].when)
    return true;
  const cr__optim_hyper *h = cr__optim_hyper_find(d, d->buf[b].when);
  CR_ASSERT(h, "optim: %s buffer %s depends on unknown '%s'", d->name, d->buf[b].name,
            d->buf[b].when);
  return cr__optim_hyper_get(o, h) != 0;
}
