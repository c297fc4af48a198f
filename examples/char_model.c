/* char_model.c — see char_model.h. */
#include "char_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgu.h"

const cr_cell_def *cm_cell_by_name(const char *name) {
  if (!name)
    return NULL;
  if (!strcmp(name, "rnn"))
    return &cr_cell_rnn_tanh;
  if (!strcmp(name, "mgu"))
    return &mgu_cell;
  return cr_cell_by_name(name);
}

static void add_param(char_model *m, const char *name, cr_tensor *p) {
  snprintf(m->names[m->n_params], sizeof m->names[0], "%s", name);
  m->params[m->n_params++] = p;
  cr_set_requires_grad(p, true);
}

char_model *cm_new(cr_ctx *ctx, const cm_config *cfg, cr_rng *rng) {
  char_model *m = calloc(1, sizeof *m);
  if (!m) {
    cr_ctx_set_error(ctx, CR_ERR_NOMEM, "char_model: out of memory");
    return NULL;
  }
  m->cfg = *cfg;
  int64_t V = cfg->vocab, E = cfg->embed, H = cfg->hidden;
  cr_rnn_config rc = {cfg->cell, E, H, cfg->layers, cfg->dropout, false, cfg->dtype};
  m->embed = cr_tensor_new(ctx, cfg->dtype, CR_SHAPE(V, E));
  m->rnn = m->embed ? cr_rnn_new(ctx, &rc, rng) : NULL;
  m->head_w = cr_tensor_new(ctx, cfg->dtype, CR_SHAPE(V, H));
  m->head_b = cr_tensor_new(ctx, cfg->dtype, CR_SHAPE(V));
  double k = 1.0 / sqrt((double)H);
  if (m->rnn && cr_rnn_num_params(m->rnn) + 3 > CM_MAX_PARAMS)
    cr_ctx_set_error(ctx, CR_ERR_ARG, "char_model: %d recurrent parameters, more than %d",
                     cr_rnn_num_params(m->rnn), CM_MAX_PARAMS - 3);
  if (!m->rnn || !m->head_w || !m->head_b || cr_ctx_status(ctx) != CR_OK ||
      cr_fill_normal(ctx, m->embed, rng, 0, 1) != CR_OK ||
      cr_fill_uniform(ctx, m->head_w, rng, -k, k) != CR_OK ||
      cr_fill_uniform(ctx, m->head_b, rng, -k, k) != CR_OK) {
    cm_free(m);
    return NULL;
  }
  add_param(m, "embed.weight", m->embed);
  char name[48];
  for (int i = 0; i < cr_rnn_num_params(m->rnn); i++) {
    snprintf(name, sizeof name, "rnn.%s", cr_rnn_param_name(m->rnn, i));
    add_param(m, name, cr_rnn_param(m->rnn, i));
  }
  add_param(m, "head.weight", m->head_w);
  add_param(m, "head.bias", m->head_b);
  return m;
}

void cm_free(char_model *m) {
  if (!m)
    return;
  cr_tensor_free(m->embed);
  cr_rnn_free(m->rnn);
  cr_tensor_free(m->head_w);
  cr_tensor_free(m->head_b);
  free(m);
}

cr_tensor *cm_logits(cr_ctx *ctx, const char_model *m, const int64_t *ids, int64_t T, int64_t B,
                     cr_tensor *const *init, cr_tensor **final, cr_rng *rng) {
  /* x = embed[ids]  [T,B,E] */
  cr_tensor *x = cr_embedding(ctx, m->embed, ids, CR_SHAPE(T, B));
  cr_tensor *h;
  /* h = rnn(x)  [T,B,H] */
  if (!x || cr_rnn_forward_ex(ctx, m->rnn, x, init, NULL, rng, &m->fwd, &h, final) != CR_OK)
    return NULL;
  /* logits = h W^T + b  [T*B, V] */
  return cr_linear(ctx, cr_reshape(ctx, h, CR_SHAPE(T * B, m->cfg.hidden)), m->head_w, m->head_b);
}

cr_status cm_save(cr_ctx *ctx, const char_model *m, cr_st_writer *w) {
  char v[32];
  const cm_config *c = &m->cfg;
  cr_status st = cr_st_writer_set_meta(ctx, w, "model.cell", c->cell->name);
#define META(key, fmt, val)                                                    \
  if (st == CR_OK) {                                                           \
    snprintf(v, sizeof v, fmt, val);                                           \
    st = cr_st_writer_set_meta(ctx, w, key, v);                                \
  }
  META("model.vocab", "%lld", (long long)c->vocab);
  META("model.embed", "%lld", (long long)c->embed);
  META("model.hidden", "%lld", (long long)c->hidden);
  META("model.layers", "%d", c->layers);
  META("model.dropout", "%.17g", c->dropout);
  META("model.dtype", "%s", cr_dtype_name(c->dtype));
#undef META
  if (st == CR_OK)
    st = cr_st_writer_add(ctx, w, "embed.weight", m->embed);
  if (st == CR_OK)
    st = cr_rnn_save(ctx, m->rnn, w, "rnn.");
  if (st == CR_OK)
    st = cr_st_writer_add(ctx, w, "head.weight", m->head_w);
  if (st == CR_OK)
    st = cr_st_writer_add(ctx, w, "head.bias", m->head_b);
  return st;
}

/* Metadata key of f as an integer in [lo, hi]; else false and err. */
static bool meta_int(const cr_st_file *f, const char *path, const char *key, long long lo,
                     long long hi, long long *out, char *err, size_t n) {
  const char *s = cr_st_meta(f, key);
  char *end;
  errno = 0;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (s && *s >= '0' && *s <= '9' && !errno && !*end && v >= lo && v <= hi) {
    *out = v;
    return true;
  }
  if (!s)
    snprintf(err, n, "%s: not a char-lm checkpoint (metadata '%s' is missing)", path, key);
  else
    snprintf(err, n, "%s: metadata '%s' is '%.40s', expected an integer in [%lld, %lld]", path,
             key, s, lo, hi);
  return false;
}

bool cm_read_config(const cr_st_file *f, const char *path, cm_config *cfg, char *err, size_t n) {
  long long V, E, H, L;
  const char *cell = cr_st_meta(f, "model.cell"), *dt = cr_st_meta(f, "model.dtype");
  const char *dr = cr_st_meta(f, "model.dropout");
  if (!cell || !dt || !dr) {
    snprintf(err, n, "%s: not a char-lm checkpoint (metadata 'model.%s' is missing)", path,
             !cell ? "cell" : !dt ? "dtype" : "dropout");
    return false;
  }
  if (!cm_cell_by_name(cell)) {
    snprintf(err, n, "%s: metadata 'model.cell' is '%.40s', expected rnn_tanh, rnn_relu, lstm, lstm_ln, "
             "gru or mgu", path, cell);
    return false;
  }
  if (strcmp(dt, "f32") && strcmp(dt, "f64")) {
    snprintf(err, n, "%s: metadata 'model.dtype' is '%.40s', expected f32 or f64", path, dt);
    return false;
  }
  char *end;
  errno = 0;
  double p = strtod(dr, &end);
  if (end == dr || *end || errno || !(p >= 0 && p <= CM_MAX_DROPOUT)) {
    snprintf(err, n, "%s: metadata 'model.dropout' is '%.40s', expected a number in [0, %g]", path,
             dr, CM_MAX_DROPOUT);
    return false;
  }
  if (!meta_int(f, path, "model.vocab", 1, 256, &V, err, n) ||
      !meta_int(f, path, "model.embed", 1, CM_MAX_SIZE, &E, err, n) ||
      !meta_int(f, path, "model.hidden", 1, CM_MAX_SIZE, &H, err, n) ||
      !meta_int(f, path, "model.layers", 1, CM_MAX_LAYERS, &L, err, n))
    return false;
  cfg->cell = cm_cell_by_name(cell);
  cfg->vocab = V;
  cfg->embed = E;
  cfg->hidden = H;
  cfg->layers = (int)L;
  cfg->dropout = p;
  cfg->dtype = strcmp(dt, "f64") ? CR_F32 : CR_F64;
  return true;
}

/* The file's tensor name holds only finite values once read as like's
 * dtype; else an error naming it (read into scratch memory). */
static cr_status finite_in_file(cr_ctx *ctx, const cr_st_file *f, const char *name,
                                const cr_tensor *like) {
  cr_tensor *t = cr_tensor_new(ctx, cr_dtype_of(like), cr_ndim(like), cr_shape(like));
  bool finite = t && cr_st_read_into(ctx, f, name, t) == CR_OK && cr_all_finite(t);
  cr_tensor_free(t);
  if (finite || cr_ctx_status(ctx) != CR_OK)
    return cr_ctx_status(ctx);
  return cr_ctx_set_error(ctx, CR_ERR_FORMAT,
                          "%s: tensor '%s' holds NaN or infinite values (saved from a run that "
                          "diverged?); nothing was loaded", cr_st_path(f), name);
}

cr_status cm_load(cr_ctx *ctx, char_model *m, const cr_st_file *f, const char *path) {
  (void)path; /* messages name the file through cr_st_path */
  /* check the embedding and head first (shapes, then values); cr_rnn_load
   * checks its own tensors the same way before reading any, so a bad file
   * changes nothing */
  cr_tensor *own[3] = {m->embed, m->head_w, m->head_b};
  static const char *const names[3] = {"embed.weight", "head.weight", "head.bias"};
  cr_status st = CR_OK;
  for (int i = 0; i < 3 && st == CR_OK; i++)
    st = cr_st_expect(ctx, f, names[i], own[i]);
  for (int i = 0; i < 3 && st == CR_OK; i++)
    st = finite_in_file(ctx, f, names[i], own[i]);
  if (st == CR_OK)
    st = cr_rnn_load(ctx, m->rnn, f, "rnn.");
  for (int i = 0; i < 3 && st == CR_OK; i++)
    st = cr_st_read_into(ctx, f, names[i], own[i]);
  return st;
}
