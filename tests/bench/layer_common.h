/* layer_common.h — the layer-level forward+backward benchmark case, shared
 * by bench_layer.c (chainrule, timed) and bench_dnnl.cpp (oneDNN, which
 * takes its weights and its reference results from here).
 *
 * One case is one recurrent layer (1 layer, float32, PyTorch's [T,B,I]
 * layout, zero initial state) of a cell at sizes (I,H,B,T):
 *   forward   y = layer(x)                  x [T,B,I] -> y [T,B,H]
 *   backward  seed gy [T,B,H] on y only (the final states get none),
 *             giving gx [T,B,I] and the gradients of every parameter
 * Parameters are drawn by cr_rnn_new from a fixed seed (PyTorch's init),
 * x and gy uniform on [-1, 1) from fixed seeds, so every program sees the
 * same numbers.
 *
 * FLOP convention (the same for every peer, see README.md): the forward
 * matrix products of a layer are
 *     F = 2 * T * B * G * H * (I + H)      G = 4 lstm, 3 gru, 2 mgu, 1 rnn
 * (input projection [T*B,I] x [I,G*H] and the T recurrent [B,H] x [H,G*H]);
 * forward+backward counts 3 * F (the forward product and the two backward
 * products, for the input gradient and the weight gradient, of each).
 * Elementwise work is not counted.
 */
#ifndef CHAINRULE_BENCH_LAYER_COMMON_H
#define CHAINRULE_BENCH_LAYER_COMMON_H

#include "chainrule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lc_size {
  int64_t I, H, B, T;
} lc_size;

/* The default sizes of the layer rows: tiny (32,32,1,32), then
 * (64,128,32,64), (64,512,32,64), (512,512,32,64), (128,128,64,64),
 * (64,1024,32,64).  *n receives the count. */
const lc_size *lc_default_sizes(int *n);
/* Parse "tiny" or "IxHxBxT" (e.g. "64x512x32x64"); false if malformed. */
bool lc_parse_size(const char *s, lc_size *out);
/* "IxHxBxT" into buf. */
const char *lc_size_str(const lc_size *s, char *buf, size_t n);

/* Gate blocks G of a cell ("lstm" 4, "gru" 3, "mgu" 2, "rnn_tanh" 1), or
 * 0 for an unknown name. */
int lc_gates(const char *cell);
/* The cell definition: the built-ins or the example MGU (examples/mgu.c). */
const cr_cell_def *lc_cell(const char *cell);
/* 3 * F, the forward+backward FLOPs of one case (see above). */
double lc_flops(const char *cell, const lc_size *s);

/* One case, ready to step: the layer, its input and the output's seed. */
typedef struct lc_case {
  char cell[16];
  lc_size size;
  cr_rnn *rnn;    /* 1 layer, f32 */
  cr_tensor *x;   /* [T,B,I], persistent, requires_grad */
  cr_tensor *gy;  /* [T,B,H], persistent: the seed of backward */
  cr_tensor *y;   /* [T,B,H] after lc_step (arena: valid until reset) */
  cr_tensor *h_T; /* [1,B,H] the final h after lc_step (arena) */
  cr_tensor *c_T; /* [1,B,H] the final c (lstm) or NULL (arena) */
} lc_case;

/* A new case (parameters from seed 1234); NULL and a message in ctx on
 * error.  Free with lc_free. */
lc_case *lc_new(cr_ctx *ctx, const char *cell, const lc_size *s);
void lc_free(lc_case *c);
/* One forward+backward: zero every gradient, forward, backward from gy.
 * Results stay in ctx's arena until the caller resets it. */
CR_NODISCARD cr_status lc_step(cr_ctx *ctx, lc_case *c);

/* Plain float copies of a case's data and results, in PyTorch layouts,
 * for programs that do not use chainrule's tensors (bench_dnnl.cpp).
 * Each array is malloc'd; lc_ref_free frees them. */
typedef struct lc_ref {
  int G;
  float *x, *gy;                    /* [T,B,I], [T,B,H] */
  float *w_ih, *w_hh, *b_ih, *b_hh; /* [G*H,I], [G*H,H], [G*H], [G*H] */
  /* results of one chainrule forward+backward (NULL unless computed) */
  float *y, *h_T, *c_T; /* [T,B,H], [B,H], [B,H] (c_T: lstm) */
  float *gx, *gw_ih, *gw_hh, *gb_ih, *gb_hh;
} lc_ref;

/* Fill ref with the case's inputs and weights; with compute, also run one
 * chainrule forward+backward and copy its results.  Only the built-in
 * cells lstm, gru, rnn_tanh (their parameters are the four above).
 * Returns 0, or -1 with a message in err. */
int lc_reference(const char *cell, const lc_size *s, bool compute, lc_ref *ref, char *err,
                 size_t n);
void lc_ref_free(lc_ref *ref);

/* Monotonic seconds, and the median of n values (sorts v in place). */
double lc_now_s(void);
double lc_median(double *v, int n);

#ifdef __cplusplus
}
#endif
#endif
