/* optim.c — an optimizer's life: construction and state allocation,
 * parameter groups, the step loop over the parameters, zero_grad, and
 * hyper-parameters of a live optimizer.  Nothing here names an optimizer:
 * what each one needs comes from its row (optim_impl.h), its update from
 * the row's kernel.  Checkpoints are in optim_checkpoint.c.
 *
 * State lives in persistent tensors made with the optimizer (or with a
 * group), named as in PyTorch's state dict, so a step never allocates. */
#include "optim_impl.h"
#include "sched_impl.h"

/* ================================================================ lifetime */

static void param_free_state(opt_param *q) {
  for (int k = 0; k < NBUF; k++) {
    cr_tensor_free(q->buf[k]);
    q->buf[k] = NULL;
  }
}

/* Validate params[0..n) for a new group: non-NULL, persistent, not already
 * in opt (whose first n_old params count) and not repeated. */
static bool params_ok(cr_ctx *ctx, const opt_param *old, int n_old, cr_tensor *const *params,
                      int n) {
  if (n < 1 || !params)
    return cr__fail(ctx, CR_ERR_ARG, "optim: a group needs at least one parameter (got %d%s)", n,
                    params ? "" : ", params NULL"),
           false;
  for (int i = 0; i < n; i++) {
    cr_tensor *p = params[i];
    if (!p)
      return cr__fail(ctx, CR_ERR_ARG, "optim: param %d is NULL", i), false;
    if (!cr__check_inputs(ctx, "optim", 1, &p))
      return false;
    if (!p->persistent)
      return cr__fail(ctx, CR_ERR_ARG,
                      "optim: param %d %s is not persistent (parameters are "
                      "made with cr_tensor_new or cr_persist)",
                      i, cr__shp(p)),
             false;
    for (int j = 0; j < n_old; j++)
      if (old[j].p == p)
        return cr__fail(ctx, CR_ERR_ARG,
                        "optim: param %d %s is already in the optimizer "
                        "(a parameter may appear once)",
                        i, cr__shp(p)),
               false;
    for (int j = 0; j < i; j++)
      if (params[j] == p)
        return cr__fail(ctx, CR_ERR_ARG,
                        "optim: param %d %s is the same tensor as param %d "
                        "(a parameter may appear once)",
                        i, cr__shp(p), j),
               false;
  }
  return true;
}

/* Allocate q's state: the buffers that exist, each at its row's initial
 * value (0 or a hyper-parameter), and the scalars at theirs. */
static bool param_init_state(cr_ctx *ctx, const cr_optim *opt, opt_param *q) {
  const cr__optim_def *d = opt->def;
  for (int k = 0; k < NBUF; k++) {
    if (!opt->buf_name[k])
      continue;
    q->buf[k] = cr_tensor_new(ctx, q->p->dtype, q->p->ndim, q->p->shape);
    if (!q->buf[k])
      return false;
    if (d->buf[k].init) {
      const double v = cr__optim_hyper_get(&opt->o, cr__optim_hyper_find(d, d->buf[k].init));
      if (v != 0 && cr_fill(ctx, q->buf[k], v) != CR_OK)
        return false;
    }
  }
  for (int k = 0; k < NSCALAR; k++)
    q->scalar[k] = d->scalar[k].init;
  return true;
}

/* Append a group: on failure opt is unchanged.  Returns its index or -1. */
static int append_group(cr_ctx *ctx, cr_optim *opt, cr_tensor *const *params, int n, double lr) {
  if (!params_ok(ctx, opt->params, opt->n_params, params, n) ||
      !cr__optim_hyper_ok(ctx, "optim", opt->def, cr__optim_hyper_find(opt->def, "lr"), lr))
    return -1;
  if (n > INT32_MAX - opt->n_params)
    return cr__fail(ctx, CR_ERR_ARG, "optim: too many parameters"), -1;
  opt_param *ps = cr__calloc((size_t)(opt->n_params + n), sizeof *ps);
  opt_group *gs = cr__calloc((size_t)opt->n_groups + 1, sizeof *gs);
  if (!ps || !gs) {
    free(ps);
    free(gs);
    return cr__fail(ctx, CR_ERR_NOMEM, "optim: out of memory for %d parameters", opt->n_params + n),
           -1;
  }
  for (int i = 0; i < n; i++) {
    opt_param *q = &ps[opt->n_params + i];
    q->p = params[i];
    if (!param_init_state(ctx, opt, q)) {
      for (int j = 0; j <= i; j++)
        param_free_state(&ps[opt->n_params + j]);
      free(ps);
      free(gs);
      return -1;
    }
  }
  if (opt->n_params)
    memcpy(ps, opt->params, (size_t)opt->n_params * sizeof *ps);
  if (opt->n_groups)
    memcpy(gs, opt->groups, (size_t)opt->n_groups * sizeof *gs);
  gs[opt->n_groups] = (opt_group){.lr = lr, .base_lr = lr, .first = opt->n_params, .n = n};
  free(opt->params);
  free(opt->groups);
  opt->params = ps;
  opt->groups = gs;
  opt->n_params += n;
  return opt->n_groups++;
}

cr_optim *cr_optim_new(cr_ctx *ctx, const cr_optim_opts *opts, cr_tensor *const *params, int n) {
  if (!ctx || ctx->status != CR_OK || !cr__optim_opts_ok(ctx, "optim", opts))
    return NULL;
  cr_optim *opt = cr__calloc(1, sizeof *opt);
  if (!opt)
    return cr__fail(ctx, CR_ERR_NOMEM, "optim: out of memory");
  opt->o = *opts;
  opt->def = cr__optim_def_of(opts->kind);
  for (int b = 0; b < NBUF; b++)
    opt->buf_name[b] = cr__optim_buf_wanted(opt->def, b, opts) ? opt->def->buf[b].name : NULL;
  if (append_group(ctx, opt, params, n, opts->lr) < 0) {
    cr_optim_free(opt);
    return NULL;
  }
  return opt;
}

void cr_optim_free(cr_optim *opt) {
  if (!opt)
    return;
  for (int i = 0; i < opt->n_params; i++)
    param_free_state(&opt->params[i]);
  free(opt->params);
  free(opt->groups);
  free(opt);
}

int cr_optim_add_group(cr_ctx *ctx, cr_optim *opt, cr_tensor *const *params, int n, double lr) {
  if (!ctx || ctx->status != CR_OK)
    return -1;
  if (!opt)
    return cr__fail(ctx, CR_ERR_ARG, "optim_add_group: optimizer is NULL"), -1;
  return append_group(ctx, opt, params, n, lr);
}

/* ================================================================ accessors */

int cr_optim_num_groups(const cr_optim *opt) { return opt ? opt->n_groups : 0; }

static bool has_group(const cr_optim *opt, int g) { return opt && g >= 0 && g < opt->n_groups; }

double cr_optim_get_lr(const cr_optim *opt, int g) {
  return has_group(opt, g) ? opt->groups[g].lr : NAN;
}

double cr_optim_get_base_lr(const cr_optim *opt, int g) {
  return has_group(opt, g) ? opt->groups[g].base_lr : NAN;
}

void cr_optim_set_lr(cr_optim *opt, int g, double lr) {
  if (has_group(opt, g))
    opt->groups[g].lr = lr;
}

int64_t cr_optim_steps(const cr_optim *opt) { return opt ? opt->steps : 0; }

double cr_optim_get_hyper(const cr_optim *opt, const char *name) {
  const cr__optim_hyper *h =
      opt && name && strcmp(name, "lr") ? cr__optim_hyper_find(opt->def, name) : NULL;
  return h ? cr__optim_hyper_get(&opt->o, h) : NAN;
}

cr_status cr_optim_set_hyper(cr_ctx *ctx, cr_optim *opt, const char *name, double v) {
  static const char op[] = "optim_set_hyper";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!opt || !name)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op, opt ? "name" : "optimizer");
  const cr__optim_def *d = opt->def;
  if (!strcmp(name, "lr"))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s lr is set per group (cr_optim_set_lr)", op,
                            d->name);
  cr_optim_opts o = opt->o;
  cr_status st = cr_optim_opts_set(ctx, &o, name, v);
  if (st != CR_OK)
    return st;
  if (!cr__optim_opts_ok(ctx, op, &o))
    return ctx->status;
  for (int b = 0; b < NBUF; b++)
    if (cr__optim_buf_wanted(d, b, &o) && !opt->buf_name[b])
      return cr_ctx_set_error(ctx, CR_ERR_ARG,
                              "%s: %s %s %g needs the state buffer '%s', which this optimizer "
                              "was made without (give %s when making it)",
                              op, d->name, name, v, d->buf[b].name, d->buf[b].when);
  opt->o = o;
  return CR_OK;
}

/* ================================================================ schedules
 * (declared in sched_impl.h) */

void cr__optim_clear_pending(cr_optim *opt) { opt->pending[0] = '\0'; }

void cr__optim_cycle_momentum(cr_optim *opt, const char *who, double v) {
  const cr__optim_def *d = opt->def;
  opt->pending[0] = '\0';
  const cr__optim_hyper *h = d->cycle ? cr__optim_hyper_find(d, d->cycle) : NULL;
  if (!h) {
    snprintf(opt->pending, sizeof opt->pending,
             "optim_step: %s cycles the momentum, but %s has neither momentum nor betas "
             "(turn cycle_momentum off)",
             who, d->name);
    return;
  }
  cr_optim_opts o = opt->o;
  cr__optim_hyper_set(&o, h, v);
  for (int b = 0; b < NBUF; b++)
    if (cr__optim_buf_wanted(d, b, &o) && !opt->buf_name[b]) {
      snprintf(opt->pending, sizeof opt->pending,
               "optim_step: %s sets %s %s %g, but the optimizer was made with %s 0, without "
               "the state buffer '%s' (make it with %s > 0, or turn cycle_momentum off)",
               who, d->name, h->name, v, h->name, d->buf[b].name, h->name);
      return;
    }
  cr__optim_hyper_set(&opt->o, h, v);
}

/* ================================================================ steps */

static void update(const cr_optim *opt, opt_param *q, double lr) {
  const cr_tensor *gt = cr_grad(q->p);
  CR_ASSERT(gt->numel == q->p->numel && gt->dtype == q->p->dtype && cr__is_contig(gt),
            "optim: gradient %s does not match its parameter %s", cr__shp(gt), cr__shp(q->p));
  cr__optim_args a = {.o = &opt->o,
                      .lr = lr,
                      .t = ++q->step,
                      .n = q->p->numel,
                      .p = q->p->data,
                      .g = gt->data,
                      .scalar = q->scalar};
  for (int k = 0; k < NBUF; k++)
    a.buf[k] = q->buf[k] ? q->buf[k]->data : NULL;
  (q->p->dtype == CR_F32 ? opt->def->kernel_f32 : opt->def->kernel_f64)(&a);
}

void cr_optim_zero_grad(cr_optim *opt) {
  for (int i = 0; opt && i < opt->n_params; i++)
    cr_zero_grad(opt->params[i].p);
}

cr_status cr_optim_step(cr_ctx *ctx, cr_optim *opt) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!opt)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "optim_step: optimizer is NULL");
  if (opt->pending[0])
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s", opt->pending);
  for (int g = 0; g < opt->n_groups; g++) {
    double lr = opt->groups[g].lr;
    if (!(lr >= 0 && isfinite(lr)))
      return cr_ctx_set_error(ctx, CR_ERR_ARG,
                              "optim_step: group %d lr %g must be >= 0 and "
                              "finite (set by cr_optim_set_lr or a schedule)",
                              g, lr);
  }
  for (int g = 0; g < opt->n_groups; g++) {
    const opt_group *gr = &opt->groups[g];
    for (int i = gr->first; i < gr->first + gr->n; i++) {
      opt_param *q = &opt->params[i];
      if (q->p->requires_grad && q->p->grad) {
        update(opt, q, gr->lr);
        cr__touch(q->p); /* the values changed: caches of them are stale */
      }
    }
  }
  opt->steps++;
  return CR_OK;
}
