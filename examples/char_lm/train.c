/* train.c — a training run: setting it up (fresh, resumed or fine-tuned),
 * then the loop.  One step is cross-entropy of the next batch, backward
 * (BPTT through the unrolled steps), gradient clipping and an optimizer
 * step, the graph freed at once by a context reset.  A run that diverges
 * stops with a message and saves nothing.
 *
 * On several ranks (mpirun; dist.c) each rank runs this same loop on its
 * own sequences [b_lo, b_hi) of every batch; the gradients are averaged
 * before clipping, so clipping, the optimizer step and every decision
 * (divergence, validation) are the same on every rank.  Rank 0 prints and
 * saves. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "char_lm.h"

/* Divergence: the validation loss above this multiple of the uniform
 * baseline log2(V) for this many validations in a row.  A model at its
 * initialisation scores about 1x; 1.5x means confidently wrong. */
#define DIVERGE_FACTOR 1.5
#define DIVERGE_EVALS 3

static bool make_schedule(cl_run *t) {
  const char *s = t->o.schedule;
  char err[200];
  long n;
  if (!strcmp(s, "cosine")) {
    t->sched = (cr_sched){.kind = CR_SCHED_COSINE, .t_max = t->o.steps, .eta_min = 0};
  } else if (!strncmp(s, "warmup:", 7) && strstr(s, "+cosine") &&
             !strcmp(strstr(s, "+cosine"), "+cosine") && sscanf(s + 7, "%ld", &n) == 1 && n >= 1 &&
             n < t->o.steps) {
    t->warm =
        (cr_sched){.kind = CR_SCHED_LINEAR, .start_factor = 0.1, .end_factor = 1, .total_iters = n};
    t->sched = (cr_sched){
        .kind = CR_SCHED_COSINE, .t_max = t->o.steps - n, .warmup = &t->warm, .warmup_steps = n};
  } else if (!cr_sched_parse(s, &t->sched, &t->warm, err, sizeof err)) {
    return cl_fail("--schedule %s: %s", s, err), false;
  }
  return true;
}

/* Options computed from the text: steps from --epochs, eval/log periods. */
static bool derive_periods(cl_run *t) {
  cl_opts *o = &t->o;
  const cl_corpus *d = &t->data;
  if (d->n_train < o->seq + 2 || (o->tbptt && d->n_train / o->batch < o->seq + 2))
    return cl_fail("--seq %ld%s needs more text: '%s' has %" PRId64 " training characters after "
                   "the 90/10 split",
                   o->seq, o->tbptt ? " with --tbptt and this --batch" : "", o->data, d->n_train),
           false;
  if (o->epochs > 0) {
    int64_t per = d->n_train / (o->seq * o->batch) > 0 ? d->n_train / (o->seq * o->batch) : 1;
    if (per > 1000000000 / o->epochs)
      return cl_fail("--epochs %ld: more than 10^9 steps", o->epochs), false;
    o->steps = (long)(o->epochs * per);
  }
  if (o->eval_every < 0)
    o->eval_every = o->steps / 5 > 0 ? o->steps / 5 : 1;
  if (o->log_every < 0)
    o->log_every = o->steps / 20 > 0 ? o->steps / 20 : 1;
  return true;
}

void cl_run_free(cl_run *t) {
  free(t->ids);
  free(t->tgt);
  for (int s = 0; s < 2; s++) {
    cr_tensor_free(t->carry[s]);
    cr_tensor_free(t->carry_all[s]);
  }
  cr_rng_free(t->drop_rng);
  cr_optim_free(t->opt);
  cm_free(t->m);
  cr_rng_free(t->rng);
  cr_ctx_free(t->ctx);
  cl_corpus_free(&t->data);
  memset(t, 0, sizeof *t);
}

bool cl_train_setup(cl_run *t, const cr_st_file *f) {
  cl_opts *o = &t->o;
  cr_ctx *ctx = t->ctx;
  const char *path = o->resume ? o->resume : o->finetune;
  if (!derive_periods(t))
    return false;
  /* several ranks: this rank's sequences of every batch (uneven shares
   * are weighted by their size when the gradients are averaged) */
  int ranks = t->size > 1 ? t->size : 1;
  if (o->batch < ranks)
    return cl_fail("--batch %ld on %d ranks: every rank needs at least one sequence of every "
                   "batch (use --batch %d or more, or fewer ranks)",
                   o->batch, ranks, ranks),
           false;
  cl_slice(o->batch, t->rank, ranks, &t->b_lo, &t->b_hi);
  const int64_t W = t->b_hi - t->b_lo;
  /* a run must not be lost to a save that was never going to work (rank 0 saves) */
  if (o->save && t->rank == 0 && cr_st_check_writable(ctx, o->save) != CR_OK)
    return cl_fail("--save: %s", cr_ctx_error(ctx)), false;

  /* the architecture: the options (a checkpoint's, see cli.c), checked
   * against the checkpoint's tensors before anything is allocated */
  cm_config cfg = {cm_cell_by_name(o->cell),
                   t->data.vocab,
                   o->embed,
                   o->hidden,
                   (int)o->layers,
                   o->dropout,
                   strcmp(o->dtype, "f64") ? CR_F32 : CR_F64},
            old;
  char err[400];
  if (f && !cm_read_config(f, path, &old, err, sizeof err))
    return cl_fail("%s", err), false;
  if (o->resume &&
      (!cl_ckpt_check_data(t, f, path, CL_RESUME) || !cl_ckpt_check_shapes(f, path, &cfg)))
    return false;
  if (o->finetune && !cl_ckpt_check_shapes(f, path, &old))
    return false;

  t->m = cm_new(ctx, &cfg, t->rng);
  t->S = cfg.cell->n_states;
  cr_optim_opts oo;
  cr_optim_default_opts((cr_optim_kind)cr_optim_kind_from_name(o->optimizer), &oo);
  oo.lr = o->lr;
  t->opt = t->m ? cr_optim_new(ctx, &oo, t->m->params, t->m->n_params) : NULL;
  for (int s = 0; t->opt && o->tbptt && s < t->S; s++) {
    t->carry[s] = cr_tensor_new(ctx, cfg.dtype, CR_SHAPE(cfg.layers, W, cfg.hidden));
    if (ranks > 1)
      t->carry_all[s] = cr_tensor_new(ctx, cfg.dtype, CR_SHAPE(cfg.layers, o->batch, cfg.hidden));
  }
  if (ranks > 1 && o->dropout > 0 && !(t->drop_rng = cr_rng_new(0)))
    return cl_fail("out of memory"), false;
  if (cr_ctx_status(ctx) != CR_OK)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
  if ((o->resume && !cl_ckpt_restore(t, f, path)) ||
      (o->finetune && !cl_ckpt_finetune(t, f, path, &old)) || !make_schedule(t))
    return false;
  t->ids = cl_alloc((size_t)(o->seq * W), sizeof *t->ids, "the training batch");
  t->tgt = t->ids ? cl_alloc((size_t)(o->seq * W), sizeof *t->tgt, "the training batch") : NULL;
  return t->tgt != NULL;
}

/* ---- one step */

static bool step_failed(cl_run *t) {
  return cl_fail("step %" PRId64 ": %s", t->step + 1, cr_ctx_error(t->ctx)), false;
}

/* what: "the loss is nan", ...; step: the step it happened at (every rank
 * finds it at once: rank 0 says so) */
static bool diverged(const cl_run *t, int64_t step, const char *what) {
  if (t->rank == 0)
    cl_fail("step %" PRId64 ": training diverged: %s; stopped without saving (try a lower --lr "
            "than %g%s)",
            step, what, t->o.lr, t->o.clip > 0 ? "" : ", or a --clip");
  return false;
}

/* --tbptt: a stream that wrapped around to its start begins from zeros;
 * after a step the next batch continues from the final state, cut from
 * the graph (copied into the carry). */
static bool forget_state(cl_run *t) {
  for (int s = 0; s < t->S; s++)
    if (cr_fill(t->ctx, t->carry[s], 0.0) != CR_OK)
      return false;
  return true;
}
static bool keep_state(cl_run *t, cr_tensor *const *fin) {
  for (int s = 0; t->o.tbptt && s < t->S; s++)
    if (cr_copy_into(t->ctx, t->carry[s], fin[s]) != CR_OK)
      return false;
  return true;
}

/* Dropout's generator: the run's own on one rank.  On several ranks the
 * run's generator must stay the same on every rank (it draws the
 * batches), so each rank draws its masks from its own generator, seeded
 * each step from one draw of the run's. */
static cr_rng *dropout_rng(cl_run *t) {
  if (!t->drop_rng)
    return t->rng;
  cr_rng_seed(t->drop_rng,
              cr_rng_below(t->rng, UINT64_MAX) ^ (0x9e3779b97f4a7c15ull * (uint64_t)(t->rank + 1)));
  return t->drop_rng;
}

/* One optimizer step on the next batch; the loss into *loss. */
static bool train_step(cl_run *t, double *loss) {
  const cl_opts *o = &t->o;
  cr_ctx *ctx = t->ctx;
  const int64_t W = t->b_hi - t->b_lo; /* this rank's sequences */
  double t0 = cl_now();
  cr_tensor *fin[2], *zero[2] = {NULL, NULL};
  cr_sched_apply(&t->sched, t->opt, t->step);
  if (cl_next_batch(&t->data, o->seq, o->batch, t->b_lo, t->b_hi, o->tbptt, t->rng, &t->stream_pos,
                    t->ids, t->tgt) &&
      !forget_state(t) && !t->dist)
    return step_failed(t);
  t->m->fwd = t->fwd; /* the training forward only (evaluation runs without a graph) */
  cr_tensor *logits = cm_logits(ctx, t->m, t->ids, o->seq, W, o->tbptt ? t->carry : zero, fin,
                                dropout_rng(t)); /* [T*W,V] */
  t->m->fwd = (cr_rnn_forward_opts){0};
  cr_tensor *l = cr_cross_entropy(ctx, logits, t->tgt, CR_NO_IGNORE);
  cr_optim_zero_grad(t->opt);
  bool ok = l && cr_backward(ctx, l) == CR_OK;
  if (ok)
    *loss = cr_item(l);
  else if (!t->dist)
    return step_failed(t);
  /* several ranks: the whole batch's gradients and loss (a rank that
   * failed above tells the others here) */
  if (!cl_dist_reduce(t, loss))
    return false;
  double norm = o->clip > 0 ? cr_clip_grad_norm(ctx, t->m->params, t->m->n_params, o->clip) : 0;
  if (!isfinite(*loss) || !isfinite(norm)) {
    char what[64];
    double v = isfinite(*loss) ? norm : *loss;
    snprintf(what, sizeof what, "the %s is %s", isfinite(*loss) ? "gradient norm" : "loss",
             isnan(v) ? "NaN" : "infinite");
    return diverged(t, t->step + 1, what);
  }
  if (cr_optim_step(ctx, t->opt) != CR_OK || !keep_state(t, fin))
    return step_failed(t);
  cr_ctx_reset(ctx);
  t->step++;
  t->step_s += cl_now() - t0;
  return true;
}

/* ---- around the steps */

/* The progress line is redrawn in place on a terminal; under mpirun the
 * ranks' output reaches it through pseudo-terminals even when mpirun's own
 * goes to a file, so there it is printed as lines. */
static bool progress_in_place(const cl_run *t) { return isatty(STDOUT_FILENO) && !t->dist; }

/* Validation, printed; false if it failed or the run diverged. */
static bool validate(cl_run *t, bool final) {
  double nats, uniform = log2((double)t->data.vocab);
  int64_t count;
  if (!cl_evaluate(t, final ? 0 : t->o.eval_chars, &nats, &count))
    return false;
  if (count == 0)
    return true; /* too little validation text for a figure */
  double bits = nats / log(2.0);
  if (t->rank == 0)
    printf("%sstep %" PRId64 ": validation %.4f bits/char%s (unigram %.3f)\n",
           progress_in_place(t) ? "\n" : "", t->step, bits,
           final ? " on the whole validation text" : "", cl_unigram_bits(&t->data));
  fflush(stdout);
  char what[200];
  if (!isfinite(bits)) {
    snprintf(what, sizeof what, "the validation loss is %s", isnan(bits) ? "NaN" : "infinite");
    return diverged(t, t->step, what);
  }
  t->bad_evals = bits > DIVERGE_FACTOR * uniform ? t->bad_evals + 1 : 0;
  if (t->bad_evals < DIVERGE_EVALS)
    return true;
  snprintf(what, sizeof what,
           "the validation loss stayed above %.1fx the uniform baseline "
           "(%.3f bits/char) for %d validations, now %.3f bits/char",
           DIVERGE_FACTOR, uniform, DIVERGE_EVALS, bits);
  return diverged(t, t->step, what);
}

/* Rank 0 saves; every rank learns whether it worked. */
static bool save(cl_run *t) {
  bool ok = cl_dist_before_save(t);
  if (ok && t->rank == 0 && cl_ckpt_save(t, t->o.save) != CR_OK) {
    cl_fail("%s", cr_ctx_error(t->ctx));
    ok = false;
  }
  return cl_dist_all_ok(t, ok);
}

static void print_header(const cl_run *t) {
  const cl_opts *o = &t->o;
  const cl_corpus *d = &t->data;
  const cm_config *c = &t->m->cfg;
  char info[256];
  printf("chainrule char-lm: %s\n", cr_runtime_describe(info, sizeof info));
  printf("data %s: %" PRId64 " characters, vocabulary %d, %" PRId64 " train / %" PRId64
         " validation; unigram baseline %.3f bits/char\n",
         o->data, d->n, d->vocab, d->n_train, d->n - d->n_train, cl_unigram_bits(d));
  int64_t n_weights = cr_module_num_params(t->m->m);
  printf("model %s, hidden %" PRId64 ", layers %d, embed %" PRId64 ", %" PRId64 " parameters (%s); "
         "%s lr %g, clip %g, schedule %s; seq %ld, batch %ld, %s; steps %" PRId64 "..%ld\n",
         c->cell->name, c->hidden, c->layers, c->embed, n_weights, cr_dtype_name(c->dtype),
         o->optimizer, o->lr, o->clip, o->schedule, o->seq, o->batch,
         o->tbptt ? "truncated BPTT across batches" : "random windows", t->step + 1, o->steps);
  if (o->resume)
    printf("resuming %s after step %" PRId64 "\n", o->resume, t->step);
  cl_dist_describe(t, info, sizeof info);
  if (*info)
    printf("%s\n", info);
  fflush(stdout);
}

static void print_progress(const cl_run *t, int64_t first, double t0, double loss_avg,
                           double *last_print) {
  const cl_opts *o = &t->o;
  if (t->rank != 0)
    return;
  bool tty = progress_in_place(t);
  double el = cl_now() - t0, done = (double)(t->step - first);
  double tps = done * (double)(o->seq * o->batch) / el;
  char eta[32];
  cl_fmt_time(el / done * (double)(o->steps - t->step), eta, sizeof eta);
  if (tty && (el - *last_print > 0.1 || t->step == o->steps)) {
    printf("\rstep %" PRId64 "/%ld  loss %.4f  %.0f tok/s  ETA %s   ", t->step, o->steps, loss_avg,
           tps, eta);
    fflush(stdout);
    *last_print = el;
  } else if (!tty && (t->step % o->log_every == 0 || t->step == first + 1)) {
    printf("step %" PRId64 "/%ld  loss %.4f  %.0f tok/s  ETA %s\n", t->step, o->steps, loss_avg,
           tps, eta);
    fflush(stdout);
  }
}

int cl_train_loop(cl_run *t) {
  const cl_opts *o = &t->o;
  if (t->rank == 0)
    print_header(t);
  /* memory-efficient BPTT changes memory and time, never the gradients */
  t->fwd = (cr_rnn_forward_opts){.checkpoint_every = !o->bptt_checkpoint ? 0
                                                     : !strcmp(o->bptt_checkpoint, "auto")
                                                         ? CR_RNN_CHECKPOINT_AUTO
                                                         : atol(o->bptt_checkpoint),
                                 .checkpoint_budget = (size_t)(o->bptt_memory * 1048576.0),
                                 .checkpoint_chosen = t->bptt_chosen};
  if (o->detect_anomaly) {
    cr_set_detect_anomaly(t->ctx, true);
    if (t->rank == 0)
      printf("anomaly mode: the first NaN/Inf stops the run, naming its op\n");
  }
  bool told = false;
  double t0 = cl_now(), last_print = 0, loss_avg = NAN, loss;
  int64_t first = t->step;
  int64_t stop = o->stop_after > 0 && o->stop_after < o->steps ? o->stop_after : o->steps;
  while (t->step < stop) {
    if (!train_step(t, &loss))
      return 1;
    if (!told && t->rank == 0 && (t->fwd.checkpoint_every || t->fwd.checkpoint_budget)) {
      told = true;
      printf("memory-efficient BPTT: segments of %lld steps (layer 0) recomputed in backward\n",
             (long long)t->bptt_chosen[0]);
    }
    loss_avg = isnan(loss_avg) ? loss : 0.95 * loss_avg + 0.05 * loss;
    print_progress(t, first, t0, loss_avg, &last_print);
    if ((t->step % o->eval_every == 0 || t->step == o->steps || t->step == stop) &&
        !validate(t, t->step == o->steps))
      return 1;
    if (o->save && o->save_every > 0 && t->step % o->save_every == 0 && t->step < stop && !save(t))
      return 1;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double el = cl_now() - t0;
  char line[400];
  cl_dist_stats_line(t, line, sizeof line);
  if (t->rank == 0) {
    /* the steps alone: without validation, saves and printing */
    const double tokens = (double)(t->step - first) * (double)(o->seq * o->batch);
    printf("trained %" PRId64 " steps in %.1f s (%.0f tokens/s; the steps alone %.0f tokens/s), "
           "peak RSS %ld MiB\n",
           t->step - first, el, tokens / el, t->step_s > 0 ? tokens / t->step_s : 0.0,
           ru.ru_maxrss / 1024);
    if (*line)
      printf("%s\n", line);
    fflush(stdout);
  }
  if (o->save) {
    if (!save(t))
      return 1;
    if (t->rank == 0)
      printf("saved %s\n", o->save);
  }
  if (o->length > 0 && t->step == o->steps && t->rank == 0) {
    printf("--- sample (temperature %g) ---\n", o->temperature);
    return cl_sample(t);
  }
  return 0;
}
