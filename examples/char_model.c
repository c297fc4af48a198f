/* char_model.c — see char_model.h. */
#include "char_model.h"

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
  if (!m)
    return NULL;
  m->cfg = *cfg;
  int64_t V = cfg->vocab, E = cfg->embed, H = cfg->hidden;
  cr_rnn_config rc = {cfg->cell, E, H, cfg->layers, cfg->dropout, false, cfg->dtype};
  m->embed = cr_tensor_new(ctx, cfg->dtype, CR_SHAPE(V, E));
  m->rnn = m->embed ? cr_rnn_new(ctx, &rc, rng) : NULL;
  m->head_w = cr_tensor_new(ctx, cfg->dtype, CR_SHAPE(V, H));
  m->head_b = cr_tensor_new(ctx, cfg->dtype, CR_SHAPE(V));
  double k = 1.0 / sqrt((double)H);
  if (!m->rnn || !m->head_w || !m->head_b || cr_rnn_num_params(m->rnn) + 3 > CM_MAX_PARAMS ||
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
  if (!x || cr_rnn_forward(ctx, m->rnn, x, init, NULL, rng, &h, final) != CR_OK)
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

static bool meta_int(const cr_st_file *f, const char *key, long long lo, long long hi,
                     long long *out) {
  const char *s = cr_st_meta(f, key);
  char *end;
  if (!s)
    return false;
  long long v = strtoll(s, &end, 10);
  if (*end || end == s || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

bool cm_read_config(const cr_st_file *f, const char *path, cm_config *cfg, char *err, size_t n) {
  long long V, E, H, L;
  const char *cell = cr_st_meta(f, "model.cell"), *dt = cr_st_meta(f, "model.dtype");
  const char *dr = cr_st_meta(f, "model.dropout");
  if (!cell || !cm_cell_by_name(cell) || !dt ||
      (strcmp(dt, "f32") && strcmp(dt, "f64")) || !meta_int(f, "model.vocab", 1, 256, &V) ||
      !meta_int(f, "model.embed", 1, 1 << 16, &E) || !meta_int(f, "model.hidden", 1, 1 << 16, &H) ||
      !meta_int(f, "model.layers", 1, 16, &L)) {
    snprintf(err, n, "%s: not a char-lm checkpoint (model.* metadata missing or invalid)", path);
    return false;
  }
  cfg->cell = cm_cell_by_name(cell);
  cfg->vocab = V;
  cfg->embed = E;
  cfg->hidden = H;
  cfg->layers = (int)L;
  cfg->dropout = dr ? atof(dr) : 0.0;
  cfg->dtype = strcmp(dt, "f64") ? CR_F32 : CR_F64;
  return true;
}

cr_status cm_load(cr_ctx *ctx, char_model *m, const cr_st_file *f, const char *path) {
  (void)path; /* messages name the file through cr_st_path */
  /* check the embedding and head first; cr_rnn_load checks its own tensors
   * before reading any, so a mismatch anywhere changes nothing */
  cr_status st = cr_st_expect(ctx, f, "embed.weight", m->embed);
  if (st == CR_OK)
    st = cr_st_expect(ctx, f, "head.weight", m->head_w);
  if (st == CR_OK)
    st = cr_st_expect(ctx, f, "head.bias", m->head_b);
  if (st == CR_OK)
    st = cr_rnn_load(ctx, m->rnn, f, "rnn.");
  if (st == CR_OK)
    st = cr_st_read_into(ctx, f, "embed.weight", m->embed);
  if (st == CR_OK)
    st = cr_st_read_into(ctx, f, "head.weight", m->head_w);
  if (st == CR_OK)
    st = cr_st_read_into(ctx, f, "head.bias", m->head_b);
  return st;
}
