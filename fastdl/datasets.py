"""Real data sets from local files: scikit-learn's digits (shipped with it, no download),
and the IDX files that MNIST-style data sets come in."""
from __future__ import annotations

import contextlib
import functools
import gzip
import os
import stat
import zlib

import numpy as np

__all__ = ["load_digits", "load_idx"]


def _digits_rows():
    """(1797, 65) float64: the 64 pixels and the digit of each image.  Read from the file
    scikit-learn ships, without importing scikit-learn: its import sets KMP_INIT_AT_FORK
    and, through threadpoolctl, KMP_DUPLICATE_LIB_OK in the environment, which fastdl
    leaves alone.  Through scikit-learn where the file is not where it was."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or ()) if spec is not None else ():
        path = os.path.join(root, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            with gzip.open(path, "rt") as fh:
                rows = np.loadtxt(fh, delimiter=",")
            if rows.shape == (1797, 65):
                return rows
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    return np.column_stack([d.data, d.target]).astype(np.float64)


@functools.lru_cache(maxsize=1)
def _digits():
    rows = _digits_rows()
    # pixel values are the integers 0..16; k / 16 is exact in float32
    X = (rows[:, :64] / 16.0).astype(np.float32)
    y = rows[:, 64].astype(np.int64)
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
# The largest payload (values, in bytes) load_idx accepts from one file: 1 GiB.  A gzip
# stream expands about 1000-fold, so a few MB of file can hold gigabytes of values; what
# a header declares past this is refused before any value is read.  The largest public
# IDX set, EMNIST ByClass (697,932 images of 28 x 28), is 547 MB; the float32 ``X`` of
# a payload at the limit is 4 GiB.
_IDX_MAX_BYTES = 1 << 30


class _IdxFile:
    """One open IDX file of unsigned bytes, plain or gzipped (recognised by its content),
    read in two steps so that both files of a pair can be checked before either payload
    is read: ``_IdxFile(stack, ...)`` opens it (closed with ``stack``) and reads and
    checks its header (``dims``, ``size`` = the number of values, at most
    ``_IDX_MAX_BYTES``); ``payload()`` then reads the values."""

    def __init__(self, stack, path, magic: int, what: str):
        self.path = os.fspath(path)
        self.what = what
        with open(self.path, "rb") as fh:
            self.gz = fh.read(2) == b"\x1f\x8b"
        ndim = magic & 0xFF
        self.head_len = 4 + 4 * ndim
        with self._errors():
            self.fh = stack.enter_context((gzip.open if self.gz else open)(self.path, "rb"))
            head = self.fh.read(self.head_len)
        if len(head) < 4:
            raise self._error(f"is too short to be an IDX file ({len(head)} bytes)")
        got = int.from_bytes(head[:4], "big")
        if got != magic:
            raise self._error(f"is not an IDX file of {ndim}-D unsigned bytes: expected "
                              f"magic number 0x{magic:08X}, got 0x{got:08X}")
        if len(head) < self.head_len:
            raise self._error("is truncated in its header")
        self.dims = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big")
                          for i in range(ndim))
        self.size = 1
        for d in self.dims:
            self.size *= d
        if self.size > _IDX_MAX_BYTES:
            raise self._error(f"declares {self.dims}, {self.size} values: more than the "
                              f"limit of {_IDX_MAX_BYTES} values per file "
                              "(fastdl.datasets._IDX_MAX_BYTES)")

    def _error(self, msg):
        return ValueError(f"{self.what}: {self.path!r} {msg}")

    @contextlib.contextmanager
    def _errors(self):
        # a broken gzip stream or an unreadable file is a malformed input: ValueError
        try:
            yield
        except (OSError, EOFError, zlib.error) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise self._error(f"could not be read as {'gzipped ' if self.gz else ''}"
                              f"IDX: {e}") from e

    def _truncated(self, n):
        return self._error(f"is truncated: its header declares {self.dims}, {self.size} "
                           f"values, and it holds {n}")

    def _too_long(self):
        return self._error(f"holds more data than its header declares, {self.dims} "
                           "(trailing bytes or a wrong header)")

    def payload(self):
        """The ``size`` values as a bytearray: exactly what the header declares, with
        nothing after them.  Memory and time follow the file's real content, never its
        declared size: the data are read (and decompressed) in blocks of at most
        ``_READ_BLOCK`` bytes and refused as soon as they run past the declared size."""
        if not self.gz:
            # a plain file's length tells a wrong size before anything is read
            st = os.fstat(self.fh.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size != self.head_len + self.size:
                n = st.st_size - self.head_len
                raise self._truncated(n) if n < self.size else self._too_long()
        data = bytearray()
        with self._errors():
            while True:
                # one byte past the declared size: the stream must end there
                block = self.fh.read(min(_READ_BLOCK, self.size + 1 - len(data)))
                if not block:
                    break
                data += block
                if len(data) > self.size:
                    raise self._too_long()
        if len(data) < self.size:
            raise self._truncated(len(data))
        return data


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
        than its header declares, is a broken gzip stream, declares more than 1 GiB of
        values (``_IDX_MAX_BYTES``: a small gzip can hold gigabytes), or a count mismatch
        between the two files; both headers are checked before any value is read.
    """
    if not isinstance(channel_axis, (bool, np.bool_)):
        raise TypeError(f"channel_axis: expected a bool, got {type(channel_axis).__name__}")
    with contextlib.ExitStack() as stack:
        # both headers, and the counts they declare, are checked before either payload is
        # read: a header that lies costs no more than the header
        images = _IdxFile(stack, images_path, _IDX_IMAGES, "images_path")
        labels = _IdxFile(stack, labels_path, _IDX_LABELS, "labels_path")
        dims, (count,) = images.dims, labels.dims
        if count != dims[0]:
            raise ValueError(f"labels_path: {count} labels for {dims[0]} images")
        data, labels = images.payload(), labels.payload()
    X = np.frombuffer(data, np.uint8).reshape(dims).astype(np.float32)
    X /= 255  # in float32: k / 255 rounded once
    if channel_axis:
        X = X.reshape(dims[0], 1, dims[1], dims[2])
    return X, np.frombuffer(labels, np.uint8).astype(np.int64)
