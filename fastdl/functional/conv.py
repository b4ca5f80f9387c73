"""2-D convolution: public kernels (validation, workspace, dispatch).

A layer that calls the registry's kernels directly (validated, C-contiguous, aligned
arrays of one dtype) passes the workspace itself:

    fn = kernel("conv2d_forward")
    ws = workspace(workspace_size(x.shape, W.shape, (Ho, Wo), dtype, False, _threads_for(fn)),
                   dtype)
    fn(x, W, b, y, ws, sh, sw, ph, pw, activation, alpha)
    (conv2d_backward likewise, with backward=True; dx may be None)

``workspace`` is per Python thread, so layers and threads need no buffers of their own;
``_threads_for`` gives one slice of it to each OpenMP thread of a kernel that runs its
own (the Cython one).
"""
from __future__ import annotations

import numbers
import threading

import numpy as np

from fastdl import _threads
from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.functional.dense import ACTIVATIONS

__all__ = ["conv2d_forward", "conv2d_backward"]

# BLAS takes its sizes as 32-bit ints; K = C kh kw and O are GEMM dimensions
_BLAS_INT_MAX = 2**31 - 1

# The compiled kernels work through the output positions in chunks whose im2col
# columns, (C kh kw + O) values each, fill about this many bytes of workspace, so that
# the columns stay in the L2 cache between the copy that writes them and the GEMM that
# reads them, whatever the batch.  At least _MIN_CHUNK positions a chunk, so that a
# layer with very many input channels still gives BLAS a usable product; at most
# _MAX_CHUNK.  Measured (one thread, float32, medians of CPU time; the machine shared):
# forward + backward at LeNet's 1->16 5x5 on 28x28, N = 64, took 2.1 ms (Numba) with
# chunks of 1598 positions and 3.0 ms with 6393; ResNet's 64->64 3x3 on 32x32, N = 32,
# 106 ms (Cython) with 512 KiB chunks (204 positions), 114 ms with 256 KiB and 126 ms
# with 64 KiB; sizes from 256 KiB to 2 MiB were within the noise elsewhere.
WORKSPACE_BYTES = 1 << 19
_MIN_CHUNK = 32
_MAX_CHUNK = 2048

_local = threading.local()  # per Python thread: {dtype: workspace}, never shared


def _pair(name: str, value, lo: int) -> tuple[int, int]:
    """An int or a pair of ints, each in [lo, 2**31 - 1], as a pair.  The upper bound
    keeps every index the kernels compute from it within 64 bits (a stride of 2**63
    wrapped in the Numba kernels: a wrong output, silently)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
        a, b = value
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        a = b = value
    else:
        raise TypeError(f"{name}: expected an int or a pair of ints, got "
                        f"{type(value).__name__}")
    return V.check_int(name, a, lo, _BLAS_INT_MAX), V.check_int(name, b, lo, _BLAS_INT_MAX)


def workspace_size(x_shape, W_shape, out_hw, dtype, backward=False, threads=1) -> int:
    """Elements of the workspace that ``conv2d_forward`` (``backward`` False) or
    ``conv2d_backward`` takes for these shapes on ``threads`` threads: for each thread
    (K + O) q, plus, for the backward pass, O K + O (a thread's share of dW, transposed,
    and of db) and (Ho + kh - 1) Wo (the col2im of one image and input channel), with
    q positions a chunk, K = C kh kw."""
    n = x_shape[0]
    o, c, kh, kw = W_shape
    k = c * kh * kw
    total = n * out_hw[0] * out_hw[1]
    q = min(_MAX_CHUNK, WORKSPACE_BYTES // ((k + o) * np.dtype(dtype).itemsize))
    q = max(1, min(max(q, _MIN_CHUNK), total))
    extra = o * k + o + (out_hw[0] + kh - 1) * out_hw[1] if backward else 0
    return ((k + o) * q + extra) * threads


def _threads_for(fn) -> int:
    # the kernels that run their own threads (the registry's SERIAL_BLAS) take one
    # workspace slice a thread; the others one slice, whatever the count
    return _threads.effective_threads() if getattr(fn, "serial_blas", False) else 1


def workspace(size: int, dtype) -> np.ndarray:
    """A workspace of ``size`` elements of ``dtype`` for the calling thread: one buffer
    per (thread, dtype), grown to the largest size asked and reused, so that two
    threads never share one and a thread allocates only when a layer needs more."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    dtype = np.dtype(dtype)
    buf = bufs.get(dtype)
    if buf is None or buf.shape[0] < size:
        buf = bufs[dtype] = np.empty(size, dtype)
    return buf[:size]


def output_size(name: str, hw, khw, stride, padding) -> tuple[int, int]:
    """(Ho, Wo) of a window (kh, kw) sliding over (H, W) zero-padding by ``padding``;
    ValueError naming ``name`` when the window is larger than the padded input, and
    naming ``padding`` when the padding makes an output plane of 2**31 pixels or more
    (it grows without bound with the padding: NumPy then refused the allocation with
    an error that named nothing)."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = hw, khw, stride, padding
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"{name}: the {kh}x{kw} window is larger than the "
                         f"{'padded ' if ph or pw else ''}input, {h + 2 * ph}x{w + 2 * pw}")
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if (ph or pw) and ho * wo > _BLAS_INT_MAX:
        raise ValueError(f"padding: {ph, pw} makes {ho}x{wo} output planes, more than "
                         f"{_BLAS_INT_MAX} pixels")
    return ho, wo


def _check_weights(x, W):
    if W.shape[1] != x.shape[1]:
        raise ValueError(f"W: expected {x.shape[1]} input channels (as x {x.shape}), "
                         f"got shape {W.shape}")
    if x.shape[1] == 0:
        raise ValueError(f"x: expected at least one channel, got shape {x.shape}")
    if W.shape[2] == 0 or W.shape[3] == 0:
        raise ValueError(f"W: expected a kernel of at least 1x1, got shape {W.shape}")
    k = W.shape[1] * W.shape[2] * W.shape[3]
    if k > _BLAS_INT_MAX or W.shape[0] > _BLAS_INT_MAX:
        raise ValueError(f"W: shape {W.shape} is beyond BLAS's 32-bit sizes")


@V.aligned_out
def conv2d_forward(x, W, b=None, stride=1, padding=0, activation=None, *, alpha=None,
                   out=None, backend=None):
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``) with the
    bias and activation fused into the output pass.

    ``z[n, o, r, s] = b[o] + sum_{c, i, j} W[o, c, i, j] xpad[n, c, r sh + i, s sw + j]``,
    ``y = act(z)``, where ``xpad`` is ``x`` with ``padding`` zeros on each side.

    Parameters
    ----------
    x : (N, C, H, W) float32 or float64, any layout
    W : (O, C, kh, kw), same dtype
    b : (O,) or None, same dtype
    stride : int or (sh, sw), >= 1
    padding : int or (ph, pw), >= 0
    activation : None or one of ``relu, leaky_relu, elu, sigmoid, tanh, gelu, silu,
        softmax, log_softmax`` (as ``dense_forward``; the softmaxes act over the
        channels at each pixel)
    alpha : finite float, optional
        The slope of ``leaky_relu`` (default 0.1) or the scale of ``elu`` (default 1.0).
    out : (N, O, Ho, Wo) C-contiguous, optional
        ``Ho = (H + 2 ph - kh) // sh + 1``, ``Wo = (W + 2 pw - kw) // sw + 1``.

    Returns
    -------
    y : (N, O, Ho, Wo) C-contiguous, the dtype of ``x``
    """
    x = V.as_float("x", x, ndim=4)
    W = V.as_float("W", W, ndim=4, dtype=x.dtype)
    _check_weights(x, W)
    stride = _pair("stride", stride, 1)
    padding = _pair("padding", padding, 0)
    ho, wo = output_size("W", x.shape[2:], W.shape[2:], stride, padding)
    if b is not None:
        b = V.as_float("b", b, ndim=1, dtype=x.dtype)
        V.check_shape("b", b, (W.shape[0],))
    if activation is not None:
        V.check_choice("activation", activation, ACTIVATIONS)
    default = ACTIVATIONS.get(activation)
    alpha = V.check_fits("alpha", V.check_finite("alpha", (0.0 if default is None else default)
                                                 if alpha is None else alpha), x.dtype)
    if activation == "elu" and alpha < 0:
        raise ValueError(f"alpha: expected a value >= 0 for elu, got {alpha}")
    if activation in ("softmax", "log_softmax") and W.shape[0] == 0:
        raise ValueError(f"W: softmax needs at least one output channel, got shape {W.shape}")
    given = out is not None
    out = V.make_out(out, (x.shape[0], W.shape[0], ho, wo), x.dtype)
    if given:
        x, W, b = V.copy_overlapping(out, (x, W, b))
    fn = kernel("conv2d_forward", backend)
    ws = workspace(workspace_size(x.shape, W.shape, (ho, wo), x.dtype, False, _threads_for(fn)),
                   x.dtype)
    fn(x, W, b, out, ws, *stride, *padding, activation, alpha)
    return out


@V.aligned_out
def conv2d_backward(dy, x, W, stride=1, padding=0, need_dx=True, *, out=None, backend=None):
    """Gradients of ``z = conv2d(x, W) + b`` from ``dy``, the gradient at the
    pre-activation output ``z``.

    ``dW[o, c, i, j] = sum_{n, r, s} dy[n, o, r, s] xpad[n, c, r sh + i, s sw + j]``,
    ``db[o] = sum_{n, r, s} dy[n, o, r, s]``, and ``dx`` the transposed convolution of
    ``dy`` with ``W`` (each ``W[o, c, i, j] dy[n, o, r, s]`` added at the input pixel it
    multiplied, the padding's share dropped).

    Parameters
    ----------
    dy : (N, O, Ho, Wo) float32 or float64, any layout
    x : (N, C, H, W), same dtype (the layer's forward input)
    W : (O, C, kh, kw), same dtype
    stride, padding : as in ``conv2d_forward``
    need_dx : bool
        False skips ``dx`` (the first layer needs no input gradient).
    out : tuple (dx, dW, db), optional
        Buffers for the results (``dx`` may be None), each checked for shape, dtype and
        C-contiguity; overwritten, never added to.  A buffer may overlap ``dy``, ``x`` or
        ``W`` (that input is copied first), not another buffer of ``out``.

    Returns
    -------
    dx : (N, C, H, W), or None when ``need_dx`` is False
    dW : (O, C, kh, kw)
    db : (O,)
    """
    dy = V.as_float("dy", dy, ndim=4)
    x = V.as_float("x", x, ndim=4, dtype=dy.dtype)
    W = V.as_float("W", W, ndim=4, dtype=dy.dtype)
    _check_weights(x, W)
    stride = _pair("stride", stride, 1)
    padding = _pair("padding", padding, 0)
    ho, wo = output_size("W", x.shape[2:], W.shape[2:], stride, padding)
    V.check_shape("dy", dy, (x.shape[0], W.shape[0], ho, wo))
    need_dx = V.check_bool("need_dx", need_dx)
    if out is None:
        out = (None, None, None)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError("out: expected a tuple (dx, dW, db) of arrays or None")
    dx = V.make_out(out[0], x.shape, dy.dtype, "out[0]") if need_dx else None
    dW = V.make_out(out[1], W.shape, dy.dtype, "out[1]")
    db = V.make_out(out[2], (W.shape[0],), dy.dtype, "out[2]")
    given = [(f"out[{i}]", r) for i, r in enumerate((dx, dW, db)) if out[i] is not None
             and r is not None]
    for i, (a_name, a) in enumerate(given):
        for b_name, b in given[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{a_name} and {b_name}: the results must not share memory")
        dy, x, W = V.copy_overlapping(a, (dy, x, W))
    fn = kernel("conv2d_backward", backend)
    ws = workspace(workspace_size(x.shape, W.shape, (ho, wo), x.dtype, True, _threads_for(fn)),
                   x.dtype)
    fn(dy, x, W, dx, dW, db, ws, *stride, *padding)
    return dx, dW, db
