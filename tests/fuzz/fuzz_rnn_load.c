/* fuzz_rnn_load.c — cr_rnn_load on arbitrary files, into a layer stack
 * chosen by the first byte (cell, layers, dtype; prefix "rnn." or "").
 * Checks beyond "no crash": a refused file leaves every parameter as it
 * was (bit for bit) with a message naming the file; an accepted one leaves
 * only finite parameters. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "chainrule/rnn.h"

#define NAME "fuzz.safetensors"
#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "fuzz_rnn_load: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);         \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* One context for all inputs (making one per input costs more than the
 * loading): each input starts with no error and an empty arena. */
static cr_ctx *fresh_ctx(void) {
  static cr_ctx *ctx;
  if (!ctx && !(ctx = cr_ctx_new()))
    abort();
  cr_ctx_clear_error(ctx);
  cr_ctx_reset(ctx);
  return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  static const cr_cell_def *const cells[4] = {&cr_cell_rnn_tanh, &cr_cell_rnn_relu, &cr_cell_lstm,
                                              &cr_cell_gru};
  /* byte 0: bits 0-1 cell, bit 2 two layers, bit 3 f64, bit 4 prefix "" */
  const unsigned sel = data[0];
  cr_rnn_config cfg = {cells[sel & 3], 3, 4, sel & 4 ? 2 : 1, 0, false, sel & 8 ? CR_F64 : CR_F32};
  const char *prefix = sel & 16 ? "" : "rnn.";
  cr_ctx *ctx = fresh_ctx();
  cr_rng *rng = cr_rng_new(7);
  cr_rnn *r = cr_rnn_new(ctx, &cfg, rng);
  CHECK(r);
  int n = cr_rnn_num_params(r);
  double before[8 * 2 * 64];
  int k = 0;
  for (int i = 0; i < n; i++)
    for (int64_t j = 0; j < cr_numel(cr_rnn_param(r, i)); j++)
      before[k++] = cr_get_flat(cr_rnn_param(r, i), j);
  cr_st_file *f = cr_st_open_mem(ctx, data + 1, size - 1, NAME);
  if (f) {
    cr_status st = cr_rnn_load(ctx, r, f, prefix);
    k = 0;
    for (int i = 0; i < n; i++)
      for (int64_t j = 0; j < cr_numel(cr_rnn_param(r, i)); j++, k++) {
        double v = cr_get_flat(cr_rnn_param(r, i), j);
        if (st == CR_OK)
          CHECK(isfinite(v));
        else
          CHECK(memcmp(&v, &before[k], sizeof v) == 0);
      }
    if (st != CR_OK)
      CHECK(!strncmp(cr_ctx_error(ctx), NAME ": ", strlen(NAME) + 2));
    cr_st_close(f);
  }
  cr_rnn_free(r);
  cr_rng_free(rng);
  return 0;
}
