/* chainrule/init.h — parameter initialisation, as torch.nn.init.
 *
 * Every function fills a tensor in place (f32 or f64, any layout; no graph
 * is recorded) from a cr_rng, so a seed gives the same parameters on every
 * run and machine.  Elements are drawn in row-major order.  The formulas
 * are PyTorch's, evaluated in the same order in double, so a bound or a
 * standard deviation is the very number PyTorch computes:
 *
 *   fans of a tensor [out, in, k1, k2, ...] (at least 2 dims; PyTorch's
 *   _calculate_fan_in_and_fan_out):
 *       receptive = k1 * k2 * ...   (1 for a matrix)
 *       fan_in  = in * receptive,   fan_out = out * receptive
 *   xavier_uniform   U(-a, a),   a = gain * sqrt(6 / (fan_in + fan_out))
 *                    (computed as sqrt(3) * gain * sqrt(2 / (fan_in + fan_out)))
 *   xavier_normal    N(0, std),  std = gain * sqrt(2 / (fan_in + fan_out))
 *   kaiming_uniform  U(-b, b),   b = sqrt(3) * gain / sqrt(fan)
 *   kaiming_normal   N(0, std),  std = gain / sqrt(fan)
 *       fan = fan_in (CR_FAN_IN, the default) or fan_out (CR_FAN_OUT),
 *       gain = cr_calculate_gain(nonlinearity, a)
 *   orthogonal       the Q of a QR decomposition of an N(0, 1) matrix
 *                    [rows, numel / rows] (transposed first when it is
 *                    wide), with R's diagonal made positive, times gain:
 *                    orthonormal rows or columns (Saxe et al. 2013)
 *
 * What the built-in modules use (chainrule/module.h), as PyTorch does:
 *   Linear     weight kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in),
 *              1/sqrt(in)); bias U(-1/sqrt(in), 1/sqrt(in))
 *   Embedding  N(0, 1)
 *   RNN/LSTM/GRU  every parameter U(-1/sqrt(H), 1/sqrt(H))
 *   LayerNorm  weight 1, bias 0
 *
 * Errors follow chainrule/base.h: CR_OK, or a code and a message naming the
 * function and the tensor ("init_xavier_uniform: tensor [5]: fan_in and
 * fan_out need at least 2 dimensions"), the tensor unchanged.
 */
#ifndef CHAINRULE_INIT_H
#define CHAINRULE_INIT_H

#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which fan kaiming_* divide by: fan_in keeps the forward pass's variance,
 * fan_out the backward pass's. */
typedef enum cr_fan_mode { CR_FAN_IN = 0, CR_FAN_OUT = 1 } cr_fan_mode;

/* PyTorch's calculate_gain: the factor that keeps activations' variance
 * through a nonlinearity.  "linear", "conv1d".."conv3d",
 * "conv_transpose1d".."conv_transpose3d", "sigmoid": 1; "tanh": 5/3;
 * "relu": sqrt(2); "leaky_relu": sqrt(2 / (1 + slope^2)) with slope =
 * param, or PyTorch's default 0.01 when param is NAN; "selu": 3/4.  NULL
 * is "leaky_relu" (kaiming's default).  An unknown name gives NAN. */
double cr_calculate_gain(const char *nonlinearity, double param);

/* fan_in and fan_out of t as above (either pointer may be NULL).  CR_OK, or
 * CR_ERR_SHAPE for a tensor of fewer than 2 dimensions. */
CR_NODISCARD cr_status cr_init_fans(cr_ctx *ctx, const cr_tensor *t, int64_t *fan_in,
                                    int64_t *fan_out);

/* U(a, b) (a <= b) and N(mean, std) (std >= 0): cr_fill_uniform and
 * cr_fill_normal under torch.nn.init's names. */
CR_NODISCARD cr_status cr_init_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double a, double b);
CR_NODISCARD cr_status cr_init_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double mean,
                                      double std);
/* Every element value / 0 / 1 (no rng). */
CR_NODISCARD cr_status cr_init_constant(cr_ctx *ctx, cr_tensor *t, double value);
CR_NODISCARD cr_status cr_init_zeros(cr_ctx *ctx, cr_tensor *t);
CR_NODISCARD cr_status cr_init_ones(cr_ctx *ctx, cr_tensor *t);

/* Glorot and Bengio (2010); gain >= 0 (PyTorch's default is 1). */
CR_NODISCARD cr_status cr_init_xavier_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double gain);
CR_NODISCARD cr_status cr_init_xavier_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double gain);
/* He et al. (2015).  a: the negative slope of a leaky_relu (PyTorch's
 * default 0; ignored by other nonlinearities); nonlinearity as for
 * cr_calculate_gain (NULL: "leaky_relu", PyTorch's default; use "relu" for
 * ReLU networks).  An unknown nonlinearity is CR_ERR_ARG. */
CR_NODISCARD cr_status cr_init_kaiming_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double a,
                                               cr_fan_mode mode, const char *nonlinearity);
CR_NODISCARD cr_status cr_init_kaiming_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double a,
                                              cr_fan_mode mode, const char *nonlinearity);
/* A (semi-)orthogonal t (at least 2 dims; gain >= 0, PyTorch's default 1):
 * Gram-Schmidt, done twice per column in double, on the N(0, 1) draws. */
CR_NODISCARD cr_status cr_init_orthogonal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double gain);

#ifdef __cplusplus
}
#endif
#endif
