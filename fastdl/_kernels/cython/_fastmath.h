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
 * Accuracy is the Numba functions' (exp 1.02 ulp, expm1 1.01, tanh 1.33, log and log1p
 * under 1 ulp); GELU's own
 * (every float32 in [-16, 16] against float64): gelu 6.9 ulp where its result is normal,
 * gelu' 15.7 ulp outside +-0.1 of its zero at -0.752 (where the sum cancels, as it did
 * before); 8.3 and 20.3 ulp in a build without FMA.  The tests compare every backend
 * with the NumPy reference.
 *
 * Everything here is float32: every literal carries its f (see tests/test_cython_float32.py).
 */
#ifndef FASTDL_FASTMATH_H
#define FASTDL_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FASTDL_ROUND_MAGIC 12582912.0f  /* 1.5 * 2^23 */

/* e^r for |r| <= ln2/2 */
static inline float fastdl_exp_poly_f(float r) {
    float p = (((0.0013814467f * r + 0.008368781f) * r + 0.041668393f) * r + 0.1666652f) * r
              + 0.49999994f;
    return 1.0f + (r + r * r * p);
}

/* e^r for x = n ln2 + r; *t receives n + 1.5 * 2^23 (n in its low mantissa bits) */
static inline float fastdl_exp_reduced_f(float x, float *t) {
    float n, r;
    *t = x * 1.44269504088896341f + FASTDL_ROUND_MAGIC;
    n = *t - FASTDL_ROUND_MAGIC;
    r = (x - n * 0.693145751953125f) - n * 1.4286068202862268e-06f;
    return fastdl_exp_poly_f(r);
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
    uint32_t nbits;
    /* n = 0 from -0.6932 up (NaN too), by a mask on n's bits: as a float select, gcc
     * evaluated the polynomial twice, once for each value of n (ELU forward 1.4x slower) */
    memcpy(&nbits, &n, sizeof nbits);
    nbits &= -(uint32_t)(xc < -0.6932f);
    memcpy(&n, &nbits, sizeof n);
    r = (xc - n * 0.693145751953125f) - n * 1.4286068202862268e-06f;
    q = (((((2.4781153e-05f * r + 0.00020095808f) * r + 0.0013890427f) * r + 0.008332629f) * r
          + 0.04166662f) * r + 0.16666672f) * r + 0.5f;
    q = r + r * r * q;  /* e^r - 1 */
    b = ((int32_t)n + 127) << 23;  /* 2^n, n in [-26, 0] */
    memcpy(&s, &b, sizeof s);
    return s * q + (s - 1.0f);
}

/* x = m 2^k with m in [sqrt(1/2), sqrt 2), for positive normal x (musl's logf trick, as
 * _math._reduce_bits): offsetting the bits makes the exponent field roll over at sqrt(1/2).
 * Returns m - 1 (exact, Sterbenz) and sets *k. */
static inline float fastdl_log_split_f(float x, float *k) {
    uint32_t ix;
    float m;
    memcpy(&ix, &x, sizeof ix);
    ix += (127u << 23) - 0x3F3504F3u;
    *k = (float)((int32_t)(ix >> 23) - 127);
    ix = (ix & 0x7FFFFFu) + 0x3F3504F3u;
    memcpy(&m, &ix, sizeof m);
    return m - 1.0f;
}

/* k ln2 + log(1 + f) + c for f in [sqrt(1/2) - 1, sqrt 2 - 1], as _math._log_reduced
 * (fdlibm's form, the same coefficients: 0.0068 eps) */
static inline float fastdl_log_reduced_f(float k, float f, float c) {
    float s = f / (2.0f + f), z = s * s, hfsq = 0.5f * f * f;
    float r = z * ((0.29873073f * z + 0.39977497f) * z + 0.66666776f);
    return k * 0.693145751953125f
           - ((hfsq - (s * (hfsq + r) + (k * 1.4286068202862268e-06f + c))) - f);
}

/* log x, as _math.log (float32): a subnormal x is first scaled by 2^25 (exact); +inf and
 * NaN pass through, 0 gives -inf and a negative x NaN, by selects. */
static inline float fastdl_log_f(float x) {
    int sub = x < 1.1754943508222875e-38f;
    float k, f, y;
    f = fastdl_log_split_f(sub ? x * 33554432.0f : x, &k);
    y = fastdl_log_reduced_f(sub ? k - 25.0f : k, f, 0.0f);
    y = x < INFINITY ? y : x;
    return x > 0.0f ? y : (x == 0.0f ? -INFINITY : NAN);
}

/* log(1 + x), as _math.log1p (float32): u = 1 + x; where k = 0 (u in [sqrt(1/2),
 * sqrt 2)), f = x itself, exact; elsewhere f = m - 1 and c = ((1 + x) - u) / u corrects
 * the rounding of u.  -1 gives -inf, below it NaN; +inf and NaN pass through. */
static inline float fastdl_log1p_f(float x) {
    float u = 1.0f + x, k, f, c, y;
    f = fastdl_log_split_f(u, &k);
    f = k == 0.0f ? x : f;
    c = k == 0.0f ? 0.0f : (x - (u - 1.0f)) / u;
    y = fastdl_log_reduced_f(k, f, c);
    y = x < INFINITY ? y : x;
    return x > -1.0f ? y : (x == -1.0f ? -INFINITY : NAN);
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

/* GELU's shared part for a = min(|x|, 14.6): returns p and sets *s, *a, *r with
 *   e^(-a^2/2) = p s 2^-64                       (s = 2^(n + 64), a power of two),
 *   Phi(-a) = erfc(a / sqrt 2) / 2 = p s r     (r = 2^-64 P(a) / Q(a) / 2),
 * so that gelu(x) = relu(x) - a Phi(-a) for either sign of x and
 * gelu'(x) = Phi(x) + x phi(x) is 1 - w for x >= 0 and w below, w = gelu'(-a).
 * a^2/2 = h + l exactly (an FMA, or a product in double where the build has no FMA) and
 * l goes into the reduced argument, so e^(-h - l) keeps full precision for large a.
 * P/Q is the rational for e^(z^2) erfc(z) of _math.ndtr (float32), z = a/sqrt 2, rescaled
 * to a, with the 2^-64 / 2 folded into its coefficients (_math.gelu: the same constants).
 * The clamp is an integer min on the bits (|x| >= 0): written as a float select, gcc
 * evaluates the whole function for the clamped lanes as constants and blends them in
 * (5 blends a vector, 1.2x slower).  NaN takes the clamp too; the callers propagate it.
 * At a = 14.6 both Phi(-a) and gelu'(-a) round to 0, their values for every a beyond. */
static inline float fastdl_gelu_core_f(float x, float *a_out, float *s, float *r) {
    float a, xx, l, t, n, q, num, den;
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits &= 0x7FFFFFFFu;
    bits = bits > 0x41699999u ? 0x41699999u : bits;  /* 14.6f */
    memcpy(&a, &bits, sizeof a);
    xx = a * a;
#if defined(__FMA__)
    l = fmaf(a, a, -xx);
#else
    l = (float)((double)a * (double)a - (double)xx);  /* 48-bit product: exact */
#endif
    /* -a^2/2 = n ln2 + q: the Cody-Waite steps of fastdl_exp_reduced_f, from xx */
    t = xx * -0.72134752044448170f + FASTDL_ROUND_MAGIC;
    n = t - FASTDL_ROUND_MAGIC;
    q = (xx * -0.5f - n * 0.693145751953125f) - (n * 1.4286068202862268e-06f + 0.5f * l);
    *s = fastdl_pow2_f(t, 64);  /* n in [-154, 0] */
    num = (((2.2455275290269295e-22f * a + 2.2121842844511843e-21f) * a
            + 9.961192471905557e-21f) * a + 2.3797732575970585e-20f) * a
          + 2.710505431213761e-20f;
    den = ((((0.010383009910583496f * a + 0.10229569673538208f) * a + 0.4708341956138611f) * a
            + 1.204646110534668f) * a + 1.6758663654327393f) * a + 1.0f;
    *r = num / den;
    *a_out = a;
    return fastdl_exp_poly_f(q);
}

/* gelu(x) = x Phi(x) = relu(x) - a Phi(-a); a s is exact and p (a s) r rounds once where
 * the result is subnormal.  NaN passes through relu; +-Inf give Inf and 0. */
static inline float fastdl_gelu_f(float x) {
    float a, s, r, p = fastdl_gelu_core_f(x, &a, &s, &r);
    return (x < 0.0f ? 0.0f : x) - (p * (a * s)) * r;
}

/* gelu'(x) = Phi(x) + x phi(x); w = gelu'(-a) = Phi(-a) - a phi(a)
 * = p s (r - a 2^-64 / sqrt(2 pi)), with relative precision in the left tail, and
 * gelu'(x) = 1 - w for x >= 0 */
static inline float fastdl_gelu_d_f(float x) {
    float a, s, r, p = fastdl_gelu_core_f(x, &a, &s, &r), w, d;
    w = (p * s) * (r - a * 2.1626704969858532e-20f);
    d = x >= 0.0f ? 1.0f - w : w;
    return x == x ? d : x;  /* NaN took the clamp */
}

#endif
