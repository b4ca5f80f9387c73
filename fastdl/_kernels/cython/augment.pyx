# cython: language_level=3
"""Image augmentation kernels, Cython backend.

images is (N, H, W, C) and out (N, h, w, C), both C-contiguous, with H, W, C >= 1
(checked by fastdl.augment); the random parameters come in as arrays drawn by
fastdl.augment.  One call covers the whole batch, ``prange`` over images above
PARALLEL_THRESHOLD elements.  Each image is handled through raw pointers to its
first pixel, so the per-image helpers are plain C loops over rows.

Shift and crop share one gather (``translate_one``): out[i, j] = image[i + oy, j + ox]
where that pixel exists, else ``fill``; a shift by (dy, dx) is the offset (-dy, -dx),
a crop at (oy, ox) of the image padded by p is the offset (oy - p, ox - p).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t

from fastdl._kernels.cython._helpers cimport PARALLEL_THRESHOLD


cdef void flip_one(const floating *src, floating *dst, Py_ssize_t h, Py_ssize_t w,
                   Py_ssize_t c, bint fh, bint fv) noexcept nogil:
    # src, dst one (H, W, C) image each
    cdef Py_ssize_t i, j, ch, si, row = w * c
    for i in range(h):
        si = h - 1 - i if fv else i
        if fh:
            for j in range(w):
                for ch in range(c):
                    dst[i * row + j * c + ch] = src[si * row + (w - 1 - j) * c + ch]
        else:
            # an unflipped row is one contiguous copy
            for j in range(row):
                dst[i * row + j] = src[si * row + j]


def flip_images(const floating[:, :, :, ::1] images,   # IN  (N, H, W, C)
                const uint8_t[::1] flip_h,             # IN  (N,)
                const uint8_t[::1] flip_v,             # IN  (N,)
                floating[:, :, :, ::1] out):           # OUT (N, H, W, C)
    """out[k] = images[k] mirrored left-right where flip_h[k], upside down where flip_v[k]."""
    cdef Py_ssize_t k, n = images.shape[0], h = images.shape[1], w = images.shape[2]
    cdef Py_ssize_t c = images.shape[3]
    if n == 0:
        return
    with nogil:
        if n * h * w * c >= PARALLEL_THRESHOLD:
            for k in prange(n, schedule="static"):
                flip_one(&images[k, 0, 0, 0], &out[k, 0, 0, 0], h, w, c,
                         flip_h[k] != 0, flip_v[k] != 0)
        else:
            for k in range(n):
                flip_one(&images[k, 0, 0, 0], &out[k, 0, 0, 0], h, w, c,
                         flip_h[k] != 0, flip_v[k] != 0)


cdef void translate_one(const floating *src, floating *dst, Py_ssize_t hh, Py_ssize_t ww,
                        Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oy,
                        Py_ssize_t ox, floating fill) noexcept nogil:
    # src (H, W, C), dst (h, w, C): dst[i, j] = src[i + oy, j + ox] inside src, else fill
    cdef Py_ssize_t i, t, si, srow = ww * c, drow = w * c
    # the output columns whose source column j + ox is inside [0, W): [j0, j1)
    cdef Py_ssize_t j0 = min(max(-ox, 0), w)
    cdef Py_ssize_t j1 = max(min(ww - ox, w), j0)
    cdef floating *d
    for i in range(h):
        si = i + oy
        d = dst + i * drow
        if si < 0 or si >= hh:
            for t in range(drow):
                d[t] = fill
            continue
        for t in range(j0 * c):
            d[t] = fill
        for t in range(j0 * c, j1 * c):
            d[t] = src[si * srow + ox * c + t]
        for t in range(j1 * c, drow):
            d[t] = fill


cdef void translate(const floating[:, :, :, ::1] images, const int64_t[:, ::1] d,
                    floating[:, :, :, ::1] out, Py_ssize_t sign, Py_ssize_t pad,
                    floating fill) noexcept nogil:
    # offsets (oy, ox) = sign * d[k] - pad
    cdef Py_ssize_t k, n = images.shape[0], hh = images.shape[1], ww = images.shape[2]
    cdef Py_ssize_t c = images.shape[3], h = out.shape[1], w = out.shape[2]
    if n == 0 or h == 0 or w == 0:
        return
    if n * h * w * c >= PARALLEL_THRESHOLD:
        for k in prange(n, schedule="static"):
            translate_one(&images[k, 0, 0, 0], &out[k, 0, 0, 0], hh, ww, c, h, w,
                          sign * d[k, 0] - pad, sign * d[k, 1] - pad, fill)
    else:
        for k in range(n):
            translate_one(&images[k, 0, 0, 0], &out[k, 0, 0, 0], hh, ww, c, h, w,
                          sign * d[k, 0] - pad, sign * d[k, 1] - pad, fill)


def shift_images(const floating[:, :, :, ::1] images,   # IN  (N, H, W, C)
                 const int64_t[:, ::1] shifts,          # IN  (N, 2): (dy, dx)
                 floating[:, :, :, ::1] out,            # OUT (N, H, W, C)
                 double fill):
    """out[k, i, j] = images[k, i - dy, j - dx] where that pixel exists, else fill."""
    with nogil:
        translate(images, shifts, out, -1, 0, <floating>fill)


def crop_images(const floating[:, :, :, ::1] images,   # IN  (N, H, W, C)
                const int64_t[:, ::1] offsets,         # IN  (N, 2): (oy, ox) in the padded image
                floating[:, :, :, ::1] out,            # OUT (N, h, w, C)
                Py_ssize_t padding, double fill):
    """out[k] = the (h, w) window at offsets[k] of images[k] padded by ``padding`` of fill."""
    with nogil:
        translate(images, offsets, out, 1, padding, <floating>fill)


def noise_images(const floating[::1] images,   # IN  (M,)
                 const floating[::1] noise,    # IN  (M,), may be out itself
                 floating[::1] out,            # OUT (M,)
                 double std, double lo, double hi):
    """out = clip(images + std * noise, lo, hi), elementwise (lo = -inf, hi = inf: no clip)."""
    cdef Py_ssize_t i, m = images.shape[0]
    cdef floating s = <floating>std, l = <floating>lo, u = <floating>hi, v
    with nogil:
        # two comparisons (not fmin/fmax) so that NaN passes through, as np.clip
        if m >= PARALLEL_THRESHOLD:
            for i in prange(m, schedule="static"):
                v = images[i] + s * noise[i]
                out[i] = l if v < l else (u if v > u else v)
        else:
            for i in range(m):
                v = images[i] + s * noise[i]
                out[i] = l if v < l else (u if v > u else v)
