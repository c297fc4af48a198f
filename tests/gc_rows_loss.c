/* Gradient-check rows for loss_class.c (cross_entropy_ex, nll_loss) and
 * the compositions of loss_pointwise.c, under every reduction. */
#include <math.h>

#include "gc_rows.h"

#define FN(name, call)                                                                             \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    (void)n, (void)u;                                                                              \
    return call;                                                                                   \
  }
#define T01(x) cr_transpose(c, (x), 0, 1)
#define TGT(c, shape, v) cr_from_i64(c, shape, v)
#define F64(c, shape, v) cr_from_array(c, CR_F64, shape, v)

static const int64_t t4[4] = {1, 0, 4, 2};
static const int64_t t23[6] = {2, -100, 0, 4, 4, -100}; /* [2,3], two ignored */
static const int64_t t_all_ign[4] = {-100, -100, -100, -100};
static const int64_t t2x3[6] = {0, 2, 1, 1, 0, 2}; /* [2,3] of 3 classes */
static const double w5[5] = {0.5, 2, 1, 0.25, 1.5};
static const double w3[3] = {1.5, 0.5, 2};

static cr_tensor *ce(cr_ctx *c, cr_tensor *x, cr_tensor *t, cr_reduction r, const double *w, int C,
                     double smooth, bool dim1) {
  cr_class_loss_opts o = {r, w ? F64(c, CR_SHAPE(C), w) : NULL, smooth, dim1};
  return cr_cross_entropy_ex(c, x, t, -100, &o);
}
static cr_tensor *nll(cr_ctx *c, cr_tensor *x, cr_tensor *t, cr_reduction r, const double *w, int C,
                      bool dim1) {
  cr_class_loss_opts o = {r, w ? F64(c, CR_SHAPE(C), w) : NULL, 0, dim1};
  return cr_nll_loss(c, x, t, -100, &o);
}
FN(f_ce, ce(c, in[0], TGT(c, CR_SHAPE(4), t4), CR_REDUCE_MEAN, NULL, 5, 0, false))
/* [B,T,C] = [2,3,5], ignore_index, class weights and label smoothing */
FN(f_ce_btc, ce(c, in[0], TGT(c, CR_SHAPE(2, 3), t23), CR_REDUCE_MEAN, w5, 5, 0.1, false))
FN(f_ce_btc_sum, ce(c, in[0], TGT(c, CR_SHAPE(2, 3), t23), CR_REDUCE_SUM, w5, 5, 0.2, false))
FN(f_ce_btc_none,
   cr_square(c, ce(c, in[0], TGT(c, CR_SHAPE(2, 3), t23), CR_REDUCE_NONE, w5, 5, 0.3, false)))
/* PyTorch's layout [N,C,d] = [2,3,3], transposed logits */
FN(f_ce_dim1, ce(c, cr_permute(c, in[0], (const int[]){0, 2, 1}), TGT(c, CR_SHAPE(2, 3), t2x3),
                 CR_REDUCE_MEAN, w3, 3, 0.05, true))
FN(f_ce_t, ce(c, T01(in[0]), TGT(c, CR_SHAPE(4), t4), CR_REDUCE_SUM, NULL, 5, 0.1, false))
FN(f_ce_all_ign, ce(c, in[0], TGT(c, CR_SHAPE(4), t_all_ign), CR_REDUCE_MEAN, w5, 5, 0.1, false))
FN(f_ce_big,
   ce(c, cr_mul_scalar(c, in[0], 40), TGT(c, CR_SHAPE(4), t4), CR_REDUCE_MEAN, NULL, 5, 0, false))
/* nll of log_softmax: the usual pairing */
FN(f_nll,
   nll(c, cr_log_softmax(c, in[0], -1), TGT(c, CR_SHAPE(4), t4), CR_REDUCE_MEAN, NULL, 5, false))
FN(f_nll_w, cr_square(c, nll(c, in[0], TGT(c, CR_SHAPE(2, 3), t23), CR_REDUCE_NONE, w5, 5, false)))
FN(f_nll_dim1, nll(c, cr_tanh(c, in[0]), TGT(c, CR_SHAPE(2, 3), t2x3), CR_REDUCE_SUM, w3, 3, true))

/* ---- pointwise: x = y + d with |d| >= 0.1 (in[0] = d, in[1] = y), away
 * from the kink of |x - y| at 0 */
#define XY(c) cr_add(c, in[1], in[0]), in[1]
FN(f_l1, cr_l1_loss(c, XY(c), CR_REDUCE_MEAN))
FN(f_l1_none, cr_square(c, cr_l1_loss(c, XY(c), CR_REDUCE_NONE)))
FN(f_mse_sum, cr_mse_loss(c, in[0], T01(in[1]), CR_REDUCE_SUM))
FN(f_mse_none, cr_tanh(c, cr_mse_loss(c, in[0], in[1], CR_REDUCE_NONE)))
FN(f_sl1, cr_smooth_l1_loss(c, XY(c), 1.0, CR_REDUCE_MEAN))
FN(f_sl1_sum, cr_smooth_l1_loss(c, XY(c), 0.5, CR_REDUCE_SUM))
FN(f_sl1_none, cr_square(c, cr_smooth_l1_loss(c, XY(c), 2.0, CR_REDUCE_NONE)))
FN(f_huber, cr_huber_loss(c, XY(c), 1.0, CR_REDUCE_MEAN))
FN(f_huber_none, cr_square(c, cr_huber_loss(c, XY(c), 0.7, CR_REDUCE_NONE)))
/* kl_div: input log-probabilities log_softmax(in[0]); targets softmax(in[1]) > 0 */
FN(f_kl,
   cr_kl_div(c, cr_log_softmax(c, in[0], -1), cr_softmax(c, in[1], -1), false, CR_REDUCE_BATCHMEAN))
FN(f_kl_none, cr_square(c, cr_kl_div(c, in[0], cr_sigmoid(c, in[1]), false, CR_REDUCE_NONE)))
/* exact zeros in a constant target */
static const double p12z[12] = {0, 0.25, 0, 0.75, 0.5, 0.5, 0, 0, 1, 0, 0.1, 0.9};
FN(f_kl_zero, cr_kl_div(c, in[0], F64(c, CR_SHAPE(3, 4), p12z), false, CR_REDUCE_SUM))
FN(f_kl_log, cr_kl_div(c, in[0], in[1], true, CR_REDUCE_MEAN))
/* bce: targets sigmoid(in[1]) in (0, 1) */
static const double bw4[4] = {0.5, 1, 2, 1.5}, pw4[4] = {3, 0.5, 1, 2};
static cr_tensor *f_bce(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_bce_opts o = {CR_REDUCE_MEAN, NULL, NULL};
  return cr_bce_with_logits(c, in[0], cr_sigmoid(c, in[1]), &o);
}
static cr_tensor *f_bce_w(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_bce_opts o = {CR_REDUCE_SUM, F64(c, CR_SHAPE(4), bw4), F64(c, CR_SHAPE(4), pw4)};
  return cr_bce_with_logits(c, cr_mul_scalar(c, in[0], 10), cr_sigmoid(c, in[1]), &o);
}
static cr_tensor *f_bce_none(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  cr_bce_opts o = {CR_REDUCE_NONE, in[2], in[3]}; /* weights as inputs too */
  return cr_square(c, cr_bce_with_logits(c, in[0], cr_sigmoid(c, in[1]), &o));
}

// clang-format off
const gc_row gc_rows_loss[] = {
    {"cross_entropy_ex", "[4,5] mean", 1, {2}, {{4, 5}}, -2, 2, 0, f_ce, 0, 0, NULL, 0},
    {"cross_entropy_ex", "[B,T,C] ignore, weights, smoothing 0.1, mean", 1, {3}, {{2, 3, 5}}, -2, 2, 0, f_ce_btc, 0, 0, NULL, 0},
    {"cross_entropy_ex", "[B,T,C] ignore, weights, smoothing 0.2, sum", 1, {3}, {{2, 3, 5}}, -2, 2, 0, f_ce_btc_sum, 0, 0, NULL, 0},
    {"cross_entropy_ex", "[B,T,C] none, squared", 1, {3}, {{2, 3, 5}}, -2, 2, 0, f_ce_btc_none, 0, 0, NULL, 0},
    {"cross_entropy_ex", "classes at dim 1 [2,3,3], permuted, weights", 1, {3}, {{2, 3, 3}}, -2, 2, 0, f_ce_dim1, 0, 0, NULL, 0},
    {"cross_entropy_ex", "transposed [5,4]^T, smoothing, sum", 1, {2}, {{5, 4}}, -2, 2, 0, f_ce_t, 0, 0, NULL, 0},
    {"cross_entropy_ex", "every target ignored -> 0", 1, {2}, {{4, 5}}, -2, 2, 0, f_ce_all_ign, 0, 0, NULL, 0},
    {"cross_entropy_ex", "large logits (x*40)", 1, {2}, {{4, 5}}, -2, 2, 0, f_ce_big, 0, 0, NULL, 0},
    {"nll_loss", "of log_softmax [4,5], mean", 1, {2}, {{4, 5}}, -2, 2, 0, f_nll, 0, 0, NULL, 0},
    {"nll_loss", "[2,3,5] weights, ignore, none, squared", 1, {3}, {{2, 3, 5}}, -2, 2, 0, f_nll_w, 0, 0, NULL, 0},
    {"nll_loss", "classes at dim 1 [2,3,3], weights, sum", 1, {3}, {{2, 3, 3}}, -2, 2, 0, f_nll_dim1, 0, 0, NULL, 0},
    {"abs", "l1_loss mean", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0.1, f_l1, 0, 0, NULL, 0},
    {"abs", "l1_loss none, squared", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0.1, f_l1_none, 0, 0, NULL, 0},
    {"square", "mse_loss sum, transposed target", 2, {2, 2}, {{3, 4}, {4, 3}}, -2, 2, 0, f_mse_sum, 0, 0, NULL, 0},
    {"square", "mse_loss none, tanh", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_mse_none, 0, 0, NULL, 0},
    {"where", "smooth_l1_loss beta 1, mean", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0.1, f_sl1, 0, 0, NULL, 0},
    {"where", "smooth_l1_loss beta 0.5, sum", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0.1, f_sl1_sum, 0, 0, NULL, 0},
    {"where", "smooth_l1_loss beta 2, none, squared", 2, {2, 2}, {{3, 4}, {3, 4}}, -3, 3, 0.1, f_sl1_none, 0, 0, NULL, 0},
    {"where", "huber_loss delta 1, mean", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0.1, f_huber, 0, 0, NULL, 0},
    {"where", "huber_loss delta 0.7, none, squared", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0.1, f_huber_none, 0, 0, NULL, 0},
    {"where", "kl_div of log_softmax vs softmax, batchmean", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_kl, 0, 0, NULL, 0},
    {"where", "kl_div none, target sigmoid, squared", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_kl_none, 0, 0, NULL, 0},
    {"where", "kl_div sum, constant target with zeros", 1, {2}, {{3, 4}}, -2, 2, 0, f_kl_zero, 0, 0, NULL, 0},
    {"exp", "kl_div log_target, mean", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_kl_log, 0, 0, NULL, 0},
    {"softplus", "bce_with_logits mean", 2, {2, 2}, {{3, 4}, {3, 4}}, -3, 3, 0, f_bce, 0, 0, NULL, 0},
    {"softplus", "bce_with_logits x*10, weight, pos_weight, sum", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_bce_w, 0, 0, NULL, 0},
    {"softplus", "bce_with_logits none, weights as inputs, squared", 4, {2, 2, 1, 2}, {{3, 4}, {3, 4}, {4}, {3, 1}}, -2, 2, 0, f_bce_none, 0, 0, NULL, 0},
};
// clang-format on
GC_COUNT(gc_rows_loss);
