/* double_sum.c — backpropagation through time as the textbook writes it,
 * one term at a time, against backward on the unrolled graph.
 *
 * The simple RNN, t = 0..T-1 (h_{-1} is the initial state), is chainrule's
 * rnn_tanh layer with a linear head:
 *   a_t = W_xh x_t + W_hh h_{t-1} + b     (b = b_ih + b_hh: PyTorch's two biases)
 *   h_t = tanh(a_t)
 *   y_t = W_hy h_t + c
 *   L   = sum_t L_t,   L_t = 1/2 |y_t - z_t|^2
 * W_hh is used at every step, so its gradient is a sum over the steps t
 * whose loss it affects and over the steps k <= t where it acted:
 *   dL/dW_hh = sum_t sum_{k<=t} dL_t/dh_t . (prod_{j=k+1..t} dh_j/dh_{j-1}) . d+h_k/dW_hh
 * with
 *   dL_t/dh_t      = W_hy^T (y_t - z_t)                        [H]
 *   dh_j/dh_{j-1}  = diag(1 - h_j^2) W_hh                      [H,H], the Jacobian J_j
 *   d+h_k/dW_hh    the immediate derivative (h_{k-1} held fixed):
 *                  dh_k[p] / dW_hh[p,q] = (1 - h_k[p]^2) h_{k-1}[q]
 * so, with the row vector v = dL_t/dh_t J_t J_{t-1} ... J_{k+1} (= dL_t/dh_k),
 *   term(t,k)[p][q] = v[p] (1 - h_k[p]^2) h_{k-1}[q].
 * Everything below is plain loops over double arrays: no op, no backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "double_sum.h"

/* y[n] = A[m,n]^T x[m]  (a row vector times a matrix) */
static void vec_mat(int m, int n, const double *x, const double *A, double *y) {
  for (int j = 0; j < n; j++) {
    double s = 0;
    for (int i = 0; i < m; i++)
      s += x[i] * A[i * n + j];
    y[j] = s;
  }
}

/* C[n,n] = A[n,n] B[n,n] */
static void mat_mat(int n, const double *A, const double *B, double *C) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int k = 0; k < n; k++)
        s += A[i * n + k] * B[k * n + j];
      C[i * n + j] = s;
    }
}

/* ||P||_2, the largest singular value, by power iteration on P^T P */
static double spectral_norm(int n, const double *P, double *u, double *w) {
  double s = 0;
  for (int i = 0; i < n; i++)
    u[i] = 1.0 / sqrt(n);
  for (int it = 0; it < 30; it++) {
    for (int i = 0; i < n; i++) { /* w = P u */
      w[i] = 0;
      for (int j = 0; j < n; j++)
        w[i] += P[i * n + j] * u[j];
    }
    vec_mat(n, n, w, P, u); /* u = P^T w */
    double nu = 0, nw = 0;
    for (int i = 0; i < n; i++)
      nu += u[i] * u[i], nw += w[i] * w[i];
    s = sqrt(nw);
    if (nu == 0)
      return 0;
    for (int i = 0; i < n; i++)
      u[i] /= sqrt(nu);
  }
  return s;
}

/* The same network as numbers: copies of the layer's parameters and data. */
typedef struct net {
  int T, I, H, O;
  double *Wxh, *Whh, *b, *Why, *c; /* [H,I] [H,H] [H] [O,H] [O] */
  double *x, *z, *h;               /* [T,I] [T,O] [(T+1),H]: h + (t+1)*H is h_t */
} net;

/* Part 1: the gradient by backward on chainrule's unrolled rnn_tanh.
 * Fills n (values copied out) and dWhh_bw, dh_bw [T,H]. */
static int by_backward(const bt_dsum_config *cfg, net *n, double *dWhh_bw, double *dh_bw,
                       bt_dsum_result *r) {
  const int T = cfg->T, I = cfg->I, H = cfg->H, O = cfg->O;
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(cfg->seed);
  cr_rnn_config rc = {&cr_cell_rnn_tanh, I, H, 1, 0.0, false, CR_F64};
  cr_rnn *rnn = cr_rnn_new(ctx, &rc, rng);
  cr_tensor *Why = cr_tensor_new(ctx, CR_F64, CR_SHAPE(O, H));
  cr_tensor *c = cr_tensor_new(ctx, CR_F64, CR_SHAPE(O));
  double k = 1.0 / sqrt(H);
  if (cr_fill_uniform(ctx, Why, rng, -k, k) || cr_fill_uniform(ctx, c, rng, -k, k))
    goto fail;
  cr_set_requires_grad(Why, true);
  cr_set_requires_grad(c, true);
  cr_tensor *x = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, 1, I), 0, 1);
  cr_tensor *z = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(T, 1, O), 0, 1);
  cr_tensor *h_init = cr_rand_uniform(ctx, rng, CR_F64, CR_SHAPE(1, 1, H), -0.5, 0.5);
  cr_tensor **states = calloc((size_t)T, sizeof *states), *out;
  cr_rnn_forward_opts o = {.step_states = states, .retain_step_grads = true};
  if (!states || cr_rnn_forward_ex(ctx, rnn, x, &h_init, NULL, NULL, &o, &out, NULL)) {
    free(states);
    goto fail;
  }
  /* L = 1/2 sum_t |W_hy h_t + c - z_t|^2 */
  cr_tensor *y = cr_linear(ctx, out, Why, c);
  cr_tensor *L = cr_mul_scalar(ctx, cr_sum(ctx, cr_square(ctx, cr_sub(ctx, y, z))), 0.5);
  r->at_backward = BT_NEXT;
  if (!L || cr_backward(ctx, L)) {
    free(states);
    goto fail;
  }
  r->loss = cr_item(L);
  cr_tensor *Whh = cr_rnn_find_param(rnn, "weight_hh_l0");
  cr_to_doubles(cr_grad(Whh), dWhh_bw);
  for (int t = 0; t < T; t++)
    cr_to_doubles(cr_grad(states[t]), dh_bw + t * H);
  free(states);
  /* copy the numbers out: from here on only double arrays are used */
  double *bih = malloc(sizeof(double) * H);
  if (!bih)
    goto fail;
  cr_to_doubles(cr_rnn_find_param(rnn, "weight_ih_l0"), n->Wxh);
  cr_to_doubles(Whh, n->Whh);
  cr_to_doubles(cr_rnn_find_param(rnn, "bias_ih_l0"), bih);
  cr_to_doubles(cr_rnn_find_param(rnn, "bias_hh_l0"), n->b);
  for (int i = 0; i < H; i++)
    n->b[i] += bih[i];
  free(bih);
  cr_to_doubles(Why, n->Why);
  cr_to_doubles(c, n->c);
  cr_to_doubles(x, n->x);
  cr_to_doubles(z, n->z);
  cr_to_doubles(h_init, n->h);
  r->grad_norm = 0;
  for (int i = 0; i < H * H; i++)
    r->grad_norm += dWhh_bw[i] * dWhh_bw[i];
  r->grad_norm = sqrt(r->grad_norm);
  cr_tensor_free(Why), cr_tensor_free(c), cr_rnn_free(rnn), cr_rng_free(rng), cr_ctx_free(ctx);
  return 0;
fail:
  snprintf(r->error, sizeof r->error, "double sum: %s", cr_ctx_error(ctx));
  cr_tensor_free(Why), cr_tensor_free(c), cr_rnn_free(rnn), cr_rng_free(rng), cr_ctx_free(ctx);
  return 1;
}

/* Part 2: the double sum.  Adds every term(t,k) into dWhh and every
 * dL_t/dh_k into dh; records the norms. */
static void by_the_formula(const bt_dsum_config *cfg, net *n, double *dWhh, double *dh,
                           bt_dsum_result *r, double *ws) {
  const int T = cfg->T, H = cfg->H, O = cfg->O, I = cfg->I;
  double *g = ws, *v = g + H, *P = v + H, *J = P + H * H, *PJ = J + H * H, *u = PJ + H * H,
         *w = u + H;
  /* the forward pass again, in doubles: h_t = tanh(W_xh x_t + W_hh h_{t-1} + b) */
  for (int t = 0; t < T; t++) {
    const double *hp = n->h + t * H, *xt = n->x + t * I;
    double *ht = n->h + (t + 1) * H;
    for (int i = 0; i < H; i++) {
      double a = n->b[i];
      for (int q = 0; q < I; q++)
        a += n->Wxh[i * I + q] * xt[q];
      for (int q = 0; q < H; q++)
        a += n->Whh[i * H + q] * hp[q];
      ht[i] = tanh(a);
    }
  }
  memset(dWhh, 0, sizeof(double) * H * H);
  memset(dh, 0, sizeof(double) * T * H);
  r->n_terms = 0;
  for (int t = 0; t < T; t++) {
    const double *ht = n->h + (t + 1) * H;
    /* dL_t/dh_t = W_hy^T (y_t - z_t) */
    double e[64];
    for (int o = 0; o < O; o++) {
      double y = n->c[o];
      for (int i = 0; i < H; i++)
        y += n->Why[o * H + i] * ht[i];
      e[o] = y - n->z[t * O + o];
    }
    vec_mat(O, H, e, n->Why, g);
    /* P = J_t ... J_{k+1}, starting from the identity (k = t) */
    for (int i = 0; i < H * H; i++)
      P[i] = i % (H + 1) == 0;
    for (int k = t; k >= 0; k--) {
      const double *hk = n->h + (k + 1) * H, *hkm1 = n->h + k * H;
      vec_mat(H, H, g, P, v); /* v = dL_t/dh_t P = dL_t/dh_k */
      double tn = 0;
      if (cfg->max_lag < 0 || t - k <= cfg->max_lag) {
        for (int p = 0; p < H; p++)
          for (int q = 0; q < H; q++) {
            /* term(t,k)[p][q] = v[p] (1 - h_k[p]^2) h_{k-1}[q] */
            r->at_term = BT_NEXT;
            double term = v[p] * (1 - hk[p] * hk[p]) * hkm1[q];
            dWhh[p * H + q] += term;
            tn += term * term;
          }
        r->n_terms++;
      }
      for (int i = 0; i < H; i++)
        dh[k * H + i] += v[i];
      r->term[t * T + k] = sqrt(tn);
      r->jprod[t * T + k] = spectral_norm(H, P, u, w);
      /* P <- P J_k, J_k = diag(1 - h_k^2) W_hh: row p of W_hh scaled by 1 - h_k[p]^2 */
      for (int p = 0; p < H; p++)
        for (int q = 0; q < H; q++)
          J[p * H + q] = (1 - hk[p] * hk[p]) * n->Whh[p * H + q];
      mat_mat(H, P, J, PJ);
      memcpy(P, PJ, sizeof(double) * H * H);
    }
  }
}

int bt_double_sum(const bt_dsum_config *cfg, bt_dsum_result *r) {
  memset(r, 0, sizeof *r);
  const int T = cfg->T, I = cfg->I, H = cfg->H, O = cfg->O;
  if (T < 1 || I < 1 || H < 1 || O < 1 || O > 64 || T > 1000 || H > 256 || I > 256) {
    snprintf(r->error, sizeof r->error,
             "double sum: sizes T %d, I %d, H %d, O %d: need "
             "1 <= T <= 1000, 1 <= I, H <= 256, 1 <= O <= 64",
             T, I, H, O);
    return 1;
  }
  r->T = T, r->H = H;
  net n = {.T = T, .I = I, .H = H, .O = O};
  size_t nd = (size_t)H * I + (size_t)H * H + H + (size_t)O * H + O + (size_t)T * I +
              (size_t)T * O + (size_t)(T + 1) * H;
  double *mem = calloc(nd, sizeof(double));
  double *dW = calloc((size_t)H * H * 2, sizeof(double)),
         *dh = calloc((size_t)T * H * 2, sizeof(double));
  double *ws = calloc((size_t)4 * H + 3 * (size_t)H * H, sizeof(double));
  r->term = malloc(sizeof(double) * T * T);
  r->jprod = malloc(sizeof(double) * T * T);
  r->dh = calloc((size_t)T, sizeof(double));
  int rc = 1;
  if (!mem || !dW || !dh || !ws || !r->term || !r->jprod || !r->dh) {
    snprintf(r->error, sizeof r->error, "double sum: out of memory");
    goto done;
  }
  for (int i = 0; i < T * T; i++)
    r->term[i] = r->jprod[i] = NAN;
  n.Wxh = mem, n.Whh = n.Wxh + H * I, n.b = n.Whh + H * H, n.Why = n.b + H;
  n.c = n.Why + O * H, n.x = n.c + O, n.z = n.x + T * I, n.h = n.z + T * O;
  double *dW_bw = dW + H * H, *dh_bw = dh + T * H;
  if (by_backward(cfg, &n, dW_bw, dh_bw, r))
    goto done;
  by_the_formula(cfg, &n, dW, dh, r, ws);
  /* the comparison the report prints: element by element */
  r->at_compare = BT_NEXT;
  for (int i = 0; i < H * H; i++)
    r->max_diff = fmax(r->max_diff, fabs(dW[i] - dW_bw[i]));
  for (int k = 0; k < T; k++) {
    double s = 0;
    for (int i = 0; i < H; i++) {
      r->max_diff_h = fmax(r->max_diff_h, fabs(dh[k * H + i] - dh_bw[k * H + i]));
      s += dh[k * H + i] * dh[k * H + i];
    }
    r->dh[k] = sqrt(s);
  }
  rc = 0;
done:
  free(mem), free(dW), free(dh), free(ws);
  return rc;
}

void bt_dsum_free(bt_dsum_result *r) {
  free(r->term), free(r->jprod), free(r->dh);
  r->term = r->jprod = r->dh = NULL;
}
