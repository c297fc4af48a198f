/* optim_adam.c — the Adam family: torch.optim.Adam, AdamW, NAdam, RAdam
 * and Adamax (notation and the rules for bit-exactness with PyTorch:
 * optim_sgd.c).  Every one starts with g <- g + wd p when wd != 0 (L2,
 * coupled), except AdamW, and keeps m <- b1 m + (1 - b1) g.
 *
 * Adam:   v <- b2 v + (1 - b2) g^2
 *         vmax <- max(vmax, v),  v~ = vmax          (amsgrad; else v~ = v)
 *         p <- p - (lr / (1 - b1^t)) m / (sqrt(v~) / sqrt(1 - b2^t) + eps)
 *         (eps after the bias correction; amsgrad keeps the maximum of the
 *         uncorrected v)
 * AdamW:  p <- p (1 - lr wd) first (decoupled decay, no L2 term), then Adam.
 *
 * NAdam:  mu_t = b1 (1 - 0.5 * 0.96^(t psi)),  psi = momentum_decay
 *         P_t = mu_1 ... mu_t                   (mu_product, P_0 = 1)
 *         v <- b2 v + (1 - b2) g^2,  d = sqrt(v) / sqrt(1 - b2^t) + eps
 *         p <- p - lr (1 - mu_t) / (1 - P_t) g / d
 *         p <- p - lr mu_{t+1} / (1 - P_t mu_{t+1}) m / d
 *   This is torch 1.13's foreach path (and PyTorch 2's formula).  1.13's
 *   default single-tensor path takes P_t mu_t mu_{t+1} for the second
 *   denominator, a bug fixed in 2.0 (pytorch/pytorch#92699); the
 *   difference is 3e-5 after 5 steps of the fixtures.  P is rounded to
 *   float32 at every step, as PyTorch's float32 state tensor is.  PyTorch
 *   1.13 has no maximize for NAdam; here it negates g as everywhere.
 *
 * RAdam:  v <- b2 v + (1 - b2) g^2,  m^ = m / (1 - b1^t)
 *         rho_inf = 2 / (1 - b2) - 1,  rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
 *         rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2) rho_inf /
 *                              ((rho_inf - 4)(rho_inf - 2) rho_t))
 *                     p <- p - lr m^ r sqrt(1 - b2^t) / (sqrt(v) + eps)
 *         else:       p <- p - lr m^                  (no second moment yet)
 *   torch 1.13's single-tensor path (its foreach path drops eps).  No
 *   maximize in 1.13 either.
 *
 * Adamax: u <- max(b2 u, |g| + eps)             (exp_inf; a NaN propagates)
 *         p <- p - (lr / (1 - b1^t)) m / u */
#include "optim_impl.h"

#define OPT_KERNELS "optim_adam.inc"
#include "optim_template.h"

/* clang-format off */
#define ADAM_HYPER(wd)                                                                             \
  {CR__HYPER(lr, HR_NONNEG, 1e-3), CR__HYPER(beta1, HR_BETA, 0.9),                                 \
   CR__HYPER(beta2, HR_BETA, 0.999), CR__HYPER(eps, HR_NONNEG, 1e-8),                              \
   CR__HYPER(weight_decay, HR_NONNEG, wd), CR__HYPER(amsgrad, HR_BOOL, 0),                         \
   CR__HYPER(maximize, HR_BOOL, 0)}
#define ADAM_BUF                                                                                   \
  {{.name = "exp_avg"}, {"exp_avg_sq", .nonneg = true},                                                    \
   {"max_exp_avg_sq", .when = "amsgrad", .nonneg = true}}
/* clang-format on */

const cr__optim_def cr__optim_adam = {
    .name = "adam",
    .cycle = "beta1",
    .torch = "Adam",
    .hyper = ADAM_HYPER(0),
    .buf = ADAM_BUF,
    .kernel_f32 = adam_f,
    .kernel_f64 = adam_d,
};

const cr__optim_def cr__optim_adamw = {
    .name = "adamw",
    .cycle = "beta1",
    .torch = "AdamW",
    .hyper = ADAM_HYPER(1e-2),
    .buf = ADAM_BUF,
    .kernel_f32 = adamw_f,
    .kernel_f64 = adamw_d,
};

#define BETAS CR__HYPER(beta1, HR_BETA, 0.9), CR__HYPER(beta2, HR_BETA, 0.999)

const cr__optim_def cr__optim_nadam = {
    .name = "nadam",
    .cycle = "beta1",
    .torch = "NAdam",
    .hyper = {CR__HYPER(lr, HR_NONNEG, 2e-3), BETAS, CR__HYPER(eps, HR_NONNEG, 1e-8),
              CR__HYPER(weight_decay, HR_NONNEG, 0), CR__HYPER(momentum_decay, HR_NONNEG, 4e-3),
              CR__HYPER(maximize, HR_BOOL, 0)},
    .buf = {{.name = "exp_avg"}, {"exp_avg_sq", .nonneg = true}},
    .scalar = {{"mu_product", 1.0}},
    .kernel_f32 = nadam_f,
    .kernel_f64 = nadam_d,
};

const cr__optim_def cr__optim_radam = {
    .name = "radam",
    .cycle = "beta1",
    .torch = "RAdam",
    .hyper = {CR__HYPER(lr, HR_NONNEG, 1e-3), BETAS, CR__HYPER(eps, HR_NONNEG, 1e-8),
              CR__HYPER(weight_decay, HR_NONNEG, 0), CR__HYPER(maximize, HR_BOOL, 0)},
    .buf = {{.name = "exp_avg"}, {"exp_avg_sq", .nonneg = true}},
    .kernel_f32 = radam_f,
    .kernel_f64 = radam_d,
};

const cr__optim_def cr__optim_adamax = {
    .name = "adamax",
    .cycle = "beta1",
    .torch = "Adamax",
    .hyper = {CR__HYPER(lr, HR_NONNEG, 2e-3), BETAS, CR__HYPER(eps, HR_NONNEG, 1e-8),
              CR__HYPER(weight_decay, HR_NONNEG, 0), CR__HYPER(maximize, HR_BOOL, 0)},
    .buf = {{.name = "exp_avg"}, {"exp_inf", .nonneg = true}},
    .kernel_f32 = adamax_f,
    .kernel_f64 = adamax_d,
};
