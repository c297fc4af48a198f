/* gradcheck.c — analytic (backward) versus numeric (central differences)
 * gradients, in float64.  See chainrule/gradcheck.h for the method. */
#include "chainrule/gradcheck.h"

#include "internal.h"

void cr_gradcheck_default_opts(cr_gradcheck_opts *o) {
  memset(o, 0, sizeof *o);
  o->eps = 1e-6;
  o->atol = 1e-5;
  o->rtol = 1e-3;
  o->mode = 0;
  o->full_max_outputs = 64;
  o->n_projections = 4;
  o->seed = 1234;
}

typedef struct {
  cr_gradcheck_fn f;
  void *user;
  cr_ctx *ctx;
  cr_tensor **x; /* persistent f64 copies */
  int n;
  int64_t m; /* output elements */
  const cr_gradcheck_opts *o;
  cr_gradcheck_report *rep;
  double worst_score;
} gc_state;

/* Evaluate f in a fresh arena; NULL (and the report's message) on error. */
static cr_tensor *eval(gc_state *s) {
  cr_ctx_reset(s->ctx);
  cr_tensor *y = s->f(s->ctx, s->x, s->n, s->user);
  if (!y || cr_ctx_status(s->ctx) != CR_OK) {
    snprintf(s->rep->message, sizeof s->rep->message, "function failed: %s",
             cr_ctx_status(s->ctx) ? cr_ctx_error(s->ctx) : "returned NULL without an error");
    return NULL;
  }
  if (s->m && cr_numel(y) != s->m) {
    snprintf(s->rep->message, sizeof s->rep->message,
             "function output changed size between calls (%lld then %lld elements)",
             (long long)s->m, (long long)cr_numel(y));
    return NULL;
  }
  return y;
}

static void compare(gc_state *s, int input, int64_t index, int64_t output, double an, double nu) {
  cr_gradcheck_report *r = s->rep;
  double err = fabs(an - nu);
  double tol = s->o->atol + s->o->rtol * fabs(nu);
  r->n_checked++;
  if (err > r->max_abs_err || isnan(err))
    r->max_abs_err = isnan(err) ? INFINITY : err;
  if (fabs(nu) >= s->o->atol) {
    double rel = err / fabs(nu);
    if (rel > r->max_rel_err || isnan(rel))
      r->max_rel_err = isnan(rel) ? INFINITY : rel;
  }
  double score = isnan(err) ? INFINITY : err / tol;
  if (score > s->worst_score || r->worst_input < 0) {
    s->worst_score = score;
    r->worst_input = input;
    r->worst_index = index;
    r->worst_output = output;
    r->worst_analytic = an;
    r->worst_numeric = nu;
  }
  if (!(err <= tol))
    r->passed = false;
}

static void zero_grads(gc_state *s) {
  for (int k = 0; k < s->n; k++)
    cr_zero_grad(s->x[k]);
}

static double grad_at(const cr_tensor *x, int64_t i) {
  const cr_tensor *g = cr_grad(x);
  return g ? cr_get_flat(g, i) : 0.0;
}

/* Backward from y with seed; false on error. */
static bool backprop(gc_state *s, cr_tensor *y, cr_tensor *seed) {
  zero_grads(s);
  if (!cr_requires_grad(y))
    return true; /* output does not depend on any input: gradient 0 */
  if (cr_backward_seed(s->ctx, y, seed) != CR_OK) {
    snprintf(s->rep->message, sizeof s->rep->message, "backward failed: %s", cr_ctx_error(s->ctx));
    return false;
  }
  return true;
}

static bool checked(const gc_state *s, int k) { return !s->o->check_input || s->o->check_input[k]; }

static bool run_full(gc_state *s) {
  int64_t total = 0;
  for (int k = 0; k < s->n; k++)
    total += checked(s, k) ? cr_numel(s->x[k]) : 0;
  double *jan = cr__calloc((size_t)(s->m * total), sizeof(double));
  double *jnu = cr__calloc((size_t)(s->m * total), sizeof(double));
  double *plus = cr__calloc((size_t)s->m, sizeof(double));
  bool ok = jan && jnu && plus;
  /* analytic: row j of the Jacobian is the gradient for seed e_j */
  for (int64_t j = 0; ok && j < s->m; j++) {
    cr_tensor *y = eval(s);
    if (!y) {
      ok = false;
      break;
    }
    cr_tensor *seed = cr_zeros(s->ctx, CR_F64, cr_ndim(y), cr_shape(y));
    if (!seed) {
      ok = false;
      break;
    }
    cr_set_flat(seed, j, 1.0);
    if (!backprop(s, y, seed)) {
      ok = false;
      break;
    }
    int64_t col = 0;
    for (int k = 0; k < s->n; k++) {
      if (!checked(s, k))
        continue;
      for (int64_t i = 0; i < cr_numel(s->x[k]); i++)
        jan[j * total + col++] = grad_at(s->x[k], i);
    }
  }
  /* numeric: column i of the Jacobian by central differences */
  int64_t col = 0;
  for (int k = 0; ok && k < s->n; k++) {
    if (!checked(s, k))
      continue;
    for (int64_t i = 0; ok && i < cr_numel(s->x[k]); i++, col++) {
      double x0 = cr_get_flat(s->x[k], i), h = s->o->eps;
      cr_set_flat(s->x[k], i, x0 + h);
      cr_tensor *y = eval(s);
      if (!y) {
        ok = false;
        break;
      }
      cr_to_doubles(y, plus);
      cr_set_flat(s->x[k], i, x0 - h);
      y = eval(s);
      /* read y before restoring x: y may be a view of x */
      for (int64_t j = 0; y && j < s->m; j++)
        jnu[j * total + col] = (plus[j] - cr_get_flat(y, j)) / (2 * h);
      cr_set_flat(s->x[k], i, x0);
      if (!y) {
        ok = false;
        break;
      }
    }
  }
  if (ok) {
    col = 0;
    for (int k = 0; k < s->n; k++) {
      if (!checked(s, k))
        continue;
      for (int64_t i = 0; i < cr_numel(s->x[k]); i++, col++)
        for (int64_t j = 0; j < s->m; j++)
          compare(s, k, i, j, jan[j * total + col], jnu[j * total + col]);
    }
  }
  free(jan);
  free(jnu);
  free(plus);
  return ok;
}

/* Fast mode: compare v^T J u with v^T (f(x + h u) - f(x - h u)) / 2h. */
static bool run_fast(gc_state *s) {
  cr_rng *rng = cr_rng_new(s->o->seed);
  int64_t total = 0;
  for (int k = 0; k < s->n; k++)
    total += checked(s, k) ? cr_numel(s->x[k]) : 0;
  double *u = cr__calloc((size_t)total, sizeof(double));
  double *v = cr__calloc((size_t)s->m, sizeof(double));
  double *x0 = cr__calloc((size_t)total, sizeof(double));
  bool ok = rng && u && v && x0;
  int64_t col = 0;
  for (int k = 0; ok && k < s->n; k++)
    for (int64_t i = 0; checked(s, k) && i < cr_numel(s->x[k]); i++)
      x0[col++] = cr_get_flat(s->x[k], i);
  for (int p = 0; ok && p < s->o->n_projections; p++) {
    double norm = 0;
    for (int64_t i = 0; i < total; i++) {
      u[i] = cr_rng_normal(rng);
      norm += u[i] * u[i];
    }
    norm = sqrt(norm);
    for (int64_t i = 0; i < total; i++)
      u[i] /= norm;
    for (int64_t j = 0; j < s->m; j++)
      v[j] = cr_rng_normal(rng);
    /* analytic */
    cr_tensor *y = eval(s);
    cr_tensor *seed = y ? cr_from_array(s->ctx, CR_F64, cr_ndim(y), cr_shape(y), v) : NULL;
    if (!seed || !backprop(s, y, seed)) {
      ok = false;
      break;
    }
    double an = 0;
    col = 0;
    for (int k = 0; k < s->n; k++)
      for (int64_t i = 0; checked(s, k) && i < cr_numel(s->x[k]); i++)
        an += grad_at(s->x[k], i) * u[col++];
    /* numeric */
    double side[2];
    for (int sgn = 0; ok && sgn < 2; sgn++) {
      double h = sgn == 0 ? s->o->eps : -s->o->eps;
      col = 0;
      for (int k = 0; k < s->n; k++)
        for (int64_t i = 0; checked(s, k) && i < cr_numel(s->x[k]); i++, col++)
          cr_set_flat(s->x[k], i, x0[col] + h * u[col]);
      y = eval(s);
      if (!y) {
        ok = false;
        break;
      }
      side[sgn] = 0;
      for (int64_t j = 0; j < s->m; j++)
        side[sgn] += v[j] * cr_get_flat(y, j);
    }
    col = 0;
    for (int k = 0; k < s->n; k++)
      for (int64_t i = 0; checked(s, k) && i < cr_numel(s->x[k]); i++)
        cr_set_flat(s->x[k], i, x0[col++]);
    if (ok)
      compare(s, -1, p, -1, an, (side[0] - side[1]) / (2 * s->o->eps));
  }
  free(u);
  free(v);
  free(x0);
  cr_rng_free(rng);
  return ok;
}

bool cr_gradcheck(cr_gradcheck_fn f, cr_tensor *const *inputs, int n, void *user,
                  const cr_gradcheck_opts *opts, cr_gradcheck_report *report) {
  cr_gradcheck_opts defaults;
  cr_gradcheck_report local;
  if (!opts) {
    cr_gradcheck_default_opts(&defaults);
    opts = &defaults;
  }
  if (!report)
    report = &local;
  memset(report, 0, sizeof *report);
  report->passed = true;
  report->worst_input = -1;
  report->worst_output = -1;
  gc_state s = {f, user, cr_ctx_new(), NULL, n, 0, opts, report, 0};
  bool ok = s.ctx != NULL && f != NULL && n >= 0;
  if (ok && n > 0) {
    s.x = cr__calloc((size_t)n, sizeof *s.x);
    ok = s.x != NULL;
  }
  for (int k = 0; ok && k < n; k++) {
    const cr_tensor *in = inputs[k];
    if (!in || in->magic != CR__TENSOR_MAGIC) {
      snprintf(report->message, sizeof report->message, "input %d is NULL or invalid", k);
      ok = false;
      break;
    }
    s.x[k] = cr_tensor_new(s.ctx, CR_F64, in->ndim, in->shape);
    if (!s.x[k]) {
      ok = false;
      break;
    }
    for (int64_t i = 0; i < in->numel; i++)
      cr_set_flat(s.x[k], i, cr_get_flat(in, i));
    cr_set_requires_grad(s.x[k], !opts->check_input || opts->check_input[k]);
  }
  if (ok) {
    cr_tensor *y = eval(&s);
    ok = y != NULL;
    if (ok) {
      s.m = cr_numel(y);
      bool full = opts->mode == 1 || (opts->mode == 0 && s.m <= opts->full_max_outputs);
      ok = full ? run_full(&s) : run_fast(&s);
    }
  }
  if (!ok) {
    report->passed = false;
    if (!report->message[0])
      snprintf(report->message, sizeof report->message, "%s",
               s.ctx && cr_ctx_status(s.ctx) ? cr_ctx_error(s.ctx) : "out of memory");
  } else if (!report->passed) {
    snprintf(report->message, sizeof report->message,
             "gradient mismatch: input %d element %lld (of output element %lld): analytic "
             "%.10g, numeric %.10g (max abs err %.3g, max rel err %.3g, atol %g, rtol %g)",
             report->worst_input, (long long)report->worst_index, (long long)report->worst_output,
             report->worst_analytic, report->worst_numeric, report->max_abs_err,
             report->max_rel_err, opts->atol, opts->rtol);
  }
  for (int k = 0; s.x && k < n; k++)
    cr_tensor_free(s.x[k]);
  free(s.x);
  cr_ctx_free(s.ctx);
  return report->passed;
}

/* ---- gradgradcheck */

typedef struct {
  cr_gradcheck_fn f;
  void *user;
  int n; /* f's inputs; the seed v is input n of g */
} gg_state;

/* g(x, v) = J_f(x)^T v, the gradients of every input that requires grad
 * flattened and joined into one vector (made of ops: differentiable). */
static cr_tensor *vjp_of_f(cr_ctx *ctx, cr_tensor *const *z, int n_z, void *user) {
  const gg_state *g = user;
  (void)n_z;
  cr_tensor *y = g->f(ctx, z, g->n, g->user);
  if (!y)
    return NULL;
  if (!cr_requires_grad(y)) /* f does not depend on its inputs: g = 0 */
    return cr_zeros(ctx, CR_F64, CR_SHAPE(1));
  cr_tensor *xs[64], *grads[64], *flat[64];
  int m = 0;
  for (int k = 0; k < g->n && m < 64; k++)
    if (cr_requires_grad(z[k]))
      xs[m++] = z[k];
  cr_tensor *v = z[g->n];
  if (cr_numel(v) != cr_numel(y))
    return cr__fail(ctx, CR_ERR_SHAPE, "gradgradcheck: the function's output %s changed size",
                    cr__shp(y));
  cr_tensor *seed = cr_reshape(ctx, v, cr_ndim(y), cr_shape(y));
  cr_autograd_opts o = {.create_graph = true, .zeros_for_unused = true};
  if (!seed || cr_autograd_grad(ctx, 1, &y, &seed, m, xs, &o, grads) != CR_OK)
    return NULL;
  for (int k = 0; k < m; k++)
    flat[k] = cr_reshape(ctx, grads[k], CR_SHAPE(-1));
  return m == 1 ? flat[0] : cr_concat(ctx, flat, m, 0);
}

bool cr_gradgradcheck(cr_gradcheck_fn f, cr_tensor *const *inputs, int n, void *user,
                      const cr_gradcheck_opts *opts, cr_gradcheck_report *report) {
  cr_gradcheck_report local;
  if (!report)
    report = &local;
  memset(report, 0, sizeof *report);
  report->worst_input = -1;
  report->worst_output = -1;
  if (!f || n < 0 || n > 63 || (n > 0 && !inputs)) {
    snprintf(report->message, sizeof report->message, "gradgradcheck: bad arguments (%d inputs)",
             n);
    return false;
  }
  /* f's output shape, for the seed v */
  cr_ctx *ctx = cr_ctx_new();
  cr_tensor **z = cr__calloc((size_t)n + 1, sizeof *z);
  bool ok = ctx && z;
  for (int k = 0; ok && k < n; k++) {
    ok = inputs[k] && inputs[k]->magic == CR__TENSOR_MAGIC;
    if (ok) {
      z[k] = cr_tensor_new(ctx, CR_F64, inputs[k]->ndim, inputs[k]->shape);
      ok = z[k] != NULL;
    }
    for (int64_t i = 0; ok && i < inputs[k]->numel; i++)
      cr_set_flat(z[k], i, cr_get_flat(inputs[k], i));
  }
  cr_tensor *y = ok ? f(ctx, z, n, user) : NULL;
  if (!y) {
    snprintf(report->message, sizeof report->message, "function failed: %s",
             ctx && cr_ctx_status(ctx) ? cr_ctx_error(ctx) : "bad input or out of memory");
    ok = false;
  }
  if (ok) {
    cr_rng *rng = cr_rng_new(opts ? opts->seed + 1 : 1235);
    z[n] = rng ? cr_tensor_new(ctx, CR_F64, CR_SHAPE(cr_numel(y))) : NULL;
    for (int64_t i = 0; z[n] && i < cr_numel(y); i++)
      cr_set_flat(z[n], i, cr_rng_normal(rng));
    cr_rng_free(rng);
    ok = z[n] != NULL;
  }
  bool *mask = ok ? cr__calloc((size_t)n + 1, sizeof *mask) : NULL;
  if (ok && mask) {
    for (int k = 0; k < n; k++)
      mask[k] = !opts || !opts->check_input || opts->check_input[k];
    mask[n] = true;
    cr_gradcheck_opts o;
    if (opts)
      o = *opts;
    else
      cr_gradcheck_default_opts(&o);
    o.check_input = mask;
    gg_state g = {f, user, n};
    ok = cr_gradcheck(vjp_of_f, z, n + 1, &g, &o, report);
  } else if (ok) {
    ok = false;
  }
  free(mask);
  for (int k = 0; z && k <= n; k++)
    cr_tensor_free(z[k]);
  free(z);
  cr_ctx_free(ctx);
  if (!ok && !report->message[0])
    snprintf(report->message, sizeof report->message, "gradgradcheck: out of memory");
  report->passed = ok;
  return ok;
}
