/* chainrule/module.h — models as modules: named parameters and submodules,
 * PyTorch's state_dict names, freezing, and checkpoints of a whole run.
 *
 * A module (cr_module) owns named parameters (persistent tensors with
 * requires_grad set), named buffers (persistent tensors that are saved but
 * not trained) and named submodules.  A parameter's full name is the path
 * to it, dotted exactly as in PyTorch's state_dict: "rnn.weight_ih_l0",
 * "head.weight", "mlp.0.bias".  Everything is kept in registration order;
 * the flattened order is PyTorch's too: a module's own parameters, then its
 * own buffers, then each submodule's, depth first.
 *
 * Worked example: a sine forecaster (the whole program is
 * examples/sine_forecaster.c).
 *
 *   cr_module *net = cr_module_new(ctx, "Forecaster");
 *   cr_rnn_config lstm = {&cr_cell_lstm, 1, 32, 1, 0, true, CR_F32}; // batch_first
 *   cr_module *rnn = cr_module_add(ctx, net, "rnn", cr_nn_rnn(ctx, &lstm, NULL, rng));
 *   cr_module *head = cr_module_add(ctx, net, "head", cr_nn_linear(ctx, 32, 1, true, CR_F32, rng));
 *   int n;
 *   cr_tensor *const *params = cr_module_parameters(net, &n);  // for the optimizer
 *   cr_optim *opt = cr_optim_new(ctx, &opts, params, n);         // NULL if anything failed
 *   ...
 *     cr_tensor *y = cr_module_forward(ctx, head, cr_module_forward(ctx, rnn, x)); // [B,T,1]
 *   ...
 *   cr_checkpoint ck = {.model = net, .optim = opt, .rng = rng};
 *   cr_checkpoint_save(ctx, &ck, "forecaster.safetensors");     // and cr_checkpoint_load
 *   cr_module_free(net);                                         // everything in it
 *
 * Your own module (C has no classes).  Write a struct that holds the root
 * module and borrowed handles to its parts, a constructor that registers
 * the parts under the names PyTorch's model would give them, and a forward
 * function of your own:
 *
 *   typedef struct forecaster { cr_module *m, *rnn, *head; } forecaster;
 *
 *   static forecaster forecaster_new(cr_ctx *ctx, cr_rng *rng) {
 *     forecaster f = {cr_module_new(ctx, "Forecaster")};
 *     cr_rnn_config c = {&cr_cell_lstm, 1, 32, 1, 0, true, CR_F32};
 *     f.rnn = cr_module_add(ctx, f.m, "rnn", cr_nn_rnn(ctx, &c, NULL, rng));
 *     f.head = cr_module_add(ctx, f.m, "head", cr_nn_linear(ctx, 32, 1, true, CR_F32, rng));
 *     return f; // on any error f.head is NULL (message in ctx); free f.m either way
 *   }
 *   static cr_tensor *forecaster_forward(cr_ctx *ctx, forecaster *f, cr_tensor *x) {
 *     cr_tensor *h = cr_module_forward(ctx, f->rnn, x);             // [B,T,32]
 *     return cr_module_forward(ctx, f->head, cr_select(ctx, h, 1, -1)); // [B,1]
 *   }
 *
 * A parameter of the module itself (not of a part) is cr_module_add_param,
 * initialised with chainrule/init.h.  To make a module of your own usable
 * where a module's forward is called generically (inside a
 * cr_nn_sequential, say), give it one with cr_module_set_forward; its user
 * pointer can hold your struct.
 *
 * The error rule is chainrule/base.h's, and it lets a model be built
 * without checks: every function called while an error is pending in ctx,
 * or given a NULL module, does nothing and returns NULL / the error (and
 * cr_module_add frees the child it was given), so checking the last result
 * is enough.  Messages name the function, the module and the names
 * involved ("module_add: Forecaster already has a submodule 'rnn'").
 *
 * Ownership: cr_module_new and the cr_nn_* constructors return a root
 * module owned by the caller (cr_module_free).  cr_module_add moves a root
 * into a parent, which then owns it; handles to submodules, parameters and
 * the arrays returned below are borrowed from the tree.  A module, its
 * tensors and its rng are used by one thread at a time.
 *
 * Training mode is the context's (cr_set_training: PyTorch's model.train()
 * and model.eval()), so dropout follows it; so does grad mode.
 */
#ifndef CHAINRULE_MODULE_H
#define CHAINRULE_MODULE_H

#include <stdio.h>

#include "chainrule/io.h"
#include "chainrule/optim.h"
#include "chainrule/rnn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cr_module cr_module;

/* ---- building a tree */

/* An empty module whose type name ("Forecaster", shown by cr_module_print)
 * is copied (up to 47 bytes; NULL: "Module").  NULL and an error only when
 * out of memory or with an error pending. */
cr_module *cr_module_new(cr_ctx *ctx, const char *type_name);
/* Free a root module and everything in it: submodules, parameters,
 * buffers, their gradients.  NULL accepted; a module that has a parent is
 * freed with its root (passing it here does nothing). */
void cr_module_free(cr_module *m);

/* Make child (a root) the submodule `name` of parent and return it
 * (borrowed: parent owns it now).  name: letters, digits and '_' (1..63
 * bytes; PyTorch names an attribute so, and a '.' would split the path),
 * unique among parent's parameters, buffers and submodules.  On an error —
 * parent NULL, a bad or taken name, an error pending — child is freed and
 * NULL is returned, so cr_module_add(ctx, m, "fc", cr_nn_linear(...))
 * never leaks; child NULL (its constructor failed) returns NULL.  A child
 * that is already in a tree (or holds parent) is an error and stays where
 * it is. */
cr_module *cr_module_add(cr_ctx *ctx, cr_module *parent, const char *name, cr_module *child);
/* A new parameter of m called name (rules as for cr_module_add): a
 * persistent tensor, zero-filled, requires_grad on, owned by m.  Returns it
 * (borrowed) to be initialised (chainrule/init.h), or NULL and an error. */
cr_tensor *cr_module_add_param(cr_ctx *ctx, cr_module *m, const char *name, cr_dtype dt, int ndim,
                               const int64_t *shape);
/* A new buffer: saved and loaded with the parameters (PyTorch's
 * register_buffer: running statistics, masks), never trained (requires_grad
 * off, not in cr_module_parameters), owned by m.  Zero-filled; f32 or f64
 * (the dtypes a checkpoint stores). */
cr_tensor *cr_module_add_buffer(cr_ctx *ctx, cr_module *m, const char *name, cr_dtype dt, int ndim,
                                const int64_t *shape);

/* ---- the built-in modules (PyTorch's names, shapes and default
 * initialisation, drawn from rng at construction; chainrule/init.h).
 * Each returns a root module (cr_module_free, or cr_module_add it), or
 * NULL and an error naming the argument ("nn_linear: in_features 0 must be
 * >= 1").  Forward (cr_module_forward) is given in each case. */

/* nn.Linear: weight [out, in], bias [out] (bias false: none).
 * y = x W^T + b for x [..., in] -> [..., out] (cr_linear). */
cr_module *cr_nn_linear(cr_ctx *ctx, int64_t in_features, int64_t out_features, bool bias,
                        cr_dtype dt, cr_rng *rng);
/* nn.Embedding: weight [V, E] ~ N(0, 1).  Forward takes ids, an i64 tensor
 * of any shape with values in [0, V) (cr_from_i64, cr_wrap_i64), and gives
 * [ids' shape..., E]. */
cr_module *cr_nn_embedding(cr_ctx *ctx, int64_t num_embeddings, int64_t embedding_dim, cr_dtype dt,
                           cr_rng *rng);
/* nn.LayerNorm over the last ndim dims of its input, normalized_shape
 * their sizes (CR_SHAPE(64) for the last dim alone); eps (PyTorch's
 * default 1e-5); with elementwise_affine, weight (ones) and bias (zeros)
 * of normalized_shape.  Forward: cr_layer_norm. */
cr_module *cr_nn_layer_norm(cr_ctx *ctx, int ndim, const int64_t *normalized_shape, double eps,
                            bool elementwise_affine, cr_dtype dt);
/* nn.Dropout(p), 0 <= p < 1: cr_dropout with rng (borrowed; it must
 * outlive the module) in training mode, the identity otherwise. */
cr_module *cr_nn_dropout(cr_ctx *ctx, double p, cr_rng *rng);
/* A module without parameters around a one-input op (nn.Tanh and the
 * like): forward is fn(ctx, x).  type_name as for cr_module_new. */
cr_module *cr_nn_func(cr_ctx *ctx, const char *type_name,
                      cr_tensor *(*fn)(cr_ctx *ctx, cr_tensor *x));
/* nn.Tanh, nn.ReLU, nn.Sigmoid, nn.GELU (exact): cr_nn_func of the op. */
cr_module *cr_nn_tanh(cr_ctx *ctx);
cr_module *cr_nn_relu(cr_ctx *ctx);
cr_module *cr_nn_sigmoid(cr_ctx *ctx);
cr_module *cr_nn_gelu(cr_ctx *ctx);
/* nn.Sequential: mods[0..n) become submodules "0", "1", ... (freed on any
 * error, like cr_module_add; n >= 0, a NULL entry is an error).  Forward
 * runs every submodule in turn, also those added later with
 * cr_module_add. */
cr_module *cr_nn_sequential(cr_ctx *ctx, int n, cr_module *const *mods);
/* cr_nn_sequential of its arguments:
 *   cr_module *mlp = CR_SEQUENTIAL(ctx, cr_nn_linear(ctx, 1, 32, true, CR_F64, rng),
 *                                  cr_nn_tanh(ctx), cr_nn_linear(ctx, 32, 1, true, CR_F64, rng));
 * C leaves the order in which an initializer list is evaluated unspecified
 * (GCC and Clang go left to right); to be sure of the order parameters are
 * drawn in, make the modules in statements of their own. */
#define CR_SEQUENTIAL(ctx, ...)                                                                    \
  cr_nn_sequential(ctx, (int)(sizeof((cr_module *[]){__VA_ARGS__}) / sizeof(cr_module *)),         \
                   (cr_module *[]){__VA_ARGS__})

/* nn.RNN / nn.LSTM / nn.GRU (or a stack of any cell, chainrule/rnn.h): a
 * cr_rnn_new_ex stack whose parameters are this module's, named as
 * PyTorch's (weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0, ...), in
 * PyTorch's order.  v may be NULL; rng draws the parameters and is kept
 * (borrowed) for dropout between layers.  Type name "RNN", "LSTM" or "GRU"
 * (the cell's name for other cells).  Forward: the output [T, B, D*H_out]
 * ([B, T, .] with batch_first) from zero initial states. */
cr_module *cr_nn_rnn(cr_ctx *ctx, const cr_rnn_config *cfg, const cr_rnn_variant *v, cr_rng *rng);
/* The stack inside a cr_nn_rnn module (borrowed), for cr_rnn_forward_ex
 * and the other functions of chainrule/rnn.h; NULL for another module. */
cr_rnn *cr_nn_rnn_get(const cr_module *m);
/* cr_rnn_forward of the stack, with the module's rng: initial states,
 * lengths and the final states as there. */
CR_NODISCARD cr_status cr_nn_rnn_forward(cr_ctx *ctx, cr_module *m, cr_tensor *input,
                                         cr_tensor *const *init, const int64_t *lengths,
                                         cr_tensor **output, cr_tensor **final);

/* ---- forward */

/* A module's forward: self is the module, x its input; returns the output
 * (an arena tensor), or NULL with an error in ctx. */
typedef cr_tensor *(*cr_module_forward_fn)(cr_ctx *ctx, cr_module *self, cr_tensor *x);
/* Give m a forward, and a user pointer it can read with cr_module_user
 * (never freed by chainrule).  Replaces the one m had. */
void cr_module_set_forward(cr_module *m, cr_module_forward_fn fn, void *user);
void *cr_module_user(const cr_module *m);
/* m's forward on x.  NULL if x is NULL, an error is pending, or m has no
 * forward ("module_forward: Forecaster has no forward: call your own
 * function, or give it one with cr_module_set_forward"). */
cr_tensor *cr_module_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x);

/* ---- names, lookup, iteration */

/* m's type name ("Linear"), and its name in its parent ("head"; "" for a
 * root).  Borrowed; "" for NULL. */
const char *cr_module_type(const cr_module *m);
const char *cr_module_name(const cr_module *m);
/* The submodule at a dotted path ("rnn", "mlp.0"), or NULL. */
cr_module *cr_module_get(const cr_module *m, const char *path);
/* The parameter or buffer with that full name ("rnn.weight_hh_l0"), or
 * NULL.  Borrowed. */
cr_tensor *cr_module_tensor(const cr_module *m, const char *name);

/* The arrays below are borrowed from m and valid until the tree under m
 * changes (a module, parameter or buffer added; m freed); those of
 * cr_module_parameters also until its next call on m, which refills them
 * (with the parameters trainable then).  Calling them again allocates only
 * when the tree grew, so a training loop may call them every step. */

/* The trainable parameters (requires_grad on, i.e. not frozen), in order:
 * their number into *n (which must not be NULL).  What the optimizers and
 * the clipping functions take:
 *   int n; cr_tensor *const *p = cr_module_parameters(m, &n);
 *   cr_optim *opt = cr_optim_new(ctx, &opts, p, n);
 *   double norm = cr_clip_grad_norm(ctx, p, n, 1.0);
 * (cr_optim_new copies the array.)  NULL and *n = 0 for NULL m or no
 * memory.  Unlike PyTorch's parameters(), frozen ones are left out: build
 * the optimizer the same way whenever its state is to be loaded. */
cr_tensor *const *cr_module_parameters(cr_module *m, int *n);
/* PyTorch's torch.optim.Adam(model.parameters(), lr=lr) and its kin: an
 * optimizer of kind with PyTorch's defaults (cr_optim_default_opts) and
 * learning rate lr over m's trainable parameters; owned by the caller
 * (cr_optim_free).  For other options use cr_optim_new with
 * cr_module_parameters.  NULL and an error as cr_optim_new's. */
cr_optim *cr_module_optim(cr_ctx *ctx, cr_module *m, cr_optim_kind kind, double lr);
/* Every parameter, frozen ones too (PyTorch's named_parameters), and, if
 * names is not NULL, their full names in *names. */
cr_tensor *const *cr_module_named_parameters(cr_module *m, int *n, const char *const **names);
/* Every parameter and buffer, as the state dict holds them (PyTorch's
 * state_dict keys and order); is_buffer (may be NULL) tells them apart. */
cr_tensor *const *cr_module_state_dict(cr_module *m, int *n, const char *const **names,
                                       const bool **is_buffer);

/* Number of parameter elements: all, and trainable only (PyTorch's
 * sum(p.numel() for p in model.parameters() [if p.requires_grad])). */
int64_t cr_module_num_params(const cr_module *m);
int64_t cr_module_num_trainable(const cr_module *m);
/* cr_zero_grad on every parameter of the tree. */
void cr_module_zero_grad(cr_module *m);

/* Freeze (requires_grad off: backward computes no gradient for them and
 * optimizers skip them) or unfreeze every parameter whose full name
 * matches pattern: the name itself, a glob (fnmatch, where '*' matches
 * dots too: "rnn.*", "*.bias", "rnn.*_l0"), or a submodule's path ("rnn":
 * all of its parameters); NULL matches all.  Returns how many matched, or
 * -1 and an error (CR_ERR_ARG) when none did: "module_freeze: 'rnm.*'
 * matches no parameter of CharLM (it has embed.weight, rnn.weight_ih_l0,
 * ...)". */
int cr_module_freeze(cr_ctx *ctx, cr_module *m, const char *pattern);
int cr_module_unfreeze(cr_ctx *ctx, cr_module *m, const char *pattern);

/* Print m as PyTorch's repr does, then a table of the state dict (full
 * name, shape, dtype; frozen parameters and buffers marked) and the
 * totals, e.g.
 *   Forecaster(
 *     (rnn): LSTM(1, 32, batch_first=True)
 *     (head): Linear(in_features=32, out_features=1, bias=True)
 *   )
 *     rnn.weight_ih_l0  [128,1]   f32
 *     ...
 *     head.bias         [1]       f32
 *   4513 parameters (4513 trainable) in 6 tensors */
void cr_module_print(FILE *f, const cr_module *m);

/* ---- state dicts and checkpoints
 *
 * Tensors are stored under their state-dict names in safetensors files
 * (chainrule/io.h), so a PyTorch model's state_dict converted by
 * examples/torch_to_safetensors.py loads into the chainrule model of the
 * same structure, and the other way round.
 *
 * Loading is all or nothing: everything is checked first — that every
 * tensor is there (strict), has the model's shape and dtype, and that
 * parameters hold only finite values; that the optimizer's state fits; the
 * generator's state — and nothing changes unless all of it fits.  The
 * message names the file, the tensor and both shapes:
 *   "ckpt.safetensors: tensor 'head.weight' is [3,32], this model needs [2,32]"
 *   "ckpt.safetensors: missing head.bias; unexpected head.b (strict load of Net; ...)"
 * A file that cannot be read or parsed fails the same way (chainrule/io.h). */

/* Missing and unexpected keys (PyTorch's load_state_dict result). */
#define CR_LOAD_REPORT_LEN 1024
typedef struct cr_load_report {
  int n_missing;    /* the model's tensors that the file lacks */
  int n_unexpected; /* the file's tensors (under the prefix) the model lacks */
  /* their names, comma-separated, cut with "..." if longer */
  char missing[CR_LOAD_REPORT_LEN], unexpected[CR_LOAD_REPORT_LEN];
} cr_load_report;

/* Options of the loaders; NULL or zeros: strict, same dtypes. */
typedef struct cr_load_opts {
  /* PyTorch's strict=False: missing tensors keep their values, unexpected
   * ones are ignored (both still reported).  Shapes must fit either way. */
  bool non_strict;
  /* Accept f32 for f64 and the other way, converting the values (f64 to
   * f32 rounds; a value that overflows becomes inf and is refused).  Off:
   * a dtype mismatch is an error. */
  bool convert_dtype;
  /* Out, if not NULL: filled by every load, failed ones too. */
  cr_load_report *report;
} cr_load_opts;

/* Add m's state dict to w under prefix + each name (prefix may be NULL or
 * "").  Fails on a name already in w; may have added some entries then. */
CR_NODISCARD cr_status cr_module_save(cr_ctx *ctx, cr_module *m, cr_st_writer *w,
                                      const char *prefix);
/* Load m's state dict from the tensors of f named prefix + each name
 * (PyTorch's load_state_dict).  Tensors of f outside the prefix are not
 * looked at; under it, a tensor that is not m's is "unexpected". */
CR_NODISCARD cr_status cr_module_load(cr_ctx *ctx, cr_module *m, const cr_st_file *f,
                                      const char *prefix, const cr_load_opts *opts);

/* A training run's whole state, saved and loaded in one call.  Any field
 * may be NULL (zero), except that at least one of model, optim, rng.
 *
 * The file holds
 *   model         its state dict, under PyTorch's names ("rnn.weight_ih_l0")
 *   optim         its state under optim_prefix ("optim."; cr_optim_save)
 *   rng           metadata rng_key ("rng.state"): 80 hex digits
 *   extra         more tensors under names of their own (a carried hidden
 *                 state, an averaged model's copy)
 *   meta          metadata of your own (the step, an lr schedule's
 *                 position): key, value, key, value, ..., NULL
 * The optimizer's tensors and the extras are not the model's: a strict
 * load of the model ignores them, and loading with optim NULL ignores the
 * optimizer's.  On load, meta is not used: read your entries with
 * cr_st_meta from the file (cr_checkpoint_read), and check them BEFORE
 * loading, so a bad value also leaves everything as it was.  Training
 * resumed from a checkpoint continues bit for bit as if it had never
 * stopped (the generator's spare normal included). */
typedef struct cr_checkpoint {
  cr_module *model;
  cr_optim *optim;
  cr_rng *rng;
  const char *const *meta;        /* NULL-terminated pairs, or NULL (save only) */
  const char *const *extra_names; /* NULL-terminated, or NULL */
  cr_tensor *const *extra;        /* extra[i] is stored as extra_names[i] */
  const char *optim_prefix;       /* NULL: "optim." */
  const char *rng_key;            /* NULL: "rng.state" */
} cr_checkpoint;

/* Write ck to path atomically (cr_st_writer_save).  A meta key inside the
 * optimizer's prefix or equal to rng_key, or a name used twice, is
 * CR_ERR_ARG and nothing is written. */
CR_NODISCARD cr_status cr_checkpoint_save(cr_ctx *ctx, const cr_checkpoint *ck, const char *path);
/* The same into a writer (to add more to it before saving it yourself). */
CR_NODISCARD cr_status cr_checkpoint_write(cr_ctx *ctx, const cr_checkpoint *ck, cr_st_writer *w);
/* Load ck from path / from an open file, all or nothing (see above; opts
 * apply to the model and the extras; the optimizer's buffers convert as
 * cr_optim_load's do).  Extras must be in the file with their shapes and
 * hold finite values. */
CR_NODISCARD cr_status cr_checkpoint_load(cr_ctx *ctx, const cr_checkpoint *ck, const char *path,
                                          const cr_load_opts *opts);
CR_NODISCARD cr_status cr_checkpoint_read(cr_ctx *ctx, const cr_checkpoint *ck, const cr_st_file *f,
                                          const cr_load_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
