"""Softmax and log-softmax along the rows of a 2-D array, Numba backend.

x, y, dy and out are (R, C).  One row at a time, while it is in L1 (formulas in
fastdl/reference/softmax.py): a max pass, then exp and the sum in one pass,
then one output pass.  The kernels are compiled with ``reassoc``
(FASTMATH_REDUCE) so that the sums vectorise; ``_math``'s exp and log keep
their exact steps under it.  LLVM does not vectorise a float max without
``nnan`` (which fastdl never sets), so the max runs eight independent chains.
softmax and log_softmax share one compiled kernel (``logmode``), as do their
backward passes, to keep the number of compiled functions small.
"""
from numba import prange

from fastdl._kernels.numba._jit import FASTMATH_REDUCE, inline, jit_pair, pick
from fastdl._kernels.numba._math import exp, exp_nonpos, log
from fastdl._kernels.numba._rows import ROW_BLOCK, row_dot, row_sum
from fastdl._kernels.numba._scalar import const


@inline
def _row_max(a):
    # max of a (length >= 1).  A NaN may be skipped here; it still turns the whole
    # row into NaN through the sum of exponentials, as in the reference.
    c = a.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = a[0]
    j = 0
    while j + 8 <= c:
        m0 = a[j] if a[j] > m0 else m0
        m1 = a[j + 1] if a[j + 1] > m1 else m1
        m2 = a[j + 2] if a[j + 2] > m2 else m2
        m3 = a[j + 3] if a[j + 3] > m3 else m3
        m4 = a[j + 4] if a[j + 4] > m4 else m4
        m5 = a[j + 5] if a[j + 5] > m5 else m5
        m6 = a[j + 6] if a[j + 6] > m6 else m6
        m7 = a[j + 7] if a[j + 7] > m7 else m7
        j += 8
    while j < c:
        m0 = a[j] if a[j] > m0 else m0
        j += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    m4 = m5 if m5 > m4 else m4
    m6 = m7 if m7 > m6 else m6
    m0 = m2 if m2 > m0 else m0
    m4 = m6 if m6 > m4 else m4
    return m4 if m4 > m0 else m0


def _softmax_rows(x, out, logmode):
    n, c = x.shape
    if c == 0:
        return
    for i in prange(n):
        xr = x[i]
        orow = out[i]
        # the row max makes every exponent <= 0: no overflow, and the sum is >= 1
        mx = _row_max(xr)
        total = 0.0  # block sums in float64 (see _rows.py: a long row drifted)
        if logmode:
            # out = (x - m) - log s: x - m is exact for x near m, where x - (m + log s)
            # would round at |m|'s scale.  x - m goes through memory because reassoc
            # would fold the two subtractions of one expression into that second form.
            for b in range(0, c, ROW_BLOCK):
                s = const(mx, 0.0)
                for j in range(b, min(b + ROW_BLOCK, c)):
                    d = xr[j] - mx
                    orow[j] = d
                    s += exp_nonpos(d)
                total += s
            ls = log(const(mx, total))
            for j in range(c):
                orow[j] -= ls
        else:
            for b in range(0, c, ROW_BLOCK):
                s = const(mx, 0.0)
                for j in range(b, min(b + ROW_BLOCK, c)):
                    e = exp_nonpos(xr[j] - mx)
                    orow[j] = e
                    s += e
                total += s
            inv = const(mx, 1.0) / const(mx, total)
            for j in range(c):
                orow[j] *= inv


_softmax_k = jit_pair(_softmax_rows, fastmath=FASTMATH_REDUCE)


def _softmax_backward_rows(dy, y, out, logmode):
    n, c = dy.shape
    if c == 0:
        return
    for i in prange(n):
        dr = dy[i]
        yr = y[i]
        orow = out[i]
        if logmode:
            s = const(dr[0], row_sum(dr))
            for j in range(c):
                orow[j] = dr[j] - exp(yr[j]) * s
        else:
            s = const(dr[0], row_dot(dr, yr))
            for j in range(c):
                orow[j] = yr[j] * (dr[j] - s)


_softmax_backward_k = jit_pair(_softmax_backward_rows, fastmath=FASTMATH_REDUCE)


def softmax(x, out):
    """out = softmax of each row of x.   x (R, C), out (R, C)."""
    pick(_softmax_k, x.size)(x, out, False)


def log_softmax(x, out):
    """out = log_softmax of each row of x.   x (R, C), out (R, C)."""
    pick(_softmax_k, x.size)(x, out, True)


def softmax_backward(dy, y, out):
    """out = y * (dy - sum(dy * y)) row-wise.   dy, y, out (R, C)."""
    pick(_softmax_backward_k, dy.size)(dy, y, out, False)


def log_softmax_backward(dy, y, out):
    """out = dy - exp(y) * sum(dy) row-wise.   dy, y, out (R, C)."""
    pick(_softmax_backward_k, dy.size)(dy, y, out, True)
