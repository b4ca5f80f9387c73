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

Streaming stores, for relu and leaky_relu only: when the written array is at least
STREAM_MIN_BYTES (16 MiB), each chunk computes BLOCK elements at a time into a small
buffer in L1 and writes them with non-temporal stores (``_stream.py``), skipping the
read of each written line.  Same-process A/B, fwd+bwd 10M float32: relu 0.77-0.93x,
leaky_relu 0.78-0.92x the time; but tanh 1.14-1.21x, elu 1.05-1.23x, silu 1.24-1.31x,
gelu 1.25-1.34x, sigmoid 0.99-1.12x (blocks of 64, 256 and 1024 alike), so the
compute-bound activations keep their plain loops (the one-pass float32 GELU, measured
again: 1.39x, 18.3 against 13.2 ms).  The block takes slices of the
inputs, not ``x[i + j]``: an index Numba cannot prove non-negative gets the
negative-index wraparound, which kept that loop from vectorising (then 1.6x slower
than no streaming at all).

``jit_pair`` is not used: it compiles its serial and parallel twins from one
function, and Numba's cache keys on the function and the signature, not on
``parallel=True``, so whichever twin compiles first is loaded from the cache by
the other one (measured: the "parallel" twin ran the serial code).  Here the
serial kernel and the parallel driver are different functions.
"""
import numpy as np
from numba import prange

from fastdl._kernels.numba._jit import inline, jit, pick
from fastdl._kernels.numba._stream import ALIGN, STREAM_MIN_BYTES, STREAMS, sfence, stream
# imported under another name: the public kernel ``tanh`` below takes the module name
from fastdl._kernels.numba._math import tanh as tanh_s
from fastdl._kernels.numba._scalar import (
    ACT_ELU, ACT_GELU, ACT_LEAKY_RELU, ACT_RELU, ACT_SIGMOID, ACT_SILU, ACT_TANH,
    elu_d, elu_s, gelu_d, gelu_s, leaky_relu_d, leaky_relu_s, relu_d, relu_s,
    sigmoid_d, sigmoid_s, silu_d, silu_s, tanh_d)

# elements per parallel chunk (as the Cython backend): a call per chunk costs nothing
CHUNK = 32768
# elements per streamed block (as the Cython backend; BLOCK * itemsize is a multiple of ALIGN)
BLOCK = 64


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


@inline
def _head(a):
    # elements before a's first ALIGN-byte aligned one (a is aligned to its item size)
    return ((ALIGN - a.ctypes.data % ALIGN) % ALIGN) // a.itemsize


@inline
def _forward_block(x, out, act, alpha):
    # the streamed activations only (relu, leaky_relu: see _streams); a small body
    # keeps the streaming kernels' compile short
    if act == ACT_RELU:
        for i in range(x.shape[0]):
            out[i] = relu_s(x[i])
    elif act == ACT_LEAKY_RELU:
        for i in range(x.shape[0]):
            out[i] = leaky_relu_s(x[i], alpha)


@inline
def _backward_block(dy, x, dx, act, alpha):
    if act == ACT_RELU:
        for i in range(x.shape[0]):
            dx[i] = dy[i] * relu_d(x[i])
    elif act == ACT_LEAKY_RELU:
        for i in range(x.shape[0]):
            dx[i] = dy[i] * leaky_relu_d(x[i], alpha)


@jit
def _forward_stream(x, out, act, alpha):
    # _forward with streaming stores (relu, leaky_relu), BLOCK elements at a time
    # through buf (each block is read before it is written, so out may be x).
    # Any other activation takes the plain loop: the blocks above know only these two.
    # So does an out not aligned to its item size: no element of it is ALIGN-aligned,
    # and an aligned vector store there faults (exit 139).
    if (act != ACT_RELU and act != ACT_LEAKY_RELU) or out.ctypes.data % out.itemsize:
        _forward(x, out, act, alpha)
        return
    n = x.shape[0]
    i = min(_head(out), n)
    _forward(x[:i], out[:i], act, alpha)
    buf = np.empty(BLOCK, out.dtype)
    while i + BLOCK <= n:
        _forward_block(x[i:i + BLOCK], buf, act, alpha)
        stream(out, i, buf)
        i += BLOCK
    _forward(x[i:], out[i:], act, alpha)
    sfence()


@jit
def _backward_stream(dy, x, dx, act, alpha):
    # _backward with streaming stores, as _forward_stream (a misaligned dx included)
    if (act != ACT_RELU and act != ACT_LEAKY_RELU) or dx.ctypes.data % dx.itemsize:
        _backward(dy, x, dx, act, alpha)
        return
    n = x.shape[0]
    i = min(_head(dx), n)
    _backward(dy[:i], x[:i], dx[:i], act, alpha)
    buf = np.empty(BLOCK, dx.dtype)
    while i + BLOCK <= n:
        _backward_block(dy[i:i + BLOCK], x[i:i + BLOCK], buf, act, alpha)
        stream(dx, i, buf)
        i += BLOCK
    _backward(dy[i:], x[i:], dx[i:], act, alpha)
    sfence()


@jit(parallel=True)
def _forward_chunks_stream(x, out, act, alpha):
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(lo + CHUNK, n)
        _forward_stream(x[lo:hi], out[lo:hi], act, alpha)


@jit(parallel=True)
def _backward_chunks_stream(dy, x, dx, act, alpha):
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(lo + CHUNK, n)
        _backward_stream(dy[lo:hi], x[lo:hi], dx[lo:hi], act, alpha)


_forward_k = (_forward, _forward_chunks)
_backward_k = (_backward, _backward_chunks)


def _streams(out, act):
    # (the streaming kernels check out's alignment themselves too: they are the ones
    # that would fault).  stream() writes at out's address plus the index, which is
    # out's element only in C order: a strided out (the functional API never passes
    # one; a direct caller might) takes the ordinary loops
    return (STREAMS and act in (ACT_RELU, ACT_LEAKY_RELU) and out.nbytes >= STREAM_MIN_BYTES
            and out.flags.aligned and out.flags.c_contiguous)


def _fwd(x, out, act, alpha=0.0):
    # alpha in the data's dtype, so that float32 kernels stay float32
    k = pick(_forward_k, x.shape[0])
    if k is _forward_chunks and _streams(out, act):
        k = _forward_chunks_stream
    k(x, out, act, x.dtype.type(alpha))


def _bwd(dy, x, dx, act, alpha=0.0):
    k = pick(_backward_k, x.shape[0])
    if k is _backward_chunks and _streams(dx, act):
        k = _backward_chunks_stream
    k(dy, x, dx, act, x.dtype.type(alpha))


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
