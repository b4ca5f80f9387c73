"""Optimizers over one flat parameter buffer, and gradient clipping.

``Parameters`` holds every parameter of a model in one contiguous array
(``.data``) and every gradient in a second one (``.grad``); each named parameter
is a view into them.  ``SGD`` and ``Adam`` are thin shells over the in-place
kernels of ``fastdl.functional`` (``sgd_update_``, ``adam_update_``): one
``step()`` is one fused kernel call over the whole buffer, whatever the number
of layers, with gradient clipping folded into the same pass.

    p = Parameters({"0.W": (64, 32), "0.b": (32,)}, dtype=np.float32)
    opt = Adam(p, lr=1e-3, clip_norm=1.0)
    ...  # write gradients into p.grad (or p.grad_of(name))
    opt.step(); opt.zero_grad()
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from fastdl import _config
from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.functional.optim import check_bool, check_hyper, inplace_array

__all__ = ["Parameters", "SGD", "Adam", "clip_grad_norm_", "clip_grad_value_"]

ALIGN = 64  # bytes: every named array starts on a cache line (and a 512-bit vector)
MAX_STEP = 2**62  # a step count the kernels' 64-bit step argument holds with room to go on


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
        value = np.asarray(value)
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


# ---- gradient clipping ----

def _grad_arrays(grads) -> list[np.ndarray]:
    """The gradient arrays of a Parameters object, an array, or a list/tuple of them."""
    def one(x, where):
        if isinstance(x, np.ndarray):
            a = x
        elif isinstance(getattr(x, "grad", None), np.ndarray):
            a = x.grad
        else:
            raise TypeError(f"{where}: expected a NumPy array, a Parameters object or a list "
                            f"of arrays, got {type(x).__name__}")
        if type(a) is not np.ndarray:
            a = a.view(np.ndarray)  # np.matrix would reshape to 2-D; a masked array is no Numba type
        if a.dtype not in V.FLOATS:
            raise TypeError(f"{where}: expected a float32 or float64 array, got {a.dtype}")
        if not a.flags.writeable:
            raise ValueError(f"{where}: array is read-only (it is clipped in place)")
        return a

    if isinstance(grads, (list, tuple)):
        return [one(x, f"grads[{i}]") for i, x in enumerate(grads)]
    return [one(grads, "grads")]


def _sum_squares(a: np.ndarray, backend) -> float:
    a = V.aligned(np.ascontiguousarray(a)).reshape(-1)
    return kernel("sum_squares", backend)(a)


def _kernel_ready(a: np.ndarray) -> bool:
    # the in-place kernels take flat, C-contiguous, aligned buffers; others go through NumPy
    return a.flags.c_contiguous and a.flags.aligned


def clip_grad_norm_(grads, max_norm, *, backend=None) -> float:
    """Scale the gradients in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : Parameters (its ``.grad`` buffer), an array, or a list/tuple of arrays
        float32/float64, writeable; strided arrays are accepted.
    max_norm : float >= 0

    Returns
    -------
    total_norm : float
        The norm before clipping, ``sqrt(sum of g^2 over every array)``, accumulated
        in float64.

    Notes
    -----
    As ``torch.nn.utils.clip_grad_norm_``: ``coef = max_norm / (total_norm + 1e-6)``,
    capped at 1, multiplies every gradient when it is below 1.  A NaN norm makes
    every gradient NaN and an infinite one zeroes the finite gradients (PyTorch's
    behaviour with ``error_if_nonfinite=False``).
    """
    arrays = _grad_arrays(grads)
    max_norm = check_hyper("max_norm", max_norm, lo=0.0)
    _config.check_backend(backend)
    total = math.sqrt(math.fsum(_sum_squares(a, backend) for a in arrays))
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # also NaN
        for a in arrays:
            if _kernel_ready(a):
                kernel("scale", backend)(a.reshape(-1), coef)
            else:
                a *= coef
    return total


def clip_grad_value_(grads, clip, *, backend=None) -> None:
    """Clip every gradient in place to ``[-clip, clip]`` (NaN stays NaN).

    ``grads`` as in ``clip_grad_norm_``; ``clip`` a float >= 0."""
    arrays = _grad_arrays(grads)
    clip = check_hyper("clip", clip, lo=0.0)
    _config.check_backend(backend)
    for a in arrays:
        if _kernel_ready(a):
            kernel("clip_value", backend)(a.reshape(-1), clip)
        else:
            np.clip(a, -clip, clip, out=a)


# ---- optimizers ----

def _scalar(name: str, value):
    """A number from a state dict (also a NumPy scalar or 0-d array, as np.load gives)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValueError(f"{name}: expected a scalar, got an array of shape {value.shape}")
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    return value


class _Optimizer:
    """Shared shell: the (param, grad) buffers, lr, clipping, state dict plumbing."""

    _hyper: tuple = ()    # names of the hyper-parameters saved in the state dict
    _arrays: tuple = ()   # names of the state arrays

    def __init__(self, params, lr, clip_norm, clip_value, backend):
        self._params = params
        self._param, self._grad = self._resolve(params)
        self._w = self._param.reshape(-1)
        self.lr = lr
        self._clip_norm = None if clip_norm is None else check_hyper("clip_norm", clip_norm, 0.0)
        self._clip_value = (None if clip_value is None
                            else check_hyper("clip_value", clip_value, 0.0))
        if backend is not None:
            _config.check_backend(backend)
        self.backend = backend
        self._step = 0
        self.last_grad_norm = None

    def __setstate__(self, state):
        # after pickle or deepcopy the flat view of the parameters is a copy: view again
        self.__dict__.update(state)
        self._param, self._grad = self._resolve(self._params)
        self._w = self._param.reshape(-1)

    @staticmethod
    def _resolve(params):
        if isinstance(params, (tuple, list)):
            if len(params) != 2 or not all(isinstance(a, np.ndarray) for a in params):
                raise TypeError("params: expected a Parameters object or a (param, grad) pair "
                                "of arrays")
            param, grad = params
            pname, gname = "params[0] (param)", "params[1] (grad)"
        elif isinstance(getattr(params, "data", None), np.ndarray) and \
                isinstance(getattr(params, "grad", None), np.ndarray):
            param, grad = params.data, params.grad
            pname, gname = "params.data", "params.grad"
        else:
            raise TypeError(f"params: expected a Parameters object or a (param, grad) pair of "
                            f"arrays, got {type(params).__name__}")
        param = inplace_array(pname, param)
        if grad.dtype != param.dtype:
            raise TypeError(f"{gname}: expected dtype {param.dtype} (as the parameters), "
                            f"got {grad.dtype}")
        if grad.shape != param.shape:
            raise ValueError(f"{gname}: expected shape {param.shape} (as the parameters), "
                             f"got {grad.shape}")
        if np.may_share_memory(param, grad):
            raise ValueError(f"{gname}: must not share memory with the parameters")
        return param, grad

    # ---- public ----
    @property
    def params(self):
        return self._params

    @property
    def lr(self) -> float:
        """The learning rate of the next ``step()``; settable (a float >= 0, checked),
        as ``fit`` does with a schedule at each epoch's start."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = check_hyper("lr", value, lo=0.0)

    @property
    def clip_norm(self):
        return self._clip_norm

    @property
    def clip_value(self):
        return self._clip_value

    @property
    def steps(self) -> int:
        """Steps taken so far."""
        return self._step

    def zero_grad(self) -> None:
        """Set the gradients to zero."""
        self._grad[...] = 0

    def _grad_flat(self) -> np.ndarray:
        g = self._grad
        if not g.flags.c_contiguous:
            g = np.ascontiguousarray(g)
        return g.reshape(-1)

    def _grad_scale(self, g: np.ndarray) -> float:
        """The global-norm clipping coefficient (1 when off), fused into the update."""
        if self._clip_norm is None:
            return 1.0
        total = math.sqrt(kernel("sum_squares", self.backend)(g))
        self.last_grad_norm = total
        coef = self._clip_norm / (total + 1e-6)
        return 1.0 if coef >= 1.0 else coef  # NaN stays NaN, as torch

    def _grad_clip(self) -> float:
        return math.inf if self._clip_value is None else self._clip_value

    # ---- state dict ----
    def _hyper_values(self) -> dict:
        return {k: getattr(self, k) for k in self._hyper}

    def state_dict(self) -> dict:
        """The optimizer's state as plain numbers and NumPy arrays (copies).

        Every value is a str, bool, int, float or 1-D array, so the dict can be
        saved with ``np.savez(path, **d)`` and given back to ``load_state_dict``
        as loaded.  See the class docstring for the keys."""
        d = {"optimizer": type(self).__name__, "step": self._step, "lr": self._lr}
        d.update(self._hyper_values())
        if self._clip_norm is not None:
            d["clip_norm"] = self._clip_norm
        if self._clip_value is not None:
            d["clip_value"] = self._clip_value
        for k in self._state_array_names():
            d[k] = getattr(self, "_" + k).copy()
        return d

    @classmethod
    def from_state_dict(cls, params, d, *, backend=None):
        """A new optimizer over ``params`` with everything of ``d`` (from ``state_dict()``:
        hyper-parameters, learning rate, clipping, step count, state arrays), so that it
        goes on exactly as the one that wrote ``d``.  ``d`` is checked as in
        ``load_state_dict``."""
        opt = cls(params, lr=0.0, backend=backend)
        opt.load_state_dict(d)
        return opt

    def load_state_dict(self, d) -> None:
        """Restore hyper-parameters, step count and state arrays from ``state_dict()``.

        Everything is checked before anything changes: a refused dict leaves the
        optimizer as it was.  Arrays are copied in (``d`` is not kept)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(d).__name__}")
        name = _scalar("optimizer", d.get("optimizer"))
        if name != type(self).__name__:
            raise ValueError(f"state_dict['optimizer']: expected {type(self).__name__!r}, "
                             f"got {name!r}")
        required = {"optimizer", "step", "lr", *self._hyper}
        optional = {"clip_norm", "clip_value"}
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"state_dict: missing keys {missing}")
        new = {k: _scalar(k, d[k]) for k in required | optional if k in d and k != "optimizer"}
        step = V.check_int("state_dict['step']", new.pop("step"), lo=0)
        if step >= MAX_STEP:
            raise ValueError(f"state_dict['step']: expected an int < 2**62, got {step}")
        lr = check_hyper("state_dict['lr']", new.pop("lr"), lo=0.0)
        clip_norm = (None if "clip_norm" not in new
                     else check_hyper("state_dict['clip_norm']", new.pop("clip_norm"), 0.0))
        clip_value = (None if "clip_value" not in new
                      else check_hyper("state_dict['clip_value']", new.pop("clip_value"), 0.0))
        hyper = self._check_hyper({k: new[k] for k in self._hyper}, self._w.dtype)
        arrays = {}
        names = self._state_array_names(hyper)
        unknown = sorted(set(d) - required - optional - set(names))
        if unknown:
            raise ValueError(f"state_dict: unknown keys {unknown}")
        n = self._w.size
        for k in names:
            if k not in d:
                raise ValueError(f"state_dict: missing key {k!r}")
            a = d[k]
            if not isinstance(a, np.ndarray):
                raise TypeError(f"state_dict[{k!r}]: expected a NumPy array, "
                                f"got {type(a).__name__}")
            if a.dtype != self._w.dtype:
                raise TypeError(f"state_dict[{k!r}]: expected dtype {self._w.dtype} "
                                f"(as the parameters), got {a.dtype}")
            if a.shape != (n,):
                raise ValueError(f"state_dict[{k!r}]: expected shape {(n,)}, got {a.shape}")
            arrays[k] = a
        # everything checked: apply
        self._step = step
        self._lr = lr
        self._clip_norm = clip_norm
        self._clip_value = clip_value
        self._set_hyper(hyper)
        for k, a in arrays.items():
            np.copyto(getattr(self, "_" + k), a)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self._hyper_values().items())
        return f"{type(self).__name__}(lr={self._lr!r}, {hp}, steps={self._step})"


class SGD(_Optimizer):
    """Stochastic gradient descent, with the course's momentum or Nesterov momentum.

    Parameters
    ----------
    params : Parameters (``model.parameters()``) or a (param, grad) pair of arrays
        of one float dtype and shape; ``param`` C-contiguous and writeable.
    lr : float >= 0 (settable: ``opt.lr = 0.01``)
    momentum : float in [0, 1)
    nesterov : bool
    l1, l2 : float >= 0, penalty ``l1 sum|w| + l2 sum w^2`` (gradient ``l1 sign(w) + 2 l2 w``)
    clip_norm : float >= 0 or None
        Clip the global gradient norm first, as ``clip_grad_norm_`` (the norm is
        kept in ``opt.last_grad_norm``).
    clip_value : float >= 0 or None
        Then clip each gradient element to ``[-clip_value, clip_value]``.
    backend : None (the default backend at each step) or a backend name

    Notes
    -----
    ``step()`` makes one ``sgd_update_`` pass over the whole buffer::

        v = momentum v + lr g;  w -= v                       (momentum)
        v = momentum v + lr g;  w -= momentum v + lr g       (Nesterov)

    where ``g`` is the gradient after clipping, plus the penalties.  The clipping
    is folded into the update: the optimizer uses the clipped gradient without
    writing it back, so ``.grad`` holds the raw gradient after ``step()``.

    ``state_dict()`` keys: ``"optimizer"`` ("SGD"), ``"step"`` (steps taken),
    ``"lr"``, ``"momentum"``, ``"nesterov"``, ``"l1"``, ``"l2"``, ``"clip_norm"``
    and ``"clip_value"`` (only when set), ``"velocity"`` (1-D array, only when
    momentum > 0).
    """

    _hyper = ("momentum", "nesterov", "l1", "l2")

    def __init__(self, params, lr, momentum=0.0, nesterov=False, l1=0.0, l2=0.0,
                 clip_norm=None, clip_value=None, *, backend=None):
        super().__init__(params, lr, clip_norm, clip_value, backend)
        self._set_hyper(self._check_hyper(dict(momentum=momentum, nesterov=nesterov, l1=l1,
                                               l2=l2), self._w.dtype))

    @staticmethod
    def _check_hyper(h: dict, dtype) -> dict:
        return dict(momentum=check_hyper("momentum", h["momentum"], 0.0, 1.0, hi_open=True),
                    nesterov=check_bool("nesterov", h["nesterov"]),
                    l1=check_hyper("l1", h["l1"], 0.0), l2=check_hyper("l2", h["l2"], 0.0))

    def _set_hyper(self, h: dict) -> None:
        self._momentum, self._nesterov = h["momentum"], h["nesterov"]
        self._l1, self._l2 = h["l1"], h["l2"]
        if self._momentum > 0:
            if getattr(self, "_velocity", None) is None:
                self._velocity = np.zeros_like(self._w)
        else:
            self._velocity = None

    def _state_array_names(self, hyper=None) -> tuple:
        momentum = self._momentum if hyper is None else hyper["momentum"]
        return ("velocity",) if momentum > 0 else ()

    momentum = property(lambda self: self._momentum)
    nesterov = property(lambda self: self._nesterov)
    l1 = property(lambda self: self._l1)
    l2 = property(lambda self: self._l2)

    @property
    def velocity(self):
        """The velocity buffer (1-D, as ``params.data``), or None without momentum."""
        return self._velocity

    def step(self) -> None:
        """One update over the whole buffer (clipping first, when set)."""
        g = self._grad_flat()
        scale = self._grad_scale(g)
        self._step += 1
        kernel("sgd_update", self.backend)(g, self._w, self._velocity, self._lr, self._momentum,
                                           self._nesterov, self._l1, self._l2, scale,
                                           self._grad_clip())


class Adam(_Optimizer):
    """Adam with bias correction; with ``weight_decay``, AdamW (decoupled decay).

    Parameters
    ----------
    params : Parameters (``model.parameters()``) or a (param, grad) pair of arrays
    lr : float >= 0 (settable)
    betas : (beta1, beta2), each in [0, 1)
    eps : float > 0, added to sqrt(v_hat) (as PyTorch)
    weight_decay : float >= 0, decoupled: ``w *= 1 - lr * weight_decay`` before the step
    l1, l2 : float >= 0, penalty added to the gradient (coupled, as Adam's L2)
    clip_norm, clip_value, backend : as in ``SGD``

    Notes
    -----
    ``step()`` makes one ``adam_update_`` pass (reads w, g, m, v; writes w, m, v)::

        w *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        w -= lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)

    ``t`` counts steps from 1.  ``state_dict()`` keys: ``"optimizer"`` ("Adam"),
    ``"step"`` (steps taken, the ``t`` of the last step), ``"lr"``, ``"beta1"``,
    ``"beta2"``, ``"eps"``, ``"weight_decay"``, ``"l1"``, ``"l2"``,
    ``"clip_norm"`` and ``"clip_value"`` (only when set), ``"m"``, ``"v"``
    (1-D arrays as ``params.data``).
    """

    _hyper = ("beta1", "beta2", "eps", "weight_decay", "l1", "l2")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 l1=0.0, l2=0.0, clip_norm=None, clip_value=None, *, backend=None):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        super().__init__(params, lr, clip_norm, clip_value, backend)
        self._set_hyper(self._check_hyper(dict(beta1=betas[0], beta2=betas[1], eps=eps,
                                               weight_decay=weight_decay, l1=l1, l2=l2),
                                          self._w.dtype))
        self._m = np.zeros_like(self._w)
        self._v = np.zeros_like(self._w)

    @staticmethod
    def _check_hyper(h: dict, dtype) -> dict:
        # eps must not round to 0 in the parameters' dtype (0/0 where v and g are 0)
        eps = V.check_fits("eps", check_hyper("eps", h["eps"], 0.0, lo_open=True), dtype,
                           nonzero=True)
        return dict(beta1=check_hyper("beta1", h["beta1"], 0.0, 1.0, hi_open=True),
                    beta2=check_hyper("beta2", h["beta2"], 0.0, 1.0, hi_open=True),
                    eps=eps,
                    weight_decay=check_hyper("weight_decay", h["weight_decay"], 0.0),
                    l1=check_hyper("l1", h["l1"], 0.0), l2=check_hyper("l2", h["l2"], 0.0))

    def _set_hyper(self, h: dict) -> None:
        for k, val in h.items():
            setattr(self, "_" + k, val)

    def _state_array_names(self, hyper=None) -> tuple:
        return ("m", "v")

    beta1 = property(lambda self: self._beta1)
    beta2 = property(lambda self: self._beta2)
    betas = property(lambda self: (self._beta1, self._beta2))
    eps = property(lambda self: self._eps)
    weight_decay = property(lambda self: self._weight_decay)
    l1 = property(lambda self: self._l1)
    l2 = property(lambda self: self._l2)

    @property
    def m(self) -> np.ndarray:
        """First-moment buffer (1-D, as ``params.data``)."""
        return self._m

    @property
    def v(self) -> np.ndarray:
        """Second-moment buffer (1-D, as ``params.data``)."""
        return self._v

    def step(self) -> None:
        """One update over the whole buffer (clipping first, when set)."""
        g = self._grad_flat()
        scale = self._grad_scale(g)
        self._step += 1
        kernel("adam_update", self.backend)(g, self._w, self._m, self._v, self._step, self._lr,
                                            self._beta1, self._beta2, self._eps,
                                            self._weight_decay, self._l1, self._l2, scale,
                                            self._grad_clip())
