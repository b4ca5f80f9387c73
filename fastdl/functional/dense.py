"""Dense (fully connected) layer: public kernels."""
from __future__ import annotations

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["dense_forward", "dense_backward", "ACTIVATIONS"]

# activation name -> default alpha (None: the activation takes no alpha)
ACTIVATIONS = {"relu": None, "leaky_relu": 0.1, "elu": 1.0, "sigmoid": None, "tanh": None,
               "gelu": None, "silu": None, "softmax": None, "log_softmax": None}


@V.aligned_out
def dense_forward(x, W, b=None, activation=None, *, alpha=None, out=None, backend=None):
    """Fully connected layer with the bias and activation fused into the output pass.

    Parameters
    ----------
    x : (N, K) float32 or float64
    W : (K, M), same dtype
    b : (M,) or None, same dtype
    activation : None or one of ``relu, leaky_relu, elu, sigmoid, tanh, gelu, silu,
        softmax, log_softmax``
    alpha : finite float, optional
        The slope of ``leaky_relu`` (default 0.1) or the scale of ``elu`` (default 1.0,
        and >= 0), as the activation kernels take it.
    out : (N, M) C-contiguous, optional
        May overlap ``x``, ``W`` or ``b``: an input it overlaps is copied first.

    Returns
    -------
    y : (N, M) C-contiguous, ``y = act(x @ W + b)``
    """
    x = V.as_float("x", x, ndim=2)
    W = V.as_float("W", W, ndim=2, dtype=x.dtype)
    if W.shape[0] != x.shape[1]:
        raise ValueError(f"W: expected shape ({x.shape[1]}, M) to match x {x.shape}, "
                         f"got {W.shape}")
    if b is not None:
        b = V.as_float("b", b, ndim=1, dtype=x.dtype)
        V.check_shape("b", b, (W.shape[1],))
    if activation is not None:
        V.check_choice("activation", activation, ACTIVATIONS)
    default = ACTIVATIONS.get(activation)
    if alpha is None:
        alpha = 0.0 if default is None else default
    alpha = V.check_fits("alpha", V.check_finite("alpha", alpha), x.dtype)
    if activation == "elu" and alpha < 0:
        raise ValueError(f"alpha: expected a value >= 0 for elu, got {alpha}")
    if activation in ("softmax", "log_softmax") and W.shape[1] == 0:
        raise ValueError("W: softmax needs at least one output column, got shape "
                         f"{W.shape}")
    given = out is not None
    out = V.make_out(out, (x.shape[0], W.shape[1]), x.dtype)
    if given:
        x, W, b = V.copy_overlapping(out, (x, W, b))
    kernel("dense_forward", backend)(x, W, b, out, activation, alpha)
    return out


@V.aligned_out
def dense_backward(dy, x, W, need_dx=True, *, out=None, backend=None):
    """Gradients of ``y = x @ W + b`` from ``dy``, the gradient at the pre-activation output.

    Parameters
    ----------
    dy : (N, M) float32 or float64
    x : (N, K), same dtype (the layer's forward input)
    W : (K, M), same dtype
    need_dx : bool (or NumPy bool; anything else is a TypeError)
        False skips ``dx`` (the first layer needs no input gradient).
    out : tuple (dx, dW, db), optional
        Buffers to write the results into (``dx`` may be None); each is checked
        for shape, dtype and C-contiguity.  Results are overwritten, never added to.
        A buffer may overlap ``dy``, ``x`` or ``W`` (that input is copied first), not
        another buffer of ``out``.

    Returns
    -------
    dx : (N, K) ``dy @ W.T``, or None when ``need_dx`` is False
    dW : (K, M) ``x.T @ dy``
    db : (M,) ``dy.sum(axis=0)``
    """
    dy = V.as_float("dy", dy, ndim=2)
    x = V.as_float("x", x, ndim=2, dtype=dy.dtype)
    W = V.as_float("W", W, ndim=2, dtype=dy.dtype)
    n, m = dy.shape
    if x.shape[0] != n:
        raise ValueError(f"x: expected {n} rows (as dy {dy.shape}), got shape {x.shape}")
    V.check_shape("W", W, (x.shape[1], m))
    need_dx = V.check_bool("need_dx", need_dx)
    if out is None:
        out = (None, None, None)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError("out: expected a tuple (dx, dW, db) of arrays or None")
    dx = V.make_out(out[0], x.shape, dy.dtype, "out[0]") if need_dx else None
    dW = V.make_out(out[1], W.shape, dy.dtype, "out[1]")
    db = V.make_out(out[2], (m,), dy.dtype, "out[2]")
    # only buffers the caller gave can overlap anything (about 1.5 us for each checked)
    given = [(f"out[{i}]", r) for i, r in enumerate((dx, dW, db)) if out[i] is not None
             and r is not None]
    for i, (a_name, a) in enumerate(given):
        for b_name, b in given[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{a_name} and {b_name}: the results must not share memory")
        dy, x, W = V.copy_overlapping(a, (dy, x, W))
    kernel("dense_backward", backend)(dy, x, W, dx, dW, db)
    return dx, dW, db
