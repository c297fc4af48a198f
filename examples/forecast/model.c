/* model.c — an LSTM that reads a window of the series and forecasts the
 * next `horizon` values at once (a direct multi-step forecast: no forecast
 * is fed back as an input, so errors do not compound).
 *
 * On the normalised series z = (x - mean) / std (training part's mean, std):
 *   h_p = LSTM(z_{s}, ..., z_{s+p})                 [B, W, H]
 *   z^_{s+p+1 .. s+p+K} = h_p W^T + b               [B, W, K]   (the head)
 *   loss = mean over p >= W/4, k of (z^ - z)^2
 * Training windows (inputs and every target) lie in the training part; a
 * forecast from origin t reads the W values up to x_t and takes the head's
 * output at the last position.
 *
 * Augmentation: each training window is scaled, inputs and targets alike,
 * by a = exp(u), u ~ U(-augment, augment), before normalising.  Solar cycles
 * differ in amplitude far more than 270 years can show (the record cycle
 * of 1957 is 1.2x anything before it), and without it the forecasts of
 * several years ahead fall back to the training cycles' typical size.
 * Chosen on a validation split: trained on 1700-1928, scored on 1929-1968
 * (README). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "forecast.h"

bool fc_model_new(cr_ctx *ctx, cr_rng *rng, const fc_opts *o, fc_model *m) {
  *m =
      (fc_model){.m = cr_module_new(ctx, "Forecaster"), .window = o->window, .horizon = o->horizon};
  cr_rnn_config lstm = {&cr_cell_lstm, 1, o->hidden, 1, 0, true, CR_F32};
  m->rnn = cr_module_add(ctx, m->m, "rnn", cr_nn_rnn(ctx, &lstm, NULL, rng));
  m->head =
      cr_module_add(ctx, m->m, "head", cr_nn_linear(ctx, o->hidden, o->horizon, true, CR_F32, rng));
  if (!m->head)
    fprintf(stderr, "forecast: %s\n", cr_ctx_error(ctx));
  return m->head != NULL;
}

/* the head's outputs [B, W, K] for windows [B, W, 1] */
static cr_tensor *forward(cr_ctx *ctx, fc_model *m, cr_tensor *x) {
  return cr_module_forward(ctx, m->head, cr_module_forward(ctx, m->rnn, x));
}

bool fc_train(cr_ctx *ctx, fc_model *m, const fc_series *s, const fc_opts *o, cr_rng *rng,
              double *final_loss) {
  enum { B = FC_BATCH };
  const int64_t W = m->window, K = m->horizon, P0 = W / 4;
  const int64_t n_starts = s->n_train - W - K + 1; /* windows that fit in the training part */
  if (n_starts < 1) {
    fprintf(stderr,
            "forecast: --window %lld + --horizon %lld do not fit in the %lld training "
            "values\n",
            (long long)W, (long long)K, (long long)s->n_train);
    return false;
  }
  float *x = malloc((size_t)(B * W) * sizeof *x);
  float *y = malloc((size_t)(B * (W - P0) * K) * sizeof *y);
  cr_optim *opt = x && y ? cr_module_optim(ctx, m->m, CR_ADAM, o->lr) : NULL;
  if (!opt) {
    fprintf(stderr, "forecast: %s\n", x && y ? cr_ctx_error(ctx) : "out of memory");
    free(x), free(y);
    return false;
  }
  cr_sched cosine;
  cr_sched_defaults(CR_SCHED_COSINE, &cosine);
  cosine.t_max = o->steps;
  int n;
  cr_tensor *const *params = cr_module_parameters(m->m, &n);
  double avg = NAN;
  bool ok = true;
  for (long step = 1; ok && step <= o->steps; step++) {
    for (int b = 0; b < B; b++) {
      const int64_t st = (int64_t)cr_rng_below(rng, (uint64_t)n_starts);
      const double amp = exp(o->augment * (2 * cr_rng_uniform(rng) - 1));
      for (int64_t p = 0; p < W; p++)
        x[b * W + p] = (float)fc_norm(s, amp * s->x[st + p]);
      for (int64_t p = P0; p < W; p++)
        for (int64_t k = 0; k < K; k++)
          y[(b * (W - P0) + p - P0) * K + k] = (float)fc_norm(s, amp * s->x[st + p + 1 + k]);
    }
    cr_tensor *out = forward(ctx, m, cr_from_f32(ctx, CR_SHAPE(B, W, 1), x));
    cr_tensor *loss =
        cr_mse(ctx, cr_slice(ctx, out, 1, P0, W, 1), cr_from_f32(ctx, CR_SHAPE(B, W - P0, K), y));
    cr_module_zero_grad(m->m);
    cr_sched_apply(&cosine, opt, step - 1);
    ok = loss && cr_backward(ctx, loss) == CR_OK &&
         isfinite(cr_clip_grad_norm(ctx, params, n, 1)) && cr_optim_step(ctx, opt) == CR_OK;
    if (!ok) {
      fprintf(stderr, "forecast: step %ld: %s\n", step,
              cr_ctx_status(ctx) ? cr_ctx_error(ctx) : "gradient not finite (lower --lr)");
      break;
    }
    avg = isnan(avg) ? cr_item(loss) : 0.95 * avg + 0.05 * cr_item(loss);
    cr_ctx_reset(ctx);
  }
  *final_loss = avg;
  cr_optim_free(opt);
  free(x);
  free(y);
  return ok;
}

bool fc_predict(cr_ctx *ctx, fc_model *m, const fc_series *s, int64_t t0, int64_t n, double *f) {
  const int64_t W = m->window, K = m->horizon;
  if (t0 - W + 1 < 0) {
    fprintf(stderr, "forecast: --window %lld reaches before the first year\n", (long long)W);
    return false;
  }
  float *x = malloc((size_t)(n * W) * sizeof *x);
  if (!x) {
    fprintf(stderr, "forecast: out of memory\n");
    return false;
  }
  for (int64_t o = 0; o < n; o++)
    for (int64_t p = 0; p < W; p++)
      x[o * W + p] = (float)fc_norm(s, s->x[t0 + o - W + 1 + p]);
  const bool grad = cr_set_grad_enabled(ctx, false);
  cr_tensor *out = forward(ctx, m, cr_from_f32(ctx, CR_SHAPE(n, W, 1), x)); /* [n, W, K] */
  cr_set_grad_enabled(ctx, grad);
  free(x);
  if (!out) {
    fprintf(stderr, "forecast: %s\n", cr_ctx_error(ctx));
    return false;
  }
  for (int64_t o = 0; o < n; o++)
    for (int64_t k = 0; k < K; k++)
      f[o * K + k] = fc_denorm(s, cr_get_flat(out, (o * W + W - 1) * K + k));
  cr_ctx_reset(ctx);
  return true;
}
