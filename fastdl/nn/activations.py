"""Activation layers, and the activation passes that ``Dense`` shares with them."""
from __future__ import annotations

import math

from fastdl import _validate as V
from fastdl.nn.base import Layer

__all__ = ["ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Softmax",
           "check_alpha", "apply_activation", "apply_activation_backward"]


def check_alpha(alpha, lo=None) -> float:
    """A finite ``alpha`` (the kernels refuse inf; checked here, where it is given)."""
    a = V.check_real("alpha", alpha, lo=lo)
    if not math.isfinite(a):
        raise ValueError(f"alpha: expected a finite value, got {alpha}")
    return a


def apply_activation(k, act, z, y, alpha):
    """``y = act(z)``; softmax family along the last axis (rows of ``(-1, C)``)."""
    if act in ("softmax", "log_softmax"):
        c = z.shape[-1]
        k(act)(z.reshape(-1, c), y.reshape(-1, c))
    elif act in ("leaky_relu", "elu"):
        k(act)(z.reshape(-1), y.reshape(-1), alpha)
    else:
        k(act)(z.reshape(-1), y.reshape(-1))


def apply_activation_backward(k, act, dy, z, dz, alpha, y):
    """``dz`` = gradient through ``act`` at ``z`` (softmax family: from the output ``y``)."""
    if act in ("softmax", "log_softmax"):
        c = dy.shape[-1]
        k(act + "_backward")(dy.reshape(-1, c), y.reshape(-1, c), dz.reshape(-1, c))
    elif act in ("leaky_relu", "elu"):
        k(act + "_backward")(dy.reshape(-1), z.reshape(-1), dz.reshape(-1), alpha)
    else:
        k(act + "_backward")(dy.reshape(-1), z.reshape(-1), dz.reshape(-1))


class _Activation(Layer):
    """An elementwise activation layer over the batch (any per-sample shape)."""

    name = ""
    keeps_shape = True
    alpha = 0.0  # the kernels' slope argument; only LeakyReLU and ELU take one

    def __init__(self):
        super().__init__()

    def forward(self, x):
        self._x = x
        y = self._buf("y", x.shape, x.dtype)
        apply_activation(self._k, self.name, x, y, self.alpha)
        self._y = y
        return y

    def backward(self, dy, need_dx=True):
        dx = self._buf("dx", dy.shape, dy.dtype)
        apply_activation_backward(self._k, self.name, dy, self._x, dx, self.alpha, self._y)
        return dx


class ReLU(_Activation):
    """``max(0, x)``."""
    name = "relu"


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``.  As a model's last layer it is its output activation:
    ``binary_cross_entropy`` then trains on the logits before it (the fused, stable
    loss), and ``predict_proba`` returns the probabilities."""
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
    """Softmax along the last axis.  As a model's last layer it is its output activation:
    ``cross_entropy`` then trains on the logits before it with the fused softmax
    cross-entropy kernel, and ``predict_proba`` returns the probabilities."""
    name = "softmax"

    def compute_output_shape(self, shape):
        if len(shape) == 0 or shape[-1] == 0:
            raise ValueError(f"Softmax: needs at least one feature on the last axis, got "
                             f"per-sample shape {tuple(shape)}")
        return shape


class LeakyReLU(_Activation):
    """``x`` for ``x > 0``, ``alpha x`` below (``max(alpha x, x)`` for ``alpha <= 1``);
    ``alpha`` finite."""
    name = "leaky_relu"

    def __init__(self, alpha=0.1):
        super().__init__()
        self.alpha = check_alpha(alpha)

    def get_config(self):
        return {"alpha": self.alpha}


class ELU(_Activation):
    """``x if x >= 0 else alpha (exp(x) - 1)``; ``alpha`` finite and >= 0."""
    name = "elu"

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_alpha(alpha, lo=0)

    def get_config(self):
        return {"alpha": self.alpha}
