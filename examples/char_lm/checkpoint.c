/* checkpoint.c — a char-lm run saved into one safetensors file, and
 * loaded back for resuming, fine-tuning, sampling or evaluation.
 *
 * What the file holds:
 *   tensors   embed.weight, rnn.*, head.weight, head.bias   the model
 *             optim.*                                        the optimizer
 *             train.carry0, train.carry1 (--tbptt)           the carried state
 *   metadata  model.*   the architecture (char_model.c)
 *             run.*     the options that shape the run (cli.c)
 *             data.vocab, data.chars, data.fnv1a64   which text
 *             train.step, train.stream_pos, train.rng   where the run is
 *
 * On several ranks the file is the same: rank 0 writes it, with the
 * carried state of every rank's sequences (t->carry_all), and a resumed
 * run on any number of ranks takes its own sequences' rows.
 *
 * A file is untrusted input: every metadata value is parsed strictly and
 * checked against the tensors it describes before anything is allocated
 * or changed, and a message names the file, the entry and what was
 * expected. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lm.h"

static const char *const carry_names[2] = {"train.carry0", "train.carry1"};

cr_status cl_ckpt_save(cl_run *t, const char *path) {
  cr_ctx *ctx = t->ctx;
  /* never replace a good file by a model that diverged */
  for (int i = 0; i < t->m->n_params; i++)
    if (!cr_all_finite(t->m->params[i]))
      return cr_ctx_set_error(ctx, CR_ERR_ARG,
                              "%s: not saved: parameter '%s' holds NaN or infinite values "
                              "(the run diverged; try a lower --lr)", path, t->m->names[i]);
  cr_st_writer *w = cr_st_writer_new();
  if (!w)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", path);
  char buf[600];
  cr_status st = cm_save(ctx, t->m, w);
  if (st == CR_OK)
    st = cr_optim_save(ctx, t->opt, w, "optim.");
  if (st == CR_OK)
    st = cl_opts_record(ctx, &t->o, w);
  cl_vocab_hex(&t->data, buf);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "data.vocab", buf);
  snprintf(buf, sizeof buf, "%" PRId64, t->data.n);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "data.chars", buf);
  snprintf(buf, sizeof buf, "%016" PRIx64, t->data.hash);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "data.fnv1a64", buf);
  snprintf(buf, sizeof buf, "%" PRId64, t->step);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "train.step", buf);
  snprintf(buf, sizeof buf, "%" PRId64, t->stream_pos);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "train.stream_pos", buf);
  uint64_t rs[5];
  cr_rng_get_state(t->rng, rs);
  snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64,
           rs[0], rs[1], rs[2], rs[3], rs[4]);
  if (st == CR_OK)
    st = cr_st_writer_set_meta(ctx, w, "train.rng", buf);
  for (int s = 0; st == CR_OK && t->o.tbptt && s < t->S; s++)
    st = cr_st_writer_add(ctx, w, carry_names[s], t->carry_all[s] ? t->carry_all[s] : t->carry[s]);
  if (st == CR_OK)
    st = cr_st_writer_save(ctx, w, path);
  cr_st_writer_free(w);
  return st;
}

/* ---- checks before allocating */

/* f holds name with exactly shape (a scalar [] matching [1]); else false
 * and a message saying what cfg needs. */
static bool expect_shape(const cr_st_file *f, const char *path, const char *name, int nd,
                         const int64_t *shape, const cm_config *cfg) {
  const cr_st_info *in = cr_st_find(f, name);
  char want[96], have[96];
  cr_shape_str(want, sizeof want, nd, shape);
  if (!in)
    return cl_fail("%s: no tensor named '%s', which its model.* metadata (%s, vocabulary %" PRId64
                   ", embed %" PRId64 ", hidden %" PRId64 ", %d layers) needs as %s",
                   path, name, cfg->cell->name, cfg->vocab, cfg->embed, cfg->hidden, cfg->layers,
                   want), false;
  bool same = in->ndim == nd || (in->ndim == 0 && nd == 1 && shape[0] == 1);
  for (int d = 0; same && d < in->ndim; d++)
    same = in->shape[d] == shape[d];
  if (same)
    return true;
  cr_shape_str(have, sizeof have, in->ndim, in->shape);
  return cl_fail("%s: tensor '%s' is %s, but its model.* metadata (%s, vocabulary %" PRId64
                 ", embed %" PRId64 ", hidden %" PRId64 ", %d layers) needs %s",
                 path, name, have, cfg->cell->name, cfg->vocab, cfg->embed, cfg->hidden,
                 cfg->layers, want), false;
}

bool cl_ckpt_check_shapes(const cr_st_file *f, const char *path, const cm_config *c) {
  const cr_cell_def *d = c->cell;
  if (!expect_shape(f, path, "embed.weight", 2, (int64_t[]){c->vocab, c->embed}, c) ||
      !expect_shape(f, path, "head.weight", 2, (int64_t[]){c->vocab, c->hidden}, c) ||
      !expect_shape(f, path, "head.bias", 1, (int64_t[]){c->vocab}, c))
    return false;
  for (int l = 0; l < c->layers; l++)
    for (int i = 0; i < d->n_params; i++) {
      char name[96];
      int nd = 0;
      int64_t shape[CR_MAX_DIMS];
      d->param_shape(i, l == 0 ? c->embed : c->hidden, c->hidden, &nd, shape);
      snprintf(name, sizeof name, "rnn.%s_l%d", d->param_names[i], l);
      if (!expect_shape(f, path, name, nd, shape, c))
        return false;
    }
  return true;
}

bool cl_ckpt_check_data(const cl_run *t, const cr_st_file *f, const char *path, cl_use use) {
  char want[600];
  cl_vocab_hex(&t->data, want);
  const char *vocab = cr_st_meta(f, "data.vocab");
  if (!vocab || strcmp(vocab, want))
    return cl_fail("%s: its vocabulary differs from '%s' (%s)", path, t->o.data,
                   use == CL_RESUME ? "resume needs the same text; use --finetune-from for "
                                      "another one"
                                    : "pass the text it was trained on with --data"), false;
  if (use != CL_RESUME)
    return true;
  char n[32], h[32];
  snprintf(n, sizeof n, "%" PRId64, t->data.n);
  snprintf(h, sizeof h, "%016" PRIx64, t->data.hash);
  const char *fn = cr_st_meta(f, "data.chars"), *fh = cr_st_meta(f, "data.fnv1a64");
  if (!fn || !fh || strcmp(fn, n) || strcmp(fh, h))
    return cl_fail("%s: metadata 'data.chars' and 'data.fnv1a64' are '%.24s' and '%.24s', but "
                   "'%s' has %s characters and hash %s: not the text this run trained on "
                   "(resume needs the same text; use --finetune-from for another one)",
                   path, fn ? fn : "(missing)", fh ? fh : "(missing)", t->o.data, n, h), false;
  return true;
}

/* ---- strict parsing of the train.* entries */

/* Metadata key as an integer in [lo, hi]; else false and a message. */
static bool meta_int(const cr_st_file *f, const char *path, const char *key, int64_t lo,
                     int64_t hi, const char *why, int64_t *out) {
  const char *s = cr_st_meta(f, key);
  char *end;
  errno = 0;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (s && (*s == '-' || (*s >= '0' && *s <= '9')) && !errno && !*end && v >= lo && v <= hi) {
    *out = v;
    return true;
  }
  if (!s)
    return cl_fail("%s: metadata '%s' is missing: no training state to resume (it can be "
                   "sampled or fine-tuned from)", path, key), false;
  return cl_fail("%s: metadata '%s' is '%.40s', expected an integer in [%" PRId64 ", %" PRId64
                 "]%s", path, key, s, lo, hi, why), false;
}

/* train.rng: 80 hex digits, the generator's 5 state words (xoshiro256**
 * must not be all zero; the fifth word is a spare normal or none). */
static bool meta_rng(const cr_st_file *f, const char *path, uint64_t rs[5]) {
  const char *s = cr_st_meta(f, "train.rng");
  bool ok = s && strlen(s) == 80;
  for (int i = 0; ok && i < 80; i++)
    ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
  for (int i = 0; ok && i < 5; i++) {
    char part[17];
    memcpy(part, s + 16 * i, 16);
    part[16] = '\0';
    rs[i] = strtoull(part, NULL, 16);
  }
  double spare;
  if (ok)
    memcpy(&spare, &rs[4], sizeof spare);
  ok = ok && (rs[0] | rs[1] | rs[2] | rs[3]) != 0 && (rs[4] == UINT64_MAX || isfinite(spare));
  if (!ok)
    return cl_fail("%s: metadata 'train.rng' is '%.84s', expected 80 lowercase hex digits (the "
                   "generator's state: 4 words not all zero, a finite spare or ffffffffffffffff)",
                   path, s ? s : "(missing)"), false;
  return true;
}

/* ---- loading */

/* This rank's sequences [lo, hi) of a carried state: the rows of every
 * layer of whole [L,B,H] into part [L,hi-lo,H]. */
static void take_rows(const cr_tensor *whole, cr_tensor *part, int64_t lo, int64_t hi) {
  const int64_t L = cr_dim(whole, 0), B = cr_dim(whole, 1), H = cr_dim(whole, 2), W = hi - lo;
  const size_t es = cr_dtype_size(cr_dtype_of(whole));
  const char *src = cr_data_const(whole);
  char *dst = cr_data(part);
  for (int64_t l = 0; l < L; l++)
    memcpy(dst + (size_t)(l * W * H) * es, src + (size_t)((l * B + lo) * H) * es,
           (size_t)(W * H) * es);
}

/* Every model tensor: shapes checked, then values (finite) checked, then
 * read.  Nothing in m changes on failure. */
static bool load_model(cr_ctx *ctx, char_model *m, const cr_st_file *f) {
  if (cm_load(ctx, m, f, cr_st_path(f)) != CR_OK)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
  return true;
}

bool cl_ckpt_restore(cl_run *t, const cr_st_file *f, const char *path) {
  cr_ctx *ctx = t->ctx;
  const cl_opts *o = &t->o;
  /* 1. metadata, before anything changes */
  int64_t step, pos, share = o->tbptt ? t->data.n_train / o->batch : 1;
  uint64_t rs[5];
  char why[160];
  snprintf(why, sizeof why, " (steps already taken, at most --steps %ld)", o->steps);
  if (!meta_int(f, path, "train.step", 0, o->steps, why, &step))
    return false;
  snprintf(why, sizeof why, " (%s)", o->tbptt ? "a position in every stream's share of the text"
                                              : "it is 0 without --tbptt");
  if (!meta_int(f, path, "train.stream_pos", 0, share - 1, why, &pos) || !meta_rng(f, path, rs))
    return false;
  if (step == o->steps)
    return cl_fail("%s: already trained all %ld steps (pass a larger --steps to train on)", path,
                   o->steps), false;
  /* 2. tensors: each loader checks all of its own before reading any */
  if (!load_model(ctx, t->m, f) || cr_optim_load(ctx, t->opt, f, "optim.") != CR_OK)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
  if (cr_optim_steps(t->opt) != step)
    return cl_fail("%s: metadata 'train.step' is %" PRId64 ", expected %" PRId64
                   " (the optimizer's optim.steps)", path, step, cr_optim_steps(t->opt)), false;
  for (int s = 0; o->tbptt && s < t->S; s++) {
    cr_tensor *whole = t->carry_all[s] ? t->carry_all[s] : t->carry[s]; /* [L,B,H] */
    if (cr_st_read_into(ctx, f, carry_names[s], whole) != CR_OK)
      return cl_fail("%s", cr_ctx_error(ctx)), false;
    if (!cr_all_finite(whole))
      return cl_fail("%s: tensor '%s' holds NaN or infinite values, expected a finite state",
                     path, carry_names[s]), false;
    if (whole != t->carry[s])
      take_rows(whole, t->carry[s], t->b_lo, t->b_hi);
  }
  cr_rng_set_state(t->rng, rs);
  t->step = step;
  t->stream_pos = pos;
  return true;
}

/* data.vocab of a checkpoint with vocabulary V: 2V lowercase or uppercase
 * hex digits naming V distinct bytes, into old_id (byte -> id, -1). */
static bool parse_vocab(const cr_st_file *f, const char *path, int64_t V, int old_id[256]) {
  const char *s = cr_st_meta(f, "data.vocab");
  bool ok = s && (int64_t)strlen(s) == 2 * V;
  for (int b = 0; b < 256; b++)
    old_id[b] = -1;
  for (int64_t i = 0; ok && i < V; i++) {
    int byte = 0;
    for (int k = 0; ok && k < 2; k++) {
      char c = s[2 * i + k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      ok = d >= 0;
      byte = byte * 16 + d;
    }
    ok = ok && old_id[byte] < 0;
    if (ok)
      old_id[byte] = (int)i;
  }
  if (!ok)
    return cl_fail("%s: metadata 'data.vocab' is '%.40s%s', expected %" PRId64
                   " hex digits naming %" PRId64 " distinct bytes (model.vocab)", path,
                   s ? s : "(missing)", s && strlen(s) > 40 ? "..." : "", 2 * V, V), false;
  return true;
}

bool cl_ckpt_finetune(cl_run *t, const cr_st_file *f, const char *path, const cm_config *old) {
  cr_ctx *ctx = t->ctx;
  int old_id[256];
  if (!parse_vocab(f, path, old->vocab, old_id))
    return false;
  /* the old model, checked whole (shapes were checked before allocating;
   * cr_rnn_load and cm_load refuse non-finite values) */
  char_model *src = cm_new(ctx, old, t->rng);
  if (!src || !load_model(ctx, src, f)) {
    if (!src)
      cl_fail("%s", cr_ctx_error(ctx));
    cm_free(src);
    return false;
  }
  for (int i = 0; i < cr_rnn_num_params(t->m->rnn); i++)
    if (cr_copy_into(ctx, cr_rnn_param(t->m->rnn, i), cr_rnn_param(src->rnn, i)) != CR_OK)
      break;
  int shared = 0;
  for (int v = 0; v < t->data.vocab; v++) {
    int o = old_id[t->data.chars[v]];
    if (o < 0)
      continue;
    shared++;
    for (int64_t e = 0; e < old->embed; e++)
      cr_set_flat(t->m->embed, v * old->embed + e, cr_get_flat(src->embed, o * old->embed + e));
    for (int64_t h = 0; h < old->hidden; h++)
      cr_set_flat(t->m->head_w, v * old->hidden + h, cr_get_flat(src->head_w, o * old->hidden + h));
    cr_set_flat(t->m->head_b, v, cr_get_flat(src->head_b, o));
  }
  cm_free(src);
  if (cr_ctx_status(ctx) != CR_OK)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
  if (t->rank == 0)
    printf("fine-tuning from %s: recurrent weights copied, %d of %d characters shared with its "
         "vocabulary of %" PRId64 "%s\n", path, shared, t->data.vocab, old->vocab,
         t->o.freeze_recurrent ? "; recurrent layers frozen" : "");
  if (t->o.freeze_recurrent)
    for (int i = 0; i < cr_rnn_num_params(t->m->rnn); i++)
      cr_set_requires_grad(cr_rnn_param(t->m->rnn, i), false);
  return true;
}

bool cl_ckpt_load_model(cl_run *t, const cr_st_file *f, const char *path) {
  cm_config cfg;
  char err[400];
  if (!cm_read_config(f, path, &cfg, err, sizeof err))
    return cl_fail("%s", err), false;
  if (!cl_ckpt_check_data(t, f, path, CL_LOAD))
    return false;
  if (cfg.vocab != t->data.vocab)
    return cl_fail("%s: metadata 'model.vocab' is %" PRId64 ", expected %d (the characters its "
                   "data.vocab names)", path, cfg.vocab, t->data.vocab), false;
  if (!cl_ckpt_check_shapes(f, path, &cfg))
    return false;
  if (!(t->m = cm_new(t->ctx, &cfg, t->rng)))
    return cl_fail("%s", cr_ctx_error(t->ctx)), false;
  t->S = cfg.cell->n_states;
  return load_model(t->ctx, t->m, f);
}
