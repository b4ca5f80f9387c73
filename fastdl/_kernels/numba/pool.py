"""2-D max and average pooling, Numba backend.

x and dx are (N, C, H, W), y, dy and argmax (N, C, Ho, Wo), argmax int32: the flat
index r W + s of the winning input pixel in its (H, W) plane (the first max in the
window's row-major order; a NaN wins, the first one, as ``np.argmax``).  No padding.
Each kernel is parallel over the N C planes (``prange``) above fastdl's threshold.

The forward kernels build each output row in place: the row starts as the window's
first tap and every other tap (i, j) updates it, a loop over the output columns s
that LLVM vectorises (a loop over the window inside each output pixel, 2x2 or 3x3
taps, would not be).  Indices are unsigned: Numba puts a negative-index select on
every signed index it cannot prove >= 0, which kept these loops scalar.
"""
from numba import int32, prange, uint64

from fastdl._kernels.numba._jit import inline, jit_pair, pick


@inline
def _wins(v, best):
    # v replaces best if it is larger or NaN, unless best is already NaN: the first
    # max, or the first NaN, in row-major window order (as np.argmax)
    return (best == best) & (not v <= best)


def _max_pool2d(x, y, argmax, kh, kw, sh, sw):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    xp = x.reshape((n * c, h * w))
    yp = y.reshape((n * c, ho, wo))
    ap = argmax.reshape((n * c, ho, wo))
    usw = uint64(sw)
    uw = uint64(w)
    one = uint64(1)
    for pl in prange(n * c):
        xr = xp[pl]
        for r in range(ho):
            yr = yp[pl, r]
            ar = ap[pl, r]
            top = uint64(r * sh * w)
            if kh == 2 and kw == 2:
                # the usual window, its four taps in registers: the general loop below
                # stores back, on one side of a select, what it loaded, which LLVM makes
                # a masked store, microcoded on AMD (this loop took 1/4 of its time here)
                for s in range(uint64(wo)):
                    t0 = top + s * usw
                    t1 = t0 + one
                    t2 = t0 + uw
                    t3 = t2 + one
                    best = xr[t0]
                    k = t0
                    v = xr[t1]
                    take = _wins(v, best)
                    best = v if take else best
                    k = t1 if take else k
                    v = xr[t2]
                    take = _wins(v, best)
                    best = v if take else best
                    k = t2 if take else k
                    v = xr[t3]
                    take = _wins(v, best)
                    yr[s] = v if take else best
                    ar[s] = int32(t3 if take else k)
                continue
            for s in range(uint64(wo)):
                yr[s] = xr[top + s * usw]
                ar[s] = int32(top + s * usw)
            for i in range(kh):
                for j in range(kw):
                    if i == 0 and j == 0:
                        continue
                    base = top + uint64(i * w + j)
                    for s in range(uint64(wo)):
                        v = xr[base + s * usw]
                        best = yr[s]
                        take = _wins(v, best)
                        yr[s] = v if take else best
                        ar[s] = int32(base + s * usw) if take else ar[s]


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
            dr[uint64(a[t])] += g[t]


_max_pool2d_backward_k = jit_pair(_max_pool2d_backward)


def _avg_pool2d(x, y, kh, kw, sh, sw, inv):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    xp = x.reshape((n * c, h * w))
    yp = y.reshape((n * c, ho, wo))
    usw = uint64(sw)
    for pl in prange(n * c):
        xr = xp[pl]
        for r in range(ho):
            yr = yp[pl, r]
            for s in range(wo):
                yr[s] = 0
            for i in range(kh):
                for j in range(kw):
                    base = uint64((r * sh + i) * w + j)
                    for s in range(uint64(wo)):
                        yr[s] += xr[base + s * usw]
            for s in range(wo):
                yr[s] *= inv


_avg_pool2d_k = jit_pair(_avg_pool2d)


def _avg_pool2d_backward(dy, dx, kh, kw, sh, sw, inv):
    n, c, h, w = dx.shape
    ho, wo = dy.shape[2], dy.shape[3]
    dyp = dy.reshape((n * c, ho, wo))
    dxp = dx.reshape((n * c, h * w))
    usw = uint64(sw)
    for pl in prange(n * c):
        dr = dxp[pl]
        for t in range(h * w):
            dr[t] = 0
        for r in range(ho):
            g = dyp[pl, r]
            for i in range(kh):
                for j in range(kw):
                    base = uint64((r * sh + i) * w + j)
                    for s in range(uint64(wo)):
                        dr[base + s * usw] += g[s] * inv


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
