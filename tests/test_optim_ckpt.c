/* Optimizer checkpoints: bit-exact resume from a checkpoint for every kind,
 * atomic failed loads with their messages, and checkpoints written by older
 * code (tests/fixtures/optim_ckpt) loading and continuing to the same bits. */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "optim_test_util.h"

static void save_all(fx *x, model *m, cr_optim *opt, const char *path) {
  cr_st_writer *w = cr_st_writer_new();
  static const char *names[3] = {"p0", "p1", "p2"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_st_writer_add(x->ctx, w, names[i], m->p[i]), CR_OK);
  assert_int_equal(cr_optim_save(x->ctx, opt, w, "optim."), CR_OK);
  assert_int_equal(cr_st_writer_save(x->ctx, w, path), CR_OK);
  cr_st_writer_free(w);
}

static void test_resume_exact(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  enum { N = 10 };
  for (int kind = 0; kind < CR_OPTIM_NUM_KINDS; kind++) {
    /* straight through */
    model a;
    model_init(ctx, &a);
    cr_optim *oa = model_optim(ctx, &a, (cr_optim_kind)kind);
    for (int k = 1; k <= N; k++)
      train_step(ctx, &a, oa, k);

    /* half, save, load into fresh parameters and optimizer, the other half */
    model b;
    model_init(ctx, &b);
    cr_optim *ob = model_optim(ctx, &b, (cr_optim_kind)kind);
    for (int k = 1; k <= N / 2; k++)
      train_step(ctx, &b, ob, k);
    save_all(x, &b, ob, x->path);
    double lr_b = cr_optim_get_lr(ob, 1);
    cr_optim_free(ob);
    model_free(&b);

    model c;
    model_init(ctx, &c); /* different values: all must come from the file */
    for (int i = 0; i < 3; i++)
      assert_int_equal(cr_fill(ctx, c.p[i], 42), CR_OK);
    cr_optim *oc = model_optim(ctx, &c, (cr_optim_kind)kind);
    cr_st_file *f = cr_st_open(ctx, x->path);
    assert_non_null(f);
    static const char *names[3] = {"p0", "p1", "p2"};
    for (int i = 0; i < 3; i++)
      assert_int_equal(cr_st_read_into(ctx, f, names[i], c.p[i]), CR_OK);
    assert_int_equal(cr_optim_load(ctx, oc, f, "optim."), CR_OK);
    cr_st_close(f);
    assert_int_equal(cr_optim_steps(oc), N / 2);
    assert_true(cr_optim_get_lr(oc, 1) == lr_b);
    assert_true(cr_optim_get_base_lr(oc, 1) == cr_optim_get_base_lr(oa, 1));
    for (int k = N / 2 + 1; k <= N; k++)
      train_step(ctx, &c, oc, k);

    for (int i = 0; i < 3; i++)
      assert_memory_equal(cr_data(a.p[i]), cr_data(c.p[i]),
                          (size_t)cr_numel(a.p[i]) * cr_dtype_size(cr_dtype_of(a.p[i])));
    /* and the optimizers' states are identical too */
    char pa[160], pc[160];
    snprintf(pa, sizeof pa, "%s/a.safetensors", x->dir);
    snprintf(pc, sizeof pc, "%s/c.safetensors", x->dir);
    save_all(x, &a, oa, pa);
    save_all(x, &c, oc, pc);
    FILE *fa = fopen(pa, "rb"), *fc = fopen(pc, "rb");
    char ba[8192], bc[8192];
    size_t na = fread(ba, 1, sizeof ba, fa), nc = fread(bc, 1, sizeof bc, fc);
    fclose(fa);
    fclose(fc);
    assert_true(na == nc && na < sizeof ba);
    assert_memory_equal(ba, bc, na);
    print_message("resume %-8s %d steps straight == %d + save/load + %d: bit-identical\n",
                  cr_optim_kind_name((cr_optim_kind)kind), N, N / 2, N - N / 2);
    cr_optim_free(oa);
    cr_optim_free(oc);
    model_free(&a);
    model_free(&c);
  }
}

/* The whole state of opt as the bytes of a checkpoint. */
static size_t snapshot(fx *x, cr_optim *opt, char *buf, size_t n) {
  char p[160];
  snprintf(p, sizeof p, "%s/snap.safetensors", x->dir);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(x->ctx, opt, w, "s."), CR_OK);
  assert_int_equal(cr_st_writer_save(x->ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  FILE *f = fopen(p, "rb");
  size_t k = fread(buf, 1, n, f);
  fclose(f);
  assert_true(k < n);
  return k;
}

/* Save opt to its own file under prefix "optim."; returns the opened file. */
static cr_st_file *save_open(fx *x, cr_optim *opt, const char *name) {
  char p[160];
  snprintf(p, sizeof p, "%s/%s", x->dir, name);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(x->ctx, opt, w, "optim."), CR_OK);
  assert_int_equal(cr_st_writer_save(x->ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  cr_st_file *f = cr_st_open(x->ctx, p);
  assert_non_null(f);
  return f;
}

static void expect_load_failure(fx *x, cr_optim *opt, cr_st_file *f, const char *prefix,
                                const char *msg_start) {
  static char before[16384], after[16384];
  size_t nb = snapshot(x, opt, before, sizeof before);
  assert_int_not_equal(cr_optim_load(x->ctx, opt, f, prefix), CR_OK);
  const char *msg = cr_ctx_error(x->ctx);
  if (strncmp(msg, msg_start, strlen(msg_start)))
    fail_msg("got   '%s'\nwanted '%s...'", msg, msg_start);
  cr_ctx_clear_error(x->ctx);
  size_t na = snapshot(x, opt, after, sizeof after);
  assert_int_equal(na, nb);
  assert_memory_equal(before, after, na);
}

static void test_load_failures(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  char want[600];
  /* the victim: Adam with amsgrad over [3,4] and [5], a few steps in */
  model m;
  model_init(ctx, &m);
  cr_optim_opts o = full_opts(CR_ADAM);
  cr_optim *opt = cr_optim_new(ctx, &o, m.p, 2);
  for (int k = 1; k <= 3; k++)
    train_step(ctx, &m, opt, k);

  /* wrong kind */
  model other;
  model_init(ctx, &other);
  cr_optim_opts so = full_opts(CR_SGD);
  cr_optim *sgd = cr_optim_new(ctx, &so, other.p, 2);
  cr_st_file *f = save_open(x, sgd, "sgd.safetensors");
  snprintf(want, sizeof want,
           "%s/sgd.safetensors: metadata 'optim.kind' is 'sgd', but the "
           "optimizer is adam",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
  snprintf(want, sizeof want,
           "%s/sgd.safetensors: no optimizer state under prefix 'nope.' "
           "(metadata 'nope.kind' is missing)",
           x->dir);
  expect_load_failure(x, opt, f, "nope.", want);
  cr_st_close(f);
  cr_optim_free(sgd);

  /* missing buffer: the same kind without amsgrad has no max_exp_avg_sq (the
   * other buffers of param 0 are present, and must not be read either) */
  cr_optim_opts plain = o;
  plain.amsgrad = false;
  cr_optim *adam_plain = cr_optim_new(ctx, &plain, other.p, 2);
  for (int k = 1; k <= 2; k++)
    train_step(ctx, &other, adam_plain, k);
  f = save_open(x, adam_plain, "plain.safetensors");
  snprintf(want, sizeof want, "%s/plain.safetensors: no tensor named 'optim.0.max_exp_avg_sq'",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(adam_plain);

  /* a buffer value that no run produces: a NaN momentum, a negative second
   * moment (its square root would be NaN) */
  cr_optim *same = cr_optim_new(ctx, &o, other.p, 2);
  for (int k = 1; k <= 2; k++)
    train_step(ctx, &other, same, k);
  static const struct {
    const char *name;
    double v;
    const char *want;
  } bad[] = {
      {"optim.1.exp_avg", NAN, "holds nan at index 2, expected finite values"},
      {"optim.0.exp_avg_sq", -1, "holds -1 at index 2, expected finite values >= 0"},
  };
  for (int b = 0; b < 2; b++) {
    cr_st_file *good = save_open(x, same, "same.safetensors");
    cr_st_writer *w = cr_st_writer_new();
    for (int i = 0; i < cr_st_meta_count(good); i++)
      assert_int_equal(cr_st_writer_set_meta(ctx, w, cr_st_meta_key(good, i),
                                             cr_st_meta(good, cr_st_meta_key(good, i))),
                       CR_OK);
    for (int i = 0; i < cr_st_count(good); i++) {
      cr_tensor *t = cr_st_get(ctx, good, cr_st_name(good, i));
      if (!strcmp(cr_st_name(good, i), bad[b].name))
        cr_set_flat(t, 2, bad[b].v);
      assert_int_equal(cr_st_writer_add(ctx, w, cr_st_name(good, i), t), CR_OK);
      cr_tensor_free(t);
    }
    char p[200];
    snprintf(p, sizeof p, "%s/bad.safetensors", x->dir);
    assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
    cr_st_writer_free(w);
    cr_st_close(good);
    f = cr_st_open(ctx, p);
    snprintf(want, sizeof want, "%s: tensor '%s' %s", p, bad[b].name, bad[b].want);
    expect_load_failure(x, opt, f, "optim.", want);
    cr_st_close(f);
  }
  cr_optim_free(same);

  /* wrong shape of the second parameter's buffer (the first's would fit) */
  cr_tensor *q[2] = {param_from(ctx, CR_F64, CR_SHAPE(3, 4), NULL),
                     param_from(ctx, CR_F32, CR_SHAPE(6), NULL)};
  cr_optim *shaped = cr_optim_new(ctx, &o, q, 2);
  f = save_open(x, shaped, "shape.safetensors");
  snprintf(want, sizeof want,
           "%s/shape.safetensors: tensor 'optim.1.exp_avg' has shape [6] in "
           "the file, but the destination has shape [5]",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(shaped);

  /* wrong number of parameters, and of groups */
  cr_optim *one = cr_optim_new(ctx, &o, q, 1);
  f = save_open(x, one, "one.safetensors");
  snprintf(want, sizeof want,
           "%s/one.safetensors: metadata 'optim.num_params' is 1, but the "
           "optimizer has 2 parameters",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  assert_int_equal(cr_optim_add_group(ctx, one, &q[1], 1, 0.1), 1);
  f = save_open(x, one, "two.safetensors");
  snprintf(want, sizeof want,
           "%s/two.safetensors: metadata 'optim.num_groups' is 2, but the "
           "optimizer has 1 group",
           x->dir);
  expect_load_failure(x, opt, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(one);
  cr_tensor_free(q[0]);
  cr_tensor_free(q[1]);

  /* the same counts split differently into groups */
  cr_tensor *r[3], *s3[3];
  for (int i = 0; i < 3; i++) {
    r[i] = param_from(ctx, CR_F64, CR_SHAPE(2), NULL);
    s3[i] = param_from(ctx, CR_F64, CR_SHAPE(2), NULL);
  }
  cr_optim *victim = cr_optim_new(ctx, &o, r, 2);
  assert_int_equal(cr_optim_add_group(ctx, victim, &r[2], 1, 0.5), 1);
  cr_optim *split = cr_optim_new(ctx, &o, s3, 1);
  assert_int_equal(cr_optim_add_group(ctx, split, &s3[1], 2, 0.5), 1);
  f = save_open(x, split, "split.safetensors");
  snprintf(want, sizeof want,
           "%s/split.safetensors: metadata 'optim.group_sizes' is '1,2', but "
           "the optimizer's groups have 2,1 parameters",
           x->dir);
  expect_load_failure(x, victim, f, "optim.", want);
  cr_st_close(f);

  /* malformed metadata */
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_optim_save(ctx, victim, w, "optim."), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "optim.param_steps", "0,x,0"), CR_OK);
  snprintf(want, sizeof want, "%s/bad.safetensors", x->dir);
  assert_int_equal(cr_st_writer_save(ctx, w, want), CR_OK);
  cr_st_writer_free(w);
  f = cr_st_open(ctx, want);
  assert_non_null(f);
  snprintf(want, sizeof want,
           "%s/bad.safetensors: metadata 'optim.param_steps' is '0,x,0': "
           "expected 3 comma-separated counts >= 0",
           x->dir);
  expect_load_failure(x, victim, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(victim);
  cr_optim_free(split);
  for (int i = 0; i < 3; i++) {
    cr_tensor_free(r[i]);
    cr_tensor_free(s3[i]);
  }

  /* a pending error: nothing happens */
  f = save_open(x, opt, "self.safetensors");
  cr_ctx_set_error(ctx, CR_ERR_ARG, "earlier");
  assert_int_equal(cr_optim_load(ctx, opt, f, "optim."), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "earlier");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_optim_load(ctx, opt, f, "optim."), CR_OK);
  cr_st_close(f);

  /* the optimizer still trains */
  train_step(ctx, &m, opt, 4);
  assert_int_equal(cr_optim_steps(opt), 4);
  cr_optim_free(opt);
  model_free(&m);
  model_free(&other);
}

/* A copy of file `good` at dir/name with tensor `edit` changed at index 2
 * to v, or left out if drop; returns it opened. */
static cr_st_file *edited(fx *x, cr_st_file *good, const char *name, const char *edit, double v,
                          bool drop) {
  cr_ctx *ctx = x->ctx;
  cr_st_writer *w = cr_st_writer_new();
  for (int i = 0; i < cr_st_meta_count(good); i++)
    assert_int_equal(cr_st_writer_set_meta(ctx, w, cr_st_meta_key(good, i),
                                           cr_st_meta(good, cr_st_meta_key(good, i))),
                     CR_OK);
  for (int i = 0; i < cr_st_count(good); i++) {
    const bool hit = !strcmp(cr_st_name(good, i), edit);
    if (hit && drop)
      continue;
    cr_tensor *t = cr_st_get(ctx, good, cr_st_name(good, i));
    if (hit)
      cr_set_flat(t, cr_numel(t) > 2 ? 2 : 0, v);
    assert_int_equal(cr_st_writer_add(ctx, w, cr_st_name(good, i), t), CR_OK);
    cr_tensor_free(t);
  }
  char p[200];
  snprintf(p, sizeof p, "%s/%s", x->dir, name);
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  cr_st_file *f = cr_st_open(ctx, p);
  assert_non_null(f);
  return f;
}

/* The kinds added with the table go through the same checks: their
 * buffers' rules (exp_inf and acc_delta hold magnitudes, so no value below
 * 0), NAdam's mu_product scalar, and the kind; every failed load changes
 * nothing (expect_load_failure compares the whole state before and after). */
static void test_load_failures_new_kinds(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  char want[600];
  static const struct {
    cr_optim_kind kind;
    const char *tensor;
    double v;
    bool drop;
    const char *why; /* after "<file>: " */
  } bad[] = {
      {CR_NADAM, "optim.0.mu_product", 0, true, "no tensor named 'optim.0.mu_product'"},
      {CR_NADAM, "optim.1.mu_product", NAN, false,
       "tensor 'optim.1.mu_product' holds nan at index 0, expected finite values"},
      {CR_NADAM, "optim.0.exp_avg_sq", -1, false,
       "tensor 'optim.0.exp_avg_sq' holds -1 at index 2, expected finite values >= 0"},
      {CR_RADAM, "optim.1.exp_avg", INFINITY, false,
       "tensor 'optim.1.exp_avg' holds inf at index 2, expected finite values"},
      {CR_ADAMAX, "optim.1.exp_inf", -1, false,
       "tensor 'optim.1.exp_inf' holds -1 at index 2, expected finite values >= 0"},
      {CR_ADADELTA, "optim.0.acc_delta", -0.5, false,
       "tensor 'optim.0.acc_delta' holds -0.5 at index 2, expected finite values >= 0"},
      {CR_ADADELTA, "optim.2.square_avg", 0, true, "no tensor named 'optim.2.square_avg'"},
  };
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
    model m, other;
    model_init(ctx, &m);
    model_init(ctx, &other);
    cr_optim *opt = model_optim(ctx, &m, bad[b].kind), *src = model_optim(ctx, &other, bad[b].kind);
    for (int k = 1; k <= 6; k++) {
      train_step(ctx, &m, opt, k);
      train_step(ctx, &other, src, k + 10);
    }
    cr_st_file *good = save_open(x, src, "good.safetensors");
    cr_st_file *f = edited(x, good, "bad.safetensors", bad[b].tensor, bad[b].v, bad[b].drop);
    snprintf(want, sizeof want, "%s/bad.safetensors: %s", x->dir, bad[b].why);
    expect_load_failure(x, opt, f, "optim.", want);
    cr_st_close(f);
    /* the good file loads, and the state is then src's */
    assert_int_equal(cr_optim_load(ctx, opt, good, "optim."), CR_OK);
    char sa[16384], sb[16384];
    size_t na = snapshot(x, opt, sa, sizeof sa), nb = snapshot(x, src, sb, sizeof sb);
    assert_true(na == nb && !memcmp(sa, sb, na));
    cr_st_close(good);
    cr_optim_free(opt);
    cr_optim_free(src);
    model_free(&m);
    model_free(&other);
  }
  /* NAdam's and Adam's state have the same buffer names: the kind tells */
  model m, other;
  model_init(ctx, &m);
  model_init(ctx, &other);
  cr_optim *adam = model_optim(ctx, &m, CR_ADAM), *nadam = model_optim(ctx, &other, CR_NADAM);
  cr_st_file *f = save_open(x, nadam, "nadam.safetensors");
  snprintf(want, sizeof want,
           "%s/nadam.safetensors: metadata 'optim.kind' is 'nadam', but the optimizer is adam",
           x->dir);
  expect_load_failure(x, adam, f, "optim.", want);
  cr_st_close(f);
  cr_optim_free(adam);
  cr_optim_free(nadam);
  model_free(&m);
  model_free(&other);
}

/* ================================================================ older checkpoints
 *
 * tests/fixtures/optim_ckpt/<kind>.safetensors were written by the
 * optimizer code as it was before the descriptor table (commit 7b58bde):
 * the model of train_step after 5 steps (p0, p1, p2 and the optimizer under
 * "optim."), the gradients of 5 more steps (grad<k>.p<i>, k = 6..10), and
 * what those 5 steps gave: the parameters want.p<i> and the optimizer's
 * state under "after.".  Loading must work and the continuation must be
 * the same bits.  CR_WRITE_OPTIM_CKPT=DIR writes the files instead. */

static void legacy_step(cr_ctx *ctx, model *m, cr_optim *opt, int k, const cr_st_file *f,
                        cr_st_writer *w) {
  static cr_sched s = {.kind = CR_SCHED_COSINE, .t_max = 7, .eta_min = 1e-4};
  cr_rng *rng = cr_rng_new((uint64_t)k);
  char name[32];
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "grad%d.p%d", k, i);
    if (f)
      assert_int_equal(cr_st_read_into(ctx, f, name, grad_of(ctx, m->p[i])), CR_OK);
    else
      assert_int_equal(cr_fill_normal(ctx, grad_of(ctx, m->p[i]), rng, 0, 1), CR_OK);
    if (w)
      assert_int_equal(cr_st_writer_add(ctx, w, name, grad_of(ctx, m->p[i])), CR_OK);
  }
  cr_rng_free(rng);
  cr_set_requires_grad(m->p[2], k > 3);
  cr_sched_apply(&s, opt, cr_optim_steps(opt));
  assert_int_equal(cr_optim_step(ctx, opt), CR_OK);
}

static void write_legacy(cr_ctx *ctx, cr_optim_kind kind, const char *dir) {
  model m;
  model_init(ctx, &m);
  cr_optim *opt = model_optim(ctx, &m, kind);
  for (int k = 1; k <= 5; k++)
    train_step(ctx, &m, opt, k);
  cr_st_writer *w = cr_st_writer_new();
  static const char *names[3] = {"p0", "p1", "p2"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(cr_st_writer_add(ctx, w, names[i], m.p[i]), CR_OK);
  assert_int_equal(cr_optim_save(ctx, opt, w, "optim."), CR_OK);
  for (int k = 6; k <= 10; k++)
    legacy_step(ctx, &m, opt, k, NULL, w);
  char name[32];
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "want.p%d", i);
    assert_int_equal(cr_st_writer_add(ctx, w, name, m.p[i]), CR_OK);
  }
  assert_int_equal(cr_optim_save(ctx, opt, w, "after."), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "format", "chainrule-optim-ckpt-v1"), CR_OK);
  char path[512];
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, cr_optim_kind_name(kind));
  assert_int_equal(cr_st_writer_save(ctx, w, path), CR_OK);
  cr_st_writer_free(w);
  cr_optim_free(opt);
  model_free(&m);
}

static void test_legacy_checkpoints(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  const char *write_dir = getenv("CR_WRITE_OPTIM_CKPT");
  for (int kind = CR_SGD; kind <= CR_ADAGRAD; kind++) { /* the kinds 7b58bde had */
    if (write_dir) {
      write_legacy(ctx, (cr_optim_kind)kind, write_dir);
      continue;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", FIXTURES "/optim_ckpt",
             cr_optim_kind_name((cr_optim_kind)kind));
    cr_st_file *f = cr_st_open(ctx, path);
    if (!f)
      fail_msg("%s", cr_ctx_error(ctx));
    model m;
    model_init(ctx, &m);
    cr_optim *opt = model_optim(ctx, &m, (cr_optim_kind)kind);
    static const char *names[3] = {"p0", "p1", "p2"};
    for (int i = 0; i < 3; i++)
      assert_int_equal(cr_st_read_into(ctx, f, names[i], m.p[i]), CR_OK);
    if (cr_optim_load(ctx, opt, f, "optim.") != CR_OK)
      fail_msg("%s", cr_ctx_error(ctx));
    for (int k = 6; k <= 10; k++)
      legacy_step(ctx, &m, opt, k, f, NULL);
    char name[32];
    for (int i = 0; i < 3; i++) {
      snprintf(name, sizeof name, "want.p%d", i);
      cr_tensor *want = cr_st_get(ctx, f, name);
      assert_non_null(want);
      assert_memory_equal(cr_data(want), cr_data(m.p[i]),
                          (size_t)cr_numel(want) * cr_dtype_size(cr_dtype_of(want)));
      cr_tensor_free(want);
    }
    /* the state after the 5 steps, tensor by tensor and entry by entry */
    cr_st_writer *w = cr_st_writer_new();
    assert_int_equal(cr_optim_save(ctx, opt, w, "after."), CR_OK);
    char p[160];
    snprintf(p, sizeof p, "%s/after.safetensors", x->dir);
    assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
    cr_st_writer_free(w);
    cr_st_file *g = cr_st_open(ctx, p);
    assert_non_null(g);
    for (int i = 0; i < cr_st_count(g); i++) {
      cr_tensor *a = cr_st_get(ctx, g, cr_st_name(g, i));
      cr_tensor *b = cr_st_get(ctx, f, cr_st_name(g, i));
      if (!b)
        fail_msg("%s: %s", path, cr_ctx_error(ctx));
      assert_int_equal(cr_numel(a), cr_numel(b));
      assert_int_equal(cr_dtype_of(a), cr_dtype_of(b));
      assert_memory_equal(cr_data(a), cr_data(b),
                          (size_t)cr_numel(a) * cr_dtype_size(cr_dtype_of(a)));
      cr_tensor_free(a);
      cr_tensor_free(b);
    }
    for (int i = 0; i < cr_st_meta_count(g); i++) {
      const char *key = cr_st_meta_key(g, i);
      assert_non_null(cr_st_meta(f, key));
      assert_string_equal(cr_st_meta(g, key), cr_st_meta(f, key));
    }
    print_message("legacy %-8s checkpoint of 7b58bde loads; 5 more steps: bit-identical "
                  "parameters and %d state tensors\n",
                  cr_optim_kind_name((cr_optim_kind)kind), cr_st_count(g));
    cr_st_close(g);
    cr_st_close(f);
    cr_optim_free(opt);
    model_free(&m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_resume_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_failures_new_kinds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_legacy_checkpoints, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
