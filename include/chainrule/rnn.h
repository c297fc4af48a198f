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
 * with I_0 = input_size and I_k = D * H_out above the first layer,
 * initialised U(-1/sqrt(H), 1/sqrt(H)) from the library's seeded generator,
 * and named so (cr_name) — in graphs, prints and messages.
 *
 * Variants, as PyTorch's nn.RNN/LSTM/GRU options (cr_rnn_variant, cr_rnn_new_ex):
 *   bidirectional  D = 2: every layer also runs over time reversed, with
 *                  its own parameters named ..._reverse (weight_ih_l0_reverse);
 *                  the layer's output is [fwd | rev] along features
 *   proj_size      lstm only: h_t = W_hr (o * tanh(c_t)), weight_hr_l{k}
 *                  [P, H], weight_hh_l{k} [4H, P]; H_out = P, c stays [B, H]
 * H_out = proj_size if set, else hidden_size.
 *
 * Layout: sequences are [T, B, I] (time first) unless batch_first, then
 * [B, T, I]; outputs [T, B, D*H_out].  States are [L*D, B, size]
 * (L = num_layers; layer-major, direction-minor: entry 2l+1 is layer l's
 * reverse direction), width H_out for h (state 0), H for the others (c).
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

/* Per-sequence inputs a cell's steps may read besides x_t and the state
 * (cr_rnn_forward_opts.extra): an encoder's outputs for attention inside
 * the recurrence (Bahdanau et al. 2015), a conditioning vector, ...  The
 * tensors are ordinary graph tensors: gradients flow into them (and, with
 * checkpointing, the recomputed segments read the same ones and give the
 * same gradients, bit for bit).  The forward copies the struct and the
 * array; what user points to must live until the backward (recomputed
 * segments step again).  The library never reads *user. */
typedef struct cr_cell_extra {
  void *user; /* anything the cell wants (sizes, flags) */
  int n_tensors;
  cr_tensor *const *tensors;
} cr_cell_extra;

/* What a cell needs to know about its layer while stepping. */
typedef struct cr_cell_layer {
  int64_t input_size, hidden_size;
  int layer;                  /* 0-based */
  cr_tensor *const *params;   /* in the order of the def's param names */
  void *scratch;              /* the def's per-forward data (see prepare) */
  int direction;              /* 0; 1 for the reverse direction of a bidirectional layer */
  int64_t proj_size;          /* the lstm's projection size P, or 0 */
  int64_t output_size;        /* the output's (and h's) size: proj_size or hidden_size */
  const cr_cell_extra *extra; /* the forward's extra inputs, or NULL */
} cr_cell_layer;

/* A recurrent cell type.  All callbacks build their results with ops in
 * ctx and return NULL / a non-OK status on error (the message is in ctx). */
typedef struct cr_cell_def {
  const char *name;
  int n_states; /* state tensors, each [B, H] (lstm: h and c) */
  /* Optional: the states' short names ("h", "c"), used to name the
   * per-step states h_3, c_3; NULL entries (or none): "h", "s1", "s2"... */
  const char *state_names[CR_CELL_MAX_STATES];
  int n_params;                                /* per layer */
  const char *param_names[CR_CELL_MAX_PARAMS]; /* PyTorch names without _l{k} */
  /* Shape of parameter i for a layer with the given sizes. */
  void (*param_shape)(int i, int64_t input_size, int64_t hidden_size, int *ndim, int64_t *shape);
  /* Optional: initialise parameter i (default U(-1/sqrt(H), 1/sqrt(H))). */
  cr_status (*init_param)(cr_ctx *ctx, int i, cr_tensor *p, int64_t hidden_size, cr_rng *rng);
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

/* The built-in cells.  cr_cell_lstm_ln is the layer-normalised LSTM (Ba,
 * Kiros and Hinton 2016, "Layer Normalization", sec. 3.1 / eq. 20-22, with
 * KANN's per-gate statistics), gates i, f, g, o:
 *   [i f g o] = LN_4(x W_ih^T) * ln_ih_weight + bias_ih
 *             + LN_4(h W_hh^T) * ln_hh_weight + bias_hh
 *   c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
 *   h' = sigmoid(o) * tanh(LN(c') * ln_c_weight + ln_c_bias)
 * where LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over the last axis
 * (population variance) and LN_4 normalises each gate's H pre-activations
 * separately.  Parameters: weight_ih [4H, I], weight_hh [4H, H], bias_ih,
 * bias_hh, ln_ih_weight, ln_hh_weight [4H], ln_c_weight, ln_c_bias [H];
 * initialised: weights U(-1/sqrt(H), 1/sqrt(H)), gains 1, biases 0 but the
 * forget gate's bias_ih 1 (Jozefowicz et al. 2015, as KANN). */
extern const cr_cell_def cr_cell_rnn_tanh, cr_cell_rnn_relu, cr_cell_lstm, cr_cell_gru,
    cr_cell_lstm_ln;
/* A built-in cell by name ("rnn_tanh", "rnn_relu", "lstm", "gru",
 * "lstm_ln"), or NULL. */
const cr_cell_def *cr_cell_by_name(const char *name);

typedef struct cr_rnn_config {
  const cr_cell_def *cell;
  int64_t input_size, hidden_size;
  int num_layers;   /* >= 1 */
  double dropout;   /* on the outputs of every layer but the last, in training mode */
  bool batch_first; /* input/output [B, T, .] instead of [T, B, .] */
  cr_dtype dtype;
} cr_rnn_config;

/* PyTorch's other layer options (cr_rnn_new_ex); zero = none. */
typedef struct cr_rnn_variant {
  /* Each layer also runs over time reversed (D = 2), PyTorch's
   * bidirectional: parameters ..._l{k}_reverse; with lengths, sequence b's
   * reverse pass starts at its own last step len_b - 1 (as a packed
   * sequence in PyTorch); outputs [T, B, 2 H_out], states [2L, B, .]. */
  bool bidirectional;
  /* lstm only, 0 or 0 < P < hidden_size: h is projected to P features,
   * h = W_hr (o * tanh(c)) (PyTorch's proj_size; weight_hr_l{k} [P, H]). */
  int64_t proj_size;
} cr_rnn_variant;

/* A stack of recurrent layers and its parameters (persistent tensors,
 * requires_grad set).  Owned by the caller, freed with cr_rnn_free. */
typedef struct cr_rnn cr_rnn;

/* A new layer stack with parameters drawn from rng (PyTorch's default
 * init).  NULL and an error in ctx for a bad config. */
cr_rnn *cr_rnn_new(cr_ctx *ctx, const cr_rnn_config *cfg, cr_rng *rng);
/* ... with PyTorch's variants (v NULL: as cr_rnn_new).  Errors name the
 * field: "rnn_new: proj_size 64 must be < hidden_size 32", "rnn_new:
 * proj_size 4 with cell 'gru': proj_size is an lstm option". */
cr_rnn *cr_rnn_new_ex(cr_ctx *ctx, const cr_rnn_config *cfg, const cr_rnn_variant *v, cr_rng *rng);
void cr_rnn_free(cr_rnn *rnn);
const cr_rnn_config *cr_rnn_get_config(const cr_rnn *rnn);
/* The variant the stack was made with (all zero for cr_rnn_new); NULL for NULL. */
const cr_rnn_variant *cr_rnn_get_variant(const cr_rnn *rnn);
int cr_rnn_num_params(const cr_rnn *rnn);
/* Parameter i (layer-major, then direction, then the cell's order: PyTorch's
 * order) and its PyTorch name (e.g. "weight_hh_l1", "bias_ih_l0_reverse",
 * "weight_hr_l1").  Borrowed. */
cr_tensor *cr_rnn_param(const cr_rnn *rnn, int i);
const char *cr_rnn_param_name(const cr_rnn *rnn, int i);
/* The parameter with that name, or NULL. */
cr_tensor *cr_rnn_find_param(const cr_rnn *rnn, const char *name);

/* Run the stack over a sequence.
 *   input   [T, B, I] ([B, T, I] if batch_first)
 *   init    n_states tensors [L*D, B, size] (may be NULL: zeros; or any entry
 *           NULL); size H_out for state 0 (h), hidden_size for the others
 *   lengths B sequence lengths in 1..T, or NULL (all T): a sequence's state
 *           stops changing after its last step and its padded outputs are 0,
 *           so padding contributes nothing to loss or gradients
 *   rng     for dropout between layers (needed only when dropout > 0 in
 *           training mode)
 * Results: *output [T, B, D*H_out] (or [B, T, D*H_out]); final[0..n_states)
 * each [L*D, B, size] (final may be NULL).  Returns the status. */
CR_NODISCARD cr_status cr_rnn_forward(cr_ctx *ctx, const cr_rnn *rnn, cr_tensor *input,
                                      cr_tensor *const *init, const int64_t *lengths, cr_rng *rng,
                                      cr_tensor **output, cr_tensor **final);

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
   * the graph: step_states[((l * D + d) * n_states + s) * T + t] is state s
   * of layer l, direction d, after its step t ([B, size]), named "h_3" /
   * "c_3" for layer 0 and "h_l1_3" above (the cell's state names; the
   * reverse direction "h_3_reverse").  The reverse direction's step t is
   * its t-th step: for sequence b it read x at time len_b - 1 - t (T - 1 - t
   * without lengths).  L * D * n_states * T entries. */
  cr_tensor **step_states;
  /* Mark those states with cr_retain_grad, so that after backward
   * cr_grad(step_states[i]) is dL/dh_t for every t and layer: the gradient
   * flowing back through time, one backward away. */
  bool retain_step_grads;

  /* Memory-efficient BPTT (Gruslys et al. 2016): each layer runs in
   * segments whose graphs are dropped after the forward and recomputed,
   * one at a time, during backward, so memory holds the segment
   * boundaries' states, the outputs and one segment — not every step's
   * activations.  The gradients are bit-identical to full BPTT's with the
   * same projection_block (the same ops in the same order); with the
   * default blocks, which are longer for full BPTT over 256 or more input
   * features, the input weights' gradient sums group differently and
   * agree to rounding.  Costs about one extra forward pass.
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
   * (num_layers * D entries, layer-major). */
  int64_t *checkpoint_chosen;
  /* Keep every value the cell computes.  By default a layer keeps of its
   * cells' intermediates only what backward reads (the ops declare it):
   * the rest (say an LSTM's pre-activations) is released after each block
   * of steps, and using such a tensor afterwards is an error.  States
   * (step_states) and outputs are always kept. */
  bool keep_activations;
  /* Steps per input projection (the cell's precompute runs on blocks of
   * this many steps); 0: ceil(1024 / B) for full BPTT over a layer input
   * of 256 or more features, else ceil(256 / B), which keeps the products
   * large.  Checkpointed segments hold whole blocks. */
  int64_t projection_block;
  /* Per-sequence extra inputs every step of every layer can read (the
   * cell sees them as layer->extra), or NULL. */
  const cr_cell_extra *extra;
  /* For the functional form (cr_rnn_forward_params_ex): the variant the
   * parameters are for; NULL: none.  cr_rnn_forward_ex uses the rnn's own
   * (a different one here is an error). */
  const cr_rnn_variant *variant;
} cr_rnn_forward_opts;

#define CR_RNN_CHECKPOINT_AUTO (-1)

/* cr_rnn_forward with options (opts NULL: as cr_rnn_forward). */
CR_NODISCARD cr_status cr_rnn_forward_ex(cr_ctx *ctx, const cr_rnn *rnn, cr_tensor *input,
                                         cr_tensor *const *init, const int64_t *lengths,
                                         cr_rng *rng, const cr_rnn_forward_opts *opts,
                                         cr_tensor **output, cr_tensor **final);

/* cr_rnn_forward with the parameters given explicitly, in cr_rnn_param
 * order (layer-major, direction, then the cell's param_names; weight_hr
 * last with proj_size), instead of an rnn's
 * own: the functional form, for gradient checks and shared weights.  Each
 * parameter's shape and dtype are checked against cfg. */
CR_NODISCARD cr_status cr_rnn_forward_params(cr_ctx *ctx, const cr_rnn_config *cfg,
                                             cr_tensor *const *params, cr_tensor *input,
                                             cr_tensor *const *init, const int64_t *lengths,
                                             cr_rng *rng, cr_tensor **output, cr_tensor **final);
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
