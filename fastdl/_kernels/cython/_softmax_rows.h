/* The softmax cross-entropy row passes of the Cython backend (losses.pyx): row max,
   exp(z - max) into dlogits, sums and dot products, rescaling; why they are C and
   not Cython loops is in losses.pyx's docstring. */
#ifndef FASTDL_SOFTMAX_ROWS_H
#define FASTDL_SOFTMAX_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* In a generic build, each row function is compiled for AVX-512, AVX2+FMA and
   baseline x86-64, and the dynamic loader picks one for the CPU (ifunc).  A build
   for the machine's own instruction set (FASTDL_NATIVE=1) needs no clones, and gcc 12
   crashed compiling them under -march=native.  Other compilers and platforms get the
   baseline code only. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 \
    && defined(__x86_64__) && defined(__linux__) && !defined(__AVX2__)
#define FDL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FDL_CLONES
#endif

/* exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 with ln 2 split in two
   (Cody-Waite), exp(r) by a polynomial on |r| <= ln(2)/2.  k is read from the bits
   of x log2(e) + 1.5 2^m (no float-to-int conversion, no rint call); 2^k is applied
   as two factors, so that an overflowing result becomes inf and a subnormal one is
   rounded once, by the last product.  Branch-free (selects only), so that loops
   calling it vectorise.  nan stays nan, -inf gives 0, +inf gives inf.  Max error
   over dense sweeps of the whole range: about 1 ulp (float32 and float64). */
static inline float fdl_expf(float x) {
    const float shift = 12582912.0f;            /* 1.5 * 2^23, bits 0x4B400000 */
    float xc = x > 88.8f ? 88.8f : x;           /* nan passes both clamps */
    xc = xc < -104.0f ? -104.0f : xc;
    float t = xc * 1.44269504088896341f + shift;
    float kf = t - shift;
    float r = (xc - kf * 0.693359375f) - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;                 /* Cephes expf, about 1 ulp */
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    int32_t k = (int32_t)(tb - 0x4B400000u);
    int32_t k1 = k >> 1, k2 = k - k1;
    uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float res = p * s1 * s2;
    return xc == xc ? res : x;                  /* for nan, k is meaningless */
}

static inline double fdl_exp(double x) {
    const double shift = 6755399441055744.0;    /* 1.5 * 2^52, bits 0x4338000000000000 */
    double xc = x > 709.8 ? 709.8 : x;
    xc = xc < -746.0 ? -746.0 : xc;
    double t = xc * 1.4426950408889634 + shift;
    double kf = t - shift;
    /* fdlibm's split of ln 2: kf * hi is exact for |k| < 2^11 */
    double r = (xc - kf * 6.93147180369123816490e-01) - kf * 1.90821492927058770002e-10;
    /* Taylor series to r^13: truncation below 1e-17 relative for |r| <= 0.347 */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * (r * r) + r + 1.0;
    uint64_t tb;
    memcpy(&tb, &t, sizeof tb);
    int64_t k = (int64_t)(tb - 0x4338000000000000ull);
    int64_t k1 = k >> 1, k2 = k - k1;
    uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    double res = p * s1 * s2;
    return xc == xc ? res : x;
}

/* Row reductions on 16-byte GCC vectors (4 floats or 2 doubles: native on every
   x86-64; gcc scalarises wider generic vectors badly), four independent
   accumulators to hide the add/compare latency.  The partial results are combined
   in a fixed order, so every clone gives the same bits.  Unaligned loads go
   through may_alias types of element alignment, as GCC's intrinsics headers do. */
typedef float fdl_vf __attribute__((vector_size(16), __may_alias__, aligned(4)));
typedef int32_t fdl_vfi __attribute__((vector_size(16)));
typedef double fdl_vd __attribute__((vector_size(16), __may_alias__, aligned(8)));
typedef int64_t fdl_vdi __attribute__((vector_size(16)));
#define FDL_LD(VT, p) (*(const VT *)(p))
#define FDL_VMAX(VT, VI, a, b) ((VT)((((VI)(a)) & ((a) > (b))) | (((VI)(b)) & ~((a) > (b)))))

/* max of z[0:c], c >= 1, as lanes of running maxima (v > m ? v : m).  A nan is
   skipped, as by a scalar loop; it reaches its row through exp(nan - max). */
#define FDL_ROW_MAX(NAME, T, VT, VI, L)                                            \
FDL_CLONES static T NAME(const T *z, ptrdiff_t c) {                               \
    ptrdiff_t j = 1;                                                              \
    T m = z[0];                                                                   \
    if (c >= 8 * L) {                                                             \
        VT m0 = FDL_LD(VT, z), m1 = FDL_LD(VT, z + L);                            \
        VT m2 = FDL_LD(VT, z + 2 * L), m3 = FDL_LD(VT, z + 3 * L);                \
        for (j = 4 * L; j + 4 * L <= c; j += 4 * L) {                             \
            m0 = FDL_VMAX(VT, VI, FDL_LD(VT, z + j), m0);                         \
            m1 = FDL_VMAX(VT, VI, FDL_LD(VT, z + j + L), m1);                     \
            m2 = FDL_VMAX(VT, VI, FDL_LD(VT, z + j + 2 * L), m2);                 \
            m3 = FDL_VMAX(VT, VI, FDL_LD(VT, z + j + 3 * L), m3);                 \
        }                                                                         \
        m0 = FDL_VMAX(VT, VI, m1, m0);                                            \
        m2 = FDL_VMAX(VT, VI, m3, m2);                                            \
        m0 = FDL_VMAX(VT, VI, m2, m0);                                            \
        for (int k = 0; k < L; k++) m = m0[k] > m ? m0[k] : m;                    \
    }                                                                             \
    for (; j < c; j++) m = z[j] > m ? z[j] : m;                                   \
    return m;                                                                     \
}

/* d[j] = exp(z[j] - mx); no reduction in this loop, so it vectorises */
#define FDL_EXP_SHIFT(NAME, T, EXP)                                                \
FDL_CLONES static void NAME(const T *z, T mx, T *d, ptrdiff_t c) {                \
    for (ptrdiff_t j = 0; j < c; j++) d[j] = EXP(z[j] - mx);                      \
}

/* The row sums and dots go FDL_BLOCK elements at a time: each block on the vector
   accumulators (a float32 lane adds at most FDL_BLOCK / 16 terms), the block totals in
   double.  One float32 running sum per lane over the whole row drifted with its length:
   a 2^20-class softmax was off by 1e-3 relative, a 2^26-class one by 12% (NumPy's
   pairwise sum: 6e-8). */
#define FDL_BLOCK 256

/* sum of e[0:c] */
#define FDL_ROW_SUM(NAME, T, VT, L)                                                \
FDL_CLONES static T NAME(const T *e, ptrdiff_t c) {                               \
    double total = 0;                                                             \
    ptrdiff_t j = 0;                                                              \
    while (c - j >= 4 * L) {                                                      \
        ptrdiff_t end = c - j > FDL_BLOCK ? j + FDL_BLOCK : c;                    \
        VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                \
        for (; j + 4 * L <= end; j += 4 * L) {                                    \
            a0 += FDL_LD(VT, e + j);                                              \
            a1 += FDL_LD(VT, e + j + L);                                          \
            a2 += FDL_LD(VT, e + j + 2 * L);                                      \
            a3 += FDL_LD(VT, e + j + 3 * L);                                      \
        }                                                                         \
        a0 = (a0 + a1) + (a2 + a3);                                               \
        T b = 0;                                                                  \
        for (int k = 0; k < L; k++) b += a0[k];                                   \
        total += b;                                                               \
    }                                                                             \
    T s = 0;                                                                      \
    for (; j < c; j++) s += e[j];                                                 \
    return (T)(total + s);                                                        \
}

/* sum_j w[j] (z[j] - mx), a zero weight contributing 0 even against z = -inf */
#define FDL_WDOT_STEP(VT, VI, acc, o)                                              \
    {                                                                             \
        VT vw = FDL_LD(VT, w + j + (o)), u = FDL_LD(VT, z + j + (o)) - vmx;       \
        acc += vw * (VT)((VI)u & (vw != zero));                                   \
    }
#define FDL_ROW_WDOT(NAME, T, VT, VI, L)                                           \
FDL_CLONES static T NAME(const T *w, const T *z, T mx, ptrdiff_t c) {             \
    VT zero = {0};                                                                \
    VT vmx = zero + mx;                                                           \
    double total = 0;                                                             \
    ptrdiff_t j = 0;                                                              \
    while (c - j >= 4 * L) {                                                      \
        ptrdiff_t end = c - j > FDL_BLOCK ? j + FDL_BLOCK : c;                    \
        VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                \
        for (; j + 4 * L <= end; j += 4 * L) {                                    \
            FDL_WDOT_STEP(VT, VI, a0, 0)                                          \
            FDL_WDOT_STEP(VT, VI, a1, L)                                          \
            FDL_WDOT_STEP(VT, VI, a2, 2 * L)                                      \
            FDL_WDOT_STEP(VT, VI, a3, 3 * L)                                      \
        }                                                                         \
        a0 = (a0 + a1) + (a2 + a3);                                               \
        T b = 0;                                                                  \
        for (int k = 0; k < L; k++) b += a0[k];                                   \
        total += b;                                                               \
    }                                                                             \
    T s = 0;                                                                      \
    for (; j < c; j++) s += w[j] != 0 ? w[j] * (z[j] - mx) : 0;                   \
    return (T)(total + s);                                                        \
}

/* probability targets: a[j] = w[j] (om t[j] + ec) (om = 1 - eps, ec = eps / C);
   returns sum_j a[j] (z[j] - mx) (0 where a[j] = 0) and sum_j a[j] in *a_sum */
#define FDL_PROBS_STEP(VT, VI, acc, asum, o)                                       \
    {                                                                             \
        VT a = FDL_LD(VT, w + j + (o)) * (vom * FDL_LD(VT, t + j + (o)) + vec);   \
        VT u = FDL_LD(VT, z + j + (o)) - vmx;                                     \
        asum += a;                                                                \
        acc += a * (VT)((VI)u & (a != zero));                                     \
    }
#define FDL_PROBS_DOT(NAME, T, VT, VI, L)                                          \
FDL_CLONES static T NAME(const T *w, const T *t, const T *z, T mx, T om, T ec,    \
                         ptrdiff_t c, T *a_sum) {                                 \
    VT zero = {0};                                                                \
    VT vmx = zero + mx, vom = zero + om, vec = zero + ec;                         \
    double total = 0, total_a = 0;                                                \
    ptrdiff_t j = 0;                                                              \
    while (c - j >= 2 * L) {                                                      \
        ptrdiff_t end = c - j > FDL_BLOCK ? j + FDL_BLOCK : c;                    \
        VT a0 = {0}, a1 = {0}, s0 = {0}, s1 = {0};                                \
        for (; j + 2 * L <= end; j += 2 * L) {                                    \
            FDL_PROBS_STEP(VT, VI, a0, s0, 0)                                     \
            FDL_PROBS_STEP(VT, VI, a1, s1, L)                                     \
        }                                                                         \
        a0 += a1;                                                                 \
        s0 += s1;                                                                 \
        T b = 0, ba = 0;                                                          \
        for (int k = 0; k < L; k++) {                                             \
            b += a0[k];                                                           \
            ba += s0[k];                                                          \
        }                                                                         \
        total += b;                                                               \
        total_a += ba;                                                            \
    }                                                                             \
    T s = 0, sa = 0;                                                              \
    for (; j < c; j++) {                                                          \
        T a = w[j] * (om * t[j] + ec);                                            \
        sa += a;                                                                  \
        s += a != 0 ? a * (z[j] - mx) : 0;                                        \
    }                                                                             \
    *a_sum = (T)(total_a + sa);                                                   \
    return (T)(total + s);                                                        \
}

/* the gradient, in place over d = exp(z - mx) */
#define FDL_SCALE(NAME, T)                                                         \
FDL_CLONES static void NAME(T *d, T k, ptrdiff_t c) {                             \
    for (ptrdiff_t j = 0; j < c; j++) d[j] = d[j] * k;                            \
}
#define FDL_SCALE_SUB(NAME, T)                                                     \
FDL_CLONES static void NAME(T *d, T k, T ks, const T *w, ptrdiff_t c) {           \
    for (ptrdiff_t j = 0; j < c; j++) d[j] = d[j] * k - ks * w[j];                \
}
#define FDL_SCALE_PROBS(NAME, T)                                                   \
FDL_CLONES static void NAME(T *d, T k, T ks, T kc, const T *w, const T *t,        \
                            ptrdiff_t c) {                                        \
    for (ptrdiff_t j = 0; j < c; j++) d[j] = d[j] * k - w[j] * (ks * t[j] + kc);  \
}

FDL_ROW_MAX(fdl_row_max_f, float, fdl_vf, fdl_vfi, 4)
FDL_ROW_MAX(fdl_row_max_d, double, fdl_vd, fdl_vdi, 2)
FDL_EXP_SHIFT(fdl_exp_shift_f, float, fdl_expf)
FDL_EXP_SHIFT(fdl_exp_shift_d, double, fdl_exp)
FDL_ROW_SUM(fdl_row_sum_f, float, fdl_vf, 4)
FDL_ROW_SUM(fdl_row_sum_d, double, fdl_vd, 2)
FDL_ROW_WDOT(fdl_row_wdot_f, float, fdl_vf, fdl_vfi, 4)
FDL_ROW_WDOT(fdl_row_wdot_d, double, fdl_vd, fdl_vdi, 2)
FDL_PROBS_DOT(fdl_probs_dot_f, float, fdl_vf, fdl_vfi, 4)
FDL_PROBS_DOT(fdl_probs_dot_d, double, fdl_vd, fdl_vdi, 2)
FDL_SCALE(fdl_scale_f, float)
FDL_SCALE(fdl_scale_d, double)
FDL_SCALE_SUB(fdl_scale_sub_f, float)
FDL_SCALE_SUB(fdl_scale_sub_d, double)
FDL_SCALE_PROBS(fdl_scale_probs_f, float)
FDL_SCALE_PROBS(fdl_scale_probs_d, double)

#endif
