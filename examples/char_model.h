/* char_model.h — a character-level language model built from chainrule
 * modules: embed (Embedding [V,E]) -> rnn (the recurrent stack, any cell)
 * -> head (Linear [V,H]) -> logits, with PyTorch's names (embed.weight,
 * rnn.weight_ih_l0, ..., head.weight, head.bias).  Shared by the char-lm
 * program and the benchmark. */
#ifndef CHAINRULE_EXAMPLE_CHAR_MODEL_H
#define CHAINRULE_EXAMPLE_CHAR_MODEL_H

#include "chainrule.h"

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
  cr_module *m;                  /* "CharLM", owning everything */
  cr_module *embed, *rnn, *head; /* its parts (borrowed) */
  cr_rnn_forward_opts fwd;       /* how cm_logits runs the layers (memory-efficient BPTT) */
  /* every parameter in the state dict's order, and its name (borrowed) */
  int n_params;
  cr_tensor *const *params;
  const char *const *names;
} char_model;

/* A cell by name: the built-ins or "mgu" (the custom cell example); "rnn"
 * means rnn_tanh.  NULL if unknown. */
const cr_cell_def *cm_cell_by_name(const char *name);

char_model *cm_new(cr_ctx *ctx, const cm_config *cfg, cr_rng *rng);
void cm_free(char_model *m);

/* Logits [T*B, V] for ids [T, B] (row-major, each < V).  init/final: the
 * recurrent states [L, B, H] (init may be NULL or hold NULLs: zeros; final
 * may be NULL).  rng feeds dropout between layers in training mode. */
cr_tensor *cm_logits(cr_ctx *ctx, const char_model *m, const int64_t *ids, int64_t T, int64_t B,
                     cr_tensor *const *init, cr_tensor **final, cr_rng *rng);

/* Record the config as metadata model.* in w. */
cr_status cm_save_config(cr_ctx *ctx, const char_model *m, cr_st_writer *w);
/* Read the config stored in f (model.*: vocab, cell, sizes), each value
 * parsed strictly within the limits above; false and a message in err
 * naming the file (path), the entry and the expected value otherwise. */
bool cm_read_config(const cr_st_file *f, const char *path, cm_config *cfg, char *err, size_t n);

#endif
