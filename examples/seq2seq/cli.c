/* cli.c — seq2seq's options.  Every value is parsed whole (no trailing
 * characters, no overflow) and checked against its range; anything else
 * is one line naming the flag and what it takes, and exit status 1. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seq2seq.h"

static void usage(FILE *f) {
  fprintf(f, "usage: seq2seq [options]\n"
             "  translate dates written out in words (\"the third of march, nineteen\n"
             "  ninety-one\", \"3 mar 91\", ...) into ISO 8601 (1991-03-03)\n"
             "  --steps N      optimizer steps [1500]\n"
             "  --batch N      sentences per step [64]\n"
             "  --hidden N     decoder hidden size, even (the encoder has N/2 each way) [64]\n"
             "  --lr X         Adam learning rate (cosine decay to 0) [0.003]\n"
             "  --seed N       seed of the model, training and held-out sentences [1]\n"
             "  --test N       held-out sentences for the exact match [1000]\n"
             "  --threads N    threads for the products [1]\n"
             "  --log-every N  a progress line every N steps [steps/10]\n"
             "  --save FILE    save the trained model (cr_checkpoint_save)\n"
             "  --load FILE    evaluate the model in FILE instead of training\n"
             "  --help\n");
}

static bool parse_long(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < lo || x > hi)
    return false;
  *out = x;
  return true;
}

static bool parse_double(const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!*v || *end || errno || !isfinite(x) || x <= lo || x > hi)
    return false;
  *out = x;
  return true;
}

int s2s_parse_args(int argc, char **argv, s2s_opts *o) {
  *o = (s2s_opts){.seed = 1,
                  .steps = 1500,
                  .hidden = 64,
                  .batch = 64,
                  .threads = 1,
                  .test = 1000,
                  .log_every = 0,
                  .lr = 3e-3};
  struct {
    const char *flag;
    long *dst, lo, hi;
  } longs[] = {{"--steps", &o->steps, 0, 100000000},
               {"--batch", &o->batch, 1, 4096},
               {"--hidden", &o->hidden, 2, 2048},
               {"--seed", &o->seed, 0, 0x7fffffffL},
               {"--test", &o->test, 1, 1000000},
               {"--threads", &o->threads, 1, 256},
               {"--log-every", &o->log_every, 1, 100000000}};
  for (int i = 1; i < argc; i += 2) { /* every option but --help takes a value */
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 2;
    }
    bool known = false, ok = false;
    char why[80] = "";
    for (size_t k = 0; k < sizeof longs / sizeof longs[0]; k++)
      if (!strcmp(a, longs[k].flag)) {
        known = true;
        ok = v && parse_long(v, longs[k].lo, longs[k].hi, longs[k].dst);
        snprintf(why, sizeof why, "an integer in [%ld, %ld]", longs[k].lo, longs[k].hi);
      }
    if (!strcmp(a, "--lr")) {
      known = true;
      ok = v && parse_double(v, 0, 10, &o->lr);
      snprintf(why, sizeof why, "a number in (0, 10]");
    } else if (!strcmp(a, "--save") || !strcmp(a, "--load")) {
      known = true;
      ok = v && *v;
      *(!strcmp(a, "--save") ? &o->save : &o->load) = v;
      snprintf(why, sizeof why, "a file name");
    }
    if (!known) {
      fprintf(stderr, "seq2seq: unknown option '%s' (--help lists them)\n", a);
      return 1;
    }
    if (!ok) {
      fprintf(stderr, "seq2seq: %s %s%s%s: expected %s\n", a, v ? "'" : "", v ? v : "(missing)",
              v ? "'" : "", why);
      return 1;
    }
    o->hidden_given |= !strcmp(a, "--hidden");
  }
  if (o->hidden % 2) {
    fprintf(stderr, "seq2seq: --hidden %ld: must be even (the encoder has half of it each way)\n",
            o->hidden);
    return 1;
  }
  if (o->save && o->load && !strcmp(o->save, o->load)) {
    fprintf(stderr, "seq2seq: --save and --load name the same file '%s'\n", o->save);
    return 1;
  }
  if (!o->log_every)
    o->log_every = o->steps >= 10 ? o->steps / 10 : 1;
  return 0;
}
