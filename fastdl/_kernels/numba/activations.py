"""Elementwise activations, Numba backend.

Every kernel takes flat (n,) C-contiguous arrays of one float dtype (the public
wrapper ravels): the forward kernels ``name(x, out[, alpha])`` write
out[i] = f(x[i]), the backward kernels ``name_backward(dy, x, dx[, alpha])`` write
dx[i] = dy[i] * f'(x[i]).  ``out`` may be ``x`` and ``dx`` may be ``dy`` or ``x``
(each element is read before it is written).  The formulas are the scalar helpers
of ``_scalar.py`` (shared with dense's fused pass).

One pass over memory per call.  All seven activations share one forward and one
backward loop body, with the branch on the activation code taken once, outside
the loops, so that each loop is a plain map that LLVM vectorises (the math of
``_math.py`` has no calls or branches).  Above PARALLEL_THRESHOLD elements a
parallel driver hands CHUNK-element slices of the arrays to the same serial
kernel, one call per chunk, as the Cython backend does: the heavy loop bodies
are compiled once per signature and the parallel drivers stay small.

``jit_pair`` is not used: it compiles its serial and parallel twins from one
function, and Numba's cache keys on the function and the signature, not on
``parallel=True``, so whichever twin compiles first is loaded from the cache by
the other one (measured: the "parallel" twin ran the serial code).  Here the
serial kernel and the parallel driver are different functions.
"""
from numba import prange

from fastdl._kernels.numba._jit import inline, jit, pick
# imported under another name: the public kernel ``tanh`` below takes the module name
from fastdl._kernels.numba._math import tanh as tanh_s
from fastdl._kernels.numba._scalar import (
    ACT_ELU, ACT_GELU, ACT_LEAKY_RELU, ACT_RELU, ACT_SIGMOID, ACT_SILU, ACT_TANH,
    elu_d, elu_s, gelu_d, gelu_s, leaky_relu_d, leaky_relu_s, relu_d, relu_s,
    sigmoid_d, sigmoid_s, silu_d, silu_s, tanh_d)

# elements per parallel chunk (as the Cython backend): a call per chunk costs nothing
CHUNK = 32768


@inline
def _forward_body(x, out, act, alpha):
    # x, out (n,): out = f(x)
    n = x.shape[0]
    if act == ACT_RELU:
        for i in range(n):
            out[i] = relu_s(x[i])
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            out[i] = leaky_relu_s(x[i], alpha)
    elif act == ACT_ELU:
        for i in range(n):
            out[i] = elu_s(x[i], alpha)
    elif act == ACT_SIGMOID:
        for i in range(n):
            out[i] = sigmoid_s(x[i])
    elif act == ACT_TANH:
        for i in range(n):
            out[i] = tanh_s(x[i])
    elif act == ACT_GELU:
        for i in range(n):
            out[i] = gelu_s(x[i])
    elif act == ACT_SILU:
        for i in range(n):
            out[i] = silu_s(x[i])


@inline
def _backward_body(dy, x, dx, act, alpha):
    # dy, x, dx (n,): dx = dy * f'(x)
    n = x.shape[0]
    if act == ACT_RELU:
        for i in range(n):
            dx[i] = dy[i] * relu_d(x[i])
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            dx[i] = dy[i] * leaky_relu_d(x[i], alpha)
    elif act == ACT_ELU:
        for i in range(n):
            dx[i] = dy[i] * elu_d(x[i], alpha)
    elif act == ACT_SIGMOID:
        for i in range(n):
            dx[i] = dy[i] * sigmoid_d(x[i])
    elif act == ACT_TANH:
        for i in range(n):
            dx[i] = dy[i] * tanh_d(x[i])
    elif act == ACT_GELU:
        for i in range(n):
            dx[i] = dy[i] * gelu_d(x[i])
    elif act == ACT_SILU:
        for i in range(n):
            dx[i] = dy[i] * silu_d(x[i])


# In place (out is x, dx is dy or x) the body is given the output array in both
# places, so LLVM sees one pointer and vectorises directly.  Given two arrays, it
# guards the vector loop with a runtime overlap check, which an exact alias fails:
# the scalar fallback loop then runs, 4-16x slower here.  (The output array, not
# the input, is passed twice: the input may be typed read-only.)

@jit
def _forward(x, out, act, alpha):
    if x.ctypes.data == out.ctypes.data:
        _forward_body(out, out, act, alpha)
    else:
        _forward_body(x, out, act, alpha)


@jit
def _backward(dy, x, dx, act, alpha):
    if dx.ctypes.data == dy.ctypes.data:
        _backward_body(dx, x, dx, act, alpha)
    elif dx.ctypes.data == x.ctypes.data:
        _backward_body(dy, dx, dx, act, alpha)
    else:
        _backward_body(dy, x, dx, act, alpha)


@jit(parallel=True)
def _forward_chunks(x, out, act, alpha):
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(lo + CHUNK, n)
        _forward(x[lo:hi], out[lo:hi], act, alpha)


@jit(parallel=True)
def _backward_chunks(dy, x, dx, act, alpha):
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(lo + CHUNK, n)
        _backward(dy[lo:hi], x[lo:hi], dx[lo:hi], act, alpha)


_forward_k = (_forward, _forward_chunks)
_backward_k = (_backward, _backward_chunks)


def _fwd(x, out, act, alpha=0.0):
    # alpha in the data's dtype, so that float32 kernels stay float32
    pick(_forward_k, x.shape[0])(x, out, act, x.dtype.type(alpha))


def _bwd(dy, x, dx, act, alpha=0.0):
    pick(_backward_k, x.shape[0])(dy, x, dx, act, x.dtype.type(alpha))


def relu(x, out):
    """out = max(x, 0)   x, out (n,)"""
    _fwd(x, out, ACT_RELU)


def relu_backward(dy, x, dx):
    """dx = dy * (x > 0)   dy, x, dx (n,)"""
    _bwd(dy, x, dx, ACT_RELU)


def leaky_relu(x, out, alpha):
    """out = x if x >= 0 else alpha * x   x, out (n,)"""
    _fwd(x, out, ACT_LEAKY_RELU, alpha)


def leaky_relu_backward(dy, x, dx, alpha):
    """dx = dy * (1 if x > 0 else alpha)   dy, x, dx (n,)"""
    _bwd(dy, x, dx, ACT_LEAKY_RELU, alpha)


def elu(x, out, alpha):
    """out = x if x >= 0 else alpha * (e^x - 1)   x, out (n,)"""
    _fwd(x, out, ACT_ELU, alpha)


def elu_backward(dy, x, dx, alpha):
    """dx = dy * (1 if x > 0 else alpha e^x)   dy, x, dx (n,)"""
    _bwd(dy, x, dx, ACT_ELU, alpha)


def sigmoid(x, out):
    """out = 1 / (1 + e^-x)   x, out (n,)"""
    _fwd(x, out, ACT_SIGMOID)


def sigmoid_backward(dy, x, dx):
    """dx = dy * s(x) (1 - s(x))   dy, x, dx (n,)"""
    _bwd(dy, x, dx, ACT_SIGMOID)


def tanh(x, out):
    """out = tanh(x)   x, out (n,)"""
    _fwd(x, out, ACT_TANH)


def tanh_backward(dy, x, dx):
    """dx = dy * (1 - tanh(x)^2)   dy, x, dx (n,)"""
    _bwd(dy, x, dx, ACT_TANH)


def gelu(x, out):
    """out = x Phi(x)   x, out (n,)"""
    _fwd(x, out, ACT_GELU)


def gelu_backward(dy, x, dx):
    """dx = dy * (Phi(x) + x phi(x))   dy, x, dx (n,)"""
    _bwd(dy, x, dx, ACT_GELU)


def silu(x, out):
    """out = x sigmoid(x)   x, out (n,)"""
    _fwd(x, out, ACT_SILU)


def silu_backward(dy, x, dx):
    """dx = dy * s(x) (1 + x (1 - s(x)))   dy, x, dx (n,)"""
    _bwd(dy, x, dx, ACT_SILU)
