/* chainrule/ops.h — the primitive differentiable ops.
 *
 * Every op takes the context first, computes its result at once in the
 * context's arena and, when grad mode is on and an input requires grad,
 * records a graph node so backward can apply the op's vector-Jacobian
 * product.  Inputs must share a dtype (f32 or f64; an i64 index tensor is
 * accepted only where an argument is documented as one: indices, ids,
 * targets).  On a user error an op returns NULL
 * and stores "op: shapes: reason" in the context (see chainrule/base.h);
 * given a NULL input it returns NULL and keeps the first message.
 *
 * Broadcasting (add, sub, mul, div) follows NumPy: shapes are aligned at the
 * right; each pair of dims must be equal or one of them 1.  The gradient is
 * summed back over the broadcast dims.
 *
 * Axes may be negative (counted from the end).
 */
#ifndef CHAINRULE_OPS_H
#define CHAINRULE_OPS_H

#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise binary, broadcasting */
cr_tensor *cr_add(cr_ctx *ctx, cr_tensor *a, cr_tensor *b); /* a + b */
cr_tensor *cr_sub(cr_ctx *ctx, cr_tensor *a, cr_tensor *b); /* a - b */
cr_tensor *cr_mul(cr_ctx *ctx, cr_tensor *a, cr_tensor *b); /* a * b */
cr_tensor *cr_div(cr_ctx *ctx, cr_tensor *a, cr_tensor *b); /* a / b */
/* Elementwise max(a, b) and min(a, b); a NaN in either propagates.  On a
 * tie each input receives half the gradient (as in PyTorch). */
cr_tensor *cr_maximum(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);
cr_tensor *cr_minimum(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);

/* ---- with a scalar s */
cr_tensor *cr_add_scalar(cr_ctx *ctx, cr_tensor *x, double s);  /* x + s */
cr_tensor *cr_sub_scalar(cr_ctx *ctx, cr_tensor *x, double s);  /* x - s */
cr_tensor *cr_rsub_scalar(cr_ctx *ctx, cr_tensor *x, double s); /* s - x */
cr_tensor *cr_mul_scalar(cr_ctx *ctx, cr_tensor *x, double s);  /* x * s */
cr_tensor *cr_div_scalar(cr_ctx *ctx, cr_tensor *x, double s);  /* x / s */
cr_tensor *cr_pow_scalar(cr_ctx *ctx, cr_tensor *x, double p);  /* x ^ p */

/* ---- elementwise unary */
cr_tensor *cr_neg(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_exp(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_log(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_sqrt(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_square(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_tanh(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_sigmoid(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_relu(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_abs(cr_ctx *ctx, cr_tensor *x);
/* min(max(x, lo), hi); requires lo <= hi.  Gradient 1 strictly inside. */
cr_tensor *cr_clamp(cr_ctx *ctx, cr_tensor *x, double lo, double hi);
cr_tensor *cr_sin(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_cos(cr_ctx *ctx, cr_tensor *x);
cr_tensor *cr_erf(cr_ctx *ctx, cr_tensor *x); /* the error function */
/* Exact GELU x * Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (PyTorch's
 * approximate='none'). */
cr_tensor *cr_gelu(cr_ctx *ctx, cr_tensor *x);
/* log(1 + exp(beta x)) / beta, computed without overflow as
 * (max(beta x, 0) + log1p(exp(-|beta x|))) / beta; x itself where
 * beta x > threshold (PyTorch's semantics; its defaults are beta 1,
 * threshold 20; INFINITY turns the threshold off).  Gradient
 * sigmoid(beta x), 1 above the threshold.  beta must be finite and > 0. */
cr_tensor *cr_softplus(cr_ctx *ctx, cr_tensor *x, double beta, double threshold);

/* ---- comparisons and selection
 * gt, ge, lt, le, eq: [a > b] (...) elementwise with broadcasting, as 1 or 0
 * in the inputs' float dtype: a constant mask (no graph, not
 * differentiable, whether or not a and b require grad). */
cr_tensor *cr_gt(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);
cr_tensor *cr_ge(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);
cr_tensor *cr_lt(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);
cr_tensor *cr_le(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);
cr_tensor *cr_eq(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);
/* mask != 0 ? a : b elementwise; mask, a and b broadcast together (all of
 * one dtype; the mask is usually a comparison's result).  Differentiable
 * in a and b (each gets the gradient where it was chosen); the mask gets
 * none. */
cr_tensor *cr_where(cr_ctx *ctx, cr_tensor *mask, cr_tensor *a, cr_tensor *b);
/* x with value wherever mask != 0; mask broadcasts to x's shape (error
 * otherwise).  value may be +-INFINITY (attention masks).  Gradient: gy
 * where the mask is 0, nothing where it was filled. */
cr_tensor *cr_masked_fill(cr_ctx *ctx, cr_tensor *x, cr_tensor *mask, double value);

/* ---- matrix products (BLIS) */
/* [M,K] @ [K,N] -> [M,N];  [B,M,K] @ [B,K,N] -> [B,M,N];
 * [B,M,K] @ [K,N] -> [B,M,N] (one matrix for every batch entry).
 * Transposed views (cr_transpose) are passed to BLIS by strides, no copy. */
cr_tensor *cr_matmul(cr_ctx *ctx, cr_tensor *a, cr_tensor *b);
/* c + a @ b for a [M,K], b [K,N] and c [M,N], [N] or [1,N] (broadcast over
 * rows: a bias).  One product that accumulates onto c (BLIS beta = 1), so
 * it saves a pass and an intermediate over cr_add(c, cr_matmul(a, b)). */
cr_tensor *cr_addmm(cr_ctx *ctx, cr_tensor *c, cr_tensor *a, cr_tensor *b);

/* ---- reductions */
cr_tensor *cr_sum(cr_ctx *ctx, cr_tensor *x);  /* all elements -> [1] */
cr_tensor *cr_mean(cr_ctx *ctx, cr_tensor *x); /* all elements -> [1] */
/* Over one axis; keepdim keeps it with size 1.  Removing the only axis of
 * a 1-d tensor gives shape [1]. */
cr_tensor *cr_sum_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim);
cr_tensor *cr_mean_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim);
/* Max over an axis; the gradient goes to the first maximal element. */
cr_tensor *cr_max_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim);
/* Min over an axis (-max(-x)); the gradient goes to the first minimum. */
cr_tensor *cr_min_axis(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim);
/* Over several axes: axes[0..n) distinct (negative allowed), or NULL and 0
 * for every axis; keepdim keeps them with size 1, else they are removed
 * (all removed gives [1]).  Gradient: broadcast back (over N for means). */
cr_tensor *cr_sum_axes(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, bool keepdim);
cr_tensor *cr_mean_axes(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, bool keepdim);
/* Variance over axes (as cr_sum_axes): sum (x - mean)^2 / (N - correction),
 * N the elements per result; correction 1 is PyTorch's unbiased default, 0
 * the population variance; 0 <= correction < N (error otherwise).  Two
 * passes in double.  Gradient 2 (x - mean) / (N - correction) * gy. */
cr_tensor *cr_var(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, double correction,
                  bool keepdim);
/* sqrt(cr_var(...)): its gradient is infinite where the variance is 0. */
cr_tensor *cr_std(cr_ctx *ctx, cr_tensor *x, const int *axes, int n, double correction,
                  bool keepdim);
/* log sum exp(x) along axis, with the max subtracted so it never
 * overflows (an all -inf line gives -inf).  Gradient: softmax(x) * gy. */
cr_tensor *cr_logsumexp(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim);
/* The position of the first max (min) along axis, as an i64 tensor shaped
 * as cr_max_axis's result; a NaN counts as the extreme.  Not
 * differentiable (no graph). */
cr_tensor *cr_argmax(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim);
cr_tensor *cr_argmin(cr_ctx *ctx, cr_tensor *x, int axis, bool keepdim);
/* The k largest (largest false: smallest) values along axis, sorted (ties
 * by position; a NaN counts as larger than any number): x's shape with
 * that axis k (1 <= k <= dim).  When indices is not NULL it receives their
 * positions as an i64 tensor of the same shape (no graph).  The values
 * are a cr_gather of x: their gradient goes to the chosen positions. */
cr_tensor *cr_topk(cr_ctx *ctx, cr_tensor *x, int64_t k, int axis, bool largest,
                   cr_tensor **indices);

/* ---- broadcasting */
/* x broadcast to shape (NumPy rules: aligned at the right, each dim of x
 * equal to the target's or 1), as a new contiguous tensor (PyTorch's
 * expand / broadcast_to).  Gradient: summed back over the broadcast dims. */
cr_tensor *cr_expand(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape);
/* x summed down to shape, the adjoint of cr_expand: shape must broadcast
 * to x's shape (PyTorch's sum_to_size).  Gradient: expanded back. */
cr_tensor *cr_sum_to(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape);
/* The same as cr_expand (PyTorch's name; one implementation). */
cr_tensor *cr_broadcast_to(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape);

/* ---- shape */
/* Same elements, new shape (one entry may be -1, inferred).  A view when x
 * is contiguous, else a copy. */
cr_tensor *cr_reshape(cr_ctx *ctx, cr_tensor *x, int ndim, const int64_t *shape);
/* Swap two axes (a strided view, no copy). */
cr_tensor *cr_transpose(cr_ctx *ctx, cr_tensor *x, int axis0, int axis1);
/* Reorder axes: result axis i is x's axis perm[i] (a view). */
cr_tensor *cr_permute(cr_ctx *ctx, cr_tensor *x, const int *perm);
/* Elements start, start+step, ... < stop along axis (a view; step >= 1;
 * negative start/stop count from the end). */
cr_tensor *cr_slice(cr_ctx *ctx, cr_tensor *x, int axis, int64_t start, int64_t stop, int64_t step);
/* Join n tensors along an existing axis (other dims equal). */
cr_tensor *cr_concat(cr_ctx *ctx, cr_tensor *const *xs, int n, int axis);
/* Join n same-shaped tensors along a new axis. */
cr_tensor *cr_stack(cr_ctx *ctx, cr_tensor *const *xs, int n, int axis);
/* Cut x along axis into n pieces of the given sizes (summing to the dim);
 * out[i] receives piece i (views).  Returns the status. */
CR_NODISCARD cr_status cr_split(cr_ctx *ctx, cr_tensor *x, int axis, const int64_t *sizes, int n,
                                cr_tensor **out);
/* Cut x along axis into n equal pieces (dim divisible by n). */
CR_NODISCARD cr_status cr_chunk(cr_ctx *ctx, cr_tensor *x, int n, int axis, cr_tensor **out);
/* Rows of x along axis picked by n integer indices (0 <= idx < dim);
 * the gradient scatter-adds back (repeated indices accumulate). */
cr_tensor *cr_index_select(cr_ctx *ctx, cr_tensor *x, int axis, const int64_t *idx, int64_t n);
/* Embedding lookup: weight [V,E], ids of shape ids_shape (ndim dims) ->
 * [ids_shape..., E]. */
cr_tensor *cr_embedding(cr_ctx *ctx, cr_tensor *weight, const int64_t *ids, int ndim,
                        const int64_t *ids_shape);
/* x without its size-1 axis (a reshape).  Unlike PyTorch, an axis of
 * another size is an error, not a no-op.  [1] stays [1] (no tensor has 0
 * dims). */
cr_tensor *cr_squeeze(cr_ctx *ctx, cr_tensor *x, int axis);
/* x with a new size-1 axis at position axis of the result (-ndim-1 <= axis
 * <= ndim; a reshape). */
cr_tensor *cr_unsqueeze(cr_ctx *ctx, cr_tensor *x, int axis);
/* x[.., index, ..] along axis, the axis dropped (negative index counts from
 * the end; a 1-d x gives [1]): a view, one "select" node.  Gradient:
 * placed back at index. */
cr_tensor *cr_select(cr_ctx *ctx, cr_tensor *x, int axis, int64_t index);
/* x reversed along n distinct axes (a copy).  Gradient: gy flipped back. */
cr_tensor *cr_flip(cr_ctx *ctx, cr_tensor *x, const int *axes, int n);
/* Constant padding as PyTorch's F.pad(x, pad, value=value): pad holds n
 * sizes (n even, n/2 <= ndim) in pairs (before, after), the LAST axis
 * first: {left, right} pads the last axis, {left, right, top, bottom} the
 * last two.  A negative size cuts elements off instead.  Gradient: the
 * slice of gy where x's values went. */
cr_tensor *cr_pad(cr_ctx *ctx, cr_tensor *x, const int64_t *pad, int n, double value);
/* x tiled reps[d] times along each axis d (PyTorch's Tensor.repeat): n
 * counts >= 1, n >= ndim; when n > ndim, x first gets leading size-1 axes.
 * Gradient: the sum over the copies. */
cr_tensor *cr_repeat(cr_ctx *ctx, cr_tensor *x, const int64_t *reps, int n);
/* A contiguous copy of a view (x itself if already contiguous). */
cr_tensor *cr_contiguous(cr_ctx *ctx, cr_tensor *x);
/* x converted to dtype dt (differentiable; x itself if already dt). */
cr_tensor *cr_cast(cr_ctx *ctx, cr_tensor *x, cr_dtype dt);

/* ---- normalisation */
/* PyTorch's F.layer_norm over the last k dims of x (normalized_shape = those
 * dims): each row is shifted to mean 0 and scaled by 1/sqrt(var + eps)
 * (biased variance), then times weight and plus bias, both optional (NULL)
 * and of the normalized shape.  PyTorch's default eps is 1e-5.
 * Differentiable in x, weight and bias. */
cr_tensor *cr_layer_norm(cr_ctx *ctx, cr_tensor *x, int k, cr_tensor *weight, cr_tensor *bias,
                         double eps);

/* ---- indexing by i64 tensors (see chainrule/tensor.h: cr_from_i64) */
/* PyTorch's torch.gather: y[.., j, ..] = x[.., index[.., j, ..], ..] along
 * axis.  index is i64 with x's number of dims, none larger than x's off
 * the axis, values in [0, x's dim along axis); y has index's shape.
 * Gradient: scatter-added back (repeated indices accumulate). */
cr_tensor *cr_gather(cr_ctx *ctx, cr_tensor *x, int axis, cr_tensor *index);
/* PyTorch's Tensor.scatter_add: a copy of x with
 * y[.., index[.., j, ..], ..] += src[.., j, ..] along axis; index as for
 * cr_gather, src of index's shape (and x's dtype).  Differentiable in x
 * (gy) and src (gy gathered at index). */
cr_tensor *cr_scatter_add(cr_ctx *ctx, cr_tensor *x, int axis, cr_tensor *index, cr_tensor *src);
/* cr_index_select and cr_embedding with the indices as an i64 tensor (1-d
 * for index_select; any shape for embedding: the result is
 * [ids' shape..., E]). */
cr_tensor *cr_index_select_t(cr_ctx *ctx, cr_tensor *x, int axis, cr_tensor *index);
cr_tensor *cr_embedding_t(cr_ctx *ctx, cr_tensor *weight, cr_tensor *ids);

/* ---- scans */
/* Cumulative sum along axis (accumulated in double).  Gradient: the
 * cumulative sum of gy in reverse. */
cr_tensor *cr_cumsum(cr_ctx *ctx, cr_tensor *x, int axis);

/* ---- softmax family and losses */
cr_tensor *cr_softmax(cr_ctx *ctx, cr_tensor *x, int axis);
cr_tensor *cr_log_softmax(cr_ctx *ctx, cr_tensor *x, int axis);
/* Cross-entropy of logits [N,C] against class targets[N] (0 <= t < C),
 * fused and stable; mean over targets != ignore_index -> [1].  Use
 * CR_NO_IGNORE to count every target.  All ignored gives 0. */
#define CR_NO_IGNORE INT64_MIN
cr_tensor *cr_cross_entropy(cr_ctx *ctx, cr_tensor *logits, const int64_t *targets,
                            int64_t ignore_index);
/* Mean squared error mean((pred - target)^2) -> [1]; same shapes. */
cr_tensor *cr_mse(cr_ctx *ctx, cr_tensor *pred, cr_tensor *target);

/* ---- losses with PyTorch's semantics.  `reduction`: CR_REDUCE_MEAN (the
 * default, 0), _SUM, _NONE (the per-element losses, the targets' shape),
 * and _BATCHMEAN for kl_div only (sum / the first dim's size). */
typedef enum cr_reduction {
  CR_REDUCE_MEAN = 0,
  CR_REDUCE_SUM,
  CR_REDUCE_NONE,
  CR_REDUCE_BATCHMEAN,
} cr_reduction;

/* Options of the class losses; NULL or zero-initialised means PyTorch's
 * defaults (mean, no weights, no smoothing, classes on the last axis). */
typedef struct cr_class_loss_opts {
  cr_reduction reduction;
  /* [C] class weights, of the scores' dtype, or NULL.  Constants: they get
   * no gradient.  The mean divides by the sum of the weights of the
   * counted targets (PyTorch's weighted mean). */
  cr_tensor *weight;
  /* cross-entropy only: the target distribution is (1 - e) onehot + e / C,
   * 0 <= e <= 1 (PyTorch's label_smoothing) */
  double label_smoothing;
  /* the class axis is 1 ([N,C,d1,...], PyTorch's layout) instead of the
   * last ([N,C], [B,T,C]: no permute needed for a sequence model) */
  bool classes_at_dim1;
} cr_class_loss_opts;

/* Cross-entropy of logits against class targets (an i64 tensor with the
 * logits' shape without the class axis: [N] for [N,C], [B,T] for [B,T,C];
 * [1] for 1-d [C] logits), with targets == ignore_index skipped (no loss,
 * no gradient; CR_NO_IGNORE counts all; PyTorch's default is -100).
 * Stable (log-sum-exp with the max subtracted), fused: the gradient is
 * softmax minus the smoothed one-hot, no [.., C] intermediate.  With mean
 * and nothing counted it returns 0 and no gradient (PyTorch: NaN).
 * Errors: targets out of [0, C), a targets shape that does not fit,
 * a weight not [C], smoothing outside [0, 1]. */
cr_tensor *cr_cross_entropy_ex(cr_ctx *ctx, cr_tensor *logits, cr_tensor *targets,
                               int64_t ignore_index, const cr_class_loss_opts *opts);
/* The mean form with an i64 targets tensor (cr_cross_entropy's semantics;
 * [N,C] logits use its fused kernels, others cr_cross_entropy_ex). */
cr_tensor *cr_cross_entropy_t(cr_ctx *ctx, cr_tensor *logits, cr_tensor *targets,
                              int64_t ignore_index);
/* Negative log-likelihood of log-probabilities (PyTorch's nll_loss):
 * -w_t logp[.., t]; layout, targets, ignore_index and options as for
 * cr_cross_entropy_ex (label_smoothing must be 0). */
cr_tensor *cr_nll_loss(cr_ctx *ctx, cr_tensor *logp, cr_tensor *targets, int64_t ignore_index,
                       const cr_class_loss_opts *opts);

/* The elementwise losses take an input and a target of one shape (no
 * broadcasting) and are differentiable in both. */
/* |input - target| */
cr_tensor *cr_l1_loss(cr_ctx *ctx, cr_tensor *input, cr_tensor *target, cr_reduction r);
/* (input - target)^2 (with CR_REDUCE_MEAN: cr_mse) */
cr_tensor *cr_mse_loss(cr_ctx *ctx, cr_tensor *input, cr_tensor *target, cr_reduction r);
/* d = |input - target|: d^2 / (2 beta) where d < beta, else d - beta/2;
 * beta >= 0 (0: the l1 loss).  PyTorch's default beta is 1. */
cr_tensor *cr_smooth_l1_loss(cr_ctx *ctx, cr_tensor *input, cr_tensor *target, double beta,
                             cr_reduction r);
/* d^2 / 2 where d < delta, else delta (d - delta/2); delta > 0 (default 1). */
cr_tensor *cr_huber_loss(cr_ctx *ctx, cr_tensor *input, cr_tensor *target, double delta,
                         cr_reduction r);
/* KL divergence with input = log-probabilities (PyTorch's kl_div): target
 * probabilities give target (log target - input), 0 where target = 0; with
 * log_target, the target holds log-probabilities: exp(t) (t - input).
 * CR_REDUCE_BATCHMEAN (the mathematically right one) divides the sum by
 * the first dim; CR_REDUCE_MEAN averages over every element. */
cr_tensor *cr_kl_div(cr_ctx *ctx, cr_tensor *input, cr_tensor *target, bool log_target,
                     cr_reduction r);
/* Options of cr_bce_with_logits; NULL or zeros: mean, no weights. */
typedef struct cr_bce_opts {
  cr_reduction reduction;
  cr_tensor *weight;     /* broadcast to the input's shape, or NULL */
  cr_tensor *pos_weight; /* weight of the positive term, broadcast (e.g. [C]), or NULL */
} cr_bce_opts;
/* Binary cross-entropy of logits x against targets y in [0, 1]:
 * w ((1 - y) x + (1 + (pw - 1) y) log(1 + exp(-x))), computed without
 * overflow (PyTorch's BCEWithLogitsLoss).  Differentiable in x, y and the
 * weights. */
cr_tensor *cr_bce_with_logits(cr_ctx *ctx, cr_tensor *x, cr_tensor *y, const cr_bce_opts *opts);

/* ---- regularisation */
/* Inverted dropout: in training mode each element is zeroed with
 * probability p and the rest scaled by 1/(1-p), drawing from rng; in
 * evaluation mode (or p == 0) it returns x.  0 <= p < 1. */
cr_tensor *cr_dropout(cr_ctx *ctx, cr_tensor *x, double p, cr_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
