/* layer.c — the sequence driver: unrolls any cell (built-in or user) over
 * time and stacks layers.  For layer l, direction d and step t:
 *   state_ld(t) = cell.step(x_l(t), state_ld(t-1))          d = 0 (forward)
 *   state_ld(t) = cell.step(x_l(t'), state_ld(t-1)), t' = len_b - 1 - t
 *                                                           d = 1 (reverse)
 *   x_{l+1}(t)  = dropout([out_l0(t) | out_l1(t)])          (training, l < L-1)
 * The reverse direction is the forward unroll over the time-reversed
 * sequence (each sequence reversed within its own length, reverse.c), its
 * outputs reversed back.  With per-sequence lengths, a mask m_t[b] =
 * [t < len_b] freezes finished sequences:  state = m*new + (1-m)*old,
 * out = m*new_out.  Everything is ops, so backward over the result is exact
 * BPTT. */
#include "chainrule/rnn.h"
#include "gated.h"
#include "internal.h"
#include "unroll.h"

struct cr_rnn {
  cr_rnn_config cfg;
  cr_rnn_variant var;
  int n_params;
  cr_tensor **params;
  char (*names)[48];
};

static const cr_cell_def *const builtins[] = {&cr_cell_rnn_tanh, &cr_cell_rnn_relu, &cr_cell_lstm,
                                              &cr_cell_gru, &cr_cell_lstm_ln};

const cr_cell_def *cr_cell_by_name(const char *name) {
  for (size_t i = 0; name && i < sizeof builtins / sizeof builtins[0]; i++)
    if (strcmp(builtins[i]->name, name) == 0)
      return builtins[i];
  return NULL;
}

static const cr_rnn_variant no_variant = {false, 0};

static bool config_ok(cr_ctx *ctx, const cr_rnn_config *c, const cr_rnn_variant *v,
                      const char *op) {
  if (!c || !c->cell)
    return cr__fail(ctx, CR_ERR_ARG, "%s: config or its cell is NULL", op), false;
  const cr_cell_def *d = c->cell;
  if (!d->step || !d->param_shape || d->n_states < 1 || d->n_states > CR_CELL_MAX_STATES ||
      d->n_params < 0 || d->n_params > CR_CELL_MAX_PARAMS)
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: cell '%s' is incomplete (needs step and "
                    "param_shape, 1..%d states, 0..%d params)",
                    op, d->name ? d->name : "?", CR_CELL_MAX_STATES, CR_CELL_MAX_PARAMS),
           false;
  if (c->input_size < 1 || c->hidden_size < 1 || c->num_layers < 1 || c->num_layers > 64)
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: input_size %lld, hidden_size %lld, num_layers "
                    "%d: sizes must be >= 1 and layers 1..64",
                    op, (long long)c->input_size, (long long)c->hidden_size, c->num_layers),
           false;
  if (v->proj_size < 0 || (v->proj_size > 0 && c->cell != &cr_cell_lstm))
    return cr__fail(ctx, CR_ERR_ARG,
                    "%s: proj_size %lld with cell '%s': proj_size is an "
                    "lstm option (0 to turn it off)",
                    op, (long long)v->proj_size, d->name ? d->name : "?"),
           false;
  if (v->proj_size >= c->hidden_size)
    return cr__fail(ctx, CR_ERR_ARG, "%s: proj_size %lld must be < hidden_size %lld", op,
                    (long long)v->proj_size, (long long)c->hidden_size),
           false;
  if (!(c->dropout >= 0 && c->dropout < 1))
    return cr__fail(ctx, CR_ERR_ARG, "%s: dropout %g must be in [0, 1)", op, c->dropout), false;
  if (c->dtype != CR_F32 && c->dtype != CR_F64)
    return cr__fail(ctx, CR_ERR_DTYPE, "%s: dtype must be f32 or f64", op), false;
  return true;
}

/* ---- sizes: what layer l, direction d of a config looks like */

static int n_dirs(const cr_rnn_variant *v) { return v->bidirectional ? 2 : 1; }
/* The cell that runs: the lstm with a projection has one more parameter. */
static const cr_cell_def *cell_of(const cr_rnn_config *c, const cr_rnn_variant *v) {
  return v->proj_size > 0 ? &cr__cell_lstm_proj : c->cell;
}
static int64_t out_size(const cr_rnn_config *c, const cr_rnn_variant *v) {
  return v->proj_size > 0 ? v->proj_size : c->hidden_size;
}

/* Layer l, direction dir (params and extra filled in by the caller). */
static cr_cell_layer layer_of(const cr_rnn_config *c, const cr_rnn_variant *v, int l, int dir) {
  return (cr_cell_layer){.input_size = l == 0 ? c->input_size : n_dirs(v) * out_size(c, v),
                         .hidden_size = c->hidden_size,
                         .layer = l,
                         .direction = dir,
                         .proj_size = v->proj_size > 0 ? v->proj_size : 0,
                         .output_size = out_size(c, v)};
}

static void param_shape(const cr_cell_def *d, int i, const cr_cell_layer *L, int *nd,
                        int64_t *shape) {
  if (L->proj_size)
    cr__lstm_proj_shape(i, L, nd, shape);
  else
    d->param_shape(i, L->input_size, L->hidden_size, nd, shape);
}

/* The width of state s (state s is [B, width]): h has the output's. */
static int64_t state_size(const cr_cell_layer *L, int s) {
  return s == 0 ? L->output_size : L->hidden_size;
}

/* Parameter i of layer l, direction dir: PyTorch's name. */
static void param_name(char *buf, size_t n, const cr_cell_def *d, int i, int l, int dir) {
  snprintf(buf, n, "%s_l%d%s", d->param_names[i], l, dir ? "_reverse" : "");
}

cr_rnn *cr_rnn_new(cr_ctx *ctx, const cr_rnn_config *cfg, cr_rng *rng) {
  return cr_rnn_new_ex(ctx, cfg, NULL, rng);
}

cr_rnn *cr_rnn_new_ex(cr_ctx *ctx, const cr_rnn_config *cfg, const cr_rnn_variant *v, cr_rng *rng) {
  v = v ? v : &no_variant;
  if (!ctx || cr_ctx_status(ctx) != CR_OK || !config_ok(ctx, cfg, v, "rnn_new"))
    return NULL;
  if (!rng)
    return cr__fail(ctx, CR_ERR_ARG, "rnn_new: rng is NULL (parameters are drawn from it)");
  const cr_cell_def *d = cell_of(cfg, v);
  const int D = n_dirs(v);
  cr_rnn *r = cr__calloc(1, sizeof *r);
  if (!r)
    return cr__fail(ctx, CR_ERR_NOMEM, "rnn_new: out of memory");
  r->cfg = *cfg;
  r->var = *v;
  r->n_params = cfg->num_layers * D * d->n_params;
  r->params = cr__calloc((size_t)r->n_params + 1, sizeof *r->params);
  r->names = cr__calloc((size_t)r->n_params + 1, sizeof *r->names);
  if (!r->params || !r->names) {
    cr_rnn_free(r);
    return cr__fail(ctx, CR_ERR_NOMEM, "rnn_new: out of memory");
  }
  double k = 1.0 / sqrt((double)cfg->hidden_size);
  for (int l = 0; l < cfg->num_layers; l++)
    for (int dir = 0; dir < D; dir++) {
      const cr_cell_layer L = layer_of(cfg, v, l, dir);
      for (int i = 0; i < d->n_params; i++) {
        int idx = (l * D + dir) * d->n_params + i, nd = 0;
        int64_t shape[CR_MAX_DIMS];
        param_shape(d, i, &L, &nd, shape);
        param_name(r->names[idx], sizeof r->names[idx], d, i, l, dir);
        cr_tensor *p = cr_tensor_new(ctx, cfg->dtype, nd, shape);
        r->params[idx] = p;
        cr_status st = !p              ? cr_ctx_status(ctx)
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
const cr_rnn_variant *cr_rnn_get_variant(const cr_rnn *r) { return r ? &r->var : NULL; }
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
  for (int64_t t = 0; parts && t < T; t++)
    if (!(parts[t] = cr_select(ctx, x, 0, t)))
      return NULL;
  return parts;
}

static cr_status check_inputs(cr_ctx *ctx, const cr_rnn_config *c, const cr_rnn_variant *v,
                              cr_tensor *const *params, cr_tensor *input, cr_tensor *const *init,
                              const int64_t *lengths, int64_t T, int64_t B) {
  const cr_cell_def *d = cell_of(c, v);
  const int D = n_dirs(v);
  char name[64];
  for (int l = 0; l < c->num_layers; l++)
    for (int dir = 0; dir < D; dir++) {
      const cr_cell_layer L = layer_of(c, v, l, dir);
      for (int i = 0; i < d->n_params; i++) {
        cr_tensor *p = params[(l * D + dir) * d->n_params + i];
        int nd = 0;
        int64_t shape[CR_MAX_DIMS];
        param_shape(d, i, &L, &nd, shape);
        param_name(name, sizeof name, d, i, l, dir);
        if (!p)
          return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: parameter %s is NULL", name);
        if (p->ndim != nd || memcmp(p->shape, shape, sizeof(int64_t) * (size_t)nd) != 0 ||
            p->dtype != c->dtype) {
          char want[96];
          cr_shape_str(want, sizeof want, nd, shape);
          return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                                  "rnn_forward: parameter %s is %s %s, "
                                  "expected %s %s",
                                  name, cr__shp(p), cr_dtype_name(p->dtype), want,
                                  cr_dtype_name(c->dtype));
        }
      }
    }
  if (input->ndim != 3 || input->shape[2] != c->input_size)
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                            "rnn_forward: input %s: expected [%s, %s, %lld] "
                            "(%s)",
                            cr__shp(input), c->batch_first ? "B" : "T", c->batch_first ? "T" : "B",
                            (long long)c->input_size,
                            c->batch_first ? "batch_first" : "time first");
  if (input->dtype != c->dtype)
    return cr_ctx_set_error(ctx, CR_ERR_DTYPE,
                            "rnn_forward: input is %s, the layer's "
                            "parameters are %s",
                            cr_dtype_name(input->dtype), cr_dtype_name(c->dtype));
  const cr_cell_layer L0 = layer_of(c, v, 0, 0);
  for (int s = 0; init && s < d->n_states; s++) {
    const cr_tensor *h = init[s];
    const int64_t w = state_size(&L0, s);
    if (!h)
      continue;
    if (h->ndim != 3 || h->shape[0] != c->num_layers * D || h->shape[1] != B || h->shape[2] != w ||
        h->dtype != c->dtype)
      return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                              "rnn_forward: initial state %d %s %s: "
                              "expected [%d,%lld,%lld] %s%s",
                              s, cr__shp(h), cr_dtype_name(h->dtype), c->num_layers * D,
                              (long long)B, (long long)w, cr_dtype_name(c->dtype),
                              D == 2 ? " (num_layers * 2 directions first)" : "");
  }
  for (int64_t b = 0; lengths && b < B; b++)
    if (lengths[b] < 1 || lengths[b] > T)
      return cr_ctx_set_error(ctx, CR_ERR_ARG,
                              "rnn_forward: lengths[%lld] = %lld is outside "
                              "1..%lld (T)",
                              (long long)b, (long long)lengths[b], (long long)T);
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
  if (opts && opts->variant &&
      (opts->variant->bidirectional != r->var.bidirectional ||
       opts->variant->proj_size != r->var.proj_size))
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "rnn_forward: opts->variant (bidirectional %d, "
                            "proj_size %lld) is not the rnn's (%d, %lld); it is for "
                            "cr_rnn_forward_params_ex",
                            opts->variant->bidirectional, (long long)opts->variant->proj_size,
                            r->var.bidirectional, (long long)r->var.proj_size);
  cr_rnn_forward_opts o = opts ? *opts : (cr_rnn_forward_opts){0};
  o.variant = &r->var;
  return cr_rnn_forward_params_ex(ctx, &r->cfg, r->params, input, init, lengths, rng, &o, output,
                                  final);
}

cr_status cr_rnn_forward_params(cr_ctx *ctx, const cr_rnn_config *c, cr_tensor *const *params,
                                cr_tensor *input, cr_tensor *const *init, const int64_t *lengths,
                                cr_rng *rng, cr_tensor **output, cr_tensor **final) {
  return cr_rnn_forward_params_ex(ctx, c, params, input, init, lengths, rng, NULL, output, final);
}

/* The masks m_t [B,1] (1 while t < len_b) and their complements, only for
 * steps where some sequence has ended (NULL elsewhere). */
static cr_status make_masks(cr_ctx *ctx, cr_dtype dt, const int64_t *lengths, int64_t T, int64_t B,
                            cr_tensor ***mask, cr_tensor ***keep) {
  *mask = cr__alloc(ctx, (size_t)T * sizeof **mask);
  *keep = cr__alloc(ctx, (size_t)T * sizeof **keep);
  if (!*mask || !*keep)
    return cr_ctx_status(ctx);
  for (int64_t t = 0; t < T; t++) {
    bool all = true;
    for (int64_t b = 0; b < B; b++)
      all &= t < lengths[b];
    (*mask)[t] = (*keep)[t] = NULL;
    if (all)
      continue;
    cr_tensor *m = (*mask)[t] = cr_zeros(ctx, dt, CR_SHAPE(B, 1));
    cr_tensor *k = (*keep)[t] = cr_zeros(ctx, dt, CR_SHAPE(B, 1));
    if (!m || !k)
      return cr_ctx_status(ctx);
    for (int64_t b = 0; b < B; b++) {
      cr_set_flat(m, b, t < lengths[b] ? 1.0 : 0.0);
      cr_set_flat(k, b, t < lengths[b] ? 0.0 : 1.0);
    }
  }
  return CR_OK;
}

/* One direction of one layer over x [T,B,I_l] (already time-reversed for
 * the reverse direction): *out [T,B,H_out], fin[s] the final states. */
static cr_status run_direction(cr_ctx *ctx, cr__layer_run *lr, const cr_rnn_forward_opts *opts,
                               bool checkpointed, int run_index, cr_tensor **state, cr_tensor **out,
                               cr_tensor **fin) {
  const cr_cell_def *d = lr->d;
  const int S = d->n_states;
  cr_status st;
  if (d->prepare && (st = d->prepare(ctx, &lr->layer)) != CR_OK)
    return st ? st : cr_ctx_status(ctx);
  int64_t K = 0;
  if (checkpointed && (st = cr__checkpoint_schedule(ctx, lr, opts, &K)) != CR_OK)
    return st;
  if (opts && opts->checkpoint_chosen)
    opts->checkpoint_chosen[run_index] = K < lr->T ? K : 0;
  if (K > 0 && K < lr->T)
    return cr__unroll_checkpointed(ctx, lr, K, state, out, fin);
  cr_tensor **outs = cr__alloc(ctx, (size_t)lr->T * sizeof *outs);
  if (!outs)
    return cr_ctx_status(ctx);
  if ((st = cr__unroll_steps(ctx, lr, 0, lr->T, state, outs)) != CR_OK)
    return st;
  memcpy(fin, state, (size_t)S * sizeof *fin);
  *out = cr_stack(ctx, outs, (int)lr->T, 0); /* [T,B,H_out] */
  return cr_ctx_status(ctx);
}

cr_status cr_rnn_forward_params_ex(cr_ctx *ctx, const cr_rnn_config *c, cr_tensor *const *params,
                                   cr_tensor *input, cr_tensor *const *init, const int64_t *lengths,
                                   cr_rng *rng, const cr_rnn_forward_opts *opts, cr_tensor **output,
                                   cr_tensor **final) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!output || !params)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: params or output is NULL");
  *output = NULL;
  const cr_rnn_variant *v = opts && opts->variant ? opts->variant : &no_variant;
  if (!config_ok(ctx, c, v, "rnn_forward"))
    return cr_ctx_status(ctx);
  if (!cr__check_inputs(ctx, "rnn_forward", 1, &input))
    return cr_ctx_status(ctx) ? cr_ctx_status(ctx) : CR_ERR_ARG;
  const cr_cell_def *d = cell_of(c, v);
  if (c->batch_first && input->ndim == 3)
    input = cr_transpose(ctx, input, 0, 1); /* [B,T,I] -> [T,B,I] view */
  int64_t T = input->ndim == 3 ? input->shape[0] : 0, B = input->ndim == 3 ? input->shape[1] : 0;
  cr_status st = check_inputs(ctx, c, v, params, input, init, lengths, T, B);
  if (st != CR_OK)
    return st;
  if (c->dropout > 0 && c->num_layers > 1 && cr_training(ctx) && !rng)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "rnn_forward: dropout %g between layers needs an "
                            "rng",
                            c->dropout);
  if (opts && opts->step_states && opts->checkpoint_every)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "rnn_forward: step_states with checkpointing: "
                            "the states inside segments do not outlive the forward");
  if (opts && opts->projection_block < 0)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_forward: projection_block %lld: must be >= 0",
                            (long long)opts->projection_block);
  if (opts && opts->checkpoint_every < CR_RNN_CHECKPOINT_AUTO)
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "rnn_forward: checkpoint_every %lld: must be 0 "
                            "(full BPTT), a segment length > 0 or CR_RNN_CHECKPOINT_AUTO",
                            (long long)opts->checkpoint_every);
  const cr_cell_extra *ex = opts ? opts->extra : NULL;
  if (ex && (ex->n_tensors < 0 || (ex->n_tensors > 0 && !ex->tensors)))
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "rnn_forward: extra has %d tensors and tensors "
                            "%s",
                            ex->n_tensors, ex->tensors ? "set" : "NULL");
  for (int j = 0; ex && j < ex->n_tensors; j++)
    if (!cr__check_inputs(ctx, "rnn_forward (extra)", 1, &ex->tensors[j]))
      return cr_ctx_status(ctx) ? cr_ctx_status(ctx) : CR_ERR_ARG;
  /* a copy in the arena: the recomputed segments of backward read it */
  cr_cell_extra *extra = ex ? cr__alloc(ctx, sizeof *extra) : NULL;
  cr_tensor **extra_t =
      ex && ex->n_tensors ? cr__alloc(ctx, (size_t)ex->n_tensors * sizeof *extra_t) : NULL;
  if ((ex && !extra) || (ex && ex->n_tensors && !extra_t))
    return cr_ctx_status(ctx);
  if (ex) {
    if (ex->n_tensors)
      memcpy(extra_t, ex->tensors, (size_t)ex->n_tensors * sizeof *extra_t);
    *extra = (cr_cell_extra){ex->user, ex->n_tensors, extra_t};
  }
  const int S = d->n_states, L = c->num_layers, D = n_dirs(v);

  cr_tensor **mask = NULL, **keep = NULL;
  if (lengths && (st = make_masks(ctx, c->dtype, lengths, T, B, &mask, &keep)) != CR_OK)
    return st;
  /* the time reversal of the reverse direction (reverse.c) */
  cr__time_reversal *rev = D == 2 ? cr__time_reversal_new(ctx, T, B, lengths) : NULL;
  if (D == 2 && !rev)
    return cr_ctx_status(ctx);

  /* initial states per layer and direction: [L*D,B,size] -> L*D x [B,size] */
  cr_tensor **init_l[CR_CELL_MAX_STATES] = {NULL};
  for (int s = 0; s < S; s++)
    if (init && init[s] && !(init_l[s] = unbind0(ctx, init[s], (int64_t)L * D)))
      return cr_ctx_status(ctx);
  cr_tensor **finals[CR_CELL_MAX_STATES];
  for (int s = 0; s < S; s++)
    if (!(finals[s] = cr__alloc(ctx, (size_t)(L * D) * sizeof(cr_tensor *))))
      return cr_ctx_status(ctx);

  const bool checkpointed = opts && (opts->checkpoint_every || opts->checkpoint_budget);
  cr_tensor *x_all = input;                           /* [T,B,I_l] */
  cr_tensor *zero_state[CR_CELL_MAX_STATES] = {NULL}; /* [B,size] */
  for (int l = 0; l < L; l++) {
    cr_tensor *dir_out[2] = {NULL, NULL};
    for (int dir = 0; dir < D; dir++) {
      const int ld = l * D + dir;
      cr__layer_run *lr = cr__alloc(ctx, sizeof *lr); /* lives until backward */
      if (!lr)
        return cr_ctx_status(ctx);
      cr_cell_layer layer = layer_of(c, v, l, dir);
      layer.params = params + ld * d->n_params;
      layer.extra = extra;
      *lr = (cr__layer_run){
          .d = d,
          .layer = layer,
          .x = dir ? cr__time_reverse(ctx, rev, x_all) : x_all,
          .T = T,
          .B = B,
          .out_size = layer.output_size,
          .P = opts && opts->projection_block > 0
                   ? opts->projection_block
                   : cr__projection_block(B, layer.input_size, checkpointed),
          .mask = mask,
          .keep = keep,
          .step_states = opts && opts->step_states ? opts->step_states + (int64_t)ld * S * T : NULL,
          .retain = opts && opts->retain_step_grads,
          .keep_all = opts && opts->keep_activations};
      if (!lr->x)
        return cr_ctx_status(ctx);
      cr_tensor *state[CR_CELL_MAX_STATES];
      for (int s = 0; s < S; s++) {
        lr->st_size[s] = state_size(&layer, s);
        if (init_l[s]) {
          state[s] = init_l[s][ld];
        } else {
          if (!zero_state[s] || zero_state[s]->shape[1] != lr->st_size[s])
            zero_state[s] = cr_zeros(ctx, c->dtype, CR_SHAPE(B, lr->st_size[s]));
          if (!(state[s] = zero_state[s]))
            return cr_ctx_status(ctx);
        }
      }
      cr_tensor *fin[CR_CELL_MAX_STATES];
      if ((st = run_direction(ctx, lr, opts, checkpointed, ld, state, &dir_out[dir], fin)) != CR_OK)
        return st;
      for (int s = 0; s < S; s++)
        finals[s][ld] = fin[s];
      if (dir && !(dir_out[dir] = cr__time_reverse(ctx, rev, dir_out[dir])))
        return cr_ctx_status(ctx);
    }
    /* [T,B,H_out] or [T,B,2 H_out]: forward then reverse features */
    x_all = D == 2 ? cr_concat(ctx, dir_out, 2, 2) : dir_out[0];
    if (l + 1 < L && c->dropout > 0 && cr_training(ctx))
      x_all = cr_dropout(ctx, x_all, c->dropout, rng);
    if (!x_all)
      return cr_ctx_status(ctx);
  }
  *output = c->batch_first ? cr_transpose(ctx, x_all, 0, 1) : x_all;
  for (int s = 0; final && s < S; s++)
    final[s] = cr_stack(ctx, finals[s], L * D, 0); /* [L*D,B,size] */
  return cr_ctx_status(ctx);
}
