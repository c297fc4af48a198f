/* Gradient-check rows for compare.c (where, masked_fill; the comparisons
 * make constants and have no VJP) and for the index ops of index.c and
 * scan.c. */
#include <math.h>

#include "gc_rows.h"

#define FN(name, call)                                                                             \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    (void)n, (void)u;                                                                              \
    return call;                                                                                   \
  }
#define T01(x) cr_transpose(c, (x), 0, 1)

/* fixed 0/1 patterns (a mask is data, not an input) */
static const double mask12[12] = {1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0};
static const double mask3[3] = {0, 1, 0};
static const double mask4[4] = {1, 0, 1, 1};
#define MASK(c, shape, v) cr_from_array(c, CR_F64, shape, v)

FN(f_where, cr_where(c, MASK(c, CR_SHAPE(3, 4), mask12), in[0], in[1]))
/* mask [3,1], a transposed [4,3]^T, b [4]: all three broadcast */
FN(f_where_bc, cr_where(c, MASK(c, CR_SHAPE(3, 1), mask3), T01(in[0]), in[1]))
/* the mask from a comparison of the inputs themselves: where(a > b, a*a, b) */
FN(f_where_cmp, cr_where(c, cr_gt(c, in[0], in[1]), cr_square(c, in[0]), in[1]))
FN(f_masked_fill, cr_mul(c, cr_masked_fill(c, in[0], MASK(c, CR_SHAPE(4), mask4), -3.5), in[0]))
FN(f_masked_fill_t, cr_tanh(c, cr_masked_fill(c, T01(in[0]), MASK(c, CR_SHAPE(3, 1), mask3), 2.0)))

/* ---- index.c: gather, scatter_add, flip and the compositions */
#define IDX(c, shape, v) cr_from_i64(c, shape, v)
static const int64_t g_idx15[15] = {0, 3, 3, 1, 2, 2, 2, 0, 1, 3, 1, 0, 0, 3, 3};
static const int64_t g_idx8[8] = {2, 0, 0, 1, 1, 2, 2, 0};
static const int64_t g_idx12[12] = {3, 0, 3, 1, 2, 2, 0, 1, 1, 3, 0, 0};
/* [3,4] axis 1 by [3,5] with repeats, squared */
FN(f_gather, cr_square(c, cr_gather(c, in[0], 1, IDX(c, CR_SHAPE(3, 5), g_idx15))))
/* transposed [4,3]^T axis 0 by [2,4] (fewer rows than x), times w [2,4] */
FN(f_gather_t, cr_mul(c, cr_gather(c, T01(in[0]), 0, IDX(c, CR_SHAPE(2, 4), g_idx8)), in[1]))
/* 3-d [2,3,4] axis -1 by [2,2,3] (smaller off the axis too), tanh */
FN(f_gather_3d, cr_tanh(c, cr_gather(c, in[0], -1, IDX(c, CR_SHAPE(2, 2, 3), g_idx12))))
/* x [3,4], src [3,5] added into columns, squared: both inputs get gradients */
FN(f_scatter, cr_square(c, cr_scatter_add(c, in[0], 1, IDX(c, CR_SHAPE(3, 5), g_idx15), in[1])))
/* x [3,4] rows by a [2,4] index, src transposed [4,2]^T, times x */
FN(f_scatter_t,
   cr_mul(c, cr_scatter_add(c, in[0], 0, IDX(c, CR_SHAPE(2, 4), g_idx8), T01(in[1])), in[0]))
FN(f_flip0, cr_square(c, cr_flip(c, in[0], (const int[]){0}, 1)))
FN(f_flip02, cr_mul(c, cr_flip(c, in[0], (const int[]){0, -1}, 2), in[1]))
FN(f_flip_t, cr_tanh(c, cr_flip(c, T01(in[0]), (const int[]){1}, 1)))
FN(f_cumsum, cr_cumsum(c, in[0], 1))
FN(f_cumsum_3d, cr_square(c, cr_cumsum(c, in[0], 0)))
FN(f_cumsum_t, cr_tanh(c, cr_cumsum(c, T01(in[0]), -1)))
FN(f_pad, cr_mul(c, cr_pad(c, in[0], (const int64_t[]){1, 2}, 2, 0), in[1]))
FN(f_pad_value, cr_tanh(c, cr_pad(c, in[0], (const int64_t[]){1, 0, 2, 1}, 4, -1.5)))
FN(f_pad_neg, cr_square(c, cr_pad(c, T01(in[0]), (const int64_t[]){-1, 2, 1, -1}, 4, 0.5)))
FN(f_repeat, cr_square(c, cr_repeat(c, in[0], (const int64_t[]){2, 1, 3}, 3)))
FN(f_squeeze, cr_mul(c, cr_squeeze(c, in[0], 1), in[1]))
FN(f_unsqueeze, cr_mul(c, cr_unsqueeze(c, in[0], -1), in[1]))
FN(f_select, cr_square(c, cr_select(c, in[0], 1, -1)))
FN(f_select_t, cr_tanh(c, cr_select(c, T01(in[0]), 0, 2)))
FN(f_bcast_to, cr_square(c, cr_broadcast_to(c, in[0], CR_SHAPE(2, 3, 4))))
static const int64_t sel_idx[5] = {4, 1, 4, 0, 1};
static const int64_t emb_ids[6] = {5, 0, 5, 2, 0, 5};
FN(f_isel_t, cr_square(c, cr_index_select_t(c, in[0], 0, IDX(c, CR_SHAPE(5), sel_idx))))
FN(f_emb_t, cr_square(c, cr_embedding_t(c, in[0], IDX(c, CR_SHAPE(2, 3), emb_ids))))

// clang-format off
const gc_row gc_rows_select[] = {
    {"where", "[3,4] mask, a, b", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_where, 0, 0, NULL, 0},
    {"where", "mask [3,1], a [4,3]^T, b [4] broadcast", 2, {2, 1}, {{4, 3}, {4}}, -2, 2, 0, f_where_bc, 0, 0, NULL, 0},
    {"where", "mask a > b of the inputs: where(a > b, a^2, b)", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_where_cmp, 0, 0, NULL, 0},
    {"where", "masked_fill [3,4] by mask [4], times x", 1, {2}, {{3, 4}}, -2, 2, 0, f_masked_fill, 0, 0, NULL, 0},
    {"where", "masked_fill of a transposed input, mask [3,1], tanh", 1, {2}, {{4, 3}}, -2, 2, 0, f_masked_fill_t, 0, 0, NULL, 0},
    {"gather", "[3,4] axis 1 by [3,5], repeats, squared", 1, {2}, {{3, 4}}, -2, 2, 0, f_gather, 0, 0, NULL, 0},
    {"gather", "transposed [4,3]^T axis 0 by [2,4], times w", 2, {2, 2}, {{4, 3}, {2, 4}}, -2, 2, 0, f_gather_t, 0, 0, NULL, 0},
    {"gather", "[2,3,4] axis -1 by [2,2,3], tanh", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_gather_3d, 0, 0, NULL, 0},
    {"scatter_add", "x [3,4] + src [3,5] into columns, squared", 2, {2, 2}, {{3, 4}, {3, 5}}, -2, 2, 0, f_scatter, 0, 0, NULL, 0},
    {"scatter_add", "rows, transposed src [4,2]^T, times x", 2, {2, 2}, {{3, 4}, {4, 2}}, -2, 2, 0, f_scatter_t, 0, 0, NULL, 0},
    {"flip", "[3,4] axis 0, squared", 1, {2}, {{3, 4}}, -2, 2, 0, f_flip0, 0, 0, NULL, 0},
    {"flip", "[2,3,4] axes 0,-1, times w", 2, {3, 3}, {{2, 3, 4}, {2, 3, 4}}, -2, 2, 0, f_flip02, 0, 0, NULL, 0},
    {"flip", "transposed [4,3]^T axis 1, tanh", 1, {2}, {{4, 3}}, -2, 2, 0, f_flip_t, 0, 0, NULL, 0},
    {"cumsum", "[3,4] axis 1", 1, {2}, {{3, 4}}, -2, 2, 0, f_cumsum, 0, 0, NULL, 0},
    {"cumsum", "[2,3,4] axis 0, squared", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_cumsum_3d, 0, 0, NULL, 0},
    {"cumsum", "transposed [4,3]^T axis -1, tanh", 1, {2}, {{4, 3}}, -2, 2, 0, f_cumsum_t, 0, 0, NULL, 0},
    {"unslice", "pad [3,4] last axis by 1,2, times w", 2, {2, 2}, {{3, 4}, {3, 7}}, -2, 2, 0, f_pad, 0, 0, NULL, 0},
    {"unslice", "pad [2,3,4] two axes, value -1.5, tanh", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_pad_value, 0, 0, NULL, 0},
    {"unslice", "pad transposed, negative sizes, value 0.5, squared", 1, {2}, {{4, 3}}, -2, 2, 0, f_pad_neg, 0, 0, NULL, 0},
    {"concat", "repeat [2,3] by 2,1,3 -> [2,2,9], squared", 1, {2}, {{2, 3}}, -2, 2, 0, f_repeat, 0, 0, NULL, 0},
    {"reshape", "squeeze [3,1,4] axis 1, times w", 2, {3, 2}, {{3, 1, 4}, {3, 4}}, -2, 2, 0, f_squeeze, 0, 0, NULL, 0},
    {"reshape", "unsqueeze [3,4] axis -1, times w [3,4,2]", 2, {2, 3}, {{3, 4}, {3, 4, 2}}, -2, 2, 0, f_unsqueeze, 0, 0, NULL, 0},
    {"select", "select [3,4,2] axis 1 index -1, squared", 1, {3}, {{3, 4, 2}}, -2, 2, 0, f_select, 0, 0, NULL, 0},
    {"select", "select of a transposed input, tanh", 1, {2}, {{4, 3}}, -2, 2, 0, f_select_t, 0, 0, NULL, 0},
    {"expand", "broadcast_to [3,1] -> [2,3,4], squared", 1, {2}, {{3, 1}}, -2, 2, 0, f_bcast_to, 0, 0, NULL, 0},
    {"index_select", "by an i64 tensor, repeated, squared", 1, {2}, {{5, 3}}, -2, 2, 0, f_isel_t, 0, 0, NULL, 0},
    {"embedding", "by an i64 tensor [2,3], squared", 1, {2}, {{6, 4}}, -2, 2, 0, f_emb_t, 0, 0, NULL, 0},
};
// clang-format on
GC_COUNT(gc_rows_select);
