"""2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``), NumPy reference.

x is (N, C, H, W), W is (O, C, kh, kw), b is (O,), y is (N, O, Ho, Wo), with zero
padding (ph, pw) and stride (sh, sw):

    Ho = (H + 2 ph - kh) // sh + 1,   Wo = (W + 2 pw - kw) // sw + 1
    z[n, o, r, s] = b[o] + sum_{c, i, j} W[o, c, i, j] xpad[n, c, r sh + i, s sw + j]
    y = act(z)

(softmax and log_softmax act over the channel axis, at each pixel).  The backward pass
takes dz, the gradient at the pre-activation output z:

    dW[o, c, i, j] = sum_{n, r, s} dz[n, o, r, s] xpad[n, c, r sh + i, s sw + j]
    db[o]          = sum_{n, r, s} dz[n, o, r, s]
    dxpad[n, c, r sh + i, s sw + j] += W[o, c, i, j] dz[n, o, r, s]   (dx: dxpad unpadded)

``ws``, the compiled backends' workspace, is ignored here.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fastdl.reference import activations, softmax

_TAKES_ALPHA = ("leaky_relu", "elu")


def _windows(x, kh, kw, sh, sw, ph, pw):
    """Every (kh, kw) window of the zero-padded x at the output positions:
    (N, C, Ho, Wo, kh, kw), a read-only view of one padded copy."""
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def conv2d_forward(x, W, b, out, ws, sh, sw, ph, pw, activation, alpha):
    """out = act(conv(x, W) + b).   x (N, C, H, W), W (O, C, kh, kw), out (N, O, Ho, Wo)."""
    kh, kw = W.shape[2:]
    win = _windows(x, kh, kw, sh, sw, ph, pw)
    # contract (C, kh, kw): (N, Ho, Wo, O), then channels to axis 1
    z = np.tensordot(win, W, axes=((1, 4, 5), (1, 2, 3)))
    out[...] = z.transpose(0, 3, 1, 2)
    if b is not None:
        out += b[:, None, None]
    if activation is None:
        return
    z = out.copy()
    if activation in ("softmax", "log_softmax"):
        # over the channels at each pixel: rows of (N * Ho * Wo, O)
        zt = np.ascontiguousarray(z.transpose(0, 2, 3, 1)).reshape(-1, z.shape[1])
        yt = np.empty_like(zt)
        getattr(softmax, activation)(zt, yt)
        out[...] = yt.reshape(z.shape[0], z.shape[2], z.shape[3], z.shape[1]).transpose(0, 3, 1, 2)
    elif activation in _TAKES_ALPHA:
        getattr(activations, activation)(z, out, alpha)
    else:
        getattr(activations, activation)(z, out)


def conv2d_backward(dy, x, W, dx, dW, db, ws, sh, sw, ph, pw):
    """dx (skipped when None), dW, db from dy, the gradient at the pre-activation output.

    dy (N, O, Ho, Wo), x (N, C, H, W), W (O, C, kh, kw), dx like x, dW like W, db (O,)."""
    n, c, h, w = x.shape
    kh, kw = W.shape[2:]
    ho, wo = dy.shape[2:]
    win = _windows(x, kh, kw, sh, sw, ph, pw)
    dW[...] = np.tensordot(dy, win, axes=((0, 2, 3), (0, 2, 3)))
    np.sum(dy, axis=(0, 2, 3), out=db)
    if dx is None:
        return
    # each kernel tap (i, j) sends W[:, :, i, j]^T dy to the strided input positions it read
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dx.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += np.einsum(
                "nohw,oc->nchw", dy, W[:, :, i, j])
    dx[...] = dxp[:, :, ph:ph + h, pw:pw + w]
