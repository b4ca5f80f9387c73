"""Real data sets from local files: scikit-learn's digits (shipped with it, no download),
and the IDX files that MNIST-style data sets come in."""
from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np

__all__ = ["load_digits", "load_idx"]


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


def load_digits(images=False, channel_axis=False):
    """The 8x8 handwritten digits of scikit-learn (UCI optical digits, test part):
    1,797 real grey-level images of the digits 0 to 9, about 180 of each.

    Parameters
    ----------
    images : bool
        False: ``X`` is ``(1797, 64)`` (rows of the flattened images, row-major);
        True: ``X`` is ``(1797, 8, 8)``.
    channel_axis : bool
        With ``images=True``, True gives ``(1797, 1, 8, 8)``: one grey channel, the
        ``(N, C, H, W)`` layout of ``Conv2D`` and the convolution kernels.

    Returns
    -------
    X : float32, values in [0, 1] (the original 0..16 counts divided by 16), C-contiguous
    y : (1797,) int64 labels 0..9

    Fresh, writable copies on every call (the parsed data are cached in memory).
    """
    if not isinstance(images, (bool, np.bool_)):
        raise TypeError(f"images: expected a bool, got {type(images).__name__}")
    if not isinstance(channel_axis, (bool, np.bool_)):
        raise TypeError(f"channel_axis: expected a bool, got {type(channel_axis).__name__}")
    if channel_axis and not images:
        raise ValueError("channel_axis: a channel axis needs images=True")
    X, y = _digits()
    X = X.copy()
    if images:
        X = X.reshape(-1, 1, 8, 8) if channel_axis else X.reshape(-1, 8, 8)
    return X, y.copy()


# IDX (the format of MNIST, Fashion-MNIST, EMNIST, KMNIST): a big-endian header,
# 0x00 0x00, a type byte (0x08: unsigned bytes), the number of dimensions, then each
# dimension as a 32-bit big-endian count, then the values in row-major order.
_IDX_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions: (count, rows, columns)
_IDX_LABELS = 0x00000801  # unsigned bytes, 1 dimension: (count,)
_READ_BLOCK = 1 << 20


def _read_idx(path, magic: int, what: str):
    """(dims, bytes) of an IDX file of unsigned bytes, plain or gzipped.  Memory and time
    follow the file's real content, never its declared sizes: the data are read in
    blocks and refused as soon as they run past what the header declares."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    ndim = magic & 0xFF
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4 + 4 * ndim)
            if len(head) < 4:
                raise ValueError(f"{what}: {path!r} is too short to be an IDX file "
                                 f"({len(head)} bytes)")
            got = int.from_bytes(head[:4], "big")
            if got != magic:
                raise ValueError(f"{what}: {path!r} is not an IDX file of {ndim}-D unsigned "
                                 f"bytes: expected magic number 0x{magic:08X}, got 0x{got:08X}")
            if len(head) < 4 + 4 * ndim:
                raise ValueError(f"{what}: {path!r} is truncated in its header")
            dims = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
            size = 1
            for d in dims:
                size *= d
            data = bytearray()
            while True:
                block = fh.read(min(_READ_BLOCK, size + 1 - len(data)))
                if not block:
                    break
                data += block
                if len(data) > size:
                    raise ValueError(f"{what}: {path!r} holds more data than its header "
                                     f"declares, {dims} (trailing bytes or a wrong header)")
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{what}: {path!r} could not be read as {'gzipped ' if gz else ''}"
                         f"IDX: {e}") from e
    if len(data) < size:
        raise ValueError(f"{what}: {path!r} is truncated: its header declares {dims}, "
                         f"{size} values, and it holds {len(data)}")
    return dims, data


def load_idx(images_path, labels_path, channel_axis=False):
    """Images and labels from the IDX files that MNIST-style data sets ship in
    (``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, gzipped or not:
    gzip is recognised by its content).  Local paths only; nothing is downloaded.

    Parameters
    ----------
    images_path : str or path-like
        An IDX file of unsigned bytes with 3 dimensions (magic number 0x00000803):
        (count, rows, columns).
    labels_path : str or path-like
        An IDX file of unsigned bytes with 1 dimension (magic number 0x00000801), with
        as many labels as there are images.
    channel_axis : bool
        True adds a channel axis: ``X`` is ``(count, 1, rows, columns)``, the
        ``(N, C, H, W)`` layout of ``Conv2D``.

    Returns
    -------
    X : (count, rows, columns) float32, the pixel values divided by 255 (in [0, 1]),
        C-contiguous
    y : (count,) int64 labels

    Raises
    ------
    ValueError
        A file that is not such an IDX file (its magic number), is truncated or longer
        than its header declares, is a broken gzip stream, or a count mismatch between
        the two files.
    """
    if not isinstance(channel_axis, (bool, np.bool_)):
        raise TypeError(f"channel_axis: expected a bool, got {type(channel_axis).__name__}")
    dims, data = _read_idx(images_path, _IDX_IMAGES, "images_path")
    (count,), labels = _read_idx(labels_path, _IDX_LABELS, "labels_path")
    if count != dims[0]:
        raise ValueError(f"labels_path: {count} labels for {dims[0]} images")
    X = np.frombuffer(data, np.uint8).reshape(dims).astype(np.float32)
    X /= 255  # in float32: k / 255 rounded once
    if channel_axis:
        X = X.reshape(dims[0], 1, dims[1], dims[2])
    return X, np.frombuffer(labels, np.uint8).astype(np.int64)
