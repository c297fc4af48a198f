/* torch_convert_check.c — load a converted PyTorch state_dict into a
 * recurrent layer stack and compare its forward pass with PyTorch's.
 *
 *   usage: torch-convert-check PARAMS.safetensors REF.safetensors PREFIX f32|f64 TOL
 *
 * PARAMS is what examples/torch_to_safetensors.py wrote; it is loaded with
 * cr_st_open + cr_rnn_load(PREFIX).  REF (written by the test with PyTorch)
 * has metadata cell, input_size, hidden_size, num_layers, batch_first, and
 * tensors x (the input), output and h_n (and c_n for an LSTM): PyTorch's
 * results for x.  Every result must be within TOL of PyTorch's, relative to
 * the largest magnitude of the expected tensor.  Uses the public API only
 * and links the shared library, as a user's program would.  Exit status 0
 * if all match, 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"

static int fail(cr_ctx *ctx, const char *what) {
  fprintf(stderr, "torch-convert-check: %s: %s\n", what, cr_ctx_error(ctx));
  return 1;
}

static long meta_long(const cr_st_file *f, const char *key) {
  const char *v = cr_st_meta(f, key);
  return v ? strtol(v, NULL, 10) : -1;
}

/* Largest |a - e| / max|e| over the elements; prints a row. */
static double compare(cr_ctx *ctx, const cr_st_file *ref, const char *name, cr_tensor *got) {
  cr_tensor *want = cr_st_get(ctx, ref, name);
  if (!want || !got || cr_numel(want) != cr_numel(got)) {
    fprintf(stderr, "torch-convert-check: %s: %s\n", name,
            !want ? cr_ctx_error(ctx) : "sizes differ");
    cr_tensor_free(want);
    return INFINITY;
  }
  int64_t n = cr_numel(want);
  double *e = malloc((size_t)n * sizeof *e), *a = malloc((size_t)n * sizeof *a);
  double scale = 0, diff = 0;
  if (e && a) {
    cr_to_doubles(want, e);
    cr_to_doubles(got, a);
    for (int64_t i = 0; i < n; i++) {
      scale = fmax(scale, fabs(e[i]));
      diff = fmax(diff, fabs(a[i] - e[i]));
    }
  } else {
    diff = INFINITY;
  }
  double rel = scale > 0 ? diff / scale : diff;
  printf("  %-8s %6lld values  max |chainrule - torch| = %.3g (relative %.3g)\n", name,
         (long long)n, diff, rel);
  free(e);
  free(a);
  cr_tensor_free(want);
  return rel;
}

int main(int argc, char **argv) {
  if (argc != 6 || (strcmp(argv[4], "f32") && strcmp(argv[4], "f64"))) {
    fprintf(stderr,
            "usage: torch-convert-check PARAMS.safetensors REF.safetensors PREFIX f32|f64 TOL\n");
    return 2;
  }
  const char *prefix = argv[3];
  cr_dtype dt = strcmp(argv[4], "f32") ? CR_F64 : CR_F32;
  double tol = strtod(argv[5], NULL);
  int status = 1;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_st_file *params = NULL, *ref = NULL;
  cr_rnn *rnn = NULL;
  cr_tensor *x = NULL;
  if (!ctx || !rng)
    return 1;

  ref = cr_st_open(ctx, argv[2]);
  params = cr_st_open(ctx, argv[1]);
  if (!ref || !params) {
    status = fail(ctx, "open");
    goto done;
  }
  const char *cell_name = cr_st_meta(ref, "cell");
  cr_rnn_config cfg = {cr_cell_by_name(cell_name ? cell_name : ""),
                       meta_long(ref, "input_size"),
                       meta_long(ref, "hidden_size"),
                       (int)meta_long(ref, "num_layers"),
                       0.0,
                       meta_long(ref, "batch_first") == 1,
                       dt};
  if (!cfg.cell) {
    fprintf(stderr, "torch-convert-check: %s: unknown cell '%s'\n", argv[2], cell_name);
    goto done;
  }
  printf("%s: %s, input %lld, hidden %lld, %d layers%s, %s, prefix \"%s\"\n", argv[1],
         cfg.cell->name, (long long)cfg.input_size, (long long)cfg.hidden_size, cfg.num_layers,
         cfg.batch_first ? ", batch first" : "", cr_dtype_name(dt), prefix);
  rnn = cr_rnn_new(ctx, &cfg, rng);
  if (!rnn || cr_rnn_load(ctx, rnn, params, prefix) != CR_OK) {
    status = fail(ctx, "load");
    goto done;
  }
  /* the input in the run's dtype */
  const cr_st_info *xi = cr_st_find(ref, "x");
  if (!xi) {
    fprintf(stderr, "torch-convert-check: %s: no tensor 'x'\n", argv[2]);
    goto done;
  }
  x = cr_tensor_new(ctx, dt, xi->ndim, xi->shape);
  if (!x || cr_st_read_into(ctx, ref, "x", x) != CR_OK) {
    status = fail(ctx, "x");
    goto done;
  }
  cr_tensor *out = NULL, *final[2] = {NULL, NULL};
  cr_set_grad_enabled(ctx, false);
  cr_set_training(ctx, false);
  if (cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &out, final) != CR_OK) {
    status = fail(ctx, "forward");
    goto done;
  }
  double worst = compare(ctx, ref, "output", out);
  worst = fmax(worst, compare(ctx, ref, "h_n", final[0]));
  if (cfg.cell->n_states == 2)
    worst = fmax(worst, compare(ctx, ref, "c_n", final[1]));
  status = worst <= tol ? 0 : 1;
  printf("%s: worst relative difference %.3g, tolerance %.3g\n", status ? "FAIL" : "ok", worst,
         tol);
done:
  cr_tensor_free(x);
  cr_rnn_free(rnn);
  cr_st_close(params);
  cr_st_close(ref);
  cr_rng_free(rng);
  cr_ctx_free(ctx);
  return status;
}
