/* Gradient-check rows for shape.c (slice, concat, stack, cast; split and
 * chunk through slice) and gather.c (index_select, embedding). */
#include "gc_rows.h"

#define FN(name, call)                                                                             \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    (void)n, (void)u;                                                                              \
    return call;                                                                                   \
  }

/* ---- slice */
/* [3,7] axis -1, -6:7:2 -> columns 1,3,5 */
FN(f_slice_step, cr_slice(c, in[0], -1, -6, 7, 2))
/* [4,5]^T = [5,4], rows 1:5:2 of the strided view */
FN(f_slice_t, cr_slice(c, cr_transpose(c, in[0], 0, 1), 0, 1, 5, 2))
/* rows 0:2 and 1:3 of [3,4] overlap in row 1, which gets both gradients */
FN(f_slice_twice, cr_add(c, cr_slice(c, in[0], 0, 0, 2, 1), cr_slice(c, in[0], 0, 1, 3, 1)))
/* middle axis of [2,4,3], stop past the end clamps: 1:100 -> 1..3; then
 * square so the gradient depends on the values */
/* slices whose gradients are views into the input's gradient (their
 * consumers write through strides): every-other column, a slice of a
 * slice, a slice of a transposed input, overlapping pieces */
FN(f_slice_view_step, cr_tanh(c, cr_slice(c, in[0], 1, 0, 7, 2)))
FN(f_slice_view_nested, cr_mul(c, cr_slice(c, cr_slice(c, in[0], 0, 1, 4, 1), 1, 1, 6, 2),
                               cr_slice(c, cr_slice(c, in[0], 0, 0, 3, 1), 1, 0, 3, 1)))
FN(f_slice_view_t, cr_exp(c, cr_slice(c, cr_transpose(c, in[0], 0, 1), 0, 1, 4, 1)))
FN(f_slice_view_overlap, cr_mul(c, cr_sigmoid(c, cr_slice(c, in[0], 0, 0, 3, 1)),
                                cr_tanh(c, cr_slice(c, in[0], 0, 1, 4, 1))))
FN(f_slice_mid, cr_square(c, cr_slice(c, in[0], 1, 1, 100, 1)))

/* ---- concat and stack */
FN(f_cat0, cr_concat(c, in, 3, 0))
FN(f_cat_neg, cr_concat(c, in, 2, -1))
/* [2,3,4] and ([2,4,2] transposed 1,2 = [2,2,4]) along axis 1 -> [2,5,4] */
static cr_tensor *f_cat_t(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *xs[2] = {in[0], cr_transpose(c, in[1], 1, 2)};
  return cr_concat(c, xs, 2, 1);
}
/* the same tensor twice, times a second input: x's gradient sums both */
static cr_tensor *f_cat_same(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *xs[2] = {in[0], in[0]};
  return cr_mul(c, cr_concat(c, xs, 2, 0), in[1]);
}
/* an intermediate twice and a value made from it: the first of the
 * stack's contributions to t's gradient is written (fresh), the second
 * and the product's are added */
static cr_tensor *f_stack_mid(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *t = cr_tanh(c, in[0]);
  cr_tensor *xs[3] = {t, t, cr_mul(c, t, in[1])};
  return cr_square(c, cr_stack(c, xs, 3, 0));
}
static cr_tensor *f_cat_mid(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *t = cr_tanh(c, in[0]);
  cr_tensor *xs[3] = {t, cr_mul(c, t, in[1]), t};
  return cr_square(c, cr_concat(c, xs, 3, 1));
}
FN(f_stack0, cr_stack(c, in, 3, 0))
FN(f_stack1, cr_stack(c, in, 2, 1))
FN(f_stack_last, cr_stack(c, in, 2, -1))
FN(f_stack_neg3, cr_stack(c, in, 2, -3))
/* a transposed input stacked with a plain one, then squared */
static cr_tensor *f_stack_t(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *xs[2] = {cr_transpose(c, in[0], 0, 1), in[1]};
  return cr_square(c, cr_stack(c, xs, 2, 1));
}

/* ---- split and chunk (slice nodes); the pieces are combined so each one
 * gets a different gradient */
static cr_tensor *f_split(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *p[3];
  if (cr_split(c, in[0], 1, (const int64_t[]){2, 3, 2}, 3, p) != CR_OK)
    return NULL;
  cr_tensor *xs[2] = {cr_mul(c, p[0], p[2]), cr_tanh(c, p[1])}; /* [3,2], [3,3] */
  return cr_concat(c, xs, 2, 1);
}
/* [2,8] into 4 chunks [2,2]: (c0 * c1) * (c2 + c3^2) */
static cr_tensor *f_chunk(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *p[4];
  if (cr_chunk(c, in[0], 4, 1, p) != CR_OK)
    return NULL;
  return cr_mul(c, cr_mul(c, p[0], p[1]), cr_add(c, p[2], cr_square(c, p[3])));
}
/* [6,2]^T = [2,6] cut along -1 into 2 strided pieces [2,3]: c0 * exp(c1) */
static cr_tensor *f_chunk_t(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *p[2];
  if (cr_chunk(c, cr_transpose(c, in[0], 0, 1), 2, -1, p) != CR_OK)
    return NULL;
  return cr_mul(c, p[0], cr_exp(c, p[1]));
}

/* ---- index_select and embedding */
/* rows 4 and 1 of [5,3] are picked twice; squared so the gradient is
 * 2 x times the number of picks */
static cr_tensor *f_isel(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  static const int64_t idx[5] = {4, 1, 4, 0, 1};
  return cr_square(c, cr_index_select(c, in[0], 0, idx, 5));
}
/* columns of a transposed [4,5] (= [5,4]) along axis 1, one repeated */
static cr_tensor *f_isel_t(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  static const int64_t idx[3] = {3, 3, 0};
  return cr_mul(c, cr_index_select(c, cr_transpose(c, in[0], 0, 1), 1, idx, 3), in[1]);
}
/* weight [6,4], ids [2,3] with id 5 three times and 0 twice -> [2,3,4] */
static cr_tensor *f_emb(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  static const int64_t ids[6] = {5, 0, 5, 2, 0, 5};
  return cr_square(c, cr_embedding(c, in[0], ids, CR_SHAPE(2, 3)));
}
/* a strided weight: [4,6]^T = [6,4] */
static cr_tensor *f_emb_t(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  static const int64_t ids[4] = {1, 1, 3, 5};
  return cr_square(c, cr_embedding(c, cr_transpose(c, in[0], 0, 1), ids, CR_SHAPE(4)));
}

/* ---- cast */
/* x (f64, transposed) -> x32 = cast(x, f32) -> a, b = cast(x32, f64) twice;
 * y = [3 a ; b].  x32's gradient is the sum of both cast VJPs, so an
 * overwrite instead of an add shows, and the full Jacobian (24 outputs)
 * checks the transposed layout.
 * Tolerance: the f32 step rounds x to 24 bits, so the central difference
 * (f(x+h) - f(x-h)) / 2h with h = 1e-6 is off by up to 3 ulp_f32(x) / 2h,
 * about 0.2 |x| for |x| near 1 — no finite-difference check in float64
 * could pass.  Hence x is drawn from [-1e-4, 1e-4] (ulp_f32 <= 7.3e-12,
 * error <= 1.1e-5) and the row uses atol = rtol = 1e-4; a wrong VJP is
 * still off by at least 1. */
static cr_tensor *f_cast(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *x32 = cr_cast(c, cr_transpose(c, in[0], 0, 1), CR_F32);
  cr_tensor *xs[2] = {cr_mul_scalar(c, cr_cast(c, x32, CR_F64), 3), cr_cast(c, x32, CR_F64)};
  return cr_concat(c, xs, 2, 0);
}

const gc_row gc_rows_shape[] = {
    {"slice",
     "step 2, negative start -6:7:2 on axis -1",
     1,
     {2},
     {{3, 7}},
     -1,
     1,
     0,
     f_slice_step,
     0,
     0,
     NULL,
     0},
    {"slice",
     "of a transposed input, step 2",
     1,
     {2},
     {{4, 5}},
     -1,
     1,
     0,
     f_slice_t,
     0,
     0,
     NULL,
     0},
    {"slice",
     "gradient as a strided view: tanh of every other column",
     1,
     {2},
     {{3, 7}},
     -1,
     1,
     0,
     f_slice_view_step,
     0,
     0,
     NULL,
     0},
    {"slice",
     "gradient as a view: slice of a slice, times another slice",
     1,
     {2},
     {{5, 7}},
     -1,
     1,
     0,
     f_slice_view_nested,
     0,
     0,
     NULL,
     0},
    {"slice",
     "gradient as a view: exp of a slice of a transposed input",
     1,
     {2},
     {{4, 5}},
     -1,
     1,
     0,
     f_slice_view_t,
     0,
     0,
     NULL,
     0},
    {"slice",
     "gradient as a view: overlapping slices through sigmoid, tanh",
     1,
     {2},
     {{5, 3}},
     -1,
     1,
     0,
     f_slice_view_overlap,
     0,
     0,
     NULL,
     0},
    {"slice",
     "used twice, overlapping rows 0:2 + 1:3",
     1,
     {2},
     {{3, 4}},
     -1,
     1,
     0,
     f_slice_twice,
     0,
     0,
     NULL,
     0},
    {"slice",
     "3-d middle axis, stop clamped",
     1,
     {3},
     {{2, 4, 3}},
     -1,
     1,
     0,
     f_slice_mid,
     0,
     0,
     NULL,
     0},
    {"concat",
     "3 inputs axis 0 [2,3]+[4,3]+[1,3]",
     3,
     {2, 2, 2},
     {{2, 3}, {4, 3}, {1, 3}},
     -1,
     1,
     0,
     f_cat0,
     0,
     0,
     NULL,
     0},
    {"concat",
     "axis -1 [3,2]+[3,4]",
     2,
     {2, 2},
     {{3, 2}, {3, 4}},
     -1,
     1,
     0,
     f_cat_neg,
     0,
     0,
     NULL,
     0},
    {"concat",
     "3-d axis 1, second input transposed",
     2,
     {3, 3},
     {{2, 3, 4}, {2, 4, 2}},
     -1,
     1,
     0,
     f_cat_t,
     0,
     0,
     NULL,
     0},
    {"concat",
     "same input twice, times w",
     2,
     {2, 2},
     {{2, 3}, {4, 3}},
     -1,
     1,
     0,
     f_cat_same,
     0,
     0,
     NULL,
     0},
    {"stack",
     "3 inputs axis 0",
     3,
     {2, 2, 2},
     {{2, 3}, {2, 3}, {2, 3}},
     -1,
     1,
     0,
     f_stack0,
     0,
     0,
     NULL,
     0},
    {"stack",
     "tanh(x) twice and tanh(x)*w, squared",
     2,
     {2, 2},
     {{2, 3}, {2, 3}},
     -1,
     1,
     0,
     f_stack_mid,
     0,
     0,
     NULL,
     0},
    {"concat",
     "tanh(x), tanh(x)*w, tanh(x) axis 1, squared",
     2,
     {2, 2},
     {{2, 3}, {2, 3}},
     -1,
     1,
     0,
     f_cat_mid,
     0,
     0,
     NULL,
     0},
    {"stack", "axis 1 (middle)", 2, {2, 2}, {{2, 3}, {2, 3}}, -1, 1, 0, f_stack1, 0, 0, NULL, 0},
    {"stack",
     "axis -1 (new last)",
     2,
     {2, 2},
     {{2, 3}, {2, 3}},
     -1,
     1,
     0,
     f_stack_last,
     0,
     0,
     NULL,
     0},
    {"stack",
     "axis -3 (= 0 of the 3-d result)",
     2,
     {2, 2},
     {{3, 2}, {3, 2}},
     -1,
     1,
     0,
     f_stack_neg3,
     0,
     0,
     NULL,
     0},
    {"stack",
     "transposed input, squared",
     2,
     {2, 2},
     {{3, 2}, {2, 3}},
     -1,
     1,
     0,
     f_stack_t,
     0,
     0,
     NULL,
     0},
    {"slice",
     "split [3,7] axis 1 into 2,3,2: p0*p2 | tanh(p1)",
     1,
     {2},
     {{3, 7}},
     -1,
     1,
     0,
     f_split,
     0,
     0,
     NULL,
     0},
    {"slice",
     "chunk [2,8] into 4: c0*c1*(c2+c3^2)",
     1,
     {2},
     {{2, 8}},
     -1,
     1,
     0,
     f_chunk,
     0,
     0,
     NULL,
     0},
    {"slice",
     "chunk of a transposed input: c0*exp(c1)",
     1,
     {2},
     {{6, 2}},
     -1,
     1,
     0,
     f_chunk_t,
     0,
     0,
     NULL,
     0},
    {"index_select",
     "axis 0, repeated indices 4,1,4,0,1, squared",
     1,
     {2},
     {{5, 3}},
     -1,
     1,
     0,
     f_isel,
     0,
     0,
     NULL,
     0},
    {"index_select",
     "axis 1 of a transposed input, repeated, times w",
     2,
     {2, 2},
     {{4, 5}, {5, 3}},
     -1,
     1,
     0,
     f_isel_t,
     0,
     0,
     NULL,
     0},
    {"embedding",
     "[6,4] ids [2,3] repeated, squared",
     1,
     {2},
     {{6, 4}},
     -1,
     1,
     0,
     f_emb,
     0,
     0,
     NULL,
     0},
    {"embedding",
     "transposed weight, repeated id",
     1,
     {2},
     {{4, 6}},
     -1,
     1,
     0,
     f_emb_t,
     0,
     0,
     NULL,
     0},
    /* tolerances 1e-4: see f_cast */
    {"cast",
     "f64->f32->f64 twice, transposed, |x| <= 1e-4",
     1,
     {2},
     {{3, 4}},
     -1e-4,
     1e-4,
     0,
     f_cast,
     1e-4,
     1e-4,
     "its seed v is O(1), where f32 rounding swamps a 1e-6 step: next row",
     0},
    /* the same at |x| ~ 1 with a step of 1e-2: the map is linear, so a long
     * step has no truncation error and the rounding error is 3 ulp_f32 / 2h
     * ~ 2e-5 */
    {"cast",
     "f64->f32->f64 twice, transposed, |x| <= 2, step 1e-2",
     1,
     {2},
     {{3, 4}},
     -2,
     2,
     0,
     f_cast,
     1e-4,
     1e-4,
     NULL,
     1e-2},
};
GC_COUNT(gc_rows_shape);
