/* fuzz_char_lm_ckpt.c — char-lm's checkpoint loading on arbitrary files,
 * through the program's own code (examples/char_lm/, all but main.c), in
 * the three ways the program uses a checkpoint:
 *   train --resume FILE          options, text identity, shapes, model,
 *                                optimizer, carried state, step, generator,
 *                                stream position; then one training step
 *   train --finetune-from FILE   the old model and its vocabulary mapped
 *                                onto the text; then one training step
 *   sample --load FILE           the model; then 4 characters
 * on a fixed text (char_lm_text.txt).  A refused file must be refused with
 * a message and no crash or sanitizer report; an accepted one must train
 * or sample without one.  Nothing is written (--save is cleared).
 *
 * Options that a user could also type (--seq, --batch) are taken from the
 * file; the step is skipped when they would make a batch larger than 1024
 * characters, so the sanitizer's allocation limit measures the loader, not
 * a legitimately large run (their out-of-memory path is tested by
 * tests/test_char_lm.sh). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lm.h"

#ifndef FUZZ_CHAR_LM_TEXT
#define FUZZ_CHAR_LM_TEXT "tests/fuzz/char_lm_text.txt"
#endif
#define NAME "fuzz.safetensors"

static unsigned char text[1 << 16];
static size_t text_n;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  FILE *f = fopen(FUZZ_CHAR_LM_TEXT, "rb");
  if (!f || (text_n = fread(text, 1, sizeof text, f)) == 0) {
    fprintf(stderr, "fuzz_char_lm_ckpt: cannot read %s\n", FUZZ_CHAR_LM_TEXT);
    exit(1);
  }
  fclose(f);
  /* the program's progress lines are noise here; its messages go to
   * stderr (libFuzzer's -close_fd_mask=2 silences them) */
  if (!freopen("/dev/null", "w", stdout))
    exit(1);
  return 0;
}

/* One context for all inputs (making one per input costs more than a small
 * checkpoint): each use starts with no error, an empty arena and the
 * default modes. */
static cr_ctx *fresh_ctx(void) {
  static cr_ctx *ctx;
  if (!ctx && !(ctx = cr_ctx_new()))
    abort();
  cr_ctx_clear_error(ctx);
  cr_ctx_reset(ctx);
  cr_set_grad_enabled(ctx, true);
  cr_set_training(ctx, true);
  return ctx;
}

static void use_checkpoint(const uint8_t *data, size_t size, cl_use use) {
  cl_run t = {0};
  cl_default_opts(&t.o);
  t.o.cmd = use == CL_LOAD ? "sample" : "train";
  t.o.data = "char_lm_text.txt";
  t.o.length = 4;
  t.o.eval_chars = 64;
  t.o.resume = use == CL_RESUME ? NAME : NULL;
  t.o.finetune = use == CL_FINETUNE ? NAME : NULL;
  t.o.load = use == CL_LOAD ? NAME : NULL;
  t.ctx = fresh_ctx();
  cr_st_file *f = cr_st_open_mem(t.ctx, data, size, NAME);
  if (f && cl_opts_from_checkpoint(&t.o, f, NAME, use)) {
    cl_opts_resolve(&t.o);
    t.o.save = NULL; /* never write */
    t.rng = cr_rng_new((uint64_t)t.o.seed);
    bool small = t.o.seq * t.o.batch <= 1024;
    if (t.rng && small && cl_corpus_from_bytes(text, text_n, t.o.data, &t.data)) {
      if (use == CL_LOAD) {
        if (cl_ckpt_load_model(&t, f, NAME))
          (void)cl_sample(&t);
      } else if (cl_train_setup(&t, f)) {
        t.o.stop_after = t.step + 1;
        t.o.length = 0;
        (void)cl_train_loop(&t);
      }
    }
  }
  t.ctx = NULL; /* kept for the next input */
  cl_run_free(&t);
  cr_st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  use_checkpoint(data, size, CL_RESUME);
  use_checkpoint(data, size, CL_FINETUNE);
  use_checkpoint(data, size, CL_LOAD);
  return 0;
}
