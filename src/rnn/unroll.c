/* unroll.c — running one layer's cell over time.
 *
 *   for each block of P steps:  xs = precompute(x[block])  (one product)
 *     for each step t:          state, out_t = cell.step(xs[t], state)
 *
 * and, for memory-efficient BPTT, the same steps in segments of K steps
 * (K a multiple of P), each a checkpoint node (ops/checkpoint.c): its graph
 * is dropped after the forward and rebuilt in backward, so the layer keeps
 * the segment boundaries' states and the outputs, not every step's
 * activations.  The projection blocks are the same in both forms, and a
 * segment rebuilds exactly the ops the plain unroll makes, in the same
 * order; backward walks nodes in creation order; so both give the same
 * gradients, bit for bit. */
#include "unroll.h"

#include "op.h"

/* Steps per input-projection block: P x B >= 256 rows, and for full BPTT
 * over an input of I >= 256 features, >= 1024 rows.  BLIS packs the
 * weight once per product, so more rows run faster: on Zen 3 (one core)
 * x W_ih^T [rows,512] @ [512,2048] ran at 83 GFLOP/s with 256 rows and 91
 * with 1024, and 512x512x32x64 forward + backward took 0.94 (lstm), 0.98
 * (gru) and 0.96 (rnn_tanh) of the time.  With I = 64 the products are a
 * small part and the bigger block of pre-activations leaves L2: 64x128
 * lstm took 1.02 of the time, so small inputs keep 256.  Checkpointed
 * segments hold whole blocks, and shorter blocks let the schedule choose
 * shorter segments (less memory): they keep 256 too. */
int64_t cr__projection_block(int64_t B, int64_t I, bool checkpointed) {
  const int64_t rows = !checkpointed && I >= 256 ? 1024 : 256;
  int64_t P = (rows + B - 1) / B;
  return P < 1 ? 1 : P;
}

/* s + at most n characters of x (no terminator) */
static char *put_str(char *s, const char *x, size_t n) {
  while (n-- && *x)
    *s++ = *x++;
  return s;
}

/* Name a step's state: h_3 (layer 0) or h_l1_3, and h_3_reverse; without
 * printf (it runs at every step). */
static void name_state(cr_tensor *t, const cr_cell_def *d, int s, int l, int dir, int64_t step) {
  const char *base = s < CR_CELL_MAX_STATES && d->state_names[s] ? d->state_names[s] : NULL;
  char name[96], *e = name; /* at most 31 + 2 + 11 + 1 + 20 + 8 */
  if (base) {
    e = put_str(e, base, 31);
  } else if (s == 0) {
    *e++ = 'h';
  } else {
    *e++ = 's';
    e = cr__put_int(e, s);
  }
  if (l != 0) {
    e = put_str(e, "_l", 2);
    e = cr__put_int(e, l);
  }
  *e++ = '_';
  e = cr__put_int(e, step);
  if (dir)
    e = put_str(e, "_reverse", 8);
  cr__set_name_n(t, name, (size_t)(e - name)); /* its length known: not measured again */
}

/* Entry t of x along axis 0, without that axis: [n, ...] -> n x [...]. */
static cr_tensor **unbind0(cr_ctx *ctx, cr_tensor *x, int64_t n) {
  cr_tensor **parts = cr__alloc(ctx, (size_t)n * sizeof *parts);
  for (int64_t t = 0; parts && t < n; t++)
    if (!(parts[t] = cr_select(ctx, x, 0, t)))
      return NULL;
  return parts;
}

/* One step: the cell, its results checked, padding masked, state named. */
static cr_status step_ops(cr_ctx *ctx, const cr__layer_run *lr, int64_t t, cr_tensor *x_t,
                          cr_tensor **state, cr_tensor **out_t) {
  const cr_cell_def *d = lr->d;
  const int S = d->n_states;
  const int64_t B = lr->B;
  cr_tensor *next[CR_CELL_MAX_STATES] = {NULL}, *out = NULL;
  const uint64_t serial0 = ctx->tensor_serial;
  cr_status st = d->step(ctx, &lr->layer, x_t, state, next, &out);
  if (st == CR_OK && cr_ctx_status(ctx) != CR_OK)
    st = cr_ctx_status(ctx);
  if (st != CR_OK)
    return st;
  for (int s = 0; s < S; s++)
    if (!next[s] || next[s]->ndim != 2 || next[s]->shape[0] != B ||
        next[s]->shape[1] != lr->st_size[s])
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                              "rnn_forward: cell '%s' step %lld returned "
                              "state %d %s, expected [%lld,%lld]",
                              d->name, (long long)t, s, cr__shp(next[s]), (long long)B,
                              (long long)lr->st_size[s]);
  if (!out || out->ndim != 2 || out->shape[0] != B || out->shape[1] != lr->out_size)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                            "rnn_forward: cell '%s' step %lld returned "
                            "output %s, expected [%lld,%lld]",
                            d->name, (long long)t, cr__shp(out), (long long)B,
                            (long long)lr->out_size);
  if (lr->mask && lr->mask[t]) {
    /* finished sequences keep their state; their outputs are 0 */
    for (int s = 0; s < S; s++)
      next[s] = cr_add(ctx, cr_mul(ctx, lr->mask[t], next[s]), cr_mul(ctx, lr->keep[t], state[s]));
    out = cr_mul(ctx, lr->mask[t], out);
    if (!out)
      return cr_ctx_status(ctx);
  }
  for (int s = 0; s < S; s++) {
    state[s] = next[s];
    if (next[s]->node && !next[s]->persistent && next[s]->serial > serial0)
      name_state(next[s], d, s, lr->layer.layer, lr->layer.direction, t); /* ours to name */
    if (lr->step_states)
      lr->step_states[(int64_t)s * lr->T + t] = next[s];
    if (lr->retain)
      cr_retain_grad(next[s]);
  }
  *out_t = out;
  return CR_OK;
}

/* The step's ops in the scope "step t" (layer 0) or "layer l step t", and
 * "... reverse" for a reverse direction (its t-th step). */
static cr_status step(cr_ctx *ctx, const cr__layer_run *lr, int64_t t, cr_tensor *x_t,
                      cr_tensor **state, cr_tensor **out_t) {
  const char *outer = cr__push_step_scope(ctx, lr->layer.layer, t, lr->layer.direction != 0);
  cr_status st = step_ops(ctx, lr, t, x_t, state, out_t);
  ctx->scope = outer;
  return st;
}

cr_status cr__unroll_steps(cr_ctx *ctx, const cr__layer_run *lr, int64_t t0, int64_t t1,
                           cr_tensor **state, cr_tensor **outs) {
  const cr_cell_def *d = lr->d;
  /* the values no VJP reads are released: a step's own after it, the
   * block's projection at its end (states, step states and outputs stay) */
  const bool release = !lr->keep_all && !lr->step_states;
  for (int64_t tb = t0; tb < t1; tb += lr->P) {
    const int64_t te = tb + lr->P < t1 ? tb + lr->P : t1;
    cr__track tr = release ? cr__track_begin(ctx) : (cr__track){0};
    cr_tensor *x = cr_slice(ctx, lr->x, 0, tb, te, 1); /* [te-tb, B, I] */
    cr_tensor *xp = x && d->precompute ? d->precompute(ctx, &lr->layer, x) : x;
    cr_tensor **xs = xp ? unbind0(ctx, xp, te - tb) : NULL;
    if (!xs)
      return cr_ctx_status(ctx) ? cr_ctx_status(ctx) : CR_ERR_NOMEM;
    for (int64_t t = tb; t < te; t++) {
      const cr__track at = cr__track_mark(ctx);
      cr_status st = step(ctx, lr, t, xs[t - tb], state, &outs[t]);
      if (st != CR_OK) {
        ctx->tracking = false;
        return st;
      }
      if (release) { /* the step's own temporaries, for the next step to reuse */
        cr_tensor *esc[CR_CELL_MAX_STATES + 1];
        memcpy(esc, state, (size_t)d->n_states * sizeof *esc);
        esc[d->n_states] = outs[t];
        cr__track_release_step(ctx, &at, esc, d->n_states + 1);
      }
    }
    if (release) { /* what the block hands on: its outputs and the states */
      cr_tensor **esc = cr__alloc(ctx, (size_t)(te - tb + d->n_states) * sizeof *esc);
      if (!esc) {
        ctx->tracking = false;
        return cr_ctx_status(ctx);
      }
      memcpy(esc, outs + tb, (size_t)(te - tb) * sizeof *esc);
      memcpy(esc + (te - tb), state, (size_t)d->n_states * sizeof *esc);
      cr__track_release(ctx, &tr, esc, (int)(te - tb + d->n_states));
    }
  }
  return cr_ctx_status(ctx);
}

/* ---- segments */

typedef struct {
  const cr__layer_run *lr;
  int64_t K;
  cr_tensor **outs; /* [T]: the steps' outputs while a segment runs */
} segments;

/* Segment s of the chain: steps sK..min(T, (s+1)K) from state_in. */
static cr_status run_segment(cr_ctx *ctx, void *closure, int s, cr_tensor *const *state_in,
                             cr_tensor **res, int *n_out, cr_tensor **state_out) {
  const segments *sg = closure;
  const int S = sg->lr->d->n_states;
  const int64_t t0 = (int64_t)s * sg->K, t1 = t0 + sg->K < sg->lr->T ? t0 + sg->K : sg->lr->T;
  memcpy(state_out, state_in, (size_t)S * sizeof *state_out);
  cr_status st = cr__unroll_steps(ctx, sg->lr, t0, t1, state_out, sg->outs);
  if (st != CR_OK)
    return st;
  memcpy(res, sg->outs + t0, (size_t)(t1 - t0) * sizeof *res);
  *n_out = (int)(t1 - t0);
  return CR_OK;
}

cr_status cr__unroll_checkpointed(cr_ctx *ctx, const cr__layer_run *lr, int64_t K,
                                  cr_tensor *const *init, cr_tensor **outputs, cr_tensor **final) {
  const int S = lr->d->n_states;
  if (K < 1 || K > CR__CHECKPOINT_MAX_OUT)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "rnn_forward: checkpoint segments of %lld steps: "
                            "need 1..%d",
                            (long long)K, CR__CHECKPOINT_MAX_OUT);
  segments *sg = cr__alloc(ctx, sizeof *sg); /* lives until backward */
  cr_tensor **outs = cr__alloc(ctx, (size_t)lr->T * sizeof *outs);
  if (!sg || !outs)
    return cr_ctx_status(ctx);
  *sg = (segments){lr, K, outs};
  const cr_cell_extra *ex = lr->layer.extra;
  /* the stack of the layer's final states is made after its outputs':
   * their gradients reach the last state final first */
  const cr__chain_spec spec = {
      (int)((lr->T + K - 1) / K), S, init, lr->T, true, ex && ex->tensors ? ex->n_tensors : 0,
      ex ? ex->tensors : NULL};
  /* Y: the T outputs [B, out_size] then the final states, flattened */
  cr_tensor *Y = cr__checkpoint_chain_ex(ctx, run_segment, sg, &spec);
  if (!Y)
    return cr_ctx_status(ctx);
  const int64_t B = lr->B, rows = lr->T * B * lr->out_size;
  *outputs = cr_reshape(ctx, cr_slice(ctx, Y, 0, 0, rows, 1), CR_SHAPE(lr->T, B, lr->out_size));
  for (int64_t s = 0, at = rows; s < S; at += B * lr->st_size[s], s++)
    final[s] = cr_reshape(ctx, cr_slice(ctx, Y, 0, at, at + B * lr->st_size[s], 1),
                          CR_SHAPE(B, lr->st_size[s]));
  return cr_ctx_status(ctx);
}
