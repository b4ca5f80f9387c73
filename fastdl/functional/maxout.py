"""Maxout: public kernels."""
from __future__ import annotations

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["maxout", "maxout_backward"]

# int32 halves the index traffic of int64 (maxout is memory-bound) and holds any
# realistic piece count; maxout_backward accepts every integer dtype.
ARGMAX_DTYPE = np.dtype(np.int32)
_MAX_PIECES = int(np.iinfo(ARGMAX_DTYPE).max)


def _pieces(pieces) -> int:
    pieces = V.check_int("pieces", pieces, lo=1)
    if pieces > _MAX_PIECES:  # the winning piece must fit the int32 argmax
        raise ValueError(f"pieces: expected at most {_MAX_PIECES}, got {pieces}")
    return pieces


def maxout(z, pieces, *, backend=None):
    """Maxout: the max over each group of ``pieces`` consecutive columns.

    ``y[n, g] = max_k z[n, g * pieces + k]`` for ``k`` in ``[0, pieces)``, and
    ``argmax[n, g]`` is the first ``k`` reaching that max (a NaN wins its group,
    as ``np.argmax``, so NaN propagates to ``y``).

    Parameters
    ----------
    z : (N, out * pieces) float32 or float64, any layout
    pieces : int >= 1

    Returns
    -------
    y : (N, out), the dtype of ``z``, C-contiguous
    argmax : (N, out) int32, values in ``[0, pieces)``
    """
    z = V.as_float("z", z, ndim=2)
    pieces = _pieces(pieces)
    n, cols = z.shape
    if cols % pieces:
        raise ValueError(f"z: expected a column count divisible by pieces={pieces}, "
                         f"got shape {z.shape}")
    y = np.empty((n, cols // pieces), dtype=z.dtype)
    argmax = np.empty((n, cols // pieces), dtype=ARGMAX_DTYPE)
    kernel("maxout", backend)(z, y, argmax, pieces)
    return y, argmax


def _as_argmax(argmax, shape, pieces: int) -> np.ndarray:
    """``argmax`` checked (integer, ``shape``, values in [0, pieces)) as C-contiguous int32."""
    argmax = V.as_ndarray("argmax", argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"argmax: expected an integer array, got {argmax.dtype}")
    V.check_shape("argmax", argmax, shape)
    if not argmax.dtype.isnative:  # the unsigned view below reads the machine's byte order
        argmax = argmax.astype(argmax.dtype.newbyteorder("="))
    if argmax.size:
        # One reduction checks both ends: as unsigned, a negative index is huge.
        if int(argmax.view(f"u{argmax.dtype.itemsize}").max()) >= pieces:
            bad = argmax.min() if argmax.min() < 0 else argmax.max()
            raise ValueError(f"argmax: expected values in [0, {pieces}), got {bad}")
    return V.aligned(np.ascontiguousarray(argmax, dtype=ARGMAX_DTYPE))


@V.aligned_out
def maxout_backward(dy, argmax, pieces, *, out=None, backend=None):
    """Gradient through maxout: ``dy`` routed to the winning pieces.

    ``dz[n, g * pieces + k] = dy[n, g]`` if ``k == argmax[n, g]`` else 0.

    Parameters
    ----------
    dy : (N, out) float32 or float64 (gradient at ``y``)
    argmax : (N, out) any integer dtype, values in ``[0, pieces)`` (from ``maxout``)
    pieces : int >= 1

    Returns
    -------
    dz : (N, out * pieces), the dtype of ``dy``, C-contiguous
    """
    dy = V.as_float("dy", dy, ndim=2)
    pieces = _pieces(pieces)
    argmax = _as_argmax(argmax, dy.shape, pieces)
    given = out is not None
    dz = V.make_out(out, (dy.shape[0], dy.shape[1] * pieces), dy.dtype)
    if given:
        dy, argmax = V.copy_overlapping(dz, (dy, argmax))
    kernel("maxout_backward", backend)(dy, argmax, dz, pieces)
    return dz
