"""Maxout, NumPy reference.

z is (N, M * P): M groups ("units") of P = ``pieces`` consecutive columns.
y is (N, M) and argmax (N, M) int32:

    y[n, g] = max_k z[n, g*P + k],   argmax[n, g] = the first k reaching it

A NaN wins its group (the first NaN, as ``np.argmax``), so NaN propagates to y.
The backward pass routes dy to the winning piece:

    dz[n, g*P + k] = dy[n, g] if k == argmax[n, g] else 0
"""
import numpy as np


def maxout(z, y, argmax, pieces):
    """y, argmax = max and first argmax over each group.   z (N, M*P), y (N, M), argmax (N, M)."""
    n, m = y.shape
    groups = z.reshape(n, m, pieces)
    argmax[...] = np.argmax(groups, axis=2)
    y[...] = np.take_along_axis(groups, argmax[:, :, None], axis=2)[:, :, 0]


def maxout_backward(dy, argmax, dz, pieces):
    """dz = dy scattered to the winning pieces.   dy (N, M), argmax (N, M), dz (N, M*P)."""
    n, m = dy.shape
    groups = dz.reshape(n, m, pieces)
    groups.fill(0)
    np.put_along_axis(groups, argmax[:, :, None].astype(np.intp), dy[:, :, None], axis=2)
