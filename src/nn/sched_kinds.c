/* sched_kinds.c — the schedules, one row each, with their formulas.  e is
 * the schedule's own step, b the group's base lr.
 *
 *   constant   lr = b
 *   step       lr = b gamma^floor(e / step_size)                    (StepLR)
 *   exp        lr = b gamma^e                                       (ExponentialLR)
 *   cosine     lr = eta_min + (b - eta_min) (1 + cos(pi e / t_max)) / 2
 *                                                 (CosineAnnealingLR, periodic)
 *   linear     lr = b (start + (end - start) min(e, total) / total)  (LinearLR)
 *   multistep  lr = b, times gamma^c at each milestone m <= e that appears c
 *              times                                                (MultiStepLR)
 *   onecycle   phases (i = 0, 1[, 2]) end at E_0 = pct_start T - 1, then
 *              (three_phase) E_1 = 2 pct_start T - 2, and last T - 1;
 *              in the phase holding e, from lr a to lr z:
 *                 x = (e - E_{i-1}) / (E_i - E_{i-1})     (E_{-1} = 0)
 *                 cos:    lr = z + (a - z) / 2 (cos(pi x) + 1)
 *                 linear: lr = (z - a) x + a
 *              with a, z: b / div_factor -> b -> b / div_factor / final_div_factor
 *              (three_phase: -> b -> b / div_factor -> the minimum); the
 *              momentum the same way, max_momentum -> base_momentum -> max
 *              (three_phase: -> base -> max -> max)              (OneCycleLR)
 *   plateau    driven by a metric: sched_plateau.c               (ReduceLROnPlateau)
 *
 * step, exp, cosine and linear are closed forms where PyTorch recurses
 * from the previous lr (a few ulp apart); the expressions keep PyTorch's
 * closed-form operation order.  multistep multiplies at each milestone as
 * PyTorch's recursion does, and onecycle is PyTorch's own closed form, in
 * its operation order: both give PyTorch's bits. */
#include "sched_impl.h"

#include <assert.h>

/* ---- constant, step, exp, cosine, linear */

static double constant_lr(const cr_sched *s, double base, int64_t step) {
  (void)s, (void)step;
  return base;
}

static double step_lr(const cr_sched *s, double base, int64_t step) {
  return base * pow(s->gamma, (double)(step / s->step_size));
}

static double exp_lr(const cr_sched *s, double base, int64_t step) {
  return base * pow(s->gamma, (double)step);
}

static bool cosine_check(const cr_sched *s, char *err, size_t n) {
  if (s->t_max > INT64_MAX / 2)
    return cr__sched_fail(err, n, "sched: t_max %lld is too large", (long long)s->t_max);
  return true;
}

static double cosine_lr(const cr_sched *s, double base, int64_t step) {
  /* periodic: reduce first so cos stays accurate for large steps */
  const double e = (double)(step % (2 * s->t_max));
  return s->eta_min + (base - s->eta_min) * (1 + cos(SCHED_PI * e / (double)s->t_max)) / 2;
}

static double linear_lr(const cr_sched *s, double base, int64_t step) {
  const double e = (double)(step < s->total_iters ? step : s->total_iters);
  return base * (s->start_factor + (s->end_factor - s->start_factor) * e / (double)s->total_iters);
}

/* ---- multistep */

static double multistep_lr(const cr_sched *s, double base, int64_t step) {
  double lr = base;
  for (int i = 0; i < s->n_milestones && s->milestones[i] <= step;) {
    int c = 1; /* PyTorch's Counter: lr * gamma^count, once per distinct milestone */
    while (i + c < s->n_milestones && s->milestones[i + c] == s->milestones[i])
      c++;
    lr = lr * pow(s->gamma, (double)c);
    i += c;
  }
  return lr;
}

/* ---- onecycle */

typedef struct phase {
  double end_step; /* its last step */
  int from, to;    /* indices of its start and end values, see onecycle_at */
} phase;

/* OneCycleLR's phases for s->total_steps steps; returns their count. */
static int phases(const cr_sched *s, phase ph[3]) {
  const double T = (double)s->total_steps;
  /* PyTorch: float(pct_start * total_steps) - 1, float(2 * pct_start * total_steps) - 2,
   * total_steps - 1 */
  ph[0] = (phase){s->pct_start * T - 1, 0, 1};
  if (!s->three_phase) {
    ph[1] = (phase){T - 1, 1, 2};
    return 2;
  }
  ph[1] = (phase){2 * s->pct_start * T - 2, 1, 0};
  ph[2] = (phase){T - 1, 0, 2};
  return 3;
}

static double anneal(const cr_sched *s, double start, double end, double pct) {
  if (s->anneal_linear)
    return (end - start) * pct + start;
  const double cos_out = cos(SCHED_PI * pct) + 1;
  return end + (start - end) / 2.0 * cos_out;
}

/* The value at step of a quantity whose values v are, by index: 0 where the
 * cycle starts, 1 at its peak (lr) or trough (momentum), 2 where it ends
 * (lr: initial, max, min; momentum: max, base, max).  NAN past total_steps
 * or where PyTorch would divide by zero. */
static double onecycle_at(const cr_sched *s, int64_t step, const double v[3]) {
  if (step > s->total_steps)
    return NAN; /* PyTorch: "Tried to step N times. The specified number of total steps is T" */
  phase ph[3];
  const int n = phases(s, ph);
  double start_step = 0;
  for (int i = 0; i < n; i++) {
    const double end_step = ph[i].end_step;
    if ((double)step <= end_step || i == n - 1) {
      const double len = end_step - start_step;
      if (len == 0)
        return NAN; /* ZeroDivisionError */
      const double pct = ((double)step - start_step) / len;
      return anneal(s, v[ph[i].from], v[ph[i].to], pct);
    }
    start_step = end_step;
  }
  return NAN;
}

static double onecycle_lr(const cr_sched *s, double base, int64_t step) {
  const double initial = base / s->div_factor; /* PyTorch's group['initial_lr'], ['min_lr'] */
  const double v[3] = {initial, base, initial / s->final_div_factor};
  return onecycle_at(s, step, v);
}

static double onecycle_momentum(const cr_sched *s, int64_t step) {
  if (!s->cycle_momentum)
    return NAN;
  const double v[3] = {s->max_momentum, s->base_momentum, s->max_momentum};
  return onecycle_at(s, step, v);
}

static bool onecycle_check(const cr_sched *s, char *err, size_t n) {
  if (s->pct_start * (double)s->total_steps - 1 == 0)
    return cr__sched_fail(err, n,
                          "sched: pct_start %g x total_steps %lld = 1 leaves OneCycleLR's first "
                          "phase without steps (PyTorch divides by zero)",
                          s->pct_start, (long long)s->total_steps);
  return true;
}

/* ---- the table, indexed by cr_sched_kind */

#define INT(name, label, req, field, def, rule) CR__SP(name, label, req, SP_INT, field, def, rule)
#define REAL(name, label, req, field, def, rule) CR__SP(name, label, req, SP_REAL, field, def, rule)
#define BOOL(name, field, def) CR__SP(name, NULL, false, SP_BOOL, field, def, SR_ANY)

static const cr__sched_def table[] = {
    [CR_SCHED_CONSTANT] = {.name = "constant", .torch = "ConstantLR(factor=1)", .lr = constant_lr},
    [CR_SCHED_STEP] = {.name = "step",
                       .torch = "StepLR",
                       .param = {INT("step_size", "SIZE", true, step_size, 0, SR_COUNT),
                                 REAL("gamma", "GAMMA", true, gamma, 0.1, SR_POS)},
                       .lr = step_lr},
    [CR_SCHED_EXPONENTIAL] = {.name = "exp",
                              .torch = "ExponentialLR",
                              .param = {REAL("gamma", "GAMMA", true, gamma, 0, SR_POS)},
                              .lr = exp_lr},
    [CR_SCHED_COSINE] = {.name = "cosine",
                         .torch = "CosineAnnealingLR",
                         .param = {INT("t_max", "TMAX", true, t_max, 0, SR_COUNT),
                                   REAL("eta_min", "ETA_MIN", false, eta_min, 0, SR_NONNEG)},
                         .check = cosine_check,
                         .lr = cosine_lr},
    [CR_SCHED_LINEAR] = {.name = "linear",
                         .torch = "LinearLR",
                         .param = {REAL("start_factor", "START", true, start_factor, 1.0 / 3,
                                        SR_FACTOR),
                                   REAL("end_factor", "END", true, end_factor, 1.0, SR_UNIT),
                                   INT("total_iters", "TOTAL", true, total_iters, 5, SR_COUNT)},
                         .lr = linear_lr},
    [CR_SCHED_MULTISTEP] = {.name = "multistep",
                            .torch = "MultiStepLR",
                            .param = {CR__SP("milestones", "MILESTONES", true, SP_LIST, milestones,
                                             0, SR_MILESTONES),
                                      REAL("gamma", "GAMMA", false, gamma, 0.1, SR_POS)},
                            .lr = multistep_lr},
    [CR_SCHED_ONECYCLE] =
        {.name = "onecycle",
         .torch = "OneCycleLR",
         .param = {INT("total_steps", "TOTAL", true, total_steps, 0, SR_COUNT),
                   REAL("pct_start", "PCT_START", false, pct_start, 0.3, SR_UNIT),
                   CR__SP_CHOICE("anneal_strategy", anneal_linear, "cos", "linear"),
                   BOOL("three_phase", three_phase, 0), BOOL("cycle_momentum", cycle_momentum, 1),
                   REAL("base_momentum", NULL, false, base_momentum, 0.85, SR_BELOW1),
                   REAL("max_momentum", NULL, false, max_momentum, 0.95, SR_BELOW1),
                   REAL("div_factor", NULL, false, div_factor, 25, SR_POS),
                   REAL("final_div_factor", NULL, false, final_div_factor, 1e4, SR_POS)},
         .check = onecycle_check,
         .lr = onecycle_lr,
         .momentum = onecycle_momentum},
    [CR_SCHED_PLATEAU] = {.name = "plateau",
                          .torch = "ReduceLROnPlateau",
                          .param = {REAL("factor", "FACTOR", false, factor, 0.1, SR_BELOW1),
                                    INT("patience", "PATIENCE", false, patience, 10, SR_NONNEG_I),
                                    CR__SP_CHOICE("mode", mode_max, "min", "max"),
                                    REAL("threshold", NULL, false, threshold, 1e-4, SR_NONNEG),
                                    CR__SP_CHOICE("threshold_mode", threshold_abs, "rel", "abs"),
                                    INT("cooldown", NULL, false, cooldown, 0, SR_NONNEG_I),
                                    REAL("min_lr", NULL, false, min_lr, 0, SR_NONNEG),
                                    REAL("eps", NULL, false, eps, 1e-8, SR_NONNEG)}},
};
static_assert(sizeof table / sizeof table[0] == CR_SCHED_NUM_KINDS,
              "every cr_sched_kind has a row");

const cr__sched_def *cr__sched_def_of(cr_sched_kind kind) {
  return (int)kind >= 0 && (int)kind < CR_SCHED_NUM_KINDS ? &table[kind] : NULL;
}

const cr__sched_def *cr__sched_row(int i) { return &table[i]; }

const cr__sched_def *cr__sched_find(const char *name, size_t n) {
  for (int i = 0; i < CR_SCHED_NUM_KINDS; i++)
    if (strlen(table[i].name) == n && !strncmp(name, table[i].name, n))
      return &table[i];
  return NULL;
}
