/* char_lm.c — train, sample and evaluate a character-level language model.
 *
 *   char-lm train  [options]     train (default: an LSTM on tinyshakespeare)
 *   char-lm sample --load CKPT   generate text from a checkpoint
 *   char-lm eval   --load CKPT   validation loss in bits per character
 *   char-lm --help
 *
 * The model is embedding -> recurrent stack -> linear head (char_model.c);
 * training is cross-entropy, backward (BPTT through the unrolled steps),
 * gradient clipping and an optimizer step, with the graph of each step
 * freed at once by a context reset. */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "char_model.h"
#include "chainrule/optim.h"

#ifndef CHAR_LM_DEFAULT_DATA
#define CHAR_LM_DEFAULT_DATA "examples/data/tinyshakespeare.txt"
#endif

typedef struct opts {
  const char *cmd, *data, *cell, *optimizer, *schedule, *save, *resume, *load, *finetune, *prime;
  long hidden, layers, embed, seq, batch, steps, epochs, threads, length, eval_every, eval_chars,
      log_every, save_every, stop_after;
  double lr, clip, temperature, dropout;
  unsigned long long seed;
  bool tbptt, freeze_recurrent, lr_set;
  cr_dtype dtype;
} opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: char-lm train|sample|eval [options]\n"
          "\n"
          "data and model\n"
          "  --data FILE          text to learn (default %s)\n"
          "  --cell NAME          rnn | rnn_relu | lstm | gru | mgu (custom cell)  [lstm]\n"
          "  --hidden N           hidden size [256]\n"
          "  --layers N           recurrent layers [1]\n"
          "  --embed N            embedding size [64]\n"
          "  --dropout P          dropout between layers [0]\n"
          "  --dtype f32|f64      [f32]\n"
          "training\n"
          "  --seq N              characters per sequence (BPTT length) [64]\n"
          "  --batch N            sequences per batch [32]\n"
          "  --steps N            optimizer steps (the schedule spans them) [2000]\n"
          "  --stop-after N       stop (and --save) after step N of --steps; --resume later\n"
          "  --epochs N           instead of --steps: passes over the training text\n"
          "  --optimizer NAME     sgd | adam | adamw | rmsprop | adagrad [adam]\n"
          "  --lr X               learning rate [adam/adamw 3e-3, rmsprop 2e-3, sgd 1, adagrad 0.1]\n"
          "  --clip X             clip the gradient's global L2 norm (0: off) [5]\n"
          "  --schedule S         constant | cosine | step:SIZE:GAMMA | exp:GAMMA |\n"
          "                       warmup:N+cosine (cosine over the remaining steps) [cosine]\n"
          "  --tbptt              consecutive chunks from B streams, state carried (detached)\n"
          "                       across batches: truncated BPTT [off: random windows]\n"
          "  --threads N          BLIS threads for large products [1]\n"
          "  --seed N             [1]\n"
          "  --eval-every N       validation every N steps [steps/5]\n"
          "  --eval-chars N       validation characters used in between (0: all) [16384]\n"
          "  --log-every N        progress line every N steps when not a terminal [steps/20]\n"
          "checkpoints\n"
          "  --save FILE          save model + training state here (atomically) at the end\n"
          "  --save-every N       and every N steps\n"
          "  --resume FILE        continue training exactly where FILE left off\n"
          "  --finetune-from FILE start from a trained model (vocabulary may differ)\n"
          "  --freeze-recurrent   with --finetune-from: train only embedding and head\n"
          "sampling\n"
          "  --load FILE          model to sample from / evaluate\n"
          "  --temperature T      [0.8]\n"
          "  --length N           characters to generate [400]\n"
          "  --prime TEXT         text to start from [\"\\n\"]\n",
          CHAR_LM_DEFAULT_DATA);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("char-lm: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

static bool parse_long(const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || *end || end == v || x < lo || x > hi) {
    fprintf(stderr, "char-lm: %s %s: must be an integer between %ld and %ld\n", flag,
            v ? v : "(missing)", lo, hi);
    return false;
  }
  *out = x;
  return true;
}

static bool parse_double(const char *flag, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = v ? strtod(v, &end) : 0;
  if (!v || errno || *end || end == v || !(x >= lo && x <= hi)) {
    fprintf(stderr, "char-lm: %s %s: must be a number between %g and %g\n", flag,
            v ? v : "(missing)", lo, hi);
    return false;
  }
  *out = x;
  return true;
}

/* 0 ok, 1 error (printed), 2 help shown */
static int parse_args(int argc, char **argv, opts *o) {
  *o = (opts){.data = CHAR_LM_DEFAULT_DATA, .cell = "lstm", .optimizer = "adam",
              .schedule = "cosine", .prime = "\n", .hidden = 256, .layers = 1, .embed = 64,
              .seq = 64, .batch = 32, .steps = 2000, .threads = 1, .length = 400,
              .eval_every = -1, .eval_chars = 16384, .log_every = -1, .lr = 3e-3, .clip = 5,
              .temperature = 0.8, .seed = 1, .dtype = CR_F32};
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
    fprintf(stderr, "char-lm: unknown command '%s' (expected train, sample or eval; see "
            "char-lm --help)\n", o->cmd);
    return 1;
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long l;
    bool ok = true, takes = true;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 2;
    } else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--cell")) o->cell = v;
    else if (!strcmp(a, "--optimizer")) o->optimizer = v;
    else if (!strcmp(a, "--schedule")) o->schedule = v;
    else if (!strcmp(a, "--save")) o->save = v;
    else if (!strcmp(a, "--resume")) o->resume = v;
    else if (!strcmp(a, "--load")) o->load = v;
    else if (!strcmp(a, "--finetune-from")) o->finetune = v;
    else if (!strcmp(a, "--prime")) o->prime = v;
    else if (!strcmp(a, "--hidden")) ok = parse_long(a, v, 1, 8192, &o->hidden);
    else if (!strcmp(a, "--layers")) ok = parse_long(a, v, 1, 16, &o->layers);
    else if (!strcmp(a, "--embed")) ok = parse_long(a, v, 1, 8192, &o->embed);
    else if (!strcmp(a, "--seq")) ok = parse_long(a, v, 1, 100000, &o->seq);
    else if (!strcmp(a, "--batch")) ok = parse_long(a, v, 1, 100000, &o->batch);
    else if (!strcmp(a, "--steps")) ok = parse_long(a, v, 1, 1000000000, &o->steps);
    else if (!strcmp(a, "--epochs")) ok = parse_long(a, v, 1, 100000, &o->epochs);
    else if (!strcmp(a, "--threads")) ok = parse_long(a, v, 1, 256, &o->threads);
    else if (!strcmp(a, "--length")) ok = parse_long(a, v, 0, 100000000, &o->length);
    else if (!strcmp(a, "--eval-every")) ok = parse_long(a, v, 1, 1000000000, &o->eval_every);
    else if (!strcmp(a, "--eval-chars")) ok = parse_long(a, v, 0, 1000000000, &o->eval_chars);
    else if (!strcmp(a, "--log-every")) ok = parse_long(a, v, 1, 1000000000, &o->log_every);
    else if (!strcmp(a, "--save-every")) ok = parse_long(a, v, 1, 1000000000, &o->save_every);
    else if (!strcmp(a, "--stop-after")) ok = parse_long(a, v, 1, 1000000000, &o->stop_after);
    else if (!strcmp(a, "--seed")) {
      ok = parse_long(a, v, 0, 0x7fffffffffffffffL, &l);
      o->seed = (unsigned long long)l;
    } else if (!strcmp(a, "--lr")) {
      ok = parse_double(a, v, 0, 1e3, &o->lr);
      o->lr_set = true;
    } else if (!strcmp(a, "--clip")) ok = parse_double(a, v, 0, 1e9, &o->clip);
    else if (!strcmp(a, "--dropout")) ok = parse_double(a, v, 0, 0.99, &o->dropout);
    else if (!strcmp(a, "--temperature")) ok = parse_double(a, v, 1e-3, 100, &o->temperature);
    else if (!strcmp(a, "--dtype")) {
      if (v && !strcmp(v, "f32")) o->dtype = CR_F32;
      else if (v && !strcmp(v, "f64")) o->dtype = CR_F64;
      else {
        fprintf(stderr, "char-lm: --dtype %s: must be f32 or f64\n", v ? v : "(missing)");
        ok = false;
      }
    } else if (!strcmp(a, "--tbptt")) {
      o->tbptt = true;
      takes = false;
    } else if (!strcmp(a, "--freeze-recurrent")) {
      o->freeze_recurrent = true;
      takes = false;
    } else {
      fprintf(stderr, "char-lm: unknown option '%s' (see char-lm --help)\n", a);
      return 1;
    }
    if (!ok)
      return 1;
    if (takes) {
      if (!v) {
        fprintf(stderr, "char-lm: %s needs a value (see char-lm --help)\n", a);
        return 1;
      }
      i++;
    }
  }
  if (!cm_cell_by_name(o->cell)) {
    fprintf(stderr, "char-lm: --cell %s: unknown cell (rnn, rnn_relu, lstm, gru or mgu)\n", o->cell);
    return 1;
  }
  if (cr_optim_kind_from_name(o->optimizer) < 0) {
    fprintf(stderr, "char-lm: --optimizer %s: unknown (sgd, adam, adamw, rmsprop or adagrad)\n",
            o->optimizer);
    return 1;
  }
  if (o->freeze_recurrent && !o->finetune) {
    fprintf(stderr, "char-lm: --freeze-recurrent needs --finetune-from\n");
    return 1;
  }
  if (o->resume && o->finetune) {
    fprintf(stderr, "char-lm: --resume and --finetune-from exclude each other\n");
    return 1;
  }
  if (strcmp(o->cmd, "train") && !o->load && !o->resume) {
    fprintf(stderr, "char-lm: %s needs --load CHECKPOINT\n", o->cmd);
    return 1;
  }
  return 0;
}

/* ---- data ------------------------------------------------------------- */

typedef struct corpus {
  unsigned char *text;
  int64_t n;
  int vocab;
  unsigned char chars[256]; /* id -> byte */
  int id_of[256];           /* byte -> id, -1 if absent */
  int64_t *ids;             /* the text as ids */
  int64_t n_train;          /* ids[0..n_train) train, the rest validation */
} corpus;

static void corpus_free(corpus *c) {
  free(c->text);
  free(c->ids);
}

static bool corpus_load(const char *path, corpus *c) {
  memset(c, 0, sizeof *c);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fail("cannot read '%s': %s", path, strerror(errno));
    return false;
  }
  size_t cap = 1 << 20, n = 0;
  c->text = malloc(cap);
  for (size_t r; c->text && (r = fread(c->text + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap) {
      unsigned char *t = realloc(c->text, cap *= 2);
      if (!t) {
        free(c->text);
        c->text = NULL;
      }
      c->text = t;
    }
  }
  bool err = ferror(f);
  fclose(f);
  if (!c->text || err) {
    fail("cannot read '%s': %s", path, c->text ? "read error" : "out of memory");
    return false;
  }
  if (n == 0) {
    fail("'%s' is empty: nothing to learn", path);
    return false;
  }
  c->n = (int64_t)n;
  bool seen[256] = {false};
  for (size_t i = 0; i < n; i++)
    seen[c->text[i]] = true;
  for (int b = 0; b < 256; b++) {
    c->id_of[b] = -1;
    if (seen[b]) {
      c->id_of[b] = c->vocab;
      c->chars[c->vocab++] = (unsigned char)b;
    }
  }
  c->ids = malloc(n * sizeof *c->ids);
  if (!c->ids) {
    fail("out of memory");
    return false;
  }
  for (size_t i = 0; i < n; i++)
    c->ids[i] = c->id_of[c->text[i]];
  c->n_train = c->n * 9 / 10;
  return true;
}

/* The vocabulary as hex, for checkpoints. */
static void vocab_hex(const corpus *c, char *out) {
  for (int i = 0; i < c->vocab; i++)
    sprintf(out + 2 * i, "%02x", c->chars[i]);
  out[2 * c->vocab] = '\0';
}

/* Entropy of the training text's character frequencies: the loss of the
 * best model that ignores context (bits per character). */
static double unigram_bits(const corpus *c) {
  double count[256] = {0}, h = 0;
  for (int64_t i = 0; i < c->n_train; i++)
    count[c->ids[i]]++;
  for (int v = 0; v < c->vocab; v++)
    if (count[v] > 0) {
      double p = count[v] / (double)c->n_train;
      h -= p * log2(p);
    }
  return h;
}

/* ---- training state that a checkpoint carries ---------------------------- */

typedef struct trainer {
  opts o;
  corpus data;
  cr_ctx *ctx;
  cr_rng *rng;
  char_model *m;
  cr_optim *opt;
  cr_sched sched, warm;
  int64_t step;
  int S;              /* states per layer (lstm 2) */
  cr_tensor *carry[2]; /* --tbptt: [L,B,H] state carried across batches */
  int64_t stream_pos;  /* --tbptt: offset of the next chunk in every stream */
  int64_t *ids, *tgt;  /* [T,B] batch buffers */
} trainer;

static bool next_batch(trainer *t) {
  const int64_t T = t->o.seq, B = t->o.batch, n = t->data.n_train;
  if (!t->o.tbptt) {
    for (int64_t b = 0; b < B; b++) {
      int64_t start = (int64_t)cr_rng_below(t->rng, (uint64_t)(n - T));
      for (int64_t s = 0; s < T; s++) {
        t->ids[s * B + b] = t->data.ids[start + s];
        t->tgt[s * B + b] = t->data.ids[start + s + 1];
      }
    }
    return false;
  }
  /* B streams, each a contiguous share of the text; chunk after chunk */
  int64_t share = n / B;
  bool wrapped = false;
  if (t->stream_pos + T + 1 > share) {
    t->stream_pos = 0;
    wrapped = true;
  }
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < T; s++) {
      int64_t at = b * share + t->stream_pos + s;
      t->ids[s * B + b] = t->data.ids[at];
      t->tgt[s * B + b] = t->data.ids[at + 1];
    }
  t->stream_pos += T;
  return wrapped;
}

/* Mean cross-entropy (nats) over up to max_chars validation characters
 * (0: all), read as B streams in chunks with the state carried. */
static double evaluate(trainer *t, int64_t max_chars) {
  cr_ctx *ctx = t->ctx;
  const int64_t T = t->o.seq, B = t->o.batch > 16 ? t->o.batch : 16;
  int64_t n = t->data.n - t->data.n_train;
  if (max_chars > 0 && n > max_chars)
    n = max_chars;
  int64_t share = n / B;
  if (share < 2)
    return NAN;
  const int64_t *val = t->data.ids + t->data.n_train;
  int64_t L = t->m->cfg.layers, H = t->m->cfg.hidden;
  cr_tensor *state[2] = {NULL, NULL};
  for (int s = 0; s < t->S; s++)
    state[s] = cr_tensor_new(ctx, t->m->cfg.dtype, CR_SHAPE(L, B, H));
  int64_t *ids = malloc(sizeof(int64_t) * T * B), *tgt = malloc(sizeof(int64_t) * T * B);
  bool was_grad = cr_set_grad_enabled(ctx, false), was_train = cr_set_training(ctx, false);
  double total = 0;
  int64_t count = 0;
  for (int64_t pos = 0; pos + 1 < share; pos += T) {
    int64_t len = pos + T + 1 <= share ? T : share - 1 - pos;
    for (int64_t b = 0; b < B; b++)
      for (int64_t s = 0; s < len; s++) {
        ids[s * B + b] = val[b * share + pos + s];
        tgt[s * B + b] = val[b * share + pos + s + 1];
      }
    cr_tensor *fin[2];
    cr_tensor *logits = cm_logits(ctx, t->m, ids, len, B, state, fin, NULL);
    cr_tensor *loss = cr_cross_entropy(ctx, logits, tgt, CR_NO_IGNORE);
    if (!loss)
      break;
    total += cr_item(loss) * (double)(len * B);
    count += len * B;
    for (int s = 0; s < t->S; s++)
      if (cr_copy_into(ctx, state[s], fin[s]) != CR_OK)
        break;
    cr_ctx_reset(ctx);
  }
  cr_set_grad_enabled(ctx, was_grad);
  cr_set_training(ctx, was_train);
  free(ids);
  free(tgt);
  for (int s = 0; s < t->S; s++)
    cr_tensor_free(state[s]);
  return count ? total / (double)count : NAN;
}

static cr_status save_checkpoint(trainer *t, const char *path) {
  cr_ctx *ctx = t->ctx;
  cr_st_writer *w = cr_st_writer_new();
  if (!w)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "out of memory");
  char buf[600];
  cr_status st = cm_save(ctx, t->m, w);
  if (st == CR_OK)
    st = cr_optim_save(ctx, t->opt, w, "optim.");
  vocab_hex(&t->data, buf);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "data.vocab", buf);
  snprintf(buf, sizeof buf, "%lld", (long long)t->step);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "train.step", buf);
  snprintf(buf, sizeof buf, "%lld", (long long)t->stream_pos);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "train.stream_pos", buf);
  uint64_t rs[5];
  cr_rng_get_state(t->rng, rs);
  snprintf(buf, sizeof buf, "%016llx%016llx%016llx%016llx%016llx", (unsigned long long)rs[0],
           (unsigned long long)rs[1], (unsigned long long)rs[2], (unsigned long long)rs[3],
           (unsigned long long)rs[4]);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "train.rng", buf);
  const char *carry_names[2] = {"train.carry0", "train.carry1"};
  for (int s = 0; st == CR_OK && t->o.tbptt && s < t->S; s++)
    st = cr_st_writer_add(ctx, w, carry_names[s], t->carry[s]);
  if (st == CR_OK)
    st = cr_st_writer_save(ctx, w, path);
  cr_st_writer_free(w);
  return st;
}

/* Restore everything a checkpoint holds; nothing changes on failure of the
 * checks (model shapes, vocabulary, optimizer). */
static bool load_training_state(trainer *t, const cr_st_file *f, const char *path) {
  cr_ctx *ctx = t->ctx;
  char want[600];
  vocab_hex(&t->data, want);
  const char *vocab = cr_st_meta(f, "data.vocab"), *step = cr_st_meta(f, "train.step");
  const char *rng = cr_st_meta(f, "train.rng"), *pos = cr_st_meta(f, "train.stream_pos");
  if (!vocab || strcmp(vocab, want)) {
    fail("%s: its vocabulary differs from '%s' (resume needs the same text; use "
         "--finetune-from for another one)", path, t->o.data);
    return false;
  }
  if (!step || !rng || strlen(rng) != 80 || !pos) {
    fail("%s: no training state (train.* metadata); it can be sampled or fine-tuned from, "
         "not resumed", path);
    return false;
  }
  if (cm_load(ctx, t->m, f, path) != CR_OK || cr_optim_load(ctx, t->opt, f, "optim.") != CR_OK) {
    fail("%s", cr_ctx_error(ctx));
    return false;
  }
  const char *carry_names[2] = {"train.carry0", "train.carry1"};
  for (int s = 0; t->o.tbptt && s < t->S; s++)
    if (cr_st_read_into(ctx, f, carry_names[s], t->carry[s]) != CR_OK) {
      fail("%s (was it trained without --tbptt?)", cr_ctx_error(ctx));
      return false;
    }
  uint64_t rs[5];
  for (int i = 0; i < 5; i++) {
    char part[17];
    memcpy(part, rng + 16 * i, 16);
    part[16] = '\0';
    rs[i] = strtoull(part, NULL, 16);
  }
  cr_rng_set_state(t->rng, rs);
  t->step = strtoll(step, NULL, 10);
  t->stream_pos = strtoll(pos, NULL, 10);
  return true;
}

/* Start from a trained model on a (possibly) different vocabulary: the
 * recurrent weights are copied; embedding rows and head rows of characters
 * both vocabularies share are copied, new characters keep their fresh
 * initialisation. */
static bool finetune_from(trainer *t, const cr_st_file *f, const char *path,
                          const cm_config *old) {
  cr_ctx *ctx = t->ctx;
  const char *vhex = cr_st_meta(f, "data.vocab");
  if (!vhex || (int64_t)strlen(vhex) != 2 * old->vocab) {
    fail("%s: no vocabulary (data.vocab) to map characters with", path);
    return false;
  }
  int old_id[256];
  for (int b = 0; b < 256; b++)
    old_id[b] = -1;
  for (int i = 0; i < old->vocab; i++) {
    char part[3] = {vhex[2 * i], vhex[2 * i + 1], 0};
    old_id[strtol(part, NULL, 16)] = i;
  }
  cr_tensor *emb = cr_st_get(ctx, f, "embed.weight"), *hw = cr_st_get(ctx, f, "head.weight"),
            *hb = cr_st_get(ctx, f, "head.bias");
  bool ok = emb && hw && hb;
  for (int i = 0; ok && i < cr_rnn_num_params(t->m->rnn); i++) {
    char name[64];
    snprintf(name, sizeof name, "rnn.%s", cr_rnn_param_name(t->m->rnn, i));
    ok = cr_st_read_into(ctx, f, name, cr_rnn_param(t->m->rnn, i)) == CR_OK;
  }
  int shared = 0;
  for (int v = 0; ok && v < t->data.vocab; v++) {
    int o = old_id[t->data.chars[v]];
    if (o < 0)
      continue;
    shared++;
    for (int64_t e = 0; e < old->embed; e++)
      cr_set_flat(t->m->embed, v * old->embed + e, cr_get_flat(emb, o * old->embed + e));
    for (int64_t h = 0; h < old->hidden; h++)
      cr_set_flat(t->m->head_w, v * old->hidden + h, cr_get_flat(hw, o * old->hidden + h));
    cr_set_flat(t->m->head_b, v, cr_get_flat(hb, o));
  }
  cr_tensor_free(emb);
  cr_tensor_free(hw);
  cr_tensor_free(hb);
  if (!ok) {
    fail("%s", cr_ctx_error(ctx));
    return false;
  }
  printf("fine-tuning from %s: recurrent weights copied, %d of %d characters shared with its "
         "vocabulary of %lld%s\n", path, shared, t->data.vocab, (long long)old->vocab,
         t->o.freeze_recurrent ? "; recurrent layers frozen" : "");
  if (t->o.freeze_recurrent)
    for (int i = 0; i < cr_rnn_num_params(t->m->rnn); i++)
      cr_set_requires_grad(cr_rnn_param(t->m->rnn, i), false);
  return true;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_time(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e7)
    snprintf(buf, n, "--");
  else if (s >= 60)
    snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else
    snprintf(buf, n, "%.0fs", s);
}

/* Generate o->length characters after o->prime, printed to stdout. */
static int sample(trainer *t) {
  cr_ctx *ctx = t->ctx;
  const char_model *m = t->m;
  int64_t L = m->cfg.layers, H = m->cfg.hidden, V = m->cfg.vocab;
  for (const char *p = t->o.prime; *p; p++)
    if (t->data.id_of[(unsigned char)*p] < 0)
      return fail("--prime: character '%c' (byte %d) is not in the vocabulary", *p,
                  (unsigned char)*p);
  cr_tensor *state[2] = {NULL, NULL};
  for (int s = 0; s < t->S; s++)
    state[s] = cr_tensor_new(ctx, m->cfg.dtype, CR_SHAPE(L, 1, H));
  double *prob = malloc(sizeof(double) * (size_t)V);
  bool was_grad = cr_set_grad_enabled(ctx, false), was_train = cr_set_training(ctx, false);
  const char *prime = *t->o.prime ? t->o.prime : "\n";
  int64_t next = t->data.id_of[(unsigned char)prime[0]];
  if (next < 0)
    next = 0;
  fputs(t->o.prime, stdout);
  size_t np = strlen(prime);
  int rc = 0;
  for (int64_t i = 0; i < (int64_t)np - 1 + t->o.length; i++) {
    cr_tensor *fin[2];
    cr_tensor *logits = cm_logits(ctx, m, &next, 1, 1, state, fin, NULL);
    if (!logits) {
      rc = fail("%s", cr_ctx_error(ctx));
      break;
    }
    for (int s = 0; s < t->S; s++)
      if (cr_copy_into(ctx, state[s], fin[s]) != CR_OK)
        rc = 1;
    if (i + 1 < (int64_t)np) {
      next = t->data.id_of[(unsigned char)prime[i + 1]];
    } else {
      /* p_v ∝ exp(logit_v / temperature) */
      double mx = -INFINITY, z = 0;
      for (int64_t v = 0; v < V; v++)
        mx = fmax(mx, cr_get_flat(logits, v));
      for (int64_t v = 0; v < V; v++)
        z += prob[v] = exp((cr_get_flat(logits, v) - mx) / t->o.temperature);
      double u = cr_rng_uniform(t->rng) * z;
      next = V - 1;
      for (int64_t v = 0; v < V; v++)
        if ((u -= prob[v]) < 0) {
          next = v;
          break;
        }
      putchar(t->data.chars[next]);
    }
    cr_ctx_reset(ctx);
  }
  putchar('\n');
  fflush(stdout);
  cr_set_grad_enabled(ctx, was_grad);
  cr_set_training(ctx, was_train);
  free(prob);
  for (int s = 0; s < t->S; s++)
    cr_tensor_free(state[s]);
  return rc;
}

static bool make_schedule(trainer *t) {
  const char *s = t->o.schedule;
  char err[200];
  if (!strcmp(s, "cosine")) {
    t->sched = (cr_sched){.kind = CR_SCHED_COSINE, .t_max = t->o.steps, .eta_min = 0};
    return true;
  }
  long n;
  if (!strncmp(s, "warmup:", 7) && strstr(s, "+cosine") && !strcmp(strstr(s, "+cosine"), "+cosine") &&
      sscanf(s + 7, "%ld", &n) == 1 && n >= 1 && n < t->o.steps) {
    t->warm = (cr_sched){.kind = CR_SCHED_LINEAR, .start_factor = 0.1, .end_factor = 1,
                         .total_iters = n};
    t->sched = (cr_sched){.kind = CR_SCHED_COSINE, .t_max = t->o.steps - n, .warmup = &t->warm,
                          .warmup_steps = n};
    return true;
  }
  if (!cr_sched_parse(s, &t->sched, &t->warm, err, sizeof err)) {
    fail("--schedule %s: %s", s, err);
    return false;
  }
  return true;
}

static int train(trainer *t) {
  opts *o = &t->o;
  cr_ctx *ctx = t->ctx;
  corpus *d = &t->data;
  if (d->n_train < o->seq + 2 || (o->tbptt && d->n_train / o->batch < o->seq + 2))
    return fail("--seq %ld%s needs more text: '%s' has %lld training characters after the 90/10 "
                "split", o->seq, o->tbptt ? " with --tbptt and this --batch" : "", o->data,
                (long long)d->n_train);
  if (o->epochs > 0)
    o->steps = o->epochs * (d->n_train / (o->seq * o->batch) > 0 ? d->n_train / (o->seq * o->batch) : 1);
  if (o->eval_every < 0)
    o->eval_every = o->steps / 5 > 0 ? o->steps / 5 : 1;
  if (o->log_every < 0)
    o->log_every = o->steps / 20 > 0 ? o->steps / 20 : 1;

  cm_config cfg = {cm_cell_by_name(o->cell), d->vocab, o->embed, o->hidden, (int)o->layers,
                   o->dropout, o->dtype};
  cr_st_file *f = NULL;
  cm_config old;
  char err[300];
  if (o->resume || o->finetune) {
    const char *path = o->resume ? o->resume : o->finetune;
    f = cr_st_open(ctx, path);
    if (!f)
      return fail("%s", cr_ctx_error(ctx));
    if (!cm_read_config(f, path, &old, err, sizeof err)) {
      cr_st_close(f);
      return fail("%s", err);
    }
    /* the checkpoint decides the architecture */
    cfg.cell = old.cell;
    cfg.embed = old.embed;
    cfg.hidden = old.hidden;
    cfg.layers = old.layers;
    cfg.dropout = old.dropout;
    cfg.dtype = old.dtype;
    if (o->resume)
      cfg.vocab = old.vocab;
  }
  t->m = cm_new(ctx, &cfg, t->rng);
  if (!t->m) {
    cr_st_close(f);
    return fail("%s", cr_ctx_error(ctx));
  }
  t->S = cfg.cell->n_states;
  cr_optim_opts oo;
  cr_optim_default_opts((cr_optim_kind)cr_optim_kind_from_name(o->optimizer), &oo);
  if (o->lr_set)
    oo.lr = o->lr;
  else
    oo.lr = oo.kind == CR_SGD ? 1.0 : oo.kind == CR_ADAGRAD ? 0.1 : oo.kind == CR_RMSPROP ? 2e-3 : 3e-3;
  t->opt = cr_optim_new(ctx, &oo, t->m->params, t->m->n_params);
  if (!t->opt) {
    cr_st_close(f);
    return fail("%s", cr_ctx_error(ctx));
  }
  for (int s = 0; s < t->S; s++)
    t->carry[s] = cr_tensor_new(ctx, cfg.dtype, CR_SHAPE(cfg.layers, o->batch, cfg.hidden));
  bool ok = true;
  if (o->resume)
    ok = load_training_state(t, f, o->resume);
  else if (o->finetune)
    ok = finetune_from(t, f, o->finetune, &old);
  cr_st_close(f);
  if (!ok || !make_schedule(t))
    return 1;

  char info[256];
  double unigram = unigram_bits(d);
  printf("chainrule char-lm: %s\n", cr_runtime_describe(info, sizeof info));
  printf("data %s: %lld characters, vocabulary %d, %lld train / %lld validation; unigram "
         "baseline %.3f bits/char\n", o->data, (long long)d->n, d->vocab, (long long)d->n_train,
         (long long)(d->n - d->n_train), unigram);
  int64_t n_weights = 0;
  for (int i = 0; i < t->m->n_params; i++)
    n_weights += cr_numel(t->m->params[i]);
  printf("model %s, hidden %lld, layers %d, embed %lld, %lld parameters (%s); %s lr %g, clip %g, "
         "schedule %s; seq %ld, batch %ld, %s; steps %lld..%ld\n", cfg.cell->name,
         (long long)cfg.hidden, cfg.layers, (long long)cfg.embed, (long long)n_weights,
         cr_dtype_name(cfg.dtype), o->optimizer, oo.lr, o->clip, o->schedule, o->seq, o->batch,
         o->tbptt ? "truncated BPTT across batches" : "random windows",
         (long long)t->step + 1, o->steps);
  fflush(stdout);
  t->ids = malloc(sizeof(int64_t) * (size_t)(o->seq * o->batch));
  t->tgt = malloc(sizeof(int64_t) * (size_t)(o->seq * o->batch));
  bool tty = isatty(STDOUT_FILENO);
  double t0 = now(), last_print = 0, loss_avg = NAN;
  int64_t first_step = t->step;
  int rc = 0;
  cr_tensor *zero_init[2] = {NULL, NULL};
  int64_t stop = o->stop_after > 0 && o->stop_after < o->steps ? o->stop_after : o->steps;
  while (t->step < stop) {
    cr_sched_apply(&t->sched, t->opt, t->step);
    bool wrapped = next_batch(t);
    /* a stream that wrapped around starts again from a zero state */
    for (int s = 0; o->tbptt && wrapped && s < t->S; s++)
      if (cr_fill(ctx, t->carry[s], 0.0) != CR_OK)
        rc = 1;
    cr_tensor *fin[2];
    cr_tensor *logits = cm_logits(ctx, t->m, t->ids, o->seq, o->batch,
                                  o->tbptt ? t->carry : zero_init, fin, t->rng);
    cr_tensor *loss = cr_cross_entropy(ctx, logits, t->tgt, CR_NO_IGNORE);
    cr_optim_zero_grad(t->opt);
    if (!loss || cr_backward(ctx, loss) != CR_OK) {
      rc = fail("step %lld: %s", (long long)t->step + 1, cr_ctx_error(ctx));
      break;
    }
    double lv = cr_item(loss);
    if (!isfinite(lv)) {
      rc = fail("step %lld: the loss became %g; try a smaller --lr or a --clip", (long long)t->step + 1, lv);
      break;
    }
    if (o->clip > 0)
      (void)cr_clip_grad_norm(ctx, t->m->params, t->m->n_params, o->clip);
    if (cr_optim_step(ctx, t->opt) != CR_OK) {
      rc = fail("step %lld: %s", (long long)t->step + 1, cr_ctx_error(ctx));
      break;
    }
    /* truncated BPTT: the next batch continues from this state, cut from the graph */
    for (int s = 0; o->tbptt && s < t->S; s++)
      if (cr_copy_into(ctx, t->carry[s], fin[s]) != CR_OK)
        rc = 1;
    cr_ctx_reset(ctx);
    t->step++;
    loss_avg = isnan(loss_avg) ? lv : 0.95 * loss_avg + 0.05 * lv;
    double el = now() - t0, done = (double)(t->step - first_step);
    double tps = done * (double)(o->seq * o->batch) / el;
    char eta[32];
    fmt_time(el / done * (double)(o->steps - t->step), eta, sizeof eta);
    if (tty && (el - last_print > 0.1 || t->step == o->steps)) {
      printf("\rstep %lld/%ld  loss %.4f  %.0f tok/s  ETA %s   ", (long long)t->step, o->steps,
             loss_avg, tps, eta);
      fflush(stdout);
      last_print = el;
    } else if (!tty && (t->step % o->log_every == 0 || t->step == first_step + 1)) {
      printf("step %lld/%ld  loss %.4f  %.0f tok/s  ETA %s\n", (long long)t->step, o->steps,
             loss_avg, tps, eta);
      fflush(stdout);
    }
    if (t->step % o->eval_every == 0 || t->step == o->steps || t->step == stop) {
      bool final = t->step == o->steps;
      double nats = evaluate(t, final ? 0 : o->eval_chars);
      printf("%sstep %lld: validation %.4f bits/char%s (unigram %.3f)\n", tty ? "\n" : "",
             (long long)t->step, nats / log(2.0), final ? " on the whole validation text" : "",
             unigram);
      fflush(stdout);
    }
    if (o->save && o->save_every > 0 && t->step % o->save_every == 0 && t->step < o->steps &&
        save_checkpoint(t, o->save) != CR_OK) {
      rc = fail("%s", cr_ctx_error(ctx));
      break;
    }
  }
  if (rc == 0) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("trained %lld steps in %.1f s (%.0f tokens/s), peak RSS %ld MiB\n",
           (long long)(t->step - first_step), now() - t0,
           (double)(t->step - first_step) * (double)(o->seq * o->batch) / (now() - t0),
           ru.ru_maxrss / 1024);
    if (o->save) {
      if (save_checkpoint(t, o->save) != CR_OK)
        rc = fail("%s", cr_ctx_error(ctx));
      else
        printf("saved %s\n", o->save);
    }
    if (rc == 0 && o->length > 0 && t->step == o->steps) {
      printf("--- sample (temperature %g) ---\n", o->temperature);
      rc = sample(t);
    }
  }
  return rc;
}

/* sample / eval: model from --load */
static int use_checkpoint(trainer *t) {
  const char *path = t->o.load ? t->o.load : t->o.resume;
  cr_ctx *ctx = t->ctx;
  cr_st_file *f = cr_st_open(ctx, path);
  if (!f)
    return fail("%s", cr_ctx_error(ctx));
  cm_config cfg;
  char err[300], want[600];
  int rc = 0;
  const char *vocab = cr_st_meta(f, "data.vocab");
  vocab_hex(&t->data, want);
  if (!cm_read_config(f, path, &cfg, err, sizeof err))
    rc = fail("%s", err);
  else if (!vocab || strcmp(vocab, want))
    rc = fail("%s: its vocabulary differs from '%s' (pass the text it was trained on with "
              "--data)", path, t->o.data);
  else if (!(t->m = cm_new(ctx, &cfg, t->rng)) || cm_load(ctx, t->m, f, path) != CR_OK)
    rc = fail("%s", cr_ctx_error(ctx));
  cr_st_close(f);
  if (rc)
    return rc;
  t->S = cfg.cell->n_states;
  if (!strcmp(t->o.cmd, "sample"))
    return sample(t);
  double nats = evaluate(t, 0); /* the whole validation text */
  printf("%s on %s: validation %.4f bits/char (unigram %.3f)\n", path, t->o.data,
         nats / log(2.0), unigram_bits(&t->data));
  return isfinite(nats) ? 0 : 1;
}

int main(int argc, char **argv) {
  trainer t = {0};
  int r = parse_args(argc, argv, &t.o);
  if (r)
    return r == 2 ? 0 : 2;
  if (!corpus_load(t.o.data, &t.data)) {
    corpus_free(&t.data);
    return 1;
  }
  t.ctx = cr_ctx_new();
  t.rng = cr_rng_new(t.o.seed);
  cr_set_num_threads((int)t.o.threads);
  int rc = !strcmp(t.o.cmd, "train") ? train(&t) : use_checkpoint(&t);
  free(t.ids);
  free(t.tgt);
  for (int s = 0; s < 2; s++)
    cr_tensor_free(t.carry[s]);
  cr_optim_free(t.opt);
  cm_free(t.m);
  cr_rng_free(t.rng);
  cr_ctx_free(t.ctx);
  corpus_free(&t.data);
  return rc;
}
