/* train.c — teacher forcing: every step, o->batch fresh sentences of the
 * training dates, the cross-entropy of each target character given the
 * true previous ones, Adam with the gradient's norm clipped to 5 and a
 * cosine decay of the learning rate over the run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "seq2seq.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool s2s_train(cr_ctx *ctx, s2s_model *m, const s2s_opts *o, cr_rng *rng) {
  const int64_t B = o->batch;
  s2s_example *batch = malloc((size_t)B * sizeof *batch);
  int64_t *tgt = malloc((size_t)B * S2S_TGT_LEN * sizeof *tgt);
  cr_optim *opt = batch && tgt ? cr_module_optim(ctx, m->m, CR_ADAM, o->lr) : NULL;
  if (!opt) {
    fprintf(stderr, "seq2seq: %s\n", batch && tgt ? cr_ctx_error(ctx) : "out of memory");
    free(batch), free(tgt);
    return false;
  }
  cr_sched cosine;
  cr_sched_defaults(CR_SCHED_COSINE, &cosine);
  cosine.t_max = o->steps;
  int n;
  cr_tensor *const *params = cr_module_parameters(m->m, &n);
  double avg = NAN, t0 = now();
  bool ok = true;
  for (long step = 1; ok && step <= o->steps; step++) {
    for (int64_t b = 0; b < B; b++) {
      s2s_example_draw(rng, S2S_TRAIN, &batch[b]);
      for (int t = 0; t < S2S_TGT_LEN; t++)
        tgt[b * S2S_TGT_LEN + t] = batch[b].tgt[t];
    }
    cr_tensor *logits = s2s_forward_teacher(ctx, m, batch, B, rng); /* [B, 10, 11] */
    cr_tensor *loss = cr_cross_entropy_t(
        ctx, logits, cr_from_i64(ctx, CR_SHAPE(B, S2S_TGT_LEN), tgt), CR_NO_IGNORE);
    cr_module_zero_grad(m->m);
    cr_sched_apply(&cosine, opt, step - 1);
    ok = loss && cr_backward(ctx, loss) == CR_OK &&
         isfinite(cr_clip_grad_norm(ctx, params, n, 5)) && cr_optim_step(ctx, opt) == CR_OK;
    if (!ok) {
      fprintf(stderr, "seq2seq: step %ld: %s\n", step,
              cr_ctx_status(ctx) ? cr_ctx_error(ctx) : "the gradient is not finite (lower --lr)");
      break;
    }
    const double l = cr_item(loss);
    avg = isnan(avg) ? l : 0.95 * avg + 0.05 * l;
    if (step % o->log_every == 0 || step == o->steps) {
      const double dt = now() - t0;
      printf("step %ld: loss %.4f (average of the last ~20 steps), %.1f s, %.0f sentences/s\n",
             step, avg, dt, (double)(step * B) / dt);
      fflush(stdout);
    }
    cr_ctx_reset(ctx);
  }
  cr_optim_free(opt);
  free(batch);
  free(tgt);
  return ok;
}
