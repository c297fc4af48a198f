/* optim_sgd.c — stochastic gradient descent, torch.optim.SGD.
 *
 * Notation for every optimizer: p the parameter, g its gradient (-g with
 * maximize), t the parameter's own update count including this one, lr its
 * group's lr, wd the weight decay, m momentum.
 *
 *   g  <- g + wd p                                  (wd != 0: L2, coupled)
 *   m != 0:  b <- g                                 (t = 1: no dampening)
 *            b <- m b + (1 - dampening) g           (t > 1)
 *            g <- g + m b  (nesterov)  |  g <- b
 *   p  <- p - lr g
 *
 * This is PyTorch 1.13's _single_tensor_sgd per element.  ATen's CPU
 * kernels fuse some multiply-adds and the loops call fma() in exactly those
 * places, so f64 results match PyTorch's bit for bit:
 *     x.add(y, alpha=a)         -> fma(a, y, x)
 *     x.addcmul(y, z, value=v)  -> fma(v*y, z, x)
 *     x.addcdiv(y, z, value=v)  -> x + (v*y)/z    (not fused)
 *     x.mul(s).add(y)           -> x*s + y        (not fused)
 * Every other a*b+c must stay two roundings: the project compiles with
 * -std=c11, where GCC does not contract (-ffp-contract=off).  Scalars (bias
 * corrections, step sizes) are computed in double, as Python does, and
 * converted to the parameter's dtype where they meet a tensor.  The other
 * families (optim_adam.c, optim_adaptive.c) follow the same rules. */
#include "optim_impl.h"

#define OPT_KERNELS "optim_sgd.inc"
#include "optim_template.h"

/* PyTorch: "Nesterov momentum requires a momentum and zero dampening". */
static bool sgd_check(cr_ctx *ctx, const char *op, const cr__optim_def *d, const cr_optim_opts *o) {
  if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: %s nesterov needs momentum > 0 and dampening 0 (momentum %g, "
                    "dampening %g)",
                    op, d->name, o->momentum, o->dampening),
           false;
  return true;
}

const cr__optim_def cr__optim_sgd = {
    .name = "sgd",
    .cycle = "momentum",
    .torch = "SGD",
    /* PyTorch 1.13 has no default lr (lr=required); 1e-3 is PyTorch 2's */
    .hyper = {CR__HYPER(lr, HR_NONNEG, 1e-3), CR__HYPER(momentum, HR_NONNEG, 0),
              CR__HYPER(dampening, HR_FINITE, 0), CR__HYPER(weight_decay, HR_NONNEG, 0),
              CR__HYPER(nesterov, HR_BOOL, 0), CR__HYPER(maximize, HR_BOOL, 0)},
    .buf = {{"momentum_buffer", .when = "momentum"}},
    .check = sgd_check,
    .kernel_f32 = sgd_f,
    .kernel_f64 = sgd_d,
};
