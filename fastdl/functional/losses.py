"""Losses: public kernels.

Every loss takes ``reduction`` in ``"mean"`` (the default), ``"sum"`` or ``"none"``:

* ``"mean"`` and ``"sum"`` return a 0-D NumPy array of the input's dtype (not a
  Python float), so that the dtype is kept and ``out=`` works as for any result;
  ``float(loss)`` gives the number.  A mean over zero elements (or over a zero
  total class weight) is nan, as in NumPy and PyTorch.
* ``"none"`` returns the unreduced losses: elementwise losses (``mse``,
  ``binary_cross_entropy*``) keep the input's shape, as PyTorch's; row losses
  (``softmax_cross_entropy``, ``cross_entropy``, ``kl_divergence``) are ``(N,)``.
* Gradients (``*_backward`` and the ``dlogits`` of ``softmax_cross_entropy``) are
  the gradient of the reduced loss; for ``"none"`` they are the gradient of the
  sum of the unreduced losses.

Results never overlap the inputs: an ``out=`` that shares memory with an input is
refused (the compiled kernels read an input after writing the result).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["mse", "mse_backward", "binary_cross_entropy", "binary_cross_entropy_backward",
           "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
           "softmax_cross_entropy", "cross_entropy", "kl_divergence", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- validation helpers

def _pair(a_name, a, b_name, b):
    """Two float arrays of one dtype and one shape, C-contiguous."""
    a = V.as_float(a_name, a)
    b = V.as_float(b_name, b, dtype=a.dtype)
    if b.shape != a.shape:
        raise ValueError(f"{b_name}: expected shape {a.shape} (as {a_name}), got {b.shape}")
    return a, b


def _rows(name, x):
    """A float (N, C) array with C >= 1."""
    x = V.as_float(name, x, ndim=2)
    if x.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one class column, got shape {x.shape}")
    return x


def _class_target(name, target, x):
    """Integer labels (N,) in [0, C) as int64, or probabilities (N, C) of x's dtype."""
    n, c = x.shape
    t = V.as_ndarray(name, target)
    if t.dtype.kind in "iu":
        return V.as_labels(name, t, n, c)
    if t.dtype.kind != "f":
        raise TypeError(f"{name}: expected integer labels ({n},) or {x.dtype} probabilities "
                        f"({n}, {c}), got dtype {t.dtype}")
    if t.ndim != 2:
        raise ValueError(f"{name}: expected integer labels ({n},) or probabilities ({n}, {c}), "
                         f"got a {t.dtype} array of shape {t.shape}")
    t = V.as_float(name, t, ndim=2, dtype=x.dtype)
    V.check_shape(name, t, (n, c))
    return t


@functools.lru_cache(maxsize=32)
def _ones(c, dtype):
    # the class weights when none are given, one array per (C, dtype): kernels only read
    # it (bounded: a caller going through many class counts would keep every array)
    return np.ones(c, dtype)


def _eps(eps, dtype, binary=True):
    if eps is None:
        return float(np.finfo(dtype).eps)
    # eps <= 0.5 keeps the clipping interval [eps, 1 - eps] non-empty; eps must not round
    # to 0 in the dtype (log 0), nor, for the binary losses, 1 - eps to 1 (log(1 - 1):
    # a NaN loss and gradient for a perfect prediction)
    return V.check_fits("eps", V.check_real("eps", eps, lo=0.0, hi=0.5, lo_open=True), dtype,
                        nonzero=True, below_one=binary)


def _out(out, shape, dtype, inputs, name="out"):
    """``out`` checked (or a new array), refusing one that overlaps an input."""
    out_given = out is not None
    out = V.make_out(out, shape, dtype, name)
    if out_given:
        for in_name, arr in inputs.items():
            if arr is not None and np.may_share_memory(out, arr):
                raise ValueError(f"{name}: must not share memory with the input {in_name}")
    return out


def _reduced(total, count, reduction, dtype, out, inputs):
    """The 0-D result of a "mean" or "sum" from a float64 total."""
    out = _out(out, (), dtype, inputs)
    if reduction == "mean":
        total = total / count if count else float("nan")
    out[()] = total
    return out


def _grad_scale(reduction, count):
    return 1.0 / count if reduction == "mean" and count else 1.0


def _elementwise(name, a, b, reduction, out, backend, inputs, *scalars):
    if reduction == "none":
        out = _out(out, a.shape, a.dtype, inputs)
        kernel(name, backend)(a.reshape(-1), b.reshape(-1), out.reshape(-1), *scalars)
        return out
    if out is not None:  # checked before the kernel runs
        _out(out, (), a.dtype, inputs)
    total = kernel(name, backend)(a.reshape(-1), b.reshape(-1), None, *scalars)
    return _reduced(total, a.size, reduction, a.dtype, out, inputs)


# ---------------------------------------------------------------- mean squared error

@V.aligned_out
def mse(pred, target, reduction="mean", *, out=None, backend=None):
    """Mean squared error.

    Parameters
    ----------
    pred : array of any shape, float32 or float64
    target : same shape and dtype
    reduction : ``"mean"`` (over all elements), ``"sum"`` or ``"none"``

    Returns
    -------
    loss : 0-D array (``"mean"``, ``"sum"``) or ``pred``'s shape (``"none"``), ``pred``'s
        dtype; elementwise ``(pred - target)^2``.
    """
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    pred, target = _pair("pred", pred, "target", target)
    return _elementwise("mse", pred, target, reduction, out, backend,
                        dict(pred=pred, target=target))


@V.aligned_out
def mse_backward(pred, target, reduction="mean", *, out=None, backend=None):
    """Gradient of ``mse`` with respect to ``pred``: ``2 (pred - target) / n`` for
    ``"mean"`` (n = ``pred.size``), ``2 (pred - target)`` for ``"sum"`` and ``"none"``.

    Returns an array of ``pred``'s shape and dtype."""
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    pred, target = _pair("pred", pred, "target", target)
    out = _out(out, pred.shape, pred.dtype, dict(pred=pred, target=target))
    kernel("mse_backward", backend)(pred.reshape(-1), target.reshape(-1), out.reshape(-1),
                                    _grad_scale(reduction, pred.size))
    return out


# ---------------------------------------------------------------- binary cross-entropy

@V.aligned_out
def binary_cross_entropy(p, y, eps=1e-7, reduction="mean", *, out=None, backend=None):
    """Binary cross-entropy on probabilities.

    Parameters
    ----------
    p : array of any shape, float32 or float64; predicted probabilities, clipped to
        ``[eps, 1 - eps]`` (the bounds are rounded to ``p``'s dtype).  Values are not
        checked: anything outside the interval is clipped.
    y : same shape and dtype; targets in ``[0, 1]`` (soft targets allowed)
    eps : float in ``(0, 0.5]`` with ``1 - eps < 1`` in ``p``'s dtype (float32:
        ``eps >= 2**-24``, 6e-8)
    reduction : ``"mean"``, ``"sum"`` or ``"none"``

    Returns
    -------
    loss : 0-D or ``p``'s shape; elementwise ``-(y log pc + (1 - y) log(1 - pc))``,
        ``pc = clip(p, eps, 1 - eps)``.
    """
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    p, y = _pair("p", p, "y", y)
    eps = _eps(eps, p.dtype)
    return _elementwise("binary_cross_entropy", p, y, reduction, out, backend,
                        dict(p=p, y=y), eps)


@V.aligned_out
def binary_cross_entropy_backward(p, y, eps=1e-7, reduction="mean", *, out=None,
                                  backend=None):
    """Gradient of ``binary_cross_entropy`` with respect to ``p``.

    ``(pc - y) / (pc (1 - pc))`` (divided by ``p.size`` for ``"mean"``) where
    ``eps <= p <= 1 - eps``, and 0 where ``p`` is clipped: the gradient of the clipped
    loss (as Keras), not PyTorch's unclipped ``BCELoss`` gradient.  Same shape and dtype
    as ``p``."""
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    p, y = _pair("p", p, "y", y)
    eps = _eps(eps, p.dtype)
    out = _out(out, p.shape, p.dtype, dict(p=p, y=y))
    kernel("binary_cross_entropy_backward", backend)(p.reshape(-1), y.reshape(-1),
                                                     out.reshape(-1), eps,
                                                     _grad_scale(reduction, p.size))
    return out


@V.aligned_out
def binary_cross_entropy_with_logits(z, y, reduction="mean", *, out=None, backend=None):
    """Binary cross-entropy on logits, stable for every ``z``.

    Parameters
    ----------
    z : array of any shape, float32 or float64; logits
    y : same shape and dtype; targets in ``[0, 1]``
    reduction : ``"mean"``, ``"sum"`` or ``"none"``

    Returns
    -------
    loss : 0-D or ``z``'s shape; elementwise
        ``max(z, 0) - z y + log1p(exp(-|z|))`` (= ``-(y log s + (1 - y) log(1 - s))``,
        ``s = sigmoid(z)``), finite for every finite ``z``.
    """
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    z, y = _pair("z", z, "y", y)
    return _elementwise("binary_cross_entropy_with_logits", z, y, reduction, out, backend,
                        dict(z=z, y=y))


@V.aligned_out
def binary_cross_entropy_with_logits_backward(z, y, reduction="mean", *, out=None,
                                              backend=None):
    """Gradient of ``binary_cross_entropy_with_logits`` with respect to ``z``:
    ``sigmoid(z) - y``, divided by ``z.size`` for ``"mean"``.  Same shape and dtype
    as ``z``."""
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    z, y = _pair("z", z, "y", y)
    out = _out(out, z.shape, z.dtype, dict(z=z, y=y))
    kernel("binary_cross_entropy_with_logits_backward", backend)(
        z.reshape(-1), y.reshape(-1), out.reshape(-1), _grad_scale(reduction, z.size))
    return out


# ---------------------------------------------------------------- row losses

def _row_result(rows, reduction, denom, out, inputs):
    if reduction == "none":
        return rows
    total = float(np.add.reduce(rows, dtype=np.float64))  # np.sum's wrapper: 2x the time here
    return _reduced(total, denom, "mean" if reduction == "mean" else "sum", rows.dtype,
                    out, inputs)


def _row_buffer(n, dtype, reduction, out, inputs, name="out"):
    """The (N,) per-row loss buffer: ``out`` itself for "none", else a temporary
    (``out`` for a reduction is checked here, before any kernel runs)."""
    if reduction == "none":
        return _out(out, (n,), dtype, inputs, name)
    if out is not None:
        _out(out, (), dtype, inputs, name)
    return np.empty(n, dtype=dtype)


@V.aligned_out
def softmax_cross_entropy(logits, target, weight=None, label_smoothing=0.0, reduction="mean",
                          *, out=None, backend=None):
    """Softmax cross-entropy and its gradient in one fused pass over each row.

    Exactly ``torch.nn.CrossEntropyLoss(weight, reduction, label_smoothing)`` on
    ``logits`` and its gradient, with p = softmax(logits[n]), eps = ``label_smoothing``
    and w = ``weight`` (ones when None):

    * labels: ``loss_n = (1 - eps) w[y_n] (-log p[y_n]) + (eps / C) sum_c w[c] (-log p[c])``;
      ``"mean"`` divides the sum by ``sum_n w[y_n]`` (by N without weights).
    * probabilities: ``loss_n = -sum_c w[c] ((1 - eps) t[n, c] + eps / C) log p[c]``;
      ``"mean"`` divides by N (PyTorch's rule), whatever the weights.

    One deliberate difference: a term whose coefficient is exactly 0 contributes 0
    even where ``p[c] = 0`` (a logit of -inf): 0 log 0 = 0, where PyTorch gives nan.
    With labels, ``"mean"`` and a zero total weight ``sum_n w[y_n] = 0`` the loss and
    every gradient entry are nan, as in PyTorch.

    Parameters
    ----------
    logits : (N, C) float32 or float64, C >= 1
    target : (N,) integer labels in ``[0, C)``, or (N, C) probabilities of ``logits``'s dtype
    weight : (C,) of ``logits``'s dtype, entries >= 0, or None
    label_smoothing : float in ``[0, 1]``
    reduction : ``"mean"``, ``"sum"`` or ``"none"``
    out : None or a tuple ``(loss, dlogits)`` of preallocated results (either may be None)

    Returns
    -------
    loss : 0-D (``"mean"``, ``"sum"``) or (N,) (``"none"``), ``logits``'s dtype
    dlogits : (N, C), the gradient of ``loss`` (for ``"none"``: of ``loss.sum()``),
        ``scale (p[n] sum_c a[n, c] - a[n])`` with ``a[n, c]`` the coefficient of
        ``-log p[c]`` in ``loss_n`` above.
    """
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    logits = _rows("logits", logits)
    n, c = logits.shape
    dtype = logits.dtype
    target = _class_target("target", target, logits)
    if weight is None:
        w = _ones(c, dtype)
    else:
        w = V.as_float("weight", weight, ndim=1, dtype=dtype)
        V.check_shape("weight", w, (c,))
        bad = ~(w >= 0)  # also refuses nan
        if bad.any():
            raise ValueError(f"weight: expected entries >= 0, got {w[bad][0]}")
    eps = V.check_real("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
    if out is None:
        loss_out = dlogits_out = None
    elif isinstance(out, tuple) and len(out) == 2:
        loss_out, dlogits_out = out
    else:
        raise TypeError(f"out: expected None or a tuple (loss, dlogits), got "
                        f"{type(out).__name__}")
    inputs = dict(logits=logits, target=target, weight=w)
    rows = _row_buffer(n, dtype, reduction, loss_out, inputs, "out[0]")
    dlogits = _out(dlogits_out, (n, c), dtype, dict(inputs, loss=rows), "out[1]")
    if loss_out is not None and dlogits_out is not None and np.may_share_memory(loss_out,
                                                                               dlogits):
        # for "mean" and "sum" the check above saw the row buffer, not out[0]
        raise ValueError("out[0] and out[1]: the results must not share memory")

    if target.ndim == 1 and weight is not None:
        denom = float(np.sum(w[target], dtype=np.float64))  # O(N), before the row pass
    else:
        denom = float(n)
    wide = False
    if reduction != "mean":
        grad_scale = 1.0
    elif denom != 0:
        big = float(np.finfo(dtype).max)
        if denom * big < 1.0:
            # subnormal weights: 1 / denom overflowed the dtype, and the gradient was inf
            # or NaN where the loss was finite.  Both scaled by a power of two (exact); the
            # weighted mean is their ratio
            k = -math.frexp(denom)[1]
            with np.errstate(over="ignore"):
                w64 = np.ldexp(w.astype(np.float64), k)
            denom = math.ldexp(denom, k)
            # a weight the scaling takes beyond float32 (a class no target has, weighed
            # in by label smoothing): clamped, it made a mean that overflows finite and
            # 8x too small; computed in float64 and rounded, it is inf.  (A float64
            # weight beyond float64 this way, 2**1024 times the targets', stays clamped.)
            wide = dtype == np.float32 and bool(np.max(w64) > big)
            w = w64 if wide else np.minimum(w64, big).astype(dtype)
        grad_scale = 1.0 / denom
    else:
        grad_scale = float("nan")  # 0/0, as PyTorch: nan loss and gradient

    if wide:
        rows64, d64 = np.empty(n), np.empty((n, c))
        kernel("softmax_cross_entropy", backend)(logits.astype(np.float64), target, w,
                                                 rows64, d64, eps, grad_scale)
        with np.errstate(over="ignore"):  # rounded to float32: inf where beyond it
            dlogits[...] = d64
            total = float(np.add.reduce(rows64))
            return _reduced(total, denom, "mean", dtype, loss_out, inputs), dlogits
    kernel("softmax_cross_entropy", backend)(logits, target, w, rows, dlogits, eps, grad_scale)
    return _row_result(rows, reduction, denom, loss_out, inputs), dlogits


@V.aligned_out
def cross_entropy(probs, target, eps=None, reduction="mean", *, out=None, backend=None):
    """Multi-class cross-entropy (log loss) on probabilities, as ``sklearn.metrics.log_loss``.

    ``loss_n = -sum_c t[n, c] log clip(probs[n, c], eps, 1 - eps)`` (0 log 0 = 0), with
    ``t`` one-hot for integer labels.  ``"mean"`` divides by N (scikit-learn's
    ``normalize=True``), ``"sum"`` is ``normalize=False``.  Probabilities are clipped,
    not renormalised nor checked, as scikit-learn >= 1.5 does.

    Parameters
    ----------
    probs : (N, C) float32 or float64
    target : (N,) integer labels in ``[0, C)``, or (N, C) of ``probs``'s dtype (one-hot or soft)
    eps : float in ``(0, 0.5]``, or None for the machine epsilon of ``probs``'s dtype
        (scikit-learn's choice: 2.2e-16 for float64, 1.2e-7 for float32)
    reduction : ``"mean"``, ``"sum"`` or ``"none"``

    Returns
    -------
    loss : 0-D or (N,), ``probs``'s dtype
    """
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    probs = _rows("probs", probs)
    target = _class_target("target", target, probs)
    eps = _eps(eps, probs.dtype, binary=False)
    inputs = dict(probs=probs, target=target)
    rows = _row_buffer(probs.shape[0], probs.dtype, reduction, out, inputs)
    kernel("cross_entropy", backend)(probs, target, rows, eps)
    return _row_result(rows, reduction, probs.shape[0], out, inputs)


@V.aligned_out
def kl_divergence(p, q, reduction="mean", *, out=None, backend=None):
    """Kullback-Leibler divergence KL(p || q) of each row.

    ``loss_n = sum_c p[n, c] log(p[n, c] / q[n, c])`` with 0 log(0 / q) = 0 (as
    ``scipy.special.rel_entr``); ``"mean"`` averages the row sums over N (PyTorch's
    ``reduction="batchmean"``, not its elementwise ``"mean"``).  Entries are not
    checked: ``q = 0 < p`` gives inf, a negative entry nan.

    Parameters
    ----------
    p, q : (N, C) float32 or float64, the same shape and dtype
    reduction : ``"mean"``, ``"sum"`` or ``"none"``

    Returns
    -------
    loss : 0-D or (N,), ``p``'s dtype
    """
    reduction = V.check_choice("reduction", reduction, REDUCTIONS)
    p = V.as_float("p", p, ndim=2)
    q = V.as_float("q", q, ndim=2, dtype=p.dtype)
    V.check_shape("q", q, p.shape)
    inputs = dict(p=p, q=q)
    rows = _row_buffer(p.shape[0], p.dtype, reduction, out, inputs)
    kernel("kl_divergence", backend)(p, q, rows)
    return _row_result(rows, reduction, p.shape[0], out, inputs)
