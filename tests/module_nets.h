/* module_nets.h — the models of tests/fixtures/gen_module_fixtures.py
 * built from chainrule modules, as a PyTorch user would write them: a
 * struct with the root module and handles to its parts, and a forward.
 * Shared by the module tests. */
#ifndef CHAINRULE_TEST_MODULE_NETS_H
#define CHAINRULE_TEST_MODULE_NETS_H

#include "chainrule.h"

/* Net: embed Embedding(11, 6) -> rnn LSTM(6, 8, num_layers=2,
 * bidirectional=True, proj_size=4) -> norm LayerNorm(8) -> mlp
 * Sequential(Linear(8, 16), Tanh(), Linear(16, 11)). */
typedef struct net {
  cr_module *m, *embed, *rnn, *norm, *mlp;
} net;
/* NULL handles (error in ctx) on failure; free with cr_module_free(n.m). */
net net_new(cr_ctx *ctx, cr_rng *rng, cr_dtype dt);
/* ids i64 [T, B] -> logits [T, B, 11] */
cr_tensor *net_forward(cr_ctx *ctx, const net *n, cr_tensor *ids);

/* Seq: gru GRU(3, 5, num_layers=2, batch_first=True) -> rnn RNN(5, 4,
 * nonlinearity='relu') (time first) -> head Linear(4, 2, bias=False). */
typedef struct seq {
  cr_module *m, *gru, *rnn, *head;
} seq;
seq seq_new(cr_ctx *ctx, cr_rng *rng, cr_dtype dt);
/* x [B, T, 3] -> [B, T, 2] */
cr_tensor *seq_forward(cr_ctx *ctx, const seq *s, cr_tensor *x);

#endif
