/* main.c — char-lm: train, sample and evaluate a character-level language
 * model.
 *
 *   char-lm train  [options]     train (default: an LSTM on tinyshakespeare)
 *   char-lm sample --load CKPT   generate text from a checkpoint
 *   char-lm eval   --load CKPT   validation loss in bits per character
 *   char-lm --help
 *
 * The model is embedding -> recurrent stack -> linear head (char_model.c).
 * A checkpoint records the run's options (cli.c), so --resume FILE alone
 * continues a run exactly.  The order below matters: the options (the
 * command line's, then the checkpoint's), then the text, then the model,
 * and every check is made before the work it protects.
 *
 * Under mpirun -np N every rank runs this program: the group is joined
 * after the options are parsed, every rank reads the text and the
 * checkpoint, and at the end the ranks learn whether any of them failed
 * (dist.c). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lm.h"

/* sample / eval: the model from --load */
static int use_checkpoint(cl_run *t, const cr_st_file *f, const char *path) {
  if (!cl_dist_all_ok(t, cl_ckpt_load_model(t, f, path)))
    return 1;
  if (!strcmp(t->o.cmd, "sample"))
    return t->rank == 0 ? cl_sample(t) : 0;
  double nats;
  int64_t count;
  if (!cl_evaluate(t, 0, &nats, &count)) /* the whole validation text */
    return 1;
  if (count == 0)
    return t->rank == 0
               ? cl_fail("eval: '%s' has too little validation text for a figure", t->o.data)
               : 1;
  if (t->rank == 0)
    printf("%s on %s: validation %.4f bits/char (unigram %.3f)\n", path, t->o.data, nats / log(2.0),
           cl_unigram_bits(&t->data));
  return isfinite(nats) ? 0 : cl_fail("eval: the validation loss is %g", nats);
}

int main(int argc, char **argv) {
  /* a file size limit (ulimit -f) is a failed save with a message, not a
   * death by signal: writes then fail with EFBIG */
  signal(SIGXFSZ, SIG_IGN);
  cl_run t = {0};
  int r = cl_parse_args(argc, argv, &t.o);
  if (r)
    return r == 2 ? 0 : 2;
  t.ctx = cr_ctx_new();
  if (!t.ctx)
    return cl_fail("out of memory");
  if (!cl_dist_init(&t)) {
    cr_ctx_free(t.ctx);
    return 1;
  }
  const char *path = t.o.resume ? t.o.resume : t.o.finetune ? t.o.finetune : t.o.load;
  cl_use use = t.o.resume ? CL_RESUME : t.o.finetune ? CL_FINETUNE : CL_LOAD;
  /* f stays open to the end: options taken from it borrow its strings */
  cr_st_file *f = path ? cr_st_open(t.ctx, path) : NULL;
  int rc = 0;
  if (path && !f)
    rc = cl_fail("%s", cr_ctx_error(t.ctx));
  else if (f && !cl_opts_from_checkpoint(&t.o, f, path, use))
    rc = 1;
  if (rc == 0) {
    cl_opts_resolve(&t.o);
    t.rng = cr_rng_new((uint64_t)t.o.seed);
    cr_set_num_threads((int)t.o.threads);
    if (!t.rng)
      rc = cl_fail("out of memory");
    else if (!cl_corpus_load(t.o.data, &t.data))
      rc = 1;
    else if (!strcmp(t.o.cmd, "train"))
      rc = cl_dist_all_ok(&t, cl_train_setup(&t, f)) && cl_dist_start(&t) ? cl_train_loop(&t) : 1;
    else
      rc = use_checkpoint(&t, f, path);
  }
  rc = cl_dist_finish(&t, rc);
  cl_run_free(&t);
  cr_st_close(f);
  return rc;
}
