/* fuzz_safetensors.c — the safetensors reader on arbitrary bytes, through
 * every accessor: open, path, count, name, find, get, read_into (the same
 * dtype, the other one, and a wrong shape), expect, meta, meta_count,
 * meta_key, and the NULL and missing-name cases.  What it checks beyond
 * "no crash, no sanitizer report": a refused file leaves a message that
 * starts with the file's name; what the accessors report agrees with each
 * other (numel and nbytes with the shape, get and read_into with find);
 * everything read can be written back by the writer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "chainrule/io.h"

#define NAME "fuzz.safetensors"
#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "fuzz_safetensors: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* One tensor: every accessor that takes a name. */
static void one_tensor(cr_ctx *ctx, const cr_st_file *f, cr_st_writer *w, const char *name) {
  const cr_st_info *in = cr_st_find(f, name);
  CHECK(in && !strcmp(in->name, name) && in->ndim >= 0 && in->ndim <= CR_MAX_DIMS);
  int64_t numel = 1;
  for (int d = 0; d < in->ndim; d++)
    numel *= in->shape[d]; /* the reader checked it cannot overflow */
  CHECK(numel == in->numel);
  CHECK(in->nbytes == (size_t)numel * cr_dtype_size(in->dtype));

  cr_tensor *t = cr_st_get(ctx, f, name);
  CHECK(t ? numel > 0 : numel == 0 && cr_ctx_status(ctx) == CR_ERR_SHAPE);
  cr_ctx_clear_error(ctx);
  if (!t)
    return;
  CHECK(cr_numel(t) == numel && cr_dtype_of(t) == in->dtype);
  CHECK(cr_st_expect(ctx, f, name, t) == CR_OK);
  /* into the other dtype: the same values, converted */
  cr_dtype other = in->dtype == CR_F32 ? CR_F64 : CR_F32;
  cr_tensor *u = cr_tensor_new(ctx, other, cr_ndim(t), cr_shape(t));
  CHECK(u && cr_st_read_into(ctx, f, name, u) == CR_OK);
  for (int64_t i = 0; i < numel && i < 64; i++) {
    double a = cr_get_flat(t, i), b = cr_get_flat(u, i);
    CHECK(a == b || (a != a && b != b) || other == CR_F32); /* f64 -> f32 may round */
  }
  /* a wrong shape is refused and changes nothing */
  int64_t wrong[2] = {numel + 1, 1};
  cr_tensor *v = cr_tensor_new(ctx, in->dtype, 2, wrong);
  if (v) {
    CHECK(cr_st_read_into(ctx, f, name, v) == CR_ERR_SHAPE);
    cr_ctx_clear_error(ctx);
    CHECK(cr_st_expect(ctx, f, name, v) == CR_ERR_SHAPE);
    cr_ctx_clear_error(ctx);
    for (int64_t i = 0; i < numel + 1 && i < 64; i++)
      CHECK(cr_get_flat(v, i) == 0);
  }
  cr_ctx_clear_error(ctx);
  /* what was read can be written back */
  CHECK(cr_st_writer_add(ctx, w, name, t) == CR_OK);
  cr_tensor_free(t);
  cr_tensor_free(u);
  cr_tensor_free(v);
}

/* One context for all inputs (making one per input costs more than the
 * reading): each input starts with no error and an empty arena. */
static cr_ctx *fresh_ctx(void) {
  static cr_ctx *ctx;
  if (!ctx && !(ctx = cr_ctx_new()))
    abort();
  cr_ctx_clear_error(ctx);
  cr_ctx_reset(ctx);
  return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cr_ctx *ctx = fresh_ctx();
  cr_st_file *f = cr_st_open_mem(ctx, data, size, NAME);
  if (!f) {
    CHECK(cr_ctx_status(ctx) != CR_OK && !strncmp(cr_ctx_error(ctx), NAME ": ", strlen(NAME) + 2));
    return 0;
  }
  CHECK(!strcmp(cr_st_path(f), NAME));
  cr_st_writer *w = cr_st_writer_new();
  CHECK(w);
  int n = cr_st_count(f);
  for (int i = 0; i < n; i++) {
    const char *name = cr_st_name(f, i);
    CHECK(name);
    one_tensor(ctx, f, w, name);
  }
  CHECK(!cr_st_name(f, n) && !cr_st_name(f, -1));
  int nm = cr_st_meta_count(f);
  for (int i = 0; i < nm; i++) {
    const char *k = cr_st_meta_key(f, i), *v = cr_st_meta(f, k);
    CHECK(k && v);
    CHECK(cr_st_writer_set_meta(ctx, w, k, v) == CR_OK);
  }
  CHECK(!cr_st_meta_key(f, nm) && !cr_st_meta(f, "\x01 no such key"));
  /* the one "no such tensor" error, from every accessor that takes a name */
  const char *missing = "\x01 no such tensor";
  CHECK(!cr_st_find(f, missing) && !cr_st_find(f, NULL));
  CHECK(!cr_st_get(ctx, f, missing) && cr_ctx_status(ctx) == CR_ERR_ARG);
  char want[64];
  snprintf(want, sizeof want, NAME ": no tensor named '%s'", missing);
  CHECK(!strncmp(cr_ctx_error(ctx), want, strlen(want)));
  cr_ctx_clear_error(ctx);
  cr_tensor *one = cr_tensor_new(ctx, CR_F32, CR_SHAPE(1));
  CHECK(cr_st_read_into(ctx, f, missing, one) == CR_ERR_ARG);
  CHECK(!strncmp(cr_ctx_error(ctx), want, strlen(want)));
  cr_ctx_clear_error(ctx);
  CHECK(cr_st_expect(ctx, f, missing, one) == CR_ERR_ARG);
  CHECK(!strncmp(cr_ctx_error(ctx), want, strlen(want)));
  cr_ctx_clear_error(ctx);
  CHECK(!cr_st_get(ctx, f, NULL) && cr_ctx_status(ctx) == CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  cr_tensor_free(one);
  cr_st_writer_free(w);
  cr_st_close(f);
  return 0;
}
