/* chainrule/optim.h — optimizers, gradient clipping, learning-rate schedules.
 *
 * The optimizers are PyTorch's SGD, Adam, AdamW, RMSprop, Adagrad, NAdam,
 * RAdam, Adamax and Adadelta, with their formulas, hyper-parameter names
 * and defaults (torch 1.13; the formula of each is at the top of its source
 * file, src/nn/optim_*.c), checked against numbers PyTorch produced
 * (tests/fixtures/optim): in f64 the results agree to the last bit, because
 * the same multiply-adds are fused (fma) that ATen's CPU kernels fuse.  An
 * optimizer works on persistent parameters: it reads cr_grad(p) and updates
 * p in place.  A parameter with
 * requires_grad off (frozen) or without a gradient is skipped: never
 * updated, its state untouched.  Parameters may be f32 or f64; each one's
 * state buffers have its dtype and its update is computed in that dtype.
 * All state is allocated when the optimizer is made (or a group added), so
 * a step never calls malloc.
 *
 * Worked example: Adam with a warmup-then-cosine schedule.
 *
 *   cr_optim_opts oo;
 *   cr_optim_default_opts(CR_ADAM, &oo);
 *   oo.lr = 3e-3;
 *   cr_optim *opt = cr_optim_new(ctx, &oo, params, n_params);
 *   cr_sched s, warm;
 *   char err[128];
 *   if (!opt || !cr_sched_parse("warmup:100+cosine:900", &s, &warm, err, sizeof err)) ...
 *   for (int64_t step = 0; step < 1000; step++) {
 *     cr_sched_apply(&s, opt, step);         // lr for the update about to be made
 *     cr_optim_zero_grad(opt);
 *     ... forward, cr_backward ...
 *     cr_clip_grad_norm(ctx, params, n_params, 1.0);
 *     if (cr_optim_step(ctx, opt) != CR_OK) ...
 *     cr_ctx_reset(ctx);
 *   }
 *   cr_optim_free(opt);
 *
 * Errors follow chainrule/base.h: a function stores a code and a message in
 * ctx ("optim: adam lr -1 must be >= 0") and returns NULL, -1 or the code; called
 * while an error is pending in ctx it does nothing and returns the same.
 */
#ifndef CHAINRULE_OPTIM_H
#define CHAINRULE_OPTIM_H

#include "chainrule/io.h"
#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cr_optim_kind {
  CR_SGD,            /* momentum, dampening, nesterov, weight_decay */
  CR_ADAM,           /* beta1, beta2, eps, weight_decay (L2, added to the gradient), amsgrad */
  CR_ADAMW,          /* as Adam, with decoupled weight decay p *= 1 - lr * wd before the update */
  CR_RMSPROP,        /* alpha, eps, weight_decay, momentum, centered */
  CR_ADAGRAD,        /* lr_decay, weight_decay, initial_accumulator_value, eps */
  CR_NADAM,          /* beta1, beta2, eps, weight_decay (L2), momentum_decay */
  CR_RADAM,          /* beta1, beta2, eps, weight_decay (L2) */
  CR_ADAMAX,         /* beta1, beta2, eps, weight_decay (L2) */
  CR_ADADELTA,       /* rho, eps, weight_decay (L2) */
  CR_OPTIM_NUM_KINDS /* the number of kinds above (not a kind) */
} cr_optim_kind;

/* Options under PyTorch's names (betas split into beta1, beta2).  Options
 * that kind does not use are ignored.  Checked by cr_optim_new: lr,
 * momentum, weight_decay, eps, alpha, lr_decay, initial_accumulator_value,
 * momentum_decay >= 0; beta1 and beta2 in [0, 1); rho in [0, 1]; nesterov
 * needs momentum > 0 and dampening 0; every value finite.  A bad value is reported naming the
 * optimizer, the option and the value: "optim: adam beta2 1 must be in
 * [0, 1)". */
typedef struct cr_optim_opts {
  cr_optim_kind kind;
  double lr;
  double momentum, dampening, weight_decay;
  bool nesterov;
  double beta1, beta2, eps;
  bool amsgrad;
  double alpha;
  bool centered;
  double lr_decay, initial_accumulator_value;
  bool maximize;         /* ascend: use -grad (every kind) */
  double momentum_decay; /* NAdam's psi */
  double rho;            /* Adadelta's */
} cr_optim_opts;

/* PyTorch's defaults for kind: SGD lr 1e-3 (PyTorch 1.13 requires lr; 1e-3
 * is PyTorch 2's default), Adam/AdamW lr 1e-3 betas (0.9, 0.999) eps 1e-8,
 * AdamW weight_decay 1e-2, RMSprop lr 1e-2 alpha 0.99 eps 1e-8, Adagrad
 * lr 1e-2 eps 1e-10, NAdam lr 2e-3 betas (0.9, 0.999) eps 1e-8
 * momentum_decay 4e-3, RAdam lr 1e-3 betas (0.9, 0.999) eps 1e-8, Adamax
 * lr 2e-3 betas (0.9, 0.999) eps 1e-8, Adadelta lr 1 rho 0.9 eps 1e-6;
 * everything else 0 / false.  An unknown kind gets the SGD defaults with
 * that kind (cr_optim_new then rejects it). */
void cr_optim_default_opts(cr_optim_kind kind, cr_optim_opts *opts);
/* "sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam", "radam", "adamax",
 * "adadelta" <-> kind.  The name of an unknown kind is "unknown"; an
 * unknown name (or NULL) gives -1. */
const char *cr_optim_kind_name(cr_optim_kind kind);
int cr_optim_kind_from_name(const char *name);
/* The hyper-parameters of kind by name, in PyTorch's order, lr first: the
 * i-th name ("lr", "beta1", ...), or NULL past the last (or for an unknown
 * kind).  Booleans (nesterov, amsgrad, centered, maximize) count: their
 * value is 0 or 1 below. */
const char *cr_optim_hyper_name(cr_optim_kind kind, int i);
/* Set opts' hyper-parameter `name` (of opts->kind) to v (a boolean: v != 0).
 * The value is checked by cr_optim_new, not here.  Returns CR_OK, or an
 * error naming the hyper-parameters kind has ("optim_opts_set: adam has no
 * hyper-parameter 'rho' (lr, beta1, ...)"). */
CR_NODISCARD cr_status cr_optim_opts_set(cr_ctx *ctx, cr_optim_opts *opts, const char *name,
                                         double v);

typedef struct cr_optim cr_optim;

/* An optimizer over params[0..n) (n >= 1 persistent tensors, each at most
 * once; borrowed: they must outlive the optimizer), all in group 0 with
 * opts->lr.  Returns an optimizer owned by the caller (cr_optim_free), or
 * NULL and an error in ctx for bad options ("optim: sgd lr -1 must be >= 0",
 * "optim: sgd nesterov needs momentum > 0 and dampening 0", ...), a NULL,
 * non-persistent or repeated parameter, or no memory. */
cr_optim *cr_optim_new(cr_ctx *ctx, const cr_optim_opts *opts, cr_tensor *const *params, int n);
/* Free the optimizer and its state (not the parameters).  NULL accepted. */
void cr_optim_free(cr_optim *opt);
/* Add a parameter group of n >= 1 parameters (same rules as cr_optim_new;
 * none may already be in the optimizer) with its own learning rate (the
 * other options are shared).  Returns the group's index (>= 1) or -1 and an
 * error; on error the optimizer is unchanged. */
int cr_optim_add_group(cr_ctx *ctx, cr_optim *opt, cr_tensor *const *params, int n, double lr);
/* Number of groups (0 for NULL). */
int cr_optim_num_groups(const cr_optim *opt);
/* A group's current and initial ("base") learning rate; NAN if there is no
 * such group.  Schedules compute from the base lr. */
double cr_optim_get_lr(const cr_optim *opt, int group);
double cr_optim_get_base_lr(const cr_optim *opt, int group);
/* Set a group's current lr (no such group: nothing happens).  A negative or
 * non-finite lr is reported by the next cr_optim_step. */
void cr_optim_set_lr(cr_optim *opt, int group, double lr);
/* A live optimizer's hyper-parameter `name` (not lr, which is per group:
 * cr_optim_get_lr); NAN for a name its kind does not have. */
double cr_optim_get_hyper(const cr_optim *opt, const char *name);
/* Change a hyper-parameter of a live optimizer (PyTorch: group[name] = v;
 * here it applies to every group), from the next step on.  The value is
 * checked as by cr_optim_new, and a change that needs a state buffer the
 * optimizer was made without (amsgrad turned on, momentum from 0) is
 * refused: "optim_set_hyper: adam amsgrad 1 needs the state buffer
 * 'max_exp_avg_sq', which this optimizer was made without (give amsgrad
 * when making it)".  lr is refused (cr_optim_set_lr).  On error nothing
 * changes. */
CR_NODISCARD cr_status cr_optim_set_hyper(cr_ctx *ctx, cr_optim *opt, const char *name, double v);
/* One update of every parameter with a gradient (requires_grad on and
 * cr_grad(p) != NULL); the others are skipped.  Returns CR_OK, or an error
 * (e.g. a group's lr became negative), in which case nothing was changed. */
CR_NODISCARD cr_status cr_optim_step(cr_ctx *ctx, cr_optim *opt);
/* Zero every parameter's gradient (cr_zero_grad).  NULL accepted. */
void cr_optim_zero_grad(cr_optim *opt);
/* Number of successful cr_optim_step calls (restored by cr_optim_load).
 * Each parameter also counts its own updates (PyTorch's state["step"]),
 * which drives Adam's bias correction, Adagrad's lr_decay and SGD's first
 * momentum step; a frozen parameter's count does not advance. */
int64_t cr_optim_steps(const cr_optim *opt);

/* Checkpointing: add the optimizer's state to w under names starting with
 * prefix (e.g. "optim."; NULL means ""), and restore it from a file written
 * that way.  What is stored, with P the prefix:
 *   metadata P"kind"         "sgd", "adam", ...
 *            P"steps"        cr_optim_steps
 *            P"num_params", P"num_groups", P"group_sizes" ("3,1")
 *            P"param_steps"  each parameter's own update count ("10,10,0")
 *   tensors  P"lr", P"base_lr"  [num_groups] f64
 *            P"<i>.<buffer>"    parameter i's state, its shape and dtype, with
 *                               PyTorch's names: momentum_buffer (SGD with
 *                               momentum, RMSprop with momentum), exp_avg,
 *                               exp_avg_sq, max_exp_avg_sq (amsgrad),
 *                               square_avg, grad_avg (centered), sum,
 *                               exp_inf (Adamax), acc_delta (Adadelta).
 *            P"<i>.mu_product"  [1] f64, NAdam's product of momentum factors.
 * The hyperparameters are not stored: the loading optimizer keeps its own.
 * cr_optim_save fails on a name already in w (two optimizers need two
 * prefixes); it may have added some entries to w before failing.
 * cr_optim_load checks everything first — the kind, the numbers of groups
 * and parameters and each group's size, the step counts, the lrs, and the
 * presence and shape of every buffer this optimizer needs (others in the
 * file are ignored) — and changes nothing on a mismatch; the message names
 * the file and the entry ("ckpt.safetensors: no tensor named
 * 'optim.0.exp_avg' ...").  A buffer stored in the other dtype is
 * converted.  After save and load, steps continue bit for bit as if the
 * optimizer had never been saved. */
CR_NODISCARD cr_status cr_optim_save(cr_ctx *ctx, const cr_optim *opt, cr_st_writer *w,
                                     const char *prefix);
CR_NODISCARD cr_status cr_optim_load(cr_ctx *ctx, cr_optim *opt, const cr_st_file *f,
                                     const char *prefix);

/* ---- gradient clipping (parameters with requires_grad off or without a
 * gradient are ignored, as the optimizers ignore them) */
/* Scale all gradients so their global L2 norm is at most max_norm (PyTorch's
 * clip_grad_norm_: every gradient times max_norm / (norm + 1e-6) when that
 * factor is below 1).  The norm is computed in double over every gradient
 * element.  Returns the norm before clipping, or NAN and an error for bad
 * arguments (NULL params, n < 0, max_norm negative or NAN).  If the norm is
 * inf or NAN the gradients are left unchanged (PyTorch would multiply them
 * by 0 or NAN): check the returned value and skip the step. */
double cr_clip_grad_norm(cr_ctx *ctx, cr_tensor *const *params, int n, double max_norm);
/* Clamp every gradient element to [-clip, clip] (clip >= 0; NAN elements
 * stay NAN).  Returns CR_OK or the error. */
CR_NODISCARD cr_status cr_clip_grad_value(cr_ctx *ctx, cr_tensor *const *params, int n,
                                          double clip);

/* ---- learning-rate schedules
 *
 * A schedule is a function lr(step) for a group with base lr `base`, where
 * step counts the optimizer steps already taken: step 0 is the lr of the
 * first update, step k the lr of update k+1.  This is PyTorch's numbering:
 * lr(0) is the lr right after the scheduler is constructed and lr(k) the lr
 * after k calls of scheduler.step(), so calling
 *     cr_sched_apply(s, opt, k); cr_optim_step(ctx, opt);
 * for k = 0, 1, ... reproduces PyTorch's loop "optimizer.step();
 * scheduler.step()".  (For LINEAR, lr(0) is already base * start_factor.)
 * The exception is PLATEAU (ReduceLROnPlateau), which is driven by a
 * metric: cr_sched_plateau_step.
 *
 * STEP, EXPONENTIAL, COSINE and LINEAR are closed forms evaluated directly;
 * PyTorch updates the lr recursively (its "chainable" form), which drifts
 * from the closed form by a few ulp (relative error < 1e-14 on the
 * fixtures).  MULTISTEP multiplies as PyTorch does (lr * gamma at each
 * milestone), ONECYCLE is PyTorch's own closed form and PLATEAU keeps
 * PyTorch's state, so these three give PyTorch's values to the last bit.
 * COSINE is not clamped at t_max: like PyTorch's, it is periodic with
 * period 2 * t_max.
 *
 * Warmup composes as PyTorch's SequentialLR([warmup, this],
 * milestones=[warmup_steps]): for step < warmup_steps the lr is
 * warmup's lr(step); from step warmup_steps on it is this schedule's
 * lr(step - warmup_steps), so this schedule starts over at its own step 0
 * (a cosine restarts at base, its minimum shifted by warmup_steps).  A
 * warmup may itself have a warmup, giving SequentialLR with more milestones
 * (each one's warmup_steps counted from that schedule's own step 0).
 * PLATEAU takes no warmup and is no warmup. */
typedef enum cr_sched_kind {
  CR_SCHED_CONSTANT,    /* base */
  CR_SCHED_STEP,        /* base * gamma^floor(step / step_size) */
  CR_SCHED_EXPONENTIAL, /* base * gamma^step */
  CR_SCHED_COSINE,      /* eta_min + (base - eta_min) (1 + cos(pi step / t_max)) / 2 */
  CR_SCHED_LINEAR,      /* base * (start + (end - start) min(step, total) / total) */
  CR_SCHED_MULTISTEP,   /* base * gamma^(number of milestones <= step)   (MultiStepLR) */
  CR_SCHED_ONECYCLE,    /* OneCycleLR with max_lr = base, see below */
  CR_SCHED_PLATEAU,     /* ReduceLROnPlateau: lr *= factor when a metric stalls, see below */
  CR_SCHED_NUM_KINDS    /* the number of kinds above (not a kind) */
} cr_sched_kind;

#define CR_SCHED_MAX_MILESTONES 16

/* A schedule: its kind and the parameters of that kind (the others are
 * ignored), under PyTorch's names where the kind is new.  Start from
 * cr_sched_defaults (PyTorch's defaults) or a designated initializer. */
typedef struct cr_sched {
  cr_sched_kind kind;
  int64_t step_size, t_max, total_iters; /* STEP, COSINE, LINEAR: >= 1 */
  double gamma, eta_min, start_factor, end_factor;
  /* warmup: the first warmup_steps steps follow `warmup` (usually LINEAR);
   * afterwards this schedule runs with step - warmup_steps (SequentialLR).
   * Ignored when warmup is NULL. */
  const struct cr_sched *warmup;
  int64_t warmup_steps;

  /* MULTISTEP: gamma (0.1) and n_milestones steps, each >= 0, in increasing
   * order; a repeated milestone multiplies by gamma once per repetition
   * (PyTorch counts them). */
  int n_milestones;
  int64_t milestones[CR_SCHED_MAX_MILESTONES];

  /* ONECYCLE (OneCycleLR; a group's base lr is its max_lr): the lr rises
   * from base / div_factor to base over pct_start * total_steps steps, then
   * falls to base / div_factor / final_div_factor at step total_steps - 1,
   * cosine (or linear with anneal_linear) in each phase.  three_phase:
   * rise, fall back to base / div_factor by step 2 pct_start total_steps - 2,
   * then fall to the minimum.  Past total_steps the lr is NAN (PyTorch
   * raises).  cycle_momentum: cr_sched_apply also sets the optimizer's
   * momentum (SGD, RMSprop) or beta1 (the Adam family), from max_momentum
   * down to base_momentum while the lr rises and back up while it falls
   * (PyTorch does this by default).  The optimizer must have that
   * hyper-parameter, and SGD or RMSprop must have been made with momentum
   * > 0 (so its momentum buffer exists); otherwise the next cr_optim_step
   * fails saying so (PyTorch raises for Adagrad, Adadelta).  Defaults:
   * pct_start 0.3, cosine, div_factor 25, final_div_factor 1e4, two phases,
   * cycle_momentum true, base_momentum 0.85, max_momentum 0.95. */
  int64_t total_steps;
  double pct_start, div_factor, final_div_factor;
  bool anneal_linear, three_phase, cycle_momentum;
  double base_momentum, max_momentum;

  /* PLATEAU (ReduceLROnPlateau): after more than `patience` steps without
   * an improvement of the metric (lower, or higher with mode_max, by
   * threshold: relative, or absolute with threshold_abs), every group's lr
   * becomes max(lr * factor, min_lr), unless that changes it by eps or
   * less; then `cooldown` steps pass before bad steps count again.
   * Defaults: min, factor 0.1, patience 10, threshold 1e-4 relative,
   * cooldown 0, min_lr 0, eps 1e-8.  The same min_lr for every group. */
  bool mode_max, threshold_abs;
  double factor, threshold, min_lr, eps;
  int64_t patience, cooldown;
  /* PLATEAU's state, kept by cr_sched_plateau_step (all 0 before the first
   * metric): metrics seen, bad steps in a row, cooldown steps left, and the
   * best metric so far (meaningful once last_epoch >= 1). */
  int64_t last_epoch, num_bad_epochs, cooldown_counter;
  double best;
} cr_sched;

/* PyTorch's defaults for kind into *s (everything else 0; the warmup
 * NULL): STEP gamma 0.1, LINEAR start_factor 1/3, end_factor 1,
 * total_iters 5, MULTISTEP gamma 0.1, ONECYCLE and PLATEAU as above.  What
 * PyTorch requires is left 0 (step_size, gamma of EXPONENTIAL, t_max,
 * milestones, total_steps), which cr_sched_check reports until set. */
void cr_sched_defaults(cr_sched_kind kind, cr_sched *s);
/* The learning rate at step (>= 0) for a group whose base lr is base; NAN
 * for a negative step, an invalid s (see cr_sched_check), ONECYCLE past
 * total_steps, or PLATEAU (not a function of the step). */
double cr_sched_lr(const cr_sched *s, double base, int64_t step);
/* The momentum (or beta1) a cycle_momentum ONECYCLE sets at step (after
 * the warmups); NAN if the schedule in effect at step sets none. */
double cr_sched_momentum(const cr_sched *s, int64_t step);
/* Set every group's lr to cr_sched_lr(s, its base lr, step), and the
 * momentum of a cycle_momentum ONECYCLE.  An invalid s sets NAN, which the
 * next cr_optim_step reports, as it reports a momentum the optimizer cannot
 * take.  PLATEAU: nothing happens (its lr changes in cr_sched_plateau_step). */
void cr_sched_apply(const cr_sched *s, cr_optim *opt, int64_t step);
/* ReduceLROnPlateau's step (PyTorch's scheduler.step(metric)): s must be
 * PLATEAU; metric is this step's (or epoch's) value of the monitored
 * quantity (a NAN never improves).  Updates s's state and may lower every
 * group's lr as described above.  Returns CR_OK, or an error for an invalid
 * s or a NULL argument (nothing changes then). */
CR_NODISCARD cr_status cr_sched_plateau_step(cr_ctx *ctx, cr_sched *s, cr_optim *opt,
                                             double metric);
/* true if s (and its warmups) can be evaluated: sizes >= 1, gamma > 0,
 * eta_min >= 0, start_factor in (0, 1], end_factor in [0, 1], warmup_steps
 * >= 0, milestones >= 0 in increasing order, pct_start in [0, 1] and not
 * making OneCycleLR's first phase empty, div factors > 0, momenta and
 * factor in [0, 1), patience and cooldown >= 0, threshold, min_lr, eps >= 0,
 * all finite; else false and a message in err (if err != NULL). */
bool cr_sched_check(const cr_sched *s, char *err, size_t n);
/* Parse a spec: NAME then ':'-separated values, the required ones first in
 * order, then optional ones in order or as name=value (every parameter can
 * be given by its name, PyTorch's):
 *   constant
 *   step:SIZE:GAMMA                          exp:GAMMA
 *   cosine:TMAX[:ETA_MIN]                    linear:START:END:TOTAL
 *   multistep:M1,M2,...[:GAMMA]              e.g. multistep:30,80:0.1
 *   onecycle:TOTAL[:PCT_START][:NAME=VALUE...]
 *       names total_steps pct_start anneal_strategy (cos|linear) three_phase
 *       (0|1) cycle_momentum (0|1) base_momentum max_momentum div_factor
 *       final_div_factor, e.g. onecycle:1000:anneal_strategy=linear
 *   plateau[:FACTOR[:PATIENCE]][:NAME=VALUE...]
 *       names mode (min|max) factor patience threshold threshold_mode
 *       (rel|abs) cooldown min_lr eps, e.g. plateau:0.5:3:mode=max
 * Omitted values take PyTorch's defaults (cr_sched_defaults).  Or
 * "warmup:N+SPEC" with SPEC one of those but plateau (e.g.
 * "warmup:N+cosine:TMAX[:ETA_MIN]"): linear warmup from 0.1 x base over N
 * steps (LINEAR start 0.1, end 1, total_iters N), then SPEC from its step 0
 * at step N.  The warmup is stored in *storage (which must outlive *out).
 * false and a message in err for a bad spec (out is then unspecified). */
bool cr_sched_parse(const char *spec, cr_sched *out, cr_sched *storage, char *err, size_t n);

#ifdef __cplusplus
}
#endif
#endif
