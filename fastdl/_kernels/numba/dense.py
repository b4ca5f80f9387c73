"""Dense layer, Numba backend: the GEMM goes to OpenBLAS, one block of the output
a thread, each on one BLAS thread (fastdl/_kernels/numba/_blas.py says why), and the
same thread finishes its block with the bias and the activation while it is in cache.

x is (N, K), W is (K, M), b is (M,), y is (N, M): y = act(x @ W + b).  Row-major arrays
are column-major transposes, so y = x @ W is the column-major product y^T = W^T x^T.
"""
import functools

import numpy as np
from numba import prange

from fastdl import _config
from fastdl._threads import effective_threads
from fastdl._kernels.numba import _blas
from fastdl._kernels.numba._blas import _N, gemm_block, gemm_function, par_gemm, split_plan
# the tests' handles, as the Cython twin's
from fastdl._kernels.numba._blas import set_blas_int_max, set_gemm_parallel_flops  # noqa: F401
from fastdl._kernels.numba._jit import FASTMATH_REDUCE, jit, jit_pair
from fastdl._kernels.numba._math import exp_nonpos, log, tanh
from fastdl._kernels.numba._scalar import (ACT_ELU, ACT_GELU, ACT_LEAKY_RELU, ACT_NONE, ACT_RELU,
                                           ACT_SIGMOID, ACT_SILU, ACT_SOFTMAX, ACT_TANH, const,
                                           elu_s, gelu_s, leaky_relu_s, relu_s, sigmoid_s,
                                           silu_s)

# Kernels that run their threads over single-threaded BLAS calls (fastdl/_registry.py)
SERIAL_BLAS = ("dense_forward", "dense_backward")

ACT_CODES = {None: 0, "relu": 1, "leaky_relu": 2, "elu": 3, "sigmoid": 4, "tanh": 5,
             "gelu": 6, "silu": 7, "softmax": 8, "log_softmax": 9}


@jit
def _bias_act_row(row, b, act, alpha):
    # row = act(row + b), in place, while the row is in L1 (one output row, or the
    # columns of one that a thread's block covers, with the same columns of b).  One
    # loop per activation chosen outside the loop (a code switch inside the loop would
    # keep it from vectorising).  b is always an array (zeros without a bias): an
    # in-place "y[j] = 0 if y[j] < 0 else y[j]" stores back the value it loaded on one
    # side of the select, which LLVM turns into a masked store (vmaskmovps), and AMD's
    # masked stores are microcoded: 5-7x slower than this loop, measured here.
    m = row.shape[0]
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


@jit
def _bias_act(y, b, act, alpha):
    # the pass after np.matmul, where BLAS cannot take the product (serial: rare sizes)
    for i in range(y.shape[0]):
        _bias_act_row(y[i], b, act, alpha)


def _forward(f, x, W, b, y, act, alpha, bias_pass, nt, by_rows, step):
    # y^T (M, N) = W_cm (M, K) x^T (K, N), one block a thread, each finished with the
    # bias and the activation by its thread while it is in cache, unless the
    # activation needs whole rows that a block of columns cuts (softmax), which then
    # get a pass of their own
    n, k = x.shape
    m = W.shape[1]
    for t in prange(nt):
        gemm_block(f, t, by_rows, step, _N, _N, m, n, k, W, m, x, k, 0, y, m)
        lo = t * step
        if not by_rows:  # rows [lo, hi) of y
            if bias_pass:
                for i in range(lo, min(lo + step, n)):
                    _bias_act_row(y[i], b, act, alpha)
        elif bias_pass and act < ACT_SOFTMAX:  # columns [lo, hi) of y
            hi = min(lo + step, m)
            for i in range(n):
                _bias_act_row(y[i][lo:hi], b[lo:hi], act, alpha)
    if by_rows and act >= ACT_SOFTMAX:
        for i in prange(n):
            _bias_act_row(y[i], b, act, alpha)


_forward_k = jit_pair(_forward)


def _col_sum(dy, db):
    # db[j] = sum_n dy[n, j]: walk rows so that every load is contiguous; the totals are
    # float64, as a float32 running sum drifts with N (1.6e-5 relative at a million rows)
    n, m = dy.shape
    acc = np.zeros(m, np.float64)
    for i in range(n):
        for j in range(m):
            acc[j] += dy[i, j]
    for j in range(m):
        db[j] = acc[j]


_col_sum_k = jit_pair(_col_sum, fastmath=FASTMATH_REDUCE)


def _blocks_wanted():
    # the blocks a product may take: the thread count in force, 1 where this thread may
    # not launch a parallel Numba kernel now (as pick)
    return effective_threads() if _config.numba_parallel_here() else 1


def _blas_takes(sizes, arrays):
    # BLAS takes 32-bit ints: a leading dimension beyond them goes to np.matmul (NumPy's
    # BLAS takes 64-bit sizes); N goes to BLAS in blocks of at most BLAS_INT_MAX rows.
    # The blocks' addresses assume C order: an array in another layout (the functional
    # API never passes one; a direct caller might) goes to np.matmul too
    return (max(sizes) <= _blas.BLAS_INT_MAX
            and all(a.flags.c_contiguous for a in arrays if a is not None))


def dense_forward(x, W, b, out, activation, alpha):
    n, k = x.shape
    m = W.shape[1]
    code = ACT_CODES[activation]
    bias_pass = b is not None or code != ACT_NONE
    if b is None:
        b = _zeros(m, out.dtype)
    if n == 0 or m == 0:
        return
    if k == 0 or not _blas_takes((k, m), (x, W, out)):
        np.matmul(x, W, out=out)
        if bias_pass:
            _bias_act(out, b, code, out.dtype.type(alpha))
        return
    f, want = gemm_function(out.dtype), _blocks_wanted()
    rows = _blas.BLAS_INT_MAX
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        nt, by_rows, step = split_plan(m, r1 - r0, k, want)
        _forward_k[nt > 1](f, x[r0:r1], W, b, out[r0:r1], code, out.dtype.type(alpha),
                           bias_pass, nt, by_rows, step)


@functools.lru_cache(maxsize=32)
def _zeros(m, dtype):
    # the bias of a layer without one, kept per (width, dtype), the 32 last used (a dict
    # kept them all: 2,000 widths held 160 MiB); left writeable, as a read-only array
    # would be another Numba type and another compile
    return np.zeros(m, dtype)


def dense_backward(dy, x, W, dx, dW, db):
    n, m = dy.shape
    k = x.shape[1]
    if n == 0 or k == 0 or m == 0 or not _blas_takes((k, m), (dy, x, W, dx, dW)):
        # BLAS refuses empty leading dimensions; NumPy's takes 64-bit sizes
        if dx is not None:
            np.matmul(dy, W.T, out=dx)
        np.matmul(x.T, dy, out=dW)
    else:
        want, rows = _blocks_wanted(), _blas.BLAS_INT_MAX
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            if dx is not None:
                # dx^T (K, nb) = W_cm^T (K, M) dy^T (M, nb)
                par_gemm(want, "T", "N", k, r1 - r0, m, W, m, dy[r0:r1], m, 0, dx[r0:r1], k)
            # dW^T (M, K) (+)= dy^T (M, nb) x (nb, K): the first block overwrites
            par_gemm(want, "N", "T", m, k, r1 - r0, dy[r0:r1], m, x[r0:r1], k, r0 > 0, dW, m)
    _col_sum_k[0](dy, db)
