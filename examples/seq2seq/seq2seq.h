/* seq2seq.h — the parts of the seq2seq program, one job per file:
 *   main.c   the run: options, data, model, training, evaluation, messages
 *   cli.c    the options: strict parsing, --help
 *   dates.c  the task: a date written out in one of many formats (words,
 *            ordinals, abbreviations, weekdays) and its ISO form
 *   model.c  the encoder-decoder with additive (Bahdanau) attention inside
 *            the decoder's recurrence; teacher-forced and greedy forwards
 *   train.c  the training loop and its progress lines
 *   eval.c   exact match on held-out sentences, decoded examples
 * Every function that can fail prints one line "seq2seq: ..." and returns
 * false / NULL; none aborts. */
#ifndef CHAINRULE_EXAMPLE_SEQ2SEQ_H
#define CHAINRULE_EXAMPLE_SEQ2SEQ_H

#include <stdbool.h>
#include <stdint.h>

#include "chainrule.h"

/* ---- cli.c */

typedef struct s2s_opts {
  long seed, steps, hidden, batch, threads, test, log_every;
  double lr;
  const char *save, *load;
  bool hidden_given; /* --hidden was on the command line */
} s2s_opts;

/* Parse argv into o (defaults first).  0 ok, 1 error (printed), 2 --help. */
int s2s_parse_args(int argc, char **argv, s2s_opts *o);

/* ---- dates.c */

enum {
  S2S_SRC_MAX = 64,    /* longest sentence the generator writes (characters) */
  S2S_TGT_LEN = 10,    /* YYYY-MM-DD */
  S2S_PAD = 0,         /* source id of padding */
  S2S_TGT_BOS = 11,    /* target id that starts decoding (never predicted) */
  S2S_TGT_CLASSES = 11 /* the head's classes: digits 0-9 and '-' (10) */
};

/* The source alphabet (ids 1..S2S_SRC_VOCAB-1; 0 is padding). */
extern const char s2s_src_chars[];
int s2s_src_vocab(void);

/* Which dates a set draws from: disjoint by a hash of the day, so no
 * held-out date (in any of its spellings) is seen in training. */
typedef enum s2s_split { S2S_TRAIN, S2S_HELD_OUT } s2s_split;

/* One example: the sentence and its ids (padded with 0 to S2S_SRC_MAX),
 * the ISO date and its target ids. */
typedef struct s2s_example {
  char text[S2S_SRC_MAX + 1];
  int64_t len;
  int64_t src[S2S_SRC_MAX];
  char iso[S2S_TGT_LEN + 1];
  int64_t tgt[S2S_TGT_LEN];
  int format;
} s2s_example;

/* A random date of the split in a random format, drawn from rng. */
void s2s_example_draw(cr_rng *rng, s2s_split split, s2s_example *ex);
/* Target id -> character ("0".."9", "-"). */
char s2s_tgt_char(int64_t id);

/* ---- model.c */

typedef struct s2s_model {
  cr_module *m; /* the root: everything below is borrowed from it */
  cr_module *src_embed, *encoder, *bridge, *tgt_embed, *decoder, *head;
  int64_t hidden;
} s2s_model;

/* A new model of hidden size H (decoder H, encoder H/2 each way), drawn
 * from rng; false and a message if anything failed (free m->m either way). */
bool s2s_model_new(cr_ctx *ctx, cr_rng *rng, int64_t H, s2s_model *m);
/* Teacher forcing: the logits [B, 10, 11] of every target position given
 * the true previous characters.  Examples ex[0..B). */
cr_tensor *s2s_forward_teacher(cr_ctx *ctx, s2s_model *m, const s2s_example *ex, int64_t B,
                               cr_rng *rng);
/* Greedy decoding: out[b * 10 + t] the predicted target ids. */
bool s2s_decode_greedy(cr_ctx *ctx, s2s_model *m, const s2s_example *ex, int64_t B, int64_t *out);

/* ---- train.c */

/* o->steps optimizer steps of o->batch sentences; progress on stdout. */
bool s2s_train(cr_ctx *ctx, s2s_model *m, const s2s_opts *o, cr_rng *rng);

/* ---- eval.c */

/* Exact match (all 10 characters) and per-character accuracy over n held-out
 * examples, in [0, 1]; the first n_show decoded examples are printed. */
bool s2s_evaluate(cr_ctx *ctx, s2s_model *m, const s2s_example *ex, int64_t n, int n_show,
                  double *exact, double *per_char);

#endif
