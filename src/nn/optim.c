/* optim.c — SGD, Adam, AdamW, RMSprop and Adagrad (their checkpoints are
 * in optim_checkpoint.c).
 *
 * Each update is PyTorch 1.13's _single_tensor_<name>, written per element.
 * Notation: p the parameter, g the gradient (negated when maximize), t the
 * parameter's own step count after this update (1 on its first), lr its
 * group's lr, wd the weight decay.  ATen's CPU kernels fuse some of the
 * multiply-adds; the kernels below call fma() in exactly those places so f64
 * results match PyTorch bit for bit (tests/fixtures/README.md, "FMA"):
 *     x.add(y, alpha=a)         -> fma(a, y, x)
 *     x.addcmul(y, z, value=v)  -> fma(v*y, z, x)
 *     x.addcdiv(y, z, value=v)  -> x + (v*y)/z    (not fused)
 *     x.mul(s).add(y)           -> x*s + y        (not fused)
 * Every other a*b+c must stay two roundings: the project compiles with
 * -std=c11, where GCC does not contract (-ffp-contract=off).  Scalars such
 * as the bias corrections are computed in double, like Python does, and
 * converted to the parameter's dtype where they meet a tensor.
 *
 * State lives in persistent tensors made with the optimizer, named as in
 * PyTorch's state dict (exp_avg, ...), so a step never allocates. */
#include "optim_impl.h"

/* ================================================================ options */

void cr_optim_default_opts(cr_optim_kind kind, cr_optim_opts *o) {
  if (!o)
    return;
  memset(o, 0, sizeof *o);
  o->kind = kind;
  o->lr = 1e-3;
  switch (kind) {
  case CR_SGD: break;
  case CR_ADAM:
  case CR_ADAMW:
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = kind == CR_ADAMW ? 1e-2 : 0;
    break;
  case CR_RMSPROP:
    o->lr = 1e-2;
    o->alpha = 0.99;
    o->eps = 1e-8;
    break;
  case CR_ADAGRAD:
    o->lr = 1e-2;
    o->eps = 1e-10;
    break;
  }
}

static const char *const kind_names[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
#define N_KINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

const char *cr_optim_kind_name(cr_optim_kind kind) {
  return (int)kind >= 0 && (int)kind < N_KINDS ? kind_names[kind] : "unknown";
}

int cr_optim_kind_from_name(const char *name) {
  for (int k = 0; name && k < N_KINDS; k++)
    if (!strcmp(name, kind_names[k]))
      return k;
  return -1;
}

/* Which state buffers the options need, slot by slot. */
static void buffer_layout(const cr_optim_opts *o, const char *name[NBUF]) {
  name[0] = name[1] = name[2] = NULL;
  switch (o->kind) {
  case CR_SGD: name[0] = o->momentum != 0 ? "momentum_buffer" : NULL; break;
  case CR_ADAM:
  case CR_ADAMW:
    name[0] = "exp_avg";
    name[1] = "exp_avg_sq";
    name[2] = o->amsgrad ? "max_exp_avg_sq" : NULL;
    break;
  case CR_RMSPROP:
    name[0] = "square_avg";
    name[1] = o->momentum > 0 ? "momentum_buffer" : NULL;
    name[2] = o->centered ? "grad_avg" : NULL;
    break;
  case CR_ADAGRAD: name[0] = "sum"; break;
  }
}

/* lr, or a value every kind checks the same way: finite and >= 0. */
static bool nonneg(cr_ctx *ctx, const char *what, double v) {
  if (v >= 0 && isfinite(v))
    return true;
  cr__fail(ctx, CR_ERR_ARG, "optim: %s %g must be >= 0%s", what, v,
           isfinite(v) || isnan(v) ? "" : " and finite");
  return false;
}

static bool beta_ok(cr_ctx *ctx, const char *what, double v) {
  if (v >= 0 && v < 1)
    return true;
  cr__fail(ctx, CR_ERR_ARG, "optim: %s %g must be in [0, 1)", what, v);
  return false;
}

static bool opts_ok(cr_ctx *ctx, const cr_optim_opts *o) {
  if (!o)
    return cr__fail(ctx, CR_ERR_ARG, "optim: opts is NULL (use cr_optim_default_opts)"), false;
  if ((int)o->kind < 0 || (int)o->kind >= N_KINDS)
    return cr__fail(ctx, CR_ERR_ARG, "optim: unknown kind %d", (int)o->kind), false;
  if (!nonneg(ctx, "lr", o->lr) || !nonneg(ctx, "weight_decay", o->weight_decay))
    return false;
  switch (o->kind) {
  case CR_SGD:
    if (!nonneg(ctx, "momentum", o->momentum))
      return false;
    if (!isfinite(o->dampening))
      return cr__fail(ctx, CR_ERR_ARG, "optim: dampening %g must be finite", o->dampening), false;
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
      return cr__fail(ctx, CR_ERR_ARG,
                      "optim: nesterov needs momentum > 0 and dampening 0 "
                      "(momentum %g, dampening %g)",
                      o->momentum, o->dampening),
             false;
    return true;
  case CR_ADAM:
  case CR_ADAMW:
    return beta_ok(ctx, "beta1", o->beta1) && beta_ok(ctx, "beta2", o->beta2) &&
           nonneg(ctx, "eps", o->eps);
  case CR_RMSPROP:
    return nonneg(ctx, "alpha", o->alpha) && nonneg(ctx, "eps", o->eps) &&
           nonneg(ctx, "momentum", o->momentum);
  case CR_ADAGRAD:
    return nonneg(ctx, "lr_decay", o->lr_decay) &&
           nonneg(ctx, "initial_accumulator_value", o->initial_accumulator_value) &&
           nonneg(ctx, "eps", o->eps);
  }
  return true;
}

/* ================================================================ kernels
 *
 * One function per optimizer and dtype, from the macro below with
 * T = float or double and FMA = fmaf or fma.  n elements of p, g and the
 * state buffers b0, b1, b2 (slots as in buffer_layout); t >= 1. */
#define OPTIM_KERNELS(T, SFX, FMA, SQRT)                                                           \
  /* sgd:  g += wd*p;  buf = g (t = 1) | m*buf + (1-dampening)*g;                                  \
   *       g = nesterov ? g + m*buf : buf;  p -= lr*g */                                           \
  CR_KERNEL static void sgd_##SFX(const cr_optim_opts *o, double lr, int64_t t, int64_t n, T *p,             \
                        const T *grad, T *buf) {                                                   \
    const T wd = (T)o->weight_decay, m = (T)o->momentum, damp1 = (T)(1 - o->dampening);            \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T g = o->maximize ? -grad[i] : grad[i];                                                      \
      if (o->weight_decay != 0)                                                                    \
        g = FMA(wd, p[i], g);                                                                      \
      if (o->momentum != 0) {                                                                      \
        buf[i] = t == 1 ? g : FMA(damp1, g, buf[i] * m);                                           \
        g = o->nesterov ? FMA(m, buf[i], g) : buf[i];                                              \
      }                                                                                            \
      p[i] = FMA((T)-lr, g, p[i]);                                                                 \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* adam:  g += wd*p (Adam) | p *= 1 - lr*wd (AdamW);                                             \
   *        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  vmax = max(vmax, v) (amsgrad);           \
   *        denom = sqrt(v or vmax) / sqrt(1 - b2^t) + eps;                                        \
   *        p += -(lr / (1 - b1^t)) * m / denom */                                                 \
  CR_KERNEL static void adam_##SFX(const cr_optim_opts *o, double lr, int64_t t, int64_t n, T *p,            \
                         const T *grad, T *m, T *v, T *vmax) {                                     \
    const bool adamw = o->kind == CR_ADAMW;                                                        \
    const T wd = (T)o->weight_decay, decay = (T)(1 - lr * o->weight_decay);                        \
    const T b1 = (T)o->beta1, b2 = (T)o->beta2;                                                    \
    const T one_b1 = (T)(1 - o->beta1), one_b2 = (T)(1 - o->beta2);                                \
    const double bc1 = 1 - pow(o->beta1, (double)t), bc2 = 1 - pow(o->beta2, (double)t);           \
    const T neg_step_size = (T)(-(lr / bc1)), bc2_sqrt = (T)sqrt(bc2), eps = (T)o->eps;            \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T g = o->maximize ? -grad[i] : grad[i];                                                      \
      if (adamw)                                                                                   \
        p[i] = p[i] * decay;                                                                       \
      else if (o->weight_decay != 0)                                                               \
        g = FMA(wd, p[i], g);                                                                      \
      m[i] = FMA(one_b1, g, m[i] * b1);                                                            \
      v[i] = FMA(one_b2 * g, g, v[i] * b2);                                                        \
      T vv = v[i];                                                                                 \
      if (o->amsgrad) {                                                                            \
        if (isnan(v[i]) || v[i] > vmax[i])                                                         \
          vmax[i] = v[i];                                                                          \
        vv = vmax[i];                                                                              \
      }                                                                                            \
      const T denom = SQRT(vv) / bc2_sqrt + eps;                                                   \
      p[i] = p[i] + (neg_step_size * m[i]) / denom;                                                \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* rmsprop:  g += wd*p;  sq = alpha*sq + (1-alpha)*g*g;                                          \
   *           avg = sqrt(sq) + eps, or centered: ga = alpha*ga + (1-alpha)*g,                     \
   *                                  avg = sqrt(sq - ga*ga) + eps;                                \
   *           momentum: buf = m*buf + g/avg, p -= lr*buf;  else p -= lr*g/avg */                  \
  CR_KERNEL static void rmsprop_##SFX(const cr_optim_opts *o, double lr, int64_t n, T *p, const T *grad,     \
                            T *sq, T *buf, T *ga) {                                                \
    const T wd = (T)o->weight_decay, alpha = (T)o->alpha, one_a = (T)(1 - o->alpha);               \
    const T eps = (T)o->eps, mom = (T)o->momentum, neg_lr = (T)-lr;                                \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T g = o->maximize ? -grad[i] : grad[i];                                                      \
      if (o->weight_decay != 0)                                                                    \
        g = FMA(wd, p[i], g);                                                                      \
      sq[i] = FMA(one_a * g, g, sq[i] * alpha);                                                    \
      T avg;                                                                                       \
      if (o->centered) {                                                                           \
        ga[i] = FMA(one_a, g, ga[i] * alpha);                                                      \
        avg = SQRT(FMA(-ga[i], ga[i], sq[i]));                                                     \
      } else {                                                                                     \
        avg = SQRT(sq[i]);                                                                         \
      }                                                                                            \
      avg = avg + eps;                                                                             \
      if (o->momentum > 0) {                                                                       \
        buf[i] = buf[i] * mom + g / avg;                                                           \
        p[i] = FMA(neg_lr, buf[i], p[i]);                                                          \
      } else {                                                                                     \
        p[i] = p[i] + (neg_lr * g) / avg;                                                          \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* adagrad:  g += wd*p;  clr = lr / (1 + (t-1)*lr_decay);  sum += g*g;                           \
   *           p -= clr * g / (sqrt(sum) + eps) */                                                 \
  CR_KERNEL static void adagrad_##SFX(const cr_optim_opts *o, double lr, int64_t t, int64_t n, T *p,         \
                            const T *grad, T *sum) {                                               \
    const T wd = (T)o->weight_decay, eps = (T)o->eps;                                              \
    const T neg_clr = (T)(-(lr / (1 + (double)(t - 1) * o->lr_decay)));                            \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T g = o->maximize ? -grad[i] : grad[i];                                                      \
      if (o->weight_decay != 0)                                                                    \
        g = FMA(wd, p[i], g);                                                                      \
      sum[i] = FMA(g, g, sum[i]);                                                                  \
      const T std = SQRT(sum[i]) + eps;                                                            \
      p[i] = p[i] + (neg_clr * g) / std;                                                           \
    }                                                                                              \
  }

OPTIM_KERNELS(float, f32, fmaf, sqrtf)
OPTIM_KERNELS(double, f64, fma, sqrt)
#undef OPTIM_KERNELS

/* Buffer slot k of q as T*, or NULL if unused. */
#define BUF(q, k, T) ((q)->buf[k] ? (T *)(q)->buf[k]->data : NULL)

static void update(const cr_optim *opt, opt_param *q, double lr) {
  const cr_optim_opts *o = &opt->o;
  const cr_tensor *gt = cr_grad(q->p);
  CR_ASSERT(gt->numel == q->p->numel && gt->dtype == q->p->dtype && cr__is_contig(gt),
            "optim: gradient %s does not match its parameter %s", cr__shp(gt), cr__shp(q->p));
  const int64_t n = q->p->numel, t = ++q->step;
  if (q->p->dtype == CR_F32) {
    float *p = q->p->data;
    const float *g = gt->data;
    switch (o->kind) {
    case CR_SGD: sgd_f32(o, lr, t, n, p, g, BUF(q, 0, float)); break;
    case CR_ADAM:
    case CR_ADAMW:
      adam_f32(o, lr, t, n, p, g, BUF(q, 0, float), BUF(q, 1, float), BUF(q, 2, float));
      break;
    case CR_RMSPROP:
      rmsprop_f32(o, lr, n, p, g, BUF(q, 0, float), BUF(q, 1, float), BUF(q, 2, float));
      break;
    case CR_ADAGRAD: adagrad_f32(o, lr, t, n, p, g, BUF(q, 0, float)); break;
    }
  } else {
    double *p = q->p->data;
    const double *g = gt->data;
    switch (o->kind) {
    case CR_SGD: sgd_f64(o, lr, t, n, p, g, BUF(q, 0, double)); break;
    case CR_ADAM:
    case CR_ADAMW:
      adam_f64(o, lr, t, n, p, g, BUF(q, 0, double), BUF(q, 1, double), BUF(q, 2, double));
      break;
    case CR_RMSPROP:
      rmsprop_f64(o, lr, n, p, g, BUF(q, 0, double), BUF(q, 1, double), BUF(q, 2, double));
      break;
    case CR_ADAGRAD: adagrad_f64(o, lr, t, n, p, g, BUF(q, 0, double)); break;
    }
  }
}

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

/* Allocate q's state buffers (zeros; Adagrad's sum starts at
 * initial_accumulator_value). */
static bool param_init_state(cr_ctx *ctx, const cr_optim *opt, opt_param *q) {
  for (int k = 0; k < NBUF; k++) {
    if (!opt->buf_name[k])
      continue;
    q->buf[k] = cr_tensor_new(ctx, q->p->dtype, q->p->ndim, q->p->shape);
    if (!q->buf[k])
      return false;
  }
  if (opt->o.kind == CR_ADAGRAD && opt->o.initial_accumulator_value != 0)
    return cr_fill(ctx, q->buf[0], opt->o.initial_accumulator_value) == CR_OK;
  return true;
}

/* Append a group: on failure opt is unchanged.  Returns its index or -1. */
static int append_group(cr_ctx *ctx, cr_optim *opt, cr_tensor *const *params, int n, double lr) {
  if (!params_ok(ctx, opt->params, opt->n_params, params, n) || !nonneg(ctx, "lr", lr))
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
  if (!ctx || ctx->status != CR_OK || !opts_ok(ctx, opts))
    return NULL;
  cr_optim *opt = cr__calloc(1, sizeof *opt);
  if (!opt)
    return cr__fail(ctx, CR_ERR_NOMEM, "optim: out of memory");
  opt->o = *opts;
  buffer_layout(opts, opt->buf_name);
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
