"""Dense (fully connected) layer, NumPy reference.

x is (N, K), W is (K, M), b is (M,), y is (N, M):  y = act(x @ W + b).
"""
import numpy as np

from fastdl.reference import activations, softmax

_TAKES_ALPHA = ("leaky_relu", "elu")


def dense_forward(x, W, b, out, activation, alpha):
    """out = act(x @ W + b); ``b`` may be None, ``activation`` None or a name."""
    np.matmul(x, W, out=out)
    if b is not None:
        out += b
    if activation is None:
        return
    z = out.copy()
    if activation in ("softmax", "log_softmax"):
        getattr(softmax, activation)(z, out)
    elif activation in _TAKES_ALPHA:
        getattr(activations, activation)(z, out, alpha)
    else:
        getattr(activations, activation)(z, out)


def dense_backward(dy, x, W, dx, dW, db):
    """dx = dy @ W.T (skipped when dx is None), dW = x.T @ dy, db = sum_n dy[n].

    db is summed in float64: NumPy adds the rows of an axis-0 sum one after another, and
    in float32 that drifts with N (1.6e-5 relative at a million rows)."""
    if dx is not None:
        np.matmul(dy, W.T, out=dx)
    np.matmul(x.T, dy, out=dW)
    db[...] = np.sum(dy, axis=0, dtype=np.float64)
