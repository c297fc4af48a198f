/* chainrule/rnn.h — recurrent networks composed from primitive ops.
 *
 * A recurrent cell is ordinary code over ops: a step function that takes
 * the input at time t and the previous state and returns the new state.
 * The sequence driver unrolls it over T steps; backward on the unrolled
 * graph is backpropagation through time — no cell carries a hand-written
 * gradient.  The built-in cells (rnn_tanh, rnn_relu, lstm, gru) are defined
 * with exactly the public mechanism a user cell uses (cr_cell_def).
 *
 * Parameters follow PyTorch's names, shapes and gate order, so weights move
 * between the two without reshuffling:
 *   weight_ih_l{k} [G*H, I_k], weight_hh_l{k} [G*H, H],
 *   bias_ih_l{k} [G*H], bias_hh_l{k} [G*H]     (G = 1 rnn, 4 lstm, 3 gru)
 * with I_0 = input_size and I_k = hidden_size above the first layer,
 * initialised U(-1/sqrt(H), 1/sqrt(H)) from the library's seeded generator,
 * and named so (cr_name) — in graphs, prints and messages.
 *
 * Layout: sequences are [T, B, I] (time first) unless batch_first, then
 * [B, T, I].  States are [L, B, H] (L = num_layers).
 */
#ifndef CHAINRULE_RNN_H
#define CHAINRULE_RNN_H

#include "chainrule/io.h"
#include "chainrule/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = x @ W^T + b for x [..., in], W [out, in], b [out] (b may be NULL).
 * W is read through a transposed view (BLIS strides), never copied. */
cr_tensor *cr_linear(cr_ctx *ctx, cr_tensor *x, cr_tensor *W, cr_tensor *b);

#define CR_CELL_MAX_PARAMS 8
#define CR_CELL_MAX_STATES 4

/* What a cell needs to know about its layer while stepping. */
typedef struct cr_cell_layer {
  int64_t input_size, hidden_size;
  int layer; /* 0-based */
  cr_tensor *const *params; /* in the order of the def's param names */
  void *scratch; /* the def's per-forward data (see prepare) */
} cr_cell_layer;

/* A recurrent cell type.  All callbacks build their results with ops in
 * ctx and return NULL / a non-OK status on error (the message is in ctx). */
typedef struct cr_cell_def {
  const char *name;
  int n_states; /* state tensors, each [B, H] (lstm: h and c) */
  /* Optional: the states' short names ("h", "c"), used to name the
   * per-step states h_3, c_3; NULL entries (or none): "h", "s1", "s2"... */
  const char *state_names[CR_CELL_MAX_STATES];
  int n_params; /* per layer */
  const char *param_names[CR_CELL_MAX_PARAMS]; /* PyTorch names without _l{k} */
  /* Shape of parameter i for a layer with the given sizes. */
  void (*param_shape)(int i, int64_t input_size, int64_t hidden_size, int *ndim,
                      int64_t *shape);
  /* Optional: initialise parameter i (default U(-1/sqrt(H), 1/sqrt(H))). */
  cr_status (*init_param)(cr_ctx *ctx, int i, cr_tensor *p, int64_t hidden_size,
                          cr_rng *rng);
  /* Optional: transform the whole input sequence of a layer at once before
   * the steps (e.g. the input projections of all T steps in one matrix
   * product): x_all [T, B, I] -> [T, B, K]; the step then receives slice t
   * of the result as x_t.  NULL: steps receive the raw inputs. */
  cr_tensor *(*precompute)(cr_ctx *ctx, const cr_cell_layer *layer, cr_tensor *x_all);
  /* Optional: called once per layer per forward before the steps, e.g. to
   * build transposed views of weights; may set layer->scratch (arena). */
  cr_status (*prepare)(cr_ctx *ctx, cr_cell_layer *layer);
  /* One time step: x_t [B, I or K], state[0..n_states) each [B, H] ->
   * new_state[0..n_states) and the output [B, H] (*out; usually the new h). */
  cr_status (*step)(cr_ctx *ctx, const cr_cell_layer *layer, cr_tensor *x_t,
                    cr_tensor *const *state, cr_tensor **new_state, cr_tensor **out);
} cr_cell_def;

/* The built-in cells. */
extern const cr_cell_def cr_cell_rnn_tanh, cr_cell_rnn_relu, cr_cell_lstm, cr_cell_gru;
/* A built-in cell by name ("rnn_tanh", "rnn_relu", "lstm", "gru"), or NULL. */
const cr_cell_def *cr_cell_by_name(const char *name);

typedef struct cr_rnn_config {
  const cr_cell_def *cell;
  int64_t input_size, hidden_size;
  int num_layers;   /* >= 1 */
  double dropout;   /* on the outputs of every layer but the last, in training mode */
  bool batch_first; /* input/output [B, T, .] instead of [T, B, .] */
  cr_dtype dtype;
} cr_rnn_config;

/* A stack of recurrent layers and its parameters (persistent tensors,
 * requires_grad set).  Owned by the caller, freed with cr_rnn_free. */
typedef struct cr_rnn cr_rnn;

/* A new layer stack with parameters drawn from rng (PyTorch's default
 * init).  NULL and an error in ctx for a bad config. */
cr_rnn *cr_rnn_new(cr_ctx *ctx, const cr_rnn_config *cfg, cr_rng *rng);
void cr_rnn_free(cr_rnn *rnn);
const cr_rnn_config *cr_rnn_get_config(const cr_rnn *rnn);
int cr_rnn_num_params(const cr_rnn *rnn);
/* Parameter i (layer-major, then the cell's order) and its PyTorch name
 * (e.g. "weight_hh_l1").  Borrowed. */
cr_tensor *cr_rnn_param(const cr_rnn *rnn, int i);
const char *cr_rnn_param_name(const cr_rnn *rnn, int i);
/* The parameter with that name, or NULL. */
cr_tensor *cr_rnn_find_param(const cr_rnn *rnn, const char *name);

/* Run the stack over a sequence.
 *   input   [T, B, I] ([B, T, I] if batch_first)
 *   init    n_states tensors [L, B, H] (may be NULL: zeros; or any entry NULL)
 *   lengths B sequence lengths in 1..T, or NULL (all T): a sequence's state
 *           stops changing after its last step and its padded outputs are 0,
 *           so padding contributes nothing to loss or gradients
 *   rng     for dropout between layers (needed only when dropout > 0 in
 *           training mode)
 * Results: *output [T, B, H] (or [B, T, H]); final[0..n_states) each
 * [L, B, H] (final may be NULL).  Returns the status. */
CR_NODISCARD cr_status cr_rnn_forward(cr_ctx *ctx, const cr_rnn *rnn, cr_tensor *input,
                                      cr_tensor *const *init, const int64_t *lengths,
                                      cr_rng *rng, cr_tensor **output, cr_tensor **final);

/* Checkpointing: add every parameter to w as prefix + its PyTorch name
 * (e.g. "rnn." + "weight_ih_l0"; prefix may be ""), and read them back.
 * cr_rnn_load first checks that the file has every parameter with exactly
 * the right shape and changes nothing otherwise: the error names the file
 * and the tensor, e.g. "m.safetensors: tensor 'weight_hh_l0' is [40,10],
 * this model needs [80,20]".  Values are converted if the dtypes differ.
 * A parameter holding NaN or Inf (after conversion) is refused the same
 * way, before anything is read: "m.safetensors: tensor 'rnn.weight_hh_l0'
 * holds NaN or infinite values (...)" (CR_ERR_FORMAT).  A missing tensor is
 * CR_ERR_ARG with the reader's "no tensor named" message (chainrule/io.h). */
CR_NODISCARD cr_status cr_rnn_save(cr_ctx *ctx, const cr_rnn *rnn, cr_st_writer *w,
                                   const char *prefix);
CR_NODISCARD cr_status cr_rnn_load(cr_ctx *ctx, cr_rnn *rnn, const cr_st_file *f,
                                   const char *prefix);

/* Rare options of a forward pass (cr_rnn_forward_ex); zero = defaults. */
typedef struct cr_rnn_forward_opts {
  /* If not NULL, receives every step's state of every layer as tensors of
   * the graph: step_states[(l * n_states + s) * T + t] is state s of layer
   * l after step t ([B, H]), named "h_3" / "c_3" for layer 0 and "h_l1_3"
   * above (the cell's state names).  L * n_states * T entries. */
  cr_tensor **step_states;
  /* Mark those states with cr_retain_grad, so that after backward
   * cr_grad(step_states[i]) is dL/dh_t for every t and layer: the gradient
   * flowing back through time, one backward away. */
  bool retain_step_grads;

  /* Memory-efficient BPTT (Gruslys et al. 2016): each layer runs in
   * segments whose graphs are dropped after the forward and recomputed,
   * one at a time, during backward, so memory holds the segment
   * boundaries' states, the outputs and one segment — not every step's
   * activations.  The gradients are bit-identical to full BPTT's (the same
   * ops in the same order).  Costs about one extra forward pass.
   *   checkpoint_every  0: full BPTT (default); K > 0: segments of K steps
   *                     (rounded up to whole input-projection blocks of
   *                     ceil(256 / B) steps); CR_RNN_CHECKPOINT_AUTO: the
   *                     length that minimises memory (about sqrt(T) blocks,
   *                     measured on the first block)
   *   checkpoint_budget bytes the forward and backward of a layer may hold
   *                     (with every = 0 or AUTO): the longest segments that
   *                     fit; an error naming the least that would do when
   *                     none fits
   * Not with step_states (the states inside segments do not outlive the
   * forward). */
  int64_t checkpoint_every;
  size_t checkpoint_budget;
  /* Out: the segment length used per layer (0: full BPTT), if not NULL
   * (num_layers entries). */
  int64_t *checkpoint_chosen;
  /* Keep every value the cell computes.  By default a layer keeps of its
   * cells' intermediates only what backward reads (the ops declare it):
   * the rest (say an LSTM's pre-activations) is released after each block
   * of steps, and using such a tensor afterwards is an error.  States
   * (step_states) and outputs are always kept. */
  bool keep_activations;
  /* Steps per input projection (the cell's precompute runs on blocks of
   * this many steps); 0: ceil(256 / B), which keeps the products large.
   * Checkpointed segments hold whole blocks. */
  int64_t projection_block;
} cr_rnn_forward_opts;

#define CR_RNN_CHECKPOINT_AUTO (-1)

/* cr_rnn_forward with options (opts NULL: as cr_rnn_forward). */
CR_NODISCARD cr_status cr_rnn_forward_ex(cr_ctx *ctx, const cr_rnn *rnn, cr_tensor *input,
                                         cr_tensor *const *init, const int64_t *lengths,
                                         cr_rng *rng, const cr_rnn_forward_opts *opts,
                                         cr_tensor **output, cr_tensor **final);

/* cr_rnn_forward with the parameters given explicitly, in cr_rnn_param
 * order (layer-major, then the cell's param_names), instead of an rnn's
 * own: the functional form, for gradient checks and shared weights.  Each
 * parameter's shape and dtype are checked against cfg. */
CR_NODISCARD cr_status cr_rnn_forward_params(cr_ctx *ctx, const cr_rnn_config *cfg,
                                             cr_tensor *const *params, cr_tensor *input,
                                             cr_tensor *const *init, const int64_t *lengths,
                                             cr_rng *rng, cr_tensor **output,
                                             cr_tensor **final);
/* ... and with options. */
CR_NODISCARD cr_status cr_rnn_forward_params_ex(cr_ctx *ctx, const cr_rnn_config *cfg,
                                                cr_tensor *const *params, cr_tensor *input,
                                                cr_tensor *const *init, const int64_t *lengths,
                                                cr_rng *rng, const cr_rnn_forward_opts *opts,
                                                cr_tensor **output, cr_tensor **final);

#ifdef __cplusplus
}
#endif
#endif
