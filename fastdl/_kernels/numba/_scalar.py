"""Scalar activation helpers shared by the Numba kernels (dense's fused output
pass and the activation kernels): each activation ``f`` as ``<name>_s(x)`` and
its derivative ``f'`` as ``<name>_d(x)``, so that one formula serves every kernel.

Every literal goes through ``const(x, c)``, which is ``c`` in the float type of
``x``: a bare Python literal is float64 in Numba and would silently promote
float32 arithmetic to float64 (half the vector width, and conversions).

Conventions, kept in every backend (and by the NumPy reference):
* The library calls (exp, expm1, tanh, gelu) are unconditional and the branches
  are selects, so that the loops calling them stay vectorisable once the
  calls are.
* At a kink (x = 0) the derivative is the left one, as PyTorch: relu' = 0,
  leaky_relu' = alpha, elu' = alpha.
* NaN in gives NaN out, in both directions (a derivative at NaN is NaN).
* At +-Inf every function and derivative is its limit (gelu(-inf) = 0,
  silu(-inf) = 0, gelu'(inf) = 1, ...), not the NaN that a naive
  ``x * 0`` would give: ``mul0(x, s)`` is ``x * s`` but 0 where ``s == 0``.
"""
import numpy as np
from numba import types
from numba.extending import overload

from fastdl._kernels.numba._jit import inline
from fastdl._kernels.numba._math import exp_nonpos, expm1_nonpos, log1p, tanh
from fastdl._kernels.numba._math import gelu as _math_gelu, gelu_d as _math_gelu_d

ACT_NONE, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU = 0, 1, 2, 3
ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_SILU = 4, 5, 6, 7
ACT_SOFTMAX, ACT_LOG_SOFTMAX = 8, 9

# activation name -> code (the elementwise ones; dense adds None and the softmaxes)
ACT_CODES = {"relu": ACT_RELU, "leaky_relu": ACT_LEAKY_RELU, "elu": ACT_ELU,
             "sigmoid": ACT_SIGMOID, "tanh": ACT_TANH, "gelu": ACT_GELU, "silu": ACT_SILU}


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
def mul0(x, s):
    # x * s, but 0 where s == 0: the limit of x * s(x) at x = +-inf when s(x) -> 0
    # (Inf * 0 would be NaN); for finite x the product is 0 there anyway.
    return const(x, 0.0) if s == const(s, 0.0) else x * s


# ---- forward ----------------------------------------------------------------

@inline
def sigmoid_s(x):
    # exp(-|x|) never overflows; 1 / (1 + e) or e / (1 + e), the numerator chosen
    # before the one division (no 1 - s, which loses all precision for large negative x)
    e = exp_nonpos(-abs(x))
    return (const(x, 1.0) if x >= const(x, 0.0) else e) / (const(x, 1.0) + e)


@inline
def softplus_s(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), finite for every finite x
    return (x if x > const(x, 0.0) else const(x, 0.0)) + log1p(exp_nonpos(-abs(x)))


@inline
def bce_logits_s(z, y):
    # softplus(z) - z y as (max(z, 0) - z y) + log1p(e^-|z|): the first part is exact
    # for y in {0, 1}, so a confident right prediction keeps its tiny loss (softplus(z)
    # - z y cancelled to 0 for z = 20, y = 1, where the loss is 2e-9)
    return ((z if z > const(z, 0.0) else const(z, 0.0)) - z * y) + \
        log1p(exp_nonpos(-abs(z)))


@inline
def bce_logits_d(z, y):
    # sigmoid(z) - y, as (1 - y) - sigmoid(-z) for z >= 0 and sigmoid(z) - y below, with
    # sigmoid(-|z|) = e / (1 + e), e = exp(-|z|): exact in the part that cancels, so a
    # confident right prediction keeps its tiny gradient (sigmoid(z) - 1 rounded to 0
    # from z = 17 in float32, where the gradient is -4e-8, as PyTorch's does)
    e = exp_nonpos(-abs(z))
    s = e / (const(z, 1.0) + e)
    return ((const(z, 1.0) - y) - s) if z >= const(z, 0.0) else (s - y)


@inline
def relu_s(x):
    # x < 0 ? 0 : x lets NaN through, as np.maximum does
    return const(x, 0.0) if x < const(x, 0.0) else x


@inline
def leaky_relu_s(x, alpha):
    # x for x >= 0, alpha x below (= max(alpha x, x) when 0 <= alpha <= 1)
    return alpha * x if x < const(x, 0.0) else x


@inline
def elu_s(x, alpha):
    # expm1 of min(x, 0) (NaN kept): never overflows, and is called on every
    # lane instead of under a branch
    xm = const(x, 0.0) if x > const(x, 0.0) else x
    e = expm1_nonpos(xm)
    return x if x > const(x, 0.0) else alpha * e


@inline
def gelu_s(x):
    # x Phi(x), Phi from erfc in the left tail, where 1/2 (1 + erf(x / sqrt 2)) cancels
    # (float32: 4% error at x = -5, 0 from -5.9 on); gelu(-inf) = 0 (see _math.gelu)
    return _math_gelu(x)


@inline
def silu_s(x):
    # x sigmoid(x); at x = -inf sigmoid = 0 and the limit 0 is returned
    return mul0(x, sigmoid_s(x))


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


# ---- derivatives f'(x) ---------------------------------------------------------

@inline
def sigmoid_d(x):
    # s(x) (1 - s(x)) = s(x) s(-x) = e / (1 + e)^2 with e = exp(-|x|): symmetric in x,
    # no 1 - s cancellation, 0 at +-inf
    e = exp_nonpos(-abs(x))
    d = const(x, 1.0) + e
    return e / (d * d)


@inline
def tanh_d(x):
    # 1 - tanh^2 = sech^2 x = 4 e / (1 + e)^2 with e = exp(-2|x|): one exp (cheaper
    # than tanh) and full relative precision where 1 - t^2 would round to 0
    e = exp_nonpos(const(x, -2.0) * abs(x))
    d = const(x, 1.0) + e
    return const(x, 4.0) * e / (d * d)


@inline
def relu_d(x):
    # 1 for x > 0, 0 for x <= 0, NaN for NaN
    return const(x, 1.0) if x > const(x, 0.0) else (const(x, 0.0) if x <= const(x, 0.0) else x)


@inline
def leaky_relu_d(x, alpha):
    # 1 for x > 0, alpha for x <= 0, NaN for NaN
    return const(x, 1.0) if x > const(x, 0.0) else (alpha if x <= const(x, 0.0) else x)


@inline
def elu_d(x, alpha):
    # 1 for x > 0, alpha e^x for x <= 0 (NaN kept by the exp)
    xm = const(x, 0.0) if x > const(x, 0.0) else x
    e = exp_nonpos(xm)
    return const(x, 1.0) if x > const(x, 0.0) else alpha * e


@inline
def gelu_d(x):
    # Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi); x phi -> 0 at +-inf
    return _math_gelu_d(x)


@inline
def silu_d(x):
    # s(x) + x s(x) s(-x), with s(x) s(-x) = e / (1 + e)^2 as in sigmoid_d (one exp)
    e = exp_nonpos(-abs(x))
    r = const(x, 1.0) / (const(x, 1.0) + e)
    s = r if x >= const(x, 0.0) else e * r
    return s + mul0(x, e * r * r)


@inline
def derivative_s(x, act, alpha):
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
    return const(x, 1.0)
