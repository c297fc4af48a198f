/* buckets.c — tensors cut into messages.
 *
 * A model is a few large tensors and many small ones (biases); one MPI
 * call per tensor would pay the per-message latency many times.  So the
 * targets are laid end to end, in list order, and cut every
 * bucket_bytes: a bucket holds consecutive targets (or pieces of them) of
 * one dtype.  A bucket that is a single piece is sent from the tensor's
 * own memory; the others are packed into a staging buffer and copied
 * back.  The cuts depend only on the shapes, dtypes and options, which
 * the ranks have agreed on, so every rank cuts the same buckets. */
#include <string.h>

#include "dist_impl.h"

/* One pass over the targets: count (fill false) or fill the plan. */
static int walk(cr_dist *d, cr_tensor *const *params, int n, bool grads, bool write, bool fill,
                int *n_pieces, int64_t *bytes) {
  int nb = 0, np = 0;
  cr__dist_bucket *cur = NULL, counted = {0};
  *bytes = 0;
  for (int i = 0; i < n; i++) {
    cr_tensor *t = cr__dist_target(params[i], grads);
    if (!t)
      continue;
    cr_dtype dt = cr_dtype_of(t);
    size_t es = cr_dtype_size(dt);
    int64_t cap = (int64_t)(d->opts.bucket_bytes / es), count = cr_numel(t);
    char *data = write ? cr_data(t) : (char *)cr_data_const(t);
    *bytes += count * (int64_t)es;
    for (int64_t off = 0; off < count;) {
      if (!cur || cur->dtype != dt || cur->count == cap) {
        cur = fill ? &d->buckets[nb] : &counted;
        *cur = (cr__dist_bucket){dt, 0, np, 0};
        nb++;
      }
      int64_t take = count - off < cap - cur->count ? count - off : cap - cur->count;
      if (fill)
        d->pieces[np] = (cr__dist_piece){data + off * (int64_t)es, take};
      np++;
      cur->count += take;
      cur->n_pieces++;
      off += take;
    }
  }
  *n_pieces = np;
  return nb;
}

int cr__dist_plan(cr_dist *d, cr_ctx *ctx, const char *op, cr_tensor *const *params, int n,
                  bool grads, bool write, int64_t *bytes) {
  int np;
  int nb = walk(d, params, n, grads, false, false, &np, bytes);
  size_t pc = (size_t)d->pieces_cap * sizeof *d->pieces,
         bc = (size_t)d->buckets_cap * sizeof *d->buckets;
  if (!cr__dist_reserve(ctx, op, (void **)&d->pieces, &pc, (size_t)(np + 1) * sizeof *d->pieces) ||
      !cr__dist_reserve(ctx, op, (void **)&d->buckets, &bc, (size_t)(nb + 1) * sizeof *d->buckets))
    return -1;
  d->pieces_cap = (int)(pc / sizeof *d->pieces);
  d->buckets_cap = (int)(bc / sizeof *d->buckets);
  return walk(d, params, n, grads, write, true, &np, bytes);
}

bool cr__dist_stage(cr_dist *d, cr_ctx *ctx, const char *op, bool recv) {
  /* a bucket is at most bucket_bytes; with the fixed order a rank
   * receives its chunk (at most ceil(count / N) elements) from every rank */
  size_t n = d->opts.bucket_bytes + sizeof(double);
  return cr__dist_reserve(ctx, op, &d->stage, &d->stage_cap, n) &&
         (!recv ||
          cr__dist_reserve(ctx, op, &d->recv, &d->recv_cap, n + (size_t)d->size * sizeof(double)));
}

void cr__dist_scale(void *buf, cr_dtype dt, int64_t count, double scale) {
  if (scale == 1)
    return;
  if (dt == CR_F32) {
    float *x = buf, s = (float)scale;
    for (int64_t i = 0; i < count; i++)
      x[i] *= s;
  } else {
    double *x = buf;
    for (int64_t i = 0; i < count; i++)
      x[i] *= scale;
  }
}

void *cr__dist_bucket_buf(cr_dist *d, const cr__dist_bucket *b, bool pack, double scale) {
  const cr__dist_piece *pc = d->pieces + b->first;
  if (b->n_pieces == 1) {
    if (pack)
      cr__dist_scale(pc->data, b->dtype, pc->count, scale);
    return pc->data;
  }
  if (!pack)
    return d->stage;
  size_t es = cr_dtype_size(b->dtype);
  char *dst = d->stage;
  for (int k = 0; k < b->n_pieces; k++) {
    memcpy(dst, pc[k].data, (size_t)pc[k].count * es);
    cr__dist_scale(dst, b->dtype, pc[k].count, scale);
    dst += (size_t)pc[k].count * es;
  }
  return d->stage;
}

void cr__dist_bucket_unpack(cr_dist *d, const cr__dist_bucket *b) {
  if (b->n_pieces == 1)
    return;
  const cr__dist_piece *pc = d->pieces + b->first;
  size_t es = cr_dtype_size(b->dtype);
  const char *src = d->stage;
  for (int k = 0; k < b->n_pieces; k++) {
    memcpy(pc[k].data, src, (size_t)pc[k].count * es);
    src += (size_t)pc[k].count * es;
  }
}
