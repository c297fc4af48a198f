/* Gradient-check rows for binary.c and unary.c. */
#include <math.h>

#include "gc_rows.h"

#define IN(i) in[i]
#define UNUSED (void)n, (void)u

#define BIN_FN(name, call)                                                                         \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    UNUSED;                                                                                        \
    return call;                                                                                   \
  }
BIN_FN(f_add, cr_add(c, in[0], in[1]))
BIN_FN(f_sub, cr_sub(c, in[0], in[1]))
BIN_FN(f_mul, cr_mul(c, in[0], in[1]))
BIN_FN(f_div, cr_div(c, in[0], in[1]))
/* a value used twice in one op: x * x */
BIN_FN(f_mul_self, cr_mul(c, in[0], in[0]))
/* transposed (non-contiguous) operands */
BIN_FN(f_add_t, cr_add(c, cr_transpose(c, in[0], 0, 1), in[1]))
BIN_FN(f_mul_t, cr_mul(c, cr_transpose(c, in[0], 0, 1), cr_transpose(c, in[1], 0, 1)))
BIN_FN(f_div_t, cr_div(c, in[0], cr_transpose(c, in[1], 0, 1)))
BIN_FN(f_sub_t, cr_sub(c, cr_transpose(c, in[0], 0, 1), in[1]))

BIN_FN(f_neg, cr_neg(c, in[0]))
BIN_FN(f_exp, cr_exp(c, in[0]))
BIN_FN(f_log, cr_log(c, in[0]))
BIN_FN(f_sqrt, cr_sqrt(c, in[0]))
BIN_FN(f_square, cr_square(c, in[0]))
BIN_FN(f_tanh, cr_tanh(c, in[0]))
BIN_FN(f_sigmoid, cr_sigmoid(c, in[0]))
BIN_FN(f_relu, cr_relu(c, in[0]))
BIN_FN(f_abs, cr_abs(c, in[0]))
BIN_FN(f_clamp, cr_clamp(c, in[0], -0.5, 0.5))
BIN_FN(f_add_s, cr_add_scalar(c, in[0], 0.7))
BIN_FN(f_sub_s, cr_sub_scalar(c, in[0], 0.7))
BIN_FN(f_rsub_s, cr_rsub_scalar(c, in[0], 0.7))
BIN_FN(f_mul_s, cr_mul_scalar(c, in[0], -1.3))
BIN_FN(f_div_s, cr_div_scalar(c, in[0], 1.7))
BIN_FN(f_pow_s, cr_pow_scalar(c, in[0], 2.5))
BIN_FN(f_tanh_t, cr_tanh(c, cr_transpose(c, in[0], 0, 1)))
BIN_FN(f_sigmoid_t, cr_sigmoid(c, cr_transpose(c, in[0], 0, 1)))
BIN_FN(f_exp_t, cr_exp(c, cr_transpose(c, in[0], 1, 2)))
BIN_FN(f_sin, cr_sin(c, in[0]))
BIN_FN(f_cos, cr_cos(c, in[0]))
BIN_FN(f_cos_t, cr_cos(c, cr_transpose(c, in[0], 0, 1)))
BIN_FN(f_erf, cr_erf(c, in[0]))
BIN_FN(f_gelu, cr_gelu(c, in[0]))
BIN_FN(f_gelu_t, cr_gelu(c, cr_transpose(c, in[0], 0, 1)))
BIN_FN(f_softplus, cr_softplus(c, in[0], 1, 20))
/* |x| up to 60 with no threshold: the stable form neither overflows nor
 * loses the small term */
BIN_FN(f_softplus_big, cr_softplus(c, cr_mul_scalar(c, in[0], 30), 1, INFINITY))
/* beta 2, threshold 3: the switch is at x = 1.5; x = u + 1.5 with
 * |u| >= 0.1 lies on both sides, away from it */
BIN_FN(f_softplus_thr, cr_softplus(c, cr_add_scalar(c, in[0], 1.5), 2, 3))
BIN_FN(f_maximum, cr_maximum(c, in[0], in[1]))
BIN_FN(f_minimum, cr_minimum(c, in[0], in[1]))
BIN_FN(f_maximum_t, cr_maximum(c, cr_transpose(c, in[0], 0, 1), in[1]))
BIN_FN(f_minimum_t, cr_minimum(c, in[0], cr_transpose(c, in[1], 0, 1)))

const gc_row gc_rows_elementwise[] = {
    {"add", "plain [3,4]+[3,4]", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_add, 0, 0, NULL, 0},
    {"add", "broadcast [3,1]+[4]", 2, {2, 1}, {{3, 1}, {4}}, -2, 2, 0, f_add, 0, 0, NULL, 0},
    {"add",
     "broadcast [2,1,4]+[3,1]",
     2,
     {3, 2},
     {{2, 1, 4}, {3, 1}},
     -2,
     2,
     0,
     f_add,
     0,
     0,
     NULL,
     0},
    {"add",
     "transposed [4,3]^T+[3,4]",
     2,
     {2, 2},
     {{4, 3}, {3, 4}},
     -2,
     2,
     0,
     f_add_t,
     0,
     0,
     NULL,
     0},
    {"sub", "plain [3,4]-[3,4]", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_sub, 0, 0, NULL, 0},
    {"sub", "broadcast [5]-[2,5]", 2, {1, 2}, {{5}, {2, 5}}, -2, 2, 0, f_sub, 0, 0, NULL, 0},
    {"sub",
     "transposed [4,3]^T-[1,4]",
     2,
     {2, 2},
     {{4, 3}, {1, 4}},
     -2,
     2,
     0,
     f_sub_t,
     0,
     0,
     NULL,
     0},
    {"mul", "plain [3,4]*[3,4]", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_mul, 0, 0, NULL, 0},
    {"mul",
     "broadcast [2,3,4]*[3,1]",
     2,
     {3, 2},
     {{2, 3, 4}, {3, 1}},
     -2,
     2,
     0,
     f_mul,
     0,
     0,
     NULL,
     0},
    {"mul", "same input twice x*x", 1, {2}, {{3, 4}}, -2, 2, 0, f_mul_self, 0, 0, NULL, 0},
    {"mul", "both transposed", 2, {2, 2}, {{4, 3}, {4, 3}}, -2, 2, 0, f_mul_t, 0, 0, NULL, 0},
    {"div", "plain [3,4]/[3,4]", 2, {2, 2}, {{3, 4}, {3, 4}}, 0.5, 2, 0, f_div, 0, 0, NULL, 0},
    {"div", "broadcast [3,4]/[1]", 2, {2, 1}, {{3, 4}, {1}}, 0.5, 2, 0, f_div, 0, 0, NULL, 0},
    {"div",
     "transposed [3,4]/[4,3]^T",
     2,
     {2, 2},
     {{3, 4}, {4, 3}},
     0.5,
     2,
     0,
     f_div_t,
     0,
     0,
     NULL,
     0},
    {"neg", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_neg, 0, 0, NULL, 0},
    {"exp", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_exp, 0, 0, NULL, 0},
    {"exp", "transposed 3-d", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_exp_t, 0, 0, NULL, 0},
    {"log", "plain", 1, {2}, {{3, 4}}, 0.2, 3, 0, f_log, 0, 0, NULL, 0},
    {"sqrt", "plain", 1, {2}, {{3, 4}}, 0.2, 3, 0, f_sqrt, 0, 0, NULL, 0},
    {"square", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_square, 0, 0, NULL, 0},
    {"tanh", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_tanh, 0, 0, NULL, 0},
    {"tanh", "transposed", 1, {2}, {{4, 3}}, -2, 2, 0, f_tanh_t, 0, 0, NULL, 0},
    {"sigmoid", "plain, both signs", 1, {2}, {{3, 4}}, -4, 4, 0, f_sigmoid, 0, 0, NULL, 0},
    {"sigmoid", "transposed", 1, {2}, {{4, 3}}, -4, 4, 0, f_sigmoid_t, 0, 0, NULL, 0},
    {"relu", "away from 0", 1, {2}, {{3, 4}}, -2, 2, 0.1, f_relu, 0, 0, NULL, 0},
    {"abs", "away from 0", 1, {2}, {{3, 4}}, -2, 2, 0.1, f_abs, 0, 0, NULL, 0},
    {"clamp",
     "inside and outside [-0.5,0.5], away from the bounds",
     1,
     {1},
     {{12}},
     -1,
     1,
     0,
     f_clamp,
     0,
     0,
     NULL,
     0},
    {"add_scalar", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_add_s, 0, 0, NULL, 0},
    {"sub_scalar", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_sub_s, 0, 0, NULL, 0},
    {"rsub_scalar", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_rsub_s, 0, 0, NULL, 0},
    {"mul_scalar", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_mul_s, 0, 0, NULL, 0},
    {"div_scalar", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_div_s, 0, 0, NULL, 0},
    {"pow_scalar", "plain, x > 0", 1, {2}, {{3, 4}}, 0.2, 2, 0, f_pow_s, 0, 0, NULL, 0},
    {"sin", "plain", 1, {2}, {{3, 4}}, -3, 3, 0, f_sin, 0, 0, NULL, 0},
    {"cos", "plain", 1, {2}, {{3, 4}}, -3, 3, 0, f_cos, 0, 0, NULL, 0},
    {"cos", "transposed", 1, {2}, {{4, 3}}, -3, 3, 0, f_cos_t, 0, 0, NULL, 0},
    {"erf", "plain", 1, {2}, {{3, 4}}, -2, 2, 0, f_erf, 0, 0, NULL, 0},
    {"gelu", "plain", 1, {2}, {{3, 4}}, -3, 3, 0, f_gelu, 0, 0, NULL, 0},
    {"gelu", "transposed", 1, {2}, {{4, 3}}, -3, 3, 0, f_gelu_t, 0, 0, NULL, 0},
    {"softplus", "beta 1 threshold 20", 1, {2}, {{3, 4}}, -4, 4, 0, f_softplus, 0, 0, NULL, 0},
    {"softplus",
     "|x| up to 60, no threshold",
     1,
     {2},
     {{3, 4}},
     -2,
     2,
     0,
     f_softplus_big,
     0,
     0,
     NULL,
     0},
    {"softplus",
     "beta 2 threshold 3, both sides of x = 1.5",
     1,
     {1},
     {{12}},
     -1.5,
     1.5,
     0.1,
     f_softplus_thr,
     0,
     0,
     NULL,
     0},
    {"maximum",
     "plain [3,4] vs [3,4]",
     2,
     {2, 2},
     {{3, 4}, {3, 4}},
     -2,
     2,
     0,
     f_maximum,
     0,
     0,
     NULL,
     0},
    {"maximum",
     "broadcast transposed [4,3]^T vs [4]",
     2,
     {2, 1},
     {{4, 3}, {4}},
     -2,
     2,
     0,
     f_maximum_t,
     0,
     0,
     NULL,
     0},
    {"minimum",
     "plain [3,4] vs [3,4]",
     2,
     {2, 2},
     {{3, 4}, {3, 4}},
     -2,
     2,
     0,
     f_minimum,
     0,
     0,
     NULL,
     0},
    {"minimum",
     "broadcast [3,1] vs [4,3]^T",
     2,
     {2, 2},
     {{3, 1}, {4, 3}},
     -2,
     2,
     0,
     f_minimum_t,
     0,
     0,
     NULL,
     0},
};
GC_COUNT(gc_rows_elementwise);
