/* State dicts and checkpoints: a run of 2N steps equals N steps, a save, a
 * load into a fresh model, optimizer and generator, and N more steps, to
 * the bit (parameters, optimizer state, generator); every kind of bad file
 * (missing, unexpected, reshaped, retyped or NaN tensors, a missing or
 * mismatched optimizer, a bad generator state, bad extras, truncated and
 * garbage files) is refused with a message naming the file and the tensor
 * and changes nothing (memcmp before and after); non-strict loads report
 * and keep; dtype conversion on request; user metadata. */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule.h"

/* ---- a small model with dropout inside and after the recurrent stack,
 * so resuming needs the generator's state too */

typedef struct tiny {
  cr_module *m, *embed, *rnn, *drop, *head;
} tiny;

enum { V = 7, T = 4, B = 3 };

static tiny tiny_new(cr_ctx *ctx, cr_rng *rng, cr_dtype dt) {
  tiny t = {.m = cr_module_new(ctx, "Tiny")};
  cr_rnn_config c = {&cr_cell_lstm, 5, 6, 2, 0.3, false, dt};
  t.embed = cr_module_add(ctx, t.m, "embed", cr_nn_embedding(ctx, V, 5, dt, rng));
  t.rnn = cr_module_add(ctx, t.m, "rnn", cr_nn_rnn(ctx, &c, NULL, rng));
  t.drop = cr_module_add(ctx, t.m, "drop", cr_nn_dropout(ctx, 0.2, rng));
  t.head = cr_module_add(ctx, t.m, "head", cr_nn_linear(ctx, 6, V, true, dt, rng));
  assert_non_null(t.head);
  return t;
}

static cr_optim *adam_for(cr_ctx *ctx, cr_module *m) {
  int n;
  cr_tensor *const *p = cr_module_parameters(m, &n);
  cr_optim_opts oo;
  cr_optim_default_opts(CR_ADAM, &oo);
  oo.lr = 1e-2;
  cr_optim *opt = cr_optim_new(ctx, &oo, p, n);
  assert_non_null(opt);
  return opt;
}

/* steps of next-id prediction on ids drawn from rng (which dropout uses too) */
static void train(cr_ctx *ctx, const tiny *t, cr_optim *opt, cr_rng *rng, int steps) {
  int64_t ids[T * B], tgt[T * B];
  for (int s = 0; s < steps; s++) {
    for (int i = 0; i < T * B; i++) {
      ids[i] = (int64_t)cr_rng_below(rng, V);
      tgt[i] = (ids[i] + 1) % V;
    }
    cr_tensor *h = cr_module_forward(
        ctx, t->rnn, cr_module_forward(ctx, t->embed, cr_wrap_i64(ctx, CR_SHAPE(T, B), ids)));
    cr_tensor *logits = cr_module_forward(ctx, t->head, cr_module_forward(ctx, t->drop, h));
    cr_tensor *loss =
        cr_cross_entropy(ctx, cr_reshape(ctx, logits, CR_SHAPE(T * B, V)), tgt, CR_NO_IGNORE);
    cr_module_zero_grad(t->m);
    if (!loss || cr_backward(ctx, loss) != CR_OK || cr_optim_step(ctx, opt) != CR_OK)
      fail_msg("train: %s", cr_ctx_error(ctx));
    cr_ctx_reset(ctx);
  }
}

/* ---- snapshots: the bytes of every tensor, of the optimizer's state, of
 * the generator */

typedef struct snap {
  unsigned char *model, *optim;
  size_t model_n, optim_n;
  uint64_t rng[5];
  unsigned char extra[64];
} snap;

static unsigned char *file_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n ? *n : 1);
  assert_int_equal(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

static snap take(cr_ctx *ctx, cr_module *m, const cr_optim *opt, const cr_rng *rng,
                 const cr_tensor *extra, const char *dir) {
  snap s = {0};
  int n;
  cr_tensor *const *t = cr_module_state_dict(m, &n, NULL, NULL);
  for (int i = 0; i < n; i++)
    s.model_n += (size_t)cr_numel(t[i]) * cr_dtype_size(cr_dtype_of(t[i]));
  s.model = malloc(s.model_n);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    size_t k = (size_t)cr_numel(t[i]) * cr_dtype_size(cr_dtype_of(t[i]));
    memcpy(s.model + off, cr_data_const(t[i]), k);
    off += k;
  }
  char path[256];
  snprintf(path, sizeof path, "%s/optim-snapshot.safetensors", dir);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(ctx, opt, w, "o."), CR_OK);
  assert_int_equal(cr_st_writer_save(ctx, w, path), CR_OK);
  cr_st_writer_free(w);
  s.optim = file_bytes(path, &s.optim_n);
  unlink(path);
  cr_rng_get_state(rng, s.rng);
  if (extra)
    memcpy(s.extra, cr_data_const(extra), (size_t)cr_numel(extra) * 4);
  return s;
}

static void assert_same(const snap *a, const snap *b, const char *what) {
  if (a->model_n != b->model_n || memcmp(a->model, b->model, a->model_n))
    fail_msg("%s: the model's tensors differ", what);
  if (a->optim_n != b->optim_n || memcmp(a->optim, b->optim, a->optim_n))
    fail_msg("%s: the optimizer's state differs", what);
  if (memcmp(a->rng, b->rng, sizeof a->rng))
    fail_msg("%s: the generator's state differs", what);
  if (memcmp(a->extra, b->extra, sizeof a->extra))
    fail_msg("%s: the extra tensor differs", what);
}

static void snap_free(snap *s) {
  free(s->model);
  free(s->optim);
}

/* ---- fixture: a context and a temporary directory per test */

typedef struct fx {
  cr_ctx *ctx;
  char dir[64];
} fx;

static int setup(void **state) {
  fx *x = calloc(1, sizeof *x);
  x->ctx = cr_ctx_new();
  strcpy(x->dir, "/tmp/cr-module-XXXXXX");
  if (!x->ctx || !mkdtemp(x->dir))
    return -1;
  *state = x;
  return 0;
}

static int teardown(void **state) {
  fx *x = *state;
  DIR *d = opendir(x->dir);
  struct dirent *e;
  char p[512];
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", x->dir, e->d_name);
      unlink(p);
    }
  if (d)
    closedir(d);
  rmdir(x->dir);
  cr_ctx_free(x->ctx);
  free(x);
  return 0;
}

/* ---- resuming is bit-exact */

static void test_resume_bit_exact(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  const cr_dtype dts[2] = {CR_F32, CR_F64};
  for (int d = 0; d < 2; d++) {
    enum { N = 6 };
    char path[128], step[16];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", x->dir);
    /* straight: 2N steps */
    cr_rng *ra = cr_rng_new(11);
    tiny a = tiny_new(ctx, ra, dts[d]);
    cr_optim *oa = adam_for(ctx, a.m);
    train(ctx, &a, oa, ra, 2 * N);
    /* N steps, saved with the step as metadata of our own */
    cr_rng *rb = cr_rng_new(11);
    tiny b = tiny_new(ctx, rb, dts[d]);
    cr_optim *ob = adam_for(ctx, b.m);
    train(ctx, &b, ob, rb, N);
    snprintf(step, sizeof step, "%d", N);
    cr_checkpoint ckb = {.model = b.m,
                         .optim = ob,
                         .rng = rb,
                         .meta = (const char *[]){"step", step, "note", "half way", NULL}};
    assert_int_equal(cr_checkpoint_save(ctx, &ckb, path), CR_OK);
    /* a fresh model (other weights), optimizer and generator, loaded, N more */
    cr_rng *rc = cr_rng_new(999);
    tiny c = tiny_new(ctx, rc, dts[d]);
    cr_optim *oc = adam_for(ctx, c.m);
    cr_st_file *f = cr_st_open(ctx, path);
    assert_non_null(f);
    assert_string_equal(cr_st_meta(f, "step"), "6");
    assert_string_equal(cr_st_meta(f, "note"), "half way");
    cr_checkpoint ckc = {.model = c.m, .optim = oc, .rng = rc};
    assert_int_equal(cr_checkpoint_read(ctx, &ckc, f, NULL), CR_OK);
    cr_st_close(f);
    assert_int_equal(cr_optim_steps(oc), N);
    train(ctx, &c, oc, rc, N);
    snap sa = take(ctx, a.m, oa, ra, NULL, x->dir), sc = take(ctx, c.m, oc, rc, NULL, x->dir);
    assert_same(&sa, &sc, dts[d] == CR_F32 ? "f32 resume" : "f64 resume");
    /* and the run that did not stop agrees with the one that was saved
     * at N (the file holds b's state exactly): b continued is a too */
    train(ctx, &b, ob, rb, N);
    snap sb = take(ctx, b.m, ob, rb, NULL, x->dir);
    assert_same(&sa, &sb, "the saved run continued");
    snap_free(&sa);
    snap_free(&sb);
    snap_free(&sc);
    for (int i = 0; i < 3; i++) {
      cr_optim_free((cr_optim *[]){oa, ob, oc}[i]);
      cr_module_free((cr_module *[]){a.m, b.m, c.m}[i]);
      cr_rng_free((cr_rng *[]){ra, rb, rc}[i]);
    }
  }
}

/* ---- bad files change nothing */

/* A copy of src at dst with changes: tensor `drop` left out, tensor
 * `replace` stored as `with` (or added when src lacks it), metadata
 * `meta_key` removed (meta_val NULL) or set. */
typedef struct edit {
  const char *drop, *replace;
  cr_tensor *with;
  const char *meta_key, *meta_val;
} edit;

static void rewrite(cr_ctx *ctx, const char *src, const char *dst, const edit *e) {
  cr_st_file *f = cr_st_open(ctx, src);
  assert_non_null(f);
  cr_st_writer *w = cr_st_writer_new();
  bool replaced = false;
  for (int i = 0; i < cr_st_count(f); i++) {
    const char *name = cr_st_name(f, i);
    if (e->drop && !strcmp(name, e->drop))
      continue;
    if (e->replace && !strcmp(name, e->replace)) {
      assert_int_equal(cr_st_writer_add(ctx, w, name, e->with), CR_OK);
      replaced = true;
      continue;
    }
    cr_tensor *t = cr_st_get(ctx, f, name);
    assert_int_equal(cr_st_writer_add(ctx, w, name, t), CR_OK);
    cr_tensor_free(t);
  }
  if (e->replace && !replaced)
    assert_int_equal(cr_st_writer_add(ctx, w, e->replace, e->with), CR_OK);
  for (int i = 0; i < cr_st_meta_count(f); i++) {
    const char *k = cr_st_meta_key(f, i);
    if (!(e->meta_key && !strcmp(k, e->meta_key)))
      assert_int_equal(cr_st_writer_set_meta(ctx, w, k, cr_st_meta(f, k)), CR_OK);
  }
  if (e->meta_key && e->meta_val)
    assert_int_equal(cr_st_writer_set_meta(ctx, w, e->meta_key, e->meta_val), CR_OK);
  assert_int_equal(cr_st_writer_save(ctx, w, dst), CR_OK);
  cr_st_writer_free(w);
  cr_st_close(f);
}

static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

static cr_tensor *filled(cr_ctx *ctx, cr_dtype dt, int nd, const int64_t *shape, double v) {
  cr_tensor *t = cr_tensor_new(ctx, dt, nd, shape);
  assert_int_equal(cr_fill(ctx, t, v), CR_OK);
  return t;
}

static void test_failed_loads_change_nothing(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  char good[128], bad[128];
  snprintf(good, sizeof good, "%s/good.safetensors", x->dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", x->dir);
  /* a good checkpoint of a trained run, with an extra tensor */
  cr_rng *rg = cr_rng_new(21);
  tiny g = tiny_new(ctx, rg, CR_F32);
  cr_optim *og = adam_for(ctx, g.m);
  train(ctx, &g, og, rg, 3);
  cr_tensor *carry = filled(ctx, CR_F32, CR_SHAPE(2, 4), 0.5);
  const char *extra_names[] = {"train.carry", NULL};
  cr_checkpoint ckg = {
      .model = g.m, .optim = og, .rng = rg, .extra_names = extra_names, .extra = &carry};
  assert_int_equal(cr_checkpoint_save(ctx, &ckg, good), CR_OK);

  /* the target: another run, one step in (so its optimizer has state) */
  cr_rng *rt = cr_rng_new(22);
  tiny t = tiny_new(ctx, rt, CR_F32);
  cr_optim *ot = adam_for(ctx, t.m);
  train(ctx, &t, ot, rt, 1);
  cr_tensor *tcarry = filled(ctx, CR_F32, CR_SHAPE(2, 4), -1);
  cr_checkpoint ckt = {
      .model = t.m, .optim = ot, .rng = rt, .extra_names = extra_names, .extra = &tcarry};
  snap before = take(ctx, t.m, ot, rt, tcarry, x->dir);

  cr_tensor *w38 = filled(ctx, CR_F32, CR_SHAPE(3, 8), 0.1);
  cr_tensor *w_f64 = filled(ctx, CR_F64, CR_SHAPE(V, 6), 0.1);
  cr_tensor *nan_hh = filled(ctx, CR_F32, CR_SHAPE(24, 6), NAN);
  cr_tensor *inf_avg = filled(ctx, CR_F32, CR_SHAPE(V, 5), INFINITY);
  cr_tensor *c34 = filled(ctx, CR_F32, CR_SHAPE(3, 4), 0);
  cr_tensor *c_nan = filled(ctx, CR_F32, CR_SHAPE(2, 4), NAN);
  const struct {
    const char *what;
    edit e;
    const char *expect; /* in the message, after the file's path */
  } cases[] = {
      {"missing tensor", {.drop = "head.bias"}, ": missing head.bias (strict load of Tiny;"},
      {"unexpected tensor", {.replace = "head.extra", .with = w38}, ": unexpected head.extra"},
      {"wrong shape",
       {.replace = "head.weight", .with = w38},
       ": tensor 'head.weight' is [3,8], this model needs [7,6]"},
      {"wrong dtype",
       {.replace = "head.weight", .with = w_f64},
       ": tensor 'head.weight' is f64 [7,6], this model's is f32 [7,6] (set "
       "cr_load_opts.convert_dtype to convert)"},
      {"NaN parameter",
       {.replace = "rnn.weight_hh_l1", .with = nan_hh},
       ": tensor 'rnn.weight_hh_l1' holds NaN or infinite values"},
      {"inf in the optimizer",
       {.replace = "optim.0.exp_avg", .with = inf_avg},
       ": tensor 'optim.0.exp_avg' holds inf at index 0"},
      {"no optimizer", {.meta_key = "optim.kind"}, ": no optimizer state under prefix 'optim.'"},
      {"another optimizer",
       {.meta_key = "optim.kind", .meta_val = "sgd"},
       ": metadata 'optim.kind' is 'sgd', but the optimizer is adam"},
      {"no generator state", {.meta_key = "rng.state"}, ": metadata 'rng.state' is missing"},
      {"bad generator state",
       {.meta_key = "rng.state", .meta_val = "zz"},
       ": metadata 'rng.state' is 'zz', expected 80 lowercase hex digits"},
      {"generator all zero",
       {.meta_key = "rng.state",
        .meta_val = "0000000000000000000000000000000000000000000000000000"
                    "0000000000000000000000000000"},
       ": metadata 'rng.state' is '0000000000000000"},
      {"extra of another shape",
       {.replace = "train.carry", .with = c34},
       ": tensor 'train.carry' is [3,4], this model needs [2,4]"},
      {"missing extra",
       {.drop = "train.carry"},
       ": no tensor named 'train.carry' (an extra tensor of the checkpoint)"},
      {"NaN extra",
       {.replace = "train.carry", .with = c_nan},
       ": tensor 'train.carry' holds NaN or infinite values"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    rewrite(ctx, good, bad, &cases[i].e);
    cr_status st = cr_checkpoint_load(ctx, &ckt, bad, NULL);
    char want[300];
    snprintf(want, sizeof want, "%s%s", bad, cases[i].expect);
    if (st == CR_OK || !strstr(cr_ctx_error(ctx), want))
      fail_msg("%s: status %d, message '%s', expected '%s'", cases[i].what, st, cr_ctx_error(ctx),
               want);
    cr_ctx_clear_error(ctx);
    snap after = take(ctx, t.m, ot, rt, tcarry, x->dir);
    assert_same(&before, &after, cases[i].what);
    snap_free(&after);
  }
  /* files that are no checkpoint at all */
  size_t n;
  unsigned char *bytes = file_bytes(good, &n);
  write_bytes(bad, bytes, n / 2); /* truncated */
  assert_int_not_equal(cr_checkpoint_load(ctx, &ckt, bad, NULL), CR_OK);
  assert_non_null(strstr(cr_ctx_error(ctx), bad));
  cr_ctx_clear_error(ctx);
  memset(bytes + 8, '{', 40); /* a broken header */
  write_bytes(bad, bytes, n);
  assert_int_not_equal(cr_checkpoint_load(ctx, &ckt, bad, NULL), CR_OK);
  assert_non_null(strstr(cr_ctx_error(ctx), bad));
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_checkpoint_load(ctx, &ckt, "/nonexistent/c.safetensors", NULL), CR_ERR_IO);
  cr_ctx_clear_error(ctx);
  free(bytes);
  snap after = take(ctx, t.m, ot, rt, tcarry, x->dir);
  assert_same(&before, &after, "files that are no checkpoint");
  snap_free(&after);
  /* the good file loads, and then the target holds the saved run */
  assert_int_equal(cr_checkpoint_load(ctx, &ckt, good, NULL), CR_OK);
  snap sg = take(ctx, g.m, og, rg, carry, x->dir), st = take(ctx, t.m, ot, rt, tcarry, x->dir);
  assert_same(&sg, &st, "the good file");
  snap_free(&sg);
  snap_free(&st);
  snap_free(&before);
  for (cr_tensor **p =
           (cr_tensor *[]){carry, tcarry, w38, w_f64, nan_hh, inf_avg, c34, c_nan, NULL};
       *p; p++)
    cr_tensor_free(*p);
  cr_optim_free(og);
  cr_optim_free(ot);
  cr_module_free(g.m);
  cr_module_free(t.m);
  cr_rng_free(rg);
  cr_rng_free(rt);
}

/* ---- the model's part alone: strict and non-strict, conversion */

static void test_state_dict_modes(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  char path[128];
  snprintf(path, sizeof path, "%s/model.safetensors", x->dir);
  cr_rng *rng = cr_rng_new(31);
  tiny a = tiny_new(ctx, rng, CR_F64), b = tiny_new(ctx, rng, CR_F64);
  cr_optim *opt = adam_for(ctx, a.m);
  /* a whole checkpoint: loading the model alone ignores the rest, strictly */
  assert_int_equal(
      cr_checkpoint_save(ctx, &(cr_checkpoint){.model = a.m, .optim = opt, .rng = rng}, path),
      CR_OK);
  assert_int_equal(cr_checkpoint_load(ctx, &(cr_checkpoint){.model = b.m}, path, NULL), CR_OK);
  assert_true(cr_get_flat(cr_module_tensor(a.m, "head.bias"), 2) ==
              cr_get_flat(cr_module_tensor(b.m, "head.bias"), 2));
  /* cr_module_load of the same file sees the optimizer's tensors as unexpected */
  cr_st_file *f = cr_st_open(ctx, path);
  cr_load_report rep;
  assert_int_equal(cr_module_load(ctx, b.m, f, "", &(cr_load_opts){.report = &rep}), CR_ERR_ARG);
  assert_int_equal(rep.n_missing, 0);
  assert_true(rep.n_unexpected > 2);
  assert_non_null(strstr(rep.unexpected, "optim.lr, optim.base_lr, optim.0.exp_avg"));
  cr_ctx_clear_error(ctx);
  cr_st_close(f);

  /* a file with one tensor missing, one unexpected, and f32 values */
  cr_module *other = cr_module_new(ctx, "Other");
  cr_module *head = cr_module_add(ctx, other, "head", cr_nn_linear(ctx, 6, V, false, CR_F32, rng));
  cr_module_add_param(ctx, other, "bonus", CR_F32, CR_SHAPE(3));
  assert_non_null(head);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_module_save(ctx, other, w, "m."), CR_OK);
  assert_int_equal(cr_st_writer_save(ctx, w, path), CR_OK);
  cr_st_writer_free(w);
  f = cr_st_open(ctx, path);
  cr_module *target = cr_module_new(ctx, "Target");
  cr_module_add(ctx, target, "head", cr_nn_linear(ctx, 6, V, true, CR_F64, rng));
  double bias0 = cr_get_flat(cr_module_tensor(target, "head.bias"), 0);
  /* strict: refused, naming both */
  assert_int_equal(cr_module_load(ctx, target, f, "m.", &(cr_load_opts){.report = &rep}),
                   CR_ERR_DTYPE);
  assert_non_null(strstr(cr_ctx_error(ctx), "tensor 'm.head.weight' is f32 [7,6], this "
                                            "model's is f64 [7,6]"));
  assert_non_null(strstr(cr_ctx_error(ctx), "; missing m.head.bias; unexpected m.bonus"));
  cr_ctx_clear_error(ctx);
  /* non-strict with conversion: the weight is read, the bias kept, both reported */
  cr_load_opts lo = {.non_strict = true, .convert_dtype = true, .report = &rep};
  assert_int_equal(cr_module_load(ctx, target, f, "m.", &lo), CR_OK);
  assert_int_equal(rep.n_missing, 1);
  assert_string_equal(rep.missing, "m.head.bias");
  assert_int_equal(rep.n_unexpected, 1);
  assert_string_equal(rep.unexpected, "m.bonus");
  assert_true(cr_get_flat(cr_module_tensor(target, "head.bias"), 0) == bias0);
  assert_true(cr_get_flat(cr_module_tensor(target, "head.weight"), 5) ==
              cr_get_flat(cr_module_tensor(other, "head.weight"), 5));
  cr_st_close(f);
  cr_module_free(target);
  cr_module_free(other);
  cr_optim_free(opt);
  cr_module_free(a.m);
  cr_module_free(b.m);
  cr_rng_free(rng);
}

/* ---- what a checkpoint refuses to write */

static void test_checkpoint_write_errors(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  char path[128];
  snprintf(path, sizeof path, "%s/never.safetensors", x->dir);
  cr_rng *rng = cr_rng_new(41);
  tiny a = tiny_new(ctx, rng, CR_F32);
  cr_optim *opt = adam_for(ctx, a.m);
  const struct {
    cr_checkpoint ck;
    const char *msg;
  } cases[] = {
      {{.model = NULL}, "checkpoint_write: the checkpoint names no model, optimizer or rng"},
      {{.model = a.m, .meta = (const char *[]){"step", NULL}},
       "checkpoint_write: metadata 'step' has no value (meta holds key, value pairs, then NULL)"},
      {{.model = a.m, .optim = opt, .meta = (const char *[]){"optim.steps", "3", NULL}},
       "checkpoint_write: metadata key 'optim.steps' is the checkpoint's own (the optimizer's "
       "prefix 'optim.', the generator's 'rng.state')"},
      {{.model = a.m, .rng = rng, .meta = (const char *[]){"rng.state", "x", NULL}},
       "checkpoint_write: metadata key 'rng.state' is the checkpoint's own"},
      {{.model = a.m, .meta = (const char *[]){"a", "1", "a", "2", NULL}},
       "checkpoint_write: metadata key 'a' is given twice"},
      {{.model = a.m,
        .extra_names = (const char *[]){"embed.weight", NULL},
        .extra = (cr_tensor *[]){cr_module_tensor(a.m, "head.bias")}},
       "st_writer_add: "},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_not_equal(cr_checkpoint_save(ctx, &cases[i].ck, path), CR_OK);
    if (strncmp(cr_ctx_error(ctx), cases[i].msg, strlen(cases[i].msg)))
      fail_msg("case %zu: '%s', expected '%s'", i, cr_ctx_error(ctx), cases[i].msg);
    cr_ctx_clear_error(ctx);
    assert_int_equal(access(path, F_OK), -1); /* nothing written */
  }
  cr_optim_free(opt);
  cr_module_free(a.m);
  cr_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_resume_bit_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_loads_change_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_state_dict_modes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_write_errors, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
