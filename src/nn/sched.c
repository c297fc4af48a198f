/* sched.c — schedules from their rows (sched_kinds.c): PyTorch's defaults,
 * validation, the lr and momentum at a step, warmups (SequentialLR) and
 * applying a schedule to an optimizer.  Nothing here names a schedule. */
#include "sched_impl.h"

#define MAX_WARMUP_DEPTH 16

bool cr__sched_fail(char *err, size_t n, const char *fmt, ...) {
  if (err && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
  }
  return false;
}

#define FIELD(s, p, type) (*(type *)((char *)(s) + (p)->off))
#define CFIELD(s, p, type) (*(const type *)((const char *)(s) + (p)->off))

void cr_sched_defaults(cr_sched_kind kind, cr_sched *s) {
  if (!s)
    return;
  memset(s, 0, sizeof *s);
  s->kind = kind;
  const cr__sched_def *d = cr__sched_def_of(kind);
  for (int i = 0; d && i < NPARAM && d->param[i].name; i++) {
    const cr__sched_param *p = &d->param[i];
    switch (p->type) {
    case SP_INT: FIELD(s, p, int64_t) = (int64_t)p->def; break;
    case SP_REAL: FIELD(s, p, double) = p->def; break;
    case SP_BOOL:
    case SP_CHOICE: FIELD(s, p, bool) = p->def != 0; break;
    case SP_LIST: s->n_milestones = 0; break;
    }
  }
}

bool cr__sched_param_ok(const cr_sched *s, const cr__sched_param *p, char *err, size_t n) {
  const char *name = p->name;
  if (p->rule == SR_MILESTONES) {
    if (s->n_milestones < 0 || s->n_milestones > CR_SCHED_MAX_MILESTONES)
      return cr__sched_fail(err, n, "sched: %d milestones: at most %d", s->n_milestones,
                            CR_SCHED_MAX_MILESTONES);
    for (int i = 0; i < s->n_milestones; i++)
      if (s->milestones[i] < 0 || (i && s->milestones[i] < s->milestones[i - 1]))
        return cr__sched_fail(err, n,
                              "sched: milestone %d (%lld) must be >= 0 and not below the one "
                              "before",
                              i, (long long)s->milestones[i]);
    return true;
  }
  if (p->type == SP_INT) {
    const long long v = CFIELD(s, p, int64_t);
    if (p->rule == SR_COUNT && v < 1)
      return cr__sched_fail(err, n, "sched: %s %lld must be >= 1", name, v);
    if (p->rule == SR_NONNEG_I && v < 0)
      return cr__sched_fail(err, n, "sched: %s %lld must be >= 0", name, v);
    return true;
  }
  if (p->type != SP_REAL)
    return true;
  const double v = CFIELD(s, p, double);
  switch (p->rule) {
  case SR_POS:
    if (!(v > 0 && isfinite(v)))
      return cr__sched_fail(err, n, "sched: %s %g must be > 0 and finite", name, v);
    break;
  case SR_NONNEG:
    if (!(v >= 0 && isfinite(v)))
      return cr__sched_fail(err, n, "sched: %s %g must be >= 0 and finite", name, v);
    break;
  case SR_FACTOR:
    if (!(v > 0 && v <= 1))
      return cr__sched_fail(err, n, "sched: %s %g must be in (0, 1]", name, v);
    break;
  case SR_UNIT:
    if (!(v >= 0 && v <= 1))
      return cr__sched_fail(err, n, "sched: %s %g must be in [0, 1]", name, v);
    break;
  case SR_BELOW1:
    if (!(v >= 0 && v < 1))
      return cr__sched_fail(err, n, "sched: %s %g must be in [0, 1)", name, v);
    break;
  default: break;
  }
  return true;
}

static bool check(const cr_sched *s, int depth, char *err, size_t n) {
  if (!s)
    return cr__sched_fail(err, n, "sched: schedule is NULL");
  if (depth > MAX_WARMUP_DEPTH)
    return cr__sched_fail(err, n, "sched: more than %d nested warmups (a cycle?)",
                          MAX_WARMUP_DEPTH);
  const cr__sched_def *d = cr__sched_def_of(s->kind);
  if (!d)
    return cr__sched_fail(err, n, "sched: unknown kind %d", (int)s->kind);
  for (int i = 0; i < NPARAM && d->param[i].name; i++)
    if (!cr__sched_param_ok(s, &d->param[i], err, n))
      return false;
  if (d->check && !d->check(s, err, n))
    return false;
  if (s->warmup) {
    if (!d->lr)
      return cr__sched_fail(err, n, "sched: %s takes no warmup (it follows a metric, not steps)",
                            d->name);
    if (s->warmup_steps < 0)
      return cr__sched_fail(err, n, "sched: warmup_steps %lld must be >= 0",
                            (long long)s->warmup_steps);
    const cr__sched_def *w = cr__sched_def_of(s->warmup->kind);
    if (w && !w->lr)
      return cr__sched_fail(err, n, "sched: %s cannot be a warmup (it follows a metric)", w->name);
    return check(s->warmup, depth + 1, err, n);
  }
  return true;
}

bool cr_sched_check(const cr_sched *s, char *err, size_t n) { return check(s, 0, err, n); }

/* The schedule in effect at *step, with *step made its own step
 * (SequentialLR); NULL for an invalid s or a negative step. */
static const cr_sched *in_effect(const cr_sched *s, int64_t *step) {
  if (*step < 0 || !check(s, 0, NULL, 0))
    return NULL;
  while (s->warmup) {
    if (*step < s->warmup_steps) {
      s = s->warmup;
      continue;
    }
    *step -= s->warmup_steps;
    break;
  }
  return s;
}

double cr_sched_lr(const cr_sched *s, double base, int64_t step) {
  s = in_effect(s, &step);
  const cr__sched_def *d = s ? cr__sched_def_of(s->kind) : NULL;
  return d && d->lr ? d->lr(s, base, step) : NAN;
}

double cr_sched_momentum(const cr_sched *s, int64_t step) {
  s = in_effect(s, &step);
  const cr__sched_def *d = s ? cr__sched_def_of(s->kind) : NULL;
  return d && d->momentum ? d->momentum(s, step) : NAN;
}

void cr_sched_apply(const cr_sched *s, cr_optim *opt, int64_t step) {
  if (!opt)
    return;
  const cr__sched_def *d = s && check(s, 0, NULL, 0) ? cr__sched_def_of(s->kind) : NULL;
  if (d && !d->lr)
    return; /* driven by a metric: the lr is cr_sched_plateau_step's */
  for (int g = 0; g < cr_optim_num_groups(opt); g++)
    cr_optim_set_lr(opt, g, cr_sched_lr(s, cr_optim_get_base_lr(opt, g), step));
  int64_t own = step;
  const cr_sched *e = in_effect(s, &own);
  const double m = cr_sched_momentum(s, step);
  if (e && !isnan(m))
    cr__optim_cycle_momentum(opt, cr__sched_def_of(e->kind)->name, m);
  else
    cr__optim_clear_pending(opt);
}
