"""Small real data sets shipped with scikit-learn (no download)."""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["load_digits"]


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    # pixel values are the integers 0..16; k / 16 is exact in float32
    X = (np.asarray(d.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(d.target, dtype=np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_digits(images=False):
    """The 8x8 handwritten digits of scikit-learn (UCI optical digits, test part):
    1,797 real grey-level images of the digits 0 to 9, about 180 of each.

    Parameters
    ----------
    images : bool
        False: ``X`` is ``(1797, 64)`` (rows of the flattened images, row-major);
        True: ``X`` is ``(1797, 8, 8)``.

    Returns
    -------
    X : float32, values in [0, 1] (the original 0..16 counts divided by 16), C-contiguous
    y : (1797,) int64 labels 0..9

    Fresh, writable copies on every call (the parsed data are cached in memory).
    """
    if not isinstance(images, (bool, np.bool_)):
        raise TypeError(f"images: expected a bool, got {type(images).__name__}")
    X, y = _digits()
    X = X.copy()
    return (X.reshape(-1, 8, 8) if images else X), y.copy()
