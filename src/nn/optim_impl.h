/* optim_impl.h — the optimizer's state, shared by optim.c (updates) and
 * optim_checkpoint.c (saving and loading it).  Internal: not installed. */
#ifndef CHAINRULE_NN_OPTIM_IMPL_H
#define CHAINRULE_NN_OPTIM_IMPL_H

#include "chainrule/optim.h"
#include "internal.h"

#define NBUF 3 /* state buffers per parameter, at most */

typedef struct opt_param {
  cr_tensor *p;         /* borrowed */
  cr_tensor *buf[NBUF]; /* owned; p's shape and dtype; NULL for unused slots */
  int64_t step;         /* updates this parameter received (PyTorch's state["step"]) */
} opt_param;

typedef struct opt_group {
  double lr, base_lr;
  int first, n; /* params[first .. first+n) */
} opt_group;

struct cr_optim {
  cr_optim_opts o;
  const char *buf_name[NBUF]; /* per slot, NULL if unused (from the options) */
  opt_param *params;
  int n_params;
  opt_group *groups;
  int n_groups;
  int64_t steps;
};

#endif
