"""Inverted dropout, NumPy reference.

Arrays are flat (n,): the public wrapper (fastdl/functional/dropout.py) flattens
any shape.  Every unit is kept with probability 1 - p, and kept units are scaled
by ``scale = 1 / (1 - p)``, so E[y] = x:

    y = x * mask * scale,    dx = dy * mask * scale

(a product, not a select: NaN or Inf in a dropped unit gives NaN, as IEEE and torch).

The randomness is drawn in Python, from the caller's Generator, never in a kernel,
so every backend gives the same mask.  A unit is kept when its 32-bit uniform
draw U satisfies U >= T, T = ceil(p * 2**32), i.e. P(keep) = 1 - T / 2**32.  Only
the top byte r of U is drawn for every unit: r > T >> 24 decides "keep", r < T >> 24
"drop", and the rare tie r == T >> 24 (probability 1/256) is settled by the wrapper
with 24 more bits drawn for the tied units only.  The forward kernel therefore
takes ``r`` (n,) uint8 and ``t8 = T >> 24`` in [0, 255] (the wrapper handles
T = 2**32 itself) and

* keeps a unit when r >= t8 (ties provisionally kept): mask = 1, y = x * scale;
* lists the ties: for chunk k (units [k*chunk, (k+1)*chunk)), their indices in
  increasing order go to ties[k*chunk : k*chunk + counts[k]].
"""
import numpy as np

# Inf * 0 = NaN is the intended IEEE result in a dropped unit: no warning for it
_quiet = np.errstate(invalid="ignore")


@_quiet
def dropout(x, r, y, mask, ties, counts, t8, scale, chunk):
    """Forward pass, ties kept provisionally and listed per chunk.

    x (n,), r (n,) uint8, y (n,), mask (n,) uint8, ties (n,) int64,
    counts (ceil(n / chunk),) int64; t8 int in [0, 255], scale float, chunk int."""
    keep = r >= t8
    mask[...] = keep
    np.multiply(x, keep * x.dtype.type(scale), out=y)
    for k in range(counts.shape[0]):
        lo = k * chunk
        tied = lo + np.flatnonzero(r[lo:lo + chunk] == t8)
        counts[k] = tied.size
        ties[lo:lo + tied.size] = tied


@_quiet
def dropout_backward(dy, mask, dx, scale):
    """dx = dy * mask * scale.   dy (n,), mask (n,) uint8, dx (n,); scale float.

    Any nonzero mask byte keeps its unit, as in the compiled kernels (a bool array
    may hold bytes other than 0 and 1: ``np.frombuffer(b"\\x02", bool)``)."""
    np.multiply(dy, (mask != 0) * dy.dtype.type(scale), out=dx)
