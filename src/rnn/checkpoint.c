/* checkpoint.c — an rnn's parameters into a safetensors writer and back
 * (cr_rnn_save / cr_rnn_load, see rnn.h), through the public accessors:
 * the names are PyTorch's, so a file written by torch.save_file of a
 * state dict loads as it is. */
#include "chainrule/rnn.h"
#include "internal.h"

cr_status cr_rnn_save(cr_ctx *ctx, const cr_rnn *r, cr_st_writer *w, const char *prefix) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!r || !w)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_save: rnn or writer is NULL");
  char name[128];
  for (int i = 0; i < cr_rnn_num_params(r); i++) {
    snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", cr_rnn_param_name(r, i));
    cr_status st = cr_st_writer_add(ctx, w, name, cr_rnn_param(r, i));
    if (st != CR_OK)
      return st;
  }
  return CR_OK;
}

cr_status cr_rnn_load(cr_ctx *ctx, cr_rnn *r, const cr_st_file *f, const char *prefix) {
  if (!ctx)
    return CR_ERR_ARG;
  if (!r || !f)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "rnn_load: rnn or file is NULL");
  char name[128];
  /* check everything first: a mismatch must leave the layer as it was */
  for (int i = 0; i < cr_rnn_num_params(r); i++) {
    snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", cr_rnn_param_name(r, i));
    cr_status st = cr_st_expect(ctx, f, name, cr_rnn_param(r, i));
    if (st != CR_OK)
      return st;
  }
  for (int i = 0; i < cr_rnn_num_params(r); i++) {
    snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", cr_rnn_param_name(r, i));
    cr_status st = cr_st_read_into(ctx, f, name, cr_rnn_param(r, i));
    if (st != CR_OK)
      return st;
  }
  return CR_OK;
}
