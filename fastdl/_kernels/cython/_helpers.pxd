# Shared inline scalar helpers for the Cython kernels, for float32 and float64
# through the fused type ``floating``: libm wrappers (fexp, flog, ...), and each
# activation f as ``<name>_s(x)`` with its derivative f' as ``<name>_d(x)``, so
# that dense's fused pass and the activation kernels use one formula.
#
# Every function here is branch-light: library calls are unconditional and the
# branches are selects, so that gcc can vectorise the loops that call them.
# Literals in arithmetic are written <floating>1, never a bare 1: Cython emits a bare
# literal as a double, and C then computes the float32 expression in double (the
# sigmoid family did its division as vdivpd on 4 lanes, plus conversions: sigmoid
# fwd+bwd took 1.2-1.6x the time at 10M on 2 threads, 1.8-2.0x in cache).
# tests/test_cython_float32.py reads the generated C for this.
# Activation conventions (kept by every backend and the NumPy reference):
# * at a kink (x = 0) the derivative is the left one, as PyTorch:
#   relu' = 0, leaky_relu' = alpha, elu' = alpha;
# * NaN in gives NaN out, in both directions;
# * at +-Inf every function and derivative is its limit (gelu(-inf) = 0,
#   silu(-inf) = 0, gelu'(inf) = 1, ...), not the NaN of a naive x * 0.
#
# Vector libm (libmvec), opt-in per module.  glibc's <math.h> declares the
# SIMD variants of expf, erff, ... (``_ZGVbN4v_expf`` and so on) only under
# -ffast-math, which fastdl does not use (NaN must propagate).  A module that
# wants its exp/erf/tanh loops vectorised without -ffast-math defines
# FASTDL_LIBMVEC and links libm (whose linker script pulls in libmvec):
#     # distutils: define_macros = FASTDL_LIBMVEC=1
#     # distutils: libraries = m
# The block below then re-declares those functions with the GCC ``simd``
# attribute, on x86-64 glibc only.  Without the macro nothing changes, so a
# module that does not link libmvec cannot end up with unresolved vector calls.
# libmvec's functions are accurate to a few ulp and handle NaN/Inf/overflow
# through their scalar fallback.
cdef extern from *:
    """
    #if defined(FASTDL_LIBMVEC) && defined(__x86_64__) && defined(__GNUC__) \\
        && defined(__GLIBC__) && !defined(__FAST_MATH__)
    #if __GLIBC_PREREQ(2, 22)
    #define FASTDL_SIMD __attribute__((__simd__("notinbranch")))
    FASTDL_SIMD extern float expf(float);
    FASTDL_SIMD extern double exp(double);
    FASTDL_SIMD extern float logf(float);
    FASTDL_SIMD extern double log(double);
    #endif
    #if __GLIBC_PREREQ(2, 35)
    FASTDL_SIMD extern float expm1f(float);
    FASTDL_SIMD extern double expm1(double);
    FASTDL_SIMD extern float log1pf(float);
    FASTDL_SIMD extern double log1p(double);
    FASTDL_SIMD extern float tanhf(float);
    FASTDL_SIMD extern double tanh(double);
    FASTDL_SIMD extern float erff(float);
    FASTDL_SIMD extern double erf(double);
    FASTDL_SIMD extern float erfcf(float);
    FASTDL_SIMD extern double erfc(double);
    #endif
    #endif
    """

# float32 exp (x <= 0), expm1 (x <= 0), log, log1p, tanh, gelu and gelu', inline (the Numba
# backend's algorithms; why and how in _fastmath.h beside this file).
cdef extern from "_fastmath.h":
    float exp_nonpos_f "fastdl_exp_nonpos_f"(float x) noexcept nogil
    float expm1_nonpos_f "fastdl_expm1_nonpos_f"(float x) noexcept nogil
    float tanh_f "fastdl_tanh_f"(float x) noexcept nogil
    float log_f "fastdl_log_f"(float x) noexcept nogil
    float log1p_f "fastdl_log1p_f"(float x) noexcept nogil
    float gelu_f "fastdl_gelu_f"(float x) noexcept nogil
    float gelu_d_f "fastdl_gelu_d_f"(float x) noexcept nogil

from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, expm1, expm1f
from libc.math cimport tanh, tanhf, erf, erff, sqrt, sqrtf, fabs, fabsf
from libc.math cimport erfc, erfcf

# Below this many elements a kernel runs on one thread (see fastdl/_config.py).
cdef enum:
    PARALLEL_THRESHOLD = 65536

# Activation codes shared by dense_forward and the activation kernels.
cdef enum:
    ACT_NONE = 0
    ACT_RELU = 1
    ACT_LEAKY_RELU = 2
    ACT_ELU = 3
    ACT_SIGMOID = 4
    ACT_TANH = 5
    ACT_GELU = 6
    ACT_SILU = 7
    ACT_SOFTMAX = 8
    ACT_LOG_SOFTMAX = 9


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating fexp_nonpos(floating x) noexcept nogil:
    # e^x for x <= 0 or NaN (wrong above ~43); float64 keeps libm/libmvec's exp
    if floating is float:
        return exp_nonpos_f(x)
    else:
        return exp(x)


cdef inline floating fexpm1_nonpos(floating x) noexcept nogil:
    # e^x - 1 for x <= 0 or NaN; float64 keeps libm/libmvec's expm1
    if floating is float:
        return expm1_nonpos_f(x)
    else:
        return expm1(x)


cdef inline floating flog(floating x) noexcept nogil:
    if floating is float:
        return log_f(x)  # inline, not libmvec's logf call
    else:
        return log(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    if floating is float:
        return log1p_f(x)  # inline, not libmvec's log1pf call
    else:
        return log1p(x)


cdef inline floating fexpm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)


cdef inline floating ftanh(floating x) noexcept nogil:
    if floating is float:
        return tanh_f(x)  # inline, not libmvec's tanhf call
    else:
        return tanh(x)


cdef inline floating ferf(floating x) noexcept nogil:
    if floating is float:
        return erff(x)
    else:
        return erf(x)


cdef inline floating ferfc(floating x) noexcept nogil:
    if floating is float:
        return erfcf(x)
    else:
        return erfc(x)


cdef inline floating fsqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating fabs_(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating mul0(floating x, floating s) noexcept nogil:
    # x * s, but 0 where s == 0: the limit of x * s(x) at x = +-inf when s(x) -> 0
    # (Inf * 0 would be NaN); for finite x the product is 0 there anyway.
    return 0 if s == 0 else x * s


# ---- forward ------------------------------------------------------------------

cdef inline floating sigmoid_s(floating x) noexcept nogil:
    # e = exp(-|x|) never overflows; 1 / (1 + e) or e / (1 + e), the numerator selected
    # before the one division (each side accurate, no 1 - s, one rounding; selecting
    # after it, r or e r, put a multiply on the critical path: 8% slower in a C model)
    cdef floating e = fexp_nonpos(-fabs_(x))
    return (<floating>1 if x >= 0 else e) / (<floating>1 + e)


cdef inline floating softplus_s(floating x) noexcept nogil:
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), finite for every finite x
    return (x if x > 0 else 0) + flog1p(fexp_nonpos(-fabs_(x)))


cdef inline floating bce_logits_s(floating z, floating y) noexcept nogil:
    # softplus(z) - z y as (max(z, 0) - z y) + log1p(e^-|z|): the first part is exact
    # for y in {0, 1}, so a confident right prediction keeps its tiny loss (softplus(z)
    # - z y cancelled to 0 for z = 20, y = 1, where the loss is 2e-9)
    return ((z if z > 0 else 0) - z * y) + flog1p(fexp_nonpos(-fabs_(z)))


cdef inline floating bce_logits_d(floating z, floating y) noexcept nogil:
    # sigmoid(z) - y, as (1 - y) - sigmoid(-z) for z >= 0 and sigmoid(z) - y below, with
    # sigmoid(-|z|) = e / (1 + e), e = exp(-|z|): exact in the part that cancels, so a
    # confident right prediction keeps its tiny gradient (sigmoid(z) - 1 rounded to 0
    # from z = 17 in float32, where the gradient is -4e-8, as PyTorch's does)
    cdef floating e = fexp_nonpos(-fabs_(z))
    cdef floating s = e / (<floating>1 + e)
    return ((<floating>1 - y) - s) if z >= 0 else (s - y)


cdef inline floating relu_s(floating x) noexcept nogil:
    # x < 0 ? 0 : x lets NaN through (NaN < 0 is false), as np.maximum does
    return 0 if x < 0 else x


cdef inline floating leaky_relu_s(floating x, floating alpha) noexcept nogil:
    # x for x >= 0, alpha x below (= max(alpha x, x) when 0 <= alpha <= 1)
    return alpha * x if x < 0 else x


cdef inline floating elu_s(floating x, floating alpha) noexcept nogil:
    # expm1 of min(x, 0) (NaN kept): never overflows, and is computed on every lane
    # and selected rather than under a branch, so that the loop stays a vector map
    cdef floating xm = 0 if x > 0 else x
    cdef floating e = fexpm1_nonpos(xm)
    return x if x > 0 else alpha * e


cdef inline double ndtr64(double x) noexcept nogil:
    # Phi(x), the standard normal CDF, as erfc(-x / sqrt 2) / 2: (1 + erf(x / sqrt 2)) / 2
    # cancels in the left tail (float32 gelu(-5) would be off by 5%)
    return 0.5 * ferfc(x * -0.7071067811865476)


cdef inline floating gelu_s(floating x) noexcept nogil:
    # x Phi(x).  float32: _fastmath.h's fastdl_gelu_f; float64: at x = -inf Phi = 0 and
    # the limit 0 is returned
    if floating is float:
        return gelu_f(x)
    else:
        return mul0(x, ndtr64(x))


cdef inline floating silu_s(floating x) noexcept nogil:
    # x sigmoid(x); at x = -inf sigmoid = 0 and the limit 0 is returned
    return mul0(x, sigmoid_s(x))


cdef inline floating activate_s(floating x, int act, floating alpha) noexcept nogil:
    """Elementwise activation by code (ACT_*); softmax codes are not elementwise."""
    if act == ACT_RELU:
        return relu_s(x)
    elif act == ACT_LEAKY_RELU:
        return leaky_relu_s(x, alpha)
    elif act == ACT_ELU:
        return elu_s(x, alpha)
    elif act == ACT_SIGMOID:
        return sigmoid_s(x)
    elif act == ACT_TANH:
        return ftanh(x)
    elif act == ACT_GELU:
        return gelu_s(x)
    elif act == ACT_SILU:
        return silu_s(x)
    return x


# ---- derivatives f'(x) ----------------------------------------------------------

cdef inline floating sigmoid_d(floating x) noexcept nogil:
    # s(x) (1 - s(x)) = s(x) s(-x) = e / (1 + e)^2 with e = exp(-|x|): symmetric,
    # no 1 - s cancellation, 0 at +-inf
    cdef floating e = fexp_nonpos(-fabs_(x))
    cdef floating d = <floating>1 + e
    return e / (d * d)


cdef inline floating tanh_d(floating x) noexcept nogil:
    # 1 - tanh^2 = sech^2 x = 4 e / (1 + e)^2 with e = exp(-2|x|): one exp (cheaper
    # than tanh) and full relative precision where 1 - t^2 would round to 0
    cdef floating e = fexp_nonpos(<floating>-2 * fabs_(x))
    cdef floating r = <floating>1 / (<floating>1 + e)
    return <floating>4 * e * r * r


cdef inline floating relu_d(floating x) noexcept nogil:
    # 1 for x > 0, 0 for x <= 0, NaN for NaN
    return 1 if x > 0 else (0 if x <= 0 else x)


cdef inline floating leaky_relu_d(floating x, floating alpha) noexcept nogil:
    # 1 for x > 0, alpha for x <= 0, NaN for NaN
    return 1 if x > 0 else (alpha if x <= 0 else x)


cdef inline floating elu_d(floating x, floating alpha) noexcept nogil:
    # 1 for x > 0, alpha e^x for x <= 0 (NaN kept by the exp)
    cdef floating xm = 0 if x > 0 else x
    cdef floating e = fexp_nonpos(xm)
    return 1 if x > 0 else alpha * e


cdef inline floating gelu_d(floating x) noexcept nogil:
    # Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi); x phi -> 0 at +-inf.
    # float32: _fastmath.h's fastdl_gelu_d_f
    cdef floating g
    if floating is float:
        return gelu_d_f(x)
    else:
        g = fexp_nonpos(<floating>-0.5 * x * x)
        return ndtr64(x) + mul0(x, <floating>0.3989422804014327 * g)


cdef inline floating silu_d(floating x) noexcept nogil:
    # s(x) + x s(x) s(-x), with s(x) s(-x) = e / (1 + e)^2 as in sigmoid_d (one exp)
    cdef floating e = fexp_nonpos(-fabs_(x))
    cdef floating r = <floating>1 / (<floating>1 + e)
    cdef floating s = r if x >= 0 else e * r
    return s + mul0(x, e * r * r)


cdef inline floating derivative_s(floating x, int act, floating alpha) noexcept nogil:
    """f'(x) of the elementwise activation with code ``act`` (ACT_*)."""
    if act == ACT_RELU:
        return relu_d(x)
    elif act == ACT_LEAKY_RELU:
        return leaky_relu_d(x, alpha)
    elif act == ACT_ELU:
        return elu_d(x, alpha)
    elif act == ACT_SIGMOID:
        return sigmoid_d(x)
    elif act == ACT_TANH:
        return tanh_d(x)
    elif act == ACT_GELU:
        return gelu_d(x)
    elif act == ACT_SILU:
        return silu_d(x)
    return 1
