"""2-D max and average pooling (no padding, floor output size), NumPy reference.

x is (N, C, H, W), y is (N, C, Ho, Wo) with Ho = (H - kh) // sh + 1, Wo = (W - kw) // sw + 1:

    max:  y[n, c, r, s] = max_{i, j} x[n, c, r sh + i, s sw + j]
          argmax[n, c, r, s] = (r sh + i) W + (s sw + j) of the first (i, j), in row-major
          window order, reaching that max (a NaN wins, the first one, as ``np.argmax``):
          a flat index into the input plane, int32, so that the backward pass needs no
          kernel size or stride:  dx[n, c].flat[argmax[n, c, r, s]] += dy[n, c, r, s]
    avg:  y[n, c, r, s] = mean_{i, j} x[n, c, r sh + i, s sw + j]
          dx[n, c, r sh + i, s sw + j] += dy[n, c, r, s] / (kh kw)

Overlapping windows (stride < kernel) add their gradients.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x, kh, kw, sh, sw):
    """(N, C, Ho, Wo, kh, kw) view of every pooling window."""
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def max_pool2d(x, y, argmax, kh, kw, sh, sw):
    """y, argmax = max and its flat input index over each window.
    x (N, C, H, W), y (N, C, Ho, Wo), argmax (N, C, Ho, Wo) int32."""
    n, c, ho, wo = y.shape
    w = x.shape[3]
    win = _windows(x, kh, kw, sh, sw).reshape(n, c, ho, wo, kh * kw)
    k = np.argmax(win, axis=4)
    y[...] = np.take_along_axis(win, k[..., None], axis=4)[..., 0]
    r = np.arange(ho)[:, None] * sh + k // kw
    s = np.arange(wo)[None, :] * sw + k % kw
    argmax[...] = r * w + s


def max_pool2d_backward(dy, argmax, dx):
    """dx = dy added at the argmax positions.   dy, argmax (N, C, Ho, Wo), dx (N, C, H, W)."""
    n, c = dy.shape[:2]
    plane = dx.shape[2] * dx.shape[3]
    flat = dx.reshape(n * c, plane)
    flat.fill(0)
    rows = np.repeat(np.arange(n * c), dy.shape[2] * dy.shape[3])
    # np.add.at adds every duplicate index (overlapping windows), unlike fancy assignment
    np.add.at(flat, (rows, argmax.reshape(-1).astype(np.intp)), dy.reshape(-1))


def avg_pool2d(x, y, kh, kw, sh, sw):
    """y = mean over each window.   x (N, C, H, W), y (N, C, Ho, Wo)."""
    y[...] = _windows(x, kh, kw, sh, sw).mean(axis=(4, 5))


def avg_pool2d_backward(dy, dx, kh, kw, sh, sw):
    """dx = dy / (kh kw) spread over each window.   dy (N, C, Ho, Wo), dx (N, C, H, W)."""
    ho, wo = dy.shape[2:]
    dx.fill(0)
    g = dy / (kh * kw)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += g
