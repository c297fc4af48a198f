/* main.c — seq2seq: an encoder-decoder with attention learns to translate
 * dates written out in words into ISO 8601, and reports its exact match on
 * sentences of dates it never saw.
 *
 *   usage: seq2seq [--steps N] [--hidden N] [--seed N] [--threads N]
 *                  [--save FILE | --load FILE] ...   (--help lists all)
 *
 * The held-out sentences come from a generator seeded apart from the
 * training one (seed + 1000003) and from the held-out tenth of the dates
 * (dates.c), so neither the sentence nor the date was trained on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seq2seq.h"

/* --load: the hidden size recorded in the file, checked against --hidden */
static bool hidden_of_checkpoint(cr_ctx *ctx, s2s_opts *o) {
  cr_st_file *f = cr_st_open(ctx, o->load);
  if (!f)
    return fprintf(stderr, "seq2seq: %s\n", cr_ctx_error(ctx)), false;
  const char *v = cr_st_meta(f, "seq2seq.hidden");
  char *end = NULL;
  long h = v ? strtol(v, &end, 10) : 0;
  bool ok = v && !*end && h >= 2 && h <= 2048 && h % 2 == 0;
  if (!ok)
    fprintf(stderr,
            "seq2seq: %s: metadata 'seq2seq.hidden' is %s%s%s, expected an even size "
            "(not a seq2seq checkpoint?)\n",
            o->load, v ? "'" : "", v ? v : "missing", v ? "'" : "");
  else if (o->hidden_given && h != o->hidden) {
    fprintf(stderr, "seq2seq: %s holds a model of hidden size %ld, not --hidden %ld\n", o->load, h,
            o->hidden);
    ok = false;
  }
  if (ok)
    o->hidden = h;
  cr_st_close(f);
  return ok;
}

int main(int argc, char **argv) {
  s2s_opts o;
  int rc = s2s_parse_args(argc, argv, &o);
  if (rc)
    return rc == 2 ? 0 : 1;
  cr_set_num_threads((int)o.threads);
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new((uint64_t)o.seed);
  cr_rng *test_rng = cr_rng_new((uint64_t)o.seed + 1000003u);
  s2s_example *test = malloc((size_t)o.test * sizeof *test);
  s2s_model m = {0};
  rc = 1;
  if (!ctx || !rng || !test_rng || !test) {
    fprintf(stderr, "seq2seq: out of memory\n");
    goto done;
  }
  if (o.load && !hidden_of_checkpoint(ctx, &o))
    goto done;
  char info[256];
  printf("chainrule seq2seq: %s\n", cr_runtime_describe(info, sizeof info));
  if (!s2s_model_new(ctx, rng, o.hidden, &m))
    goto done;
  printf("model: bidirectional LSTM encoder (%ld each way), LSTM decoder with additive attention "
         "(hidden %ld), %lld parameters\n",
         o.hidden / 2, o.hidden, (long long)cr_module_num_params(m.m));
  for (int64_t i = 0; i < o.test; i++)
    s2s_example_draw(test_rng, S2S_HELD_OUT, &test[i]);
  if (o.load) {
    cr_checkpoint ck = {.model = m.m};
    if (cr_checkpoint_load(ctx, &ck, o.load, NULL) != CR_OK) {
      fprintf(stderr, "seq2seq: %s\n", cr_ctx_error(ctx));
      goto done;
    }
    printf("loaded %s\n", o.load);
  } else {
    printf("training: %ld steps of %ld sentences, Adam lr %g (cosine), clip 5, seed %ld\n", o.steps,
           o.batch, o.lr, o.seed);
    if (!s2s_train(ctx, &m, &o, rng))
      goto done;
  }
  if (o.save) {
    char hidden[32];
    snprintf(hidden, sizeof hidden, "%ld", o.hidden);
    const char *meta[] = {"seq2seq.hidden", hidden, NULL};
    cr_checkpoint ck = {.model = m.m, .meta = meta};
    if (cr_checkpoint_save(ctx, &ck, o.save) != CR_OK) {
      fprintf(stderr, "seq2seq: %s\n", cr_ctx_error(ctx));
      goto done;
    }
    printf("saved %s\n", o.save);
  }
  printf("greedy decoding of %ld held-out sentences (dates never seen in training), e.g.\n",
         o.test);
  double exact, per_char;
  if (!s2s_evaluate(ctx, &m, test, o.test, 8, &exact, &per_char))
    goto done;
  printf("exact match %.1f%% (%.1f%% of characters) on %ld held-out sentences\n", 100 * exact,
         100 * per_char, o.test);
  rc = 0;
done:
  cr_module_free(m.m);
  free(test);
  cr_rng_free(test_rng);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return rc;
}
