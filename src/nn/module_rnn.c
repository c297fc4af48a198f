/* module_rnn.c — the recurrent stack as a module (nn.RNN / nn.LSTM /
 * nn.GRU): a cr_rnn whose parameters, under PyTorch's names and in its
 * order, are registered as the module's own (the stack keeps owning
 * them). */
#include "module_impl.h"

typedef struct rnn_impl {
  cr_rnn *rnn;
  cr_rng *rng; /* borrowed: dropout between layers */
} rnn_impl;

static void rnn_impl_free(void *p) {
  rnn_impl *im = p;
  if (im)
    cr_rnn_free(im->rnn);
  free(im);
}

static bool is_rnn(const cr_module *m) { return m && m->impl_free == rnn_impl_free; }

cr_rnn *cr_nn_rnn_get(const cr_module *m) { return is_rnn(m) ? ((rnn_impl *)m->impl)->rnn : NULL; }

cr_status cr_nn_rnn_forward(cr_ctx *ctx, cr_module *m, cr_tensor *input, cr_tensor *const *init,
                            const int64_t *lengths, cr_tensor **output, cr_tensor **final) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!is_rnn(m))
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "nn_rnn_forward: %s is not a recurrent module "
                            "(made by cr_nn_rnn)",
                            m ? m->type : "NULL");
  const rnn_impl *im = m->impl;
  return cr_rnn_forward(ctx, im->rnn, input, init, lengths, im->rng, output, final);
}

static cr_tensor *rnn_forward(cr_ctx *ctx, cr_module *m, cr_tensor *x) {
  cr_tensor *out = NULL;
  return cr_nn_rnn_forward(ctx, m, x, NULL, NULL, &out, NULL) == CR_OK ? out : NULL;
}

/* PyTorch's class for a built-in cell, else the cell's own name. */
static const char *type_of(const cr_cell_def *c) {
  if (c == &cr_cell_rnn_tanh || c == &cr_cell_rnn_relu)
    return "RNN";
  if (c == &cr_cell_lstm)
    return "LSTM";
  if (c == &cr_cell_gru)
    return "GRU";
  return c->name;
}

/* PyTorch's RNNBase.extra_repr: what differs from the defaults (it does
 * not show an RNN's nonlinearity either). */
static void describe(char *s, size_t n, const cr_rnn_config *c, const cr_rnn_variant *v) {
  int k = snprintf(s, n, "%lld, %lld", (long long)c->input_size, (long long)c->hidden_size);
#define MORE(...) k += snprintf(s + k, n - (size_t)k, __VA_ARGS__)
  if (v && v->proj_size)
    MORE(", proj_size=%lld", (long long)v->proj_size);
  if (c->num_layers != 1)
    MORE(", num_layers=%d", c->num_layers);
  if (c->batch_first)
    MORE(", batch_first=True");
  if (c->dropout != 0)
    MORE(", dropout=%g", c->dropout);
  if (v && v->bidirectional)
    MORE(", bidirectional=True");
#undef MORE
}

cr_module *cr_nn_rnn(cr_ctx *ctx, const cr_rnn_config *cfg, const cr_rnn_variant *v, cr_rng *rng) {
  static const char op[] = "nn_rnn";
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  if (!cfg || !cfg->cell)
    return cr__fail(ctx, CR_ERR_ARG, "%s: config or its cell is NULL", op);
  rnn_impl *im = cr__calloc(1, sizeof *im);
  if (!im)
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  im->rnn = cr_rnn_new_ex(ctx, cfg, v, rng);
  im->rng = rng;
  cr_module *m = im->rnn ? cr__module_make(ctx, op, type_of(cfg->cell)) : NULL;
  if (!m) {
    rnn_impl_free(im);
    return NULL;
  }
  m->impl = im;
  m->impl_free = rnn_impl_free;
  m->forward = rnn_forward;
  describe(m->extra, sizeof m->extra, cfg, v);
  for (int i = 0; i < cr_rnn_num_params(im->rnn); i++)
    if (!cr__module_put(ctx, op, m, cr_rnn_param_name(im->rnn, i), cr_rnn_param(im->rnn, i), false,
                        false)) {
      cr_module_free(m);
      return NULL;
    }
  return m;
}
