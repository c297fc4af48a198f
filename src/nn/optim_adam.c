/* optim_adam.c — the Adam family: torch.optim.Adam and AdamW (notation and
 * the rules for bit-exactness with PyTorch: optim_sgd.c).
 *
 * Adam:   g <- g + wd p                             (L2, coupled)
 * AdamW:  p <- p (1 - lr wd)                        (decoupled, before the update)
 * both:   m <- b1 m + (1 - b1) g
 *         v <- b2 v + (1 - b2) g^2
 *         vmax <- max(vmax, v),  v~ = vmax          (amsgrad; else v~ = v)
 *         p <- p - (lr / (1 - b1^t)) m / (sqrt(v~) / sqrt(1 - b2^t) + eps)
 *
 * eps is added after the bias correction of the square root; amsgrad keeps
 * the maximum of the uncorrected v. */
#include "optim_impl.h"

#define OPT_KERNELS "optim_adam.inc"
#include "optim_template.h"

#define ADAM_HYPER(wd)                                                                             \
  {CR__HYPER(lr, HR_NONNEG, 1e-3), CR__HYPER(beta1, HR_BETA, 0.9),                                 \
   CR__HYPER(beta2, HR_BETA, 0.999), CR__HYPER(eps, HR_NONNEG, 1e-8),                              \
   CR__HYPER(weight_decay, HR_NONNEG, wd), CR__HYPER(amsgrad, HR_BOOL, 0),                         \
   CR__HYPER(maximize, HR_BOOL, 0)}
#define ADAM_BUF                                                                                   \
  {{"exp_avg"}, {"exp_avg_sq", .nonneg = true}, {"max_exp_avg_sq", .when = "amsgrad", .nonneg = true}}

const cr__optim_def cr__optim_adam = {
    .name = "adam",
    .torch = "Adam",
    .hyper = ADAM_HYPER(0),
    .buf = ADAM_BUF,
    .kernel_f32 = adam_f,
    .kernel_f64 = adam_d,
};

const cr__optim_def cr__optim_adamw = {
    .name = "adamw",
    .torch = "AdamW",
    .hyper = ADAM_HYPER(1e-2),
    .buf = ADAM_BUF,
    .kernel_f32 = adamw_f,
    .kernel_f64 = adamw_d,
};
