/* char_lm.h — the parts of the char-lm program, one job per file:
 *   main.c        the commands: train, sample, eval
 *   cli.c         the options, one table row per flag: parsing, --help, and
 *                 which of them a checkpoint records and a resumed run keeps
 *   data.c        the text: vocabulary, ids, the 90/10 split, batches
 *   checkpoint.c  saving a run and loading it back (resume, fine-tune, use)
 *   train.c       setting a run up and the training loop
 *   eval.c        the validation loss
 *   sample.c      generating text
 *   dist.c        several processes under mpirun (libchainrule_mpi); in a
 *                 build without MPI, dist_none.c: one process
 *   common.c      messages, checked allocation, clocks
 * The model itself is examples/char_model.c (shared with the benchmark).
 * Every function that can fail prints one line "char-lm: ..." and returns
 * false / NULL / 1; none aborts. */
#ifndef CHAINRULE_EXAMPLE_CHAR_LM_H
#define CHAINRULE_EXAMPLE_CHAR_LM_H

#include <stdbool.h>
#include <stdint.h>

#include "chainrule/optim.h"
#include "char_model.h"

#ifndef CHAR_LM_DEFAULT_DATA
#define CHAR_LM_DEFAULT_DATA "examples/data/tinyshakespeare.txt"
#endif

/* ---- cli.c */

typedef struct cl_opts {
  const char *cmd; /* "train", "sample" or "eval" */
  const char *data, *cell, *optimizer, *schedule, *dtype, *save, *resume, *load, *finetune, *prime,
      *bptt_checkpoint; /* bptt_checkpoint: NULL, "auto" or K */
  long hidden, layers, embed, seq, batch, steps, epochs, threads, length, eval_every, eval_chars,
      log_every, save_every, stop_after, seed;
  double lr, clip, temperature, dropout; /* lr < 0: the optimizer's default */
  double bptt_memory;                    /* MiB per layer, 0: no budget */
  bool tbptt, freeze_recurrent, detect_anomaly;
  bool dist_deterministic; /* several ranks: the fixed reduction order */
  double dist_timeout;     /* several ranks: seconds to wait for the others (0: forever) */
  uint64_t given;          /* bit i: option row i was on the command line */
  uint64_t inherited;      /* bit i: option row i came from a checkpoint */
} cl_opts;

/* How a checkpoint is used: what it contributes to the options. */
typedef enum cl_use { CL_RESUME, CL_FINETUNE, CL_LOAD } cl_use;

/* Parse argv into o.  0 ok, 1 error (printed), 2 help shown. */
int cl_parse_args(int argc, char **argv, cl_opts *o);
/* Defaults for every option (what a command line without flags gives). */
void cl_default_opts(cl_opts *o);
/* Take the options that checkpoint f (opened from path) records into o,
 * as use requires: a recorded option not given keeps its recorded value; a
 * given one that may not change and differs is an error naming both
 * values; a malformed or missing entry is an error naming the file, the
 * entry and the expected value.  o is unchanged on failure. */
bool cl_opts_from_checkpoint(cl_opts *o, const cr_st_file *f, const char *path, cl_use use);
/* Defaults that depend on other options: the optimizer's lr, and a resumed
 * run saving back to the file it resumed from. */
void cl_opts_resolve(cl_opts *o);
/* Record every option that a checkpoint keeps (model.* are cm_save's). */
cr_status cl_opts_record(cr_ctx *ctx, const cl_opts *o, cr_st_writer *w);

/* ---- data.c */

typedef struct cl_corpus {
  unsigned char *text;
  int64_t n;
  int vocab;
  unsigned char chars[256]; /* id -> byte */
  int id_of[256];           /* byte -> id, -1 if absent */
  int64_t *ids;             /* [n] the text as ids */
  int64_t n_train;          /* ids[0..n_train) train, the rest validation */
  uint64_t hash;            /* FNV-1a of the text: its identity in checkpoints */
} cl_corpus;

bool cl_corpus_load(const char *path, cl_corpus *c);
/* The same from n bytes in memory (copied); name is used in messages. */
bool cl_corpus_from_bytes(const void *bytes, size_t n, const char *name, cl_corpus *c);
void cl_corpus_free(cl_corpus *c);
/* The vocabulary as hex, 2 digits per character, into out[513]. */
void cl_vocab_hex(const cl_corpus *c, char *out);
/* Entropy of the training text's character frequencies (bits/char). */
double cl_unigram_bits(const cl_corpus *c);
/* The next training batch of B sequences, of which this rank takes
 * sequences [lo, hi): ids, tgt [T, hi-lo].  Random windows (all B are
 * drawn, so every rank's generator stays the same), or with tbptt B
 * streams (each a contiguous share of the text) continuing at
 * *stream_pos; returns true if the streams wrapped around to their start. */
bool cl_next_batch(const cl_corpus *c, int64_t T, int64_t B, int64_t lo, int64_t hi, bool tbptt,
                   cr_rng *rng, int64_t *stream_pos, int64_t *ids, int64_t *tgt);
/* Rank r's share [lo, hi) of n sequences on size ranks: n/size each, one
 * more for the first n % size ranks (size <= 1: all of them). */
void cl_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* ---- the state of a run (what a checkpoint carries) */

typedef struct cl_run {
  cl_opts o;
  cl_corpus data;
  cr_ctx *ctx;
  cr_rng *rng;
  char_model *m;
  cr_optim *opt;
  cr_sched sched, warm;
  int64_t step;            /* optimizer steps taken */
  int S;                   /* states per layer (lstm 2) */
  cr_tensor *carry[2];     /* --tbptt: [L,B,H] state carried across batches */
  int64_t stream_pos;      /* --tbptt: offset of the next chunk in every stream */
  int64_t *ids, *tgt;      /* [T,B] batch buffers */
  int bad_evals;           /* consecutive validations far above the uniform baseline */
  cr_rnn_forward_opts fwd; /* training forwards: --bptt-checkpoint / --bptt-memory */
  int64_t bptt_chosen[2 * CM_MAX_LAYERS]; /* segment lengths used, per layer */
  /* the process group (dist.c): rank 0 of 1 on one process (size 0, as a
   * zeroed cl_run has it, counts as 1) */
  void *dist; /* the cr_dist under mpirun, else NULL */
  int rank, size;
  int64_t b_lo, b_hi;      /* this rank's sequences [b_lo, b_hi) of every batch */
  cr_rng *drop_rng;        /* several ranks with --dropout: this rank's draws */
  cr_tensor *carry_all[2]; /* several ranks, --tbptt: [L,B,H], every rank's rows */
  double step_s;           /* seconds in training steps (for the rate and shares) */
} cl_run;

void cl_run_free(cl_run *t);

/* ---- checkpoint.c */

/* Save the model, the optimizer, the run's options and its state. */
cr_status cl_ckpt_save(cl_run *t, const char *path);
/* Every tensor of the model that f's model.* metadata (cfg) describes is in
 * f with the right shape: checked before anything is allocated. */
bool cl_ckpt_check_shapes(const cr_st_file *f, const char *path, const cm_config *cfg);
/* The checkpoint belongs to t's text: the same vocabulary (use CL_LOAD),
 * and for CL_RESUME the very same text. */
bool cl_ckpt_check_data(const cl_run *t, const cr_st_file *f, const char *path, cl_use use);
/* Resume: the model, the optimizer, the carried state, the step, the
 * generator and the stream position, all checked before any is changed. */
bool cl_ckpt_restore(cl_run *t, const cr_st_file *f, const char *path);
/* Fine-tune: recurrent weights, and the rows of the characters both
 * vocabularies share (old: the checkpoint's model). */
bool cl_ckpt_finetune(cl_run *t, const cr_st_file *f, const char *path, const cm_config *old);
/* sample / eval: t->m from f (checked: config, vocabulary, shapes, values). */
bool cl_ckpt_load_model(cl_run *t, const cr_st_file *f, const char *path);

/* ---- train.c */

/* Everything before the first step: checks of the text and the save path,
 * the model and optimizer (from f when resuming or fine-tuning; f may be
 * NULL for a fresh run), the schedule and the batch buffers. */
bool cl_train_setup(cl_run *t, const cr_st_file *f);
/* The training loop to --steps (or --stop-after); 0 or 1. */
int cl_train_loop(cl_run *t);

/* ---- eval.c */

/* Mean cross-entropy (nats) over up to max_chars validation characters
 * (0: all) into *nats, and how many were scored into *count (0: too little
 * validation text for a figure); false (printed) on error. */
bool cl_evaluate(cl_run *t, int64_t max_chars, double *nats, int64_t *count);

/* ---- sample.c */

/* Print o.length characters after o.prime; 0 or 1. */
int cl_sample(cl_run *t);

/* ---- dist.c / dist_none.c: the process group.  Every function here is
 * called by every rank at the same point (a collective); a rank that
 * failed still calls it, so the others learn of it instead of waiting.
 * Errors of a collective are the same on every rank and printed by rank 0
 * alone. */

/* Join the group when started by mpirun (t->rank, t->size; with one
 * process rank 0 of 1).  false (printed) on error. */
bool cl_dist_init(cl_run *t);
/* At exit: tell the others whether this rank failed (rc != 0), learn
 * whether they did, leave the group.  Returns the exit status. */
int cl_dist_finish(cl_run *t, int rc);
/* False on every rank if any rank passes ok false (it printed why). */
bool cl_dist_all_ok(cl_run *t, bool ok);
/* Before the first step: the same model on every rank (else a message
 * naming the rank and parameter), rank 0's values on all. */
bool cl_dist_start(cl_run *t);
/* After backward: the gradients averaged over the ranks, each weighted by
 * its share of the batch (so they are the gradient of the whole batch's
 * mean loss), and *loss the whole batch's loss.  false: printed. */
bool cl_dist_reduce(cl_run *t, double *loss);
/* v[i] summed over the ranks, the same bits on each. */
bool cl_dist_sum(cl_run *t, double *v, int n);
/* Before a save: every rank's rows of the carried state in t->carry_all,
 * and the ranks' parameters checked to be the same bits. */
bool cl_dist_before_save(cl_run *t);
/* One line about the group for the header, or "" (one process). */
void cl_dist_describe(const cl_run *t, char *buf, size_t n);
/* The cost of the gradient all-reduce so far, as a line, or "". */
void cl_dist_stats_line(const cl_run *t, char *buf, size_t n);

/* ---- common.c */

/* Print "char-lm: " (on several ranks "char-lm: rank R: ") and the
 * message to stderr; returns 1.  The last message is kept for the other
 * ranks (cl_last_error). */
int cl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Messages of rank R of N from now on name the rank. */
void cl_set_rank(int rank, int size);
const char *cl_last_error(void);
/* n * size bytes, or NULL and "char-lm: out of memory for WHAT (N bytes)"
 * (also when n * size overflows). */
void *cl_alloc(size_t n, size_t size, const char *what);
double cl_now(void);
void cl_fmt_time(double s, char *buf, size_t n);

#endif
