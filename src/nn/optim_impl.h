/* optim_impl.h — the optimizer descriptor (one row per optimizer) and an
 * optimizer's state.  Internal: not installed.
 *
 * An optimizer is a row, cr__optim_def: its name, its hyper-parameters
 * (PyTorch's names, defaults and the rule each must obey), its state
 * buffers per parameter (PyTorch's state-dict names, when each exists, its
 * initial value), its scalar state per parameter, and its update kernel
 * for f32 and f64.  The generic code reads only the row:
 *   optim_registry.c    the table, names, defaults, validation, by-name access
 *   optim.c             construction, state allocation, groups, the step loop
 *   optim_checkpoint.c  saving and loading the buffers and scalars
 * The rows and their kernels live by family: optim_sgd.c, optim_adam.c
 * (Adam, AdamW, NAdam, RAdam, Adamax), optim_adaptive.c (RMSprop, Adagrad,
 * Adadelta).  Adding an optimizer is one row plus its kernel, its value in
 * cr_optim_kind and its line in the table. */
#ifndef CHAINRULE_NN_OPTIM_IMPL_H
#define CHAINRULE_NN_OPTIM_IMPL_H

#include <stddef.h>

#include "chainrule/optim.h"
#include "internal.h"

#define NBUF 3    /* state buffers per parameter, at most */
#define NSCALAR 1 /* scalar state per parameter (besides its step count), at most */
#define NHYPER 8  /* hyper-parameters of one optimizer, at most */

/* What a hyper-parameter's value must be.  Every rule but HR_BOOL also
 * requires a finite value. */
typedef enum cr__hyper_rule {
  HR_NONNEG, /* >= 0 */
  HR_BETA,   /* in [0, 1) */
  HR_UNIT,   /* in [0, 1] */
  HR_FINITE, /* any finite value */
  HR_BOOL,   /* a bool field: no rule */
} cr__hyper_rule;

typedef struct cr__optim_hyper {
  const char *name; /* PyTorch's argument name (betas split into beta1, beta2) */
  size_t off;       /* offsetof(cr_optim_opts, field): a double, a bool for HR_BOOL */
  cr__hyper_rule rule;
  double def; /* PyTorch's default */
} cr__optim_hyper;

#define CR__HYPER(field, rule, def)                                                                \
  { #field, offsetof(cr_optim_opts, field), rule, def }

typedef struct cr__optim_buf {
  const char *name; /* PyTorch's state-dict name, also the checkpoint's; NULL: unused slot */
  const char *when; /* exists if this hyper-parameter is nonzero when the optimizer is made;
                       NULL: always */
  const char *init; /* starts at this hyper-parameter's value; NULL: at 0 */
  bool nonneg;      /* holds squares or magnitudes: a checkpoint value < 0 is refused */
} cr__optim_buf;

typedef struct cr__optim_scalar {
  const char *name; /* PyTorch's state-dict name, also the checkpoint's; NULL: unused */
  double init;
} cr__optim_scalar;

/* One parameter's update, as the kernel sees it. */
typedef struct cr__optim_args {
  const cr_optim_opts *o;
  double lr;       /* its group's lr */
  int64_t t;       /* its own update count, this one included (1 on the first) */
  int64_t n;       /* elements */
  void *p;         /* (n) the parameter, updated in place */
  const void *g;   /* (n) its gradient */
  void *buf[NBUF]; /* (n) each, slots as in the row; NULL if the slot does not exist */
  double *scalar;  /* [NSCALAR] its scalar state, slots as in the row */
} cr__optim_args;

typedef void (*cr__optim_kernel)(const cr__optim_args *a);

typedef struct cr__optim_def cr__optim_def;
struct cr__optim_def {
  const char *name;  /* "adam": cr_optim_kind_name, the checkpoint's P"kind", messages */
  const char *torch; /* PyTorch's class, "Adam" */
  cr__optim_hyper hyper[NHYPER]; /* PyTorch's order, lr first; ends at a NULL name */
  cr__optim_buf buf[NBUF];
  cr__optim_scalar scalar[NSCALAR];
  /* Rules between hyper-parameters (SGD's nesterov), after each passed its
   * own; NULL if none.  false and an error in ctx naming op. */
  bool (*check)(cr_ctx *ctx, const char *op, const cr__optim_def *d, const cr_optim_opts *o);
  /* The hyper-parameter OneCycleLR cycles: PyTorch's rule is beta1 if the
   * optimizer has betas, else momentum; NULL if it has neither. */
  const char *cycle;
  cr__optim_kernel kernel_f32, kernel_f64;
};

/* ---- the table (optim_registry.c) */

/* kind's row, or NULL for a kind that is not in the table. */
const cr__optim_def *cr__optim_def_of(cr_optim_kind kind);
/* d's hyper-parameter called name, or NULL. */
const cr__optim_hyper *cr__optim_hyper_find(const cr__optim_def *d, const char *name);
double cr__optim_hyper_get(const cr_optim_opts *o, const cr__optim_hyper *h);
void cr__optim_hyper_set(cr_optim_opts *o, const cr__optim_hyper *h, double v);
/* v obeys h's rule; else false and "op: <optimizer> <name> <value> must be
 * ..." in ctx. */
bool cr__optim_hyper_ok(cr_ctx *ctx, const char *op, const cr__optim_def *d,
                        const cr__optim_hyper *h, double v);
/* Every hyper-parameter of o->kind obeys its rule and the row's check;
 * else false and "op: <optimizer> <name> <value> must be ..." in ctx. */
bool cr__optim_opts_ok(cr_ctx *ctx, const char *op, const cr_optim_opts *o);
/* Whether buffer b of d exists for options o. */
bool cr__optim_buf_wanted(const cr__optim_def *d, int b, const cr_optim_opts *o);

/* ---- an optimizer */

typedef struct opt_param {
  cr_tensor *p;           /* borrowed */
  cr_tensor *buf[NBUF];   /* owned; p's shape and dtype; NULL for slots that do not exist */
  double scalar[NSCALAR]; /* the row's scalar state */
  int64_t step;           /* updates this parameter received (PyTorch's state["step"]) */
} opt_param;

typedef struct opt_group {
  double lr, base_lr;
  int first, n; /* params[first .. first+n) */
} opt_group;

struct cr_optim {
  cr_optim_opts o;
  const cr__optim_def *def;
  const char *buf_name[NBUF]; /* per slot: the row's name if the slot exists, else NULL */
  char pending[256];          /* why a schedule could not set a hyper-parameter: the next
                                 step fails with it; "" if none */
  opt_param *params;
  int n_params;
  opt_group *groups;
  int n_groups;
  int64_t steps;
};

#endif
