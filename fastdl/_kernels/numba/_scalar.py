"""Scalar activation helpers shared by the Numba kernels (dense's fused output
pass and the activation kernels).

Every literal goes through ``const(x, c)``, which is ``c`` in the float type of
``x``: a bare Python literal is float64 in Numba and would silently promote
float32 arithmetic to float64 (half the vector width, and conversions)."""
import numpy as np
from numba import types
from numba.extending import overload

from fastdl._kernels.numba._jit import inline
from fastdl._kernels.numba._math import erf, exp, expm1, log1p, tanh

ACT_NONE, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU = 0, 1, 2, 3
ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_SILU = 4, 5, 6, 7
ACT_SOFTMAX, ACT_LOG_SOFTMAX = 8, 9


def const(x, c):
    """The Python fallback of ``const``: ``c`` in the type of ``x``."""
    return type(x)(c)


@overload(const, inline="always")
def _const_overload(x, c):
    # Resolved at compile time: a float32 x gets a float32 constant, so float32
    # arithmetic is never silently promoted to float64 by a Python literal.
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x, c: np.float32(c)
    return lambda x, c: np.float64(c)


@inline
def sigmoid_s(x):
    # exp(-|x|) never overflows; both sides computed and one selected (no 1 - s,
    # which loses all precision for large negative x).
    e = exp(-abs(x))
    r = const(x, 1.0) / (const(x, 1.0) + e)
    return r if x >= 0 else e * r


@inline
def softplus_s(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), finite for every finite x
    return (x if x > 0 else const(x, 0.0)) + log1p(exp(-abs(x)))


@inline
def relu_s(x):
    # x < 0 ? 0 : x lets NaN through, as np.maximum does
    return const(x, 0.0) if x < 0 else x


@inline
def leaky_relu_s(x, alpha):
    return alpha * x if x < 0 else x


@inline
def elu_s(x, alpha):
    return alpha * expm1(x) if x < 0 else x


@inline
def gelu_s(x):
    # exact form: 0.5 x (1 + erf(x / sqrt(2)))
    return const(x, 0.5) * x * (const(x, 1.0) + erf(x * const(x, 0.7071067811865476)))


@inline
def silu_s(x):
    return x * sigmoid_s(x)


@inline
def activate_s(x, act, alpha):
    """Elementwise activation by code (ACT_*); the softmax codes are rowwise, not here."""
    if act == ACT_RELU:
        return relu_s(x)
    elif act == ACT_LEAKY_RELU:
        return leaky_relu_s(x, alpha)
    elif act == ACT_ELU:
        return elu_s(x, alpha)
    elif act == ACT_SIGMOID:
        return sigmoid_s(x)
    elif act == ACT_TANH:
        return tanh(x)
    elif act == ACT_GELU:
        return gelu_s(x)
    elif act == ACT_SILU:
        return silu_s(x)
    return x
