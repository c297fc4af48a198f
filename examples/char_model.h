/* char_model.h — a character-level language model built from chainrule
 * parts: embedding [V,E] -> recurrent stack (any cell) -> linear head
 * [V,H] -> logits.  Shared by the char-lm program and the benchmark. */
#ifndef CHAINRULE_EXAMPLE_CHAR_MODEL_H
#define CHAINRULE_EXAMPLE_CHAR_MODEL_H

#include "chainrule.h"
#include "chainrule/io.h"

#define CM_MAX_PARAMS 80
/* Limits of a configuration (the command line's and a checkpoint's). */
#define CM_MAX_SIZE 8192 /* embed, hidden */
#define CM_MAX_LAYERS 16
#define CM_MAX_DROPOUT 0.99

typedef struct cm_config {
  const cr_cell_def *cell;
  int64_t vocab, embed, hidden;
  int layers;
  double dropout;
  cr_dtype dtype;
} cm_config;

typedef struct char_model {
  cm_config cfg;
  cr_tensor *embed;  /* [V, E], N(0, 1) as nn.Embedding */
  cr_rnn *rnn;       /* PyTorch's names, prefixed "rnn." in checkpoints */
  cr_tensor *head_w; /* [V, H], U(-1/sqrt(H), 1/sqrt(H)) as nn.Linear */
  cr_tensor *head_b; /* [V] */
  cr_rnn_forward_opts fwd; /* how cm_logits runs the layers (memory-efficient BPTT) */
  int n_params;
  cr_tensor *params[CM_MAX_PARAMS];
  char names[CM_MAX_PARAMS][48];
} char_model;

/* A cell by name: the built-ins or "mgu" (the custom cell example); "rnn"
 * means rnn_tanh.  NULL if unknown. */
const cr_cell_def *cm_cell_by_name(const char *name);

char_model *cm_new(cr_ctx *ctx, const cm_config *cfg, cr_rng *rng);
void cm_free(char_model *m);

/* Logits [T*B, V] for ids [T, B] (row-major, each < V).  init/final: the
 * recurrent states [L, B, H] (init may be NULL or hold NULLs: zeros; final
 * may be NULL).  rng feeds dropout between layers in training mode. */
cr_tensor *cm_logits(cr_ctx *ctx, const char_model *m, const int64_t *ids, int64_t T,
                     int64_t B, cr_tensor *const *init, cr_tensor **final, cr_rng *rng);

/* Add the parameters (under "embed.weight", "rnn.<torch name>",
 * "head.weight", "head.bias") and the config (metadata "model.*") to w. */
cr_status cm_save(cr_ctx *ctx, const char_model *m, cr_st_writer *w);
/* Read the config stored in f (model.*: vocab, cell, sizes), each value
 * parsed strictly within the limits above; false and a message in err
 * naming the file (path), the entry and the expected value otherwise. */
bool cm_read_config(const cr_st_file *f, const char *path, cm_config *cfg, char *err, size_t n);
/* Load the parameters of f into m after checking every shape and that
 * every value is finite: on failure nothing is changed and the message
 * names the file and the tensor. */
cr_status cm_load(cr_ctx *ctx, char_model *m, const cr_st_file *f, const char *path);

#endif
