"""Layers: each a forward/backward pair over preallocated buffers.

A layer declares its parameter shapes (``param_shapes``); the model packs every
parameter into one flat buffer (``fastdl.optim.Parameters``) and ``bind`` hands
each layer views into it, so that the gradient of a layer is written straight
into the model's gradient buffer and one optimizer kernel updates everything.

Inside a model the layers call the backend kernels directly (``_registry.kernel``):
the model validated the batch once at its boundary, and every buffer a kernel
sees here was made by the layer itself (C-contiguous, the model's dtype, the
right shape).  Buffers are reused (``fastdl.nn.base.BufferCache``), so a training
step allocates nothing in the steady state.  The protocol a layer implements is in
``fastdl.nn.base``.
"""
from __future__ import annotations

import numpy as np

from fastdl import _validate as V
from fastdl import init as _init
from fastdl.functional.dense import ACTIVATIONS
from fastdl.functional.maxout import ARGMAX_DTYPE
from fastdl.nn.activations import (ELU, GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh,
                                   apply_activation, apply_activation_backward, check_alpha)
from fastdl.nn.base import LAYER_TYPES, Layer, WeightLayer, layer_config, propagate_shape, \
    required_input_shape

__all__ = ["Layer", "Dense", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Softmax", "Maxout", "Dropout", "Residual", "LAYER_TYPES", "layer_config"]

_INITS = ("he", "he_normal", "he_uniform", "xavier", "xavier_normal", "xavier_uniform",
          "normal", "uniform", "zeros")


def _vector_shape(layer, n, shape):
    """Check a per-sample input ``shape`` against ``(n,)`` (None entries: unknown)."""
    if len(shape) != 1 or (shape[0] is not None and shape[0] != n):
        shown = f"({shape[0]},)" if len(shape) == 1 else str(tuple(shape))
        raise ValueError(f"{type(layer).__name__}: expected {n} input features, got per-sample "
                         f"shape {shown}" + (" (add nn.Flatten() before it)"
                                             if len(shape) > 1 else ""))


class Dense(WeightLayer):
    """Fully connected layer ``y = act(x @ W + b)``; ``W: (in, out)``, ``b: (out,)``.

    ``init`` is ``"he"`` (He normal, std sqrt(2/in)), ``"he_uniform"``, ``"xavier"``
    (Xavier normal), ``"xavier_uniform"``, ``"normal"`` (std 0.01), ``"uniform"``
    (U(-0.05, 0.05)) or ``"zeros"``; biases start at zero.  ReLU and Leaky ReLU are
    fused into the GEMM's output pass, and their backward reads the saved output (the
    sign of the output is the sign of the pre-activation); the other activations keep
    the pre-activation for their backward.  ``alpha`` (finite) is the slope of
    ``leaky_relu`` or the scale of ``elu``.

    ``activation="softmax"`` or ``"sigmoid"`` on a model's last layer is the model's
    output activation, exactly as a final ``nn.Softmax()`` / ``nn.Sigmoid()`` layer:
    applied once, and folded into the matching loss during training."""

    has_params = True
    _FROM_OUTPUT = ("relu", "leaky_relu")

    def __init__(self, in_features, out_features, activation=None, init="he", bias=True,
                 alpha=None):
        super().__init__()
        self.in_features = V.check_int("in_features", in_features, 1)
        self.out_features = V.check_int("out_features", out_features, 1)
        if activation is not None:
            if not isinstance(activation, str):
                raise TypeError(f"activation: expected None or a str, got "
                                f"{type(activation).__name__}")
            V.check_choice("activation", activation, ACTIVATIONS)
        self.activation = activation
        # the activation this layer applies: None when the model took it over as its
        # output activation (see Sequential)
        self._act = activation
        if not isinstance(init, str):
            raise TypeError(f"init: expected a str, got {type(init).__name__}")
        self.init = V.check_choice("init", init, _INITS)
        if not isinstance(bias, bool):
            raise TypeError(f"bias: expected a bool, got {type(bias).__name__}")
        self.bias = bias
        default = ACTIVATIONS.get(activation)
        if alpha is None:
            alpha = 0.0 if default is None else default
        self.alpha = check_alpha(alpha)
        if default is None and self.alpha != 0.0:
            # it would be ignored (0.0 is what get_config writes for these activations)
            raise ValueError(f"alpha: the activation {activation!r} takes no alpha (only "
                             f"leaky_relu and elu do), got {alpha}")
        if activation in ("leaky_relu", "elu") and self.alpha < 0:
            # leaky_relu: with a negative slope the output's sign no longer tells the
            # input's; elu: the kernels refuse it
            raise ValueError(f"alpha: expected a value >= 0 for {activation}, got {alpha}")

    def param_shapes(self):
        shapes = {"W": (self.in_features, self.out_features)}
        if self.bias:
            shapes["b"] = (self.out_features,)
        return shapes

    def init_params(self, rng):
        fi, fo, dt = self.in_features, self.out_features, self.W.dtype
        if self.init in ("he", "he_normal"):
            _init.he_normal(fi, fo, rng=rng, out=self.W)
        elif self.init == "he_uniform":
            _init.he_uniform(fi, fo, rng=rng, out=self.W)
        elif self.init in ("xavier", "xavier_normal"):
            _init.xavier_normal(fi, fo, rng=rng, out=self.W)
        elif self.init == "xavier_uniform":
            _init.xavier_uniform(fi, fo, rng=rng, out=self.W)
        elif self.init == "normal":
            _init.normal((fi, fo), std=0.01, rng=rng, dtype=dt, out=self.W)
        elif self.init == "uniform":
            _init.uniform((fi, fo), 0.05, rng=rng, dtype=dt, out=self.W)
        else:
            self.W[...] = 0
        if self.bias:
            self.b[...] = 0

    def expected_input_shape(self):
        return (self.in_features,)

    def compute_output_shape(self, shape):
        _vector_shape(self, self.in_features, shape)
        return (self.out_features,)

    def forward(self, x):
        n = x.shape[0]
        dt = x.dtype
        self._x = x
        act = self._act
        y = self._buf("y", (n, self.out_features), dt)
        if act is None or act in self._FROM_OUTPUT:
            self._k("dense_forward")(x, self.W, self.b, y, act, self.alpha)
            self._z = y
        else:
            z = self._buf("z", (n, self.out_features), dt)
            self._k("dense_forward")(x, self.W, self.b, z, None, 0.0)
            apply_activation(self._k, act, z, y, self.alpha)
            self._z = z
        self._y = y
        return y

    def backward(self, dy, need_dx=True):
        n = dy.shape[0]
        dt = dy.dtype
        act = self._act
        if act is None:
            dz = dy
        else:
            dz = self._buf("dz", dy.shape, dt)
            apply_activation_backward(self._k, act, dy, self._z, dz, self.alpha, self._y)
        dx = self._buf("dx", (n, self.in_features), dt) if need_dx else None
        db = self.db if self.bias else self._buf("db", (self.out_features,), dt)
        self._k("dense_backward")(dz, self._x, self.W, dx, self.dW, db)
        return dx

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation, "init": self.init, "bias": self.bias,
                "alpha": self.alpha}


class Maxout(Layer):
    """Maxout: a dense layer to ``out_features * pieces`` units, then the max of each
    block of ``pieces`` consecutive units.  ``W: (in, out * pieces)``."""

    has_params = True

    def __init__(self, in_features, out_features, pieces=2, init="xavier"):
        super().__init__()
        self.in_features = V.check_int("in_features", in_features, 1)
        self.out_features = V.check_int("out_features", out_features, 1)
        self.pieces = V.check_int("pieces", pieces, 1)
        self._dense = Dense(self.in_features, self.out_features * self.pieces, init=init)
        self.init = self._dense.init

    def sublayers(self):
        return [self._dense]

    def param_shapes(self):
        return self._dense.param_shapes()

    def bind(self, params, prefix):
        super().bind(params, prefix)
        self._dense.bind(params, prefix)

    def init_params(self, rng):
        self._dense.init_params(rng)

    def expected_input_shape(self):
        return (self.in_features,)

    def compute_output_shape(self, shape):
        _vector_shape(self, self.in_features, shape)
        return (self.out_features,)

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

    keeps_shape = True

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
        from fastdl.functional.dropout import dropout_into
        if self.fixed_mask is not None:
            y = self._buf("y", x.shape, x.dtype)
            np.multiply(x, self.fixed_mask, out=y)
            y *= x.dtype.type(1.0 / (1.0 - self.p))
            self._mask = self.fixed_mask
            return y
        # into the layer's buffers (the public dropout allocates y, the mask and its work)
        y = self._buf("y", x.shape, x.dtype)
        self._mask = self._buf("mask", x.shape, np.bool_)
        return dropout_into(x, self.p, self.rng, y, self._mask, self._buf, self.backend)[0]

    def backward(self, dy, need_dx=True):
        if self._identity:
            return dy
        dx = self._buf("dx", dy.shape, dy.dtype)
        if self.fixed_mask is not None:
            np.multiply(dy, self.fixed_mask, out=dx)
            dx *= dy.dtype.type(1.0 / (1.0 - self.p))
            return dx
        from fastdl.functional.dropout import dropout_backward
        return dropout_backward(dy, self._mask, self.p, out=dx, backend=self.backend)

    def get_config(self):
        return {"p": self.p}


class Residual(Layer):
    """Skip connection ``y = x + f(x)``, with ``f`` the given layers in sequence; ``f``
    must keep the per-sample shape."""

    keeps_shape = True

    def __init__(self, *layers):
        super().__init__()
        if not layers:
            raise ValueError("layers: Residual needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}]: expected a fastdl.nn layer, "
                                f"got {type(layer).__name__}")
        self.layers = list(layers)
        self._names = [f"{type(l).__name__.lower()}_{i}" for i, l in enumerate(self.layers)]

    def sublayers(self):
        return list(self.layers)

    @property
    def has_params(self):
        return any(layer.has_params or isinstance(layer, Residual) for layer in self.layers)

    def param_shapes(self):
        shapes = {}
        for name, layer in zip(self._names, self.layers):
            for p, shape in layer.param_shapes().items():
                shapes[f"{name}.{p}"] = shape
        return shapes

    def param_layers(self, name):
        for sub, layer in zip(self._names, self.layers):
            yield from layer.param_layers(f"{name}.{sub}")

    def bind(self, params, prefix):
        super().bind(params, prefix)
        for name, layer in zip(self._names, self.layers):
            layer.bind(params, f"{prefix}{name}.")

    def init_params(self, rng):
        for layer in self.layers:
            layer.init_params(rng)

    def expected_input_shape(self):
        return required_input_shape(self.layers)

    def compute_output_shape(self, shape):
        out = propagate_shape(self.layers, shape, "Residual: layers")[-1]
        if len(out) != len(shape) or any(a is not None and b is not None and a != b
                                          for a, b in zip(out, shape)):
            raise ValueError(f"Residual: the inner layers map per-sample shape {shape} to "
                             f"{out}; a skip connection needs them equal")
        return shape

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
