"""Gradient clipping in place, by global L2 norm (``clip_grad_norm_``) or by value
(``clip_grad_value_``), over a Parameters object, an array or a list of arrays."""
from __future__ import annotations

import math

import numpy as np

from fastdl import _config
from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.functional.optim import check_hyper


def _grad_arrays(grads) -> list[np.ndarray]:
    """The gradient arrays of a Parameters object, an array, or a list/tuple of them."""
    def one(x, where):
        if isinstance(x, np.ndarray):
            a = x
        elif isinstance(getattr(x, "grad", None), np.ndarray):
            a = x.grad
        else:
            raise TypeError(f"{where}: expected a NumPy array, a Parameters object or a list "
                            f"of arrays, got {type(x).__name__}")
        if type(a) is not np.ndarray:
            a = a.view(np.ndarray)  # np.matrix would reshape to 2-D; a masked array is no Numba type
        if a.dtype not in V.FLOATS:
            raise TypeError(f"{where}: expected a float32 or float64 array, got {a.dtype}")
        if not a.flags.writeable:
            raise ValueError(f"{where}: array is read-only (it is clipped in place)")
        return a

    if isinstance(grads, (list, tuple)):
        return [one(x, f"grads[{i}]") for i, x in enumerate(grads)]
    return [one(grads, "grads")]


def sum_squares(a: np.ndarray, backend) -> float:
    """sum(a**2) of any float array as a Python float, accumulated in float64 (a float32
    dot overflowed to inf from |a| of 1.9e19, and lost squares below 1e-23)."""
    a = V.aligned(np.ascontiguousarray(a)).reshape(-1)
    return kernel("sum_squares", backend)(a)


def _kernel_ready(a: np.ndarray) -> bool:
    # the in-place kernels take flat, C-contiguous, aligned buffers; others go through NumPy
    return a.flags.c_contiguous and a.flags.aligned


def clip_grad_norm_(grads, max_norm, *, backend=None) -> float:
    """Scale the gradients in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : Parameters (its ``.grad`` buffer), an array, or a list/tuple of arrays
        float32/float64, writeable; strided arrays are accepted.  The arrays of a list
        may differ in dtype (each is scaled in its own, as PyTorch's): an exception to
        the one-dtype convention, as they never meet in one operation.
    max_norm : float >= 0

    Returns
    -------
    total_norm : float
        The norm before clipping, ``sqrt(sum of g^2 over every array)``, accumulated
        in float64.

    Notes
    -----
    As ``torch.nn.utils.clip_grad_norm_``: ``coef = max_norm / (total_norm + 1e-6)``,
    capped at 1, multiplies every gradient when it is below 1.  A NaN norm makes
    every gradient NaN and an infinite one zeroes the finite gradients (PyTorch's
    behaviour with ``error_if_nonfinite=False``).
    """
    arrays = _grad_arrays(grads)
    max_norm = check_hyper("max_norm", max_norm, lo=0.0)
    _config.check_backend(backend)
    total = math.sqrt(math.fsum(sum_squares(a, backend) for a in arrays))
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # also NaN
        for a in arrays:
            if _kernel_ready(a):
                kernel("scale", backend)(a.reshape(-1), coef)
            else:
                a *= coef
    return total


def clip_grad_value_(grads, clip, *, backend=None) -> None:
    """Clip every gradient in place to ``[-clip, clip]`` (NaN stays NaN).

    ``grads`` as in ``clip_grad_norm_``; ``clip`` a float >= 0."""
    arrays = _grad_arrays(grads)
    clip = check_hyper("clip", clip, lo=0.0)
    _config.check_backend(backend)
    for a in arrays:
        if _kernel_ready(a):
            kernel("clip_value", backend)(a.reshape(-1), clip)
        else:
            np.clip(a, -clip, clip, out=a)
