"""Sums along a row for the Numba kernels that stay accurate however long the row is.

A float32 running sum, even vectorised into 16-64 lane partials by ``reassoc``, drifts
with the number of terms each partial adds: a 2^20-class softmax was off by 6e-4
relative, a 2^26-class one by 0.8% (NumPy's pairwise sum: 6e-8).  Here each block of
``ROW_BLOCK`` elements is summed in the row's dtype (vectorised: a lane adds a few
terms), and the block totals in float64.  The Cython backend does the same
(``_softmax_rows.h``, ``softmax.pyx``).  The result is returned in float64; the
caller rounds it once.
"""
from fastdl._kernels.numba._jit import FASTMATH_REDUCE, jit
from fastdl._kernels.numba._scalar import const

ROW_BLOCK = 256


@jit(fastmath=FASTMATH_REDUCE)
def row_sum(e):
    """sum_j e[j], float64."""
    c = e.shape[0]
    total = 0.0
    for b in range(0, c, ROW_BLOCK):
        s = const(e[b], 0.0)
        for j in range(b, min(b + ROW_BLOCK, c)):
            s += e[j]
        total += s
    return total


@jit(fastmath=FASTMATH_REDUCE)
def row_dot(a, w):
    """sum_j a[j] w[j], float64."""
    c = a.shape[0]
    total = 0.0
    for b in range(0, c, ROW_BLOCK):
        s = const(a[b], 0.0)
        for j in range(b, min(b + ROW_BLOCK, c)):
            s += a[j] * w[j]
        total += s
    return total
