/* checkpoint.c — a char-lm run saved into one safetensors file, and
 * loaded back for resuming, fine-tuning, sampling or evaluation.
 *
 * What the file holds (the tensors and train.rng are one cr_checkpoint):
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
 * or changed (cr_checkpoint_read loads all or nothing), and a message
 * names the file, the entry and what was expected. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lm.h"

static const char *const carry_names[2] = {"train.carry0", "train.carry1"};

/* Run t as one checkpoint: the model, the optimizer, the generator (as
 * train.rng) and, with --tbptt, the carried state (of every rank's
 * sequences, [L,B,H], on several ranks); names[3] holds the
 * extras' names. */
static cr_checkpoint run_checkpoint(cl_run *t, const char *names[3]) {
  for (int s = 0; s < 3; s++)
    names[s] = t->o.tbptt && s < t->S ? carry_names[s] : NULL;
  return (cr_checkpoint){.model = t->m->m,
                         .optim = t->opt,
                         .rng = t->rng,
                         .extra_names = names,
                         .extra = t->carry_all[0] ? t->carry_all : t->carry,
                         .rng_key = "train.rng"};
}

cr_status cl_ckpt_save(cl_run *t, const char *path) {
  cr_ctx *ctx = t->ctx;
  /* never replace a good file by a model that diverged */
  for (int i = 0; i < t->m->n_params; i++)
    if (!cr_all_finite(t->m->params[i]))
      return cr_ctx_set_error(ctx, CR_ERR_ARG,
                              "%s: not saved: parameter '%s' holds NaN or infinite values "
                              "(the run diverged; try a lower --lr)",
                              path, t->m->names[i]);
  /* which text, and where in it the run is */
  char vocab[513], chars[24], hash[24], step[24], pos[24];
  cl_vocab_hex(&t->data, vocab);
  snprintf(chars, sizeof chars, "%" PRId64, t->data.n);
  snprintf(hash, sizeof hash, "%016" PRIx64, t->data.hash);
  snprintf(step, sizeof step, "%" PRId64, t->step);
  snprintf(pos, sizeof pos, "%" PRId64, t->stream_pos);
  const char *extras[3], *meta[] = {"data.vocab",       vocab, "data.chars", chars,
                                    "data.fnv1a64",     hash,  "train.step", step,
                                    "train.stream_pos", pos,   NULL};
  cr_checkpoint ck = run_checkpoint(t, extras);
  ck.meta = meta;
  cr_st_writer *w = cr_st_writer_new();
  if (!w)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", path);
  cr_status st = cm_save_config(ctx, t->m, w);
  if (st == CR_OK)
    st = cl_opts_record(ctx, &t->o, w);
  if (st == CR_OK)
    st = cr_checkpoint_write(ctx, &ck, w);
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
                   want),
           false;
  bool same = in->ndim == nd || (in->ndim == 0 && nd == 1 && shape[0] == 1);
  for (int d = 0; same && d < in->ndim; d++)
    same = in->shape[d] == shape[d];
  if (same)
    return true;
  cr_shape_str(have, sizeof have, in->ndim, in->shape);
  return cl_fail("%s: tensor '%s' is %s, but its model.* metadata (%s, vocabulary %" PRId64
                 ", embed %" PRId64 ", hidden %" PRId64 ", %d layers) needs %s",
                 path, name, have, cfg->cell->name, cfg->vocab, cfg->embed, cfg->hidden,
                 cfg->layers, want),
         false;
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
                                    : "pass the text it was trained on with --data"),
           false;
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
                   path, fn ? fn : "(missing)", fh ? fh : "(missing)", t->o.data, n, h),
           false;
  return true;
}

/* ---- strict parsing of the train.* entries */

/* Metadata key as an integer in [lo, hi]; else false and a message. */
static bool meta_int(const cr_st_file *f, const char *path, const char *key, int64_t lo, int64_t hi,
                     const char *why, int64_t *out) {
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
                   "sampled or fine-tuned from)",
                   path, key),
           false;
  return cl_fail("%s: metadata '%s' is '%.40s', expected an integer in [%" PRId64 ", %" PRId64
                 "]%s",
                 path, key, s, lo, hi, why),
         false;
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
 * read; nothing in m changes on failure.  The file holds more than the
 * model (the optimizer, the run's state): its model tensors were all
 * checked to be there by cl_ckpt_check_shapes, so the load is not strict. */
static bool load_model(cr_ctx *ctx, char_model *m, const cr_st_file *f) {
  if (cr_module_load(ctx, m->m, f, NULL, &(cr_load_opts){.non_strict = true}) != CR_OK)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
  return true;
}

bool cl_ckpt_restore(cl_run *t, const cr_st_file *f, const char *path) {
  cr_ctx *ctx = t->ctx;
  const cl_opts *o = &t->o;
  /* 1. metadata, before anything changes */
  int64_t step, pos, share = o->tbptt ? t->data.n_train / o->batch : 1;
  char why[160];
  snprintf(why, sizeof why, " (steps already taken, at most --steps %ld)", o->steps);
  if (!meta_int(f, path, "train.step", 0, o->steps, why, &step))
    return false;
  snprintf(why, sizeof why, " (%s)",
           o->tbptt ? "a position in every stream's share of the text" : "it is 0 without --tbptt");
  if (!meta_int(f, path, "train.stream_pos", 0, share - 1, why, &pos))
    return false;
  if (step == o->steps)
    return cl_fail("%s: already trained all %ld steps (pass a larger --steps to train on)", path,
                   o->steps),
           false;
  /* 2. the model, the optimizer, the carried state and the generator,
   * all checked before any is changed */
  const char *extras[3];
  cr_checkpoint ck = run_checkpoint(t, extras);
  if (cr_checkpoint_read(ctx, &ck, f, NULL) != CR_OK)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
  if (cr_optim_steps(t->opt) != step)
    return cl_fail("%s: metadata 'train.step' is %" PRId64 ", expected %" PRId64
                   " (the optimizer's optim.steps)",
                   path, step, cr_optim_steps(t->opt)),
           false;
  for (int s = 0; o->tbptt && t->carry_all[0] && s < t->S; s++)
    take_rows(t->carry_all[s], t->carry[s], t->b_lo, t->b_hi);
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
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      ok = d >= 0;
      byte = byte * 16 + d;
    }
    ok = ok && old_id[byte] < 0;
    if (ok)
      old_id[byte] = (int)i;
  }
  if (!ok)
    return cl_fail("%s: metadata 'data.vocab' is '%.40s%s', expected %" PRId64
                   " hex digits naming %" PRId64 " distinct bytes (model.vocab)",
                   path, s ? s : "(missing)", s && strlen(s) > 40 ? "..." : "", 2 * V, V),
           false;
  return true;
}

bool cl_ckpt_finetune(cl_run *t, const cr_st_file *f, const char *path, const cm_config *old) {
  cr_ctx *ctx = t->ctx;
  int old_id[256];
  if (!parse_vocab(f, path, old->vocab, old_id))
    return false;
  /* the old model, checked whole (shapes were checked before allocating;
   * cr_module_load refuses non-finite values) */
  char_model *src = cm_new(ctx, old, t->rng);
  if (!src || !load_model(ctx, src, f)) {
    if (!src)
      cl_fail("%s", cr_ctx_error(ctx));
    cm_free(src);
    return false;
  }
  int n_rnn;
  cr_tensor *const *from = cr_module_named_parameters(src->rnn, &n_rnn, NULL);
  cr_tensor *const *to = cr_module_named_parameters(t->m->rnn, &n_rnn, NULL);
  for (int i = 0; i < n_rnn; i++)
    if (cr_copy_into(ctx, to[i], from[i]) != CR_OK)
      break;
  /* the rows of the embedding and the head, row by row: [V, E], [V, H], [V] */
  static const char *const rows[3] = {"embed.weight", "head.weight", "head.bias"};
  int shared = 0;
  for (int v = 0; v < t->data.vocab; v++) {
    int o = old_id[t->data.chars[v]];
    shared += o >= 0;
    for (int k = 0; o >= 0 && k < 3; k++) {
      cr_tensor *to_t = cr_module_tensor(t->m->m, rows[k]);
      cr_tensor *from_t = cr_module_tensor(src->m, rows[k]);
      int64_t width = cr_numel(to_t) / cr_dim(to_t, 0);
      for (int64_t j = 0; j < width; j++)
        cr_set_flat(to_t, v * width + j, cr_get_flat(from_t, o * width + j));
    }
  }
  cm_free(src);
  if (cr_ctx_status(ctx) != CR_OK)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
  if (t->rank == 0)
    printf("fine-tuning from %s: recurrent weights copied, %d of %d characters shared with its "
           "vocabulary of %" PRId64 "%s\n",
           path, shared, t->data.vocab, old->vocab,
           t->o.freeze_recurrent ? "; recurrent layers frozen" : "");
  if (t->o.freeze_recurrent && cr_module_freeze(ctx, t->m->m, "rnn") < 0)
    return cl_fail("%s", cr_ctx_error(ctx)), false;
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
                   "data.vocab names)",
                   path, cfg.vocab, t->data.vocab),
           false;
  if (!cl_ckpt_check_shapes(f, path, &cfg))
    return false;
  if (!(t->m = cm_new(t->ctx, &cfg, t->rng)))
    return cl_fail("%s", cr_ctx_error(t->ctx)), false;
  t->S = cfg.cell->n_states;
  return load_model(t->ctx, t->m, f);
}
