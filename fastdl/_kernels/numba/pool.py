"""2-D max and average pooling, Numba backend.

x and dx are (N, C, H, W), y, dy and argmax (N, C, Ho, Wo), argmax int32: the flat
index r W + s of the winning input pixel in its (H, W) plane (the first max in the
window's row-major order; a NaN wins, the first one, as ``np.argmax``).  No padding.
Each kernel is parallel over the N C planes (``prange``) above fastdl's threshold.

The forward kernels build each output row in place: the row starts as the window's
first tap and every other tap (i, j) updates it, a loop over the output columns s
that LLVM vectorises (a loop over the window inside each output pixel, 2x2 or 3x3
taps, would not be).
"""
from numba import prange

from fastdl._kernels.numba._jit import jit_pair, pick


def _max_pool2d(x, y, argmax, kh, kw, sh, sw):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    xp = x.reshape((n * c, h * w))
    yp = y.reshape((n * c, ho, wo))
    ap = argmax.reshape((n * c, ho, wo))
    for pl in prange(n * c):
        xr = xp[pl]
        for r in range(ho):
            yr = yp[pl, r]
            ar = ap[pl, r]
            top = r * sh * w
            for s in range(wo):
                yr[s] = xr[top + s * sw]
                ar[s] = top + s * sw
            for i in range(kh):
                for j in range(kw):
                    if i == 0 and j == 0:
                        continue
                    base = top + i * w + j
                    for s in range(wo):
                        v = xr[base + s * sw]
                        best = yr[s]
                        # v wins if it is larger or NaN, unless best is already NaN: the
                        # first max or the first NaN in row-major window order
                        take = (best == best) & (not v <= best)
                        yr[s] = v if take else best
                        ar[s] = base + s * sw if take else ar[s]


_max_pool2d_k = jit_pair(_max_pool2d)


def _max_pool2d_backward(dy, argmax, dx):
    n, c, h, w = dx.shape
    m = dy.shape[2] * dy.shape[3]
    dyp = dy.reshape((n * c, m))
    ap = argmax.reshape((n * c, m))
    dxp = dx.reshape((n * c, h * w))
    for pl in prange(n * c):
        dr = dxp[pl]
        for t in range(h * w):
            dr[t] = 0
        g = dyp[pl]
        a = ap[pl]
        # overlapping windows (stride < kernel) may pick one pixel twice: add
        for t in range(m):
            dr[a[t]] += g[t]


_max_pool2d_backward_k = jit_pair(_max_pool2d_backward)


def _avg_pool2d(x, y, kh, kw, sh, sw, inv):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    xp = x.reshape((n * c, h * w))
    yp = y.reshape((n * c, ho, wo))
    for pl in prange(n * c):
        xr = xp[pl]
        for r in range(ho):
            yr = yp[pl, r]
            for s in range(wo):
                yr[s] = 0
            for i in range(kh):
                for j in range(kw):
                    base = (r * sh + i) * w + j
                    for s in range(wo):
                        yr[s] += xr[base + s * sw]
            for s in range(wo):
                yr[s] *= inv


_avg_pool2d_k = jit_pair(_avg_pool2d)


def _avg_pool2d_backward(dy, dx, kh, kw, sh, sw, inv):
    n, c, h, w = dx.shape
    ho, wo = dy.shape[2], dy.shape[3]
    dyp = dy.reshape((n * c, ho, wo))
    dxp = dx.reshape((n * c, h * w))
    for pl in prange(n * c):
        dr = dxp[pl]
        for t in range(h * w):
            dr[t] = 0
        for r in range(ho):
            g = dyp[pl, r]
            for i in range(kh):
                for j in range(kw):
                    base = (r * sh + i) * w + j
                    for s in range(wo):
                        dr[base + s * sw] += g[s] * inv


_avg_pool2d_backward_k = jit_pair(_avg_pool2d_backward)


def max_pool2d(x, y, argmax, kh, kw, sh, sw):
    pick(_max_pool2d_k, x.size)(x, y, argmax, kh, kw, sh, sw)


def max_pool2d_backward(dy, argmax, dx):
    pick(_max_pool2d_backward_k, dx.size)(dy, argmax, dx)


def avg_pool2d(x, y, kh, kw, sh, sw):
    # 1 / (kh kw) in the output's dtype (exact for the usual 2x2 and 4x4 windows)
    pick(_avg_pool2d_k, x.size)(x, y, kh, kw, sh, sw, y.dtype.type(1.0 / (kh * kw)))


def avg_pool2d_backward(dy, dx, kh, kw, sh, sw):
    pick(_avg_pool2d_backward_k, dx.size)(dy, dx, kh, kw, sh, sw,
                                          dx.dtype.type(1.0 / (kh * kw)))
