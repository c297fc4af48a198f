/* Modules: the names, order and shapes of PyTorch's state_dict for the
 * same architecture (committed fixtures made by PyTorch and
 * examples/torch_to_safetensors.py), a strict load of those files and
 * PyTorch's forward pass; the tree (registration order, lookup, buffers,
 * ownership on errors); parameters() for the optimizers; freezing by name,
 * glob and submodule; the built-in layers' forwards; user modules; the
 * printed tree; no allocation in a steady training step; messages. */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "module_nets.h"

#ifndef CR_SOURCE_DIR
#error "CR_SOURCE_DIR (the source root) must be defined by the build"
#endif
#define FIXTURES CR_SOURCE_DIR "/tests/fixtures/module/"

static int setup(void **state) {
  *state = cr_ctx_new();
  return *state ? 0 : -1;
}
static int teardown(void **state) {
  cr_ctx_free(*state);
  return 0;
}

/* What cr_module_print writes, in a malloc'd string. */
static char *printed(const cr_module *m) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  assert_non_null(f);
  cr_module_print(f, m);
  fclose(f);
  return buf;
}

/* The state dict's names joined by commas (static buffer). */
static const char *keys_of(cr_module *m) {
  static char s[4096];
  int n;
  const char *const *names;
  assert_non_null(cr_module_state_dict(m, &n, &names, NULL));
  size_t k = 0;
  s[0] = '\0';
  for (int i = 0; i < n; i++)
    k += (size_t)snprintf(s + k, sizeof s - k, "%s%s", i ? "," : "", names[i]);
  return s;
}

/* ---- PyTorch's models, file for file */

typedef struct torch_case {
  const char *name;
  cr_dtype dt;
  bool is_net; /* Net (ids input) or Seq */
  double tol;  /* relative to the output's largest magnitude */
} torch_case;

static void check_torch_case(cr_ctx *ctx, const torch_case *c) {
  char path[512], io_path[512];
  snprintf(path, sizeof path, FIXTURES "%s.safetensors", c->name);
  snprintf(io_path, sizeof io_path, FIXTURES "%s_io.safetensors", c->name);
  cr_rng *rng = cr_rng_new(1);
  net n = {0};
  seq s = {0};
  if (c->is_net)
    n = net_new(ctx, rng, c->dt);
  else
    s = seq_new(ctx, rng, c->dt);
  cr_module *m = c->is_net ? n.m : s.m;
  assert_true(c->is_net ? n.mlp != NULL : s.head != NULL);
  cr_st_file *f = cr_st_open(ctx, path), *io = cr_st_open(ctx, io_path);
  assert_non_null(f);
  assert_non_null(io);

  /* the same keys in the same order as PyTorch's state_dict ... */
  assert_string_equal(keys_of(m), cr_st_meta(io, "keys"));
  /* ... as the converted file holds them, with the same shapes */
  int nt;
  const char *const *names;
  cr_tensor *const *ts = cr_module_state_dict(m, &nt, &names, NULL);
  assert_int_equal(nt, cr_st_count(f));
  for (int i = 0; i < nt; i++) {
    assert_string_equal(names[i], cr_st_name(f, i));
    const cr_st_info *in = cr_st_find(f, names[i]);
    assert_int_equal(in->ndim, cr_ndim(ts[i]));
    assert_memory_equal(in->shape, cr_shape(ts[i]), sizeof(int64_t) * (size_t)in->ndim);
  }
  /* the printed tree starts with PyTorch's repr */
  char *p = printed(m);
  const char *repr = cr_st_meta(io, "repr");
  assert_int_equal(strncmp(p, repr, strlen(repr)), 0);
  assert_int_equal(p[strlen(repr)], '\n');
  free(p);

  /* a strict load, and PyTorch's output from PyTorch's input */
  cr_load_report rep;
  cr_load_opts lo = {.report = &rep};
  assert_int_equal(cr_module_load(ctx, m, f, NULL, &lo), CR_OK);
  assert_int_equal(rep.n_missing + rep.n_unexpected, 0);
  cr_tensor *x = cr_st_get(ctx, io, "x"), *want = cr_st_get(ctx, io, "y"), *y;
  assert_non_null(x);
  if (c->is_net) {
    int64_t ids[64];
    for (int64_t i = 0; i < cr_numel(x); i++)
      ids[i] = (int64_t)cr_get_flat(x, i);
    y = net_forward(ctx, &n, cr_from_i64(ctx, cr_ndim(x), cr_shape(x), ids));
  } else {
    y = seq_forward(ctx, &s, cr_cast(ctx, x, c->dt));
  }
  if (!y)
    fail_msg("%s: %s", c->name, cr_ctx_error(ctx));
  assert_int_equal(cr_numel(y), cr_numel(want));
  double worst = 0, top = 0;
  for (int64_t i = 0; i < cr_numel(y); i++) {
    worst = fmax(worst, fabs(cr_get_flat(y, i) - cr_get_flat(want, i)));
    top = fmax(top, fabs(cr_get_flat(want, i)));
  }
  printf("%s: %d tensors as PyTorch names them; forward max difference %.2e (relative %.2e)\n",
         c->name, nt, worst, worst / top);
  assert_true(worst <= c->tol * top);
  cr_tensor_free(x);
  cr_tensor_free(want);
  cr_st_close(f);
  cr_st_close(io);
  cr_module_free(m);
  cr_rng_free(rng);
  cr_ctx_reset(ctx);
}

static void test_torch_fixtures(void **state) {
  static const torch_case cases[] = {
      {"net_f32", CR_F32, true, 1e-5},
      {"net_f64", CR_F64, true, 1e-12},
      {"seq_f32", CR_F32, false, 1e-5},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_torch_case(*state, &cases[i]);
}

/* ---- the tree */

static void test_tree_order_and_lookup(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(2);
  cr_module *m = cr_module_new(ctx, "Model");
  /* a child first, then an own parameter and a buffer: the state dict
   * lists the module's own tensors first (PyTorch's order) */
  cr_module *enc = cr_module_add(ctx, m, "enc", cr_nn_linear(ctx, 3, 4, true, CR_F64, rng));
  cr_tensor *scale = cr_module_add_param(ctx, m, "scale", CR_F64, CR_SHAPE(4));
  cr_tensor *mean = cr_module_add_buffer(ctx, m, "running_mean", CR_F64, CR_SHAPE(4));
  cr_module *dec = cr_module_add(ctx, m, "dec", cr_nn_linear(ctx, 4, 2, false, CR_F64, rng));
  assert_non_null(dec);
  assert_string_equal(keys_of(m), "scale,running_mean,enc.weight,enc.bias,dec.weight");
  int n;
  const char *const *names;
  const bool *buf;
  cr_tensor *const *t = cr_module_state_dict(m, &n, &names, &buf);
  assert_int_equal(n, 5);
  assert_true(buf[1] && !buf[0] && !buf[2]);
  assert_ptr_equal(t[0], scale);
  assert_ptr_equal(t[1], mean);
  assert_false(cr_requires_grad(mean));
  assert_true(cr_requires_grad(scale));
  /* parameters: the same order without the buffer */
  cr_tensor *const *p = cr_module_named_parameters(m, &n, &names);
  assert_int_equal(n, 4);
  assert_string_equal(names[3], "dec.weight");
  assert_ptr_equal(p[0], scale);
  cr_tensor *const *tr = cr_module_parameters(m, &n);
  assert_int_equal(n, 4);
  assert_ptr_equal(tr[1], cr_module_tensor(m, "enc.weight"));
  /* lookup */
  assert_ptr_equal(cr_module_get(m, "enc"), enc);
  assert_null(cr_module_get(m, "enc.weight"));
  assert_null(cr_module_get(m, "nope"));
  assert_ptr_equal(cr_module_tensor(m, "running_mean"), mean);
  assert_ptr_equal(cr_module_tensor(m, "dec.weight"), cr_module_tensor(dec, "weight"));
  assert_null(cr_module_tensor(m, "dec.bias"));
  assert_string_equal(cr_module_name(dec), "dec");
  assert_string_equal(cr_module_name(m), "");
  assert_string_equal(cr_module_type(dec), "Linear");
  /* 4 + 12 + 4 + 8 elements */
  assert_int_equal(cr_module_num_params(m), 28);
  assert_int_equal(cr_module_num_trainable(m), 28);
  /* the tree grows after the arrays were taken: they are rebuilt */
  cr_module *deeper = cr_module_add(ctx, enc, "extra", cr_module_new(ctx, "Extra"));
  assert_non_null(cr_module_add_param(ctx, deeper, "w", CR_F64, CR_SHAPE(2)));
  assert_string_equal(keys_of(m), "scale,running_mean,enc.weight,enc.bias,enc.extra.w,"
                                  "dec.weight");
  assert_ptr_equal(cr_module_get(m, "enc.extra"), deeper);
  cr_module_parameters(m, &n);
  assert_int_equal(n, 5);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
  cr_module_free(enc); /* not a root: nothing happens */
  cr_module_free(m);
  cr_rng_free(rng);
}

/* Errors keep the tree as it was and never leak the child (valgrind and
 * ASan check the last point). */
static void test_tree_errors(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(3);
  cr_module *m = cr_module_new(ctx, "Model");
  assert_non_null(cr_module_add(ctx, m, "fc", cr_nn_linear(ctx, 2, 2, true, CR_F32, rng)));
  assert_null(cr_module_add(ctx, m, "fc", cr_nn_linear(ctx, 2, 3, true, CR_F32, rng)));
  assert_string_equal(cr_ctx_error(ctx), "module_add: Model already has a submodule 'fc'");
  cr_ctx_clear_error(ctx);
  assert_null(cr_module_add(ctx, m, "a.b", cr_nn_tanh(ctx)));
  assert_string_equal(cr_ctx_error(ctx),
                      "module_add: submodule name 'a.b' for Model: use 1 to 63 letters, digits "
                      "or '_' (a '.' would split the state dict's path)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_module_add_param(ctx, m, "fc", CR_F32, CR_SHAPE(1)));
  assert_string_equal(cr_ctx_error(ctx), "module_add_param: Model already has a submodule 'fc'");
  cr_ctx_clear_error(ctx);
  assert_null(cr_module_add(ctx, NULL, "x", cr_nn_relu(ctx)));
  assert_string_equal(cr_ctx_error(ctx), "module_add: parent is NULL (adding ReLU 'x')");
  cr_ctx_clear_error(ctx);
  /* a child already in a tree stays there */
  cr_module *other = cr_module_new(ctx, "Other");
  assert_null(cr_module_add(ctx, other, "fc2", cr_module_get(m, "fc")));
  assert_string_equal(cr_ctx_error(ctx),
                      "module_add: Linear 'fc2' is already submodule 'fc' of Model");
  cr_ctx_clear_error(ctx);
  assert_null(cr_module_add(ctx, cr_module_get(m, "fc"), "loop", m));
  assert_string_equal(cr_ctx_error(ctx), "module_add: Model would contain itself");
  cr_ctx_clear_error(ctx);
  /* with an error pending everything returns NULL and frees what it got */
  cr_ctx_set_error(ctx, CR_ERR_ARG, "earlier");
  assert_null(cr_nn_linear(ctx, 2, 2, true, CR_F32, rng));
  assert_null(cr_module_add(ctx, other, "t", cr_module_new(NULL, "x")));
  assert_string_equal(cr_ctx_error(ctx), "earlier");
  cr_ctx_clear_error(ctx);
  assert_string_equal(keys_of(m), "fc.weight,fc.bias");
  /* constructor arguments */
  assert_null(cr_nn_linear(ctx, 0, 2, true, CR_F32, rng));
  assert_string_equal(cr_ctx_error(ctx), "nn_linear: in_features 0 must be >= 1");
  cr_ctx_clear_error(ctx);
  assert_null(cr_nn_linear(ctx, 2, 2, true, CR_F32, NULL));
  assert_string_equal(cr_ctx_error(ctx),
                      "nn_linear: rng is NULL (the parameters are drawn from it)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_nn_dropout(ctx, 1.0, rng));
  assert_string_equal(cr_ctx_error(ctx), "nn_dropout: p 1 must be in [0, 1)");
  cr_ctx_clear_error(ctx);
  assert_null(CR_SEQUENTIAL(ctx, cr_nn_tanh(ctx), NULL, cr_nn_relu(ctx)));
  assert_string_equal(cr_ctx_error(ctx),
                      "nn_sequential: module 1 is NULL (its constructor failed?)");
  cr_ctx_clear_error(ctx);
  cr_rnn_config bad = {&cr_cell_gru, 2, 4, 1, 0, false, CR_F32};
  assert_null(cr_nn_rnn(ctx, &bad, &(cr_rnn_variant){.proj_size = 2}, rng));
  assert_non_null(strstr(cr_ctx_error(ctx), "proj_size is an lstm option"));
  cr_ctx_clear_error(ctx);
  /* forward without one */
  cr_tensor *x = cr_zeros(ctx, CR_F32, CR_SHAPE(1, 2));
  assert_null(cr_module_forward(ctx, other, x));
  assert_string_equal(cr_ctx_error(ctx),
                      "module_forward: Other has no forward: call your own function, or give "
                      "it one with cr_module_set_forward");
  cr_ctx_clear_error(ctx);
  cr_module_free(other);
  cr_module_free(m);
  cr_rng_free(rng);
  cr_ctx_reset(ctx);
}

/* ---- freezing */

/* Fill every parameter's gradient by one backward of sum(net(ids)). */
static void one_backward(cr_ctx *ctx, const net *n) {
  cr_tensor *ids = cr_from_i64(ctx, CR_SHAPE(3, 2), (int64_t[]){1, 2, 3, 4, 5, 6});
  cr_tensor *y = net_forward(ctx, n, ids);
  cr_module_zero_grad(n->m);
  assert_int_equal(cr_backward(ctx, cr_sum(ctx, cr_square(ctx, y))), CR_OK);
}

static void test_freeze(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(4);
  net n = net_new(ctx, rng, CR_F64);
  assert_non_null(n.mlp);
  int all, k;
  cr_module_parameters(n.m, &all);
  assert_int_equal(all, 27);
  assert_int_equal(cr_module_freeze(ctx, n.m, "rnn.*"), 20);
  assert_int_equal(cr_module_freeze(ctx, n.m, "*.bias"),
                   3); /* norm, mlp.0, mlp.2 (the rnn has bias_ih_l0) */
  assert_int_equal(cr_module_freeze(ctx, n.m, "embed"), 1);        /* a submodule's path */
  assert_int_equal(cr_module_freeze(ctx, n.m, "mlp.0.weight"), 1); /* one name */
  cr_tensor *const *p = cr_module_parameters(n.m, &k);
  assert_int_equal(k, 2); /* norm.weight, mlp.2.weight */
  assert_ptr_equal(p[0], cr_module_tensor(n.m, "norm.weight"));
  assert_ptr_equal(p[1], cr_module_tensor(n.m, "mlp.2.weight"));
  assert_int_equal(cr_module_num_trainable(n.m), 8 + 11 * 16);
  /* no gradient reaches a frozen parameter; an optimizer over all of
   * them moves only the trainable ones */
  int na;
  const char *const *names;
  cr_tensor *const *every = cr_module_named_parameters(n.m, &na, &names);
  cr_optim_opts oo;
  cr_optim_default_opts(CR_ADAM, &oo);
  cr_optim *opt = cr_optim_new(ctx, &oo, every, na);
  assert_non_null(opt);
  double *before = malloc(sizeof(double) * 4096);
  int64_t off = 0;
  for (int i = 0; i < na; i++)
    for (int64_t j = 0; j < cr_numel(every[i]); j++)
      before[off++] = cr_get_flat(every[i], j);
  one_backward(ctx, &n);
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
  off = 0;
  for (int i = 0; i < na; i++) {
    bool trainable = cr_requires_grad(every[i]), moved = false;
    for (int64_t j = 0; j < cr_numel(every[i]); j++)
      moved |= cr_get_flat(every[i], j) != before[off++];
    if (moved != trainable || (!trainable && cr_grad(every[i])))
      fail_msg("%s: trainable %d, moved %d, grad %p", names[i], trainable, moved,
               (void *)cr_grad(every[i]));
  }
  cr_ctx_reset(ctx);
  /* unfreeze all; patterns that match nothing are errors naming them */
  assert_int_equal(cr_module_unfreeze(ctx, n.m, NULL), 27);
  cr_module_parameters(n.m, &k);
  assert_int_equal(k, 27);
  assert_int_equal(cr_module_freeze(ctx, n.m, "rn"), -1); /* a path is matched whole */
  assert_non_null(strstr(cr_ctx_error(ctx), "module_freeze: 'rn' matches no parameter of Net "
                                            "(it has embed.weight, rnn.weight_ih_l0,"));
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_module_freeze(ctx, n.m, "rnn.weight_*_l1_reverse"), 3);
  free(before);
  cr_optim_free(opt);
  cr_module_free(n.m);
  cr_rng_free(rng);
}

/* ---- forwards */

static cr_tensor *scale_forward(cr_ctx *ctx, cr_module *self, cr_tensor *x) {
  double *factor = cr_module_user(self);
  return cr_mul(ctx, cr_mul_scalar(ctx, x, *factor), cr_module_tensor(self, "gain"));
}

static void test_forwards(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(5);
  cr_module *fc = cr_nn_linear(ctx, 3, 2, true, CR_F64, rng);
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(4, 3), 0, 1);
  cr_tensor *y = cr_module_forward(ctx, fc, x);
  cr_tensor *ref = cr_linear(ctx, x, cr_module_tensor(fc, "weight"), cr_module_tensor(fc, "bias"));
  assert_non_null(y);
  for (int i = 0; i < 8; i++)
    assert_true(cr_get_flat(y, i) == cr_get_flat(ref, i));
  /* a user module with its own parameter and forward, inside a Sequential
   * that grows after it was made */
  double factor = 2;
  cr_module *scale = cr_module_new(ctx, "Scale");
  cr_tensor *gain = cr_module_add_param(ctx, scale, "gain", CR_F64, CR_SHAPE(2));
  assert_int_equal(cr_init_constant(ctx, gain, 3), CR_OK);
  cr_module_set_forward(scale, scale_forward, &factor);
  cr_module *seq = CR_SEQUENTIAL(ctx, fc, scale);
  assert_non_null(cr_module_add(ctx, seq, "act", cr_nn_tanh(ctx)));
  assert_string_equal(keys_of(seq), "0.weight,0.bias,1.gain");
  cr_tensor *z = cr_module_forward(ctx, seq, x);
  assert_non_null(z);
  for (int i = 0; i < 8; i++)
    assert_float_equal(cr_get_flat(z, i), tanh(6 * cr_get_flat(ref, i)), 1e-15);
  /* dropout: identity in evaluation mode, masks in training mode */
  cr_module *drop = cr_nn_dropout(ctx, 0.5, rng);
  cr_tensor *big = cr_ones(ctx, CR_F64, CR_SHAPE(1000));
  cr_set_training(ctx, false);
  assert_ptr_equal(cr_module_forward(ctx, drop, big), big);
  cr_set_training(ctx, true);
  cr_tensor *d = cr_module_forward(ctx, drop, big);
  int zeros = 0;
  for (int i = 0; i < 1000; i++)
    zeros += cr_get_flat(d, i) == 0;
  assert_in_range(zeros, 400, 600);
  /* embedding and layer norm are their ops */
  cr_module *emb = cr_nn_embedding(ctx, 5, 3, CR_F32, rng);
  cr_tensor *e = cr_module_forward(ctx, emb, cr_from_i64(ctx, CR_SHAPE(2), (int64_t[]){4, 0}));
  assert_float_equal(cr_get_flat(e, 0), cr_get_flat(cr_module_tensor(emb, "weight"), 12), 0);
  assert_null(cr_module_forward(ctx, emb, big));
  assert_non_null(strstr(cr_ctx_error(ctx), "must be an i64 tensor"));
  cr_ctx_clear_error(ctx);
  cr_module *ln = cr_nn_layer_norm(ctx, CR_SHAPE(2, 3), 1e-5, true, CR_F64);
  cr_tensor *u = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(4, 2, 3), 0, 1);
  cr_tensor *v = cr_module_forward(ctx, ln, u);
  cr_tensor *w = cr_layer_norm(ctx, u, 2, NULL, NULL, 1e-5);
  for (int i = 0; i < 24; i++)
    assert_true(cr_get_flat(v, i) == cr_get_flat(w, i)); /* weight 1, bias 0 */
  /* the recurrent module's forward and its final states */
  cr_rnn_config c = {&cr_cell_lstm, 3, 4, 2, 0.5, false, CR_F64};
  cr_module *lstm = cr_nn_rnn(ctx, &c, NULL, rng);
  cr_tensor *seqx = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(5, 2, 3), 0, 1), *out, *fin[2];
  cr_set_training(ctx, false);
  assert_int_equal(cr_nn_rnn_forward(ctx, lstm, seqx, NULL, NULL, &out, fin), CR_OK);
  cr_tensor *out2 = cr_module_forward(ctx, lstm, seqx);
  for (int i = 0; i < 40; i++)
    assert_true(cr_get_flat(out, i) == cr_get_flat(out2, i));
  assert_int_equal(cr_dim(fin[1], 0), 2);
  assert_non_null(cr_nn_rnn_get(lstm));
  assert_null(cr_nn_rnn_get(ln));
  assert_int_equal(cr_nn_rnn_forward(ctx, ln, seqx, NULL, NULL, &out, fin), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  cr_set_training(ctx, true);
  for (cr_module **mm = (cr_module *[]){seq, drop, emb, ln, lstm, NULL}; *mm; mm++)
    cr_module_free(*mm);
  cr_rng_free(rng);
  cr_ctx_reset(ctx);
}

/* ---- the printed tree */

static void test_print(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(6);
  cr_module *m = cr_module_new(ctx, "Forecaster");
  cr_rnn_config c = {&cr_cell_lstm, 1, 4, 1, 0, true, CR_F32};
  cr_module_add(ctx, m, "rnn", cr_nn_rnn(ctx, &c, NULL, rng));
  cr_module_add(ctx, m, "head", cr_nn_linear(ctx, 4, 1, true, CR_F32, rng));
  assert_non_null(cr_module_add_buffer(ctx, m, "steps", CR_F64, CR_SHAPE(1)));
  assert_int_equal(cr_module_freeze(ctx, m, "head.bias"), 1);
  char *p = printed(m);
  assert_string_equal(p, "Forecaster(\n"
                         "  (rnn): LSTM(1, 4, batch_first=True)\n"
                         "  (head): Linear(in_features=4, out_features=1, bias=True)\n"
                         ")\n"
                         "  steps             [1]          f64  (buffer)\n"
                         "  rnn.weight_ih_l0  [16,1]       f32\n"
                         "  rnn.weight_hh_l0  [16,4]       f32\n"
                         "  rnn.bias_ih_l0    [16]         f32\n"
                         "  rnn.bias_hh_l0    [16]         f32\n"
                         "  head.weight       [1,4]        f32\n"
                         "  head.bias         [1]          f32  (frozen)\n"
                         "117 parameters (116 trainable) in 7 tensors\n");
  free(p);
  cr_module_free(m);
  cr_rng_free(rng);
}

/* ---- a training step with modules allocates nothing once warmed up */

static void test_no_malloc_in_steps(void **state) {
  cr_ctx *ctx = *state;
  cr_rng *rng = cr_rng_new(7);
  net n = net_new(ctx, rng, CR_F32);
  int np;
  cr_tensor *const *p = cr_module_parameters(n.m, &np);
  cr_optim_opts oo;
  cr_optim_default_opts(CR_ADAM, &oo);
  cr_optim *opt = cr_optim_new(ctx, &oo, p, np);
  assert_non_null(opt);
  int64_t ids[12];
  size_t allocs = 0;
  for (int step = 0; step < 6; step++) {
    if (step == 3)
      allocs = cr_alloc_count();
    for (int i = 0; i < 12; i++)
      ids[i] = (int64_t)cr_rng_below(rng, 11);
    cr_tensor *y = net_forward(ctx, &n, cr_wrap_i64(ctx, CR_SHAPE(4, 3), ids));
    cr_tensor *loss = cr_mean(ctx, cr_square(ctx, y));
    cr_module_zero_grad(n.m);
    assert_int_equal(cr_backward(ctx, loss), CR_OK);
    p = cr_module_parameters(n.m, &np); /* every step: no allocation */
    assert_true(cr_clip_grad_norm(ctx, p, np, 1.0) >= 0);
    assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
    cr_ctx_reset(ctx);
  }
  assert_int_equal(cr_alloc_count(), allocs);
  cr_optim_free(opt);
  cr_module_free(n.m);
  cr_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_torch_fixtures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tree_order_and_lookup, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tree_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_freeze, setup, teardown),
      cmocka_unit_test_setup_teardown(test_forwards, setup, teardown),
      cmocka_unit_test_setup_teardown(test_print, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_malloc_in_steps, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
