/* Gradient-check rows for reduce.c: sum, mean, sum_axis, mean_axis, max_axis. */
#include "gc_rows.h"

#define FN(name, call)                                                                             \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    (void)n, (void)u;                                                                              \
    return call;                                                                                   \
  }
#define T01(x) cr_transpose(c, (x), 0, 1)

FN(f_sum, cr_sum(c, in[0]))
FN(f_sum_t, cr_sum(c, T01(in[0])))
FN(f_mean, cr_mean(c, in[0]))
FN(f_mean_t, cr_mean(c, cr_transpose(c, in[0], 0, 2)))

FN(f_sum_a0, cr_sum_axis(c, in[0], 0, false))
FN(f_sum_a1, cr_sum_axis(c, in[0], 1, false))
FN(f_sum_am1_keep, cr_sum_axis(c, in[0], -1, true))
FN(f_sum_3d_a1, cr_sum_axis(c, in[0], 1, false))
FN(f_sum_3d_am3_keep, cr_sum_axis(c, in[0], -3, true))
FN(f_sum_1d, cr_sum_axis(c, in[0], 0, false))
FN(f_sum_t_a0, cr_sum_axis(c, T01(in[0]), 0, false))
FN(f_sum_t_am1, cr_sum_axis(c, T01(in[0]), -1, true))

FN(f_mean_a0, cr_mean_axis(c, in[0], 0, false))
FN(f_mean_am1, cr_mean_axis(c, in[0], -1, false))
FN(f_mean_3d_a2_keep, cr_mean_axis(c, in[0], 2, true))
FN(f_mean_3d_am2, cr_mean_axis(c, in[0], -2, false))
FN(f_mean_1d_keep, cr_mean_axis(c, in[0], -1, true))
FN(f_mean_t_a1, cr_mean_axis(c, T01(in[0]), 1, false))

/* max_axis with guaranteed distinct values: x in [-0.25, 0.25] plus a fixed
 * offset whose entries differ by at least 1 (a permutation of 0..23), so
 * the maximum of a line is at least 0.5 above the rest (a central
 * difference of 1e-6 cannot change the winner) and its position varies
 * from line to line. */
static const double offs24[24] = {3,  0, 7,  12, 1, 9,  4,  15, 22, 6,  10, 2,
                                  18, 5, 11, 20, 8, 13, 23, 14, 16, 17, 21, 19};
static cr_tensor *spread(cr_ctx *c, cr_tensor *x, int ndim, const int64_t *shape) {
  cr_tensor *o = cr_from_array(c, CR_F64, ndim, shape, offs24);
  return cr_add(c, x, o);
}
FN(f_max_a0, cr_max_axis(c, spread(c, in[0], CR_SHAPE(3, 4)), 0, false))
FN(f_max_a1, cr_max_axis(c, spread(c, in[0], CR_SHAPE(3, 4)), 1, false))
FN(f_max_am1_keep, cr_max_axis(c, spread(c, in[0], CR_SHAPE(3, 4)), -1, true))
FN(f_max_3d_a1, cr_max_axis(c, spread(c, in[0], CR_SHAPE(2, 3, 4)), 1, false))
FN(f_max_3d_am3_keep, cr_max_axis(c, spread(c, in[0], CR_SHAPE(2, 3, 4)), -3, true))
FN(f_max_1d, cr_max_axis(c, spread(c, in[0], CR_SHAPE(6)), 0, false))
/* transposed: the strided view itself goes into max_axis */
static cr_tensor *f_max_t(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_tensor *o = cr_from_array(c, CR_F64, CR_SHAPE(4, 3), offs24);
  cr_tensor *s = cr_add(c, in[0], o);      /* [4,3] */
  return cr_max_axis(c, T01(s), 1, false); /* [3,4] strided -> [3] */
}
FN(f_max_t2, cr_max_axis(c, T01(spread(c, in[0], CR_SHAPE(4, 3))), -2, true))

// clang-format off
const gc_row gc_rows_reduce[] = {
    {"sum", "[3,4] -> [1]", 1, {2}, {{3, 4}}, -1, 1, 0, f_sum, 0, 0, NULL, 0},
    {"sum", "transposed [4,3]^T", 1, {2}, {{4, 3}}, -1, 1, 0, f_sum_t, 0, 0, NULL, 0},
    {"mean", "[2,3,4] -> [1]", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_mean, 0, 0, NULL, 0},
    {"mean", "permuted 3-d view", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_mean_t, 0, 0, NULL, 0},

    {"sum_axis", "[3,4] axis 0", 1, {2}, {{3, 4}}, -1, 1, 0, f_sum_a0, 0, 0, NULL, 0},
    {"sum_axis", "[3,4] axis 1", 1, {2}, {{3, 4}}, -1, 1, 0, f_sum_a1, 0, 0, NULL, 0},
    {"sum_axis", "[3,4] axis -1 keepdim", 1, {2}, {{3, 4}}, -1, 1, 0, f_sum_am1_keep, 0, 0, NULL, 0},
    {"sum_axis", "[2,3,4] axis 1", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_sum_3d_a1, 0, 0, NULL, 0},
    {"sum_axis", "[2,3,4] axis -3 keepdim", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_sum_3d_am3_keep, 0,
     0, NULL, 0},
    {"sum_axis", "1-d [5] only axis -> [1]", 1, {1}, {{5}}, -1, 1, 0, f_sum_1d, 0, 0, NULL, 0},
    {"sum_axis", "transposed [4,3]^T axis 0", 1, {2}, {{4, 3}}, -1, 1, 0, f_sum_t_a0, 0, 0, NULL, 0},
    {"sum_axis", "transposed [4,3]^T axis -1 keepdim", 1, {2}, {{4, 3}}, -1, 1, 0, f_sum_t_am1, 0,
     0, NULL, 0},

    {"mean_axis", "[3,4] axis 0", 1, {2}, {{3, 4}}, -1, 1, 0, f_mean_a0, 0, 0, NULL, 0},
    {"mean_axis", "[3,4] axis -1", 1, {2}, {{3, 4}}, -1, 1, 0, f_mean_am1, 0, 0, NULL, 0},
    {"mean_axis", "[2,3,4] axis 2 keepdim", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_mean_3d_a2_keep, 0,
     0, NULL, 0},
    {"mean_axis", "[2,3,4] axis -2", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_mean_3d_am2, 0, 0, NULL, 0},
    {"mean_axis", "1-d [5] axis -1 keepdim", 1, {1}, {{5}}, -1, 1, 0, f_mean_1d_keep, 0, 0, NULL, 0},
    {"mean_axis", "transposed [4,3]^T axis 1", 1, {2}, {{4, 3}}, -1, 1, 0, f_mean_t_a1, 0, 0, NULL, 0},

    {"max_axis", "distinct [3,4] axis 0", 1, {2}, {{3, 4}}, -0.25, 0.25, 0, f_max_a0, 0, 0, NULL, 0},
    {"max_axis", "distinct [3,4] axis 1", 1, {2}, {{3, 4}}, -0.25, 0.25, 0, f_max_a1, 0, 0, NULL, 0},
    {"max_axis", "distinct [3,4] axis -1 keepdim", 1, {2}, {{3, 4}}, -0.25, 0.25, 0,
     f_max_am1_keep, 0, 0, NULL, 0},
    {"max_axis", "distinct [2,3,4] axis 1", 1, {3}, {{2, 3, 4}}, -0.25, 0.25, 0, f_max_3d_a1, 0,
     0, NULL, 0},
    {"max_axis", "distinct [2,3,4] axis -3 keepdim", 1, {3}, {{2, 3, 4}}, -0.25, 0.25, 0,
     f_max_3d_am3_keep, 0, 0, NULL, 0},
    {"max_axis", "distinct 1-d [6] -> [1]", 1, {1}, {{6}}, -0.25, 0.25, 0, f_max_1d, 0, 0, NULL, 0},
    {"max_axis", "distinct transposed [4,3]^T axis 1", 1, {2}, {{4, 3}}, -0.25, 0.25, 0, f_max_t,
     0, 0, NULL, 0},
    {"max_axis", "distinct transposed [4,3]^T axis -2 keepdim", 1, {2}, {{4, 3}}, -0.25, 0.25, 0,
     f_max_t2, 0, 0, NULL, 0},
};
// clang-format on
GC_COUNT(gc_rows_reduce);
