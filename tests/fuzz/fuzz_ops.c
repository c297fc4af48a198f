/* fuzz_ops.c — the op API on random graphs: the input is a little program
 * that makes leaf tensors of random shapes and dtypes (f32, f64, i64
 * indices; values with NaN, Inf and denormals), applies ops from the whole
 * public op set with arguments that are often absurd (axes out of range,
 * dims of 2^62, negative sizes, mismatched shapes), and runs backward from
 * what it built.
 *
 * Checks beyond "no crash, no sanitizer report":
 *   - an op returns a tensor exactly when the context has no error, and a
 *     refusal leaves a message naming something (never empty);
 *   - after backward, every leaf's gradient has the leaf's shape and dtype.
 *
 * The harness never asks for more than a modest amount of memory on
 * purpose: an op whose result would be large but legal (over ~1M
 * elements) is skipped — the point is the API's checks, not the machine's
 * memory — while absurd sizes (overflowing int64) are passed on, and must
 * be refused. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "fuzz_ops: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);              \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

enum { POOL = 16, SMALL = 4096, MAX_OPS = 48 };
#define BIG_RESULT 1e6 /* elements: a legal result this large is skipped */

typedef struct reader {
  const uint8_t *p;
  size_t n, at;
} reader;

static unsigned byte(reader *r) { return r->at < r->n ? r->p[r->at++] : 0; }

/* a size or index: mostly small, sometimes absurd */
static int64_t integer(reader *r) {
  static const int64_t odd[] = {0,
                                -1,
                                -2,
                                INT64_MAX,
                                INT64_MIN,
                                (int64_t)1 << 62,
                                ((int64_t)1 << 62) + 1,
                                (int64_t)1 << 40,
                                (int64_t)1 << 31,
                                -((int64_t)1 << 62),
                                1000000007,
                                65536};
  unsigned b = byte(r);
  if (b < 224)
    return (int64_t)(b % 7) - 1; /* -1 .. 5 */
  return odd[b % (sizeof odd / sizeof odd[0])];
}

static int axis(reader *r) { return (int)(byte(r) % 9) - 4; /* -4 .. 4 */ }

static double value(reader *r) {
  unsigned b = byte(r);
  switch (b >> 5) {
  case 0: return b == 0 ? NAN : b == 1 ? INFINITY : b == 2 ? -INFINITY : b == 3 ? 1e-310 : 0.0;
  case 1: return 1e30 * ((int)(b & 31) - 16);
  default: return ((int)b - 160) / 16.0;
  }
}

typedef struct prog {
  cr_ctx *ctx;
  cr_rng *rng;
  cr_tensor *t[POOL];
  int n;
  cr_tensor *leaf[POOL];
  int n_leaves;
} prog;

static void push(prog *g, cr_tensor *x) {
  if (!x)
    return;
  if (g->n < POOL)
    g->t[g->n++] = x;
  else
    g->t[POOL - 1] = x;
}

static cr_tensor *pick(prog *g, reader *r) { return g->n ? g->t[byte(r) % (unsigned)g->n] : NULL; }

/* the product of n sizes, as a double (no overflow in the harness) */
static double product(const int64_t *s, int n) {
  double p = 1;
  for (int i = 0; i < n; i++)
    p *= fabs((double)s[i]);
  return p;
}

/* would a legal result of this many elements be large? (absurd ones, past
 * int64, go on: the library must refuse them) */
static bool large_but_legal(double numel) { return numel > BIG_RESULT && numel < 9.2e18; }

/* a tensor the harness gives no value-computing op: too large */
static bool too_big(const cr_tensor *x) { return x && cr_numel(x) > SMALL; }

static void leaf(prog *g, reader *r) {
  int64_t shape[4];
  const int nd = (int)(byte(r) % 5);
  double numel = 1;
  for (int i = 0; i < nd; i++) {
    shape[i] = 1 + byte(r) % 5;
    if (byte(r) == 255)
      shape[i] = 0; /* empty tensors too */
    numel *= (double)shape[i];
  }
  const unsigned kind = byte(r) % 8;
  const cr_dtype dt = kind == 7 ? CR_I64 : kind & 1 ? CR_F64 : CR_F32;
  cr_tensor *x = cr_zeros(g->ctx, dt, nd, shape);
  if (!x)
    return;
  for (int64_t i = 0; i < cr_numel(x); i++)
    cr_set_flat(x, i, dt == CR_I64 ? (double)(integer(r) % 4) : value(r));
  if (dt != CR_I64 && byte(r) % 4 != 0) {
    cr_set_requires_grad(x, true);
    if (g->n_leaves < POOL)
      g->leaf[g->n_leaves++] = x;
  }
  (void)numel;
  push(g, x);
}

/* ops of one tensor and scalars */
static cr_tensor *unary_op(prog *g, reader *r, cr_tensor *x) {
  cr_ctx *c = g->ctx;
  switch (byte(r) % 26) {
  case 0: return cr_neg(c, x);
  case 1: return cr_exp(c, x);
  case 2: return cr_log(c, x);
  case 3: return cr_sqrt(c, x);
  case 4: return cr_square(c, x);
  case 5: return cr_tanh(c, x);
  case 6: return cr_sigmoid(c, x);
  case 7: return cr_relu(c, x);
  case 8: return cr_abs(c, x);
  case 9: return cr_clamp(c, x, value(r), value(r));
  case 10: return cr_sin(c, x);
  case 11: return cr_cos(c, x);
  case 12: return cr_erf(c, x);
  case 13: return cr_gelu(c, x);
  case 14: return cr_softplus(c, x, value(r), value(r));
  case 15: return cr_pow_scalar(c, x, value(r));
  case 16: return cr_div_scalar(c, x, value(r));
  case 17: return cr_mul_scalar(c, x, value(r));
  case 18: return cr_add_scalar(c, x, value(r));
  case 19: return cr_softmax(c, x, axis(r));
  case 20: return cr_log_softmax(c, x, axis(r));
  case 21: return cr_cumsum(c, x, axis(r));
  case 22: return cr_contiguous(c, x);
  case 23: return cr_cast(c, x, byte(r) & 1 ? CR_F64 : CR_F32);
  case 24: return cr_dropout(c, x, value(r), g->rng);
  default: return cr_rsub_scalar(c, x, value(r));
  }
}

static cr_tensor *reduce_op(prog *g, reader *r, cr_tensor *x) {
  cr_ctx *c = g->ctx;
  int axes[4] = {axis(r), axis(r), axis(r), axis(r)};
  const int na = (int)(byte(r) % 5);
  const bool keep = byte(r) & 1;
  switch (byte(r) % 14) {
  case 0: return cr_sum(c, x);
  case 1: return cr_mean(c, x);
  case 2: return cr_sum_axis(c, x, axes[0], keep);
  case 3: return cr_mean_axis(c, x, axes[0], keep);
  case 4: return cr_max_axis(c, x, axes[0], keep);
  case 5: return cr_min_axis(c, x, axes[0], keep);
  case 6: return cr_sum_axes(c, x, na ? axes : NULL, na, keep);
  case 7: return cr_mean_axes(c, x, na ? axes : NULL, na, keep);
  case 8: return cr_var(c, x, na ? axes : NULL, na, (double)(byte(r) % 3), keep);
  case 9: return cr_std(c, x, na ? axes : NULL, na, (double)(byte(r) % 3), keep);
  case 10: return cr_logsumexp(c, x, axes[0], keep);
  case 11: return cr_argmax(c, x, axes[0], keep);
  case 12: {
    cr_tensor *idx = NULL;
    cr_tensor *v = cr_topk(c, x, integer(r), axes[0], keep, &idx);
    push(g, idx);
    return v;
  }
  default: return cr_argmin(c, x, axes[0], keep);
  }
}

static cr_tensor *shape_op(prog *g, reader *r, cr_tensor *x) {
  cr_ctx *c = g->ctx;
  int64_t s[5] = {integer(r), integer(r), integer(r), integer(r), integer(r)};
  const int n = (int)(byte(r) % 6);
  switch (byte(r) % 14) {
  case 0: return cr_reshape(c, x, n, s);
  case 1: return cr_transpose(c, x, axis(r), axis(r));
  case 2: {
    int perm[4] = {axis(r), axis(r), axis(r), axis(r)};
    return cr_ndim(x) <= 4 ? cr_permute(c, x, perm) : NULL;
  }
  case 3: return cr_slice(c, x, axis(r), integer(r), integer(r), integer(r));
  case 4: /* a copy, not a view */
    return large_but_legal(product(s, n)) ? NULL : cr_expand(c, x, n, s);
  case 5: return too_big(x) ? NULL : cr_sum_to(c, x, n, s);
  case 6: return cr_squeeze(c, x, axis(r));
  case 7: return cr_unsqueeze(c, x, axis(r));
  case 8: return cr_select(c, x, axis(r), integer(r));
  case 9: {
    int axes[3] = {axis(r), axis(r), axis(r)};
    return too_big(x) ? NULL : cr_flip(c, x, axes, (int)(byte(r) % 4));
  }
  case 10: {
    if (too_big(x))
      return NULL;
    double out = (double)cr_numel(x);
    for (int i = 0; i + 1 < n; i += 2)
      out *= 1.0 + fabs((double)s[i]) + fabs((double)s[i + 1]);
    return large_but_legal(out) ? NULL : cr_pad(c, x, s, n, value(r));
  }
  case 11: {
    if (too_big(x) || large_but_legal((double)cr_numel(x) * product(s, n)))
      return NULL;
    return cr_repeat(c, x, s, n);
  }
  case 12: return large_but_legal(product(s, n)) ? NULL : cr_broadcast_to(c, x, n, s);
  default: return cr_detach(c, x);
  }
}

static cr_tensor *binary_op(prog *g, reader *r, cr_tensor *a, cr_tensor *b) {
  cr_ctx *c = g->ctx;
  switch (byte(r) % 16) {
  case 0: return cr_add(c, a, b);
  case 1: return cr_sub(c, a, b);
  case 2: return cr_mul(c, a, b);
  case 3: return cr_div(c, a, b);
  case 4: return cr_maximum(c, a, b);
  case 5: return cr_minimum(c, a, b);
  case 6: return cr_gt(c, a, b);
  case 7: return cr_eq(c, a, b);
  case 8: {
    /* the product's size: [M,K] @ [K,N] */
    double m = cr_ndim(a) >= 2 ? (double)cr_shape(a)[cr_ndim(a) - 2] : 1;
    double nn = cr_ndim(b) >= 1 ? (double)cr_shape(b)[cr_ndim(b) - 1] : 1;
    return m * nn > BIG_RESULT / 16 ? NULL : cr_matmul(c, a, b);
  }
  case 9: return cr_masked_fill(c, a, b, value(r));
  case 10: return cr_mse(c, a, b);
  case 11: return cr_where(c, b, a, pick(g, r));
  case 12: return cr_gather(c, a, axis(r), b);
  case 13: return cr_index_select_t(c, a, axis(r), b);
  case 14: return cr_embedding_t(c, a, b);
  default: {
    cr_tensor *xs[3] = {a, b, pick(g, r)};
    int n = 1 + (int)(byte(r) % 3);
    return byte(r) & 1 ? cr_concat(c, xs, n, axis(r)) : cr_stack(c, xs, n, axis(r));
  }
  }
}

static cr_tensor *other_op(prog *g, reader *r, cr_tensor *a, cr_tensor *b) {
  cr_ctx *c = g->ctx;
  switch (byte(r) % 6) {
  case 0: return cr_addmm(c, pick(g, r), a, b);
  case 1:
    return cr_layer_norm(c, a, (int)(byte(r) % 4), byte(r) & 1 ? b : NULL,
                         byte(r) & 1 ? pick(g, r) : NULL, value(r));
  case 2: return cr_scatter_add(c, a, axis(r), b, pick(g, r));
  case 3: {
    int64_t idx[4] = {integer(r), integer(r), integer(r), integer(r)};
    return cr_index_select(c, a, axis(r), idx, (int64_t)(byte(r) % 5));
  }
  case 4: {
    int64_t ids[4] = {integer(r), integer(r), integer(r), integer(r)}, shape[2] = {2, 2};
    return cr_embedding(c, a, ids, 2, shape);
  }
  default: {
    int64_t tg[8];
    for (int i = 0; i < 8; i++)
      tg[i] = integer(r);
    /* cross_entropy reads N = rows of a targets: only when there are <= 8 */
    if (cr_ndim(a) != 2 || cr_shape(a)[0] > 8)
      return NULL;
    return cr_cross_entropy(c, a, tg, byte(r) & 1 ? CR_NO_IGNORE : 0);
  }
  }
}

/* The op's outcome agrees with the context: a result and no error, or no
 * result and an error with a message, which is then cleared. */
static void settle(prog *g, cr_tensor *y) {
  cr_status st = cr_ctx_status(g->ctx);
  if (y) {
    CHECK(st == CR_OK);
    push(g, y);
  } else if (st != CR_OK) {
    CHECK(cr_ctx_error(g->ctx)[0] != '\0');
    cr_ctx_clear_error(g->ctx);
  }
}

static cr_ctx *fresh_ctx(void) {
  static cr_ctx *ctx;
  if (!ctx && !(ctx = cr_ctx_new()))
    abort();
  cr_ctx_clear_error(ctx);
  cr_ctx_reset(ctx);
  return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {data, size, 0};
  prog g = {.ctx = fresh_ctx()};
  g.rng = cr_rng_new(byte(&r));
  CHECK(g.rng);
  const int leaves = 1 + (int)(byte(&r) % 4);
  for (int i = 0; i < leaves; i++) {
    leaf(&g, &r);
    cr_ctx_clear_error(g.ctx);
  }
  for (int op = 0; op < MAX_OPS && r.at < r.n; op++) {
    const unsigned kind = byte(&r) % 6;
    cr_tensor *a = pick(&g, &r), *b = pick(&g, &r), *y = NULL;
    if (kind == 5) {
      leaf(&g, &r);
      cr_ctx_clear_error(g.ctx);
      continue;
    }
    if (kind == 2) { /* views may take any tensor */
      y = shape_op(&g, &r, a);
    } else if (too_big(a) || too_big(b)) {
      continue;
    } else if (kind == 0) {
      y = unary_op(&g, &r, a);
    } else if (kind == 1) {
      y = reduce_op(&g, &r, a);
    } else if (kind == 3) {
      y = binary_op(&g, &r, a, b);
    } else {
      y = other_op(&g, &r, a, b);
    }
    settle(&g, y);
  }
  /* backward from the newest small floating result that has a graph */
  for (int i = g.n - 1; i >= 0; i--) {
    cr_tensor *y = g.t[i];
    if (cr_dtype_of(y) == CR_I64 || too_big(y) || cr_numel(y) == 0 || !cr_requires_grad(y))
      continue;
    cr_tensor *L = cr_sum(g.ctx, y);
    if (!L) {
      settle(&g, NULL);
      break;
    }
    cr_status st = byte(&r) & 1
                       ? cr_backward(g.ctx, L)
                       : cr_backward_ex(g.ctx, L, NULL, &(cr_backward_opts){.create_graph = true});
    if (st != CR_OK) {
      CHECK(cr_ctx_error(g.ctx)[0] != '\0');
      cr_ctx_clear_error(g.ctx);
      break;
    }
    for (int k = 0; k < g.n_leaves; k++) {
      const cr_tensor *gr = cr_grad(g.leaf[k]);
      if (!gr)
        continue;
      CHECK(cr_ndim(gr) == cr_ndim(g.leaf[k]));
      CHECK(!memcmp(cr_shape(gr), cr_shape(g.leaf[k]), sizeof(int64_t) * (size_t)cr_ndim(gr)));
      CHECK(cr_dtype_of(gr) == cr_dtype_of(g.leaf[k]));
    }
    break;
  }
  cr_rng_free(g.rng);
  return 0;
}
