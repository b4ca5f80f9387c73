# cython: language_level=3
"""Inverted dropout, Cython backend (the protocol is in fastdl/reference/dropout.py).

x, y (n,), r (n,) uint8 random bytes, mask (n,) uint8.  A unit is kept when
r >= t8 (ties provisionally), y = x * mask * scale, and the tied units (r == t8)
are listed per chunk for the wrapper to settle with more random bits.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t

from fastdl._kernels.cython._helpers cimport PARALLEL_THRESHOLD

# Units per block: the block loop has no stores to data-dependent addresses, so
# it vectorises; a block holding a tie (probability 1 - (255/256)**64 = 22%) is
# scanned once more to list its ties.
cdef enum:
    BLOCK = 64


cdef int64_t dropout_chunk(const floating *x, const uint8_t *r, floating *y, uint8_t *mask,
                           int64_t *ties, Py_ssize_t lo, Py_ssize_t hi, int t8,
                           floating scale) noexcept nogil:
    # units [lo, hi); returns the number of ties, listed from ties[lo].
    # 32-bit ints in the block loop: a 64-bit int would need a conversion to float
    # that SSE/AVX2 lack, and the loop would not vectorise.
    cdef Py_ssize_t b0, b1, j
    cdef int nt, rj, keep
    cdef int64_t c = 0
    b0 = lo
    while b0 < hi:
        b1 = b0 + BLOCK if b0 + BLOCK < hi else hi
        nt = 0
        for j in range(b0, b1):
            # arithmetic, not branches: a branch on random draws mispredicts
            # often (and would block vectorisation)
            rj = r[j]
            keep = rj >= t8
            mask[j] = <uint8_t>keep
            y[j] = x[j] * (scale * keep)
            nt += rj == t8
        if nt:
            for j in range(b0, b1):
                if r[j] == t8:
                    ties[lo + c] = j
                    c += 1
        b0 = b1
    return c


def dropout(const floating[::1] x, const uint8_t[::1] r, floating[::1] y, uint8_t[::1] mask,
            int64_t[::1] ties, int64_t[::1] counts, int t8, double scale,
            Py_ssize_t chunk):
    """Forward pass, ties kept provisionally and listed per chunk.

    x (n,), r (n,) uint8, y (n,), mask (n,) uint8, ties (n,) int64,
    counts (ceil(n / chunk),) int64; t8 int in [0, 255], scale float, chunk int."""
    cdef Py_ssize_t k, lo, hi, n = x.shape[0], nchunks = counts.shape[0]
    cdef floating s = <floating>scale
    if n == 0:
        return
    with nogil:
        if n >= PARALLEL_THRESHOLD:
            for k in prange(nchunks, schedule="static"):
                lo = k * chunk
                hi = lo + chunk if lo + chunk < n else n
                counts[k] = dropout_chunk(&x[0], &r[0], &y[0], &mask[0], &ties[0], lo, hi,
                                          t8, s)
        else:
            for k in range(nchunks):
                lo = k * chunk
                hi = lo + chunk if lo + chunk < n else n
                counts[k] = dropout_chunk(&x[0], &r[0], &y[0], &mask[0], &ties[0], lo, hi,
                                          t8, s)


def dropout_backward(const floating[::1] dy, const uint8_t[::1] mask, floating[::1] dx,
                     double scale):
    """dx = dy * mask * scale.   dy (n,), mask (n,) uint8, dx (n,); scale float."""
    cdef Py_ssize_t j, n = dy.shape[0]
    cdef floating s = <floating>scale
    with nogil:
        if n >= PARALLEL_THRESHOLD:
            for j in prange(n, schedule="static"):
                dx[j] = dy[j] * (s if mask[j] else 0)
        else:
            for j in range(n):
                dx[j] = dy[j] * (s if mask[j] else 0)
