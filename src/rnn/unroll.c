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

/* Steps per input-projection block: enough rows (P x B >= 256) for the
 * product to run near full speed, few enough that a block is a small part
 * of a long sequence. */
int64_t cr__projection_block(int64_t B) {
  int64_t P = (256 + B - 1) / B;
  return P < 1 ? 1 : P;
}

/* Name a step's state: h_3 (layer 0) or h_l1_3. */
static void name_state(cr_tensor *t, const cr_cell_def *d, int s, int l, int64_t step) {
  const char *base = s < CR_CELL_MAX_STATES && d->state_names[s] ? d->state_names[s] : NULL;
  char buf[16], name[48];
  if (!base) {
    snprintf(buf, sizeof buf, s == 0 ? "h" : "s%d", s);
    base = buf;
  }
  if (l == 0)
    snprintf(name, sizeof name, "%s_%lld", base, (long long)step);
  else
    snprintf(name, sizeof name, "%s_l%d_%lld", base, l, (long long)step);
  cr_set_name(t, name);
}

/* Entry t of x along axis 0, without that axis: [n, ...] -> n x [...]. */
static cr_tensor **unbind0(cr_ctx *ctx, cr_tensor *x, int64_t n) {
  cr_tensor **parts = cr__alloc(ctx, (size_t)n * sizeof *parts);
  if (!parts || cr_chunk(ctx, x, (int)n, 0, parts) != CR_OK)
    return NULL;
  for (int64_t t = 0; t < n; t++)
    if (!(parts[t] = cr_reshape(ctx, parts[t], x->ndim - 1, x->shape + 1)))
      return NULL;
  return parts;
}

/* One step: the cell, its results checked, padding masked, state named. */
static cr_status step(cr_ctx *ctx, const cr__layer_run *lr, int64_t t, cr_tensor *x_t,
                      cr_tensor **state, cr_tensor **out_t) {
  const cr_cell_def *d = lr->d;
  const int S = d->n_states;
  const int64_t B = lr->B, H = lr->H;
  cr_tensor *next[CR_CELL_MAX_STATES] = {NULL}, *out = NULL;
  const uint64_t serial0 = ctx->tensor_serial;
  cr_status st = d->step(ctx, &lr->layer, x_t, state, next, &out);
  if (st == CR_OK && cr_ctx_status(ctx) != CR_OK)
    st = cr_ctx_status(ctx);
  if (st != CR_OK)
    return st;
  for (int s = 0; s < S; s++)
    if (!next[s] || next[s]->ndim != 2 || next[s]->shape[0] != B || next[s]->shape[1] != H)
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "rnn_forward: cell '%s' step %lld returned "
                              "state %d %s, expected [%lld,%lld]", d->name, (long long)t, s,
                              cr__shp(next[s]), (long long)B, (long long)H);
  if (!out || out->ndim != 2 || out->shape[0] != B || out->shape[1] != H)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "rnn_forward: cell '%s' step %lld returned "
                            "output %s, expected [%lld,%lld]", d->name, (long long)t,
                            cr__shp(out), (long long)B, (long long)H);
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
      name_state(next[s], d, s, lr->layer.layer, t); /* made by this step: ours to name */
    if (lr->step_states)
      lr->step_states[(int64_t)s * lr->T + t] = next[s];
    if (lr->retain)
      cr_retain_grad(next[s]);
  }
  *out_t = out;
  return CR_OK;
}

cr_status cr__unroll_steps(cr_ctx *ctx, const cr__layer_run *lr, int64_t t0, int64_t t1,
                           cr_tensor **state, cr_tensor **outs) {
  const cr_cell_def *d = lr->d;
  for (int64_t tb = t0; tb < t1; tb += lr->P) {
    const int64_t te = tb + lr->P < t1 ? tb + lr->P : t1;
    cr_tensor *x = cr_slice(ctx, lr->x, 0, tb, te, 1); /* [te-tb, B, I] */
    cr_tensor *xp = x && d->precompute ? d->precompute(ctx, &lr->layer, x) : x;
    cr_tensor **xs = xp ? unbind0(ctx, xp, te - tb) : NULL;
    if (!xs)
      return cr_ctx_status(ctx) ? cr_ctx_status(ctx) : CR_ERR_NOMEM;
    for (int64_t t = tb; t < te; t++) {
      cr_status st = step(ctx, lr, t, xs[t - tb], state, &outs[t]);
      if (st != CR_OK)
        return st;
    }
  }
  return cr_ctx_status(ctx);
}

/* ---- segments */

typedef struct {
  const cr__layer_run *lr;
  int64_t t0, t1;
  cr_tensor *state_in[CR_CELL_MAX_STATES];
  cr_tensor **outs; /* [T] scratch for the steps' outputs */
} segment;

/* The checkpointed function: steps t0..t1 from state_in; outputs the
 * steps' outputs, then the final states. */
static cr_status run_segment(cr_ctx *ctx, void *closure, int *n_out, cr_tensor **res) {
  const segment *sg = closure;
  const int S = sg->lr->d->n_states;
  cr_tensor *state[CR_CELL_MAX_STATES];
  memcpy(state, sg->state_in, sizeof state);
  cr_status st = cr__unroll_steps(ctx, sg->lr, sg->t0, sg->t1, state, sg->outs);
  if (st != CR_OK)
    return st;
  const int K = (int)(sg->t1 - sg->t0);
  memcpy(res, sg->outs + sg->t0, (size_t)K * sizeof *res);
  memcpy(res + K, state, (size_t)S * sizeof *res);
  *n_out = K + S;
  return CR_OK;
}

cr_status cr__unroll_checkpointed(cr_ctx *ctx, const cr__layer_run *lr, int64_t K,
                                  cr_tensor **state, cr_tensor **outs) {
  const int S = lr->d->n_states;
  if (K < 1 || K + S > CR__CHECKPOINT_MAX_OUT)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: checkpoint segments of %lld steps: "
                            "need 1..%d", (long long)K, CR__CHECKPOINT_MAX_OUT - S);
  cr_tensor **scratch_outs = cr__alloc(ctx, (size_t)lr->T * sizeof *scratch_outs);
  cr_tensor **res = cr__alloc(ctx, (size_t)(K + S) * sizeof *res);
  if (!scratch_outs || !res)
    return cr_ctx_status(ctx);
  for (int64_t t0 = 0; t0 < lr->T; t0 += K) {
    segment *sg = cr__alloc(ctx, sizeof *sg); /* lives until backward */
    if (!sg)
      return cr_ctx_status(ctx);
    *sg = (segment){lr, t0, t0 + K < lr->T ? t0 + K : lr->T, {NULL}, scratch_outs};
    memcpy(sg->state_in, state, (size_t)S * sizeof *state);
    int n = 0;
    cr_status st = cr__checkpoint(ctx, run_segment, sg, &n, res);
    if (st != CR_OK)
      return st;
    const int64_t k = sg->t1 - t0;
    memcpy(outs + t0, res, (size_t)k * sizeof *res);
    memcpy(state, res + k, (size_t)S * sizeof *state);
  }
  return cr_ctx_status(ctx);
}
