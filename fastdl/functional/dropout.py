"""Inverted dropout: public kernels.

Randomness (why it is drawn this way): every draw comes from the caller's
``numpy.random.Generator`` here in Python, never inside a kernel, so all backends
give the same mask for the same seed.  A unit is kept when a uniform 32-bit draw
U is >= T = ceil(p * 2**32), so P(keep) = 1 - T / 2**32: exactly 1 - p when p is
a multiple of 2**-32 (0.5, 0.25, ...), and within 2.3e-10 of it otherwise.
Drawing 32 bits per unit is the dominant cost (the bit generator, not the
kernel), so only U's top byte is drawn for every unit: it alone decides unless
it equals T's top byte (probability 1/256); those tied units, which the kernel
lists, take their 24 low bits from words drawn after the bytes.  The result is
distributed exactly as the 32-bit comparison, for about a quarter of the bits.

The draws, in order (a replay of them is in tests/test_dropout.py):
``words = rng.integers(0, 2**64, W, dtype=uint64)`` (taken as ``random_raw``
from the bit generators where that is the same stream) with W = ceil(n / 8) +
n // 512 + isqrt(n // 16) // 2 + 4; the first n bytes of ``words`` are the top
bytes of the units; the rest, as uint32, are the pool: the k-th tied unit (in
unit order) takes ``pool[k] >> 8`` as its 24 low bits.  Only when the ties
outnumber the pool are more words drawn, ``rng.integers(0, 2**64, ceil(extra /
2), dtype=uint64)``, and appended to the pool.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["dropout", "dropout_backward"]

# Units per chunk of the forward kernel: the unit of parallel work, and the
# region of the ``ties`` buffer each chunk lists its ties in.
CHUNK = 1 << 14


def _as_float(name: str, a) -> np.ndarray:
    # V.as_float, keeping a 0-D input 0-D (it returns a scalar as shape (1,))
    out = V.as_float(name, a)
    return out.reshape(()) if np.ndim(a) == 0 else out


# Bit generators whose raw output is the 64 bits ``next_uint64`` gives, so that
# ``random_raw(k)`` draws the same words as ``integers(0, 2**64, k, uint64)``,
# without that call's overhead (several microseconds).  MT19937's raw output
# is 32 bits: it, and any other bit generator, goes through ``integers``.
_RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)


def _words(gen: np.random.Generator, k: int) -> np.ndarray:
    """k uniform uint64 words: ``gen.integers(0, 2**64, k, dtype=np.uint64)``."""
    bg = gen.bit_generator
    if type(bg) in _RAW64:
        return bg.random_raw(k)
    return gen.integers(0, 2 ** 64, k, dtype=np.uint64)


def _generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: expected a seed >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected a numpy.random.Generator or an int seed, "
                    f"got {type(rng).__name__}")


def dropout(x, p, rng, *, backend=None):
    """Inverted dropout: each unit kept with probability ``1 - p``, scaled by ``1 / (1 - p)``.

    ``y = x * mask / (1 - p)``, a product, so NaN or Inf in a dropped unit gives
    NaN (as IEEE and PyTorch).  ``p = 0`` returns a copy of ``x`` and an all-True
    mask, and a ``p`` so close to 1 that the threshold rounds to 2**32 (within
    2**-33) drops every unit; neither draws from ``rng``.

    Parameters
    ----------
    x : array of any shape, float32 or float64, any layout
    p : float in ``[0, 1)``, the probability of dropping a unit
    rng : numpy.random.Generator or int seed (>= 0)
        A Generator is advanced by the draws (about one byte per unit).

    Returns
    -------
    y : same shape and dtype as ``x``, C-contiguous
    mask : same shape, bool, True for the kept units
    """
    x = _as_float("x", x)
    p = V.check_real("p", p, 0.0, 1.0, hi_open=True)
    gen = _generator(rng)
    y = np.empty(x.shape, x.dtype)
    mask = np.empty(x.shape, np.bool_)
    return dropout_into(x, p, gen, y, mask, lambda name, shape, dt: np.empty(shape, dt),
                        backend)


def dropout_into(x, p, gen, y, mask, buffer, backend):
    """``dropout`` into ``y`` and ``mask`` (x's shape, C-contiguous; x checked), with its
    work arrays from ``buffer(name, shape, dtype)``: nn.Dropout passes its reused buffers
    (a training step allocated 8 bytes a unit here), the public function np.empty."""
    if p == 0.0:
        np.copyto(y, x)
        mask.fill(True)
        return y, mask
    thr = math.ceil(p * 2.0 ** 32)  # exact: p * 2**32 only shifts the exponent
    if thr == 2 ** 32:  # p within 2**-33 of 1: every unit dropped, nothing drawn
        with np.errstate(invalid="ignore"):  # Inf * 0 = NaN, as in the kernels
            np.multiply(x, x.dtype.type(0), out=y)
        mask.fill(False)
        return y, mask
    n = x.size
    t8, low = thr >> 24, thr & 0xFFFFFF
    # One call draws the top bytes and, after them, a pool of 32-bit words for the
    # ties (about n / 256, pooled for 4 standard deviations more): a second call
    # to the Generator costs more than the kernel on small arrays.
    nw = (n + 7) // 8
    words = _words(gen, nw + n // 512 + math.isqrt(n >> 4) // 2 + 4)
    r = words[:nw].view(np.uint8)[:n]
    pool = words[nw:].view(np.uint32)
    ties = buffer("ties", (n,), np.int64)
    counts = buffer("counts", (-(-n // CHUNK),), np.int64)
    xf, yf, mf = x.reshape(-1), y.reshape(-1), mask.reshape(-1).view(np.uint8)
    kernel("dropout", backend)(xf, r, yf, mf, ties, counts, t8, 1.0 / (1.0 - p), CHUNK)
    total = int(counts[0] if counts.size == 1 else counts.sum())
    if total:
        if counts.size == 1:
            tied = ties[:total]
        else:  # gather the lists ties[k*CHUNK : k*CHUNK + counts[k]] in unit order
            skip = np.arange(counts.size) * CHUNK - (np.cumsum(counts) - counts)
            tied = ties[np.repeat(skip, counts) + np.arange(total)]
        if total > pool.size:  # beyond the pool (rare): more words, in order
            more = _words(gen, (total - pool.size + 1) // 2)
            pool = np.concatenate([pool, more.view(np.uint32)])
        # a tie is kept when its 24 low bits (the top 24 of a pool word) are >= T's
        dropped = tied[(pool[:total] >> 8) < low]
        with np.errstate(invalid="ignore"):  # Inf * 0 = NaN, as in the kernels
            yf[dropped] = xf[dropped] * x.dtype.type(0)
        mf[dropped] = 0
    return y, mask


def _as_mask(mask, shape) -> np.ndarray:
    """``mask`` checked (bool or integer, ``shape``) as C-contiguous uint8 0/1."""
    mask = V.as_ndarray("mask", mask)
    if mask.dtype.kind == "b":
        V.check_shape("mask", mask, shape)
        return np.ascontiguousarray(mask).view(np.uint8)
    if mask.dtype.kind in "iu":
        V.check_shape("mask", mask, shape)
        return np.not_equal(mask, 0, subok=False).view(np.uint8)  # (np.matrix stays 2-D)
    raise TypeError(f"mask: expected a bool (or integer) array, got {mask.dtype}")


@V.aligned_out
def dropout_backward(dy, mask, p, *, out=None, backend=None):
    """Gradient through dropout: ``dx = dy * mask / (1 - p)``.

    Parameters
    ----------
    dy : array, float32 or float64 (gradient at ``y``)
    mask : same shape, bool (from ``dropout``; an integer array counts nonzero as kept)
    p : float in ``[0, 1)``, the rate the forward pass used

    Returns
    -------
    dx : same shape and dtype as ``dy``, C-contiguous
    """
    dy = _as_float("dy", dy)
    m = _as_mask(mask, dy.shape)
    p = V.check_real("p", p, 0.0, 1.0, hi_open=True)
    given = out is not None
    dx = V.make_out(out, dy.shape, dy.dtype)
    if given:
        dy, m = V.copy_overlapping(dx, (dy, m), exact_ok=True)  # elementwise: dx may be dy
    kernel("dropout_backward", backend)(dy.reshape(-1), m.reshape(-1), dx.reshape(-1),
                                        1.0 / (1.0 - p))
    return dx
