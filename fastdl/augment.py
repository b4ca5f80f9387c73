"""Data augmentation for image batches, seeded.

Images are float32 or float64 batches ``(N, H, W)`` or ``(N, H, W, C)`` (channels
last), with H, W, C >= 1; ``layout="NCHW"`` reads a 4-D batch as ``(N, C, H, W)``
(channels first, as ``nn.Conv2D`` takes it), and every channel of an image then gets
the same flip, shift or crop.  Every function returns a new array of the input's
shape (``random_crop`` with ``size``: ``(N, h, w[, C])``, or ``(N, C, h, w)``) and
dtype, and leaves its input unchanged; ``out=`` takes a preallocated result (it may
even be the input).  The flips, shifts and crops draw per image, so an ``"NCHW"``
batch gets exactly the result of its ``"NHWC"`` transpose; the noise is drawn per
element, in memory order, whatever the layout.

Randomness: ``rng`` is None (fresh entropy), an int seed or a ``numpy.random.Generator``
(used as is).  The random parameters (flip flags, shifts, crop offsets, noise) are
drawn in Python from the Generator, as small arrays; then the pixel work for the
whole batch is ONE compiled kernel call (``flip_images``, ``shift_images``,
``crop_images``, ``noise_images`` in fastdl/_registry.py), parallel over images for
large batches.  The draws do not depend on the backend, so every backend gives the
same result for the same seed (bit for bit for the flips, shifts and crops; to
rounding for the noise).

Chaining: ``Compose([f, g, ...])(images, rng)`` applies each callable in turn as
``f(images, rng=gen)``, one Generator for the chain.  Parameters are bound with
``functools.partial`` or a lambda::

    from functools import partial
    aug = Compose([partial(random_shift, max_shift=1), partial(gaussian_noise, std=0.05,
                   clip=(0.0, 1.0))], image_shape=(8, 8))
    xb_aug = aug(xb, rng)       # xb: (B, 64) flattened rows, as fit passes them

Flattened rows: with ``image_shape=(H, W)`` (or ``(H, W, C)``) ``Compose`` takes
``(B, H*W[*C])`` rows, reshapes them to images, augments and returns rows again;
``for_images(fn, shape)`` does the same for a single function.  This is the form
``model.fit(augment=...)`` uses: it calls ``augment(xb, rng)``.

Convolutional models: ``fit`` passes their batches as ``(B, C, H, W)``: give
``Compose(..., layout="NCHW")`` (its transforms then see channels-last images, so
any transform written for ``(N, H, W, C)`` works), or ``layout="NCHW"`` to each
function.  Without it a 4-D batch is read as ``(N, H, W, C)``, and a ``(B, 1, 8, 8)``
batch would be taken for 1-pixel-high images.

Note for the digits: a left-right flip turns a digit into another glyph (2, 3, 4, 7
...); shifts, crops and noise keep the label.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.data import _rng

__all__ = ["random_flip", "random_shift", "random_crop", "gaussian_noise", "Compose",
           "for_images", "FLIP_AXES", "LAYOUTS"]

FLIP_AXES = ("horizontal", "vertical", "both")
LAYOUTS = ("NHWC", "NCHW")

# The largest max_shift and padding: beyond the image they only add fill, and this
# bound keeps the drawn offsets exact (float64 draws, int64 pixel arithmetic; 2**63
# made NumPy raise its own casting error, Cython an OverflowError).
MAX_OFFSET = 2 ** 31 - 1


def _images(images, layout):
    """(x, x4, c): the checked C-contiguous batch, its 4-D view for the kernels and the
    number of planes each image has there.  Channels last, x4 is (N, H, W, C) and c 1;
    channels first, each channel is an image of its own: x4 is (N C, H, W, 1) and c is
    C (the per-image draws are repeated C times)."""
    V.check_choice("layout", layout, LAYOUTS)
    x = V.as_float("images", images, ndim=(3, 4))
    if 0 in x.shape[1:]:
        want = "(N, C, H, W)" if layout == "NCHW" else "(N, H, W, C)"
        raise ValueError(f"images: expected (N, H, W) or {want} with H, W, C >= 1, "
                         f"got shape {x.shape}")
    if x.ndim == 3:
        return x, x.reshape(x.shape + (1,)), 1
    if layout == "NCHW":
        n, c, h, w = x.shape
        return x, x.reshape(n * c, h, w, 1), c
    return x, x, 1


def _out_shape(x, layout, h, w):
    """The shape of a result of (h, w) images of the batch ``x``."""
    if x.ndim == 3:
        return (x.shape[0], h, w)
    if layout == "NCHW":
        return x.shape[:2] + (h, w)
    return (x.shape[0], h, w, x.shape[3])


def _pair_of_ints(name, value, lo, hi=None):
    """An int or a pair of ints, each in [lo, hi], as (a, b)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
        return tuple(V.check_int(name, v, lo=lo, hi=hi) for v in value)
    v = V.check_int(name, value, lo=lo, hi=hi)
    return v, v


def _uniform_ints(gen, n, ky, kx):
    """(n, 2) int64: column 0 uniform in [0, ky), column 1 in [0, kx), as
    ``floor(rng.random((n, 2)) * (ky, kx))``.  (One ``random`` call costs about a
    tenth of two ``Generator.integers`` calls, which dominated a small batch; the
    bias of flooring a 53-bit uniform is below 1e-15 for these ranges.)"""
    u = gen.random((n, 2))
    u *= np.array([ky, kx], dtype=np.float64)
    return u.astype(np.int64)


def _run(name, backend, x4, c, params, out, scalars=(), hw=None):
    """Call kernel ``name`` on the 4-D view of the batch (``c`` planes an image: each
    per-image parameter repeated ``c`` times), writing ``out``, whose images are ``hw``
    (default: the input's).

    The kernels read whole images while writing, so an input that ``out`` overlaps
    is copied first (``V.copy_overlapping``)."""
    (x4,) = V.copy_overlapping(out, (x4,))
    h, w = x4.shape[1:3] if hw is None else hw
    o4 = out.reshape((x4.shape[0], h, w, x4.shape[3]))
    if c > 1:
        params = tuple(np.repeat(p, c, axis=0) for p in params)
    kernel(name, backend)(x4, *params, o4, *scalars)
    return out


@V.aligned_out
def random_flip(images, rng=None, p=0.5, axis="horizontal", *, layout="NHWC", out=None,
                backend=None):
    """Mirror each image with probability ``p``.

    Parameters
    ----------
    images : (N, H, W) or (N, H, W, C) float32 or float64 ((N, C, H, W) with ``layout``)
    rng : None, int or numpy.random.Generator
    p : float in [0, 1], the probability that an image is flipped
    axis : ``"horizontal"`` (left-right: reverses W), ``"vertical"`` (upside down:
        reverses H) or ``"both"`` (each of the two, independently with probability p)
    layout : ``"NHWC"`` (default) or ``"NCHW"``: how a 4-D batch is read
    out : array of the input's shape and dtype, optional

    Returns
    -------
    (N, H, W[, C]), the input's dtype.  Draws: ``rng.random(N) < p`` (horizontal), then
    another for vertical.
    """
    x, x4, c = _images(images, layout)
    p = V.check_real("p", p, lo=0.0, hi=1.0)
    V.check_choice("axis", axis, FLIP_AXES)
    out = V.make_out(out, x.shape, x.dtype)
    gen = _rng(rng, "rng")
    n = x.shape[0]
    none = np.zeros(n, dtype=bool)
    flip_h = gen.random(n) < p if axis in ("horizontal", "both") else none
    flip_v = gen.random(n) < p if axis in ("vertical", "both") else none
    return _run("flip_images", backend, x4, c,
                (flip_h.view(np.uint8), flip_v.view(np.uint8)), out)


def _fill(fill, dtype) -> float:
    # a finite fill that the images' dtype rounds to +-inf is refused (+-inf itself is
    # a fill like any other)
    fill = V.check_real("fill", fill)
    return V.check_fits("fill", fill, dtype) if np.isfinite(fill) else fill


@V.aligned_out
def random_shift(images, max_shift=1, rng=None, fill=0.0, *, layout="NHWC", out=None,
                 backend=None):
    """Translate each image by a random whole number of pixels, filling the uncovered
    border with ``fill``.

    ``out[n, i, j] = images[n, i - dy, j - dx]`` where that pixel exists, else ``fill``,
    with ``dy``, ``dx`` uniform integers in ``[-max_shift, max_shift]``.

    Parameters
    ----------
    images : (N, H, W) or (N, H, W, C) float32 or float64 ((N, C, H, W) with ``layout``)
    max_shift : int in [0, 2**31 - 1], or a pair (rows, columns); 0 is the identity
    rng : None, int or numpy.random.Generator
    fill : float, the value of the uncovered pixels
    layout : ``"NHWC"`` (default) or ``"NCHW"``: how a 4-D batch is read
    out : array of the input's shape and dtype, optional

    Returns
    -------
    (N, H, W[, C]), the input's dtype.  Draws: ``u = rng.random((N, 2))``,
    ``(dy, dx) = floor(u * (2 my + 1, 2 mx + 1)) - (my, mx)``.
    """
    x, x4, c = _images(images, layout)
    my, mx = _pair_of_ints("max_shift", max_shift, lo=0, hi=MAX_OFFSET)
    fill = _fill(fill, x.dtype)
    out = V.make_out(out, x.shape, x.dtype)
    gen = _rng(rng, "rng")
    shifts = _uniform_ints(gen, x.shape[0], 2 * my + 1, 2 * mx + 1)
    shifts -= np.array([my, mx])
    return _run("shift_images", backend, x4, c, (shifts,), out, (fill,))


@V.aligned_out
def random_crop(images, padding=1, rng=None, size=None, fill=0.0, *, layout="NHWC",
                out=None, backend=None):
    """Pad each image by ``padding`` pixels of ``fill`` on every side, then cut out a
    window of ``size`` at a random position (torchvision's ``RandomCrop(size,
    padding)`` with constant padding).

    With ``size`` None the window has the original size (H, W), so the image moves by
    up to ``padding`` pixels each way; ``padding=0`` is then the identity.

    Parameters
    ----------
    images : (N, H, W) or (N, H, W, C) float32 or float64 ((N, C, H, W) with ``layout``)
    padding : int in [0, 2**31 - 1]
    rng : None, int or numpy.random.Generator
    size : None, int or (h, w), with 1 <= h <= H + 2 padding and 1 <= w <= W + 2 padding
    fill : float, the padding value
    layout : ``"NHWC"`` (default) or ``"NCHW"``: how a 4-D batch is read
    out : array of shape (N, h, w[, C]) (or (N, C, h, w)) and the input's dtype, optional

    Returns
    -------
    (N, h, w[, C]) (or (N, C, h, w)), the input's dtype:
    ``out[n] = padded[n][oy:oy + h, ox:ox + w]``.
    Draws: ``u = rng.random((N, 2))``,
    ``(oy, ox) = floor(u * (H + 2 padding - h + 1, W + 2 padding - w + 1))``.
    """
    x, x4, c = _images(images, layout)
    padding = V.check_int("padding", padding, lo=0, hi=MAX_OFFSET)
    _, hh, ww, _ = x4.shape
    h, w = (hh, ww) if size is None else _pair_of_ints("size", size, lo=1)
    if h > hh + 2 * padding or w > ww + 2 * padding:
        raise ValueError(f"size: expected at most ({hh + 2 * padding}, {ww + 2 * padding}) "
                         f"(the padded image), got {(h, w)}")
    fill = _fill(fill, x.dtype)
    out = V.make_out(out, _out_shape(x, layout, h, w), x.dtype)
    gen = _rng(rng, "rng")
    offsets = _uniform_ints(gen, x.shape[0], hh + 2 * padding - h + 1,
                            ww + 2 * padding - w + 1)
    return _run("crop_images", backend, x4, c, (offsets,), out, (padding, fill), (h, w))


@V.aligned_out
def gaussian_noise(images, std, rng=None, clip=None, *, layout="NHWC", out=None,
                   backend=None):
    """Add independent Gaussian noise to every pixel:
    ``out = clip(images + std * z, lo, hi)`` with ``z ~ N(0, 1)`` drawn in the
    input's dtype (``rng.standard_normal(shape, dtype)``).

    Parameters
    ----------
    images : (N, H, W) or (N, H, W, C) float32 or float64 ((N, C, H, W) with ``layout``)
    std : finite float >= 0
    rng : None, int or numpy.random.Generator
    clip : None (no clipping) or (lo, hi) with lo <= hi, e.g. (0.0, 1.0) for pixels
    layout : ``"NHWC"`` (default) or ``"NCHW"``: how a 4-D batch is read
    out : array of the input's shape and dtype, optional

    Returns
    -------
    (N, H, W[, C]), the input's dtype.  NaN pixels stay NaN.
    """
    x, _, _ = _images(images, layout)  # elementwise: the layout changes nothing
    # inf, or a std that the images' dtype rounds to inf, made every pixel inf or nan
    std = V.check_fits("std", V.check_finite("std", std, lo=0.0), x.dtype)
    if clip is None:
        lo, hi = -np.inf, np.inf
    else:
        if not isinstance(clip, (tuple, list)) or len(clip) != 2:
            raise ValueError(f"clip: expected None or a pair (lo, hi), got {clip!r}")
        lo, hi = V.check_real("clip", clip[0]), V.check_real("clip", clip[1])
        if lo > hi:
            raise ValueError(f"clip: expected lo <= hi, got {clip!r}")
    out = V.make_out(out, x.shape, x.dtype)
    gen = _rng(rng, "rng")
    # the noise is drawn straight into the result buffer, unless that is the input
    noise = np.empty_like(out) if np.may_share_memory(out, x) else out
    gen.standard_normal(dtype=x.dtype, out=noise)
    (x,) = V.copy_overlapping(out, (x,), exact_ok=True)  # elementwise: out may be x
    kernel("noise_images", backend)(x.reshape(-1), noise.reshape(-1), out.reshape(-1),
                                    std, lo, hi)
    return out


def _image_shape(shape, layout="NHWC"):
    if isinstance(shape, numbers.Integral) or not isinstance(shape, (tuple, list)) \
            or len(shape) not in (2, 3):
        raise ValueError(f"image_shape: expected (H, W) or "
                         f"{'(C, H, W)' if layout == 'NCHW' else '(H, W, C)'}, got {shape!r}")
    return tuple(V.check_int("image_shape", s, lo=1) for s in shape)


class Compose:
    """Apply augmentations one after the other, with one random stream.

    Parameters
    ----------
    transforms : sequence of callables ``f(images, rng=Generator) -> images``
        e.g. ``functools.partial(random_shift, max_shift=2)``.
    image_shape : None, (H, W) or (H, W, C) ((C, H, W) with ``layout="NCHW"``)
        None: the input is an image batch.  Given: the input is ``(B, H*W[*C])``
        flattened rows (row-major images, as ``load_digits()`` gives them), reshaped
        to images for the transforms and back to rows for the result.
    layout : ``"NHWC"`` (default) or ``"NCHW"``
        How a 4-D batch is laid out.  With ``"NCHW"`` (a ``Conv2D`` model's batches)
        the transforms see the channels-last view ``(N, H, W, C)`` of each batch
        (no copy for one channel), so they keep their default layout, and the result
        comes back as ``(N, C, H, W)``.

    ``Compose(...)(x, rng=None)`` turns ``rng`` (None, int or Generator) into one
    Generator and passes it to each transform in turn, so a seed fixes the whole
    chain.  The result is always a new C-contiguous array (an empty ``Compose``
    returns a copy).
    """

    def __init__(self, transforms, image_shape=None, layout="NHWC"):
        if callable(transforms) or isinstance(transforms, (str, bytes)):
            raise TypeError("transforms: expected a sequence of callables, got "
                            f"{type(transforms).__name__}")
        try:
            transforms = list(transforms)
        except TypeError:
            raise TypeError("transforms: expected a sequence of callables, got "
                            f"{type(transforms).__name__}") from None
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms: item {i} is not callable "
                                f"({type(t).__name__})")
        self.transforms = transforms
        self.layout = V.check_choice("layout", layout, LAYOUTS)
        self.image_shape = None if image_shape is None else _image_shape(image_shape, layout)

    def __call__(self, images, rng=None):
        gen = _rng(rng, "rng")
        x = images
        if self.image_shape is not None:
            x = V.as_ndarray("images", x)
            size = int(np.prod(self.image_shape))
            if x.ndim != 2 or x.shape[1] != size:
                raise ValueError(f"images: expected flattened rows (B, {size}) for "
                                 f"image_shape {self.image_shape}, got shape {x.shape}")
            x = x.reshape((x.shape[0],) + self.image_shape)
        first = self.layout == "NCHW" and np.ndim(x) == 4
        if first:
            x = V.as_ndarray("images", x).transpose(0, 2, 3, 1)
        if not self.transforms:
            x = np.array(x, copy=True, order="C")
        for t in self.transforms:
            x = t(x, rng=gen)
        if first:
            if not isinstance(x, np.ndarray) or x.ndim != 4:
                raise ValueError(f"transforms: expected (N, H, W, C) images back, got "
                                 f"{getattr(x, 'shape', type(x).__name__)}")
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.image_shape is not None:
            x = x.reshape(x.shape[0], -1)
        return x

    def __repr__(self):
        inner = ", ".join(map(repr, self.transforms))
        shape = "" if self.image_shape is None else f", image_shape={self.image_shape}"
        layout = "" if self.layout == "NHWC" else f", layout={self.layout!r}"
        return f"Compose([{inner}]{shape}{layout})"


def for_images(fn, shape=(8, 8)):
    """``fn`` made to work on flattened rows: the callable ``g(rows, rng=None)`` reshapes
    ``(B, H*W[*C])`` rows to ``(B, *shape)`` images, applies ``fn(images, rng=...)`` and
    returns rows again (``Compose([fn], image_shape=shape)``).  For ``fit(augment=...)``
    on flattened digits: ``for_images(partial(random_shift, max_shift=1))``."""
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    return Compose([fn], image_shape=shape)
