/* checkpoint.c — an rnn's parameters into a safetensors writer and back
 * (cr_rnn_save / cr_rnn_load, see rnn.h), through the public accessors:
 * the names are PyTorch's, so a file written by torch.save_file of a
 * state dict loads as it is. */
#include "chainrule/rnn.h"
#include "internal.h"

/* prefix + the name of parameter i into name[n]; false and an error naming
 * op if it does not fit (a cut name could name another tensor). */
static bool param_key(cr_ctx *ctx, const char *op, const cr_rnn *r, const char *prefix, int i,
                      char *name, size_t n) {
  int len = snprintf(name, n, "%s%s", prefix ? prefix : "", cr_rnn_param_name(r, i));
  if (len >= 0 && (size_t)len < n)
    return true;
  cr__fail(ctx, CR_ERR_ARG, "%s: prefix '%.40s...' is too long", op, prefix);
  return false;
}

cr_status cr_rnn_save(cr_ctx *ctx, const cr_rnn *r, cr_st_writer *w, const char *prefix) {
  if (!ctx)
    return CR_ERR_ARG;
  if (cr_ctx_status(ctx) != CR_OK)
    return cr_ctx_status(ctx);
  if (!r || !w)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_save: rnn or writer is NULL");
  char name[256];
  for (int i = 0; i < cr_rnn_num_params(r); i++) {
    if (!param_key(ctx, "rnn_save", r, prefix, i, name, sizeof name))
      return cr_ctx_status(ctx);
    cr_status st = cr_st_writer_add(ctx, w, name, cr_rnn_param(r, i));
    if (st != CR_OK)
      return st;
  }
  return CR_OK;
}

/* CR_OK if the file's tensor name, read as like's dtype (an F64 value may
 * overflow F32), holds only finite values; else an error naming it.  Reads
 * it into a scratch tensor shaped like like (one at a time). */
static cr_status finite_in_file(cr_ctx *ctx, const cr_st_file *f, const char *name,
                                const cr_tensor *like) {
  cr_tensor *t = cr_tensor_new(ctx, cr_dtype_of(like), cr_ndim(like), cr_shape(like));
  bool finite = t && cr_st_read_into(ctx, f, name, t) == CR_OK && cr_all_finite(t);
  cr_tensor_free(t);
  if (finite || cr_ctx_status(ctx) != CR_OK)
    return cr_ctx_status(ctx);
  return cr_ctx_set_error(ctx, CR_ERR_FORMAT,
                          "%s: tensor '%s' holds NaN or infinite values (saved from a run that "
                          "diverged?); nothing was loaded",
                          cr_st_path(f), name);
}

cr_status cr_rnn_load(cr_ctx *ctx, cr_rnn *r, const cr_st_file *f, const char *prefix) {
  if (!ctx)
    return CR_ERR_ARG;
  if (cr_ctx_status(ctx) != CR_OK)
    return cr_ctx_status(ctx);
  if (!r || !f)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_load: rnn or file is NULL");
  char name[256];
  /* check everything first (names, shapes, then values): a bad file must
   * leave the layer as it was */
  for (int i = 0; i < cr_rnn_num_params(r); i++)
    if (!param_key(ctx, "rnn_load", r, prefix, i, name, sizeof name) ||
        cr_st_expect(ctx, f, name, cr_rnn_param(r, i)) != CR_OK)
      return cr_ctx_status(ctx);
  for (int i = 0; i < cr_rnn_num_params(r); i++) {
    param_key(ctx, "rnn_load", r, prefix, i, name, sizeof name);
    if (finite_in_file(ctx, f, name, cr_rnn_param(r, i)) != CR_OK)
      return cr_ctx_status(ctx);
  }
  for (int i = 0; i < cr_rnn_num_params(r); i++) {
    param_key(ctx, "rnn_load", r, prefix, i, name, sizeof name);
    cr_status st = cr_st_read_into(ctx, f, name, cr_rnn_param(r, i));
    CR_ASSERT(st == CR_OK, "rnn_load: reading checked tensor '%s' failed", name);
  }
  return CR_OK;
}
