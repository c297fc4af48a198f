/* The autograd engine's open side: higher-order gradients (create_graph,
 * cr_autograd_grad, Hessian-vector products, a gradient penalty), hooks and
 * retained gradients, anomaly mode, user-defined ops, names, and the
 * checks' reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"

static int setup(void **state) {
  *state = cr_ctx_new();
  return *state ? 0 : -1;
}
static int teardown(void **state) {
  cr_ctx_free(*state);
  return 0;
}

static cr_tensor *param(cr_ctx *ctx, int ndim, const int64_t *shape, const double *v) {
  cr_tensor *p = cr_tensor_new(ctx, CR_F64, ndim, shape);
  for (int64_t i = 0; i < cr_numel(p); i++)
    cr_set_flat(p, i, v[i]);
  cr_set_requires_grad(p, true);
  return p;
}

/* y = sum x^3: dy/dx = 3x^2, d(sum dy/dx)/dx = 6x, d^3 = 6 */
static void test_grad_of_grad(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(3), (const double[]){0.5, -1.5, 2});
  cr_tensor *y = cr_sum(ctx, cr_mul(ctx, cr_square(ctx, x), x));
  cr_autograd_opts keep = {.create_graph = true};
  cr_tensor *g, *gg, *ggg;
  assert_int_equal(cr_autograd_grad(ctx, 1, &y, NULL, 1, &x, &keep, &g), CR_OK);
  assert_true(cr_requires_grad(g)); /* a tensor with a graph */
  cr_tensor *sg = cr_sum(ctx, g);
  assert_int_equal(cr_autograd_grad(ctx, 1, &sg, NULL, 1, &x, &keep, &gg), CR_OK);
  cr_tensor *sgg = cr_sum(ctx, gg);
  assert_int_equal(cr_autograd_grad(ctx, 1, &sgg, NULL, 1, &x, NULL, &ggg), CR_OK);
  for (int i = 0; i < 3; i++) {
    double v = cr_get_flat(x, i);
    assert_true(fabs(cr_get_flat(g, i) - 3 * v * v) < 1e-14);
    assert_true(fabs(cr_get_flat(gg, i) - 6 * v) < 1e-14);
    assert_true(fabs(cr_get_flat(ggg, i) - 6) < 1e-14);
  }
  assert_false(cr_requires_grad(ggg)); /* no create_graph: plain values */
  /* no .grad was touched */
  assert_null(cr_grad(x));
  cr_tensor_free(x);
}

/* L(w) = mean CE(softmax(tanh(X w1) w2)): H v by double backward against
 * central differences of the gradient along v. */
typedef struct {
  cr_tensor *X;
  const int64_t *t;
} mlp_data;

static cr_tensor *mlp_loss(cr_ctx *ctx, cr_tensor *w1, cr_tensor *w2, const mlp_data *d) {
  cr_tensor *h = cr_tanh(ctx, cr_matmul(ctx, d->X, w1));
  return cr_cross_entropy(ctx, cr_matmul(ctx, h, w2), d->t, CR_NO_IGNORE);
}

static void grads_at(cr_ctx *ctx, cr_tensor *const *w, const mlp_data *d, double *out) {
  cr_tensor *L = mlp_loss(ctx, w[0], w[1], d), *g[2];
  assert_int_equal(cr_autograd_grad(ctx, 1, &L, NULL, 2, w, NULL, g), CR_OK);
  int64_t k = 0;
  for (int j = 0; j < 2; j++)
    for (int64_t i = 0; i < cr_numel(g[j]); i++)
      out[k++] = cr_get_flat(g[j], i);
}

static void test_hessian_vector_product(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(5);
  cr_tensor *w[2] = {cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(4, 5), 0, 0.7)),
                     cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(5, 3), 0, 0.7))};
  cr_tensor *v[2] = {cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(4, 5), 0, 1)),
                     cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(5, 3), 0, 1))};
  for (int j = 0; j < 2; j++)
    cr_set_requires_grad(w[j], true);
  mlp_data d = {cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(6, 4), 0, 1)),
                (const int64_t[]){0, 2, 1, 1, 0, 2}};
  /* analytic: g = dL/dw with a graph; Hv = d<g, v>/dw */
  cr_tensor *L = mlp_loss(ctx, w[0], w[1], &d), *g[2], *hv[2];
  cr_autograd_opts keep = {.create_graph = true};
  assert_int_equal(cr_autograd_grad(ctx, 1, &L, NULL, 2, w, &keep, g), CR_OK);
  cr_tensor *dot =
      cr_add(ctx, cr_sum(ctx, cr_mul(ctx, g[0], v[0])), cr_sum(ctx, cr_mul(ctx, g[1], v[1])));
  assert_int_equal(cr_autograd_grad(ctx, 1, &dot, NULL, 2, w, NULL, hv), CR_OK);
  /* numeric: (g(w + h v) - g(w - h v)) / 2h */
  const int64_t n = 35;
  double plus[35], minus[35], h = 1e-5, worst = 0;
  for (int sgn = 0; sgn < 2; sgn++) {
    for (int j = 0; j < 2; j++)
      for (int64_t i = 0; i < cr_numel(w[j]); i++)
        cr_set_flat(w[j], i, cr_get_flat(w[j], i) + (sgn ? -2 : 1) * h * cr_get_flat(v[j], i));
    grads_at(ctx, w, &d, sgn ? minus : plus);
  }
  int64_t k = 0;
  for (int j = 0; j < 2; j++)
    for (int64_t i = 0; i < cr_numel(hv[j]); i++, k++)
      worst = fmax(worst, fabs(cr_get_flat(hv[j], i) - (plus[k] - minus[k]) / (2 * h)));
  assert_int_equal(k, n);
  printf("Hessian-vector product vs central differences of the gradient: max abs diff %.2e\n",
         worst);
  assert_true(worst < 1e-8);
  for (int j = 0; j < 2; j++) {
    cr_tensor_free(w[j]);
    cr_tensor_free(v[j]);
  }
  cr_tensor_free(d.X);
  cr_rng_free(rng);
}

/* A gradient penalty P(x) = sum(tanh(W x))  +  ||d sum(tanh(W x)) / dx||^2
 * is itself a function built with ops, so gradcheck checks its gradient —
 * a backward through a backward. */
static cr_tensor *penalised(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  (void)n, (void)user;
  cr_tensor *x = in[0], *W = in[1];
  cr_tensor *f = cr_sum(ctx, cr_tanh(ctx, cr_matmul(ctx, W, x)));
  cr_tensor *gx;
  cr_autograd_opts keep = {.create_graph = true};
  if (cr_autograd_grad(ctx, 1, &f, NULL, 1, &x, &keep, &gx) != CR_OK)
    return NULL;
  return cr_add(ctx, f, cr_sum(ctx, cr_square(ctx, gx)));
}

static void test_gradient_penalty_gradchecks(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(9);
  cr_tensor *in[2] = {cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(3, 2), 0, 1)),
                      cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(4, 3), 0, 1))};
  cr_gradcheck_report rep;
  cr_gradcheck_opts o;
  cr_gradcheck_default_opts(&o);
  o.atol = 1e-7;
  o.rtol = 1e-6;
  bool ok = cr_gradcheck(penalised, in, 2, NULL, &o, &rep);
  printf("gradient penalty: max abs err %.2e (%lld checked)\n", rep.max_abs_err,
         (long long)rep.n_checked);
  assert_true(ok);
  assert_true(rep.n_checked == 18);
  cr_tensor_free(in[0]);
  cr_tensor_free(in[1]);
  cr_rng_free(rng);
}

/* cr_backward_ex with create_graph: the leaf's grad holds the values and
 * cr_grad_graph the same as a differentiable tensor. */
static void test_backward_create_graph(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2), (const double[]){0.3, -0.8});
  cr_backward_opts o = {.create_graph = true};
  cr_tensor *y = cr_sum(ctx, cr_exp(ctx, cr_mul_scalar(ctx, x, 2))); /* dy/dx = 2 e^{2x} */
  assert_int_equal(cr_backward_ex(ctx, y, NULL, &o), CR_OK);
  cr_tensor *g = cr_grad_graph(ctx, x);
  assert_non_null(g);
  for (int i = 0; i < 2; i++) {
    double v = cr_get_flat(x, i);
    assert_true(fabs(cr_get_flat(cr_grad(x), i) - 2 * exp(2 * v)) < 1e-14);
    assert_true(fabs(cr_get_flat(g, i) - 2 * exp(2 * v)) < 1e-14);
  }
  cr_tensor *s = cr_sum(ctx, g), *gg;
  assert_int_equal(cr_autograd_grad(ctx, 1, &s, NULL, 1, &x, NULL, &gg), CR_OK);
  for (int i = 0; i < 2; i++)
    assert_true(fabs(cr_get_flat(gg, i) - 4 * exp(2 * cr_get_flat(x, i))) < 1e-13);
  /* a second create_graph backward accumulates (values and graph) */
  y = cr_sum(ctx, cr_mul_scalar(ctx, x, 3));
  assert_int_equal(cr_backward_ex(ctx, y, NULL, &o), CR_OK);
  for (int i = 0; i < 2; i++)
    assert_true(fabs(cr_get_flat(cr_grad_graph(ctx, x), i) - cr_get_flat(cr_grad(x), i)) < 1e-15);
  cr_ctx_reset(ctx);
  assert_null(cr_grad_graph(ctx, x)); /* gone with the arena */
  assert_non_null(cr_grad(x));        /* the values stay */
  cr_tensor_free(x);
}

/* ---- hooks */

typedef struct {
  int calls;
  double norm;
} seen;

static cr_tensor *observe(cr_ctx *ctx, cr_tensor *t, cr_tensor *g, void *user) {
  (void)ctx, (void)t;
  seen *s = user;
  s->calls++;
  double n2 = 0;
  for (int64_t i = 0; i < cr_numel(g); i++)
    n2 += cr_get_flat(g, i) * cr_get_flat(g, i);
  s->norm = sqrt(n2);
  return g;
}

static cr_tensor *doubled(cr_ctx *ctx, cr_tensor *t, cr_tensor *g, void *user) {
  (void)t, (void)user;
  return cr_mul_scalar(ctx, g, 2);
}

static cr_tensor *wrong_shape(cr_ctx *ctx, cr_tensor *t, cr_tensor *g, void *user) {
  (void)t, (void)g, (void)user;
  return cr_zeros(ctx, CR_F64, CR_SHAPE(7));
}

static void test_hooks(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(3), (const double[]){1, 2, 3});
  for (int graph = 0; graph < 2; graph++) {
    cr_zero_grad(x);
    cr_backward_opts o = {.create_graph = graph};
    /* h = 2x, L = sum(h^2): dL/dh = 4x; a hook on h doubling it doubles dL/dx */
    cr_tensor *h = cr_mul_scalar(ctx, x, 2);
    seen s = {0, 0};
    assert_int_equal(cr_register_hook(ctx, h, observe, &s), CR_OK);
    assert_int_equal(cr_register_hook(ctx, h, doubled, NULL), CR_OK);
    cr_tensor *L = cr_sum(ctx, cr_square(ctx, h));
    assert_int_equal(cr_backward_ex(ctx, L, NULL, &o), CR_OK);
    assert_int_equal(s.calls, 1);
    assert_true(fabs(s.norm - 4 * sqrt(14.0)) < 1e-12); /* saw 4x, before doubling */
    for (int i = 0; i < 3; i++)                         /* dL/dx = 2 * (2 * 4x) */
      assert_true(cr_get_flat(cr_grad(x), i) == 16 * cr_get_flat(x, i));
  }
  /* a leaf's hook sees this pass's contribution, before accumulation */
  seen s = {0, 0};
  assert_int_equal(cr_register_hook(ctx, x, observe, &s), CR_OK);
  cr_tensor *L = cr_sum(ctx, x); /* contribution: ones */
  assert_int_equal(cr_backward(ctx, L), CR_OK);
  assert_int_equal(s.calls, 1);
  assert_true(fabs(s.norm - sqrt(3.0)) < 1e-15);
  assert_true(cr_get_flat(cr_grad(x), 0) == 16 + 1);
  cr_clear_hooks(x);
  /* a hook returning a wrong shape stops the pass with a message */
  cr_tensor *h = cr_tanh(ctx, x);
  assert_int_equal(cr_register_hook(ctx, h, wrong_shape, NULL), CR_OK);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, h)), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx),
                      "hook on [3] returned [7] f64, expected the gradient's [3] f64");
  cr_ctx_clear_error(ctx);
  cr_tensor_free(x);
}

/* hooks on persistent parameters do not break the no-malloc steady state */
static void test_hooks_steady_state(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *w = param(ctx, CR_SHAPE(4), (const double[]){1, 2, 3, 4});
  seen s = {0, 0};
  assert_int_equal(cr_register_hook(ctx, w, observe, &s), CR_OK);
  size_t warm = 0;
  for (int step = 0; step < 20; step++) {
    if (step == 3)
      warm = cr_alloc_count();
    cr_tensor *h = cr_tanh(ctx, cr_mul_scalar(ctx, w, 0.5));
    assert_int_equal(cr_register_hook(ctx, h, observe, &s), CR_OK);
    assert_int_equal(cr_backward(ctx, cr_sum(ctx, h)), CR_OK);
    cr_ctx_reset(ctx);
  }
  assert_int_equal(cr_alloc_count(), warm);
  assert_int_equal(s.calls, 40);
  cr_tensor_free(w); /* frees its hook too (valgrind checks) */
}

/* ---- anomaly mode */

static void test_anomaly_forward(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2), (const double[]){-2, 3});
  cr_set_name(x, "x");
  /* off: the NaN flows through silently (PyTorch's default too) */
  cr_tensor *L = cr_sum(ctx, cr_log(ctx, x));
  assert_non_null(L);
  assert_true(isnan(cr_item(L)));
  /* on: the op that made it is named */
  assert_false(cr_set_detect_anomaly(ctx, true));
  assert_null(cr_sum(ctx, cr_log(ctx, x)));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_NUMERIC);
  assert_string_equal(cr_ctx_error(ctx), "anomaly: forward op log [2] 'x' produced nan in its "
                                         "result [2] (element 0)");
  cr_ctx_clear_error(ctx);
  cr_set_detect_anomaly(ctx, false);
  cr_tensor_free(x);
}

static void test_anomaly_vjp(void **state) {
  cr_ctx *ctx = *state;
  /* sqrt(x) at x = 0 is fine forward; its VJP gy / (2 sqrt x) is inf */
  cr_tensor *x = param(ctx, CR_SHAPE(3), (const double[]){4, 0, 1});
  cr_set_name(x, "x");
  cr_set_detect_anomaly(ctx, true);
  for (int graph = 0; graph < 2; graph++) {
    cr_tensor *L = cr_sum(ctx, cr_sqrt(ctx, x));
    assert_non_null(L);
    cr_backward_opts o = {.create_graph = graph};
    assert_int_equal(cr_backward_ex(ctx, L, NULL, &o), CR_ERR_NUMERIC);
    printf("%s: %s\n", graph ? "graph pass" : "kernel pass", cr_ctx_error(ctx));
    assert_non_null(strstr(cr_ctx_error(ctx), "anomaly: VJP of sqrt [3] 'x' produced inf"));
    if (!graph)
      assert_string_equal(cr_ctx_error(ctx),
                          "anomaly: VJP of sqrt [3] 'x' produced inf in input "
                          "0 [3] 'x' (element 1 of its gradient; the forward op's result was "
                          "[3])");
    cr_ctx_clear_error(ctx);
  }
  cr_set_detect_anomaly(ctx, false);
  cr_tensor_free(x);
}

/* anomaly mode through views: a view of a checked result is not scanned
 * again, a view of a leaf is; an infinite gradient written through a
 * slice into the gradient of a larger tensor is found at the VJP that
 * wrote it */
static void test_anomaly_through_views(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2, 3), (const double[]){1, 2, 0, 4, 0, 6});
  cr_set_name(x, "x");
  cr_set_detect_anomaly(ctx, true);
  /* y = x * x [2,3]; s = y[:, 1:3]; sqrt at the zeros: VJP inf */
  cr_tensor *s = cr_slice(ctx, cr_mul(ctx, x, x), 1, 1, 3, 1);
  cr_tensor *L = cr_sum(ctx, cr_sqrt(ctx, s));
  assert_non_null(L);
  assert_int_equal(cr_backward(ctx, L), CR_ERR_NUMERIC);
  assert_string_equal(cr_ctx_error(ctx), "anomaly: VJP of sqrt [2,2] produced inf in input 0 "
                                         "[2,2] (element 1 of its gradient; the forward op's "
                                         "result was [2,2])");
  cr_ctx_clear_error(ctx);
  /* a leaf holding NaN is caught at the first view of it */
  cr_tensor *bad = param(ctx, CR_SHAPE(2, 2), (const double[]){1, NAN, 3, 4});
  cr_set_name(bad, "bad");
  assert_null(cr_reshape(ctx, bad, CR_SHAPE(4)));
  assert_non_null(
      strstr(cr_ctx_error(ctx), "anomaly: forward op reshape [2,2] 'bad' produced nan"));
  cr_ctx_clear_error(ctx);
  /* a NaN made by an op is named at that op, not at the views after it */
  cr_tensor *n = param(ctx, CR_SHAPE(2), (const double[]){-1, 1});
  assert_null(cr_slice(ctx, cr_reshape(ctx, cr_log(ctx, n), CR_SHAPE(1, 2)), 1, 0, 1, 1));
  assert_non_null(strstr(cr_ctx_error(ctx), "anomaly: forward op log [2] produced nan"));
  cr_ctx_clear_error(ctx);
  cr_set_detect_anomaly(ctx, false);
  cr_tensor_free(x);
  cr_tensor_free(bad);
  cr_tensor_free(n);
}

/* anomaly mode changes no bit of a gradient, and checks the sums of
 * products staged for a shared weight when they are added */
static void test_anomaly_same_bits_and_staged_sums(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(8);
  cr_rnn_config cfg = {&cr_cell_lstm, 4, 6, 2, 0.0, false, CR_F32};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_persist(ctx, cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(7, 3, 4), 0, 1));
  float *ref[16] = {NULL};
  const int np = cr_rnn_num_params(rnn);
  for (int on = 0; on < 2; on++) {
    cr_set_detect_anomaly(ctx, on);
    for (int i = 0; i < np; i++)
      cr_zero_grad(cr_rnn_param(rnn, i));
    cr_tensor *out = NULL;
    assert_int_equal(cr_rnn_forward(ctx, rnn, x, NULL, NULL, NULL, &out, NULL), CR_OK);
    assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_square(ctx, out))), CR_OK);
    for (int i = 0; i < np; i++) {
      const cr_tensor *g = cr_grad(cr_rnn_param(rnn, i));
      size_t bytes = (size_t)cr_numel(g) * sizeof(float);
      if (!on) {
        ref[i] = malloc(bytes);
        memcpy(ref[i], cr_data_const(g), bytes);
      } else {
        assert_memory_equal(cr_data_const(g), ref[i], bytes);
      }
    }
    cr_ctx_reset(ctx);
  }
  for (int i = 0; i < np; i++)
    free(ref[i]);
  /* finite parts, an infinite sum: dW = x1^T gy + x2^T gy overflows f32 */
  cr_tensor *W = cr_persist(ctx, cr_ones(ctx, CR_F32, CR_SHAPE(2, 2)));
  cr_set_requires_grad(W, true);
  cr_set_name(W, "W");
  cr_tensor *x1 = cr_full(ctx, CR_F32, CR_SHAPE(2, 2), 1e20),
            *x2 = cr_full(ctx, CR_F32, CR_SHAPE(2, 2), 1e20);
  cr_tensor *y = cr_add(ctx, cr_matmul(ctx, x1, W), cr_matmul(ctx, x2, W));
  assert_non_null(y);
  cr_tensor *seed = cr_full(ctx, CR_F32, CR_SHAPE(2, 2), 1e20);
  assert_int_equal(cr_backward_seed(ctx, y, seed), CR_ERR_NUMERIC);
  assert_non_null(strstr(cr_ctx_error(ctx), "anomaly: the gradient of [2,2] 'W' has inf at "
                                            "element 0 once the products queued"));
  cr_ctx_clear_error(ctx);
  cr_set_detect_anomaly(ctx, false);
  cr_tensor_free(W);
  cr_tensor_free(x);
  cr_rnn_free(rnn);
  cr_rng_free(rng);
}

/* ---- user-defined ops */

/* straight-through sign: forward sign(x), backward as if identity */
static cr_tensor *sign_forward(cr_ctx *ctx, cr_fn_ctx *fc, cr_tensor *const *in, int n,
                               void *user) {
  (void)fc, (void)n, (void)user;
  cr_tensor *y = cr_zeros(ctx, cr_dtype_of(in[0]), cr_ndim(in[0]), cr_shape(in[0]));
  for (int64_t i = 0; y && i < cr_numel(y); i++)
    cr_set_flat(y, i, cr_get_flat(in[0], i) >= 0 ? 1 : -1);
  return y;
}
static cr_status ste_backward(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                              void *user) {
  (void)fc, (void)user;
  gx[0] = gy;
  return cr_ctx_status(ctx);
}
static const cr_function_def sign_ste = {"sign_ste", 1, sign_forward, ste_backward};

static cr_status bad_backward(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                              void *user) {
  (void)fc, (void)gy, (void)user;
  gx[0] = cr_zeros(ctx, CR_F64, CR_SHAPE(5));
  return cr_ctx_status(ctx);
}
static const cr_function_def bad = {"bad_op", 1, sign_forward, bad_backward};

static void test_custom_ops(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(3), (const double[]){-0.5, 0.2, 3});
  cr_tensor *y = cr_function_apply(ctx, &sign_ste, &x, 1, NULL);
  assert_non_null(y);
  assert_string_equal(cr_grad_fn(y), "sign_ste");
  assert_true(cr_get_flat(y, 0) == -1 && cr_get_flat(y, 2) == 1);
  cr_tensor *w = cr_from_f64(ctx, CR_SHAPE(3), (const double[]){10, 20, 30});
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_mul(ctx, y, w))), CR_OK);
  for (int i = 0; i < 3; i++) /* straight through: dL/dx = w */
    assert_true(cr_get_flat(cr_grad(x), i) == 10 * (i + 1));
  /* a backward returning the wrong shape is a message naming the op */
  y = cr_function_apply(ctx, &bad, &x, 1, NULL);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, y)), CR_ERR_SHAPE);
  assert_string_equal(cr_ctx_error(ctx), "bad_op: backward returned gradient [5] f64 for input "
                                         "0, which is [3] f64");
  cr_ctx_clear_error(ctx);
  /* wrong input count */
  cr_tensor *two[2] = {x, x};
  assert_null(cr_function_apply(ctx, &sign_ste, two, 2, NULL));
  assert_string_equal(cr_ctx_error(ctx), "sign_ste: 2 inputs given, it takes 1 (at most 8)");
  cr_ctx_clear_error(ctx);
  cr_tensor_free(x);
}

/* ---- names, reports, API edges */

static void test_names_in_print_dot_and_errors(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *W = param(ctx, CR_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
  cr_set_name(W, "weight_hh_l0");
  assert_string_equal(cr_name(W), "weight_hh_l0");
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_print(f, W);
  cr_tensor *y = cr_tanh(ctx, W);
  cr_set_name(y, "h_2");
  cr_graph_dot(f, cr_sum(ctx, y));
  fclose(f);
  assert_non_null(strstr(buf, "name=weight_hh_l0"));
  assert_non_null(strstr(buf, "label=\"weight_hh_l0\\n[2,3]\\nrequires_grad\""));
  assert_non_null(strstr(buf, "label=\"tanh\\n[2,3]\\nh_2\""));
  free(buf);
  assert_null(cr_matmul(ctx, W, W));
  assert_string_equal(cr_ctx_error(ctx), "matmul: [2,3] 'weight_hh_l0' @ [2,3] 'weight_hh_l0': "
                                         "inner dimensions 3 and 2 differ");
  cr_ctx_clear_error(ctx);
  /* a NULL input with no earlier error is reported, naming the op */
  assert_null(cr_tanh(ctx, NULL));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "tanh: input 0 is NULL (an earlier op failed in another "
                                         "context, or a tensor was never set)");
  cr_ctx_clear_error(ctx);
  cr_tensor_free(W);
}

/* ---- scopes */

static size_t count_in(const char *s, const char *what) {
  size_t n = 0;
  for (; (s = strstr(s, what)); s++)
    n++;
  return n;
}

static void test_scopes(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *w = param(ctx, CR_SHAPE(2), (const double[]){0.5, -1});
  /* recorded with each op, nested by the caller, restored, cleared by reset */
  assert_null(cr_set_scope(ctx, "a"));
  cr_tensor *a1 = cr_mul_scalar(ctx, w, 2);
  char label[8] = "b";
  const char *prev = cr_set_scope(ctx, label);
  label[0] = 'x'; /* the label was copied */
  cr_tensor *b = cr_mul_scalar(ctx, a1, 3);
  cr_set_scope(ctx, prev);
  cr_tensor *a2 = cr_mul_scalar(ctx, w, 5);
  cr_set_scope(ctx, NULL);
  cr_tensor *root = cr_add(ctx, b, a2);
  assert_string_equal(cr_scope_of(a1), "a");
  assert_string_equal(cr_scope_of(b), "b");
  assert_string_equal(cr_scope_of(a2), "a");
  assert_null(cr_scope_of(root));
  assert_null(cr_scope_of(w)); /* a leaf */
  /* the graph: one cluster per label although "a"'s ops are visited apart */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_graph_dot(f, root);
  fclose(f);
  assert_int_equal(count_in(buf, "subgraph cluster_"), 2);
  assert_int_equal(count_in(buf, "label=\"a\""), 1);
  free(buf);
  cr_graph_dot_opts none = {.no_scopes = true};
  f = open_memstream(&buf, &len);
  cr_graph_dot_ex(f, root, &none);
  fclose(f);
  assert_int_equal(count_in(buf, "subgraph"), 0);
  free(buf);
  /* anomaly messages quote it */
  cr_set_detect_anomaly(ctx, true);
  cr_set_scope(ctx, "step 12");
  assert_null(cr_log(ctx, cr_neg(ctx, cr_abs(ctx, w))));
  assert_non_null(strstr(cr_ctx_error(ctx), "produced nan in its result [2] (element 0) in "
                                            "scope 'step 12'"));
  cr_ctx_clear_error(ctx);
  cr_set_detect_anomaly(ctx, false);
  cr_set_scope(ctx, "kept");
  cr_ctx_reset(ctx);
  assert_null(cr_scope(ctx));
  cr_tensor_free(w);
}

/* the recurrent layer's steps: "step t" (layer 0), "layer l step t", after
 * the caller's scope, which it restores */
static void test_rnn_step_scopes(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(3);
  cr_rnn_config cfg = {&cr_cell_lstm, 3, 4, 2, 0.0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &cfg, rng);
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(5, 2, 3), 0, 1);
  cr_tensor *states[2 * 5 * 2];
  for (int checkpointed = 0; checkpointed < 2; checkpointed++) {
    cr_set_scope(ctx, "encoder");
    cr_rnn_forward_opts o = {.step_states = checkpointed ? NULL : states,
                             .checkpoint_every = checkpointed ? 2 : 0};
    cr_tensor *out = NULL;
    assert_int_equal(cr_rnn_forward_ex(ctx, rnn, x, NULL, NULL, NULL, &o, &out, NULL), CR_OK);
    assert_string_equal(cr_scope(ctx), "encoder");
    if (!checkpointed) { /* layer-major, state-major slots: [l][s][t] */
      assert_string_equal(cr_scope_of(states[3]), "encoder/step 3");     /* h, layer 0 */
      assert_string_equal(cr_scope_of(states[5 + 4]), "encoder/step 4"); /* c, layer 0 */
      assert_string_equal(cr_scope_of(states[10 + 2]), "encoder/layer 1 step 2");
    }
    cr_set_scope(ctx, NULL);
    cr_ctx_reset(ctx);
    x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(5, 2, 3), 0, 1);
  }
  cr_rnn_free(rnn);
  cr_rng_free(rng);
}

static void test_typed_constructors(void **state) {
  cr_ctx *ctx = *state;
  const float f[3] = {1.5f, 2, 3};
  const double d[2] = {0.1, 0.2};
  cr_tensor *a = CR_FROM(ctx, CR_SHAPE(3), f), *b = CR_FROM(ctx, CR_SHAPE(2), d);
  cr_tensor *c = CR_FROM(ctx, CR_SHAPE(2), ((double[]){7, 8}));
  assert_int_equal(cr_dtype_of(a), CR_F32);
  assert_int_equal(cr_dtype_of(b), CR_F64);
  assert_int_equal(cr_dtype_of(c), CR_F64);
  assert_true(cr_get_flat(a, 0) == 1.5 && cr_get_flat(b, 1) == 0.2 && cr_get_flat(c, 1) == 8);
  float buf[2] = {4, 5};
  cr_tensor *w = cr_wrap_f32(ctx, CR_SHAPE(2), buf);
  buf[1] = 6; /* borrowed */
  assert_true(cr_get_flat(w, 1) == 6);
}

/* a wrong VJP at a known element: gradcheck reports that element's flat
 * index in the input and the output element, for a non-scalar output */
static cr_status off_at_2(cr_ctx *ctx, const cr_fn_ctx *fc, cr_tensor *gy, cr_tensor **gx,
                          void *user) {
  (void)user;
  cr_tensor *x = cr_fn_input(fc, 0);
  cr_tensor *k = cr_ones(ctx, CR_F64, cr_ndim(x), cr_shape(x));
  cr_set_flat(k, 2, 1.5); /* element 2's derivative is off by half */
  gx[0] = cr_mul(ctx, gy, cr_mul_scalar(ctx, k, 2.0));
  return cr_ctx_status(ctx);
}
static cr_tensor *double_forward(cr_ctx *ctx, cr_fn_ctx *fc, cr_tensor *const *in, int n,
                                 void *user) {
  (void)fc, (void)n, (void)user;
  return cr_mul_scalar(ctx, in[0], 2.0);
}
static const cr_function_def off = {"off_at_2", 1, double_forward, off_at_2};
static cr_tensor *apply_off(cr_ctx *ctx, cr_tensor *const *in, int n, void *user) {
  (void)n, (void)user;
  return cr_function_apply(ctx, &off, in, 1, NULL);
}

static void test_gradcheck_reports_input_index(void **state) {
  cr_ctx *ctx = *state;
  cr_tensor *x = param(ctx, CR_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
  cr_gradcheck_report rep;
  assert_false(cr_gradcheck(apply_off, &x, 1, NULL, NULL, &rep));
  assert_int_equal(rep.worst_input, 0);
  assert_int_equal(rep.worst_index, 2);  /* the flat index in x */
  assert_int_equal(rep.worst_output, 2); /* y[2] = 2 x[2] */
  assert_true(fabs(rep.worst_analytic - 3) < 1e-12 && fabs(rep.worst_numeric - 2) < 1e-6);
  cr_tensor_free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_grad_of_grad, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hessian_vector_product, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gradient_penalty_gradchecks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backward_create_graph, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hooks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hooks_steady_state, setup, teardown),
      cmocka_unit_test_setup_teardown(test_anomaly_forward, setup, teardown),
      cmocka_unit_test_setup_teardown(test_anomaly_vjp, setup, teardown),
      cmocka_unit_test_setup_teardown(test_anomaly_through_views, setup, teardown),
      cmocka_unit_test_setup_teardown(test_custom_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(test_names_in_print_dot_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_anomaly_same_bits_and_staged_sums, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scopes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rnn_step_scopes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_typed_constructors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gradcheck_reports_input_index, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
