"""Image augmentation kernels, Numba backend.

images is (N, H, W, C) and out (N, h, w, C), both C-contiguous; the random
parameters (flags, shifts, offsets, noise) come in as arrays drawn by
fastdl.augment.  One compiled call covers the whole batch, parallel over images
(``prange``) above fastdl's parallel threshold.

Shift and crop are the same gather: out[k, i, j] = images[k, i + oy, j + ox]
where that pixel exists, else ``fill``.  A shift by (dy, dx) is the offset
(-dy, -dx); a crop at offset (oy, ox) of the image padded by p is the offset
(oy - p, ox - p).  One kernel (``_translate``) serves both, so there is one
compiled body to keep right instead of two.
"""
from numba import prange

from fastdl._kernels.numba._jit import jit_pair, pick


# The loops run over flat rows: a row of a C-contiguous (N, H, W, C) array is W*C
# contiguous values, and a per-channel innermost loop (C = 1 for grayscale) would
# keep LLVM from vectorising the copy (measured: 4-6x slower than the flat loops).

def _flip(images, flip_h, flip_v, out):
    # images, out (N, H, W, C); flip_h, flip_v (N,) uint8
    n, h, w, c = images.shape
    row = w * c
    src = images.reshape(n, h * row)
    dst = out.reshape(n, h * row)
    for k in prange(n):
        fh = flip_h[k] != 0
        fv = flip_v[k] != 0
        for i in range(h):
            a = (h - 1 - i if fv else i) * row  # source row start
            b = i * row
            if not fh:
                for t in range(row):
                    dst[k, b + t] = src[k, a + t]
            elif c == 1:
                for j in range(w):
                    dst[k, b + j] = src[k, a + w - 1 - j]
            else:
                for j in range(w):
                    for ch in range(c):
                        dst[k, b + j * c + ch] = src[k, a + (w - 1 - j) * c + ch]


_flip_k = jit_pair(_flip)


def _translate(images, d, out, sign, pad, fill):
    # images (N, H, W, C), d (N, 2) int64, out (N, h, w, C):
    # out[k, i, j] = images[k, i + oy, j + ox] inside the image, else fill,
    # with (oy, ox) = sign * d[k] - pad.
    n, hh, ww, c = images.shape
    h, w = out.shape[1], out.shape[2]
    src = images.reshape(n, hh * ww * c)
    dst = out.reshape(n, h * w * c)
    for k in prange(n):
        oy = sign * d[k, 0] - pad
        ox = sign * d[k, 1] - pad
        # the output columns whose source column j + ox is inside [0, W): [j0, j1)
        j0 = min(max(-ox, 0), w)
        j1 = max(min(ww - ox, w), j0)
        for i in range(h):
            b = i * w * c  # output row start
            si = i + oy
            if si < 0 or si >= hh:
                for t in range(w * c):
                    dst[k, b + t] = fill
                continue
            a = (si * ww + ox) * c - b  # source index of output index b + t, minus b + t
            for t in range(b, b + j0 * c):
                dst[k, t] = fill
            for t in range(b + j0 * c, b + j1 * c):
                dst[k, t] = src[k, t + a]
            for t in range(b + j1 * c, b + w * c):
                dst[k, t] = fill


_translate_k = jit_pair(_translate)


def _noise(x, z, out, std, lo, hi):
    # x, z, out (M,), z may be out itself: out = clip(x + std * z, lo, hi).
    # Written as two comparisons (not min/max) so that NaN passes through, as np.clip.
    for i in prange(x.shape[0]):
        v = x[i] + std * z[i]
        out[i] = lo if v < lo else (hi if v > hi else v)


_noise_k = jit_pair(_noise)


def flip_images(images, flip_h, flip_v, out):
    pick(_flip_k, images.size)(images, flip_h, flip_v, out)


def shift_images(images, shifts, out, fill):
    pick(_translate_k, out.size)(images, shifts, out, -1, 0, out.dtype.type(fill))


def crop_images(images, offsets, out, padding, fill):
    pick(_translate_k, out.size)(images, offsets, out, 1, padding, out.dtype.type(fill))


def noise_images(images, noise, out, std, lo, hi):
    t = out.dtype.type
    pick(_noise_k, out.size)(images, noise, out, t(std), t(lo), t(hi))
