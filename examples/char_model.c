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

char_model *cm_new(cr_ctx *ctx, const cm_config *cfg, cr_rng *rng) {
  char_model *m = calloc(1, sizeof *m);
  if (!m) {
    cr_ctx_set_error(ctx, CR_ERR_NOMEM, "char_model: out of memory");
    return NULL;
  }
  m->cfg = *cfg;
  cr_rnn_config rc = {cfg->cell,    cfg->embed, cfg->hidden, cfg->layers,
                      cfg->dropout, false,      cfg->dtype};
  /* drawn from rng in this order, the recurrent weights first, as char-lm
   * always has (a seed gives the runs it gave before); named in the order
   * of the forward pass */
  cr_module *rnn = cr_nn_rnn(ctx, &rc, NULL, rng);
  cr_module *embed = cr_nn_embedding(ctx, cfg->vocab, cfg->embed, cfg->dtype, rng);
  cr_module *head = cr_nn_linear(ctx, cfg->hidden, cfg->vocab, true, cfg->dtype, rng);
  m->m = cr_module_new(ctx, "CharLM");
  m->embed = cr_module_add(ctx, m->m, "embed", embed);
  m->rnn = cr_module_add(ctx, m->m, "rnn", rnn);
  m->head = cr_module_add(ctx, m->m, "head", head);
  m->params = cr_module_named_parameters(m->m, &m->n_params, &m->names);
  if (!m->head || !m->params) {
    cm_free(m);
    return NULL;
  }
  return m;
}

void cm_free(char_model *m) {
  if (!m)
    return;
  cr_module_free(m->m);
  free(m);
}

cr_tensor *cm_logits(cr_ctx *ctx, const char_model *m, const int64_t *ids, int64_t T, int64_t B,
                     cr_tensor *const *init, cr_tensor **final, cr_rng *rng) {
  /* x = embed[ids]  [T,B,E] */
  cr_tensor *x = cr_module_forward(ctx, m->embed, cr_from_i64(ctx, CR_SHAPE(T, B), ids));
  cr_tensor *h;
  /* h = rnn(x)  [T,B,H] */
  if (!x || cr_rnn_forward_ex(ctx, cr_nn_rnn_get(m->rnn), x, init, NULL, rng, &m->fwd, &h, final) !=
                CR_OK)
    return NULL;
  /* logits = h W^T + b  [T*B, V] */
  return cr_module_forward(ctx, m->head, cr_reshape(ctx, h, CR_SHAPE(T * B, m->cfg.hidden)));
}

cr_status cm_save_config(cr_ctx *ctx, const char_model *m, cr_st_writer *w) {
  char v[32];
  const cm_config *c = &m->cfg;
  cr_status st = cr_st_writer_set_meta(ctx, w, "model.cell", c->cell->name);
#define META(key, fmt, val)                                                                        \
  if (st == CR_OK) {                                                                               \
    snprintf(v, sizeof v, fmt, val);                                                               \
    st = cr_st_writer_set_meta(ctx, w, key, v);                                                    \
  }
  META("model.vocab", "%lld", (long long)c->vocab);
  META("model.embed", "%lld", (long long)c->embed);
  META("model.hidden", "%lld", (long long)c->hidden);
  META("model.layers", "%d", c->layers);
  META("model.dropout", "%.17g", c->dropout);
  META("model.dtype", "%s", cr_dtype_name(c->dtype));
#undef META
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
    snprintf(err, n, "%s: metadata '%s' is '%.40s', expected an integer in [%lld, %lld]", path, key,
             s, lo, hi);
  return false;
}

bool cm_read_config(const cr_st_file *f, const char *path, cm_config *cfg, char *err, size_t n) {
  long long V, E, H, L;
  const char *cell = cr_st_meta(f, "model.cell"), *dt = cr_st_meta(f, "model.dtype");
  const char *dr = cr_st_meta(f, "model.dropout");
  if (!cell || !dt || !dr) {
    snprintf(err, n, "%s: not a char-lm checkpoint (metadata 'model.%s' is missing)", path,
             !cell ? "cell"
             : !dt ? "dtype"
                   : "dropout");
    return false;
  }
  if (!cm_cell_by_name(cell)) {
    snprintf(err, n,
             "%s: metadata 'model.cell' is '%.40s', expected rnn_tanh, rnn_relu, lstm, lstm_ln, "
             "gru or mgu",
             path, cell);
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
