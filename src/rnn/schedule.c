/* schedule.c — how long the checkpointed segments of a layer are.
 *
 * A layer run in segments of K steps holds, at its peak, what every
 * segment keeps (its outputs and final states: c bytes per segment) plus
 * one segment's whole graph while it is recomputed (m bytes per step):
 *     memory(K) ~ (T / K) c + K m,
 * least at K* = sqrt(T c / m), while the time is about one extra forward
 * whatever K.  c and m are measured on the first block (P steps, itself
 * run as a segment), so the schedule fits the cell at hand, built-in or
 * not.  With a budget, the longest K that fits is used (fewer segments,
 * less overhead); K is always a whole number of projection blocks. */
#include "unroll.h"

#include "op.h"

static int64_t round_to_block(int64_t K, int64_t P) { return K < P ? P : (K + P - 1) / P * P; }

cr_status cr__checkpoint_schedule(cr_ctx *ctx, const cr__layer_run *lr,
                                  const cr_rnn_forward_opts *o, int64_t *K) {
  const int64_t T = lr->T, P = lr->P;
  if (o->checkpoint_every > 0 && !o->checkpoint_budget) {
    *K = round_to_block(o->checkpoint_every, P);
    return CR_OK;
  }
  /* measure: bytes per step of a segment's graph (m), kept per segment (c) */
  cr_ctx_stats before, after;
  cr_ctx_get_stats(ctx, &before);
  size_t peak0 = ctx->peak_bytes;
  ctx->peak_bytes = before.arena_bytes_used;
  cr_tensor *state[CR_CELL_MAX_STATES], **outs = cr__alloc(ctx, (size_t)T * sizeof *outs);
  if (!outs)
    return cr_ctx_status(ctx);
  for (int s = 0; s < lr->d->n_states; s++) /* a probe: values are not kept */
    state[s] = cr_zeros(ctx, lr->x->dtype, CR_SHAPE(lr->B, lr->st_size[s]));
  bool was = cr_set_grad_enabled(ctx, true);
  cr__mark m = cr__region_begin(ctx);
  cr_status st = cr__unroll_steps(ctx, lr, 0, P < T ? P : T, state, outs);
  cr_ctx_get_stats(ctx, &after);
  size_t graph = ctx->peak_bytes - before.arena_bytes_used;
  cr__region_end(ctx, &m, true);
  cr_set_grad_enabled(ctx, was);
  ctx->peak_bytes = peak0 > after.arena_bytes_used ? peak0 : after.arena_bytes_used;
  if (st != CR_OK)
    return st;
  const int S = lr->d->n_states;
  const double es = (double)cr_dtype_size(lr->x->dtype);
  int64_t state_width = 0; /* of the S states together */
  for (int s = 0; s < S; s++)
    state_width += lr->st_size[s];
  /* a segment's graph while its backward runs: the forward's and about as
   * much again in gradients */
  const double m_step = 2.0 * (double)graph / (double)(P < T ? P : T);
  /* kept per step: the output row and its gradient; per segment: the
   * boundary states (values) */
  const double per_step = 2.0 * es * (double)(lr->B * lr->out_size) + 64.0;
  const double c_seg = es * (double)(lr->B * state_width) + 256.0;
  const double kstar = sqrt((double)T * c_seg / (m_step > 1 ? m_step : 1));
  int64_t best = round_to_block((int64_t)(kstar + 0.5), P);
  if (best > T)
    best = T;
  if (!o->checkpoint_budget) {
    *K = best;
    return CR_OK;
  }
  /* the longest K whose peak fits the budget */
  const double budget = (double)o->checkpoint_budget;
  double least = 0;
  int64_t fit = 0;
  for (int64_t k = P; k <= (T + P - 1) / P * P; k += P) {
    double segs = (double)((T + k - 1) / k);
    double need = (double)T * per_step + segs * c_seg + (double)k * m_step;
    if (least == 0 || need < least)
      least = need;
    if (need <= budget)
      fit = k;
  }
  if (!fit)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "rnn_forward: checkpoint budget %.1f MiB is too "
                            "small for layer %d%s (T=%lld, B=%lld, H=%lld): it needs at least "
                            "%.1f MiB",
                            budget / 1048576.0, lr->layer.layer,
                            lr->layer.direction ? " (reverse)" : "", (long long)T, (long long)lr->B,
                            (long long)lr->layer.hidden_size, least / 1048576.0);
  *K = fit > T ? T : fit;
  return CR_OK;
}
