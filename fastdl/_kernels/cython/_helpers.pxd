# Shared inline scalar helpers for the Cython kernels, for float32 and float64
# through the fused type ``floating``.  Every function here is branch-light so
# that gcc can vectorise the loops that call it (with -fno-math-errno the libm
# calls become libmvec vector calls).
from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, expm1, expm1f
from libc.math cimport tanh, tanhf, erf, erff, sqrt, sqrtf, fabs, fabsf

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


cdef inline floating flog(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating fexpm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)


cdef inline floating ftanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating ferf(floating x) noexcept nogil:
    if floating is float:
        return erff(x)
    else:
        return erf(x)


cdef inline floating fabs_(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating sigmoid_s(floating x) noexcept nogil:
    # e = exp(-|x|) never overflows; both branches are computed and one selected,
    # which keeps the loop vectorisable and each side accurate (no 1 - s).
    cdef floating e = fexp(-fabs_(x))
    cdef floating r = 1 / (1 + e)
    return r if x >= 0 else e * r


cdef inline floating softplus_s(floating x) noexcept nogil:
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), finite for every finite x
    return (x if x > 0 else 0) + flog1p(fexp(-fabs_(x)))


cdef inline floating relu_s(floating x) noexcept nogil:
    # x > 0 ? x : 0 keeps NaN as NaN? No: NaN > 0 is false -> 0. Use x < 0 instead
    # so that NaN propagates as IEEE max would in NumPy (np.maximum returns NaN).
    return 0 if x < 0 else x


cdef inline floating leaky_relu_s(floating x, floating alpha) noexcept nogil:
    return alpha * x if x < 0 else x


cdef inline floating elu_s(floating x, floating alpha) noexcept nogil:
    return alpha * fexpm1(x) if x < 0 else x


cdef inline floating gelu_s(floating x) noexcept nogil:
    # exact form: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
    return <floating>0.5 * x * (1 + ferf(x * <floating>0.7071067811865476))


cdef inline floating silu_s(floating x) noexcept nogil:
    return x * sigmoid_s(x)


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
