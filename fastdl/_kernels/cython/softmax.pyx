# cython: language_level=3
# distutils: define_macros = FASTDL_LIBMVEC=1
# distutils: libraries = m
"""Softmax and log-softmax along the rows of a 2-D array, Cython backend.

x, y, dy and out are (R, C).  One row at a time, while it is in L1 (formulas in
fastdl/reference/softmax.py); prange over rows above PARALLEL_THRESHOLD elements.
The exp loops carry no reduction, so gcc vectorises them: the forward's exp(x - max)
with the inline float32 exp_nonpos (_fastmath.h; float64: libmvec's exp through
FASTDL_LIBMVEC), the log-softmax backward's exp(y) with libmvec's.  The row max and
sums use eight independent accumulators, which gcc turns into vector max/add without
reassociating anything itself (no -ffast-math, so NaN and Inf keep their IEEE meaning).
"""
from cython cimport floating
from cython.parallel cimport prange

from fastdl._kernels.cython._helpers cimport fexp, fexp_nonpos, flog, PARALLEL_THRESHOLD


cdef inline floating row_max(const floating *a, Py_ssize_t c) noexcept nogil:
    # max of a[0:c], c >= 1.  A NaN may be skipped here; it still turns the whole
    # row into NaN through the sum of exponentials, as in the reference.
    cdef floating m0 = a[0], m1 = a[0], m2 = a[0], m3 = a[0]
    cdef floating m4 = a[0], m5 = a[0], m6 = a[0], m7 = a[0]
    cdef Py_ssize_t j = 0
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


cdef inline floating row_dot(const floating *a, const floating *b, bint with_b,
                             Py_ssize_t c) noexcept nogil:
    # sum of a[j] * b[j] (with_b) or of a[j], in eight interleaved partial sums:
    # no serial chain of dependent adds, and a smaller rounding error than one sum
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t j = 0
    if with_b:
        while j + 8 <= c:
            s0 += a[j] * b[j]
            s1 += a[j + 1] * b[j + 1]
            s2 += a[j + 2] * b[j + 2]
            s3 += a[j + 3] * b[j + 3]
            s4 += a[j + 4] * b[j + 4]
            s5 += a[j + 5] * b[j + 5]
            s6 += a[j + 6] * b[j + 6]
            s7 += a[j + 7] * b[j + 7]
            j += 8
        while j < c:
            s0 += a[j] * b[j]
            j += 1
    else:
        while j + 8 <= c:
            s0 += a[j]
            s1 += a[j + 1]
            s2 += a[j + 2]
            s3 += a[j + 3]
            s4 += a[j + 4]
            s5 += a[j + 5]
            s6 += a[j + 6]
            s7 += a[j + 7]
            j += 8
        while j < c:
            s0 += a[j]
            j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


cdef inline void softmax_row(const floating *x, floating *out, Py_ssize_t c,
                             bint logmode) noexcept nogil:
    # x, out: one row of C >= 1 entries.  out holds exp(x - m) until the last pass.
    cdef Py_ssize_t j
    cdef floating inv, ls
    # the row max makes every exponent <= 0: no overflow, and the sum is >= 1
    cdef floating mx = row_max(x, c)
    for j in range(c):
        out[j] = fexp_nonpos(x[j] - mx)
    if logmode:
        ls = flog(row_dot(out, out, False, c))
        for j in range(c):
            # (x - m) is exact for nearby x; x - (m + log s) would round at |m|'s scale
            out[j] = (x[j] - mx) - ls
    else:
        inv = <floating>1 / row_dot(out, out, False, c)
        for j in range(c):
            out[j] *= inv


cdef void _softmax(const floating[:, ::1] x, floating[:, ::1] out, bint logmode) noexcept nogil:
    cdef Py_ssize_t i, n = x.shape[0], c = x.shape[1]
    if n == 0 or c == 0:
        return
    if n * c >= PARALLEL_THRESHOLD:
        for i in prange(n, schedule="static"):
            softmax_row(&x[i, 0], &out[i, 0], c, logmode)
    else:
        for i in range(n):
            softmax_row(&x[i, 0], &out[i, 0], c, logmode)


cdef inline void softmax_backward_row(const floating *dy, const floating *y, floating *out,
                                      Py_ssize_t c, bint logmode) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating s
    if logmode:
        s = row_dot(dy, dy, False, c)
        for j in range(c):
            out[j] = dy[j] - fexp(y[j]) * s
    else:
        s = row_dot(dy, y, True, c)
        for j in range(c):
            out[j] = y[j] * (dy[j] - s)


cdef void _softmax_backward(const floating[:, ::1] dy, const floating[:, ::1] y,
                            floating[:, ::1] out, bint logmode) noexcept nogil:
    cdef Py_ssize_t i, n = dy.shape[0], c = dy.shape[1]
    if n == 0 or c == 0:
        return
    if n * c >= PARALLEL_THRESHOLD:
        for i in prange(n, schedule="static"):
            softmax_backward_row(&dy[i, 0], &y[i, 0], &out[i, 0], c, logmode)
    else:
        for i in range(n):
            softmax_backward_row(&dy[i, 0], &y[i, 0], &out[i, 0], c, logmode)


def softmax(const floating[:, ::1] x, floating[:, ::1] out):
    """out = softmax of each row of x.   x (R, C), out (R, C)."""
    with nogil:
        _softmax(x, out, False)


def log_softmax(const floating[:, ::1] x, floating[:, ::1] out):
    """out = log_softmax of each row of x.   x (R, C), out (R, C)."""
    with nogil:
        _softmax(x, out, True)


def softmax_backward(const floating[:, ::1] dy, const floating[:, ::1] y, floating[:, ::1] out):
    """out = y * (dy - sum(dy * y)) row-wise.   dy, y, out (R, C)."""
    with nogil:
        _softmax_backward(dy, y, out, False)


def log_softmax_backward(const floating[:, ::1] dy, const floating[:, ::1] y,
                         floating[:, ::1] out):
    """out = dy - exp(y) * sum(dy) row-wise.   dy, y, out (R, C)."""
    with nogil:
        _softmax_backward(dy, y, out, True)
