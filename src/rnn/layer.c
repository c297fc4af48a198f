/* layer.c — the sequence driver: unrolls any cell (built-in or user) over
 * time and stacks layers.  For layer l and step t:
 *   state_l(t) = cell.step(x_l(t), state_l(t-1))
 *   x_{l+1}(t) = dropout(out_l(t))          (training mode, l < L-1)
 * With per-sequence lengths, a mask m_t[b] = [t < len_b] freezes finished
 * sequences:  state = m*new + (1-m)*old,  out = m*new_out.
 * Everything is ops, so backward over the result is exact BPTT. */
#include "chainrule/rnn.h"
#include "internal.h"
#include "unroll.h"

struct cr_rnn {
  cr_rnn_config cfg;
  int n_params;
  cr_tensor **params;
  char (*names)[48];
};

static const cr_cell_def *const builtins[] = {&cr_cell_rnn_tanh, &cr_cell_rnn_relu,
                                              &cr_cell_lstm, &cr_cell_gru};

const cr_cell_def *cr_cell_by_name(const char *name) {
  for (size_t i = 0; name && i < sizeof builtins / sizeof builtins[0]; i++)
    if (strcmp(builtins[i]->name, name) == 0)
      return builtins[i];
  return NULL;
}

static bool config_ok(cr_ctx *ctx, const cr_rnn_config *c) {
  if (!c || !c->cell)
    return cr__fail(ctx, CR_ERR_ARG, "rnn: config or its cell is NULL"), false;
  const cr_cell_def *d = c->cell;
  if (!d->step || !d->param_shape || d->n_states < 1 || d->n_states > CR_CELL_MAX_STATES ||
      d->n_params < 0 || d->n_params > CR_CELL_MAX_PARAMS)
    return cr__fail(ctx, CR_ERR_ARG, "rnn: cell '%s' is incomplete (needs step and "
                    "param_shape, 1..%d states, 0..%d params)", d->name ? d->name : "?",
                    CR_CELL_MAX_STATES, CR_CELL_MAX_PARAMS), false;
  if (c->input_size < 1 || c->hidden_size < 1 || c->num_layers < 1 || c->num_layers > 64)
    return cr__fail(ctx, CR_ERR_ARG, "rnn: input_size %lld, hidden_size %lld, num_layers "
                    "%d: sizes must be >= 1 and layers 1..64", (long long)c->input_size,
                    (long long)c->hidden_size, c->num_layers), false;
  if (!(c->dropout >= 0 && c->dropout < 1))
    return cr__fail(ctx, CR_ERR_ARG, "rnn: dropout %g must be in [0, 1)", c->dropout), false;
  if (c->dtype != CR_F32 && c->dtype != CR_F64)
    return cr__fail(ctx, CR_ERR_DTYPE, "rnn: dtype must be f32 or f64"), false;
  return true;
}

cr_rnn *cr_rnn_new(cr_ctx *ctx, const cr_rnn_config *cfg, cr_rng *rng) {
  if (!ctx || cr_ctx_status(ctx) != CR_OK || !config_ok(ctx, cfg))
    return NULL;
  if (!rng)
    return cr__fail(ctx, CR_ERR_ARG, "rnn_new: rng is NULL (parameters are drawn from it)");
  const cr_cell_def *d = cfg->cell;
  cr_rnn *r = cr__calloc(1, sizeof *r);
  if (!r)
    return cr__fail(ctx, CR_ERR_NOMEM, "rnn_new: out of memory");
  r->cfg = *cfg;
  r->n_params = cfg->num_layers * d->n_params;
  r->params = cr__calloc((size_t)r->n_params + 1, sizeof *r->params);
  r->names = cr__calloc((size_t)r->n_params + 1, sizeof *r->names);
  if (!r->params || !r->names) {
    cr_rnn_free(r);
    return cr__fail(ctx, CR_ERR_NOMEM, "rnn_new: out of memory");
  }
  double k = 1.0 / sqrt((double)cfg->hidden_size);
  for (int l = 0; l < cfg->num_layers; l++) {
    int64_t in = l == 0 ? cfg->input_size : cfg->hidden_size;
    for (int i = 0; i < d->n_params; i++) {
      int idx = l * d->n_params + i, nd = 0;
      int64_t shape[CR_MAX_DIMS];
      d->param_shape(i, in, cfg->hidden_size, &nd, shape);
      snprintf(r->names[idx], sizeof r->names[idx], "%s_l%d", d->param_names[i], l);
      cr_tensor *p = cr_tensor_new(ctx, cfg->dtype, nd, shape);
      r->params[idx] = p;
      cr_status st = !p ? cr_ctx_status(ctx)
                     : d->init_param ? d->init_param(ctx, i, p, cfg->hidden_size, rng)
                                     : cr_fill_uniform(ctx, p, rng, -k, k);
      if (st != CR_OK) {
        cr_rnn_free(r);
        return NULL;
      }
      cr_set_requires_grad(p, true);
      cr_set_name(p, r->names[idx]);
    }
  }
  return r;
}

void cr_rnn_free(cr_rnn *r) {
  if (!r)
    return;
  for (int i = 0; r->params && i < r->n_params; i++)
    cr_tensor_free(r->params[i]);
  free(r->params);
  free(r->names);
  free(r);
}

const cr_rnn_config *cr_rnn_get_config(const cr_rnn *r) { return r ? &r->cfg : NULL; }
int cr_rnn_num_params(const cr_rnn *r) { return r ? r->n_params : 0; }
cr_tensor *cr_rnn_param(const cr_rnn *r, int i) {
  return r && i >= 0 && i < r->n_params ? r->params[i] : NULL;
}
const char *cr_rnn_param_name(const cr_rnn *r, int i) {
  return r && i >= 0 && i < r->n_params ? r->names[i] : NULL;
}
cr_tensor *cr_rnn_find_param(const cr_rnn *r, const char *name) {
  for (int i = 0; r && name && i < r->n_params; i++)
    if (strcmp(r->names[i], name) == 0)
      return r->params[i];
  return NULL;
}

/* Entry t of x along axis 0, without that axis: [T, ...] -> [...]. */
static cr_tensor **unbind0(cr_ctx *ctx, cr_tensor *x, int64_t T) {
  cr_tensor **parts = cr__alloc(ctx, (size_t)T * sizeof *parts);
  if (!parts || cr_chunk(ctx, x, (int)T, 0, parts) != CR_OK)
    return NULL;
  for (int64_t t = 0; t < T; t++) {
    parts[t] = cr_reshape(ctx, parts[t], x->ndim - 1, x->shape + 1);
    if (!parts[t])
      return NULL;
  }
  return parts;
}

static cr_status check_inputs(cr_ctx *ctx, const cr_rnn_config *c, cr_tensor *const *params,
                              cr_tensor *input, cr_tensor *const *init, const int64_t *lengths,
                              int64_t T, int64_t B) {
  const cr_cell_def *d = c->cell;
  for (int l = 0; l < c->num_layers; l++) {
    int64_t in = l == 0 ? c->input_size : c->hidden_size;
    for (int i = 0; i < d->n_params; i++) {
      cr_tensor *p = params[l * d->n_params + i];
      int nd = 0;
      int64_t shape[CR_MAX_DIMS];
      d->param_shape(i, in, c->hidden_size, &nd, shape);
      if (!p)
        return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: parameter %s_l%d is NULL",
                                d->param_names[i], l);
      if (p->ndim != nd || memcmp(p->shape, shape, sizeof(int64_t) * (size_t)nd) != 0 ||
          p->dtype != c->dtype) {
        char want[96];
        cr_shape_str(want, sizeof want, nd, shape);
        return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "rnn_forward: parameter %s_l%d is %s %s, "
                                "expected %s %s", d->param_names[i], l, cr__shp(p),
                                cr_dtype_name(p->dtype), want, cr_dtype_name(c->dtype));
      }
    }
  }
  if (input->ndim != 3 || input->shape[2] != c->input_size)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "rnn_forward: input %s: expected [%s, %s, %lld] "
                            "(%s)", cr__shp(input), c->batch_first ? "B" : "T",
                            c->batch_first ? "T" : "B", (long long)c->input_size,
                            c->batch_first ? "batch_first" : "time first");
  if (input->dtype != c->dtype)
    return cr_ctx_set_error(ctx, CR_ERR_DTYPE, "rnn_forward: input is %s, the layer's "
                            "parameters are %s", cr_dtype_name(input->dtype),
                            cr_dtype_name(c->dtype));
  for (int s = 0; init && s < c->cell->n_states; s++) {
    const cr_tensor *h = init[s];
    if (!h)
      continue;
    if (h->ndim != 3 || h->shape[0] != c->num_layers || h->shape[1] != B ||
        h->shape[2] != c->hidden_size || h->dtype != c->dtype)
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "rnn_forward: initial state %d %s %s: "
                              "expected [%d,%lld,%lld] %s", s, cr__shp(h),
                              cr_dtype_name(h->dtype), c->num_layers, (long long)B,
                              (long long)c->hidden_size, cr_dtype_name(c->dtype));
  }
  for (int64_t b = 0; lengths && b < B; b++)
    if (lengths[b] < 1 || lengths[b] > T)
      return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: lengths[%lld] = %lld is outside "
                              "1..%lld (T)", (long long)b, (long long)lengths[b], (long long)T);
  return CR_OK;
}

cr_status cr_rnn_forward(cr_ctx *ctx, const cr_rnn *r, cr_tensor *input, cr_tensor *const *init,
                         const int64_t *lengths, cr_rng *rng, cr_tensor **output,
                         cr_tensor **final) {
  return cr_rnn_forward_ex(ctx, r, input, init, lengths, rng, NULL, output, final);
}

cr_status cr_rnn_forward_ex(cr_ctx *ctx, const cr_rnn *r, cr_tensor *input, cr_tensor *const *init,
                            const int64_t *lengths, cr_rng *rng, const cr_rnn_forward_opts *opts,
                            cr_tensor **output, cr_tensor **final) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!r)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: rnn is NULL");
  return cr_rnn_forward_params_ex(ctx, &r->cfg, r->params, input, init, lengths, rng, opts,
                                  output, final);
}

cr_status cr_rnn_forward_params(cr_ctx *ctx, const cr_rnn_config *c, cr_tensor *const *params,
                                cr_tensor *input, cr_tensor *const *init,
                                const int64_t *lengths, cr_rng *rng, cr_tensor **output,
                                cr_tensor **final) {
  return cr_rnn_forward_params_ex(ctx, c, params, input, init, lengths, rng, NULL, output, final);
}

cr_status cr_rnn_forward_params_ex(cr_ctx *ctx, const cr_rnn_config *c, cr_tensor *const *params,
                                   cr_tensor *input, cr_tensor *const *init,
                                   const int64_t *lengths, cr_rng *rng,
                                   const cr_rnn_forward_opts *opts, cr_tensor **output,
                                   cr_tensor **final) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!output || !params)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: params or output is NULL");
  *output = NULL;
  if (!config_ok(ctx, c))
    return cr_ctx_status(ctx);
  if (!cr__check_inputs(ctx, "rnn_forward", 1, &input))
    return cr_ctx_status(ctx) ? cr_ctx_status(ctx) : CR_ERR_ARG;
  const cr_cell_def *d = c->cell;
  if (c->batch_first && input->ndim == 3)
    input = cr_transpose(ctx, input, 0, 1); /* [B,T,I] -> [T,B,I] view */
  int64_t T = input->ndim == 3 ? input->shape[0] : 0, B = input->ndim == 3 ? input->shape[1] : 0;
  cr_status st = check_inputs(ctx, c, params, input, init, lengths, T, B);
  if (st != CR_OK)
    return st;
  if (c->dropout > 0 && c->num_layers > 1 && cr_training(ctx) && !rng)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: dropout %g between layers needs an "
                            "rng", c->dropout);
  const int S = d->n_states, L = c->num_layers;
  const int64_t H = c->hidden_size;

  /* masks m_t [B,1] (1 while t < len_b) and their complements, only for
   * steps where some sequence has ended */
  cr_tensor **mask = NULL, **keep = NULL;
  if (lengths) {
    mask = cr__alloc(ctx, (size_t)T * sizeof *mask);
    keep = cr__alloc(ctx, (size_t)T * sizeof *keep);
    if (!mask || !keep)
      return cr_ctx_status(ctx);
    for (int64_t t = 0; t < T; t++) {
      bool all = true;
      for (int64_t b = 0; b < B; b++)
        all &= t < lengths[b];
      mask[t] = keep[t] = NULL;
      if (all)
        continue;
      mask[t] = cr_zeros(ctx, c->dtype, CR_SHAPE(B, 1));
      keep[t] = cr_zeros(ctx, c->dtype, CR_SHAPE(B, 1));
      if (!mask[t] || !keep[t])
        return cr_ctx_status(ctx);
      for (int64_t b = 0; b < B; b++) {
        cr_set_flat(mask[t], b, t < lengths[b] ? 1.0 : 0.0);
        cr_set_flat(keep[t], b, t < lengths[b] ? 0.0 : 1.0);
      }
    }
  }

  /* initial states per layer: [L,B,H] -> L x [B,H] */
  cr_tensor **init_l[CR_CELL_MAX_STATES] = {NULL};
  for (int s = 0; s < S; s++)
    if (init && init[s] && !(init_l[s] = unbind0(ctx, init[s], L)))
      return cr_ctx_status(ctx);

  cr_tensor **finals[CR_CELL_MAX_STATES];
  for (int s = 0; s < S; s++)
    if (!(finals[s] = cr__alloc(ctx, (size_t)L * sizeof(cr_tensor *))))
      return cr_ctx_status(ctx);
  cr_tensor **outs = cr__alloc(ctx, (size_t)T * sizeof *outs);
  if (!outs)
    return cr_ctx_status(ctx);

  if (opts && opts->step_states && opts->checkpoint_every)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: step_states with checkpointing: "
                            "the states inside segments do not outlive the forward");
  if (opts && opts->projection_block < 0)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: projection_block %lld: must be >= 0",
                            (long long)opts->projection_block);
  if (opts && opts->checkpoint_every < CR_RNN_CHECKPOINT_AUTO)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: checkpoint_every %lld: must be 0 "
                            "(full BPTT), a segment length > 0 or CR_RNN_CHECKPOINT_AUTO",
                            (long long)opts->checkpoint_every);
  const bool checkpointed = opts && (opts->checkpoint_every || opts->checkpoint_budget);
  cr_tensor *x_all = input; /* [T,B,I_l] */
  cr_tensor *zero_state = NULL;
  for (int l = 0; l < L; l++) {
    cr__layer_run *lr = cr__alloc(ctx, sizeof *lr); /* lives until backward */
    if (!lr)
      return cr_ctx_status(ctx);
    *lr = (cr__layer_run){d,
                          {l == 0 ? c->input_size : H, H, l, params + l * d->n_params, NULL},
                          x_all,
                          T,
                          B,
                          H,
                          opts && opts->projection_block > 0 ? opts->projection_block
                                                             : cr__projection_block(B),
                          mask,
                          keep,
                          opts && opts->step_states ? opts->step_states + (int64_t)l * S * T
                                                    : NULL,
                          opts && opts->retain_step_grads,
                          opts && opts->keep_activations};
    if (d->prepare && (st = d->prepare(ctx, &lr->layer)) != CR_OK)
      return st ? st : cr_ctx_status(ctx);
    cr_tensor *state[CR_CELL_MAX_STATES];
    for (int s = 0; s < S; s++) {
      if (init_l[s]) {
        state[s] = init_l[s][l];
      } else {
        if (!zero_state && !(zero_state = cr_zeros(ctx, c->dtype, CR_SHAPE(B, H))))
          return cr_ctx_status(ctx);
        state[s] = zero_state;
      }
    }
    int64_t K = 0;
    if (checkpointed && (st = cr__checkpoint_schedule(ctx, lr, opts, &K)) != CR_OK)
      return st;
    if (opts && opts->checkpoint_chosen)
      opts->checkpoint_chosen[l] = K < T ? K : 0;
    if (K > 0 && K < T) {
      /* Y [T + S, B, H]: the outputs, then the final states */
      cr_tensor *Y = cr__unroll_checkpointed(ctx, lr, K, state);
      x_all = Y ? cr_slice(ctx, Y, 0, 0, T, 1) : NULL;
      for (int s = 0; s < S; s++)
        finals[s][l] = cr_reshape(ctx, cr_slice(ctx, Y, 0, T + s, T + s + 1, 1), 2, Y->shape + 1);
    } else {
      if ((st = cr__unroll_steps(ctx, lr, 0, T, state, outs)) != CR_OK)
        return st;
      for (int s = 0; s < S; s++)
        finals[s][l] = state[s];
      x_all = cr_stack(ctx, outs, (int)T, 0); /* [T,B,H] */
    }
    if (l + 1 < L && c->dropout > 0 && cr_training(ctx))
      x_all = cr_dropout(ctx, x_all, c->dropout, rng);
    if (!x_all)
      return cr_ctx_status(ctx);
  }
  *output = c->batch_first ? cr_transpose(ctx, x_all, 0, 1) : x_all;
  for (int s = 0; final && s < S; s++)
    final[s] = cr_stack(ctx, finals[s], L, 0); /* [L,B,H] */
  return cr_ctx_status(ctx);
}
