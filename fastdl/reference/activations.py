"""Elementwise activations, NumPy reference (the oracle).

Each forward ``name(x, out[, alpha])`` writes ``out = f(x)``; each backward
``name_backward(dy, x, dx[, alpha])`` writes ``dx = dy * f'(x)``, the gradient
through the activation from its forward input ``x``.  Arrays of any one shape
(the public functions pass flat ones; dense's reference passes (N, M)); ``out``
may be ``x`` and ``dx`` may be ``dy`` or ``x``: every result is computed in
temporaries before it is written.

Conventions (the compiled backends follow them too):
* at a kink the derivative is the left one, as PyTorch: relu'(0) = 0,
  leaky_relu'(0) = alpha, elu'(0) = alpha;
* NaN in x gives NaN in both directions;
* at +-inf each function and derivative is its limit (gelu(-inf) = 0,
  silu(-inf) = 0, gelu'(+inf) = 1, ...), not the NaN of a naive inf * 0.
"""
import numpy as np
from scipy.special import ndtr  # Phi, the standard normal CDF


# inf * 0 (replaced by the limit) and x * x overflowing to inf (whose exp is the
# right 0) are intended; the warnings they raise are not
_quiet = np.errstate(over="ignore", invalid="ignore")


@_quiet
def _limit0(x, s):
    """x * s, with 0 where s == 0 (the limit of x * s(x) at x = +-inf)."""
    return np.where(s == 0, 0, x * s)


def _nan_where_nan(d, x):
    """d with NaN where x is NaN (for the piecewise-constant derivatives)."""
    return np.where(np.isnan(x), x, d)


def _sigmoid_parts(x):
    """e = exp(-|x|) in (0, 1] (never overflows) and r = 1 / (1 + e)."""
    e = np.exp(-np.abs(x))
    return e, 1 / (1 + e)


# ---- relu, leaky_relu, elu --------------------------------------------------

def relu(x, out):
    """max(x, 0)."""
    np.maximum(x, 0, out=out)


def relu_backward(dy, x, dx):
    """dy * relu'(x), relu' = 1 for x > 0, 0 for x <= 0 (heaviside keeps NaN)."""
    np.multiply(dy, np.heaviside(x, 0), out=dx)


def leaky_relu(x, out, alpha):
    """x for x >= 0, alpha x below; equals max(alpha x, x) for 0 <= alpha <= 1.

    alpha = 0 at x = -inf gives NaN (0 * -inf), in every backend and in PyTorch."""
    # alpha x of min(x, 0): alpha = 0 times x = +inf would be NaN, then dropped; the
    # NaN of -inf is the result (above), so it does not warn either
    with np.errstate(invalid="ignore"):
        np.copyto(out, np.where(x < 0, alpha * np.minimum(x, 0), x))


def leaky_relu_backward(dy, x, dx, alpha):
    """dy * (1 for x > 0, alpha for x <= 0)."""
    slope = np.where(x > 0, np.ones_like(x), x.dtype.type(alpha))
    np.multiply(dy, _nan_where_nan(slope, x), out=dx)


def elu(x, out, alpha):
    """x for x >= 0, alpha (e^x - 1) below."""
    # expm1 of min(x, 0): no overflow warning for large positive x
    np.copyto(out, np.where(x < 0, alpha * np.expm1(np.minimum(x, 0)), x))


def elu_backward(dy, x, dx, alpha):
    """dy * (1 for x > 0, alpha e^x for x <= 0)."""
    slope = np.where(x > 0, 1, alpha * np.exp(np.minimum(x, 0)))
    np.multiply(dy, slope, out=dx)


# ---- sigmoid, tanh ----------------------------------------------------------

def sigmoid(x, out):
    """1 / (1 + e^-x), as 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = e^-|x|."""
    e, r = _sigmoid_parts(x)
    np.copyto(out, np.where(x >= 0, r, e * r))


def sigmoid_backward(dy, x, dx):
    """dy * s(x) (1 - s(x)), computed as e / (1 + e)^2 (= s(x) s(-x), no cancellation)."""
    e, r = _sigmoid_parts(x)
    np.multiply(dy, e * r * r, out=dx)


def tanh(x, out):
    """tanh(x)."""
    np.tanh(x, out=out)


@_quiet
def tanh_backward(dy, x, dx):
    """dy * (1 - tanh(x)^2), computed as sech^2 x = 4 e / (1 + e)^2 with e = e^(-2|x|)
    (full relative precision where 1 - tanh^2 would round to 0)."""
    e = np.exp(-2 * np.abs(x))
    np.multiply(dy, 4 * e / (1 + e) ** 2, out=dx)


# ---- gelu, silu ---------------------------------------------------------------

def gelu(x, out):
    """x Phi(x) (the exact form; Phi(x) = (1 + erf(x / sqrt 2)) / 2)."""
    np.copyto(out, _limit0(x, ndtr(x)))


@_quiet
def gelu_backward(dy, x, dx):
    """dy * (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)."""
    phi = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    np.multiply(dy, ndtr(x) + _limit0(x, phi), out=dx)


def silu(x, out):
    """x sigmoid(x)."""
    s = np.empty_like(x)
    sigmoid(x, s)
    np.copyto(out, _limit0(x, s))


def silu_backward(dy, x, dx):
    """dy * (s + x s (1 - s)), s = sigmoid(x), with s (1 - s) = e / (1 + e)^2."""
    e, r = _sigmoid_parts(x)
    s = np.where(x >= 0, r, e * r)
    np.multiply(dy, s + _limit0(x, e * r * r), out=dx)
