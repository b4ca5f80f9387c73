# cython: language_level=3
"""Maxout, Cython backend.

z is (N, M * P) (M groups of P = ``pieces`` consecutive columns), y and argmax
(N, M), argmax int32.  y = max over each group, argmax = the first winning piece;
a NaN wins its group (as ``np.argmax``).  Backward: dz (N, M * P) is dy at the
winners and 0 elsewhere.  P = 2, the common case, has its own loops (stride-2
loads and stores of selects, which gcc vectorises).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t
from libc.string cimport memset

from fastdl._kernels.cython._helpers cimport PARALLEL_THRESHOLD


cdef inline bint wins(floating v, floating best) noexcept nogil:
    # v replaces best: v > best or v NaN, unless best is already NaN.  The same
    # winner as np.argmax (the first max, or the first NaN), so NaN propagates.
    return best == best and not v <= best


cdef inline void maxout_row(const floating *z, floating *y, int32_t *a, Py_ssize_t m,
                            Py_ssize_t p) noexcept nogil:
    cdef Py_ssize_t g, j, base
    cdef int32_t k
    cdef floating best, v
    cdef bint take
    if p == 2:
        for g in range(m):
            best = z[2 * g]
            v = z[2 * g + 1]
            take = wins(v, best)
            y[g] = v if take else best
            a[g] = 1 if take else 0
        return
    for g in range(m):
        base = g * p
        best = z[base]
        k = 0
        for j in range(1, p):
            v = z[base + j]
            if wins(v, best):
                best = v
                k = <int32_t>j
        y[g] = best
        a[g] = k


def maxout(const floating[:, ::1] z, floating[:, ::1] y, int32_t[:, ::1] argmax,
           Py_ssize_t pieces):
    """y, argmax = max and first argmax of each group.   z (N, M*P), y (N, M), argmax (N, M)."""
    cdef Py_ssize_t i, n = y.shape[0], m = y.shape[1]
    if n == 0 or m == 0:
        return
    with nogil:
        if n * m * pieces >= PARALLEL_THRESHOLD:
            for i in prange(n, schedule="static"):
                maxout_row(&z[i, 0], &y[i, 0], &argmax[i, 0], m, pieces)
        else:
            for i in range(n):
                maxout_row(&z[i, 0], &y[i, 0], &argmax[i, 0], m, pieces)


cdef inline void maxout_backward_row(const floating *dy, const int32_t *a, floating *dz,
                                     Py_ssize_t m, Py_ssize_t p) noexcept nogil:
    cdef Py_ssize_t g
    cdef floating d
    if p == 2:
        for g in range(m):
            d = dy[g]
            dz[2 * g] = d if a[g] == 0 else 0
            dz[2 * g + 1] = 0 if a[g] == 0 else d
        return
    # zero the row (all-zero bits are 0.0), then one store per group
    memset(dz, 0, m * p * sizeof(floating))
    for g in range(m):
        dz[g * p + a[g]] = dy[g]


def maxout_backward(const floating[:, ::1] dy, const int32_t[:, ::1] argmax,
                    floating[:, ::1] dz, Py_ssize_t pieces):
    """dz = dy at the winning pieces, 0 elsewhere.   dy (N, M), argmax (N, M), dz (N, M*P)."""
    cdef Py_ssize_t i, n = dy.shape[0], m = dy.shape[1]
    if n == 0 or m == 0:
        return
    with nogil:
        if n * m * pieces >= PARALLEL_THRESHOLD:
            for i in prange(n, schedule="static"):
                maxout_backward_row(&dy[i, 0], &argmax[i, 0], &dz[i, 0], m, pieces)
        else:
            for i in range(n):
                maxout_backward_row(&dy[i, 0], &argmax[i, 0], &dz[i, 0], m, pieces)
