/* init.c — torch.nn.init's initialisations (see chainrule/init.h).  Each
 * bound and standard deviation is computed with PyTorch's expressions in
 * PyTorch's order, in double, so it is the same number PyTorch uses; the
 * draws themselves come from chainrule's generator. */
#include "chainrule/init.h"
#include "internal.h"

/* t is a tensor of values this context may write (not i64); else an error. */
static bool writable(cr_ctx *ctx, const char *op, cr_tensor *t) {
  return cr__check_inputs(ctx, op, 1, &t);
}

static cr_status status_of(cr_ctx *ctx) { return ctx && ctx->status ? ctx->status : CR_ERR_ARG; }

double cr_calculate_gain(const char *nl, double param) {
  static const char *const linear[] = {"linear",           "conv1d",           "conv2d",
                                       "conv3d",           "conv_transpose1d", "conv_transpose2d",
                                       "conv_transpose3d", "sigmoid"};
  if (!nl)
    nl = "leaky_relu";
  for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++)
    if (!strcmp(nl, linear[i]))
      return 1;
  if (!strcmp(nl, "tanh"))
    return 5.0 / 3;
  if (!strcmp(nl, "relu"))
    return sqrt(2.0);
  if (!strcmp(nl, "leaky_relu")) {
    double slope = isnan(param) ? 0.01 : param;
    return sqrt(2.0 / (1 + slope * slope)); /* Python's slope ** 2 is this product */
  }
  if (!strcmp(nl, "selu"))
    return 3.0 / 4;
  return NAN;
}

/* fan_in = size(1) * receptive, fan_out = size(0) * receptive, receptive
 * the product of the sizes after the first two. */
static bool fans(cr_ctx *ctx, const char *op, const cr_tensor *t, int64_t *fan_in,
                 int64_t *fan_out) {
  if (t->ndim < 2)
    return cr__fail(ctx, CR_ERR_SHAPE,
                    "%s: tensor %s: fan_in and fan_out need at least 2 "
                    "dimensions",
                    op, cr__shp(t)),
           false;
  int64_t receptive = 1;
  for (int d = 2; d < t->ndim; d++)
    receptive *= t->shape[d];
  if (fan_in)
    *fan_in = t->shape[1] * receptive;
  if (fan_out)
    *fan_out = t->shape[0] * receptive;
  return true;
}

cr_status cr_init_fans(cr_ctx *ctx, const cr_tensor *t, int64_t *fan_in, int64_t *fan_out) {
  cr_tensor *tt = (cr_tensor *)t; /* only read */
  if (!cr__check_valid(ctx, "init_fans", 1, &tt))
    return status_of(ctx);
  return fans(ctx, "init_fans", t, fan_in, fan_out) ? CR_OK : ctx->status;
}

cr_status cr_init_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double a, double b) {
  return cr_fill_uniform(ctx, t, rng, a, b);
}

cr_status cr_init_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double mean, double std) {
  return cr_fill_normal(ctx, t, rng, mean, std);
}

cr_status cr_init_constant(cr_ctx *ctx, cr_tensor *t, double value) {
  if (!writable(ctx, "init_constant", t))
    return status_of(ctx);
  return cr_fill(ctx, t, value);
}

cr_status cr_init_zeros(cr_ctx *ctx, cr_tensor *t) { return cr_init_constant(ctx, t, 0.0); }
cr_status cr_init_ones(cr_ctx *ctx, cr_tensor *t) { return cr_init_constant(ctx, t, 1.0); }

static bool gain_ok(cr_ctx *ctx, const char *op, double gain) {
  if (gain >= 0 && isfinite(gain))
    return true;
  return cr__fail(ctx, CR_ERR_ARG, "%s: gain %g must be finite and >= 0", op, gain), false;
}

/* The factor both xavier forms share: gain * sqrt(2 / (fan_in + fan_out)). */
static bool xavier_std(cr_ctx *ctx, const char *op, cr_tensor *t, cr_rng *rng, double gain,
                       double *std) {
  int64_t fi, fo;
  if (!writable(ctx, op, t) || !gain_ok(ctx, op, gain) || !fans(ctx, op, t, &fi, &fo))
    return false;
  if (!rng)
    return cr__fail(ctx, CR_ERR_ARG, "%s: rng is NULL (make one with cr_rng_new)", op), false;
  *std = gain * sqrt(2.0 / (double)(fi + fo));
  return true;
}

cr_status cr_init_xavier_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double gain) {
  double std;
  if (!xavier_std(ctx, "init_xavier_uniform", t, rng, gain, &std))
    return status_of(ctx);
  double a = sqrt(3.0) * std; /* U(-a, a) has variance a^2 / 3 = std^2 */
  return cr_fill_uniform(ctx, t, rng, -a, a);
}

cr_status cr_init_xavier_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double gain) {
  double std;
  if (!xavier_std(ctx, "init_xavier_normal", t, rng, gain, &std))
    return status_of(ctx);
  return cr_fill_normal(ctx, t, rng, 0, std);
}

/* gain / sqrt(fan) for kaiming_*. */
static bool kaiming_std(cr_ctx *ctx, const char *op, cr_tensor *t, cr_rng *rng, double a,
                        cr_fan_mode mode, const char *nl, double *std) {
  int64_t fi, fo;
  if (!writable(ctx, op, t) || !fans(ctx, op, t, &fi, &fo))
    return false;
  if (mode != CR_FAN_IN && mode != CR_FAN_OUT)
    return cr__fail(ctx, CR_ERR_ARG, "%s: mode %d is not CR_FAN_IN or CR_FAN_OUT", op, (int)mode),
           false;
  if (!isfinite(a))
    return cr__fail(ctx, CR_ERR_ARG, "%s: a %g must be finite", op, a), false;
  double gain = cr_calculate_gain(nl, a);
  if (isnan(gain))
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: unknown nonlinearity '%.40s' (linear, sigmoid, "
                    "tanh, relu, leaky_relu, selu, conv1d...)",
                    op, nl),
           false;
  if (!rng)
    return cr__fail(ctx, CR_ERR_ARG, "%s: rng is NULL (make one with cr_rng_new)", op), false;
  *std = gain / sqrt((double)(mode == CR_FAN_IN ? fi : fo));
  return true;
}

cr_status cr_init_kaiming_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double a,
                                  cr_fan_mode mode, const char *nonlinearity) {
  double std;
  if (!kaiming_std(ctx, "init_kaiming_uniform", t, rng, a, mode, nonlinearity, &std))
    return status_of(ctx);
  double bound = sqrt(3.0) * std;
  return cr_fill_uniform(ctx, t, rng, -bound, bound);
}

cr_status cr_init_kaiming_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double a, cr_fan_mode mode,
                                 const char *nonlinearity) {
  double std;
  if (!kaiming_std(ctx, "init_kaiming_normal", t, rng, a, mode, nonlinearity, &std))
    return status_of(ctx);
  return cr_fill_normal(ctx, t, rng, 0, std);
}

/* Orthonormalise the n columns of the m x n (m >= n) row-major matrix q in
 * place: classical Gram-Schmidt applied twice per column ("twice is
 * enough", Giraud et al. 2005), which leaves R's diagonal positive, the
 * sign PyTorch gives Q by multiplying it with sign(diag(R)).  false if a
 * column is (numerically) dependent on the earlier ones. */
static bool gram_schmidt(double *q, int64_t m, int64_t n) {
  for (int64_t j = 0; j < n; j++) {
    for (int pass = 0; pass < 2; pass++)
      for (int64_t k = 0; k < j; k++) {
        double dot = 0; /* q_k . q_j, then q_j -= dot q_k */
        for (int64_t i = 0; i < m; i++)
          dot += q[i * n + k] * q[i * n + j];
        for (int64_t i = 0; i < m; i++)
          q[i * n + j] -= dot * q[i * n + k];
      }
    double norm = 0;
    for (int64_t i = 0; i < m; i++)
      norm += q[i * n + j] * q[i * n + j];
    norm = sqrt(norm);
    if (!(norm > 1e-300))
      return false;
    for (int64_t i = 0; i < m; i++)
      q[i * n + j] /= norm;
  }
  return true;
}

cr_status cr_init_orthogonal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double gain) {
  static const char op[] = "init_orthogonal";
  if (!writable(ctx, op, t) || !gain_ok(ctx, op, gain))
    return status_of(ctx);
  if (t->ndim < 2)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                            "%s: tensor %s: only tensors of 2 or more "
                            "dimensions can be orthogonal",
                            op, cr__shp(t));
  if (!rng)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: rng is NULL (make one with cr_rng_new)", op);
  const int64_t rows = t->shape[0], cols = t->numel / rows;
  const bool wide = rows < cols; /* then Q of the transpose, transposed back */
  const int64_t m = wide ? cols : rows, n = wide ? rows : cols;
  double *a = cr__malloc((size_t)(rows * cols) * sizeof *a); /* [m, n] */
  if (!a)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  bool ok = false;
  for (int tries = 0; !ok && tries < 8; tries++) { /* a dependent draw is astronomically rare */
    for (int64_t r = 0; r < rows; r++)             /* N(0, 1) [rows, cols], row-major */
      for (int64_t c = 0; c < cols; c++)
        a[wide ? c * n + r : r * n + c] = cr_rng_normal(rng);
    ok = gram_schmidt(a, m, n);
  }
  for (int64_t r = 0; ok && r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      cr_set_flat(t, r * cols + c, gain * a[wide ? c * n + r : r * n + c]);
  free(a);
  return ok ? CR_OK
            : cr_ctx_set_error(ctx, CR_ERR_NUMERIC,
                               "%s: tensor %s: the draws were linearly "
                               "dependent",
                               op, cr__shp(t));
}
