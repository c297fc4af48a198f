/* model.c — one recurrent layer and a linear head at the last step:
 *   h_0 .. h_{T-1} = rnn(x),   y = W h_{T-1} + b,   L = mean_b (y_b - target_b)^2 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int bt_model_init(bt_model *m, cr_ctx *ctx, const cr_cell_def *cell, int64_t H, cr_dtype dt,
                  uint64_t seed, double rec_scale) {
  memset(m, 0, sizeof *m);
  cr_rng *rng = cr_rng_new(seed);
  cr_rnn_config cfg = {cell, 2, H, 1, 0.0, false, dt};
  m->rnn = rng ? cr_rnn_new(ctx, &cfg, rng) : NULL;
  m->W = cr_tensor_new(ctx, dt, CR_SHAPE(1, H));
  m->b = cr_tensor_new(ctx, dt, CR_SHAPE(1));
  double k = 1.0 / sqrt((double)H);
  if (!m->rnn || !m->W || !m->b || cr_fill_uniform(ctx, m->W, rng, -k, k)) {
    cr_rng_free(rng);
    return 1;
  }
  cr_rng_free(rng);
  cr_set_name(m->W, "head.weight");
  cr_set_name(m->b, "head.bias");
  cr_set_requires_grad(m->W, true);
  cr_set_requires_grad(m->b, true);
  /* a larger recurrent weight: |J_j| = |diag(1 - h_j^2) W_hh| grows with it */
  cr_tensor *Whh = cr_rnn_find_param(m->rnn, "weight_hh_l0");
  for (int64_t i = 0; i < cr_numel(Whh); i++)
    cr_set_flat(Whh, i, cr_get_flat(Whh, i) * rec_scale);
  for (int i = 0; i < cr_rnn_num_params(m->rnn); i++)
    m->params[m->n_params++] = cr_rnn_param(m->rnn, i);
  m->params[m->n_params++] = m->W;
  m->params[m->n_params++] = m->b;
  return 0;
}

void bt_model_free(bt_model *m) {
  cr_rnn_free(m->rnn);
  cr_tensor_free(m->W);
  cr_tensor_free(m->b);
  memset(m, 0, sizeof *m);
}

static bt_where where_states;
bt_where bt_model_where_states(void) { return where_states; }

cr_tensor *bt_model_loss(cr_ctx *ctx, const bt_model *m, cr_tensor *x, cr_tensor *target,
                         cr_tensor *const *init, cr_tensor **states) {
  if (!x || !target)
    return NULL;
  int64_t T = cr_dim(x, 0), B = cr_dim(x, 1), H = cr_rnn_get_config(m->rnn)->hidden_size;
  /* the step states h_0 .. h_{T-1} come first in step_states (layer 0, state 0);
   * an LSTM's c_t follow them */
  int S = cr_rnn_get_config(m->rnn)->cell->n_states;
  cr_tensor **all = calloc((size_t)(S * T), sizeof *all), *out;
  where_states = BT_NEXT;
  cr_rnn_forward_opts o = {.step_states = all, .retain_step_grads = states != NULL};
  cr_status st = all ? cr_rnn_forward_ex(ctx, m->rnn, x, init, NULL, NULL, &o, &out, NULL)
                     : cr_ctx_set_error(ctx, CR_ERR_NOMEM, "model: out of memory");
  for (int64_t t = 0; st == CR_OK && states && t < T; t++)
    states[t] = all[t];
  free(all);
  if (st != CR_OK)
    return NULL;
  /* the ops after the layer carry this scope (the layer's own: "step t") */
  const char *outer = cr_set_scope(ctx, "loss (after the last step)");
  cr_tensor *h_last = cr_reshape(ctx, cr_slice(ctx, out, 0, T - 1, T, 1), CR_SHAPE(B, H));
  cr_tensor *y = cr_linear(ctx, h_last, m->W, m->b); /* [B,1] */
  cr_set_name(y, "y"); /* names appear in graphs and in anomaly messages */
  cr_tensor *L = cr_mse(ctx, y, target);
  cr_set_scope(ctx, outer);
  return L;
}

int bt_adding_batch(cr_ctx *ctx, cr_rng *rng, cr_dtype dt, int T, int B, cr_tensor **x,
                    cr_tensor **target) {
  *x = cr_zeros(ctx, dt, CR_SHAPE(T, B, 2));
  *target = cr_zeros(ctx, dt, CR_SHAPE(B, 1));
  if (!*x || !*target)
    return 1;
  cr_set_name(*target, "target");
  for (int b = 0; b < B; b++) {
    int first = (int)cr_rng_below(rng, (uint64_t)(T / 2));
    int second = T / 2 + (int)cr_rng_below(rng, (uint64_t)(T - T / 2));
    double sum = 0;
    for (int t = 0; t < T; t++) {
      double u = cr_rng_uniform(rng);
      cr_set_flat(*x, ((int64_t)t * B + b) * 2, u);
      if (t == first || t == second) {
        cr_set_flat(*x, ((int64_t)t * B + b) * 2 + 1, 1.0);
        sum += u;
      }
    }
    cr_set_flat(*target, b, sum);
  }
  return 0;
}
