/* Gradient-check rows for compare.c (where, masked_fill; the comparisons
 * make constants and have no VJP) and for the index ops of index.c and
 * scan.c. */
#include <math.h>

#include "gc_rows.h"

#define FN(name, call)                                                         \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {    \
    (void)n, (void)u;                                                          \
    return call;                                                               \
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
FN(f_masked_fill_t, cr_tanh(c, cr_masked_fill(c, T01(in[0]), MASK(c, CR_SHAPE(3, 1), mask3),
                                              2.0)))

// clang-format off
const gc_row gc_rows_select[] = {
    {"where", "[3,4] mask, a, b", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_where, 0, 0, NULL, 0},
    {"where", "mask [3,1], a [4,3]^T, b [4] broadcast", 2, {2, 1}, {{4, 3}, {4}}, -2, 2, 0, f_where_bc, 0, 0, NULL, 0},
    {"where", "mask a > b of the inputs: where(a > b, a^2, b)", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_where_cmp, 0, 0, NULL, 0},
    {"where", "masked_fill [3,4] by mask [4], times x", 1, {2}, {{3, 4}}, -2, 2, 0, f_masked_fill, 0, 0, NULL, 0},
    {"where", "masked_fill of a transposed input, mask [3,1], tanh", 1, {2}, {{4, 3}}, -2, 2, 0, f_masked_fill_t, 0, 0, NULL, 0},
};
// clang-format on
GC_COUNT(gc_rows_select);
