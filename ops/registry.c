/* registry.c — the one table of every primitive op.  A test walks it and
 * fails for any op without a gradient-check row. */
#include "registry.h"

/* binary.c */
extern const cr_op_desc cr__op_add, cr__op_sub, cr__op_mul, cr__op_div, cr__op_maximum,
    cr__op_minimum;
/* unary.c */
extern const cr_op_desc cr__op_neg, cr__op_exp, cr__op_log, cr__op_sqrt, cr__op_square, cr__op_tanh,
    cr__op_sigmoid, cr__op_relu, cr__op_abs, cr__op_clamp, cr__op_add_scalar, cr__op_sub_scalar,
    cr__op_rsub_scalar, cr__op_mul_scalar, cr__op_div_scalar, cr__op_pow_scalar, cr__op_sin,
    cr__op_cos, cr__op_erf, cr__op_gelu, cr__op_softplus;
/* compare.c (the comparisons themselves make constants: no op) */
extern const cr_op_desc cr__op_where;
/* matmul.c */
extern const cr_op_desc cr__op_matmul, cr__op_addmm;
/* view.c */
extern const cr_op_desc cr__op_transpose, cr__op_permute, cr__op_reshape, cr__op_contiguous;
/* reduce.c */
extern const cr_op_desc cr__op_sum, cr__op_mean, cr__op_sum_axis, cr__op_mean_axis, cr__op_max_axis;
/* softmax.c */
extern const cr_op_desc cr__op_softmax, cr__op_log_softmax;
/* loss.c */
extern const cr_op_desc cr__op_cross_entropy, cr__op_mse;
/* dropout.c */
extern const cr_op_desc cr__op_dropout;
/* shape.c, gather.c */
extern const cr_op_desc cr__op_slice, cr__op_select, cr__op_unslice, cr__op_concat, cr__op_stack,
    cr__op_cast, cr__op_index_select, cr__op_index_add, cr__op_embedding;
/* broadcast.c */
extern const cr_op_desc cr__op_expand, cr__op_sum_to;
/* index.c, scan.c */
extern const cr_op_desc cr__op_gather, cr__op_scatter_add, cr__op_flip, cr__op_cumsum;
/* stats.c (order.c's ops are compositions and constants) */
extern const cr_op_desc cr__op_logsumexp, cr__op_var;
/* norm.c */
extern const cr_op_desc cr__op_layer_norm;
/* loss_class.c (loss_pointwise.c's losses are compositions) */
extern const cr_op_desc cr__op_cross_entropy_ex, cr__op_nll_loss;
/* custom.c */
extern const cr_op_desc cr__op_function;
/* checkpoint.c */
extern const cr_op_desc cr__op_checkpoint, cr__op_checkpoint_chain;
/* fused.c */
extern const cr_op_desc cr__op_fused;

static const cr_op_desc *const ops[] = {
    /* binary.c */
    &cr__op_add,
    &cr__op_sub,
    &cr__op_mul,
    &cr__op_div,
    &cr__op_maximum,
    &cr__op_minimum,
    /* unary.c */
    &cr__op_neg,
    &cr__op_exp,
    &cr__op_log,
    &cr__op_sqrt,
    &cr__op_square,
    &cr__op_tanh,
    &cr__op_sigmoid,
    &cr__op_relu,
    &cr__op_abs,
    &cr__op_clamp,
    &cr__op_add_scalar,
    &cr__op_sub_scalar,
    &cr__op_rsub_scalar,
    &cr__op_mul_scalar,
    &cr__op_div_scalar,
    &cr__op_pow_scalar,
    &cr__op_sin,
    &cr__op_cos,
    &cr__op_erf,
    &cr__op_gelu,
    &cr__op_softplus,
    /* compare.c */
    &cr__op_where,
    /* matmul.c */
    &cr__op_matmul,
    &cr__op_addmm,
    /* view.c */
    &cr__op_transpose,
    &cr__op_permute,
    &cr__op_reshape,
    &cr__op_contiguous,
    /* reduce.c */
    &cr__op_sum,
    &cr__op_mean,
    &cr__op_sum_axis,
    &cr__op_mean_axis,
    &cr__op_max_axis,
    /* softmax.c */
    &cr__op_softmax,
    &cr__op_log_softmax,
    /* loss.c */
    &cr__op_cross_entropy,
    &cr__op_mse,
    /* dropout.c */
    &cr__op_dropout,
    /* shape.c, gather.c */
    &cr__op_slice,
    &cr__op_select,
    &cr__op_unslice,
    &cr__op_concat,
    &cr__op_stack,
    &cr__op_cast,
    &cr__op_index_select,
    &cr__op_index_add,
    &cr__op_embedding,
    /* broadcast.c */
    &cr__op_expand,
    &cr__op_sum_to,
    /* index.c, scan.c */
    &cr__op_gather,
    &cr__op_scatter_add,
    &cr__op_flip,
    &cr__op_cumsum,
    /* stats.c */
    &cr__op_logsumexp,
    &cr__op_var,
    /* norm.c */
    &cr__op_layer_norm,
    /* loss_class.c */
    &cr__op_cross_entropy_ex,
    &cr__op_nll_loss,
    /* custom.c: every user-defined function shares this descriptor */
    &cr__op_function,
    /* checkpoint.c: a segment recomputed in backward */
    &cr__op_checkpoint,
    &cr__op_checkpoint_chain,
    /* fused.c: a chain of elementwise ops as one node */
    &cr__op_fused,
};

#define N_OPS ((int)(sizeof ops / sizeof ops[0]))

int cr__op_count(void) { return N_OPS; }
const cr_op_desc *cr__op_at(int i) { return i >= 0 && i < N_OPS ? ops[i] : NULL; }
