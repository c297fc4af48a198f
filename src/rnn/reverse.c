/* reverse.c — the time reversal of a bidirectional layer's reverse
 * direction.  Sequence b of a padded batch is reversed within its own
 * length (as PyTorch's packed sequences are):
 *   y[t, b] = x[pi_b(t), b],   pi_b(t) = len_b - 1 - t  for t < len_b
 *                                        t               otherwise (padding)
 * pi_b is its own inverse, so the same gather takes the reverse direction's
 * outputs back to time order; padded outputs (0) stay where they are.  One
 * index_select (its gradient a scatter-add: exact) on the [T*B, F] rows, or
 * along time alone when every sequence has length T. */
#include "unroll.h"

struct cr__time_reversal {
  int64_t T, B;
  int64_t *idx; /* [T] time indices (all lengths T), or NULL */
  int64_t *row; /* [T*B] row indices of the [T*B, F] view, or NULL */
};

cr__time_reversal *cr__time_reversal_new(cr_ctx *ctx, int64_t T, int64_t B,
                                         const int64_t *lengths) {
  cr__time_reversal *r = cr__alloc(ctx, sizeof *r);
  if (!r)
    return NULL;
  *r = (cr__time_reversal){T, B, NULL, NULL};
  bool full = true;
  for (int64_t b = 0; lengths && b < B; b++)
    full &= lengths[b] == T;
  if (full) {
    if (!(r->idx = cr__alloc(ctx, (size_t)T * sizeof *r->idx)))
      return NULL;
    for (int64_t t = 0; t < T; t++)
      r->idx[t] = T - 1 - t;
    return r;
  }
  if (!(r->row = cr__alloc(ctx, (size_t)(T * B) * sizeof *r->row)))
    return NULL;
  for (int64_t t = 0; t < T; t++)
    for (int64_t b = 0; b < B; b++)
      r->row[t * B + b] = (t < lengths[b] ? lengths[b] - 1 - t : t) * B + b;
  return r;
}

cr_tensor *cr__time_reverse(cr_ctx *ctx, const cr__time_reversal *r, cr_tensor *x) {
  if (!x)
    return NULL;
  if (r->idx)
    return cr_index_select(ctx, x, 0, r->idx, r->T);
  const int64_t F = x->shape[2];
  cr_tensor *rows = cr_reshape(ctx, x, CR_SHAPE(r->T * r->B, F)); /* a copy if x is a view */
  return cr_reshape(ctx, cr_index_select(ctx, rows, 0, r->row, r->T * r->B),
                    CR_SHAPE(r->T, r->B, F));
}
