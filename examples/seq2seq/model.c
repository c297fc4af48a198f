/* model.c — an encoder-decoder with additive attention (Bahdanau, Cho and
 * Bengio 2015, "Neural Machine Translation by Jointly Learning to Align and
 * Translate"), built from the library's modules and one cell of our own.
 *
 * Shapes: B sentences, S source characters, T = 10 target characters,
 * H the decoder's hidden size, E = H the encoder's output (H/2 each way).
 *
 *   encoder   x = Embed(src)                          [B, S, 32]
 *             enc = BiLSTM(x, lengths)                [B, S, E]   (padding: 0)
 *             h_0 = tanh([h_fwd | h_rev] W_b^T + b_b)  [B, H]     (the bridge)
 *   decoder   y_in = Embed(BOS, y_1 .. y_9)           [B, T, 16]  (teacher forcing)
 *             every step t (the cell below, inside the recurrence):
 *               e_tj  = v . tanh(enc_j W_k^T + h_{t-1} W_q^T) + mask_j
 *               a_t   = softmax_j(e_tj)               [B, S]      (where to look)
 *               ctx_t = sum_j a_tj enc_j              [B, E]
 *               h_t, c_t = LSTM([y_in_t | ctx_t], h_{t-1}, c_{t-1})
 *             logits_t = h_t W_o^T + b_o              [B, T, 11]
 * mask_j is 0 on the sentence and -1e9 on its padding, so softmax gives
 * padding no weight.  enc and the mask reach every step as the cell's
 * extra inputs (cr_rnn_forward_opts.extra); enc W_k^T is computed once per
 * forward (the cell's prepare), the input projection of all steps at once
 * (its precompute). */
#include <stdio.h>

#include "seq2seq.h"

enum { SRC_EMBED = 32, TGT_EMBED = 16 };

/* ---- the attention LSTM cell -------------------------------------------- */

/* parameters, in this order: W_ih [4H, I], W_hh [4H, H], W_ch [4H, E],
 * bias [4H], W_q [A, H], W_k [A, E], v [A, 1]; E = A = H */
enum { P_IH, P_HH, P_CH, P_B, P_Q, P_K, P_V, N_PARAMS };

static void attn_shape(int i, int64_t I, int64_t H, int *nd, int64_t *s) {
  const int64_t rows[N_PARAMS] = {4 * H, 4 * H, 4 * H, 4 * H, H, H, H};
  const int64_t cols[N_PARAMS] = {I, H, H, 0, H, H, 1};
  *nd = i == P_B ? 1 : 2;
  s[0] = rows[i];
  s[1] = cols[i];
}

/* enc W_k^T [B, S, A], once per forward (kept in the layer's scratch) */
static cr_status attn_prepare(cr_ctx *ctx, cr_cell_layer *L) {
  if (!L->extra || L->extra->n_tensors != 2)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "attn_lstm: needs extra inputs (encoder, mask)");
  L->scratch = cr_linear(ctx, L->extra->tensors[0], L->params[P_K], NULL);
  return L->scratch ? CR_OK : cr_ctx_status(ctx);
}

/* x W_ih^T + bias for every step at once: [T, B, I] -> [T, B, 4H] */
static cr_tensor *attn_precompute(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *x_all) {
  return cr_linear(ctx, x_all, L->params[P_IH], L->params[P_B]);
}

static cr_status attn_step(cr_ctx *ctx, const cr_cell_layer *L, cr_tensor *xp,
                           cr_tensor *const *state, cr_tensor **next, cr_tensor **out) {
  cr_tensor *const *p = L->params;
  cr_tensor *h = state[0], *c = state[1];
  cr_tensor *enc = L->extra->tensors[0], *mask = L->extra->tensors[1], *K = L->scratch;
  const int64_t B = cr_dim(h, 0), S = cr_dim(enc, 1), H = L->hidden_size;
  /* e_j = v . tanh(K_j + h W_q^T) + mask_j   [B, S] */
  cr_tensor *q = cr_reshape(ctx, cr_linear(ctx, h, p[P_Q], NULL), CR_SHAPE(B, 1, H));
  cr_tensor *e = cr_matmul(ctx, cr_tanh(ctx, cr_add(ctx, K, q)), p[P_V]); /* [B, S, 1] */
  cr_tensor *score = cr_add(ctx, cr_reshape(ctx, e, CR_SHAPE(B, S)), mask);
  /* ctx = sum_j a_j enc_j with a = softmax(e)   [B, E] */
  cr_tensor *a = cr_reshape(ctx, cr_softmax(ctx, score, 1), CR_SHAPE(B, 1, S));
  cr_tensor *context = cr_reshape(ctx, cr_matmul(ctx, a, enc), CR_SHAPE(B, H));
  /* the LSTM's four gates [i f g o] from the input, h and the context */
  cr_tensor *gates =
      cr_add(ctx, xp,
             cr_add(ctx, cr_linear(ctx, h, p[P_HH], NULL), cr_linear(ctx, context, p[P_CH], NULL)));
  cr_tensor *g4[4];
  if (!gates || cr_chunk(ctx, gates, 4, 1, g4) != CR_OK)
    return cr_ctx_status(ctx);
  /* c' = f * c + i * g;  h' = o * tanh(c') */
  cr_tensor *c2 = cr_add(ctx, cr_mul(ctx, cr_sigmoid(ctx, g4[1]), c),
                         cr_mul(ctx, cr_sigmoid(ctx, g4[0]), cr_tanh(ctx, g4[2])));
  cr_tensor *h2 = cr_mul(ctx, cr_sigmoid(ctx, g4[3]), cr_tanh(ctx, c2));
  next[0] = *out = h2;
  next[1] = c2;
  return cr_ctx_status(ctx);
}

static const cr_cell_def attn_lstm = {
    .name = "attn_lstm",
    .n_states = 2,
    .state_names = {"h", "c"},
    .n_params = N_PARAMS,
    .param_names = {"weight_ih", "weight_hh", "weight_ch", "bias", "weight_q", "weight_k", "v"},
    .param_shape = attn_shape,
    .precompute = attn_precompute,
    .prepare = attn_prepare,
    .step = attn_step};

/* ---- the model ---------------------------------------------------------- */

bool s2s_model_new(cr_ctx *ctx, cr_rng *rng, int64_t H, s2s_model *m) {
  *m = (s2s_model){.m = cr_module_new(ctx, "Seq2Seq"), .hidden = H};
  cr_rnn_config enc = {&cr_cell_lstm, SRC_EMBED, H / 2, 1, 0, true, CR_F32};
  cr_rnn_variant bidir = {.bidirectional = true};
  cr_rnn_config dec = {&attn_lstm, TGT_EMBED, H, 1, 0, true, CR_F32};
  m->src_embed = cr_module_add(ctx, m->m, "src_embed",
                               cr_nn_embedding(ctx, s2s_src_vocab(), SRC_EMBED, CR_F32, rng));
  m->encoder = cr_module_add(ctx, m->m, "encoder", cr_nn_rnn(ctx, &enc, &bidir, rng));
  m->bridge = cr_module_add(ctx, m->m, "bridge", cr_nn_linear(ctx, H, H, true, CR_F32, rng));
  m->tgt_embed = cr_module_add(ctx, m->m, "tgt_embed",
                               cr_nn_embedding(ctx, S2S_TGT_BOS + 1, TGT_EMBED, CR_F32, rng));
  m->decoder = cr_module_add(ctx, m->m, "decoder", cr_nn_rnn(ctx, &dec, NULL, rng));
  m->head =
      cr_module_add(ctx, m->m, "head", cr_nn_linear(ctx, H, S2S_TGT_CLASSES, true, CR_F32, rng));
  if (!m->head)
    fprintf(stderr, "seq2seq: %s\n", cr_ctx_error(ctx));
  return m->head != NULL;
}

/* An i64 arena tensor [n] or [B, n] to fill. */
static cr_tensor *ids_tensor(cr_ctx *ctx, int64_t B, int64_t n) {
  return cr_zeros(ctx, CR_I64, CR_SHAPE(B, n));
}

/* The encoder's outputs enc [B, S, E], the attention mask [B, S] and the
 * decoder's initial state h_0 [1, B, H] for sentences ex[0..B). */
static bool encode(cr_ctx *ctx, s2s_model *m, const s2s_example *ex, int64_t B, cr_tensor **enc,
                   cr_tensor **mask, cr_tensor **h0) {
  int64_t S = 1;
  for (int64_t b = 0; b < B; b++)
    S = ex[b].len > S ? ex[b].len : S;
  cr_tensor *src = ids_tensor(ctx, B, S), *lens = ids_tensor(ctx, 1, B);
  *mask = cr_zeros(ctx, CR_F32, CR_SHAPE(B, S));
  if (!src || !lens || !*mask)
    return false;
  int64_t *s = cr_data(src), *len = cr_data(lens);
  float *mk = cr_data(*mask);
  for (int64_t b = 0; b < B; b++) {
    len[b] = ex[b].len;
    for (int64_t j = 0; j < S; j++) {
      s[b * S + j] = j < ex[b].len ? ex[b].src[j] : S2S_PAD;
      mk[b * S + j] = j < ex[b].len ? 0.0f : -1e9f;
    }
  }
  cr_tensor *out, *fin[2]; /* fin[0]: h_n [2, B, H/2], forward then reverse */
  if (cr_nn_rnn_forward(ctx, m->encoder, cr_module_forward(ctx, m->src_embed, src), NULL, len, &out,
                        fin) != CR_OK)
    return false;
  *enc = cr_contiguous(ctx, out);
  cr_tensor *both[2] = {cr_select(ctx, fin[0], 0, 0), cr_select(ctx, fin[0], 0, 1)};
  cr_tensor *h = cr_tanh(ctx, cr_module_forward(ctx, m->bridge, cr_concat(ctx, both, 2, 1)));
  *h0 = cr_unsqueeze(ctx, h, 0);
  return *h0 && *enc;
}

/* One decoder pass over the inputs y_in [B, T, 16] from state (h, c):
 * the logits [B, T, 11], the final state into fin. */
static cr_tensor *decode(cr_ctx *ctx, s2s_model *m, cr_tensor *y_in, cr_tensor *enc,
                         cr_tensor *mask, cr_tensor *const *state, cr_rng *rng, cr_tensor **fin) {
  cr_tensor *extras[2] = {enc, mask};
  cr_cell_extra extra = {.n_tensors = 2, .tensors = extras};
  cr_rnn_forward_opts o = {.extra = &extra};
  cr_tensor *out;
  if (!y_in || cr_rnn_forward_ex(ctx, cr_nn_rnn_get(m->decoder), y_in, state, NULL, rng, &o, &out,
                                 fin) != CR_OK)
    return NULL;
  return cr_module_forward(ctx, m->head, out);
}

cr_tensor *s2s_forward_teacher(cr_ctx *ctx, s2s_model *m, const s2s_example *ex, int64_t B,
                               cr_rng *rng) {
  cr_tensor *enc, *mask, *h0;
  cr_tensor *y_in = ids_tensor(ctx, B, S2S_TGT_LEN);
  if (!y_in || !encode(ctx, m, ex, B, &enc, &mask, &h0))
    return NULL;
  int64_t *y = cr_data(y_in); /* BOS, then the true characters shifted right */
  for (int64_t b = 0; b < B; b++)
    for (int t = 0; t < S2S_TGT_LEN; t++)
      y[b * S2S_TGT_LEN + t] = t == 0 ? S2S_TGT_BOS : ex[b].tgt[t - 1];
  cr_tensor *init[2] = {h0, NULL}; /* c_0 = 0 */
  return decode(ctx, m, cr_module_forward(ctx, m->tgt_embed, y_in), enc, mask, init, rng, NULL);
}

bool s2s_decode_greedy(cr_ctx *ctx, s2s_model *m, const s2s_example *ex, int64_t B, int64_t *out) {
  cr_tensor *enc, *mask, *h0;
  if (!encode(ctx, m, ex, B, &enc, &mask, &h0))
    return false;
  cr_tensor *state[2] = {h0, NULL};
  cr_tensor *prev = cr_full(ctx, CR_I64, CR_SHAPE(B, 1), S2S_TGT_BOS);
  /* one step at a time: the argmax of step t is the input of step t + 1 */
  for (int t = 0; t < S2S_TGT_LEN; t++) {
    cr_tensor *fin[2];
    cr_tensor *logits =
        decode(ctx, m, cr_module_forward(ctx, m->tgt_embed, prev), enc, mask, state, NULL, fin);
    prev = cr_argmax(ctx, logits, -1, false); /* [B, 1] */
    if (!prev)
      return false;
    for (int64_t b = 0; b < B; b++)
      out[b * S2S_TGT_LEN + t] = (int64_t)cr_get_flat(prev, b);
    state[0] = fin[0];
    state[1] = fin[1];
  }
  return true;
}
