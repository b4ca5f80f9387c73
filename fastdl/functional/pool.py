"""2-D max and average pooling: public kernels (validation, dispatch)."""
from __future__ import annotations

import numbers

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.functional.conv import _pair, output_size

__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]

# argmax holds a flat index into an (H, W) plane; int32 halves its traffic against
# int64 and holds any plane of fewer than 2**31 pixels
ARGMAX_DTYPE = np.dtype(np.int32)
_MAX_PLANE = int(np.iinfo(ARGMAX_DTYPE).max)


def _window(x_hw, kernel_size, stride):
    """((kh, kw), (sh, sw), (Ho, Wo)); stride None is the kernel size."""
    khw = _pair("kernel_size", kernel_size, 1)
    stride = khw if stride is None else _pair("stride", stride, 1)
    return khw, stride, output_size("kernel_size", x_hw, khw, stride, (0, 0))


def _x_shape(x_shape, dy) -> tuple:
    """``x_shape`` checked: four ints >= 0, with dy's batch and channels."""
    if not isinstance(x_shape, (tuple, list)) or len(x_shape) != 4 or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in x_shape):
        raise TypeError(f"x_shape: expected a tuple of 4 ints (N, C, H, W), got {x_shape!r}")
    x_shape = tuple(int(d) for d in x_shape)
    if min(x_shape) < 0:
        raise ValueError(f"x_shape: expected sizes >= 0, got {x_shape}")
    if x_shape[:2] != dy.shape[:2]:
        raise ValueError(f"x_shape: expected N and C of dy {dy.shape}, got {x_shape}")
    return x_shape


@V.aligned_out
def max_pool2d(x, kernel_size, stride=None, *, out=None, backend=None):
    """Max pooling over (kh, kw) windows, no padding.

    ``y[n, c, r, s] = max_{i, j} x[n, c, r sh + i, s sw + j]``; ``argmax`` is the flat
    index ``(r sh + i) W + (s sw + j)`` in the (H, W) plane of the first ``(i, j)``, in
    row-major window order, that reaches the max (a NaN wins, the first one, as
    ``np.argmax``, so NaN propagates).

    Parameters
    ----------
    x : (N, C, H, W) float32 or float64, any layout
    kernel_size : int or (kh, kw), >= 1, at most (H, W)
    stride : int or (sh, sw), >= 1; None (default) is ``kernel_size``
    out : tuple (y, argmax), optional
        C-contiguous buffers: ``y`` of the dtype of ``x``, ``argmax`` int32.

    Returns
    -------
    y : (N, C, Ho, Wo), ``Ho = (H - kh) // sh + 1``, ``Wo = (W - kw) // sw + 1``
    argmax : (N, C, Ho, Wo) int32, values in ``[0, H W)``
    """
    x = V.as_float("x", x, ndim=4)
    (kh, kw), (sh, sw), (ho, wo) = _window(x.shape[2:], kernel_size, stride)
    _check_plane("x", x.shape)
    if out is None:
        out = (None, None)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("out: expected a tuple (y, argmax) of arrays or None")
    shape = x.shape[:2] + (ho, wo)
    y = V.make_out(out[0], shape, x.dtype, "out[0]")
    argmax = V.make_out(out[1], shape, ARGMAX_DTYPE, "out[1]")
    if out[0] is not None and out[1] is not None and np.may_share_memory(y, argmax):
        raise ValueError("out[0] and out[1]: the results must not share memory")
    for res in out:
        if res is not None:
            (x,) = V.copy_overlapping(res, (x,))
    kernel("max_pool2d", backend)(x, y, argmax, kh, kw, sh, sw)
    return y, argmax


def _check_plane(name, shape) -> None:
    # argmax holds flat indices into a plane as int32: a larger plane's would wrap
    # (the backward pass then wrote before dx)
    if shape[2] * shape[3] > _MAX_PLANE:
        raise ValueError(f"{name}: a plane of {shape[2]}x{shape[3]} pixels is more than "
                         f"the int32 argmax indexes ({_MAX_PLANE})")


def _as_argmax(argmax, shape, plane: int) -> np.ndarray:
    """``argmax`` checked (integer, ``shape``, values in [0, plane)) as aligned
    C-contiguous int32."""
    argmax = V.as_ndarray("argmax", argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"argmax: expected an integer array, got {argmax.dtype}")
    V.check_shape("argmax", argmax, shape)
    if argmax.size:
        lo, hi = int(argmax.min()), int(argmax.max())
        if lo < 0 or hi >= plane:
            raise ValueError(f"argmax: expected values in [0, {plane}) (flat indices into "
                             f"the input's planes), got {lo if lo < 0 else hi}")
    return V.aligned(np.ascontiguousarray(argmax, dtype=ARGMAX_DTYPE))


@V.aligned_out
def max_pool2d_backward(dy, argmax, x_shape, *, out=None, backend=None):
    """Gradient through ``max_pool2d``: ``dy`` added at the argmax pixels.

    ``dx[n, c].flat[argmax[n, c, r, s]] += dy[n, c, r, s]``, every other pixel 0
    (overlapping windows add).

    Parameters
    ----------
    dy : (N, C, Ho, Wo) float32 or float64
    argmax : (N, C, Ho, Wo) integers in ``[0, H W)``, from ``max_pool2d``
    x_shape : (N, C, H, W), the forward input's shape
    out : (N, C, H, W) C-contiguous, optional

    Returns
    -------
    dx : (N, C, H, W), the dtype of ``dy``
    """
    dy = V.as_float("dy", dy, ndim=4)
    x_shape = _x_shape(x_shape, dy)
    _check_plane("x_shape", x_shape)
    argmax = _as_argmax(argmax, dy.shape, x_shape[2] * x_shape[3])
    given = out is not None
    dx = V.make_out(out, x_shape, dy.dtype)
    if given:
        dy, argmax = V.copy_overlapping(dx, (dy, argmax))
    kernel("max_pool2d_backward", backend)(dy, argmax, dx)
    return dx


@V.aligned_out
def avg_pool2d(x, kernel_size, stride=None, *, out=None, backend=None):
    """Average pooling over (kh, kw) windows, no padding.

    ``y[n, c, r, s] = mean_{i, j} x[n, c, r sh + i, s sw + j]``

    Parameters
    ----------
    x : (N, C, H, W) float32 or float64, any layout
    kernel_size : int or (kh, kw), >= 1, at most (H, W)
    stride : int or (sh, sw), >= 1; None (default) is ``kernel_size``
    out : (N, C, Ho, Wo) C-contiguous, optional

    Returns
    -------
    y : (N, C, Ho, Wo), ``Ho = (H - kh) // sh + 1``, ``Wo = (W - kw) // sw + 1``
    """
    x = V.as_float("x", x, ndim=4)
    (kh, kw), (sh, sw), (ho, wo) = _window(x.shape[2:], kernel_size, stride)
    given = out is not None
    y = V.make_out(out, x.shape[:2] + (ho, wo), x.dtype)
    if given:
        (x,) = V.copy_overlapping(y, (x,))
    kernel("avg_pool2d", backend)(x, y, kh, kw, sh, sw)
    return y


@V.aligned_out
def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, *, out=None, backend=None):
    """Gradient through ``avg_pool2d``: ``dy / (kh kw)`` spread over each window.

    ``dx[n, c, r sh + i, s sw + j] += dy[n, c, r, s] / (kh kw)`` (overlapping windows
    add; pixels no window covers get 0).

    Parameters
    ----------
    dy : (N, C, Ho, Wo) float32 or float64, Ho and Wo as ``avg_pool2d`` gives them
    x_shape : (N, C, H, W), the forward input's shape
    kernel_size, stride : as in ``avg_pool2d``
    out : (N, C, H, W) C-contiguous, optional

    Returns
    -------
    dx : (N, C, H, W), the dtype of ``dy``
    """
    dy = V.as_float("dy", dy, ndim=4)
    x_shape = _x_shape(x_shape, dy)
    (kh, kw), (sh, sw), (ho, wo) = _window(x_shape[2:], kernel_size, stride)
    V.check_shape("dy", dy, x_shape[:2] + (ho, wo))
    given = out is not None
    dx = V.make_out(out, x_shape, dy.dtype)
    if given:
        (dy,) = V.copy_overlapping(dx, (dy,))
    kernel("avg_pool2d_backward", backend)(dy, dx, kh, kw, sh, sw)
    return dx
