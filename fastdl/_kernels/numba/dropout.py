"""Inverted dropout, Numba backend (the protocol is in fastdl/reference/dropout.py).

x, y (n,), r (n,) uint8 random bytes, mask (n,) uint8.  A unit is kept when
r >= t8 (ties provisionally), y = x * mask * scale, and the tied units (r == t8)
are listed per chunk for the wrapper to settle with more random bits.
"""
import numpy as np
from numba import prange

from fastdl._kernels.numba._jit import jit_pair, pick
from fastdl._kernels.numba._scalar import const

# Units per block of the tie search: a block is scanned for its ties only when
# a vectorised "any tie?" pass found one (probability 1 - (255/256)**64 = 22%).
_BLOCK = 64


def _dropout(x, r, y, mask, ties, counts, t8, scale, chunk):
    n = x.shape[0]
    zero = const(scale, 0.0)
    for k in prange(counts.shape[0]):
        lo = k * chunk
        hi = min(lo + chunk, n)
        # Slices, so that every index below counts from 0: Numba then knows it
        # is not negative and drops its wraparound check, which blocks vectorising.
        xc, rc, yc, mc, tc = x[lo:hi], r[lo:hi], y[lo:hi], mask[lo:hi], ties[lo:hi]
        m = hi - lo
        for j in range(m):
            keep = rc[j] >= t8
            mc[j] = keep
            yc[j] = xc[j] * (scale if keep else zero)
        c = 0
        for b0 in range(0, m, _BLOCK):
            b1 = min(b0 + _BLOCK, m)
            tied = False
            for j in range(b0, b1):
                tied |= rc[j] == t8
            if tied:
                for j in range(b0, b1):
                    if rc[j] == t8:
                        tc[c] = lo + j
                        c += 1
        counts[k] = c


_dropout_k = jit_pair(_dropout)


def _dropout_backward(dy, mask, dx, scale):
    for j in prange(dy.shape[0]):
        dx[j] = dy[j] * (scale if mask[j] else const(scale, 0.0))


_dropout_backward_k = jit_pair(_dropout_backward)


def dropout(x, r, y, mask, ties, counts, t8, scale, chunk):
    """Forward pass, ties kept provisionally and listed per chunk.

    x (n,), r (n,) uint8, y (n,), mask (n,) uint8, ties (n,) int64,
    counts (ceil(n / chunk),) int64; t8 int in [0, 255], scale float, chunk int."""
    # t8 as uint8, as r: a byte comparison, no widening in the vector loop
    pick(_dropout_k, x.size)(x, r, y, mask, ties, counts, np.uint8(t8), x.dtype.type(scale),
                             chunk)


def dropout_backward(dy, mask, dx, scale):
    """dx = dy * mask * scale.   dy (n,), mask (n,) uint8, dx (n,); scale float."""
    pick(_dropout_backward_k, dy.size)(dy, mask, dx, dy.dtype.type(scale))
