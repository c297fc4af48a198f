/* cli.c — char-lm's options: one row per flag gives its parsing, its line
 * in --help, and what a checkpoint does with it:
 *   LOCAL  this invocation only, never recorded (--save, --threads, ...)
 *   MODEL  the architecture, recorded as model.* (by cm_save); every use of
 *          a checkpoint keeps it, and a flag that differs is an error
 *   KEEP   shapes the run (run.*); a resumed run keeps it, and a flag that
 *          differs is an error naming both values
 *   SPAN   recorded (run.*); a resumed run continues with it unless the
 *          flag is given again: it may change (--steps, --data)
 *   CARRY  like SPAN, recorded only once given (its default is computed)
 * So "char-lm train --resume F" alone continues F's run exactly. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lm.h"

typedef enum { T_STR, T_LONG, T_DOUBLE, T_FLAG } opt_type;
typedef enum { LOCAL, MODEL, KEEP, SPAN, CARRY } opt_keep;

typedef struct opt_def {
  const char *section;    /* a heading printed before this row, or NULL */
  const char *flag, *arg; /* "--seq", "N" (arg NULL for T_FLAG) */
  size_t off;             /* of the field in cl_opts */
  opt_type type;
  long lo, hi;     /* T_LONG range */
  double dlo, dhi; /* T_DOUBLE range */
  /* T_STR: the canonical spelling of a valid value, or NULL (NULL canon:
   * any string); choices says what is valid */
  const char *(*canon)(const char *v);
  const char *choices;
  const char *key; /* checkpoint metadata, NULL for LOCAL */
  opt_keep keep;
  bool on_load; /* also taken from the checkpoint by sample / eval */
  const char *help;
} opt_def;

static const char *canon_cell(const char *v) {
  const cr_cell_def *c = cm_cell_by_name(v);
  return c ? c->name : NULL;
}
static const char *canon_optim(const char *v) {
  int k = cr_optim_kind_from_name(v);
  return k < 0 ? NULL : cr_optim_kind_name((cr_optim_kind)k);
}
/* "auto" or a segment length >= 1 */
static const char *canon_every(const char *v) {
  if (!strcmp(v, "auto"))
    return "auto";
  char *end;
  errno = 0;
  long k = strtol(v, &end, 10);
  return *v >= '1' && *v <= '9' && !errno && !*end && k >= 1 && k <= 1000000000 ? v : NULL;
}
static const char *canon_dtype(const char *v) {
  return !strcmp(v, "f32") ? "f32" : !strcmp(v, "f64") ? "f64" : NULL;
}

#define F(field) offsetof(cl_opts, field)
#define LONG(lo, hi) T_LONG, lo, hi, 0, 0, NULL, NULL
#define DBL(lo, hi) T_DOUBLE, 0, 0, lo, hi, NULL, NULL
#define STR(canon, choices) T_STR, 0, 0, 0, 0, canon, choices
#define FLAG T_FLAG, 0, 0, 0, 0, NULL, NULL
static const opt_def defs[] = {
    {"data and model", "--data", "FILE", F(data), STR(NULL, NULL), "run.data", SPAN, true,
     "text to learn [" CHAR_LM_DEFAULT_DATA "]"},
    {NULL, "--cell", "NAME", F(cell), STR(canon_cell, "rnn, rnn_relu, lstm, lstm_ln, gru or mgu"),
     "model.cell", MODEL, false,
     "rnn | rnn_relu | lstm | lstm_ln (layer-normalised) | gru |\n                       mgu "
     "(custom cell) [lstm]"},
    {NULL, "--hidden", "N", F(hidden), LONG(1, CM_MAX_SIZE), "model.hidden", MODEL, false,
     "hidden size [256]"},
    {NULL, "--layers", "N", F(layers), LONG(1, CM_MAX_LAYERS), "model.layers", MODEL, false,
     "recurrent layers [1]"},
    {NULL, "--embed", "N", F(embed), LONG(1, CM_MAX_SIZE), "model.embed", MODEL, false,
     "embedding size [64]"},
    {NULL, "--dropout", "P", F(dropout), DBL(0, CM_MAX_DROPOUT), "model.dropout", MODEL, false,
     "dropout between layers [0]"},
    {NULL, "--dtype", "f32|f64", F(dtype), STR(canon_dtype, "f32 or f64"), "model.dtype", MODEL,
     false, "[f32]"},
    {"training", "--seq", "N", F(seq), LONG(1, 100000), "run.seq", KEEP, false,
     "characters per sequence (BPTT length) [64]"},
    {NULL, "--batch", "N", F(batch), LONG(1, 100000), "run.batch", KEEP, false,
     "sequences per batch [32]"},
    {NULL, "--steps", "N", F(steps), LONG(1, 1000000000), "run.steps", SPAN, false,
     "optimizer steps (the schedule spans them) [2000]"},
    {NULL, "--stop-after", "N", F(stop_after), LONG(1, 1000000000), NULL, LOCAL, false,
     "stop (and --save) after step N of --steps; --resume later"},
    {NULL, "--epochs", "N", F(epochs), LONG(1, 100000), NULL, LOCAL, false,
     "instead of --steps: passes over the training text"},
    {NULL, "--optimizer", "NAME", F(optimizer),
     STR(canon_optim, "sgd, adam, adamw, rmsprop or adagrad"), "run.optimizer", KEEP, false,
     "sgd | adam | adamw | rmsprop | adagrad [adam]"},
    {NULL, "--lr", "X", F(lr), DBL(0, 1e3), "run.lr", KEEP, false,
     "learning rate [adam/adamw 3e-3, rmsprop 2e-3, sgd 1, adagrad 0.1]"},
    {NULL, "--clip", "X", F(clip), DBL(0, 1e9), "run.clip", KEEP, false,
     "clip the gradient's global L2 norm (0: off) [5]"},
    {NULL, "--schedule", "S", F(schedule), STR(NULL, NULL), "run.schedule", KEEP, false,
     "constant | cosine | step:SIZE:GAMMA | exp:GAMMA |\n"
     "                       warmup:N+cosine (cosine over the remaining steps) [cosine]"},
    {NULL, "--tbptt", NULL, F(tbptt), FLAG, "run.tbptt", KEEP, false,
     "consecutive chunks from B streams, state carried (detached)\n"
     "                       across batches: truncated BPTT [off: random windows]"},
    {NULL, "--threads", "N", F(threads), LONG(1, 256), NULL, LOCAL, false,
     "threads for the products of a step [1]"},
    {NULL, "--bptt-checkpoint", "K|auto", F(bptt_checkpoint),
     STR(canon_every, "auto or an integer >= 1"), NULL, LOCAL, false,
     "memory-efficient BPTT: keep every K-th step's state and\n"
     "                       recompute the rest in backward (auto: ~sqrt(seq));\n"
     "                       the same gradients, bit for bit [off]"},
    {NULL, "--bptt-memory", "MB", F(bptt_memory), DBL(0.001, 1e7), NULL, LOCAL, false,
     "memory-efficient BPTT within MB mebibytes per layer\n"
     "                       (the longest segments that fit) [off]"},
    {NULL, "--detect-anomaly", NULL, F(detect_anomaly), FLAG, NULL, LOCAL, false,
     "stop at the first op whose result or gradient is NaN/Inf,\n"
     "                       naming it (slower) [off]"},
    {NULL, "--seed", "N", F(seed), LONG(0, 0x7fffffffffffffffL), "run.seed", KEEP, false, "[1]"},
    {NULL, "--eval-every", "N", F(eval_every), LONG(1, 1000000000), "run.eval_every", CARRY, false,
     "validation every N steps [steps/5]"},
    {NULL, "--eval-chars", "N", F(eval_chars), LONG(0, 1000000000), "run.eval_chars", CARRY, false,
     "validation characters used in between (0: all) [16384]"},
    {NULL, "--log-every", "N", F(log_every), LONG(1, 1000000000), "run.log_every", CARRY, false,
     "progress line every N steps when not a terminal [steps/20]"},
    {"checkpoints", "--save", "FILE", F(save), STR(NULL, NULL), NULL, LOCAL, false,
     "save model + training state here (atomically) at the end\n"
     "                       [with --resume: the file resumed from]"},
    {NULL, "--save-every", "N", F(save_every), LONG(1, 1000000000), "run.save_every", CARRY, false,
     "and every N steps"},
    {NULL, "--resume", "FILE", F(resume), STR(NULL, NULL), NULL, LOCAL, false,
     "continue the run FILE holds exactly where it left off"},
    {NULL, "--finetune-from", "FILE", F(finetune), STR(NULL, NULL), NULL, LOCAL, false,
     "start from a trained model (vocabulary may differ)"},
    {NULL, "--freeze-recurrent", NULL, F(freeze_recurrent), FLAG, "run.freeze_recurrent", KEEP,
     false, "with --finetune-from: train only embedding and head"},
    {"sampling", "--load", "FILE", F(load), STR(NULL, NULL), NULL, LOCAL, false,
     "model to sample from / evaluate"},
    {NULL, "--temperature", "T", F(temperature), DBL(1e-3, 100), NULL, LOCAL, false, "[0.8]"},
    {NULL, "--length", "N", F(length), LONG(0, 100000000), NULL, LOCAL, false,
     "characters to generate [400]"},
    {NULL, "--prime", "TEXT", F(prime), STR(NULL, NULL), NULL, LOCAL, false,
     "text to start from [\"\\n\"]"},
    {"several processes (mpirun -np N char-lm train ...: each rank takes its share of\n"
     "every --batch, the ranks average their gradients; see README.md)",
     "--dist-deterministic", NULL, F(dist_deterministic), FLAG, NULL, LOCAL, false,
     "sum the ranks' gradients in a fixed order: reruns give the\n"
     "                       same bits [off: MPI_Allreduce's order]"},
    {NULL, "--dist-timeout", "S", F(dist_timeout), DBL(0, 1e7), NULL, LOCAL, false,
     "seconds a rank waits for the others before it ends the\n"
     "                       job (0: forever) [300]"},
};
#define N_DEFS ((int)(sizeof defs / sizeof defs[0]))
_Static_assert(sizeof defs / sizeof defs[0] <= 64, "cl_opts.given has 64 bits");

static void *field(const cl_opts *o, int i) { return (char *)o + defs[i].off; }

void cl_default_opts(cl_opts *o) {
  *o = (cl_opts){.data = CHAR_LM_DEFAULT_DATA,
                 .cell = "lstm",
                 .optimizer = "adam",
                 .schedule = "cosine",
                 .dtype = "f32",
                 .prime = "\n",
                 .hidden = 256,
                 .layers = 1,
                 .embed = 64,
                 .seq = 64,
                 .batch = 32,
                 .steps = 2000,
                 .threads = 1,
                 .length = 400,
                 .eval_every = -1,
                 .eval_chars = 16384,
                 .log_every = -1,
                 .lr = -1,
                 .clip = 5,
                 .temperature = 0.8,
                 .seed = 1,
                 .dist_timeout = 300};
}

static void usage(FILE *f) {
  fprintf(f, "usage: char-lm train|sample|eval [options]\n");
  for (int i = 0; i < N_DEFS; i++) {
    const opt_def *d = &defs[i];
    if (d->section)
      fprintf(f, "%s%s\n", i ? "" : "\n", d->section);
    char lhs[40];
    snprintf(lhs, sizeof lhs, "%s%s%s", d->flag, d->arg ? " " : "", d->arg ? d->arg : "");
    fprintf(f, "  %-20s %s\n", lhs, d->help);
  }
  fprintf(f, "\nresuming: --resume FILE alone continues FILE's run bit for bit; its options\n"
             "are recorded in FILE.  These may be given again to change them:\n ");
  int col = 1;
  for (int i = 0; i < N_DEFS; i++) {
    const char *fl = defs[i].flag;
    if (defs[i].keep == MODEL || defs[i].keep == KEEP || !strcmp(fl, "--resume") ||
        !strcmp(fl, "--finetune-from") || !strcmp(fl, "--load"))
      continue;
    if (col + 1 + (int)strlen(fl) > 78)
      col = fprintf(f, "\n ") - 1;
    col += fprintf(f, " %s", fl);
  }
  fprintf(f, "\n(--steps also stretches the lr schedule; --data may name another copy of the\n"
             "same text).  Any other flag must agree with FILE: a different value is an\n"
             "error naming both.\n"
             "divergence: training stops (without saving) when the loss is not finite or\n"
             "the validation loss stays above 1.5x the uniform baseline log2(vocabulary)\n"
             "for 3 validations in a row.\n");
}

/* Parse v as row i's value into o; false and the expected value in why. */
static bool parse_value(int i, const char *v, cl_opts *o, char *why, size_t n) {
  const opt_def *d = &defs[i];
  void *p = field(o, i);
  char *end;
  errno = 0;
  switch (d->type) {
  case T_STR: {
    const char *c = d->canon ? d->canon(v) : v;
    if (!c) {
      snprintf(why, n, "must be one of %s", d->choices);
      return false;
    }
    *(const char **)p = c;
    return true;
  }
  case T_LONG: {
    long x = strtol(v, &end, 10);
    if ((*v != '-' && (*v < '0' || *v > '9')) || errno || *end || x < d->lo || x > d->hi) {
      snprintf(why, n, "must be an integer between %ld and %ld", d->lo, d->hi);
      return false;
    }
    *(long *)p = x;
    return true;
  }
  case T_DOUBLE: {
    double x = strtod(v, &end);
    if (end == v || errno || *end || !(x >= d->dlo && x <= d->dhi)) {
      snprintf(why, n, "must be a number between %g and %g", d->dlo, d->dhi);
      return false;
    }
    *(double *)p = x;
    return true;
  }
  case T_FLAG:
    if (strcmp(v, "0") && strcmp(v, "1")) {
      snprintf(why, n, "must be 0 or 1");
      return false;
    }
    *(bool *)p = v[0] == '1';
    return true;
  }
  return false;
}

/* Row i's value in o as the checkpoint records it. */
static void format_value(int i, const cl_opts *o, char *buf, size_t n) {
  const void *p = field(o, i);
  switch (defs[i].type) {
  case T_STR: snprintf(buf, n, "%s", *(const char *const *)p ? *(const char *const *)p : ""); break;
  case T_LONG: snprintf(buf, n, "%ld", *(const long *)p); break;
  case T_DOUBLE: snprintf(buf, n, "%.17g", *(const double *)p); break;
  case T_FLAG: snprintf(buf, n, "%d", *(const bool *)p ? 1 : 0); break;
  }
}

/* Row i's value as a user would type it, for messages. */
static void show_flag(int i, const cl_opts *o, char *buf, size_t n) {
  if (defs[i].type == T_FLAG) {
    snprintf(buf, n, "%s%s", *(const bool *)field(o, i) ? "" : "no ", defs[i].flag);
    return;
  }
  char v[200];
  if (defs[i].type == T_DOUBLE)
    snprintf(v, sizeof v, "%g", *(const double *)field(o, i));
  else
    format_value(i, o, v, sizeof v);
  snprintf(buf, n, "%s %s", defs[i].flag, v);
}

int cl_parse_args(int argc, char **argv, cl_opts *o) {
  cl_default_opts(o);
  if (argc < 2) {
    usage(stderr);
    return 1;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return 2;
  }
  o->cmd = argv[1];
  if (strcmp(o->cmd, "train") && strcmp(o->cmd, "sample") && strcmp(o->cmd, "eval")) {
    cl_fail("unknown command '%s' (expected train, sample or eval; see char-lm --help)", o->cmd);
    return 1;
  }
  for (int a = 2; a < argc; a++) {
    if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
      usage(stdout);
      return 2;
    }
    int i = 0;
    while (i < N_DEFS && strcmp(argv[a], defs[i].flag))
      i++;
    if (i == N_DEFS) {
      cl_fail("unknown option '%s' (see char-lm --help)", argv[a]);
      return 1;
    }
    o->given |= (uint64_t)1 << i;
    if (defs[i].type == T_FLAG) {
      *(bool *)field(o, i) = true;
      continue;
    }
    const char *v = a + 1 < argc ? argv[++a] : NULL;
    char why[160];
    if (!v) {
      cl_fail("%s needs a value (see char-lm --help)", defs[i].flag);
      return 1;
    }
    if (!parse_value(i, v, o, why, sizeof why)) {
      cl_fail("%s %s: %s", defs[i].flag, v, why);
      return 1;
    }
  }
  if (o->freeze_recurrent && !o->finetune && !o->resume) {
    cl_fail("--freeze-recurrent needs --finetune-from");
    return 1;
  }
  if (o->resume && o->finetune) {
    cl_fail("--resume and --finetune-from exclude each other");
    return 1;
  }
  if (strcmp(o->cmd, "train") && !o->load && !o->resume) {
    cl_fail("%s needs --load CHECKPOINT", o->cmd);
    return 1;
  }
  return 0;
}

/* Does a checkpoint used this way decide row i? */
static bool decides(int i, cl_use use) {
  switch (defs[i].keep) {
  case LOCAL: return false;
  case MODEL: return true;
  default: return use == CL_RESUME || (use == CL_LOAD && defs[i].on_load);
  }
}

bool cl_opts_from_checkpoint(cl_opts *o, const cr_st_file *f, const char *path, cl_use use) {
  if (!cr_st_meta(f, "model.cell"))
    return cl_fail("%s: not a char-lm checkpoint (no model.* metadata)", path), false;
  cl_opts n = *o, file = *o;
  for (int i = 0; i < N_DEFS; i++) {
    if (!decides(i, use))
      continue;
    const opt_def *d = &defs[i];
    const char *v = cr_st_meta(f, d->key);
    char why[160];
    if (!v) {
      if (d->keep == CARRY || (use != CL_RESUME && d->keep != MODEL))
        continue; /* not recorded: the default stays */
      if (d->keep == MODEL)
        return cl_fail("%s: not a char-lm checkpoint (metadata '%s' is missing)", path, d->key),
               false;
      return cl_fail("%s: metadata '%s' is missing: no run options to resume (it can be "
                     "sampled or fine-tuned from)",
                     path, d->key),
             false;
    }
    if (!parse_value(i, v, &file, why, sizeof why))
      return cl_fail("%s: metadata '%s' is '%.80s', expected %s", path, d->key, v,
                     why + (strncmp(why, "must be ", 8) ? 0 : 8)),
             false;
    bool given = o->given >> i & 1;
    char mine[256], theirs[256];
    format_value(i, &n, mine, sizeof mine);
    format_value(i, &file, theirs, sizeof theirs);
    if (given && strcmp(mine, theirs) && (d->keep == MODEL || d->keep == KEEP)) {
      show_flag(i, &n, mine, sizeof mine);
      show_flag(i, &file, theirs, sizeof theirs);
      return cl_fail("%s conflicts with %s, which was trained with %s (%s; see --help, "
                     "\"resuming\")",
                     mine, path, theirs,
                     d->keep == MODEL ? "a checkpoint fixes the model's architecture"
                                      : "a resumed run keeps its options"),
             false;
    }
    if (!given) {
      memcpy(field(&n, i), field(&file, i),
             d->type == T_STR      ? sizeof(char *)
             : d->type == T_LONG   ? sizeof(long)
             : d->type == T_DOUBLE ? sizeof(double)
                                   : sizeof(bool));
      n.inherited |= (uint64_t)1 << i;
    }
  }
  /* strings parsed from the file are borrowed from it: the caller keeps f
   * open while o is in use (main.c closes it at exit) */
  *o = n;
  return true;
}

void cl_opts_resolve(cl_opts *o) {
  if (o->lr < 0) {
    cr_optim_kind k = (cr_optim_kind)cr_optim_kind_from_name(o->optimizer);
    o->lr = k == CR_SGD ? 1.0 : k == CR_ADAGRAD ? 0.1 : k == CR_RMSPROP ? 2e-3 : 3e-3;
  }
  if (o->resume && !o->save)
    o->save = o->resume;
}

cr_status cl_opts_record(cr_ctx *ctx, const cl_opts *o, cr_st_writer *w) {
  cr_status st = CR_OK;
  for (int i = 0; i < N_DEFS && st == CR_OK; i++) {
    const opt_def *d = &defs[i];
    bool known = (o->given | o->inherited) >> i & 1;
    if (d->keep == LOCAL || d->keep == MODEL || (d->keep == CARRY && !known))
      continue;
    char v[1024];
    format_value(i, o, v, sizeof v);
    st = cr_st_writer_set_meta(ctx, w, d->key, v);
  }
  return st;
}
