"""Layers: each a forward/backward pair over preallocated buffers.

A layer declares its parameter shapes (``param_shapes``); the model packs every
parameter into one flat buffer (``fastdl.optim.Parameters``) and ``bind`` hands
each layer views into it, so that the gradient of a layer is written straight
into the model's gradient buffer and one optimizer kernel updates everything.

Inside a model the layers call the backend kernels directly (``_registry.kernel``):
the model validated the batch once at its boundary, and every buffer a kernel
sees here was made by the layer itself (C-contiguous, the model's dtype, the
right shape).  Buffers are allocated once per batch size and reused, so a
training step allocates nothing in the steady state.
"""
from __future__ import annotations

import numpy as np

from fastdl import _validate as V
from fastdl import init as _init
from fastdl._registry import kernel
from fastdl.functional.dense import ACTIVATIONS
from fastdl.functional.maxout import ARGMAX_DTYPE

__all__ = ["Layer", "Dense", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Softmax", "Maxout", "Dropout", "Residual"]

_INITS = ("he", "he_normal", "he_uniform", "xavier", "xavier_normal", "xavier_uniform",
          "normal", "uniform", "zeros")


class Layer:
    """Base class.  Subclasses override what they need."""

    has_params = False

    def __init__(self):
        self._bufs: dict = {}
        self.backend = None
        self.training = True

    # parameters -------------------------------------------------------
    def param_shapes(self) -> dict:
        return {}

    def bind(self, params, prefix: str) -> None:
        self._params = params
        self._prefix = prefix

    def init_params(self, rng) -> None:
        pass

    def param_layers(self, prefix: str):
        """(path, layer) for this layer and every nested layer that has parameters."""
        if self.has_params:
            yield prefix, self

    # shapes -----------------------------------------------------------
    def input_features(self):
        """The feature count this layer needs, or None if it takes any."""
        return getattr(self, "in_features", None)

    def output_features(self, in_features: int) -> int:
        return in_features

    # buffers ----------------------------------------------------------
    def _buf(self, key, shape, dtype):
        """A reusable buffer, allocated once per (key, shape, dtype): a training run meets
        a few shapes (the batch, the last partial batch, evaluation chunks), each once."""
        k = (key, shape, dtype)
        b = self._bufs.get(k)
        if b is None:
            b = np.empty(shape, dtype=dtype)
            self._bufs[k] = b
        return b

    def _k(self, name):
        return kernel(name, self.backend)

    # config -----------------------------------------------------------
    def get_config(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer ``y = act(x @ W + b)``; ``W: (in, out)``, ``b: (out,)``.

    ``init`` is ``"he"`` (He normal, std sqrt(2/in)), ``"he_uniform"``, ``"xavier"``
    (Xavier normal), ``"xavier_uniform"``, ``"normal"`` (std 0.01), ``"uniform"``
    (U(-0.05, 0.05)) or ``"zeros"``; biases start at zero.  ReLU and Leaky ReLU are
    fused into the GEMM's output pass, and their backward reads the saved output (the
    sign of the output is the sign of the pre-activation); the other activations keep
    the pre-activation for their backward."""

    has_params = True
    _FROM_OUTPUT = ("relu", "leaky_relu")

    def __init__(self, in_features, out_features, activation=None, init="he", bias=True,
                 alpha=None):
        super().__init__()
        self.in_features = V.check_int("in_features", in_features, 1)
        self.out_features = V.check_int("out_features", out_features, 1)
        if activation is not None:
            V.check_choice("activation", activation, ACTIVATIONS)
        self.activation = activation
        self.init = V.check_choice("init", init, _INITS)
        if not isinstance(bias, bool):
            raise TypeError(f"bias: expected a bool, got {type(bias).__name__}")
        self.bias = bias
        default = ACTIVATIONS.get(activation)
        if alpha is None:
            alpha = 0.0 if default is None else default
        self.alpha = V.check_real("alpha", alpha)
        if activation == "leaky_relu" and self.alpha < 0:
            # with a negative slope the output's sign no longer tells the input's
            raise ValueError(f"alpha: expected a value >= 0 for leaky_relu, got {alpha}")

    def param_shapes(self):
        shapes = {"W": (self.in_features, self.out_features)}
        if self.bias:
            shapes["b"] = (self.out_features,)
        return shapes

    def bind(self, params, prefix):
        super().bind(params, prefix)
        self.W = params[prefix + "W"]
        self.dW = params.grad_of(prefix + "W")
        self.b = params[prefix + "b"] if self.bias else None
        self.db = params.grad_of(prefix + "b") if self.bias else None

    def init_params(self, rng):
        fi, fo, dt = self.in_features, self.out_features, self.W.dtype
        if self.init in ("he", "he_normal"):
            self.W[...] = _init.he_normal(fi, fo, rng=rng, dtype=dt)
        elif self.init == "he_uniform":
            self.W[...] = _init.he_uniform(fi, fo, rng=rng, dtype=dt)
        elif self.init in ("xavier", "xavier_normal"):
            self.W[...] = _init.xavier_normal(fi, fo, rng=rng, dtype=dt)
        elif self.init == "xavier_uniform":
            self.W[...] = _init.xavier_uniform(fi, fo, rng=rng, dtype=dt)
        elif self.init == "normal":
            self.W[...] = _init.normal((fi, fo), std=0.01, rng=rng, dtype=dt)
        elif self.init == "uniform":
            self.W[...] = _init.uniform((fi, fo), 0.05, rng=rng, dtype=dt)
        else:
            self.W[...] = 0
        if self.bias:
            self.b[...] = 0

    def output_features(self, in_features):
        if in_features != self.in_features:
            raise ValueError(f"Dense: expected {self.in_features} input features, "
                             f"got {in_features}")
        return self.out_features

    def forward(self, x):
        n = x.shape[0]
        dt = x.dtype
        self._x = x
        act = self.activation
        y = self._buf("y", (n, self.out_features), dt)
        if act is None or act in self._FROM_OUTPUT:
            self._k("dense_forward")(x, self.W, self.b, y, act, self.alpha)
            self._z = y
        else:
            z = self._buf("z", (n, self.out_features), dt)
            self._k("dense_forward")(x, self.W, self.b, z, None, 0.0)
            _apply_activation(self._k, act, z, y, self.alpha)
            self._z = z
        self._y = y
        return y

    def backward(self, dy, need_dx=True):
        n = dy.shape[0]
        dt = dy.dtype
        act = self.activation
        if act is None:
            dz = dy
        else:
            dz = self._buf("dz", dy.shape, dt)
            _apply_activation_backward(self._k, act, dy, self._z, dz, self.alpha, self._y)
        dx = self._buf("dx", (n, self.in_features), dt) if need_dx else None
        db = self.db if self.bias else self._buf("db", (self.out_features,), dt)
        self._k("dense_backward")(dz, self._x, self.W, dx, self.dW, db)
        return dx

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation, "init": self.init, "bias": self.bias,
                "alpha": self.alpha}


def _apply_activation(k, act, z, y, alpha):
    if act in ("softmax", "log_softmax"):
        k(act)(z, y)
    elif act in ("leaky_relu", "elu"):
        k(act)(z.reshape(-1), y.reshape(-1), alpha)
    else:
        k(act)(z.reshape(-1), y.reshape(-1))


def _apply_activation_backward(k, act, dy, z, dz, alpha, y):
    if act == "softmax":
        k("softmax_backward")(dy, y, dz)
    elif act == "log_softmax":
        k("log_softmax_backward")(dy, y, dz)
    elif act in ("leaky_relu", "elu"):
        k(act + "_backward")(dy.reshape(-1), z.reshape(-1), dz.reshape(-1), alpha)
    else:
        k(act + "_backward")(dy.reshape(-1), z.reshape(-1), dz.reshape(-1))


class _Activation(Layer):
    """An elementwise activation layer over the batch (any feature count)."""

    name = ""

    def __init__(self, alpha=None):
        super().__init__()
        self.alpha = 0.0 if alpha is None else float(alpha)

    def forward(self, x):
        self._x = x
        y = self._buf("y", x.shape, x.dtype)
        _apply_activation(self._k, self.name, x, y, self.alpha)
        self._y = y
        return y

    def backward(self, dy, need_dx=True):
        dx = self._buf("dx", dy.shape, dy.dtype)
        _apply_activation_backward(self._k, self.name, dy, self._x, dx, self.alpha, self._y)
        return dx


class ReLU(_Activation):
    """``max(0, x)``."""
    name = "relu"


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``."""
    name = "sigmoid"


class Tanh(_Activation):
    """``tanh(x)``."""
    name = "tanh"


class GELU(_Activation):
    """``x Phi(x)`` (exact erf form)."""
    name = "gelu"


class SiLU(_Activation):
    """``x sigmoid(x)``."""
    name = "silu"


class Softmax(_Activation):
    """Softmax over the features of each row.  A model trained with
    ``loss="cross_entropy"`` and a final ``Softmax`` trains on the logits before it
    with the fused softmax cross-entropy kernel (the same loss, computed stably)."""
    name = "softmax"


class LeakyReLU(_Activation):
    """``max(alpha x, x)``."""
    name = "leaky_relu"

    def __init__(self, alpha=0.1):
        super().__init__(V.check_real("alpha", alpha))

    def get_config(self):
        return {"alpha": self.alpha}


class ELU(_Activation):
    """``x if x >= 0 else alpha (exp(x) - 1)``."""
    name = "elu"

    def __init__(self, alpha=1.0):
        super().__init__(V.check_real("alpha", alpha, lo=0))

    def get_config(self):
        return {"alpha": self.alpha}


class Maxout(Layer):
    """Maxout: a dense layer to ``out_features * pieces`` units, then the max of each
    block of ``pieces`` consecutive units.  ``W: (in, out * pieces)``."""

    has_params = True

    def __init__(self, in_features, out_features, pieces=2, init="xavier"):
        super().__init__()
        self.in_features = V.check_int("in_features", in_features, 1)
        self.out_features = V.check_int("out_features", out_features, 1)
        self.pieces = V.check_int("pieces", pieces, 1)
        self.init = V.check_choice("init", init, _INITS)
        self._dense = Dense(self.in_features, self.out_features * self.pieces, init=self.init)

    def param_shapes(self):
        return self._dense.param_shapes()

    def bind(self, params, prefix):
        super().bind(params, prefix)
        self._dense.bind(params, prefix)

    def init_params(self, rng):
        self._dense.init_params(rng)

    def output_features(self, in_features):
        self._dense.output_features(in_features)
        return self.out_features

    def forward(self, x):
        self._dense.backend = self.backend
        z = self._dense.forward(x)
        n = x.shape[0]
        y = self._buf("y", (n, self.out_features), x.dtype)
        am = self._buf("argmax", (n, self.out_features), ARGMAX_DTYPE)
        self._k("maxout")(z, y, am, self.pieces)
        self._argmax = am
        return y

    def backward(self, dy, need_dx=True):
        n = dy.shape[0]
        dz = self._buf("dz", (n, self.out_features * self.pieces), dy.dtype)
        self._k("maxout_backward")(dy, self._argmax, dz, self.pieces)
        return self._dense.backward(dz, need_dx)

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "pieces": self.pieces, "init": self.init}


class Dropout(Layer):
    """Inverted dropout: in training each unit is zeroed with probability ``p`` and the
    kept ones scaled by ``1 / (1 - p)``; at inference it is the identity."""

    def __init__(self, p=0.5):
        super().__init__()
        p = V.check_real("p", p, lo=0.0, hi=1.0, hi_open=True)
        self.p = p
        self.rng = np.random.default_rng()
        self.fixed_mask = None  # tests: a mask to use instead of a random one

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._identity = True
            return x
        self._identity = False
        from fastdl.functional.dropout import dropout
        if self.fixed_mask is not None:
            y = self._buf("y", x.shape, x.dtype)
            np.multiply(x, self.fixed_mask, out=y)
            y *= x.dtype.type(1.0 / (1.0 - self.p))
            self._mask = self.fixed_mask
            return y
        y, self._mask = dropout(x, self.p, self.rng, backend=self.backend)
        return y

    def backward(self, dy, need_dx=True):
        if self._identity:
            return dy
        if self.fixed_mask is not None:
            dx = self._buf("dx", dy.shape, dy.dtype)
            np.multiply(dy, self.fixed_mask, out=dx)
            dx *= dy.dtype.type(1.0 / (1.0 - self.p))
            return dx
        from fastdl.functional.dropout import dropout_backward
        return dropout_backward(dy, self._mask, self.p, backend=self.backend)

    def get_config(self):
        return {"p": self.p}


class Residual(Layer):
    """Skip connection ``y = x + f(x)``, with ``f`` the given layers in sequence; ``f``
    must keep the feature count."""

    def __init__(self, *layers):
        super().__init__()
        if not layers:
            raise ValueError("layers: Residual needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}]: expected a fastdl.nn layer, "
                                f"got {type(layer).__name__}")
        self.layers = list(layers)

    @property
    def has_params(self):
        return any(layer.has_params or isinstance(layer, Residual) for layer in self.layers)

    def param_shapes(self):
        shapes = {}
        for i, layer in enumerate(self.layers):
            for name, shape in layer.param_shapes().items():
                shapes[f"{i}.{name}"] = shape
        return shapes

    def param_layers(self, prefix):
        for i, layer in enumerate(self.layers):
            yield from layer.param_layers(f"{prefix}.{i}" if prefix else str(i))

    def bind(self, params, prefix):
        super().bind(params, prefix)
        for i, layer in enumerate(self.layers):
            layer.bind(params, f"{prefix}{i}.")

    def init_params(self, rng):
        for layer in self.layers:
            layer.init_params(rng)

    def input_features(self):
        return next((f for f in (l.input_features() for l in self.layers) if f is not None),
                    None)

    def output_features(self, in_features):
        f = in_features
        for layer in self.layers:
            f = layer.output_features(f)
        if f != in_features:
            raise ValueError(f"Residual: the inner layers map {in_features} features to {f}; "
                             "a skip connection needs them equal")
        return f

    def forward(self, x):
        h = x
        for layer in self.layers:
            layer.backend, layer.training = self.backend, self.training
            h = layer.forward(h)
        y = self._buf("y", x.shape, x.dtype)
        np.add(x, h, out=y)
        return y

    def backward(self, dy, need_dx=True):
        g = dy
        for layer in reversed(self.layers):
            g = layer.backward(g, True)
        if not need_dx:
            return None
        dx = self._buf("dx", dy.shape, dy.dtype)
        np.add(dy, g, out=dx)
        return dx

    def get_config(self):
        return {"layers": [layer_config(layer) for layer in self.layers]}


LAYER_TYPES = {cls.__name__: cls for cls in
               (Dense, ReLU, Sigmoid, Tanh, LeakyReLU, ELU, GELU, SiLU, Softmax, Maxout,
                Dropout, Residual)}


def layer_config(layer) -> dict:
    return {"type": type(layer).__name__, "config": layer.get_config()}


def layer_from_config(d) -> Layer:
    if not isinstance(d, dict) or d.get("type") not in LAYER_TYPES:
        raise ValueError(f"architecture: unknown layer entry {d!r}")
    cls = LAYER_TYPES[d["type"]]
    cfg = dict(d.get("config", {}))
    if cls is Residual:
        return Residual(*[layer_from_config(c) for c in cfg.get("layers", [])])
    return cls(**cfg)
