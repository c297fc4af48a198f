/* Gradient-check rows for matmul.c and view.c. */
#include "gc_rows.h"

#define FN(name, call)                                                         \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {    \
    (void)n, (void)u;                                                          \
    return call;                                                               \
  }
FN(f_mm, cr_matmul(c, in[0], in[1]))
/* a^T @ b and a @ b^T through transposed views (BLIS strides) */
FN(f_mm_ta, cr_matmul(c, cr_transpose(c, in[0], 0, 1), in[1]))
FN(f_mm_tb, cr_matmul(c, in[0], cr_transpose(c, in[1], 0, 1)))
FN(f_mm_tab, cr_matmul(c, cr_transpose(c, in[0], 0, 1), cr_transpose(c, in[1], 0, 1)))
FN(f_bmm_tb, cr_matmul(c, in[0], cr_transpose(c, in[1], 1, 2)))
FN(f_addmm, cr_addmm(c, in[0], in[1], in[2]))
FN(f_addmm_bt, cr_addmm(c, in[0], in[1], cr_transpose(c, in[2], 0, 1)))
FN(f_transpose, cr_transpose(c, in[0], 0, 2))
static cr_tensor *f_permute(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  return cr_permute(c, in[0], (const int[]){2, 0, 1});
}
FN(f_reshape, cr_reshape(c, in[0], CR_SHAPE(4, -1)))
FN(f_reshape_t, cr_reshape(c, cr_transpose(c, in[0], 0, 1), CR_SHAPE(12)))
FN(f_contig, cr_contiguous(c, cr_transpose(c, in[0], 0, 1)))

const gc_row gc_rows_matmul[] = {
    {"matmul", "2-d [3,4]@[4,5]", 2, {2, 2}, {{3, 4}, {4, 5}}, -1, 1, 0, f_mm, 0, 0, NULL, 0},
    {"matmul", "row vector [1,4]@[4,3]", 2, {2, 2}, {{1, 4}, {4, 3}}, -1, 1, 0, f_mm, 0, 0, NULL, 0},
    {"matmul", "a transposed [4,3]^T@[4,5]", 2, {2, 2}, {{4, 3}, {4, 5}}, -1, 1, 0, f_mm_ta, 0, 0, NULL, 0},
    {"matmul", "b transposed [3,4]@[5,4]^T", 2, {2, 2}, {{3, 4}, {5, 4}}, -1, 1, 0, f_mm_tb, 0, 0, NULL, 0},
    {"matmul", "both transposed", 2, {2, 2}, {{4, 3}, {5, 4}}, -1, 1, 0, f_mm_tab, 0, 0, NULL, 0},
    {"matmul", "batched [2,3,4]@[2,4,5]", 2, {3, 3}, {{2, 3, 4}, {2, 4, 5}}, -1, 1, 0, f_mm, 0, 0, NULL, 0},
    {"matmul", "batched, shared b [2,3,4]@[4,5]", 2, {3, 2}, {{2, 3, 4}, {4, 5}}, -1, 1, 0, f_mm, 0, 0, NULL, 0},
    {"matmul", "batched, b transposed", 2, {3, 3}, {{2, 3, 4}, {2, 5, 4}}, -1, 1, 0, f_bmm_tb, 0, 0, NULL, 0},
    {"addmm", "full c [3,5] + [3,4]@[4,5]", 3, {2, 2, 2}, {{3, 5}, {3, 4}, {4, 5}}, -1, 1, 0, f_addmm, 0, 0, NULL, 0},
    {"addmm", "bias c [5], b transposed", 3, {1, 2, 2}, {{5}, {3, 4}, {5, 4}}, -1, 1, 0, f_addmm_bt, 0, 0, NULL, 0},
    {"addmm", "bias c [1,5]", 3, {2, 2, 2}, {{1, 5}, {3, 4}, {4, 5}}, -1, 1, 0, f_addmm, 0, 0, NULL, 0},
    {"transpose", "3-d axes 0,2", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_transpose, 0, 0, NULL, 0},
    {"permute", "3-d (2,0,1)", 1, {3}, {{2, 3, 4}}, -1, 1, 0, f_permute, 0, 0, NULL, 0},
    {"reshape", "[3,4] to [4,-1]", 1, {2}, {{3, 4}}, -1, 1, 0, f_reshape, 0, 0, NULL, 0},
    {"reshape", "of a transposed view", 1, {2}, {{3, 4}}, -1, 1, 0, f_reshape_t, 0, 0, NULL, 0},
    {"contiguous", "of a transposed view", 1, {2}, {{3, 4}}, -1, 1, 0, f_contig, 0, 0, NULL, 0},
};
GC_COUNT(gc_rows_matmul);
