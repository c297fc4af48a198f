/* Gradient-check rows for stats.c (logsumexp, var; std, sum_axes and
 * mean_axes as compositions), order.c (min_axis, topk values) and norm.c
 * (layer_norm). */
#include <math.h>

#include "gc_rows.h"

#define FN(name, call)                                                                             \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    (void)n, (void)u;                                                                              \
    return call;                                                                                   \
  }
#define T01(x) cr_transpose(c, (x), 0, 1)
#define AX(...) (const int[]){__VA_ARGS__}, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int))

FN(f_lse, cr_logsumexp(c, in[0], -1, false))
FN(f_lse_a0_keep, cr_square(c, cr_logsumexp(c, in[0], 0, true)))
FN(f_lse_t, cr_logsumexp(c, T01(in[0]), 1, false))
/* large entries (x * 50): the max-subtracted form stays exact.  Its
 * derivatives scale as 50^order, so the finite-difference truncation
 * error of the second derivative (eps^2 * 50^4 ~ 1e-5) needs the row's
 * tolerances 1e-5 abs + 1e-4 rel; a wrong formula is off by O(1). */
FN(f_lse_big, cr_logsumexp(c, cr_mul_scalar(c, in[0], 50), 1, false))
FN(f_lse_1d, cr_logsumexp(c, in[0], 0, false))

FN(f_var, cr_var(c, in[0], AX(1), 1, false))
FN(f_var_all, cr_var(c, in[0], NULL, 0, 0, false))
FN(f_var_02_keep, cr_square(c, cr_var(c, in[0], AX(0, -1), 1, true)))
FN(f_var_t, cr_var(c, T01(in[0]), AX(0), 0, false))
/* a mean of 100 under the variance: the two-pass form loses nothing */
FN(f_var_offset, cr_var(c, cr_add_scalar(c, in[0], 100), AX(-1), 1, false))
FN(f_std, cr_std(c, in[0], AX(1), 1, false))
FN(f_std_2, cr_std(c, in[0], AX(0, 2), 0, true))

FN(f_sum_axes, cr_square(c, cr_sum_axes(c, in[0], AX(0, 2), false)))
FN(f_sum_axes_keep, cr_mul(c, cr_sum_axes(c, T01(in[0]), AX(-1), true), in[1]))
FN(f_mean_axes, cr_square(c, cr_mean_axes(c, in[0], AX(2, 1), false)))
FN(f_mean_axes_all, cr_mean_axes(c, in[0], NULL, 0, true))

/* distinct values (as the max_axis rows): offsets a permutation of 0..11 */
static const double offs12[12] = {3, 0, 7, 1, 9, 4, 11, 6, 10, 2, 8, 5};
static cr_tensor *spread12(cr_ctx *c, cr_tensor *x) {
  return cr_add(c, x, cr_from_array(c, CR_F64, cr_ndim(x), cr_shape(x), offs12));
}
FN(f_min_axis, cr_min_axis(c, spread12(c, in[0]), 1, false))
FN(f_min_axis_t, cr_square(c, cr_min_axis(c, T01(spread12(c, in[0])), 0, true)))
FN(f_topk, cr_square(c, cr_topk(c, spread12(c, in[0]), 2, 1, true, NULL)))
FN(f_topk_small, cr_mul(c, cr_topk(c, T01(spread12(c, in[0])), 2, 0, false, NULL), in[1]))

FN(f_ln, cr_layer_norm(c, in[0], 1, in[1], in[2], 1e-5))
FN(f_ln2, cr_square(c, cr_layer_norm(c, in[0], 2, in[1], NULL, 1e-5)))
FN(f_ln_plain, cr_tanh(c, cr_layer_norm(c, T01(in[0]), 1, NULL, NULL, 1e-3)))
FN(f_ln_bias, cr_mul(c, cr_layer_norm(c, in[0], 1, NULL, in[1], 1e-5), in[0]))
FN(f_ln_wt, cr_layer_norm(c, in[0], 2, T01(in[1]), T01(in[2]), 0.1))

// clang-format off
const gc_row gc_rows_stats[] = {
    {"layer_norm", "[3,5] last dim, weight and bias", 3, {2, 1, 1}, {{3, 5}, {5}, {5}}, -2, 2, 0, f_ln, 0, 0, NULL, 0},
    {"layer_norm", "[2,3,4] last 2 dims, weight only, squared", 2, {3, 2}, {{2, 3, 4}, {3, 4}}, -2, 2, 0, f_ln2, 0, 0, NULL, 0},
    {"layer_norm", "transposed [5,3]^T, no affine, eps 1e-3, tanh", 1, {2}, {{5, 3}}, -2, 2, 0, f_ln_plain, 0, 0, NULL, 0},
    {"layer_norm", "bias only, times x", 2, {2, 1}, {{3, 4}, {4}}, -2, 2, 0, f_ln_bias, 0, 0, NULL, 0},
    {"layer_norm", "[2,3,4] last 2, transposed weight and bias", 3, {3, 2, 2}, {{2, 3, 4}, {4, 3}, {4, 3}}, -2, 2, 0, f_ln_wt, 0, 0, NULL, 0},
    {"logsumexp", "[3,5] axis -1", 1, {2}, {{3, 5}}, -2, 2, 0, f_lse, 0, 0, NULL, 0},
    {"logsumexp", "[3,5] axis 0 keepdim, squared", 1, {2}, {{3, 5}}, -2, 2, 0, f_lse_a0_keep, 0, 0, NULL, 0},
    {"logsumexp", "transposed [5,3]^T axis 1", 1, {2}, {{5, 3}}, -2, 2, 0, f_lse_t, 0, 0, NULL, 0},
    {"logsumexp", "large entries (x*50)", 1, {2}, {{3, 4}}, -2, 2, 0, f_lse_big, 1e-5, 1e-4, NULL, 0},
    {"logsumexp", "1-d [6] -> [1]", 1, {1}, {{6}}, -2, 2, 0, f_lse_1d, 0, 0, NULL, 0},
    {"var", "[3,5] axis 1, unbiased", 1, {2}, {{3, 5}}, -2, 2, 0, f_var, 0, 0, NULL, 0},
    {"var", "[2,3,4] all axes, population", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_var_all, 0, 0, NULL, 0},
    {"var", "[2,3,4] axes 0,-1 keepdim, squared", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_var_02_keep, 0, 0, NULL, 0},
    {"var", "transposed [5,3]^T axis 0, population", 1, {2}, {{5, 3}}, -2, 2, 0, f_var_t, 0, 0, NULL, 0},
    {"var", "mean 100 under the variance", 1, {2}, {{3, 5}}, -2, 2, 0, f_var_offset, 0, 0, NULL, 0},
    {"var", "std [3,5] axis 1", 1, {2}, {{3, 5}}, -2, 2, 0, f_std, 0, 0, NULL, 0},
    {"var", "std [2,3,4] axes 0,2 keepdim, population", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_std_2, 0, 0, NULL, 0},
    {"sum_to", "sum_axes [2,3,4] axes 0,2, squared", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_sum_axes, 0, 0, NULL, 0},
    {"sum_to", "sum_axes transposed, axis -1 keepdim, times w", 2, {2, 2}, {{4, 3}, {3, 1}}, -2, 2, 0, f_sum_axes_keep, 0, 0, NULL, 0},
    {"sum_to", "mean_axes [2,3,4] axes 2,1, squared", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_mean_axes, 0, 0, NULL, 0},
    {"sum_to", "mean_axes all axes keepdim", 1, {3}, {{2, 3, 2}}, -2, 2, 0, f_mean_axes_all, 0, 0, NULL, 0},
    {"max_axis", "min_axis distinct [3,4] axis 1", 1, {2}, {{3, 4}}, -0.25, 0.25, 0, f_min_axis, 0, 0, NULL, 0},
    {"max_axis", "min_axis of a transposed input, keepdim, squared", 1, {2}, {{4, 3}}, -0.25, 0.25, 0, f_min_axis_t, 0, 0, NULL, 0},
    {"gather", "topk 2 largest of distinct [3,4] axis 1, squared", 1, {2}, {{3, 4}}, -0.25, 0.25, 0, f_topk, 0, 0, NULL, 0},
    {"gather", "topk 2 smallest, transposed, axis 0, times w", 2, {2, 2}, {{4, 3}, {2, 4}}, -0.25, 0.25, 0, f_topk_small, 0, 0, NULL, 0},
};
// clang-format on
GC_COUNT(gc_rows_stats);
