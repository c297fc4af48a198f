/* unroll.h — one layer's cell over time, plain or in checkpointed segments
 * (see unroll.c). */
#ifndef CHAINRULE_UNROLL_H
#define CHAINRULE_UNROLL_H

#include "chainrule/rnn.h"
#include "internal.h"

/* What running one layer needs (kept until backward: segments run again). */
typedef struct cr__layer_run {
  const cr_cell_def *d;
  cr_cell_layer layer; /* sizes, parameters, prepare's scratch */
  cr_tensor *x;        /* the layer's input [T, B, I] (time reversed for direction 1) */
  int64_t T, B;
  int64_t out_size;                    /* an output's width [B, out_size] */
  int64_t st_size[CR_CELL_MAX_STATES]; /* state s is [B, st_size[s]] */
  int64_t P;                           /* steps per input-projection block */
  cr_tensor *const *mask;              /* [T] per-step masks of finished sequences, or NULL */
  cr_tensor *const *keep;              /* [T] their complements */
  cr_tensor **step_states;             /* n_states * T slots for this layer's states, or NULL */
  bool retain;                         /* retain the states' gradients */
  bool keep_all;                       /* keep every value (no release after blocks) */
} cr__layer_run;

/* Steps per input-projection block for batch B and I input features:
 * ceil(1024 / B) for full BPTT with I >= 256, else ceil(256 / B). */
int64_t cr__projection_block(int64_t B, int64_t I, bool checkpointed);
/* Steps t0..t1 (t0 a multiple of P) from state[] (updated to the last
 * step's), outputs into outs[t0..t1). */
cr_status cr__unroll_steps(cr_ctx *ctx, const cr__layer_run *lr, int64_t t0, int64_t t1,
                           cr_tensor **state, cr_tensor **outs);
/* All T steps in segments of K steps (a multiple of P), recomputed one at a
 * time in backward: *outputs [T, B, out_size] and final[0..n_states), views
 * of one checkpoint node's result.  extra: outside tensors the steps read
 * (made the node's inputs). */
cr_status cr__unroll_checkpointed(cr_ctx *ctx, const cr__layer_run *lr, int64_t K,
                                  cr_tensor *const *init, cr_tensor **outputs, cr_tensor **final);

/* The time reversal of a reverse direction (reverse.c): each sequence
 * reversed within its length (lengths NULL: all T); applied to [T, B, F]
 * inputs and, being its own inverse, to the outputs. */
typedef struct cr__time_reversal cr__time_reversal;
cr__time_reversal *cr__time_reversal_new(cr_ctx *ctx, int64_t T, int64_t B, const int64_t *lengths);
cr_tensor *cr__time_reverse(cr_ctx *ctx, const cr__time_reversal *r, cr_tensor *x);

/* The segment length for opts (schedule.c): every K rounded to blocks,
 * or measured (auto, budget). */
cr_status cr__checkpoint_schedule(cr_ctx *ctx, const cr__layer_run *lr,
                                  const cr_rnn_forward_opts *o, int64_t *K);

#endif
