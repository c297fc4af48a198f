/* clip.c — gradient clipping, as torch.nn.utils.clip_grad_norm_ and
 * clip_grad_value_.
 *
 *   norm = sqrt(sum over every gradient element g of g^2)   (in double)
 *   clip_grad_norm:  c = max_norm / (norm + 1e-6);  if c < 1: g *= c
 *                    (a non-finite norm leaves the gradients alone; PyTorch
 *                    would multiply them by 0 or NaN)
 *   clip_grad_value: g = min(max(g, -clip), clip)
 *
 * Parameters that the optimizers skip (requires_grad off, or no gradient)
 * are ignored here too. */
#include "chainrule/optim.h"
#include "internal.h"

/* params[0..n) checked; false and an error naming op otherwise. */
static bool params_ok(cr_ctx *ctx, const char *op, cr_tensor *const *params, int n) {
  if (!ctx || ctx->status != CR_OK)
    return false;
  if (n < 0 || (n > 0 && !params))
    return cr__fail(ctx, CR_ERR_ARG, "%s: %d params%s", op, n,
                    n < 0 ? ": the count must be >= 0" : ", but params is NULL"),
           false;
  for (int i = 0; i < n; i++) {
    cr_tensor *p = params[i];
    if (!p)
      return cr__fail(ctx, CR_ERR_ARG, "%s: param %d is NULL", op, i), false;
    if (!cr__check_inputs(ctx, op, 1, &p))
      return false;
  }
  return true;
}

/* The gradient to clip, or NULL if the parameter is skipped. */
static cr_tensor *clip_target(const cr_tensor *p) {
  return p->requires_grad && p->grad ? p->grad : NULL;
}

double cr_clip_grad_norm(cr_ctx *ctx, cr_tensor *const *params, int n, double max_norm) {
  static const char op[] = "clip_grad_norm";
  if (!params_ok(ctx, op, params, n))
    return NAN;
  if (!(max_norm >= 0))
    return cr__fail(ctx, CR_ERR_ARG, "%s: max_norm %g must be >= 0", op, max_norm), NAN;
  double sumsq = 0;
  for (int i = 0; i < n; i++) {
    const cr_tensor *g = clip_target(params[i]);
    if (!g)
      continue;
    if (g->dtype == CR_F32)
      for (int64_t j = 0; j < g->numel; j++)
        sumsq += (double)CR__F(g)[j] * (double)CR__F(g)[j];
    else
      for (int64_t j = 0; j < g->numel; j++)
        sumsq += CR__D(g)[j] * CR__D(g)[j];
  }
  const double norm = sqrt(sumsq), coef = max_norm / (norm + 1e-6);
  if (isfinite(norm) && coef < 1) {
    for (int i = 0; i < n; i++) {
      cr_tensor *g = clip_target(params[i]);
      if (!g)
        continue;
      if (g->dtype == CR_F32)
        for (int64_t j = 0; j < g->numel; j++)
          CR__F(g)[j] *= (float)coef;
      else
        for (int64_t j = 0; j < g->numel; j++)
          CR__D(g)[j] *= coef;
    }
  }
  return norm;
}

cr_status cr_clip_grad_value(cr_ctx *ctx, cr_tensor *const *params, int n, double clip) {
  static const char op[] = "clip_grad_value";
  if (!params_ok(ctx, op, params, n))
    return ctx ? (ctx->status ? ctx->status : CR_ERR_ARG) : CR_ERR_ARG;
  if (!(clip >= 0))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: clip %g must be >= 0", op, clip);
  for (int i = 0; i < n; i++) {
    cr_tensor *g = clip_target(params[i]);
    if (!g)
      continue;
    if (g->dtype == CR_F32) {
      const float c = (float)clip;
      for (int64_t j = 0; j < g->numel; j++)
        CR__F(g)[j] = CR__F(g)[j] > c ? c : CR__F(g)[j] < -c ? -c : CR__F(g)[j];
    } else {
      for (int64_t j = 0; j < g->numel; j++)
        CR__D(g)[j] = CR__D(g)[j] > clip ? clip : CR__D(g)[j] < -clip ? -clip : CR__D(g)[j];
    }
  }
  return CR_OK;
}
