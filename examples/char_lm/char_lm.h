/* char_lm.h — the parts of the char-lm program, one job per file:
 *   main.c        the commands: train, sample, eval
 *   cli.c         the options, one table row per flag: parsing, --help, and
 *                 which of them a checkpoint records and a resumed run keeps
 *   data.c        the text: vocabulary, ids, the 90/10 split, batches
 *   checkpoint.c  saving a run and loading it back (resume, fine-tune, use)
 *   train.c       setting a run up and the training loop
 *   eval.c        the validation loss
 *   sample.c      generating text
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
  const char *data, *cell, *optimizer, *schedule, *dtype, *save, *resume, *load, *finetune,
      *prime, *bptt_checkpoint; /* bptt_checkpoint: NULL, "auto" or K */
  long hidden, layers, embed, seq, batch, steps, epochs, threads, length, eval_every, eval_chars,
      log_every, save_every, stop_after, seed;
  double lr, clip, temperature, dropout; /* lr < 0: the optimizer's default */
  double bptt_memory;                    /* MiB per layer, 0: no budget */
  bool tbptt, freeze_recurrent, detect_anomaly;
  uint64_t given;     /* bit i: option row i was on the command line */
  uint64_t inherited; /* bit i: option row i came from a checkpoint */
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
/* The next training batch: ids, tgt [T,B].  Random windows, or with tbptt
 * B streams (each a contiguous share of the text) continuing at
 * *stream_pos; returns true if the streams wrapped around to their start. */
bool cl_next_batch(const cl_corpus *c, int64_t T, int64_t B, bool tbptt, cr_rng *rng,
                   int64_t *stream_pos, int64_t *ids, int64_t *tgt);

/* ---- the state of a run (what a checkpoint carries) */

typedef struct cl_run {
  cl_opts o;
  cl_corpus data;
  cr_ctx *ctx;
  cr_rng *rng;
  char_model *m;
  cr_optim *opt;
  cr_sched sched, warm;
  int64_t step;        /* optimizer steps taken */
  int S;               /* states per layer (lstm 2) */
  cr_tensor *carry[2]; /* --tbptt: [L,B,H] state carried across batches */
  int64_t stream_pos;  /* --tbptt: offset of the next chunk in every stream */
  int64_t *ids, *tgt;  /* [T,B] batch buffers */
  int bad_evals;       /* consecutive validations far above the uniform baseline */
  cr_rnn_forward_opts fwd; /* training forwards: --bptt-checkpoint / --bptt-memory */
  int64_t bptt_chosen[2 * CM_MAX_LAYERS]; /* segment lengths used, per layer */
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

/* ---- common.c */

int cl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* n * size bytes, or NULL and "char-lm: out of memory for WHAT (N bytes)"
 * (also when n * size overflows). */
void *cl_alloc(size_t n, size_t size, const char *what);
double cl_now(void);
void cl_fmt_time(double s, char *buf, size_t n);

#endif
