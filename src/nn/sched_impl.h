/* sched_impl.h — the schedule descriptor (one row per schedule).  Internal:
 * not installed.
 *
 * A schedule is a row, cr__sched_def: its spec name, PyTorch's class, its
 * parameters (name, how a spec gives it, the cr_sched field, PyTorch's
 * default, the rule it must obey), rules between parameters, and its
 * learning rate (and momentum, for OneCycleLR) as a function of the step.
 * The generic code reads only the row:
 *   sched.c          defaults, validation, lr(step), momentum(step), apply
 *   sched_parse.c    the spec strings ("cosine:1000:0.01", "onecycle:500:pct_start=0.25")
 *   sched_plateau.c  ReduceLROnPlateau's metric-driven step (its row has no lr function)
 * The rows and their formulas are in sched_kinds.c.  Adding a schedule is
 * one row plus its lr function, its value in cr_sched_kind and its line in
 * the table. */
#ifndef CHAINRULE_NN_SCHED_IMPL_H
#define CHAINRULE_NN_SCHED_IMPL_H

#include <stddef.h>

#include "chainrule/optim.h"
#include "internal.h"

#define SCHED_PI 3.14159265358979323846 /* math.pi; M_PI is not in ISO C */
#define NPARAM 10                       /* parameters of one schedule, at most */

typedef enum cr__sparam_type {
  SP_INT,    /* int64_t */
  SP_REAL,   /* double */
  SP_BOOL,   /* bool, spelled 0 / 1 */
  SP_CHOICE, /* bool, spelled choice[0] (false) or choice[1] (true) */
  SP_LIST,   /* the milestones: n_milestones and milestones[] */
} cr__sparam_type;

/* What a parameter's value must be ("<name> <value> must be ..."). */
typedef enum cr__sparam_rule {
  SR_ANY,        /* no rule (bools, choices) */
  SR_COUNT,      /* int >= 1 */
  SR_NONNEG_I,   /* int >= 0 */
  SR_POS,        /* > 0 and finite */
  SR_NONNEG,     /* >= 0 and finite */
  SR_FACTOR,     /* in (0, 1] */
  SR_UNIT,       /* in [0, 1] */
  SR_BELOW1,     /* in [0, 1) */
  SR_MILESTONES, /* at most CR_SCHED_MAX_MILESTONES, each >= 0, not decreasing */
} cr__sparam_rule;

typedef struct cr__sched_param {
  const char *name;  /* the spec's NAME=VALUE and messages: PyTorch's argument name */
  const char *label; /* the spec's positional placeholder ("SIZE"); NULL: by name only */
  bool required;     /* a spec must give it (positional, before the optional ones) */
  cr__sparam_type type;
  size_t off; /* offsetof(cr_sched, field) */
  double def; /* PyTorch's default (cr_sched_defaults) */
  cr__sparam_rule rule;
  const char *choice[2]; /* SP_CHOICE: the spelling of false, of true */
} cr__sched_param;

#define CR__SP(name, label, req, type, field, def, rule)                                           \
  {                                                                                                \
    name, label, req, type, offsetof(cr_sched, field), def, rule, { NULL, NULL }                   \
  }
#define CR__SP_CHOICE(name, field, no, yes)                                                        \
  {                                                                                                \
    name, NULL, false, SP_CHOICE, offsetof(cr_sched, field), 0, SR_ANY, { no, yes }                \
  }

typedef struct cr__sched_def {
  const char *name;              /* the spec's name: "cosine" */
  const char *torch;             /* PyTorch's class: "CosineAnnealingLR" */
  cr__sched_param param[NPARAM]; /* positional ones first, in order; ends at a NULL name */
  /* Rules between parameters; NULL if none.  false and a message in err. */
  bool (*check)(const cr_sched *s, char *err, size_t n);
  /* lr at step (>= 0) of a group whose base lr is base; NULL: the schedule is
   * driven by a metric (cr_sched_plateau_step), not by the step. */
  double (*lr)(const cr_sched *s, double base, int64_t step);
  /* The momentum (or beta1) it sets at step, NAN for none; NULL: never. */
  double (*momentum)(const cr_sched *s, int64_t step);
} cr__sched_def;

/* kind's row, or NULL. */
const cr__sched_def *cr__sched_def_of(cr_sched_kind kind);
/* The row whose spec name is the n characters at name, or NULL. */
const cr__sched_def *cr__sched_find(const char *name, size_t n);
/* The i-th row (0 <= i < CR_SCHED_NUM_KINDS). */
const cr__sched_def *cr__sched_row(int i);
/* Check one parameter of s against its rule; false and "sched: <name>
 * <value> must be ..." in err. */
bool cr__sched_param_ok(const cr_sched *s, const cr__sched_param *p, char *err, size_t n);
/* snprintf into err (if err and n), returning false. */
bool cr__sched_fail(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the optimizer's side of momentum cycling (optim.c) */

/* Set the hyper-parameter opt's row cycles (beta1, momentum) to v, or, if
 * it cannot be (no such hyper-parameter, a buffer missing), record why: the
 * next cr_optim_step fails with that message.  who names the schedule. */
void cr__optim_cycle_momentum(cr_optim *opt, const char *who, double v);
/* Forget a recorded reason (a schedule that cycles nothing was applied). */
void cr__optim_clear_pending(cr_optim *opt);

#endif
