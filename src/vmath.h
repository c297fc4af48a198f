/* vmath.h — float exp, tanh and sigmoid written so that loops over them
 * vectorise (no calls, no branches: selects only).  Accuracy is that of
 * Cephes' single-precision routines, about 1-2 ulp, which is what
 * vectorised math libraries (SLEEF u10 in PyTorch) give too; glibc's expf
 * and tanhf are scalar calls and dominated the LSTM step's profile.
 * float64 keeps libm. */
#ifndef CHAINRULE_VMATH_H
#define CHAINRULE_VMATH_H

#include <stdint.h>
#include <string.h>

/* e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-7 polynomial,
 * 2^n by building the exponent bits.  Saturates to 0 below -87.3 and to
 * +inf above 88.72 (NaN stays NaN). */
static inline float cr__expf(float x) {
  const float hi = 88.7228390f, lo = -87.3365448f;
  /* a NaN is replaced by 0 for the arithmetic (so no NaN is ever converted
   * to an integer, which C leaves undefined) and restored at the end */
  float xc = x != x ? 0.0f : (x > hi ? hi : (x < lo ? lo : x));
  /* round to nearest by adding and removing 1.5 * 2^23 (no libm call) */
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  /* n is an integer in [-126, 128] here, so the biased exponent is in
   * [1, 255] and the shift stays within 32 unsigned bits */
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  float y = p * scale;
  y = x > hi ? __builtin_inff() : y;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}

/* tanh: an odd polynomial below |x| = 0.625, else (1 - e) / (1 + e) with
 * e = exp(-2|x|) (no cancellation there, no overflow anywhere). */
static inline float cr__tanhf(float x) {
  float ax = x < 0 ? -x : x;
  float z = x * x;
  float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                  1.33314422036e-1f) *
                     z -
                 3.33332819422e-1f) *
                    z * x +
                x;
  float e = cr__expf(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  big = x < 0 ? -big : big;
  return ax < 0.625f ? small : big;
}

/* sigmoid: 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below; e = exp(-|x|). */
static inline float cr__sigmoidf(float x) {
  float e = cr__expf(x < 0 ? x : -x);
  float inv = 1.0f / (1.0f + e);
  return x >= 0 ? inv : e * inv;
}

#endif
