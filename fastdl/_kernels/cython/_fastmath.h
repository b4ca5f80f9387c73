/* Inline float32 maths for the Cython kernels: the Numba backend's algorithms
 * (fastdl/_kernels/numba/_math.py, same coefficients), written as plain C that gcc
 * vectorises in the calling loop, with no call and no branch (the edges are selects).
 *
 * Why not libm: libmvec's expf, expm1f, tanhf and erfcf are one call per vector, with
 * their range checks; with these, sigmoid forward + backward on 10M float32 over 2
 * threads went from 1.90-2.08 to 1.36-1.81 ns an element (A/B of the built module), gelu
 * from 2.34-3.06 to 1.77-2.81, elu in cache from 2.54-2.62 to 2.06-2.09.
 *
 * Reduction, as _math._exp_reduced: x = n ln2 + r, |r| <= ln2/2, with n * LN2_HI exact
 * (Cody-Waite).  n is rounded by adding 1.5 * 2^23, which leaves n in the low mantissa
 * bits of t = x log2(e) + 1.5 * 2^23: no rint (a libm call on SSE2 builds), and 2^(n + k)
 * comes from t's bits by integer arithmetic.  e^r = 1 + r + r^2 P(r) (_math._EXP_P[32]).
 * Accuracy is the Numba functions' (exp 1.02 ulp, expm1 1.01, tanh 1.33, gauss 1.46,
 * Phi 6.61); the tests compare every backend with the NumPy reference.
 *
 * Everything here is float32: every literal carries its f (see tests/test_cython_float32.py).
 */
#ifndef FASTDL_FASTMATH_H
#define FASTDL_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FASTDL_ROUND_MAGIC 12582912.0f  /* 1.5 * 2^23 */

/* e^r for x = n ln2 + r; *t receives n + 1.5 * 2^23 (n in its low mantissa bits) */
static inline float fastdl_exp_reduced_f(float x, float *t) {
    float n, r, p;
    *t = x * 1.44269504088896341f + FASTDL_ROUND_MAGIC;
    n = *t - FASTDL_ROUND_MAGIC;
    r = (x - n * 0.693145751953125f) - n * 1.4286068202862268e-06f;
    p = (((0.0013814467f * r + 0.008368781f) * r + 0.041668393f) * r + 0.1666652f) * r
        + 0.49999994f;
    return 1.0f + (r + r * r * p);
}

/* 2^(n + k) from t = n + 1.5 * 2^23, for n + k in the normal exponent range */
static inline float fastdl_pow2_f(float t, int32_t k) {
    int32_t b;
    float s;
    memcpy(&b, &t, sizeof b);
    b = (int32_t)((uint32_t)(b - 0x4B400000 + 127 + k) << 23);
    memcpy(&s, &b, sizeof s);
    return s;
}

/* e^x for x <= 0 or NaN (wrong above ~43), as _math.exp_nonpos: clamped at -104, where
 * it rounds to 0; 2^n as 2^(n + 64) 2^-64, so that a subnormal result is rounded once, by
 * the last product.  NaN: t and the polynomial are NaN, so the product is NaN whatever the
 * bits of the scale. */
static inline float fastdl_exp_nonpos_f(float x) {
    float t, p, xc = x < -104.0f ? -104.0f : x;
    p = fastdl_exp_reduced_f(xc, &t);
    return p * fastdl_pow2_f(t, 64) * 5.421010862427522e-20f;
}

/* e^x - 1 for x <= 0 or NaN, as _math.expm1_nonpos: below 0.6932 (just above ln 2) no
 * reduction (n = 0; n = +-1 would cancel); with n <= 0, 2^n - 1 is exact and 2^n q is
 * exact, so 2^n q + (2^n - 1) rounds once, with or without an FMA. */
static inline float fastdl_expm1_nonpos_f(float x) {
    float xc = x < -18.0f ? -18.0f : x;  /* below, e^x - 1 rounds to -1 */
    float n = (xc * 1.44269504088896341f + FASTDL_ROUND_MAGIC) - FASTDL_ROUND_MAGIC;
    float r, q, s;
    int32_t b;
    n = xc < -0.6932f ? n : 0.0f;  /* NaN takes n = 0 */
    r = (xc - n * 0.693145751953125f) - n * 1.4286068202862268e-06f;
    q = (((((2.4781153e-05f * r + 0.00020095808f) * r + 0.0013890427f) * r + 0.008332629f) * r
          + 0.04166662f) * r + 0.16666672f) * r + 0.5f;
    q = r + r * r * q;  /* e^r - 1 */
    b = ((int32_t)n + 127) << 23;  /* 2^n, n in [-26, 0] */
    memcpy(&s, &b, sizeof s);
    return s * q + (s - 1.0f);
}

/* tanh, as _math.tanh (float32): below 0.625 a + a^3 P(a^2); from there 1 - 2 / (e^2a + 1),
 * which cannot cancel (tanh 0.625 = 0.55), e^2a for 2a in [1.25, 20] (clamped where tanh
 * rounds to 1; NaN takes the clamp and returns through the small branch); odd by copysign. */
static inline float fastdl_tanh_f(float x) {
    float a = fabsf(x), z = a * a, small, ac, t, p, large;
    small = a + a * z * ((((-0.005704972892999649f * z + 0.020639074966311455f) * z
                           - 0.05373971164226532f) * z + 0.13331441581249237f) * z
                         - 0.3333328068256378f);
    ac = a < 10.0f ? a : 10.0f;
    p = fastdl_exp_reduced_f(ac + ac, &t);
    large = 1.0f - 2.0f / (p * fastdl_pow2_f(t, 0) + 1.0f);  /* 2^n, n in [2, 29] */
    return copysignf(a >= 0.625f ? large : small, x);
}

/* e^(-x^2/2), as _math.gauss: x^2/2 = h + l exactly (an FMA, or a product in double where
 * the build has no FMA), then e^-h (1 - l); |x| clamped at 16, where the result is 0 (NaN
 * passes). */
static inline float fastdl_gauss_f(float x) {
    float a = fabsf(x), xx, h, l, e;
    a = a > 16.0f ? 16.0f : a;
    xx = a * a;
    h = 0.5f * xx;
#if defined(__FMA__)
    l = 0.5f * fmaf(a, a, -xx);
#else
    l = (float)(0.5 * ((double)a * (double)a - (double)xx));  /* 48-bit product: exact */
#endif
    e = fastdl_exp_nonpos_f(-h);
    return e - e * l;
}

/* Phi(x) given g = gauss(x), as _math.ndtr: c = erfc(|x| / sqrt 2) = g P(a) / Q(a) (a
 * rational fitted to e^(a^2) erfc(a), a clamped at 10.5), Phi = c / 2 for x < 0 and
 * 1 - c / 2 above: no cancellation in the left tail. */
static inline float fastdl_ndtr_g_f(float x, float g) {
    float a = fabsf(x) * 0.70710678118654752f, p, q, c;
    a = a > 10.5f ? 10.5f : a;
    p = (((0.03313813771360047f * a + 0.23084263740371014f) * a + 0.7350062791714945f) * a
         + 1.2416531416232355f) * a + 1.0000000061819752f;
    q = ((((0.05873517484760754f * a + 0.409182774096549f) * a + 1.3317202089180191f) * a
          + 2.4092921053626077f) * a + 2.3700329287975697f) * a + 1.0f;
    c = 0.5f * (g * (p / q));
    return x >= 0.0f ? 1.0f - c : c;
}

#endif
