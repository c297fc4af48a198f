/* optim_adaptive.c — per-element step sizes from running squares:
 * torch.optim.RMSprop, Adagrad and Adadelta (notation and the rules for
 * bit-exactness with PyTorch: optim_sgd.c).
 *
 * RMSprop:  g <- g + wd p
 *           s <- alpha s + (1 - alpha) g^2
 *           centered:  a <- alpha a + (1 - alpha) g,  d = sqrt(s - a^2) + eps
 *           else:      d = sqrt(s) + eps
 *           m > 0:     b <- m b + g / d,  p <- p - lr b     (b starts at 0)
 *           else:      p <- p - lr g / d
 *
 * Adagrad:  g <- g + wd p
 *           s <- s + g^2                        (s starts at initial_accumulator_value)
 *           p <- p - (lr / (1 + (t - 1) lr_decay)) g / (sqrt(s) + eps)
 *
 * Adadelta: g <- g + wd p
 *           s <- rho s + (1 - rho) g^2                  (square_avg)
 *           d = sqrt(a + eps) / sqrt(s + eps) g         (a: acc_delta, from 0)
 *           a <- rho a + (1 - rho) d^2
 *           p <- p - lr d */
#include "optim_impl.h"

#define OPT_KERNELS "optim_adaptive.inc"
#include "optim_template.h"

const cr__optim_def cr__optim_rmsprop = {
    .name = "rmsprop",
    .cycle = "momentum",
    .torch = "RMSprop",
    .hyper = {CR__HYPER(lr, HR_NONNEG, 1e-2), CR__HYPER(alpha, HR_NONNEG, 0.99),
              CR__HYPER(eps, HR_NONNEG, 1e-8), CR__HYPER(weight_decay, HR_NONNEG, 0),
              CR__HYPER(momentum, HR_NONNEG, 0), CR__HYPER(centered, HR_BOOL, 0),
              CR__HYPER(maximize, HR_BOOL, 0)},
    .buf = {{"square_avg", .nonneg = true},
            {"momentum_buffer", .when = "momentum"},
            {"grad_avg", .when = "centered"}},
    .kernel_f32 = rmsprop_f,
    .kernel_f64 = rmsprop_d,
};

const cr__optim_def cr__optim_adagrad = {
    .name = "adagrad",
    .torch = "Adagrad",
    .hyper = {CR__HYPER(lr, HR_NONNEG, 1e-2), CR__HYPER(lr_decay, HR_NONNEG, 0),
              CR__HYPER(weight_decay, HR_NONNEG, 0),
              CR__HYPER(initial_accumulator_value, HR_NONNEG, 0), CR__HYPER(eps, HR_NONNEG, 1e-10),
              CR__HYPER(maximize, HR_BOOL, 0)},
    .buf = {{"sum", .init = "initial_accumulator_value", .nonneg = true}},
    .kernel_f32 = adagrad_f,
    .kernel_f64 = adagrad_d,
};

const cr__optim_def cr__optim_adadelta = {
    .name = "adadelta",
    .torch = "Adadelta",
    .hyper = {CR__HYPER(lr, HR_NONNEG, 1.0), CR__HYPER(rho, HR_UNIT, 0.9),
              CR__HYPER(eps, HR_NONNEG, 1e-6), CR__HYPER(weight_decay, HR_NONNEG, 0),
              CR__HYPER(maximize, HR_BOOL, 0)},
    .buf = {{"square_avg", .nonneg = true}, {"acc_delta", .nonneg = true}},
    .kernel_f32 = adadelta_f,
    .kernel_f64 = adadelta_d,
};
