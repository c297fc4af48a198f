/* module_impl.h — the module tree's representation, shared by the files of
 * src/nn/module*.c (the tree, the built-in modules, printing, state dicts).
 * Internal: not installed. */
#ifndef CHAINRULE_NN_MODULE_IMPL_H
#define CHAINRULE_NN_MODULE_IMPL_H

#include "chainrule/module.h"
#include "internal.h"

#define CR__MOD_NAME_MAX 64 /* a local name's bytes, with the NUL */
#define CR__MOD_TYPE_MAX 48

/* A parameter or buffer of one module. */
typedef struct cr__mod_tensor {
  char name[CR__MOD_NAME_MAX];
  cr_tensor *t;
  bool buffer;
  bool owned; /* freed with the module; false: its impl owns it (the rnn's) */
} cr__mod_tensor;

/* The tree under a module flattened into the state dict's order (own
 * parameters, own buffers, then each child's, depth first), with full
 * dotted names; rebuilt when the tree below changed (valid false). */
typedef struct cr__mod_flat {
  bool valid;
  int n, cap;            /* entries; every array below has cap slots */
  char **names;          /* [n] full names, malloc'd */
  cr_tensor **t;         /* [n] */
  bool *buffer;          /* [n] */
  int n_params;          /* entries that are parameters, then in: */
  cr_tensor **params;    /* [n_params] */
  const char **pnames;   /* [n_params] (pointing into names) */
  cr_tensor **trainable; /* scratch of cr_module_parameters, cap entries */
} cr__mod_flat;

struct cr_module {
  char type[CR__MOD_TYPE_MAX];
  char extra[160]; /* the constructor's arguments, as PyTorch's extra_repr */
  cr_module *parent;
  char name[CR__MOD_NAME_MAX]; /* in the parent; "" for a root */
  cr__mod_tensor *tensors;
  int n_tensors, cap_tensors;
  cr_module **kids; /* submodules, owned */
  int n_kids, cap_kids;
  cr_module_forward_fn forward;
  void *user;
  /* a built-in module's own data (its forward reads it), freed with it */
  void *impl;
  void (*impl_free)(void *impl);
  cr__mod_flat flat;
};

/* A new root of the given type (with an error pending: NULL). */
cr_module *cr__module_make(cr_ctx *ctx, const char *op, const char *type);
/* Register t (persistent) as parameter or buffer `name` of m; owned: m
 * frees it.  false and an error naming op (t is not freed). */
bool cr__module_put(cr_ctx *ctx, const char *op, cr_module *m, const char *name, cr_tensor *t,
                    bool buffer, bool owned);
/* m's tree flattened (NULL when out of memory: the error goes to no
 * context, callers with one report it). */
const cr__mod_flat *cr__module_flat(cr_module *m);

#endif
