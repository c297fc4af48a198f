/* module_nets.c — see module_nets.h. */
#include "module_nets.h"

net net_new(cr_ctx *ctx, cr_rng *rng, cr_dtype dt) {
  net n = {.m = cr_module_new(ctx, "Net")};
  cr_rnn_config lstm = {&cr_cell_lstm, 6, 8, 2, 0, false, dt};
  cr_rnn_variant v = {.bidirectional = true, .proj_size = 4};
  n.embed = cr_module_add(ctx, n.m, "embed", cr_nn_embedding(ctx, 11, 6, dt, rng));
  n.rnn = cr_module_add(ctx, n.m, "rnn", cr_nn_rnn(ctx, &lstm, &v, rng));
  n.norm = cr_module_add(ctx, n.m, "norm", cr_nn_layer_norm(ctx, CR_SHAPE(8), 1e-5, true, dt));
  cr_module *fc1 = cr_nn_linear(ctx, 8, 16, true, dt, rng);
  cr_module *fc2 = cr_nn_linear(ctx, 16, 11, true, dt, rng);
  n.mlp = cr_module_add(ctx, n.m, "mlp", CR_SEQUENTIAL(ctx, fc1, cr_nn_tanh(ctx), fc2));
  return n;
}

cr_tensor *net_forward(cr_ctx *ctx, const net *n, cr_tensor *ids) {
  cr_tensor *h = cr_module_forward(ctx, n->rnn, cr_module_forward(ctx, n->embed, ids));
  return cr_module_forward(ctx, n->mlp, cr_module_forward(ctx, n->norm, h));
}

seq seq_new(cr_ctx *ctx, cr_rng *rng, cr_dtype dt) {
  seq s = {.m = cr_module_new(ctx, "Seq")};
  cr_rnn_config gru = {&cr_cell_gru, 3, 5, 2, 0, true, dt};
  cr_rnn_config rnn = {&cr_cell_rnn_relu, 5, 4, 1, 0, false, dt};
  s.gru = cr_module_add(ctx, s.m, "gru", cr_nn_rnn(ctx, &gru, NULL, rng));
  s.rnn = cr_module_add(ctx, s.m, "rnn", cr_nn_rnn(ctx, &rnn, NULL, rng));
  s.head = cr_module_add(ctx, s.m, "head", cr_nn_linear(ctx, 4, 2, false, dt, rng));
  return s;
}

cr_tensor *seq_forward(cr_ctx *ctx, const seq *s, cr_tensor *x) {
  cr_tensor *h = cr_module_forward(ctx, s->gru, x);               /* [B,T,5] */
  h = cr_module_forward(ctx, s->rnn, cr_transpose(ctx, h, 0, 1)); /* [T,B,4] */
  return cr_module_forward(ctx, s->head, cr_transpose(ctx, h, 0, 1));
}
