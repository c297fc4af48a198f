/* eval.c — greedy decoding of held-out sentences, without a graph: a
 * sentence counts only if all ten characters of its ISO date are right. */
#include <stdio.h>
#include <stdlib.h>

#include "seq2seq.h"

enum { EVAL_BATCH = 250 };

bool s2s_evaluate(cr_ctx *ctx, s2s_model *m, const s2s_example *ex, int64_t n, int n_show,
                  double *exact, double *per_char) {
  int64_t *pred = malloc((size_t)n * S2S_TGT_LEN * sizeof *pred);
  if (!pred) {
    fprintf(stderr, "seq2seq: out of memory\n");
    return false;
  }
  const bool grad = cr_grad_enabled(ctx);
  cr_set_grad_enabled(ctx, false);
  bool ok = true;
  for (int64_t b0 = 0; ok && b0 < n; b0 += EVAL_BATCH) {
    const int64_t B = n - b0 < EVAL_BATCH ? n - b0 : EVAL_BATCH;
    ok = s2s_decode_greedy(ctx, m, ex + b0, B, pred + b0 * S2S_TGT_LEN);
    cr_ctx_reset(ctx);
  }
  cr_set_grad_enabled(ctx, grad);
  if (!ok) {
    fprintf(stderr, "seq2seq: %s\n", cr_ctx_error(ctx));
    free(pred);
    return false;
  }
  int64_t right = 0, chars = 0;
  for (int64_t i = 0; i < n; i++) {
    char got[S2S_TGT_LEN + 1] = {0};
    int same = 0;
    for (int t = 0; t < S2S_TGT_LEN; t++) {
      got[t] = s2s_tgt_char(pred[i * S2S_TGT_LEN + t]);
      same += pred[i * S2S_TGT_LEN + t] == ex[i].tgt[t];
    }
    right += same == S2S_TGT_LEN;
    chars += same;
    if (i < n_show)
      printf("  %-50s -> %s  %s\n", ex[i].text, got, same == S2S_TGT_LEN ? "ok" : ex[i].iso);
  }
  *exact = (double)right / (double)n;
  *per_char = (double)chars / (double)(n * S2S_TGT_LEN);
  free(pred);
  return true;
}
