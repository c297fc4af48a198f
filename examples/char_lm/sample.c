/* sample.c — text from the model: the prime is fed through, then each
 * next character is drawn from p_v ∝ exp(logit_v / temperature). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lm.h"

int cl_sample(cl_run *t) {
  cr_ctx *ctx = t->ctx;
  const char_model *m = t->m;
  int64_t L = m->cfg.layers, H = m->cfg.hidden, V = m->cfg.vocab;
  for (const char *p = t->o.prime; *p; p++)
    if (t->data.id_of[(unsigned char)*p] < 0)
      return cl_fail("--prime: character '%c' (byte %d) is not in the vocabulary", *p,
                     (unsigned char)*p);
  double *prob = cl_alloc((size_t)V, sizeof *prob, "the sampling distribution"); /* [V] */
  if (!prob)
    return 1;
  cr_tensor *state[2] = {NULL, NULL};
  for (int s = 0; s < t->S; s++)
    state[s] = cr_tensor_new(ctx, m->cfg.dtype, CR_SHAPE(L, 1, H));
  bool was_grad = cr_set_grad_enabled(ctx, false), was_train = cr_set_training(ctx, false);
  const char *prime = *t->o.prime ? t->o.prime : "\n";
  int64_t next = t->data.id_of[(unsigned char)prime[0]];
  if (next < 0)
    next = 0;
  fputs(t->o.prime, stdout);
  size_t np = strlen(prime);
  int rc = 0;
  for (int64_t i = 0; rc == 0 && i < (int64_t)np - 1 + t->o.length; i++) {
    cr_tensor *fin[2];
    cr_tensor *logits = cm_logits(ctx, m, &next, 1, 1, state, fin, NULL);
    for (int s = 0; logits && s < t->S; s++)
      if (cr_copy_into(ctx, state[s], fin[s]) != CR_OK)
        break; /* the message is in ctx, checked below */
    if (cr_ctx_status(ctx) != CR_OK) {
      rc = cl_fail("sample: %s", cr_ctx_error(ctx));
      break;
    }
    if (i + 1 < (int64_t)np) {
      next = t->data.id_of[(unsigned char)prime[i + 1]];
    } else {
      double mx = -INFINITY, z = 0;
      for (int64_t v = 0; v < V; v++)
        mx = fmax(mx, cr_get_flat(logits, v));
      for (int64_t v = 0; v < V; v++)
        z += prob[v] = exp((cr_get_flat(logits, v) - mx) / t->o.temperature);
      if (!isfinite(z) || !(z > 0)) {
        rc = cl_fail("sample: the model's probabilities are not finite (logit max %g)", mx);
        break;
      }
      double u = cr_rng_uniform(t->rng) * z;
      next = V - 1;
      for (int64_t v = 0; v < V; v++)
        if ((u -= prob[v]) < 0) {
          next = v;
          break;
        }
      putchar(t->data.chars[next]);
    }
    cr_ctx_reset(ctx);
  }
  putchar('\n');
  fflush(stdout);
  cr_set_grad_enabled(ctx, was_grad);
  cr_set_training(ctx, was_train);
  free(prob);
  for (int s = 0; s < t->S; s++)
    cr_tensor_free(state[s]);
  return rc;
}
