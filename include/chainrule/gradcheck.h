/* chainrule/gradcheck.h — compare autodiff gradients with finite differences.
 *
 * For a function f of n tensors, cr_gradcheck computes the gradient of every
 * input element by backward and by central differences in float64,
 *     dL/dx_i ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps),
 * where L is f's output when f returns one element, or L = sum(f(x) * v)
 * for a non-scalar output.  For the full check v runs over every unit vector
 * (the whole Jacobian, one backward per output element); in fast mode, as
 * PyTorch's gradcheck(fast_mode=True), v runs over a few random vectors and
 * the check compares the projections v^T J u for random unit vectors u
 * against directional differences, which is cheap for large cases.
 *
 * An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
 *
 * The inputs are copied to float64 persistent tensors with requires_grad
 * set, f is evaluated in a private context, and the caller's tensors are
 * left untouched.
 */
#ifndef CHAINRULE_GRADCHECK_H
#define CHAINRULE_GRADCHECK_H

#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The function under test: builds its output from inputs[0..n) with ops in
 * ctx.  Returns NULL on error (the error is in ctx). */
typedef cr_tensor *(*cr_gradcheck_fn)(cr_ctx *ctx, cr_tensor *const *inputs, int n, void *user);

typedef struct cr_gradcheck_opts {
  double eps;  /* finite-difference step, default 1e-6 */
  double atol; /* default 1e-5 */
  double rtol; /* default 1e-3 */
  /* 0: full Jacobian when the output has <= full_max_outputs elements,
   * random projections otherwise (default); 1: always full; 2: always fast. */
  int mode;
  int64_t full_max_outputs; /* default 64 */
  int n_projections;        /* fast mode: random v (and u) pairs, default 4 */
  uint64_t seed;            /* for projections, default 1234 */
  /* Skip inputs whose mask entry is false (NULL: check all). */
  const bool *check_input;
} cr_gradcheck_opts;

typedef struct cr_gradcheck_report {
  bool passed;
  double max_abs_err;   /* largest |analytic - numeric| */
  double max_rel_err;   /* largest |a - n| / max(|n|, 1e-12)  (elements with
                           |n| >= atol only) */
  int worst_input;      /* input of the element with the worst
                           err / (atol + rtol |n|), -1 if none (fast mode) */
  int64_t worst_index;  /* its flat index in that input (fast mode: the
                           projection number) */
  int64_t worst_output; /* the output element whose derivative it was (0
                           for a one-element output; -1 in fast mode) */
  double worst_analytic, worst_numeric;
  int64_t n_checked; /* elements (or projections) compared */
  char message[512]; /* "" on success, else what failed and where */
} cr_gradcheck_report;

/* Fill opts with the defaults. */
void cr_gradcheck_default_opts(cr_gradcheck_opts *opts);

/* Check f at inputs.  opts NULL means defaults.  Returns true when every
 * compared element passes; report (may be NULL) receives the details.
 * An error inside f (or a NULL input) fails the check with f's message. */
bool cr_gradcheck(cr_gradcheck_fn f, cr_tensor *const *inputs, int n, void *user,
                  const cr_gradcheck_opts *opts, cr_gradcheck_report *report);

/* Second derivatives: checks the gradient of f's gradient, as PyTorch's
 * gradgradcheck.  With v a fixed random seed of f's output shape, the
 * function g(x, v) = J_f(x)^T v (the VJP, built by cr_autograd_grad with
 * create_graph, so it is made of the ops' differentiable VJPs) is checked
 * by cr_gradcheck with respect to both x and v: its analytic derivative
 * (a backward through the backward) against float64 central differences
 * of the first derivative — along random directions (fast mode) when g
 * has more than opts->full_max_outputs elements.  opts and report as for
 * cr_gradcheck; inputs masked off by check_input are held constant. */
bool cr_gradgradcheck(cr_gradcheck_fn f, cr_tensor *const *inputs, int n, void *user,
                      const cr_gradcheck_opts *opts, cr_gradcheck_report *report);

#ifdef __cplusplus
}
#endif
#endif
