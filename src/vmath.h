/* vmath.h — float exp, tanh and sigmoid written so that loops over them
 * vectorise (no calls, no branches: selects only).  Accuracy is that of
 * Cephes' single-precision routines wherever the result is a normal float:
 * exp 0.988 ulp, tanh 1.509, sigmoid 2.402 at most over all 2^32 floats
 * (tests/test_vmath.c checks a sweep), which is what vectorised math
 * libraries (SLEEF u10 in PyTorch) give too; glibc's expf and tanhf are
 * scalar calls and dominated the LSTM step's profile.  Results that would
 * be subnormal are 0.
 *
 * The polynomials' steps and exp's argument reduction are fused
 * multiply-adds (fmaf: one rounding each, so the same bits on every
 * instruction set): one instruction in the x86-64-v3 and v4 clones of the
 * kernels that use these (CR_KERNEL), a libm call only in the baseline
 * clone, for CPUs without FMA.  Against a multiply and an add each (paired
 * runs, Zen 5, bench-layer): lstm / gru / rnn_tanh 32x32x1x32 0.963 /
 * 0.984 / 0.998 of the time; 64x128, 128x128 and 512x512 0.98-1.03, within
 * the noise; exp's worst case 0.992 -> 0.988 ulp, sigmoid's and tanh's
 * unchanged.  (The last step of exp's polynomial fused too made its worst
 * case 1.023 ulp.)
 * float64 keeps libm. */
#ifndef CHAINRULE_VMATH_H
#define CHAINRULE_VMATH_H

#include <stdint.h>
#include <string.h>

/* e^r with |r| <= ln2/2 by a degree-7 polynomial */
static inline float cr__exp_poly(float r) {
  float p = 1.9875691500e-4f;
  p = __builtin_fmaf(p, r, 1.3981999507e-3f);
  p = __builtin_fmaf(p, r, 8.3334519073e-3f);
  p = __builtin_fmaf(p, r, 4.1665795894e-2f);
  p = __builtin_fmaf(p, r, 1.6666665459e-1f);
  p = __builtin_fmaf(p, r, 5.0000001201e-1f);
  return p * r * r + r + 1.0f;
}

/* 2^k for an integer k in [-126, 127], by building the exponent bits (the
 * biased exponent k + 127 is in [1, 254], the shift within 32 bits) */
static inline float cr__pow2i(int32_t k) {
  const uint32_t bits = (uint32_t)(k + 127) << 23;
  float s;
  memcpy(&s, &bits, sizeof s);
  return s;
}

/* x = n ln2 + r with |r| <= ln2/2, for x clamped to a finite range: n
 * rounded to nearest by adding and removing 1.5 * 2^23 (no libm call), ln2
 * in two parts so that r keeps its low bits.  t = x / ln2 + 1.5 * 2^23
 * lies in [2^23, 2^24), where floats are the integers: its bits are those
 * of 1.5 * 2^23 plus n, so n as an integer is a subtraction of bits (no
 * float-to-int conversion).  (A macro, not a function with n returned
 * through a pointer: that form vectorised 10% slower.) */
#define CR__EXP_REDUCE(xc, n, r, ni)                                                               \
  do {                                                                                             \
    const float t_ = (xc)*1.44269504088896341f + 12582912.0f;                                      \
    int32_t tb_;                                                                                   \
    memcpy(&tb_, &t_, sizeof tb_);                                                                 \
    (ni) = tb_ - 0x4B400000; /* the bits of 1.5 * 2^23 */                                          \
    (n) = t_ - 12582912.0f;                                                                        \
    (r) = __builtin_fmaf(-(n), 0.693359375f, (xc));                                                \
    (r) = __builtin_fmaf(-(n), -2.12194440e-4f, (r));                                              \
  } while (0)

/* e^x for x <= 0 (what sigmoid and tanh ask for): 0 below -87.34, where
 * e^x < 2^-126 would be subnormal; NaN stays NaN.  A NaN fails x > lo, so
 * the arithmetic runs on lo instead (no NaN reaches the bits of n) and the
 * NaN is restored at the end; so does x < lo, whose result is 0. */
static inline float cr__expf_nonpos(float x) {
  const float lo = -87.3365448f;
  float xc = x > lo ? x : lo, n, r;
  int32_t ni;
  CR__EXP_REDUCE(xc, n, r, ni);
  float y = cr__exp_poly(r) * cr__pow2i(ni); /* ni in [-126, 0] */
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}

/* e^x: 0 below -87.34 (as above), +inf above 88.72 (FLT_MAX = e^88.7228),
 * NaN stays NaN.  n is in [-126, 128] here, and 2^128 has no float
 * exponent although e^x < FLT_MAX can need it (x > 127.5 ln 2), so
 * 2^n = 2^a 2^b with a = n >> 1, b = n - a (the first product is exact,
 * so every other x gets the bits of p 2^n). */
static inline float cr__expf(float x) {
  const float hi = 88.7228390f, lo = -87.3365448f;
  float xc = x > lo ? (x < hi ? x : hi) : lo, n, r; /* a NaN: lo, as above */
  int32_t ni;
  CR__EXP_REDUCE(xc, n, r, ni);
  const int32_t a = ni >> 1, b = ni - a;
  float y = cr__exp_poly(r) * cr__pow2i(a) * cr__pow2i(b);
  y = x > hi ? __builtin_inff() : y;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}

/* tanh: an odd polynomial below |x| = 0.625, else (1 - e) / (1 + e) with
 * e = exp(-2|x|) (no cancellation there, no overflow anywhere); both on
 * |x|, the sign of x put back last (so tanh(-0) = -0; the polynomial, odd
 * and evaluated with sign-symmetric roundings, gives the same bits as on x). */
static inline float cr__tanhf(float x) {
  const float ax = __builtin_fabsf(x), z = ax * ax;
  float q = __builtin_fmaf(-5.70498872745e-3f, z, 2.06390887954e-2f);
  q = __builtin_fmaf(q, z, -5.37397155531e-2f);
  q = __builtin_fmaf(q, z, 1.33314422036e-1f);
  q = __builtin_fmaf(q, z, -3.33332819422e-1f);
  const float small = __builtin_fmaf(q * z, ax, ax);
  const float e = cr__expf_nonpos(-2.0f * ax);
  const float big = (1.0f - e) / (1.0f + e);
  return __builtin_copysignf(ax < 0.625f ? small : big, x);
}

/* sigmoid: 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below; e = exp(-|x|),
 * one division either way. */
static inline float cr__sigmoidf(float x) {
  const float e = cr__expf_nonpos(x < 0 ? x : -x);
  return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

#endif
