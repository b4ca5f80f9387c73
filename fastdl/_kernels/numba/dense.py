"""Dense layer, Numba backend: the GEMM goes to BLAS (through NumPy, multi-threaded),
the bias and activation are one fused Numba pass over the output.

x is (N, K), W is (K, M), b is (M,), y is (N, M).
"""
import numpy as np
from numba import prange

from fastdl._kernels.numba._jit import FASTMATH_REDUCE, jit_pair, pick
from fastdl._kernels.numba._math import exp_nonpos, log, tanh
from fastdl._kernels.numba._scalar import (ACT_ELU, ACT_GELU, ACT_LEAKY_RELU, ACT_NONE, ACT_RELU,
                                           ACT_SIGMOID, ACT_SILU, ACT_SOFTMAX, ACT_TANH, const,
                                           elu_s, gelu_s, leaky_relu_s, relu_s, sigmoid_s,
                                           silu_s)

DENSE_PARALLEL_THRESHOLD = 1 << 22

ACT_CODES = {None: 0, "relu": 1, "leaky_relu": 2, "elu": 3, "sigmoid": 4, "tanh": 5,
             "gelu": 6, "silu": 7, "softmax": 8, "log_softmax": 9}


def _bias_act(y, b, act, alpha):
    # y is (N, M), updated in place row by row while the row is in L1: y = act(y + b),
    # one loop per activation chosen outside the loop (a code switch inside the loop
    # would keep it from vectorising).  b is always an array (zeros without a bias):
    # an in-place "y[j] = 0 if y[j] < 0 else y[j]" stores back the value it loaded on
    # one side of the select, which LLVM turns into a masked store (vmaskmovps), and
    # AMD's masked stores are microcoded: 5-7x slower than this loop, measured here.
    n, m = y.shape
    for i in prange(n):
        row = y[i]
        if act == ACT_RELU:
            for j in range(m):
                row[j] = relu_s(row[j] + b[j])
        elif act == ACT_LEAKY_RELU:
            for j in range(m):
                row[j] = leaky_relu_s(row[j] + b[j], alpha)
        elif act == ACT_ELU:
            for j in range(m):
                row[j] = elu_s(row[j] + b[j], alpha)
        elif act == ACT_SIGMOID:
            for j in range(m):
                row[j] = sigmoid_s(row[j] + b[j])
        elif act == ACT_TANH:
            for j in range(m):
                row[j] = tanh(row[j] + b[j])
        elif act == ACT_GELU:
            for j in range(m):
                row[j] = gelu_s(row[j] + b[j])
        elif act == ACT_SILU:
            for j in range(m):
                row[j] = silu_s(row[j] + b[j])
        elif act == ACT_NONE:
            for j in range(m):
                row[j] += b[j]
        else:
            for j in range(m):
                row[j] += b[j]
            mx = row[0]
            for j in range(1, m):
                mx = max(mx, row[j])
            s = const(mx, 0.0)
            if act == ACT_SOFTMAX:
                for j in range(m):
                    e = exp_nonpos(row[j] - mx)
                    row[j] = e
                    s += e
                inv = const(mx, 1.0) / s
                for j in range(m):
                    row[j] = row[j] * inv
            else:
                for j in range(m):
                    s += exp_nonpos(row[j] - mx)
                lse = log(s)
                # (x - max) - log(s), not x - (max + log s), which loses the low bits
                # of x - max when |max| is large
                for j in range(m):
                    row[j] = (row[j] - mx) - lse


_bias_act_k = jit_pair(_bias_act)


def _col_sum(dy, db):
    # db[j] = sum_n dy[n, j]: walk rows so that every load is contiguous
    n, m = dy.shape
    for j in range(m):
        db[j] = 0
    for i in range(n):
        for j in range(m):
            db[j] += dy[i, j]


_col_sum_k = jit_pair(_col_sum, fastmath=FASTMATH_REDUCE)


def dense_forward(x, W, b, out, activation, alpha):
    np.matmul(x, W, out=out)
    code = ACT_CODES[activation]
    if b is None:
        if code == 0:
            return
        b = _zeros(out.shape[1], out.dtype)
    # serial unless large: the pass follows a multi-threaded GEMM whose BLAS threads
    # still spin on the other core (see the Cython twin)
    pick(_bias_act_k, out.size, DENSE_PARALLEL_THRESHOLD)(out, b, code, out.dtype.type(alpha))


_ZEROS = {}


def _zeros(m, dtype):
    # the bias of a layer without one, kept per (width, dtype); left writeable, as a
    # read-only array would be another Numba type and another compile
    z = _ZEROS.get((m, dtype))
    if z is None:
        z = _ZEROS[(m, dtype)] = np.zeros(m, dtype)
    return z


def dense_backward(dy, x, W, dx, dW, db):
    if dx is not None:
        np.matmul(dy, W.T, out=dx)
    np.matmul(x.T, dy, out=dW)
    _col_sum_k[0](dy, db)
