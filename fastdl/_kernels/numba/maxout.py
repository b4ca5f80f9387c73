"""Maxout, Numba backend.

z is (N, M * P) (M groups of P = ``pieces`` consecutive columns), y and argmax
(N, M), argmax int32.  y = max over each group, argmax = the first winning piece;
a NaN wins its group (as ``np.argmax``).  Backward: dz (N, M * P) is dy at the
winners and 0 elsewhere.  P = 2, the common case, has its own loops (stride-2
loads and stores of selects, which LLVM vectorises).  Indices are written so
that Numba can see they are not negative (ranges from 0, constant strides, an
(N, M, P) view of z), which drops its wraparound check from the inner loops.
"""
from numba import prange

from fastdl._kernels.numba._jit import inline, jit_pair, pick
from fastdl._kernels.numba._scalar import const


@inline
def _wins(v, best):
    # v replaces best: v > best or v NaN, unless best is already NaN.  The same
    # winner as np.argmax (the first max, or the first NaN), so NaN propagates.
    return (best == best) & (not v <= best)


def _maxout(z, y, argmax, pieces):
    n, m = y.shape
    z3 = z.reshape((n, m, pieces))
    for i in prange(n):
        zr = z3[i]
        yr = y[i]
        ar = argmax[i]
        if pieces == 2:
            z1 = z[i]  # 1-D, with the constant stride 2 in the index
            for g in range(m):
                a = z1[2 * g]
                b = z1[2 * g + 1]
                take = _wins(b, a)
                yr[g] = b if take else a
                ar[g] = 1 if take else 0
            continue
        # The scalar loop runs ~3x slower with the NaN rule in it than with a
        # plain ">" (measured): use ">", note any NaN, and redo the rare row that
        # has one with the exact rule.
        nan = False
        for g in range(m):
            best = zr[g, 0]
            k = 0
            for j in range(1, pieces):
                v = zr[g, j]
                take = v > best
                best = v if take else best
                k = j if take else k
                nan |= v != v
            yr[g] = best
            ar[g] = k
            nan |= best != best
        if nan:
            for g in range(m):
                best = zr[g, 0]
                k = 0
                for j in range(1, pieces):
                    v = zr[g, j]
                    if _wins(v, best):
                        best = v
                        k = j
                yr[g] = best
                ar[g] = k


_maxout_k = jit_pair(_maxout)


def _maxout_backward(dy, argmax, dz, pieces):
    n, m = dy.shape
    for i in prange(n):
        dr = dy[i]
        ar = argmax[i]
        zr = dz[i]
        if pieces == 2:
            for g in range(m):
                d = dr[g]
                zero = const(d, 0.0)
                first = ar[g] == 0
                zr[2 * g] = d if first else zero
                zr[2 * g + 1] = zero if first else d
            continue
        # a vectorised zero fill of the row, then one store per group
        for j in range(zr.shape[0]):
            zr[j] = 0
        for g in range(m):
            zr[g * pieces + ar[g]] = dr[g]


_maxout_backward_k = jit_pair(_maxout_backward)


def maxout(z, y, argmax, pieces):
    """y, argmax = max and first argmax of each group.   z (N, M*P), y (N, M), argmax (N, M)."""
    pick(_maxout_k, z.size)(z, y, argmax, pieces)


def maxout_backward(dy, argmax, dz, pieces):
    """dz = dy at the winning pieces, 0 elsewhere.   dy (N, M), argmax (N, M), dz (N, M*P)."""
    pick(_maxout_backward_k, dz.size)(dy, argmax, dz, pieces)
