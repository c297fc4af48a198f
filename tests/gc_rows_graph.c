/* Gradient-check rows for the ops that the differentiable VJPs are made of
 * (broadcast.c; unslice and index_add, the adjoints of slice and
 * index_select) and for a user-defined op (chainrule/function.h). */
#include "gc_rows.h"

/* internal ops (ops/op.h), reached here through the rows only */
cr_tensor *cr__unslice(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape, int axis,
                       int64_t start, int64_t step);
cr_tensor *cr__index_add(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape, int axis,
                         const int64_t *idx);

#define FN(name, call)                                                                             \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    (void)n, (void)u;                                                                              \
    return call;                                                                                   \
  }

/* products with a fixed second input keep the checked map non-trivial */
FN(f_expand, cr_mul(c, cr_expand(c, in[0], CR_SHAPE(2, 3, 4)), in[1]))
FN(f_expand_lead, cr_square(c, cr_expand(c, in[0], CR_SHAPE(3, 4))))
FN(f_expand_t, cr_tanh(c, cr_expand(c, cr_transpose(c, in[0], 0, 1), CR_SHAPE(2, 4, 3))))
FN(f_sum_to, cr_square(c, cr_sum_to(c, in[0], CR_SHAPE(3, 1))))
FN(f_sum_to_lead, cr_mul(c, cr_sum_to(c, in[0], CR_SHAPE(4)), in[1]))
FN(f_sum_to_t, cr_square(c, cr_sum_to(c, cr_transpose(c, in[0], 0, 2), CR_SHAPE(1, 3, 1))))
FN(f_unslice, cr_mul(c, cr__unslice(c, in[0], 2, (const int64_t[]){3, 7}, 1, 1, 2), in[1]))
FN(f_unslice_t,
   cr_square(c, cr__unslice(c, cr_transpose(c, in[0], 0, 1), 2, (const int64_t[]){5, 2}, 0, 0, 2)))
static const int64_t idx_rep[5] = {3, 0, 3, 1, 0};
FN(f_index_add, cr_mul(c, cr__index_add(c, in[0], 2, (const int64_t[]){4, 3}, 0, idx_rep), in[1]))
FN(f_index_add_ax1, cr_square(c, cr__index_add(c, in[0], 2, (const int64_t[]){2, 4}, 1, idx_rep)))

/* a user-defined op: logsumexp over the last axis, the example of
 * chainrule/function.h:  y = m + log sum exp(x - m);  gx = gy exp(x - y) */
static cr_tensor *lse_forward(cr_ctx *ctx, cr_fn_ctx *fc, cr_tensor *const *in, int n, void *user) {
  (void)fc, (void)n, (void)user;
  cr_tensor *m = cr_max_axis(ctx, in[0], -1, true);
  return cr_add(ctx, m,
                cr_log(ctx, cr_sum_axis(ctx, cr_exp(ctx, cr_sub(ctx, in[0], m)), -1, true)));
}
static cr_status lse_backward(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                              void *user) {
  (void)user;
  cr_tensor *x = cr_fn_input(fc, 0), *y = cr_fn_output(fc);
  gx[0] = cr_mul(ctx, gy, cr_exp(ctx, cr_sub(ctx, x, y)));
  return cr_ctx_status(ctx);
}
static const cr_function_def logsumexp = {"logsumexp", 1, lse_forward, lse_backward};
FN(f_lse, cr_square(c, cr_function_apply(c, &logsumexp, in, 1, NULL)))
/* two inputs, the second with no gradient asked: y = a * b^2 elementwise */
static cr_tensor *ab2_forward(cr_ctx *ctx, cr_fn_ctx *fc, cr_tensor *const *in, int n, void *user) {
  (void)fc, (void)n, (void)user;
  return cr_mul(ctx, in[0], cr_square(ctx, in[1]));
}
static cr_status ab2_backward(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                              void *user) {
  (void)user;
  cr_tensor *a = cr_fn_input(fc, 0), *b = cr_fn_input(fc, 1);
  if (cr_fn_needs_grad(fc, 0))
    gx[0] = cr_mul(ctx, gy, cr_square(ctx, b));
  if (cr_fn_needs_grad(fc, 1))
    gx[1] = cr_mul(ctx, gy, cr_mul_scalar(ctx, cr_mul(ctx, a, b), 2));
  return cr_ctx_status(ctx);
}
static const cr_function_def ab2 = {"a_times_b_squared", 2, ab2_forward, ab2_backward};
FN(f_ab2, cr_tanh(c, cr_function_apply(c, &ab2, in, 2, NULL)))

/* a checkpointed segment: three steps of h = tanh(h * w + x_t), the
 * outputs every h and the last one again; recomputed in backward */
cr_status cr__checkpoint(cr_ctx *ctx, cr_status (*fn)(cr_ctx *, void *, int *, cr_tensor **),
                         void *closure, int *n_out, cr_tensor **outs);
typedef struct {
  cr_tensor *h0, *w, *xs;
} seg_closure;
static cr_status seg_fn(cr_ctx *c, void *closure, int *n_out, cr_tensor **outs) {
  seg_closure *s = closure;
  cr_tensor *h = s->h0;
  for (int t = 0; t < 3; t++) {
    cr_tensor *x = cr_reshape(c, cr_slice(c, s->xs, 0, t, t + 1, 1), CR_SHAPE(2, 3));
    h = cr_tanh(c, cr_add(c, cr_mul(c, h, s->w), x));
    outs[t] = h;
  }
  outs[3] = h; /* the same tensor twice: one row of the result */
  *n_out = 4;
  return cr_ctx_status(c);
}
static cr_tensor *f_checkpoint(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  static seg_closure keep; /* the closure must live until backward */
  seg_closure *s = &keep;
  *s = (seg_closure){in[0], in[1], in[2]};
  cr_tensor *outs[4];
  int n_out = 0;
  if (cr__checkpoint(c, seg_fn, s, &n_out, outs) != CR_OK)
    return NULL;
  cr_tensor *ys[4] = {cr_mul_scalar(c, outs[0], 0.5), outs[1], cr_square(c, outs[2]), outs[3]};
  return cr_stack(c, ys, 4, 0);
}

/* a chain of three checkpointed segments of two steps each (the last
 * output is also the state), rebuilt one at a time in backward */
cr_tensor *cr__checkpoint_chain(cr_ctx *ctx,
                                cr_status (*fn)(cr_ctx *, void *, int, cr_tensor *const *,
                                                cr_tensor **, int *, cr_tensor **),
                                void *closure, int n_seg, int n_state, cr_tensor *const *init,
                                int64_t n_rows, bool finals_first);
static cr_status chain_fn(cr_ctx *c, void *closure, int s, cr_tensor *const *in, cr_tensor **outs,
                          int *n_out, cr_tensor **next) {
  seg_closure *k = closure;
  cr_tensor *h = in[0];
  for (int t = 0; t < 2; t++) {
    cr_tensor *x =
        cr_reshape(c, cr_slice(c, k->xs, 0, 2 * s + t, 2 * s + t + 1, 1), CR_SHAPE(2, 3));
    h = cr_tanh(c, cr_add(c, cr_mul(c, h, k->w), x));
    outs[t] = h;
  }
  next[0] = h;
  *n_out = 2;
  return cr_ctx_status(c);
}
static cr_tensor *f_chain(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  static seg_closure keep;
  keep = (seg_closure){in[0], in[1], in[2]};
  cr_tensor *Y = cr__checkpoint_chain(c, chain_fn, &keep, 3, 1, in, 6, true);
  return Y ? cr_mul(c, Y, in[3]) : NULL; /* [7,2,3]: six outputs and the final state */
}

/* a fused chain (an LSTM cell's c' and h' in one):
 *   c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  y = sigmoid(o) * tanh(c') */
static cr_tensor *fused_cell(cr_ctx *c, cr_tensor *const *in) {
  cr_fused *f = cr_fused_new(4); /* slots: i, f, g, c; o is i (a slot read twice) */
  const int si = cr_fused_op(f, "sigmoid", 0, -1, 0, 0),
            sf = cr_fused_op(f, "sigmoid", 1, -1, 0, 0);
  const int sg = cr_fused_op(f, "tanh", 2, -1, 0, 0);
  const int c2 = cr_fused_op(f, "add", cr_fused_op(f, "mul", sf, 3, 0, 0),
                             cr_fused_op(f, "mul", si, sg, 0, 0), 0, 0);
  cr_fused_op(f, "mul", si, cr_fused_op(f, "tanh", c2, -1, 0, 0), 0, 0);
  cr_tensor *y = cr_fused_apply(c, f, in);
  cr_fused_free(f);
  return y;
}
static cr_tensor *f_fused(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  return fused_cell(c, in);
}
/* the same over a transposed input (strided along the rows) */
static cr_tensor *f_fused_strided(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *x[4] = {in[0], cr_transpose(c, in[1], 0, 1), in[2], in[3]};
  return fused_cell(c, x);
}

const gc_row gc_rows_graph[] = {
    {"expand",
     "[3,1] to [2,3,4], times w",
     2,
     {2, 3},
     {{3, 1}, {2, 3, 4}},
     -1,
     1,
     0,
     f_expand,
     0,
     0,
     NULL,
     0},
    {"expand",
     "[4] to [3,4] (new leading dim), squared",
     1,
     {1},
     {{4}},
     -1,
     1,
     0,
     f_expand_lead,
     0,
     0,
     NULL,
     0},
    {"expand",
     "transposed [3,4]^T to [2,4,3], tanh",
     1,
     {2},
     {{3, 4}},
     -1,
     1,
     0,
     f_expand_t,
     0,
     0,
     NULL,
     0},
    {"sum_to", "[3,4] to [3,1], squared", 1, {2}, {{3, 4}}, -1, 1, 0, f_sum_to, 0, 0, NULL, 0},
    {"sum_to",
     "[2,3,4] to [4], times w",
     2,
     {3, 1},
     {{2, 3, 4}, {4}},
     -1,
     1,
     0,
     f_sum_to_lead,
     0,
     0,
     NULL,
     0},
    {"sum_to",
     "transposed [4,3,2] to [1,3,1], squared",
     1,
     {3},
     {{2, 3, 4}},
     -1,
     1,
     0,
     f_sum_to_t,
     0,
     0,
     NULL,
     0},
    {"unslice",
     "[3,3] into [3,7] at 1::2 of axis 1, times w",
     2,
     {2, 2},
     {{3, 3}, {3, 7}},
     -1,
     1,
     0,
     f_unslice,
     0,
     0,
     NULL,
     0},
    {"unslice",
     "transposed [2,3]^T into [5,2] at 0::2, squared",
     1,
     {2},
     {{2, 3}},
     -1,
     1,
     0,
     f_unslice_t,
     0,
     0,
     NULL,
     0},
    {"index_add",
     "[5,3] rows into [4,3] at 3,0,3,1,0, times w",
     2,
     {2, 2},
     {{5, 3}, {4, 3}},
     -1,
     1,
     0,
     f_index_add,
     0,
     0,
     NULL,
     0},
    {"index_add",
     "[2,5] columns into [2,4], squared",
     1,
     {2},
     {{2, 5}},
     -1,
     1,
     0,
     f_index_add_ax1,
     0,
     0,
     NULL,
     0},
    {"function",
     "user op: logsumexp of [3,5], squared",
     1,
     {2},
     {{3, 5}},
     -2,
     2,
     0,
     f_lse,
     0,
     0,
     NULL,
     0},
    {"checkpoint",
     "3 steps of tanh(h w + x_t) recomputed, an output twice",
     3,
     {2, 2, 3},
     {{2, 3}, {2, 3}, {3, 2, 3}},
     -1,
     1,
     0,
     f_checkpoint,
     0,
     0,
     NULL,
     0},
    {"checkpoint_chain",
     "3 segments of 2 steps of tanh(h w + x_t), times w",
     4,
     {2, 2, 3, 3},
     {{2, 3}, {2, 3}, {6, 2, 3}, {7, 2, 3}},
     -1,
     1,
     0,
     f_chain,
     0,
     0,
     NULL,
     0},
    {"function",
     "user op of two inputs a*b^2, tanh",
     2,
     {2, 2},
     {{2, 3}, {2, 3}},
     -1,
     1,
     0,
     f_ab2,
     0,
     0,
     NULL,
     0},
    {"fused",
     "an LSTM cell's c' and h' as one chain",
     4,
     {2, 2, 2, 2},
     {{3, 7}, {3, 7}, {3, 7}, {3, 7}},
     -2,
     2,
     0,
     f_fused,
     0,
     0,
     NULL,
     0},
    {"fused",
     "one input transposed (strided rows)",
     4,
     {2, 2, 2, 2},
     {{3, 7}, {7, 3}, {3, 7}, {3, 7}},
     -2,
     2,
     0,
     f_fused_strided,
     0,
     0,
     NULL,
     0},
};
GC_COUNT(gc_rows_graph);
