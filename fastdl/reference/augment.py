"""Image augmentation kernels, NumPy reference (the oracle of the compiled ones).

Every kernel works on a batch ``images`` of shape (N, H, W, C) (a (N, H, W) batch
is passed as (N, H, W, 1)) and writes ``out``; the random parameters (flags,
shifts, offsets, noise) were drawn by the public function in ``fastdl.augment``
and arrive here as arrays, so every backend gives the same result for one seed.
The loops over images are plain Python: this file is written to be read.
"""
import numpy as np


def flip_images(images, flip_h, flip_v, out):
    """out[n] = images[n] mirrored left-right where flip_h[n], upside down where flip_v[n].

    images, out (N, H, W, C); flip_h, flip_v (N,) uint8 (0 or 1)."""
    for n in range(images.shape[0]):
        image = images[n]
        if flip_h[n]:
            image = image[:, ::-1]
        if flip_v[n]:
            image = image[::-1, :]
        out[n] = image


def _take(image, rows, cols, out, fill):
    """out[i, j] = image[rows[i], cols[j]] where that pixel exists, else fill."""
    h, w = image.shape[:2]
    ok_r = (rows >= 0) & (rows < h)
    ok_c = (cols >= 0) & (cols < w)
    out[...] = fill
    out[np.ix_(ok_r, ok_c)] = image[np.ix_(rows[ok_r], cols[ok_c])]


def shift_images(images, shifts, out, fill):
    """Translate each image by shifts[n] = (dy, dx) pixels (down, right), filling with ``fill``.

    out[n, i, j] = images[n, i - dy, j - dx] where that pixel exists, else fill.
    images, out (N, H, W, C); shifts (N, 2) int64."""
    _, h, w, _ = images.shape
    for n in range(images.shape[0]):
        dy, dx = shifts[n]
        _take(images[n], np.arange(h) - dy, np.arange(w) - dx, out[n], fill)


def crop_images(images, offsets, out, padding, fill):
    """Pad each image by ``padding`` pixels of ``fill`` on every side, then cut out an
    (h, w) window whose top-left corner is offsets[n] = (oy, ox) in the padded image.

    images (N, H, W, C); offsets (N, 2) int64 with 0 <= oy <= H + 2 padding - h (and so
    for ox); out (N, h, w, C)."""
    _, h, w, _ = out.shape
    for n in range(images.shape[0]):
        # the window's pixel (i, j) is the image's (oy - padding + i, ox - padding + j)
        # (the padded image itself is never made: a large padding would not fit in memory)
        oy, ox = offsets[n]
        _take(images[n], np.arange(h) + (oy - padding), np.arange(w) + (ox - padding), out[n],
              fill)


def noise_images(images, noise, out, std, lo, hi):
    """out = clip(images + std * noise, lo, hi), elementwise (lo = -inf, hi = inf: no clip).

    images, noise, out (M,) flattened; ``out`` may be ``noise`` or ``images`` itself
    (elementwise: each element is read before it is written)."""
    np.add(images, noise * images.dtype.type(std), out=out)
    np.clip(out, lo, hi, out=out)
