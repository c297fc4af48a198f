/* Gradient-check rows for softmax.c, loss.c and dropout.c, and a composite
 * 2-layer MLP ending in cross_entropy. */
#include "gc_rows.h"

#define FN(name, call)                                                                             \
  static cr_tensor *name(cr_ctx *c, cr_tensor *const *in, int n, void *u) {                        \
    (void)n, (void)u;                                                                              \
    return call;                                                                                   \
  }
#define T01(x) cr_transpose(c, (x), 0, 1)

FN(f_softmax_am1, cr_softmax(c, in[0], -1))
FN(f_softmax_a0, cr_softmax(c, in[0], 0))
FN(f_softmax_3d_a1, cr_softmax(c, in[0], 1))
FN(f_softmax_t_a1, cr_softmax(c, T01(in[0]), 1))
FN(f_softmax_t_a0, cr_softmax(c, T01(in[0]), 0))
FN(f_softmax_1d, cr_softmax(c, in[0], 0))
FN(f_lsm_am1, cr_log_softmax(c, in[0], -1))
FN(f_lsm_a0, cr_log_softmax(c, in[0], 0))
FN(f_lsm_3d_am2, cr_log_softmax(c, in[0], -2))
FN(f_lsm_t_am1, cr_log_softmax(c, T01(in[0]), -1))
FN(f_lsm_1d, cr_log_softmax(c, in[0], -1))

static const int64_t tgt4[4] = {1, 0, 4, 2};
static const int64_t tgt4_ign[4] = {1, -100, 4, -100};
static const int64_t tgt4_all_ign[4] = {-1, -1, -1, -1};
static const int64_t tgt6[6] = {2, 2, 0, 1, 0, 2};
FN(f_ce, cr_cross_entropy(c, in[0], tgt4, CR_NO_IGNORE))
FN(f_ce_ign, cr_cross_entropy(c, in[0], tgt4_ign, -100))
FN(f_ce_all_ign, cr_cross_entropy(c, in[0], tgt4_all_ign, -1))
FN(f_ce_t, cr_cross_entropy(c, T01(in[0]), tgt6, CR_NO_IGNORE))
/* large logits (x * 60): the max-subtracted log-sum-exp stays exact */
FN(f_ce_big, cr_cross_entropy(c, cr_mul_scalar(c, in[0], 60), tgt4, CR_NO_IGNORE))

FN(f_mse, cr_mse(c, in[0], in[1]))
FN(f_mse_t, cr_mse(c, T01(in[0]), in[1]))
FN(f_mse_3d, cr_mse(c, in[0], cr_permute(c, in[1], (const int[]){2, 0, 1})))

/* a fresh generator with a fixed seed in every evaluation: the same mask */
static cr_tensor *dropout_seeded(cr_ctx *c, cr_tensor *x, double p, uint64_t seed) {
  cr_rng *rng = cr_rng_new(seed);
  cr_tensor *y = cr_dropout(c, x, p, rng);
  cr_rng_free(rng); /* the mask is saved in the arena */
  return y;
}
FN(f_dropout, dropout_seeded(c, in[0], 0.3, 7))
FN(f_dropout_t, dropout_seeded(c, T01(in[0]), 0.5, 11))
FN(f_dropout_3d, dropout_seeded(c, in[0], 0.2, 13))
static cr_tensor *f_dropout_eval(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  bool was = cr_set_training(c, false);
  cr_tensor *y = dropout_seeded(c, in[0], 0.5, 17);
  cr_set_training(c, was);
  return y;
}

/* logits = tanh(x @ W1 + b1) @ W2 + b2;  loss = cross_entropy(logits, t).
 * The inputs are the parameters W1 [3,5], b1 [5], W2 [5,3], b2 [3]; the
 * data x [4,3] is fixed (rows hold at most GC_MAX_IN = 4 inputs). */
static cr_tensor *f_mlp(cr_ctx *c, cr_tensor *const *in, int n, void *u) {
  (void)n, (void)u;
  static const double xdata[12] = {0.5, -1.2, 0.3, 1.1, 0.4, -0.7, -0.9, 0.8, 1.5, 0.2, -0.3, -1.4};
  static const int64_t t[4] = {0, 2, 1, 2};
  cr_tensor *x = cr_from_array(c, CR_F64, CR_SHAPE(4, 3), xdata);
  cr_tensor *h = cr_tanh(c, cr_add(c, cr_matmul(c, x, in[0]), in[1])); /* [4,5] */
  cr_tensor *logits = cr_add(c, cr_matmul(c, h, in[2]), in[3]);        /* [4,3] */
  return cr_cross_entropy(c, logits, t, CR_NO_IGNORE);
}

// clang-format off
const gc_row gc_rows_softmax_loss[] = {
    {"softmax", "[3,4] axis -1", 1, {2}, {{3, 4}}, -2, 2, 0, f_softmax_am1, 0, 0, NULL, 0},
    {"softmax", "[3,4] axis 0", 1, {2}, {{3, 4}}, -2, 2, 0, f_softmax_a0, 0, 0, NULL, 0},
    {"softmax", "[2,3,4] axis 1", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_softmax_3d_a1, 0, 0, NULL, 0},
    {"softmax", "transposed [4,3]^T axis 1", 1, {2}, {{4, 3}}, -2, 2, 0, f_softmax_t_a1, 0, 0, NULL, 0},
    {"softmax", "transposed [4,3]^T axis 0", 1, {2}, {{4, 3}}, -2, 2, 0, f_softmax_t_a0, 0, 0, NULL, 0},
    {"softmax", "1-d [5]", 1, {1}, {{5}}, -2, 2, 0, f_softmax_1d, 0, 0, NULL, 0},
    {"log_softmax", "[3,4] axis -1", 1, {2}, {{3, 4}}, -2, 2, 0, f_lsm_am1, 0, 0, NULL, 0},
    {"log_softmax", "[3,4] axis 0", 1, {2}, {{3, 4}}, -2, 2, 0, f_lsm_a0, 0, 0, NULL, 0},
    {"log_softmax", "[2,3,4] axis -2", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_lsm_3d_am2, 0, 0, NULL, 0},
    {"log_softmax", "transposed [4,3]^T axis -1", 1, {2}, {{4, 3}}, -2, 2, 0, f_lsm_t_am1, 0, 0, NULL, 0},
    {"log_softmax", "1-d [5]", 1, {1}, {{5}}, -2, 2, 0, f_lsm_1d, 0, 0, NULL, 0},

    {"cross_entropy", "[4,5] all counted", 1, {2}, {{4, 5}}, -2, 2, 0, f_ce, 0, 0, NULL, 0},
    {"cross_entropy", "[4,5] ignore_index -100 on 2 rows", 1, {2}, {{4, 5}}, -2, 2, 0, f_ce_ign,
     0, 0, NULL, 0},
    {"cross_entropy", "[4,5] every row ignored -> 0", 1, {2}, {{4, 5}}, -2, 2, 0, f_ce_all_ign, 0,
     0, NULL, 0},
    {"cross_entropy", "transposed logits [3,6]^T", 1, {2}, {{3, 6}}, -2, 2, 0, f_ce_t, 0, 0, NULL, 0},
    {"cross_entropy", "large logits (x*60)", 1, {2}, {{4, 5}}, -2, 2, 0, f_ce_big, 0, 0, NULL, 0},

    {"mse", "[3,4] vs [3,4]", 2, {2, 2}, {{3, 4}, {3, 4}}, -2, 2, 0, f_mse, 0, 0, NULL, 0},
    {"mse", "transposed pred [4,3]^T", 2, {2, 2}, {{4, 3}, {3, 4}}, -2, 2, 0, f_mse_t, 0, 0, NULL, 0},
    {"mse", "permuted target [3,4,2]->[2,3,4]", 2, {3, 3}, {{2, 3, 4}, {3, 4, 2}}, -2, 2, 0,
     f_mse_3d, 0, 0, NULL, 0},

    {"dropout", "[4,5] p 0.3 seed 7", 1, {2}, {{4, 5}}, -2, 2, 0, f_dropout, 0, 0, NULL, 0},
    {"dropout", "transposed [5,4]^T p 0.5", 1, {2}, {{5, 4}}, -2, 2, 0, f_dropout_t, 0, 0, NULL, 0},
    {"dropout", "[2,3,4] p 0.2", 1, {3}, {{2, 3, 4}}, -2, 2, 0, f_dropout_3d, 0, 0, NULL, 0},
    {"dropout", "evaluation mode: identity", 1, {2}, {{3, 4}}, -2, 2, 0, f_dropout_eval, 0, 0, NULL, 0},

    {"cross_entropy", "composite 2-layer MLP", 4, {2, 1, 2, 1}, {{3, 5}, {5}, {5, 3}, {3}}, -1, 1,
     0, f_mlp, 0, 0, NULL, 0},
};
// clang-format on
GC_COUNT(gc_rows_softmax_loss);
