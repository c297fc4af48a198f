/* temporal_order.c — sequence classification where only the order counts
 * (after Hochreiter & Schmidhuber's temporal order problem, 1997).
 *
 * Task: a sequence of T symbols (T random in [--min-len, --max-len], 50..100
 * by default) holds each of the three markers A, B, C exactly once, at
 * random positions, and distractors a, b, c, d everywhere else.  Its class is the order in which
 * the markers appear: ABC, ACB, BAC, BCA, CAB or CBA (6 classes, chance
 * 1/6).  Every class has the same multiset of markers and the same
 * distribution of distractors, so a model that sees only which symbols
 * occur, and how often, cannot beat chance: the bag-of-inputs baseline
 * below (the mean of the symbols' embeddings, then an MLP) is trained on
 * the same batches to show it.
 *
 * The recurrent model reads the symbols' embeddings with an LSTM (or
 * --cell gru / rnn_tanh); sequences of a batch have different lengths, and
 * cr_rnn's lengths make the final state each sequence's own last step's.
 * A Linear head on that state gives the 6 logits; cross-entropy trains it.
 * Accuracy is measured on held-out sequences from a generator seeded apart
 * from the training one.
 *
 *   usage: temporal-order [--steps N] [--hidden H] [--cell lstm|gru|rnn_tanh]
 *                         [--min-len N] [--max-len N] [--lr X] [--seed N] [--test N]
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"

enum {
  N_MARKERS = 3,  /* A B C: ids 0 1 2 */
  N_DISTRACT = 4, /* a b c d: ids 3..6 */
  N_SYMBOLS = N_MARKERS + N_DISTRACT,
  N_CLASSES = 6, /* the orders of 3 markers */
  EMBED = 8,
  BATCH = 32,
  MAX_LEN = 1000
};

static const char symbol_chars[N_SYMBOLS + 1] = "ABCabcd";
/* class k: the order of the markers */
static const int orders[N_CLASSES][N_MARKERS] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                                 {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};

typedef struct {
  long steps, hidden, min_len, max_len, seed, test;
  double lr;
  const cr_cell_def *cell;
} options;

/* B sequences padded to T = max_len: ids [B, T] (padding: distractor a,
 * never read past a sequence's length), lens[B], classes[B]. */
static void draw(cr_rng *rng, const options *o, int64_t B, int64_t *ids, int64_t *lens,
                 int64_t *classes) {
  const int64_t T = o->max_len;
  for (int64_t b = 0; b < B; b++) {
    const int64_t len =
        o->min_len + (int64_t)cr_rng_below(rng, (uint64_t)(o->max_len - o->min_len + 1));
    int64_t *s = ids + b * T;
    for (int64_t t = 0; t < T; t++)
      s[t] = t < len ? N_MARKERS + (int64_t)cr_rng_below(rng, N_DISTRACT) : N_MARKERS;
    /* three distinct positions, in increasing order, get the markers in
     * the class's order */
    int64_t pos[N_MARKERS];
    for (int k = 0; k < N_MARKERS; k++) {
      bool taken;
      do {
        pos[k] = (int64_t)cr_rng_below(rng, (uint64_t)len);
        taken = false;
        for (int j = 0; j < k; j++)
          taken |= pos[j] == pos[k];
      } while (taken);
    }
    for (int i = 1; i < N_MARKERS; i++) /* insertion sort of 3 */
      for (int j = i; j > 0 && pos[j - 1] > pos[j]; j--) {
        int64_t tmp = pos[j];
        pos[j] = pos[j - 1];
        pos[j - 1] = tmp;
      }
    const int c = (int)cr_rng_below(rng, N_CLASSES);
    for (int k = 0; k < N_MARKERS; k++)
      s[pos[k]] = orders[c][k];
    lens[b] = len;
    classes[b] = c;
  }
}

/* the two models: embed -> rnn -> head, and embed -> mean -> mlp */
typedef struct {
  cr_module *m, *embed, *rnn, *head;
} rnn_model;
typedef struct {
  cr_module *m, *embed, *mlp;
} bag_model;

/* logits [B, 6] of the recurrent model: the head on each sequence's last state */
static cr_tensor *rnn_logits(cr_ctx *ctx, rnn_model *r, cr_tensor *ids, const int64_t *lens) {
  cr_tensor *out, *fin[2]; /* fin[0]: h [1, B, H] at each sequence's own last step */
  if (cr_nn_rnn_forward(ctx, r->rnn, cr_module_forward(ctx, r->embed, ids), NULL, lens, &out,
                        fin) != CR_OK)
    return NULL;
  return cr_module_forward(ctx, r->head, cr_select(ctx, fin[0], 0, 0));
}

/* logits [B, 6] of the bag of inputs: the MLP on mean_t embed(x_t) over
 * each sequence's own length (padding weighted 0) */
static cr_tensor *bag_logits(cr_ctx *ctx, bag_model *g, cr_tensor *ids, const int64_t *lens,
                             int64_t B, int64_t T) {
  cr_tensor *w = cr_zeros(ctx, CR_F32, CR_SHAPE(B, T, 1)); /* 1/len on the sequence, else 0 */
  if (!w)
    return NULL;
  float *wd = cr_data(w);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < lens[b]; t++)
      wd[b * T + t] = 1.0f / (float)lens[b];
  cr_tensor *mean = cr_sum_axis(ctx, cr_mul(ctx, cr_module_forward(ctx, g->embed, ids), w), 1,
                                false); /* [B, EMBED] */
  return cr_module_forward(ctx, g->mlp, mean);
}

static double accuracy(cr_tensor *logits, const int64_t *classes, int64_t B) {
  int64_t right = 0;
  for (int64_t b = 0; b < B; b++) {
    int best = 0;
    for (int k = 1; k < N_CLASSES; k++)
      if (cr_get_flat(logits, b * N_CLASSES + k) > cr_get_flat(logits, b * N_CLASSES + best))
        best = k;
    right += best == classes[b];
  }
  return (double)right / (double)B;
}

static bool parse_long(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi)
    return false;
  *out = x;
  return true;
}

#define USAGE                                                                                      \
  "usage: temporal-order [--steps N] [--hidden H] [--cell lstm|gru|rnn_tanh] [--min-len N]\n"      \
  "                      [--max-len N] [--lr X] [--seed N] [--test N]\n"

/* 0 ok, 1 error (printed), 2 --help */
static int parse_args(int argc, char **argv, options *o) {
  *o = (options){.steps = 1500,
                 .hidden = 32,
                 .min_len = 50,
                 .max_len = 100,
                 .seed = 1,
                 .test = 2000,
                 .lr = 1e-2,
                 .cell = &cr_cell_lstm};
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    const char *want = NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h"))
      return fputs(USAGE, stdout), 2;
    else if (!strcmp(a, "--steps"))
      want = parse_long(v, 1, 100000000, &o->steps) ? NULL : "an integer in [1, 100000000]";
    else if (!strcmp(a, "--hidden"))
      want = parse_long(v, 1, 4096, &o->hidden) ? NULL : "an integer in [1, 4096]";
    else if (!strcmp(a, "--min-len"))
      want = parse_long(v, N_MARKERS, MAX_LEN, &o->min_len) ? NULL : "an integer in [3, 1000]";
    else if (!strcmp(a, "--max-len"))
      want = parse_long(v, N_MARKERS, MAX_LEN, &o->max_len) ? NULL : "an integer in [3, 1000]";
    else if (!strcmp(a, "--seed"))
      want = parse_long(v, 0, 0x7fffffffL, &o->seed) ? NULL : "an integer in [0, 2147483647]";
    else if (!strcmp(a, "--test"))
      want = parse_long(v, 1, 1000000, &o->test) ? NULL : "an integer in [1, 1000000]";
    else if (!strcmp(a, "--lr")) {
      char *end = NULL;
      errno = 0;
      o->lr = v ? strtod(v, &end) : 0;
      want = v && *v && !*end && !errno && o->lr > 0 && o->lr <= 10 ? NULL : "a number in (0, 10]";
    } else if (!strcmp(a, "--cell")) {
      o->cell = v ? cr_cell_by_name(v) : NULL;
      want = o->cell ? NULL : "lstm, gru, rnn_tanh, rnn_relu or lstm_ln";
    } else {
      fprintf(stderr, "temporal-order: unknown option '%s'\n" USAGE, a);
      return 1;
    }
    if (want) {
      fprintf(stderr, "temporal-order: %s %s: expected %s\n", a, v ? v : "(missing)", want);
      return 1;
    }
  }
  if (o->min_len > o->max_len) {
    fprintf(stderr, "temporal-order: --min-len %ld is above --max-len %ld\n", o->min_len,
            o->max_len);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc == 2 ? 0 : 1;
  const int64_t T = o.max_len, H = o.hidden, NT = o.test;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new((uint64_t)o.seed), *test_rng = cr_rng_new((uint64_t)o.seed + 1000003u);
  int64_t *ids = malloc((size_t)(NT > BATCH ? NT : BATCH) * (size_t)T * sizeof *ids);
  int64_t *lens = malloc((size_t)(NT > BATCH ? NT : BATCH) * sizeof *lens);
  int64_t *classes = malloc((size_t)(NT > BATCH ? NT : BATCH) * sizeof *classes);
  rnn_model r = {0};
  bag_model g = {0};
  cr_optim *opt_r = NULL, *opt_g = NULL;
  rc = 1;
  if (!ctx || !rng || !test_rng || !ids || !lens || !classes) {
    fprintf(stderr, "temporal-order: out of memory\n");
    goto done;
  }
  char info[256];
  printf("chainrule temporal-order: %s\n", cr_runtime_describe(info, sizeof info));
  cr_rnn_config cfg = {o.cell, EMBED, H, 1, 0, true, CR_F32};
  r.m = cr_module_new(ctx, "OrderClassifier");
  r.embed = cr_module_add(ctx, r.m, "embed", cr_nn_embedding(ctx, N_SYMBOLS, EMBED, CR_F32, rng));
  r.rnn = cr_module_add(ctx, r.m, "rnn", cr_nn_rnn(ctx, &cfg, NULL, rng));
  r.head = cr_module_add(ctx, r.m, "head", cr_nn_linear(ctx, H, N_CLASSES, true, CR_F32, rng));
  g.m = cr_module_new(ctx, "BagOfInputs");
  g.embed = cr_module_add(ctx, g.m, "embed", cr_nn_embedding(ctx, N_SYMBOLS, EMBED, CR_F32, rng));
  cr_module *l1 = cr_nn_linear(ctx, EMBED, H, true, CR_F32, rng), *act = cr_nn_tanh(ctx);
  cr_module *l2 = cr_nn_linear(ctx, H, N_CLASSES, true, CR_F32, rng);
  g.mlp = cr_module_add(ctx, g.m, "mlp", CR_SEQUENTIAL(ctx, l1, act, l2));
  opt_r = cr_module_optim(ctx, r.m, CR_ADAM, o.lr);
  opt_g = cr_module_optim(ctx, g.m, CR_ADAM, o.lr);
  if (!opt_r || !opt_g) {
    fprintf(stderr, "temporal-order: %s\n", cr_ctx_error(ctx));
    goto done;
  }
  printf("task: the order of markers A, B, C among distractors a-d, %ld..%ld symbols, %d classes "
         "(chance %.1f%%); e.g.\n",
         o.min_len, o.max_len, N_CLASSES, 100.0 / N_CLASSES);
  draw(rng, &o, 3, ids, lens, classes);
  for (int b = 0; b < 3; b++) {
    printf("  ");
    for (int64_t t = 0; t < lens[b]; t++)
      putchar(symbol_chars[ids[b * T + t]]);
    printf("  -> %c%c%c\n", symbol_chars[orders[classes[b]][0]],
           symbol_chars[orders[classes[b]][1]], symbol_chars[orders[classes[b]][2]]);
  }
  printf("models: embedding %d -> %s %ld -> linear %d (%lld parameters); bag of inputs: mean "
         "embedding -> MLP %ld (%lld)\n",
         EMBED, o.cell->name, H, N_CLASSES, (long long)cr_module_num_params(r.m), H,
         (long long)cr_module_num_params(g.m));
  printf("training both on the same %ld batches of %d, Adam lr %g, clip 1\n", o.steps, BATCH, o.lr);
  int n_r, n_g;
  cr_tensor *const *p_r = cr_module_parameters(r.m, &n_r);
  cr_tensor *const *p_g = cr_module_parameters(g.m, &n_g);
  double avg_r = NAN, avg_g = NAN;
  for (long step = 1; step <= o.steps; step++) {
    draw(rng, &o, BATCH, ids, lens, classes);
    cr_tensor *x = cr_from_i64(ctx, CR_SHAPE(BATCH, T), ids);
    cr_tensor *loss_r = cr_cross_entropy(ctx, rnn_logits(ctx, &r, x, lens), classes, CR_NO_IGNORE);
    cr_tensor *loss_g =
        cr_cross_entropy(ctx, bag_logits(ctx, &g, x, lens, BATCH, T), classes, CR_NO_IGNORE);
    cr_module_zero_grad(r.m);
    cr_module_zero_grad(g.m);
    if (!loss_r || !loss_g || cr_backward(ctx, cr_add(ctx, loss_r, loss_g)) != CR_OK ||
        !isfinite(cr_clip_grad_norm(ctx, p_r, n_r, 1)) ||
        !isfinite(cr_clip_grad_norm(ctx, p_g, n_g, 1)) || cr_optim_step(ctx, opt_r) != CR_OK ||
        cr_optim_step(ctx, opt_g) != CR_OK) {
      fprintf(stderr, "temporal-order: step %ld: %s\n", step,
              cr_ctx_status(ctx) ? cr_ctx_error(ctx) : "gradient not finite (lower --lr)");
      goto done;
    }
    avg_r = isnan(avg_r) ? cr_item(loss_r) : 0.95 * avg_r + 0.05 * cr_item(loss_r);
    avg_g = isnan(avg_g) ? cr_item(loss_g) : 0.95 * avg_g + 0.05 * cr_item(loss_g);
    if (step % (o.steps >= 5 ? o.steps / 5 : 1) == 0)
      printf("step %ld: cross-entropy %s %.4f, bag of inputs %.4f (chance ln 6 = %.4f)\n", step,
             o.cell->name, avg_r, avg_g, log(N_CLASSES));
    cr_ctx_reset(ctx);
  }
  /* held-out sequences, evaluation mode, no graph */
  cr_set_grad_enabled(ctx, false);
  draw(test_rng, &o, NT, ids, lens, classes);
  cr_tensor *x = cr_from_i64(ctx, CR_SHAPE(NT, T), ids);
  cr_tensor *lr = rnn_logits(ctx, &r, x, lens), *lg = bag_logits(ctx, &g, x, lens, NT, T);
  if (!lr || !lg) {
    fprintf(stderr, "temporal-order: %s\n", cr_ctx_error(ctx));
    goto done;
  }
  printf("held-out accuracy on %lld sequences: %s %.1f%%, bag of inputs %.1f%%, chance %.1f%%\n",
         (long long)NT, o.cell->name, 100 * accuracy(lr, classes, NT),
         100 * accuracy(lg, classes, NT), 100.0 / N_CLASSES);
  rc = 0;
done:
  cr_optim_free(opt_r);
  cr_optim_free(opt_g);
  cr_module_free(r.m);
  cr_module_free(g.m);
  free(ids);
  free(lens);
  free(classes);
  cr_rng_free(test_rng);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return rc;
}
