"""Softmax and log-softmax along any axis: public kernels.

The kernels work on a 2-D (rows, C) array, one row per distribution; these
wrappers move ``axis`` to the last position (a copy only when it is not already
last and contiguous), run the kernel on the rows and move the axis back.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["softmax", "softmax_backward", "log_softmax", "log_softmax_backward"]


def _axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis: expected a value in [{-ndim}, {ndim}) for a {ndim}-D array, "
                         f"got {axis}")
    return int(axis) % ndim


def _rows(name: str, a, axis, dtype=None, shape=None):
    """``a`` validated and with ``axis`` moved last, C-contiguous; the axis; a's shape."""
    if not isinstance(a, np.ndarray):
        # (ndim first: as_float returns a scalar with shape (1,), not ())
        ndim = np.ndim(a) if isinstance(a, (list, tuple, numbers.Number)) else None
        a = V.as_float(name, a, dtype=dtype)
        a = a.reshape(()) if ndim == 0 else a
    if a.ndim == 0:
        raise ValueError(f"{name}: expected an array of rank >= 1, got shape ()")
    if shape is not None:
        V.check_shape(name, a, shape)
    ax = _axis(axis, a.ndim)
    # moveaxis is a view: as_float then makes a single contiguous copy if one is
    # needed (and moveaxis is skipped for the last axis: it costs microseconds)
    moved = a if ax == a.ndim - 1 else np.moveaxis(a, ax, -1)
    return V.as_float(name, moved, dtype=dtype), ax, a.shape


def _run(op, arrays, ax, shape, out, backend):
    """Run ``op`` on the rows of the moved ``arrays``; the result has ``shape``."""
    first = arrays[0]
    given = out is not None
    out = V.make_out(out, shape, first.dtype)
    if first.size == 0:
        return out
    if given:
        # the row kernels read a row more than once (max, sum, then the result), so
        # even out = x exactly would read values already overwritten in some backends
        arrays = V.copy_overlapping(out, arrays)
    c = first.shape[-1]
    rows = [a.reshape(-1, c) for a in arrays]
    if all(d == 1 for d in shape[ax + 1:]):
        # the axis is last, or only length-1 axes follow it: same memory order
        kernel(op, backend)(*rows, out.reshape(-1, c))
        return out
    moved = np.empty(first.shape, first.dtype)
    kernel(op, backend)(*rows, moved.reshape(-1, c))
    np.copyto(out, np.moveaxis(moved, -1, ax))
    return out


@V.aligned_out
def softmax(x, axis=-1, *, out=None, backend=None):
    """Softmax along ``axis``, stable for any finite input.

    ``y_j = exp(x_j - m) / sum_k exp(x_k - m)`` with ``m`` the max along ``axis``
    (subtracted so that no exponent is positive).  Entries equal to ``-inf`` get
    probability 0; a slice that is all ``-inf``, or holds ``+inf`` or NaN, gives NaN.

    Parameters
    ----------
    x : array of rank >= 1, float32 or float64, any layout
    axis : int
        The axis holding each distribution (default: the last).

    Returns
    -------
    y : same shape and dtype as ``x``, C-contiguous
    """
    xm, ax, shape = _rows("x", x, axis)
    return _run("softmax", [xm], ax, shape, out, backend)


@V.aligned_out
def log_softmax(x, axis=-1, *, out=None, backend=None):
    """Log of the softmax along ``axis``, stable for any finite input.

    ``y_j = (x_j - m) - log sum_k exp(x_k - m)``, ``m`` the max along ``axis``;
    ``-inf`` entries give ``-inf``, other entries stay finite.

    Parameters
    ----------
    x : array of rank >= 1, float32 or float64, any layout
    axis : int

    Returns
    -------
    y : same shape and dtype as ``x``, C-contiguous
    """
    xm, ax, shape = _rows("x", x, axis)
    return _run("log_softmax", [xm], ax, shape, out, backend)


def _backward(op, dy, y, axis, out, backend):
    dym, ax, shape = _rows("dy", dy, axis)
    ym = _rows("y", y, axis, dtype=dym.dtype, shape=shape)[0]
    return _run(op, [dym, ym], ax, shape, out, backend)


@V.aligned_out
def softmax_backward(dy, y, axis=-1, *, out=None, backend=None):
    """Gradient through softmax, from the forward OUTPUT ``y``.

    ``dx = y * (dy - sum(dy * y))``, the sum along ``axis``.

    Parameters
    ----------
    dy : array of rank >= 1, float32 or float64 (gradient at ``y``)
    y : same shape and dtype (``softmax(x, axis)``)
    axis : int

    Returns
    -------
    dx : same shape and dtype as ``dy``, C-contiguous
    """
    return _backward("softmax_backward", dy, y, axis, out, backend)


@V.aligned_out
def log_softmax_backward(dy, y, axis=-1, *, out=None, backend=None):
    """Gradient through log_softmax, from the forward OUTPUT ``y``.

    ``dx = dy - exp(y) * sum(dy)``, the sum along ``axis``.

    Parameters
    ----------
    dy : array of rank >= 1, float32 or float64 (gradient at ``y``)
    y : same shape and dtype (``log_softmax(x, axis)``)
    axis : int

    Returns
    -------
    dx : same shape and dtype as ``dy``, C-contiguous
    """
    return _backward("log_softmax_backward", dy, y, axis, out, backend)
