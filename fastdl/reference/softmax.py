"""Softmax and log-softmax along the rows of a 2-D array, NumPy reference.

x, y, dy and out are (R, C): each of the R rows is one distribution over C entries.
The public wrapper (fastdl/functional/softmax.py) brings any axis to this layout.

    softmax(x)_j     = exp(x_j - m) / sum_k exp(x_k - m),  m = max_k x_k
    log_softmax(x)_j = (x_j - m) - log sum_k exp(x_k - m)

Subtracting the row max makes every exponent <= 0, so nothing overflows and the
largest term is exactly 1 (the sum cannot underflow to 0).  The backward kernels
take the forward OUTPUT y:

    softmax:     dx = y * (dy - sum_k dy_k y_k)
    log_softmax: dx = dy - exp(y) * sum_k dy_k
"""
import numpy as np


# IEEE results without warnings, as the compiled kernels: x - max overflows to
# -inf for logits of opposite huge sign (exp gives 0, correctly), and a row
# with NaN or no finite max gives NaN.
_quiet = np.errstate(over="ignore", invalid="ignore")


@_quiet
def softmax(x, out):
    """out = softmax of each row of x.   x (R, C), out (R, C)."""
    if x.size == 0:
        return
    np.subtract(x, x.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)


@_quiet
def log_softmax(x, out):
    """out = log_softmax of each row of x.   x (R, C), out (R, C)."""
    if x.size == 0:
        return
    np.subtract(x, x.max(axis=1, keepdims=True), out=out)
    out -= np.log(np.exp(out).sum(axis=1, keepdims=True))


@_quiet
def softmax_backward(dy, y, out):
    """out = y * (dy - sum(dy * y)) row-wise.   dy, y, out (R, C); y = softmax(x)."""
    s = np.sum(dy * y, axis=1, keepdims=True)
    np.subtract(dy, s, out=out)
    out *= y


@_quiet
def log_softmax_backward(dy, y, out):
    """out = dy - exp(y) * sum(dy) row-wise.   dy, y, out (R, C); y = log_softmax(x)."""
    s = np.sum(dy, axis=1, keepdims=True)
    np.exp(y, out=out)
    out *= s
    np.subtract(dy, out, out=out)
