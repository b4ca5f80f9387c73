"""``Parameters``: every parameter of a model in one flat, aligned buffer, and every
gradient in a second one; each named parameter is a view into them (the optimizers
update the whole buffer in one kernel call)."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from fastdl import _validate as V

ALIGN = 64  # bytes: every named array starts on a cache line (and a 512-bit vector)


def _aligned_zeros(n: int, dtype: np.dtype) -> np.ndarray:
    """A zeroed 1-D array of n elements whose first element is ALIGN-byte aligned;
    MemoryError when it cannot be allocated."""
    try:
        raw = np.zeros(n * dtype.itemsize + ALIGN, dtype=np.uint8)
    except ValueError:  # beyond the address space: NumPy's "array is too big"
        raise MemoryError(f"cannot allocate {n:,} parameters of {dtype}") from None
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + n * dtype.itemsize].view(dtype)


def _shape(name: str, shape) -> tuple:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"shapes[{name!r}]: expected a tuple of ints, got {type(shape).__name__}")
    out = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"shapes[{name!r}]: expected a tuple of ints, got {shape!r}")
        if d < 0:
            raise ValueError(f"shapes[{name!r}]: expected non-negative sizes, got {tuple(shape)}")
        out.append(int(d))
    return tuple(out)


class Parameters:
    """Every parameter of a model in one flat, aligned buffer, and the gradients in another.

    Parameters
    ----------
    shapes : mapping name -> shape (or an iterable of (name, shape) pairs)
        In order; a shape is a tuple of ints (an int means a 1-D array).
    dtype : float32 (default) or float64

    Attributes
    ----------
    data : (size,) C-contiguous array holding every parameter (zero-initialised)
    grad : (size,) array of the same dtype, the gradients (zero-initialised)
    names : list of the names, in order
    shapes : dict name -> shape
    offsets : dict name -> (start, stop), the element range of the name in ``data``/``grad``
    size : number of elements of ``data`` (the parameters plus alignment padding)
    num_parameters : number of parameters (sum of the named arrays' sizes)
    dtype : the dtype

    Notes
    -----
    Each named array starts at an offset that is a multiple of 64 bytes, so every
    view is aligned for SIMD loads; the few padding elements between them stay
    zero (a zero weight with a zero gradient stays zero under every update here,
    and adds nothing to a gradient norm).  ``p[name]`` is a writable view into
    ``data`` with the name's shape, ``p.grad_of(name)`` the matching view into
    ``grad``; ``p[name] = values`` copies values in.  An unknown name raises
    ``KeyError``.
    """

    def __init__(self, shapes, dtype=np.float32):
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
        if dt not in V.FLOATS:
            raise TypeError(f"dtype: expected float32 or float64, got {dt}")
        self._shapes, self._offsets, pos = self._layout(shapes, dt)
        self._aliases: dict[str, str] = {}
        self._dtype = dt
        self._data = _aligned_zeros(pos, dt)
        self._grad = _aligned_zeros(pos, dt)
        self._views = {k: self._data[a:b].reshape(self._shapes[k])
                       for k, (a, b) in self._offsets.items()}
        self._gviews = {k: self._grad[a:b].reshape(self._shapes[k])
                        for k, (a, b) in self._offsets.items()}

    def __setstate__(self, state):
        # pickle and deepcopy copy each view as an array of its own: make them views
        # of the (unpickled) buffers again, or writes through them would be lost
        self.__dict__.update(state)
        self._views = {k: self._data[a:b].reshape(self._shapes[k])
                       for k, (a, b) in self._offsets.items()}
        self._gviews = {k: self._grad[a:b].reshape(self._shapes[k])
                        for k, (a, b) in self._offsets.items()}

    @staticmethod
    def _layout(shapes, dt):
        """(name -> shape, name -> (start, stop), buffer size) for ``shapes`` in order."""
        items = list(shapes.items()) if isinstance(shapes, Mapping) else list(shapes)
        step = ALIGN // dt.itemsize
        out_shapes: dict[str, tuple] = {}
        offsets: dict[str, tuple[int, int]] = {}
        pos = 0
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(f"shapes: expected (name, shape) pairs, got {item!r}")
            name, shape = item
            if not isinstance(name, str):
                raise TypeError(f"shapes: expected str names, got {type(name).__name__}")
            if name in out_shapes:
                raise ValueError(f"shapes: duplicate name {name!r}")
            shape = _shape(name, shape)
            size = math.prod(shape)
            out_shapes[name] = shape
            offsets[name] = (pos, pos + size)
            pos += -(-size // step) * step
        return out_shapes, offsets, pos

    @classmethod
    def buffer_size(cls, shapes, dtype=np.float32) -> int:
        """``Parameters(shapes, dtype).size`` (with the alignment padding), computed
        without allocating anything."""
        return cls._layout(shapes, np.dtype(dtype))[2]

    @classmethod
    def from_arrays(cls, arrays, dtype=None) -> "Parameters":
        """A Parameters holding copies of ``arrays`` (mapping name -> array).

        ``dtype`` defaults to the arrays' common float dtype (float32 if none)."""
        items = list(arrays.items()) if isinstance(arrays, Mapping) else list(arrays)
        vals = [(k, np.asarray(a)) for k, a in items]
        if dtype is None:
            kinds = {a.dtype for _, a in vals if a.dtype in V.FLOATS}
            dtype = np.float64 if np.dtype(np.float64) in kinds else np.float32
        p = cls([(k, a.shape) for k, a in vals], dtype=dtype)
        for k, a in vals:
            p[k] = a
        return p

    # ---- buffers ----
    @property
    def data(self) -> np.ndarray:
        return self._data

    @property
    def grad(self) -> np.ndarray:
        return self._grad

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def num_parameters(self) -> int:
        return sum(b - a for a, b in self._offsets.values())

    @property
    def names(self) -> list[str]:
        return list(self._shapes)

    @property
    def shapes(self) -> dict[str, tuple]:
        return dict(self._shapes)

    @property
    def offsets(self) -> dict[str, tuple[int, int]]:
        return dict(self._offsets)

    # ---- named views ----
    def _name(self, name):
        # a name the model used before (an alias: '0.W' for 'dense_0.W') still works
        return name if name in self._views else self._aliases.get(name, name)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[self._name(name)]

    def __setitem__(self, name: str, value) -> None:
        view = self._views[self._name(name)]
        value = V.as_ndarray(name, value)
        if value.shape != view.shape:
            raise ValueError(f"{name}: expected shape {view.shape}, got {value.shape}")
        np.copyto(view, value, casting="same_kind")

    def grad_of(self, name: str) -> np.ndarray:
        """The writable view into ``grad`` of parameter ``name``, with its shape (as
        ``p[name]`` is the view into ``data``); ``KeyError`` for an unknown name."""
        return self._gviews[self._name(name)]

    def items(self):
        """(name, view into data) pairs, in order."""
        return list(self._views.items())

    def grad_items(self):
        """(name, view into grad) pairs, in order."""
        return list(self._gviews.items())

    def keys(self):
        """The parameter names, in order (``"dense_0.W"``, ``"dense_0.b"``, ...)."""
        return list(self._views)

    def __iter__(self):
        return iter(self._views)

    def __contains__(self, name) -> bool:
        return name in self._views or name in self._aliases

    def __len__(self) -> int:
        return len(self._views)

    def zero_grad(self) -> None:
        """grad[:] = 0."""
        self._grad.fill(0)

    def copy(self) -> "Parameters":
        """An independent Parameters with the same layout, values and gradients."""
        p = Parameters(list(self._shapes.items()), dtype=self._dtype)
        np.copyto(p._data, self._data)
        np.copyto(p._grad, self._grad)
        p._aliases = dict(self._aliases)
        return p

    def __repr__(self) -> str:
        return (f"Parameters({len(self)} arrays, {self.num_parameters} parameters, "
                f"dtype={self._dtype})")
