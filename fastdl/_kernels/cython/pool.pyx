# cython: language_level=3
# distutils: define_macros = NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION
"""2-D max and average pooling, Cython backend.

x and dx are (N, C, H, W), y, dy and argmax (N, C, Ho, Wo), argmax int32: the flat
index r W + s of the winning input pixel in its (H, W) plane (the first max in the
window's row-major order; a NaN wins, the first one, as ``np.argmax``).  No padding.
Each kernel runs over the N C planes, in parallel (prange) above PARALLEL_THRESHOLD
elements.

The forward kernels build each output row in place: the row starts as the window's
first tap and every other tap (i, j) updates it, a loop over the output columns that
gcc vectorises at unit stride (a loop over the window inside each output pixel would
not be).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t

from fastdl._kernels.cython._helpers cimport PARALLEL_THRESHOLD


cdef void max_plane(const floating *x, floating *y, int32_t *am, Py_ssize_t h, Py_ssize_t w,
                    Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                    Py_ssize_t sw) noexcept nogil:
    # one plane: x (H, W), y and am (Ho, Wo)
    cdef Py_ssize_t r, s, i, j, top, base
    cdef floating v, best
    cdef bint take
    for r in range(ho):
        top = r * sh * w
        for s in range(wo):
            y[r * wo + s] = x[top + s * sw]
            am[r * wo + s] = <int32_t>(top + s * sw)
        for i in range(kh):
            for j in range(kw):
                if i == 0 and j == 0:
                    continue
                base = top + i * w + j
                for s in range(wo):
                    v = x[base + s * sw]
                    best = y[r * wo + s]
                    # v wins if it is larger or NaN, unless best is already NaN: the
                    # first max or the first NaN in row-major window order
                    take = (best == best) & (not v <= best)
                    y[r * wo + s] = v if take else best
                    am[r * wo + s] = <int32_t>(base + s * sw) if take else am[r * wo + s]


def max_pool2d(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
               int32_t[:, :, :, ::1] argmax, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
               Py_ssize_t sw):
    """y, argmax = max and its flat input index over each window.
    x (N, C, H, W), y and argmax (N, C, Ho, Wo)."""
    cdef Py_ssize_t n = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], pl
    if y.size == 0:
        return
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef floating *yp = &y[0, 0, 0, 0]
    cdef int32_t *ap = &argmax[0, 0, 0, 0]
    if x.size >= PARALLEL_THRESHOLD:
        for pl in prange(n, nogil=True, schedule="static"):
            max_plane(xp + pl * h * w, yp + pl * ho * wo, ap + pl * ho * wo, h, w, ho, wo,
                      kh, kw, sh, sw)
    else:
        with nogil:
            for pl in range(n):
                max_plane(xp + pl * h * w, yp + pl * ho * wo, ap + pl * ho * wo, h, w, ho, wo,
                          kh, kw, sh, sw)


cdef void max_back_plane(const floating *dy, const int32_t *am, floating *dx, Py_ssize_t hw,
                         Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(hw):
        dx[t] = 0
    # overlapping windows (stride < kernel) may pick one pixel twice: add
    for t in range(m):
        dx[am[t]] += dy[t]


def max_pool2d_backward(const floating[:, :, :, ::1] dy, const int32_t[:, :, :, ::1] argmax,
                        floating[:, :, :, ::1] dx):
    """dx = dy added at the argmax positions.   dy, argmax (N, C, Ho, Wo), dx (N, C, H, W)."""
    cdef Py_ssize_t n = dx.shape[0] * dx.shape[1], hw = dx.shape[2] * dx.shape[3]
    cdef Py_ssize_t m = dy.shape[2] * dy.shape[3], pl
    if dx.size == 0:
        return
    cdef floating *dxp = &dx[0, 0, 0, 0]
    cdef const floating *dyp = NULL
    cdef const int32_t *ap = NULL
    if dy.size:
        dyp = &dy[0, 0, 0, 0]
        ap = &argmax[0, 0, 0, 0]
    if dx.size >= PARALLEL_THRESHOLD:
        for pl in prange(n, nogil=True, schedule="static"):
            max_back_plane(dyp + pl * m, ap + pl * m, dxp + pl * hw, hw, m)
    else:
        with nogil:
            for pl in range(n):
                max_back_plane(dyp + pl * m, ap + pl * m, dxp + pl * hw, hw, m)


cdef void avg_plane(const floating *x, floating *y, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ho,
                    Py_ssize_t wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    floating inv) noexcept nogil:
    cdef Py_ssize_t r, s, i, j, base
    cdef floating *yr
    for r in range(ho):
        yr = y + r * wo
        for s in range(wo):
            yr[s] = 0
        for i in range(kh):
            for j in range(kw):
                base = (r * sh + i) * w + j
                if sw == 1:
                    for s in range(wo):
                        yr[s] += x[base + s]
                else:
                    for s in range(wo):
                        yr[s] += x[base + s * sw]
        for s in range(wo):
            yr[s] *= inv


def avg_pool2d(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, Py_ssize_t kh,
               Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw):
    """y = mean over each window.   x (N, C, H, W), y (N, C, Ho, Wo)."""
    cdef Py_ssize_t n = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], pl
    # 1 / (kh kw) in the output's dtype (exact for the usual 2x2 and 4x4 windows)
    cdef floating inv = <floating>(1.0 / (kh * kw))
    if y.size == 0:
        return
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef floating *yp = &y[0, 0, 0, 0]
    if x.size >= PARALLEL_THRESHOLD:
        for pl in prange(n, nogil=True, schedule="static"):
            avg_plane(xp + pl * h * w, yp + pl * ho * wo, h, w, ho, wo, kh, kw, sh, sw, inv)
    else:
        with nogil:
            for pl in range(n):
                avg_plane(xp + pl * h * w, yp + pl * ho * wo, h, w, ho, wo, kh, kw, sh, sw, inv)


cdef void avg_back_plane(const floating *dy, floating *dx, Py_ssize_t h, Py_ssize_t w,
                         Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t kh, Py_ssize_t kw,
                         Py_ssize_t sh, Py_ssize_t sw, floating inv) noexcept nogil:
    cdef Py_ssize_t r, s, i, j, base
    cdef const floating *g
    for s in range(h * w):
        dx[s] = 0
    for r in range(ho):
        g = dy + r * wo
        for i in range(kh):
            for j in range(kw):
                base = (r * sh + i) * w + j
                if sw == 1:
                    for s in range(wo):
                        dx[base + s] += g[s] * inv
                else:
                    for s in range(wo):
                        dx[base + s * sw] += g[s] * inv


def avg_pool2d_backward(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw):
    """dx = dy / (kh kw) spread over each window.   dy (N, C, Ho, Wo), dx (N, C, H, W)."""
    cdef Py_ssize_t n = dx.shape[0] * dx.shape[1], h = dx.shape[2], w = dx.shape[3]
    cdef Py_ssize_t ho = dy.shape[2], wo = dy.shape[3], pl
    cdef floating inv = <floating>(1.0 / (kh * kw))
    if dx.size == 0:
        return
    cdef floating *dxp = &dx[0, 0, 0, 0]
    cdef const floating *dyp = NULL
    if dy.size:
        dyp = &dy[0, 0, 0, 0]
    if dx.size >= PARALLEL_THRESHOLD:
        for pl in prange(n, nogil=True, schedule="static"):
            avg_back_plane(dyp + pl * ho * wo, dxp + pl * h * w, h, w, ho, wo, kh, kw, sh, sw,
                           inv)
    else:
        with nogil:
            for pl in range(n):
                avg_back_plane(dyp + pl * ho * wo, dxp + pl * h * w, h, w, ho, wo, kh, kw, sh,
                               sw, inv)
