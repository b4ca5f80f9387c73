"""``SGD`` and ``Adam``: thin shells over the in-place kernels of ``fastdl.functional``
(``sgd_update_``, ``adam_update_``) that hold the hyper-parameters and the state arrays;
one ``step()`` is one fused kernel call over the whole parameter buffer."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from fastdl import _config
from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.functional.optim import check_bool, check_hyper, inplace_array

MAX_STEP = 2**62  # a step count the kernels' 64-bit step argument holds with room to go on


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
        self._done = np.zeros(1, np.uint8)  # the update kernel's mark (Adam.step)
        self.last_grad_norm = None

    def __setstate__(self, state):
        # after pickle or deepcopy the flat view of the parameters is a copy: view again
        self.__dict__.update(state)
        self.__dict__.setdefault("_done", np.zeros(1, np.uint8))  # pickled before it
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
        self._check_state_arrays(arrays)
        # everything checked: apply
        self._step = step
        self._lr = lr
        self._clip_norm = clip_norm
        self._clip_value = clip_value
        self._set_hyper(hyper)
        for k, a in arrays.items():
            np.copyto(getattr(self, "_" + k), a)

    def _check_state_arrays(self, arrays: dict) -> None:
        """Refuse state arrays that no run of this optimizer can produce (the subclass
        says which); shapes and dtypes are checked already."""

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
        kernel("sgd_update", self.backend)(g, self._w, self._velocity, self._lr, self._momentum,
                                           self._nesterov, self._l1, self._l2, scale,
                                           self._grad_clip())
        self._step += 1  # after the update: an interrupt before it leaves both as they were


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

    def _check_state_arrays(self, arrays: dict) -> None:
        # v is a running mean of squares: never negative (NaN and inf it can be, after
        # a NaN or overflowing gradient, and a saved model keeps them).  A negative v
        # would make the next step's sqrt(v) NaN and every parameter with it.
        neg = np.flatnonzero(arrays["v"] < 0)
        if neg.size:
            raise ValueError(f"state_dict['v']: Adam's second moments are never negative; "
                             f"got {arrays['v'][neg[0]]!r} at index {neg[0]}")

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
        # the count follows the update exactly: the kernel marks it done in its compiled
        # code, and the count goes up where it did.  Counted before the kernel, a Ctrl-C
        # could leave it a step ahead; after, a step behind (a Ctrl-C during the kernel is
        # raised as it returns: 4 of 11 interrupted fits), and Adam's bias correction with it
        step, done = self._step + 1, self._done
        done[0] = 0
        try:
            kernel("adam_update", self.backend)(g, self._w, self._m, self._v, step, self._lr,
                                                self._beta1, self._beta2, self._eps,
                                                self._weight_decay, self._l1, self._l2,
                                                scale, self._grad_clip(), done)
        finally:
            if done[0]:
                self._step = step
