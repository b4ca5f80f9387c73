"""Elementwise activations: public kernels.

Each activation ``f`` is a pair: ``F.f(x) -> y = f(x)`` and
``F.f_backward(dy, x) -> dx = dy * f'(x)``, the gradient through the
activation from its forward input ``x``.  Any rank (0-D included) and any
layout is accepted; the result is a new C-contiguous array of ``x``'s shape and
dtype, or ``out=``, which may be ``x`` itself (in place) or, for a backward,
``dy`` or ``x``.

Conventions, the same in every backend:

* at a kink the derivative is the left one, as PyTorch: ``relu'(0) = 0``,
  ``leaky_relu'(0) = alpha``, ``elu'(0) = alpha``;
* NaN in ``x`` gives NaN in ``y`` and in ``dx``; ``dx = dy * f'(x)`` follows IEEE
  (``inf * 0`` is NaN);
* at ``x = +-inf`` each function and derivative is its limit: ``gelu(-inf) = 0``,
  ``silu(-inf) = 0``, ``gelu'(inf) = silu'(inf) = 1``, ``sigmoid'(+-inf) = 0``.
"""
from __future__ import annotations

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu",
           "elu_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
           "gelu", "gelu_backward", "silu", "silu_backward"]


def _result(out, like, *inputs):
    """The result buffer, and the inputs with any that partly overlaps it copied.

    An exact alias (``out`` is ``x``) is fine for an elementwise kernel, which reads
    each element before writing it; a partial overlap (a shifted view of the
    same memory) would read already-written values, so that input is copied."""
    res = V.make_out(out, like.shape, like.dtype)
    return res, V.copy_overlapping(res, inputs, exact_ok=True)


def _alpha(alpha, lo=None):
    return V.check_finite("alpha", alpha, lo=lo)


def _forward(name, x, out, backend, *alpha):
    x = V.as_float("x", x)
    for a in alpha:
        V.check_fits("alpha", a, x.dtype)
    run = kernel(name, backend)
    y, (x,) = _result(out, x, x)
    run(x.reshape(-1), y.reshape(-1), *alpha)
    return y


def _backward(name, dy, x, out, backend, *alpha):
    dy = V.as_float("dy", dy)
    x = V.as_float("x", x, dtype=dy.dtype)
    V.check_shape("x", x, dy.shape)
    for a in alpha:
        V.check_fits("alpha", a, x.dtype)
    run = kernel(name + "_backward", backend)
    dx, (dy, x) = _result(out, x, dy, x)
    run(dy.reshape(-1), x.reshape(-1), dx.reshape(-1), *alpha)
    return dx


@V.aligned_out
def relu(x, *, out=None, backend=None):
    """Rectified linear unit, ``y = max(x, 0)`` (NaN stays NaN).

    Parameters
    ----------
    x : array of any shape, float32 or float64
    out : C-contiguous array of ``x``'s shape and dtype, optional (may be ``x``)
    backend : None, "numpy", "numba" or "cython" (keyword only)

    Returns
    -------
    y : C-contiguous, ``x``'s shape and dtype
    """
    return _forward("relu", x, out, backend)


@V.aligned_out
def relu_backward(dy, x, *, out=None, backend=None):
    """Gradient through relu: ``dx = dy * relu'(x)``, ``relu' = 1`` for ``x > 0``, else 0.

    Parameters
    ----------
    dy : array of any shape, float32 or float64 (the gradient at ``y``)
    x : the forward input, ``dy``'s shape and dtype
    out : C-contiguous array of that shape and dtype, optional (may be ``dy`` or ``x``)

    Returns
    -------
    dx : C-contiguous, ``dy``'s shape and dtype
    """
    return _backward("relu", dy, x, out, backend)


@V.aligned_out
def leaky_relu(x, alpha=0.1, *, out=None, backend=None):
    """Leaky relu, ``y = x`` for ``x >= 0``, ``alpha * x`` below.

    This is ``max(alpha x, x)`` for ``0 <= alpha <= 1``, and PyTorch's definition for
    any ``alpha``: a finite real, negative or above 1 included (then it is no longer
    the max).

    Parameters
    ----------
    x : array of any shape, float32 or float64
    alpha : float, the slope for negative ``x`` (default 0.1)
    out, backend : as ``relu``

    Returns
    -------
    y : C-contiguous, ``x``'s shape and dtype
    """
    return _forward("leaky_relu", x, out, backend, _alpha(alpha))


@V.aligned_out
def leaky_relu_backward(dy, x, alpha=0.1, *, out=None, backend=None):
    """Gradient through leaky relu: ``dx = dy * (1 if x > 0 else alpha)``.

    Parameters and results as ``relu_backward``; ``alpha`` as ``leaky_relu``.
    """
    return _backward("leaky_relu", dy, x, out, backend, _alpha(alpha))


@V.aligned_out
def elu(x, alpha=1.0, *, out=None, backend=None):
    """Exponential linear unit, ``y = x`` for ``x >= 0``, ``alpha (e^x - 1)`` below.

    Parameters
    ----------
    x : array of any shape, float32 or float64
    alpha : float >= 0 (default 1.0), the limit ``-alpha`` as ``x -> -inf``
    out, backend : as ``relu``

    Returns
    -------
    y : C-contiguous, ``x``'s shape and dtype
    """
    return _forward("elu", x, out, backend, _alpha(alpha, lo=0))


@V.aligned_out
def elu_backward(dy, x, alpha=1.0, *, out=None, backend=None):
    """Gradient through elu: ``dx = dy * (1 if x > 0 else alpha e^x)``.

    Parameters and results as ``relu_backward``; ``alpha`` as ``elu``.
    """
    return _backward("elu", dy, x, out, backend, _alpha(alpha, lo=0))


@V.aligned_out
def sigmoid(x, *, out=None, backend=None):
    """Logistic sigmoid, ``y = 1 / (1 + e^-x)``, stable for every ``x``
    (computed from ``e^-|x|``, which never overflows).

    Parameters and results as ``relu``.
    """
    return _forward("sigmoid", x, out, backend)


@V.aligned_out
def sigmoid_backward(dy, x, *, out=None, backend=None):
    """Gradient through sigmoid: ``dx = dy * s(x) (1 - s(x))``, computed as
    ``dy * e / (1 + e)^2`` with ``e = e^-|x|`` (no cancellation for large ``x``).

    Parameters and results as ``relu_backward``.
    """
    return _backward("sigmoid", dy, x, out, backend)


@V.aligned_out
def tanh(x, *, out=None, backend=None):
    """Hyperbolic tangent, ``y = tanh(x)``.

    Parameters and results as ``relu``.
    """
    return _forward("tanh", x, out, backend)


@V.aligned_out
def tanh_backward(dy, x, *, out=None, backend=None):
    """Gradient through tanh: ``dx = dy * (1 - tanh(x)^2)``, computed as
    ``dy * 4 e / (1 + e)^2`` with ``e = e^(-2|x|)`` (exact where ``1 - tanh^2``
    would round to 0).

    Parameters and results as ``relu_backward``.
    """
    return _backward("tanh", dy, x, out, backend)


@V.aligned_out
def gelu(x, *, out=None, backend=None):
    """Gaussian error linear unit, exact form: ``y = x Phi(x)``,
    ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` (the normal CDF; no tanh approximation).

    Parameters and results as ``relu``.
    """
    return _forward("gelu", x, out, backend)


@V.aligned_out
def gelu_backward(dy, x, *, out=None, backend=None):
    """Gradient through gelu: ``dx = dy * (Phi(x) + x phi(x))``,
    ``phi(x) = e^(-x^2 / 2) / sqrt(2 pi)``.

    Parameters and results as ``relu_backward``.
    """
    return _backward("gelu", dy, x, out, backend)


@V.aligned_out
def silu(x, *, out=None, backend=None):
    """Sigmoid linear unit (swish), ``y = x sigmoid(x)``.

    Parameters and results as ``relu``.
    """
    return _forward("silu", x, out, backend)


@V.aligned_out
def silu_backward(dy, x, *, out=None, backend=None):
    """Gradient through silu: ``dx = dy * (s + x s (1 - s))``, ``s = sigmoid(x)``.

    Parameters and results as ``relu_backward``.
    """
    return _backward("silu", dy, x, out, backend)
