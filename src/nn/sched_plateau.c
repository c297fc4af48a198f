/* sched_plateau.c — ReduceLROnPlateau's step: the one schedule driven by a
 * metric instead of the step count (its row in sched_kinds.c has no lr
 * function).  PyTorch 1.13's step(metrics), with its state in cr_sched:
 *
 *   best starts at +inf (mode min) or -inf (mode max)
 *   better(a):  min rel: a < best (1 - threshold)    min abs: a < best - threshold
 *               max rel: a > best (threshold + 1)    max abs: a > best + threshold
 *   better(metric):  best = metric, bad = 0;  else bad += 1
 *   cooldown_counter > 0:  cooldown_counter -= 1, bad = 0
 *   bad > patience:  every group: new = max(lr factor, min_lr);
 *                    lr = new if lr - new > eps;
 *                    cooldown_counter = cooldown, bad = 0 */
#include "sched_impl.h"

static bool is_better(const cr_sched *s, double a, double best) {
  if (!s->mode_max)
    return s->threshold_abs ? a < best - s->threshold : a < best * (1. - s->threshold);
  return s->threshold_abs ? a > best + s->threshold : a > best * (s->threshold + 1.);
}

cr_status cr_sched_plateau_step(cr_ctx *ctx, cr_sched *s, cr_optim *opt, double metric) {
  static const char op[] = "sched_plateau_step";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!s || !opt)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op, s ? "optimizer" : "schedule");
  const cr__sched_def *d = cr__sched_def_of(s->kind);
  if (s->kind != CR_SCHED_PLATEAU)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "%s: the schedule is %s, not plateau (it follows the step: "
                            "cr_sched_apply)",
                            op, d ? d->name : "of an unknown kind");
  char why[200];
  if (!cr_sched_check(s, why, sizeof why))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s", op, why + strlen("sched: "));
  if (s->last_epoch == 0)
    s->best = s->mode_max ? -INFINITY : INFINITY; /* PyTorch's mode_worse */
  s->last_epoch++;
  if (is_better(s, metric, s->best)) {
    s->best = metric;
    s->num_bad_epochs = 0;
  } else {
    s->num_bad_epochs++;
  }
  if (s->cooldown_counter > 0) {
    s->cooldown_counter--;
    s->num_bad_epochs = 0; /* bad steps in a cooldown do not count */
  }
  if (s->num_bad_epochs > s->patience) {
    for (int g = 0; g < cr_optim_num_groups(opt); g++) {
      const double old = cr_optim_get_lr(opt, g), low = old * s->factor;
      const double lr = s->min_lr > low ? s->min_lr : low; /* Python's max(low, min_lr) */
      if (old - lr > s->eps)
        cr_optim_set_lr(opt, g, lr);
    }
    s->cooldown_counter = s->cooldown;
    s->num_bad_epochs = 0;
  }
  return CR_OK;
}
