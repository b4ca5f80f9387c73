"""The layer protocol (``Layer``), its bounded work buffers and the registry of layer types.

A layer is a forward/backward pair over buffers it owns.  What a new layer implements
(its ``__init__`` calls ``super().__init__()`` first):

``param_shapes() -> dict``
    name -> shape of each parameter array, in order (``{}`` without parameters; set
    ``has_params = True`` when there are some).  The model packs them into one flat
    buffer (``fastdl.optim.Parameters``) under ``<layer name>.<param name>``.
``bind(params, prefix)``, ``init_params(rng)``
    ``bind`` takes the views ``params[prefix + name]`` and ``params.grad_of(prefix +
    name)`` (call ``super().bind`` first); ``init_params`` fills them from ``rng``.
``expected_input_shape() -> tuple | None``
    The per-sample shape (no batch axis) the layer takes: ``(in_features,)`` for Dense,
    ``(C, None, None)`` for a convolution over images of any size (None: any size on
    that axis), or None when it takes any shape.
``compute_output_shape(shape) -> tuple``
    The per-sample output shape for a per-sample input ``shape``, whose entries may be
    None (unknown until ``X`` is seen; return None where the output depends on them).
    Raise ``ValueError`` (starting with the class name) when ``shape`` does not fit.
    Set ``keeps_shape = True`` when the output shape is always the input shape
    (activations, dropout): the model then looks past the layer for its input shape.
``forward(x) -> y``
    ``x`` is ``(N, *input shape)``, C-contiguous, of the model's dtype and checked by the
    model; ``y`` comes from ``self._buf(name, shape, dtype)``.  Keep what ``backward``
    needs; read ``self.training`` and ``self.backend`` (set by the model before a pass).
``backward(dy, need_dx) -> dx | None``
    ``dy`` has ``y``'s shape; write (not add) every parameter's gradient into the bound
    gradient views; return the gradient at ``x`` when ``need_dx``, else None.
``get_config() -> dict``
    The constructor's keyword arguments as JSON values (lists for tuples): a saved model
    is rebuilt as ``cls(**config)``.

A public class defined in a ``fastdl`` module is registered by name for ``fastdl.load``
when its module is imported.
"""
from __future__ import annotations

import math
import os
import threading
import weakref

import numpy as np

from fastdl._registry import kernel

__all__ = ["Layer", "BufferCache", "LAYER_TYPES", "layer_config", "layer_type",
           "required_input_shape", "propagate_shape", "fmt_shape", "walk_layers"]

#: class name -> layer class, for ``fastdl.load`` (filled by ``Layer.__init_subclass__``)
LAYER_TYPES: dict[str, type] = {}
MAX_DEPTH = 32  # nested blocks (Residual): deeper is refused by Sequential and load


class BufferCache:
    """Reusable work arrays of one layer, bounded in memory.

    Each name (``"y"``, ``"dx"``, ...) and dtype owns one flat block, grown to the largest
    size ever asked for; a buffer is a view of the block's head with the asked shape.
    So a layer holds at most (largest batch it ran) x (its widths), whatever the number
    of batch sizes it met: a server answering requests of every size from 1 to 600 rows
    keeps one 600-row block per name, not 600 buffers (it kept them all before: 713 MB
    for a 256-512-512-10 MLP).  The last ``MAX_VIEWS`` views are kept, so the shapes a
    training run cycles through (the batch, the last partial batch, the validation
    chunks) are dictionary hits: a training step allocates nothing.

    Buffers of one name share memory: the next pass overwrites the last one's result
    whatever its batch size (a layer's buffers are only read until its next pass).
    """

    MAX_VIEWS = 16

    __slots__ = ("_views", "_blocks")

    def __init__(self):
        self._views: dict = {}
        self._blocks: dict = {}

    def get(self, name, shape, dtype) -> np.ndarray:
        b = self._views.get((name, shape, dtype))
        if b is None:
            b = self._make(name, shape, dtype)
        return b

    def _make(self, name, shape, dtype):
        size, dt = math.prod(shape), np.dtype(dtype)
        block = self._blocks.get((name, dt))
        if block is None or block.size < size:
            block = np.empty(size, dt)
            self._blocks[(name, dt)] = block
            # views of the old block would keep it alive: drop them
            for k in [k for k in self._views if k[0] == name and np.dtype(k[2]) == dt]:
                del self._views[k]
        if len(self._views) >= self.MAX_VIEWS:
            del self._views[next(iter(self._views))]  # the oldest
        b = block[:size].reshape(shape)
        self._views[(name, shape, dtype)] = b
        return b

    def __getstate__(self):
        return {}  # work buffers are not worth pickling: the next pass remakes them

    def __setstate__(self, state):
        self.__init__()

    @property
    def nbytes(self) -> int:
        """Bytes held by the blocks (the views add nothing)."""
        return sum(b.nbytes for b in self._blocks.values())

    def clear(self) -> None:
        self._views.clear()
        self._blocks.clear()


class Layer:
    """Base class of every layer; see the module docstring for the protocol."""

    has_params = False
    keeps_shape = False

    def __init_subclass__(cls, register=True, **kwargs):
        super().__init_subclass__(**kwargs)
        if register and cls.__module__.startswith("fastdl.") and not cls.__name__.startswith("_"):
            LAYER_TYPES[cls.__name__] = cls

    def __init__(self):
        self._bufs = BufferCache()
        # the cache's own lookup, bound once: a layer asks for a few buffers a step
        self._buf = self._bufs.get
        self.backend = None
        self.training = True
        self._params = None

    # parameters -------------------------------------------------------
    def param_shapes(self) -> dict:
        return {}

    def bind(self, params, prefix: str) -> None:
        self._params = params
        self._prefix = prefix

    def init_params(self, rng) -> None:
        pass

    def param_layers(self, name: str):
        """(name, layer) for this layer and every nested layer that has parameters."""
        if self.has_params:
            yield name, self

    def sublayers(self) -> list:
        """The layers inside this one (a container's), in order; [] for most layers."""
        return []

    # shapes -----------------------------------------------------------
    def expected_input_shape(self):
        return None

    def compute_output_shape(self, shape: tuple) -> tuple:
        return shape

    # buffers ----------------------------------------------------------
    # self._buf(name, shape, dtype): a reusable work array (see BufferCache)

    def buffer_nbytes(self) -> int:
        """Bytes of work buffers this layer (and the layers inside it) holds."""
        return self._bufs.nbytes + sum(l.buffer_nbytes() for l in self.sublayers())

    def _k(self, name):
        return kernel(name, self.backend)

    # config -----------------------------------------------------------
    def get_config(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class WeightLayer(Layer, register=False):
    """A layer whose parameters are a weight ``W`` and, when ``self.bias``, a bias ``b``:
    views into the model's flat buffer, with their gradients ``dW`` and ``db``."""

    def bind(self, params, prefix: str) -> None:
        super().bind(params, prefix)
        self.W = params[prefix + "W"]
        self.dW = params.grad_of(prefix + "W")
        self.b = params[prefix + "b"] if self.bias else None
        self.db = params.grad_of(prefix + "b") if self.bias else None


_guarded = weakref.WeakSet()  # the owners of new_lock's locks


def new_lock(owner):
    """A re-entrant lock that makes ``owner``'s calls take turns, from any thread (fit's
    callbacks may predict): a model's layers compute in buffers the model owns and return
    views of them, so two threads predicting with one model read each other's rows (1 to
    5 of 16 results were wrong).  The methods take it in their bodies (a decorator's frame
    would move their warnings' stack levels off the caller).  Made anew in a forked
    child: a thread of the parent that held it at the fork does not exist there, and the
    child's first call would wait for it for ever."""
    _guarded.add(owner)
    return threading.RLock()


def _after_fork_in_child():
    for owner in list(_guarded):
        owner._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def walk_layers(layers):
    """Every layer of ``layers`` and, depth first, the layers inside each."""
    for layer in layers:
        yield layer
        yield from walk_layers(layer.sublayers())


def layer_type(layer) -> str:
    """The short lower-case type of a layer in names: ``dense``, ``relu``, ..."""
    return type(layer).__name__.lower()


def layer_config(layer) -> dict:
    return {"type": type(layer).__name__, "config": layer.get_config()}


def required_input_shape(layers):
    """The per-sample input shape a stack of layers needs (None: any), looking past
    leading layers that keep the shape (an activation before a Dense needs the Dense's
    input)."""
    for layer in layers:
        s = layer.expected_input_shape()
        if s is not None:
            return tuple(s)
        if not layer.keeps_shape:
            return None
    return None


def propagate_shape(layers, shape, where="layers", start=0):
    """The per-sample output shape of each layer for the input ``shape``; ValueError
    naming the first layer that does not take its input (``where[start + i]``)."""
    out = []
    for i, layer in enumerate(layers):
        try:
            shape = tuple(layer.compute_output_shape(shape))
        except ValueError as e:
            raise ValueError(f"{where}[{start + i}] ({type(layer).__name__}) does not take "
                             f"inputs of per-sample shape {fmt_shape(shape)}: {e}") from None
        out.append(shape)
    return out


def fmt_shape(shape, batch=False) -> str:
    """``(64,)``, ``(3, ?, ?)`` (None shown as ?); ``batch``: ``(N, 64)``."""
    dims = ["?" if d is None else str(d) for d in shape]
    if batch:
        return "(" + ", ".join(["N"] + dims) + ")"
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
