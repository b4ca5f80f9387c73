"""In-place optimizer kernels: public functions ``sgd_update_`` and ``adam_update_``.

Each validates every argument before any array is touched (a refused call leaves
every array it was given unchanged), then makes one fused pass over memory in
the chosen backend.  An in-place array that is not aligned to its item size
(a view of a byte buffer) is updated through an aligned copy, copied back.  ``param`` and the state arrays are updated in place;
``grad`` is only read.
"""
from __future__ import annotations

import math

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["sgd_update_", "adam_update_"]


# ---- checks shared with fastdl.optim ----

check_hyper = V.check_finite  # a finite real hyper-parameter in the interval
check_bool = V.check_bool


def check_step(value) -> int:
    """An int >= 1 (any size: the bias corrections take it as a float exponent, and
    ``beta ** step`` is 0 long before it stops fitting a float)."""
    step = V.check_int("step", value, lo=1)
    try:
        float(step)
    except OverflowError:  # from about 2**1024 - 2**970 up
        raise ValueError(f"step: expected an int in the float range (a float exponent), "
                         f"got {V.show_int(step)}") from None
    return step


def inplace_array(name: str, x, like: np.ndarray | None = None,
                  like_name: str = "param") -> np.ndarray:
    """An array the kernel updates in place: a float ndarray, C-contiguous and
    writeable (it cannot be updated through a copy), matching ``like``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array (updated in place), "
                        f"got {type(x).__name__}")
    if x.dtype not in V.FLOATS:
        raise TypeError(f"{name}: expected a float32 or float64 array, got {x.dtype}")
    if like is not None:
        if x.dtype != like.dtype:
            raise TypeError(f"{name}: expected dtype {like.dtype} (as {like_name}), got {x.dtype}")
        if x.shape != like.shape:
            raise ValueError(f"{name}: expected shape {like.shape} (as {like_name}), "
                             f"got {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array (it is updated in place and "
                         f"cannot be updated through a copy)")
    if not x.flags.writeable:
        raise ValueError(f"{name}: array is read-only (it is updated in place)")
    return x


def grad_array(grad, param: np.ndarray) -> np.ndarray:
    """``grad`` as a C-contiguous array of param's dtype and shape (copied if strided)."""
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"grad: expected a NumPy array, got {type(grad).__name__}")
    g = V.as_float("grad", grad, dtype=param.dtype)
    if g.shape != param.shape:
        raise ValueError(f"grad: expected shape {param.shape} (as param), got {g.shape}")
    return g


def check_disjoint(**arrays) -> None:
    """No two of the arrays share memory (an update would read what it just wrote)."""
    items = [(k, a) for k, a in arrays.items() if a is not None]
    for i, (ka, a) in enumerate(items):
        for kb, b in items[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{kb}: must not share memory with {ka}")


def clip_arg(name: str, value) -> float:
    """A clip threshold >= 0, or None (no clipping: inf)."""
    if value is None:
        return math.inf
    return check_hyper(name, value, lo=0.0)


def _flat(x):
    return None if x is None else x.reshape(-1)


def _write_back(*pairs) -> None:
    # (array, V.aligned(array)): a misaligned array was updated through a copy (a
    # subclass through a view of its own memory, which needs nothing)
    for a, work in pairs:
        if work is not a and not np.may_share_memory(work, a):
            np.copyto(a, work)


# ---- public kernels ----

def sgd_update_(param, grad, lr, momentum=0.0, velocity=None, nesterov=False, l1=0.0, l2=0.0,
                *, grad_scale=1.0, grad_clip=None, backend=None):
    """One SGD step in place, optionally with momentum (the course's form) or Nesterov.

    Parameters
    ----------
    param : ndarray, float32 or float64, any shape, C-contiguous and writeable
        Updated in place.
    grad : ndarray, same shape and dtype (any layout; only read)
    lr : float >= 0
    momentum : float in [0, 1)
    velocity : ndarray or None, same shape and dtype as ``param``, C-contiguous
        Needed when ``momentum > 0``; updated in place.  When given, it is updated
        by the formula below whatever ``momentum`` is.
    nesterov : bool
    l1, l2 : float >= 0
        Penalty ``l1 * sum|w| + l2 * sum w^2`` (elastic net when both are set).
    grad_scale : float >= 0, keyword only
        Multiplies the gradient first (the global-norm clipping coefficient;
        see ``fastdl.clip_grad_norm_``).
    grad_clip : float >= 0 or None, keyword only
        Clips the scaled gradient to ``[-grad_clip, grad_clip]``.

    Returns
    -------
    param (the same array)

    Notes
    -----
    With ``g = clip(grad_scale * grad, -grad_clip, grad_clip) + l1 sign(w) + 2 l2 w``::

        plain:     w -= lr g
        momentum:  v = momentum v + lr g;  w -= v
        Nesterov:  v = momentum v + lr g;  w -= momentum v + lr g     (v: the new velocity)

    The Nesterov form is PyTorch's (``buf = m buf + g; w -= lr (g + m buf)``) with the
    velocity carrying the learning rate, as the course's momentum does; with a
    constant ``lr`` the two give the same trajectory.  ``nesterov`` with
    ``momentum = 0`` is plain SGD.  ``grad`` is never modified.  A velocity entry below
    the dtype's smallest normal number (float32: 1.2e-38) is stored as 0: a parameter
    whose gradient stays 0 would decay it into the subnormals, whose arithmetic takes
    the CPU's slow path at every later step.
    """
    param = inplace_array("param", param)
    g = grad_array(grad, param)
    lr = check_hyper("lr", lr, lo=0.0)
    momentum = check_hyper("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
    if velocity is not None:
        velocity = inplace_array("velocity", velocity, like=param)
    elif momentum > 0:
        raise ValueError(f"velocity: momentum={momentum} > 0 needs a velocity array "
                         f"(same shape and dtype as param), got None")
    nesterov = check_bool("nesterov", nesterov)
    l1 = check_hyper("l1", l1, lo=0.0)
    l2 = check_hyper("l2", l2, lo=0.0)
    grad_scale = check_hyper("grad_scale", grad_scale, lo=0.0)
    clip = clip_arg("grad_clip", grad_clip)
    check_disjoint(param=param, velocity=velocity, grad=grad)
    w, vel = V.aligned(param), V.aligned(velocity)
    kernel("sgd_update", backend)(_flat(g), _flat(w), _flat(vel), lr, momentum,
                                  nesterov, l1, l2, grad_scale, clip)
    _write_back((param, w), (velocity, vel))
    return param


def adam_update_(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, l1=0.0, l2=0.0, *, grad_scale=1.0, grad_clip=None,
                 backend=None):
    """One Adam (AdamW with ``weight_decay``) step in place, with bias correction.

    Parameters
    ----------
    param : ndarray, float32 or float64, any shape, C-contiguous and writeable
    grad : ndarray, same shape and dtype (any layout; only read)
    m, v : ndarray, same shape and dtype as ``param``, C-contiguous
        First and second moment estimates (zeros before step 1); updated in place.
    step : int >= 1
        The number of this step, counting from 1 (bias correction).
    lr : float >= 0
    beta1, beta2 : float in [0, 1)
    eps : float > 0, and not 0 in ``param``'s dtype
    weight_decay : float >= 0
        Decoupled decay, as ``torch.optim.AdamW``.
    l1, l2 : float >= 0
        Penalty ``l1 * sum|w| + l2 * sum w^2`` added to the gradient (coupled).
    grad_scale, grad_clip : keyword only
        As in ``sgd_update_``.

    Returns
    -------
    param (the same array)

    Notes
    -----
    With ``g = clip(grad_scale * grad, -grad_clip, grad_clip) + l1 sign(w) + 2 l2 w``
    (``w`` before the decay)::

        w *= 1 - lr * weight_decay
        m = beta1 m + (1 - beta1) g
        v = beta2 v + (1 - beta2) g^2
        w -= lr * m_hat / (sqrt(v_hat) + eps),   m_hat = m / (1 - beta1^step),
                                                 v_hat = v / (1 - beta2^step)

    ``eps`` is added to ``sqrt(v_hat)`` (as PyTorch; TensorFlow adds it to
    ``sqrt(v)`` before the correction).  One pass: reads w, g, m, v, writes w, m, v.
    An ``m`` or ``v`` entry below the dtype's smallest normal number (float32: 1.2e-38)
    is stored, and used, as 0 (as the velocity in ``sgd_update_``: Adam over subnormal
    moments ran 1.7x slower).
    """
    param = inplace_array("param", param)
    g = grad_array(grad, param)
    m = inplace_array("m", m, like=param)
    v = inplace_array("v", v, like=param)
    step = check_step(step)
    lr = check_hyper("lr", lr, lo=0.0)
    beta1 = check_hyper("beta1", beta1, lo=0.0, hi=1.0, hi_open=True)
    beta2 = check_hyper("beta2", beta2, lo=0.0, hi=1.0, hi_open=True)
    eps = V.check_fits("eps", check_hyper("eps", eps, lo=0.0, lo_open=True), param.dtype,
                       nonzero=True)
    weight_decay = check_hyper("weight_decay", weight_decay, lo=0.0)
    l1 = check_hyper("l1", l1, lo=0.0)
    l2 = check_hyper("l2", l2, lo=0.0)
    grad_scale = check_hyper("grad_scale", grad_scale, lo=0.0)
    clip = clip_arg("grad_clip", grad_clip)
    check_disjoint(param=param, m=m, v=v, grad=grad)
    w, m_, v_ = V.aligned(param), V.aligned(m), V.aligned(v)
    kernel("adam_update", backend)(_flat(g), _flat(w), _flat(m_), _flat(v_), step, lr,
                                   beta1, beta2, eps, weight_decay, l1, l2, grad_scale, clip)
    _write_back((param, w), (m, m_), (v, v_))
    return param
