"""Image layers: ``Conv2D``, ``MaxPool2D``, ``AvgPool2D`` and ``Flatten``.

Images are ``(N, C, H, W)`` as in PyTorch; a layer's per-sample shape is ``(C, H, W)``,
with H and W left open (``None``) until the model sees ``X``, so one model takes
images of any size its layers fit.  The layers call the registry's kernels directly
(the model checked ``X`` once; every buffer here is the layer's own, C-contiguous, of
the model's dtype), and ``Conv2D`` borrows the per-thread im2col workspace of
``fastdl.functional.conv``, so a CNN's training step allocates nothing in the steady
state and no workspace grows with the batch.

A model whose first layer is a 1-channel ``Conv2D`` also takes ``(N, H, W)`` images
(``load_digits(images=True)``): ``Sequential`` reads them as ``(N, 1, H, W)``, a view,
no copy.  Any other channel count needs the channel axis.
"""
from __future__ import annotations

import math

import numpy as np

from fastdl import _validate as V
from fastdl import init as _init
from fastdl.functional.conv import (_BLAS_INT_MAX, _pair, _threads_for, workspace,
                                   workspace_size)
from fastdl.functional.pool import _MAX_PLANE, ARGMAX_DTYPE
from fastdl.nn.activations import apply_activation, apply_activation_backward
from fastdl.nn.base import Layer, WeightLayer, fmt_shape
from fastdl.nn.layers import Dense

__all__ = ["Conv2D", "MaxPool2D", "AvgPool2D", "Flatten"]

# the activations the kernel fuses into its output pass; their backward reads the
# output (its sign is the pre-activation's), so the layer keeps no pre-activation
_FUSED = ("relu", "leaky_relu")
_CHANNEL_SOFTMAX = ("softmax", "log_softmax")


def _image_shape(layer, shape, channels=None):
    """Check a per-sample ``shape`` as (C, H, W), with C == ``channels`` when given."""
    name = type(layer).__name__
    if len(shape) != 3:
        raise ValueError(f"{name}: expected images (C, H, W) per sample, got per-sample "
                         f"shape {fmt_shape(shape)}")
    if channels is not None and shape[0] is not None and shape[0] != channels:
        raise ValueError(f"{name}: expected {channels} input channels, got per-sample shape "
                         f"{fmt_shape(shape)}")


def _spatial_out(layer, shape, khw, stride, padding):
    """(Ho, Wo) for a per-sample (C, H, W) whose H or W may be None (then so is that
    output side); ValueError when the window is larger than the (padded) input, or when
    the padding makes output planes beyond the kernels' 32-bit sizes (as the functional
    API: a model took them, and NumPy then refused a 16 TiB allocation naming nothing)."""
    name = type(layer).__name__
    padded = [None if d is None else d + 2 * p for d, p in zip(shape[1:], padding)]
    if any(d is not None and k > d for d, k in zip(padded, khw)):
        shown = "x".join("?" if d is None else str(d) for d in padded)
        raise ValueError(f"{name}: the {khw[0]}x{khw[1]} window is larger "
                         f"than the {'padded ' if any(padding) else ''}input, {shown}")
    ho, wo = (None if d is None else (d - k) // s + 1 for d, k, s in zip(padded, khw, stride))
    if any(padding) and ho is not None and wo is not None and ho * wo > _BLAS_INT_MAX:
        raise ValueError(f"{name}: padding {padding} makes {ho}x{wo} output planes, more "
                         f"than {_BLAS_INT_MAX} pixels")
    return ho, wo


class Conv2D(WeightLayer):
    """2-D convolution (cross-correlation, as ``torch.nn.Conv2d``) with zero padding.

    ``y[n, o] = act(b[o] + sum_c W[o, c] (*) xpad[n, c])``: ``x (N, C, H, W) -> y (N, O,
    Ho, Wo)`` with ``Ho = (H + 2 ph - kh) // sh + 1`` (and so for ``Wo``).  ``W`` is
    ``(O, C, kh, kw)``, ``b`` ``(O,)``; both are views into the model's parameter
    buffer.  ``kernel_size``, ``stride`` and ``padding`` are an int or a pair.

    ``init`` as ``nn.Dense``, with PyTorch's fans for a kernel: ``fan_in = C kh kw``,
    ``fan_out = O kh kw`` (``"he"``: N(0, 2 / fan_in)); biases start at zero.
    ``activation`` is None or a name of ``fastdl.functional``'s activations: ReLU and
    Leaky ReLU are fused into the convolution's output pass; the others run over the
    output after it; ``softmax``/``log_softmax`` act over the channels at each pixel.
    ``alpha`` (finite) is the slope of ``leaky_relu`` or the scale of ``elu``."""

    has_params = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 activation=None, init="he", bias=True, alpha=None):
        super().__init__()
        self.in_channels = V.check_int("in_channels", in_channels, 1)
        self.out_channels = V.check_int("out_channels", out_channels, 1)
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        k = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        if k > _BLAS_INT_MAX or self.out_channels > _BLAS_INT_MAX:
            raise ValueError(f"kernel_size: {self.in_channels} channels x "
                             f"{self.kernel_size} (and {self.out_channels} outputs) are "
                             f"beyond the kernels' 32-bit sizes")
        # the options Dense has too, checked by Dense's own rules (one place for both)
        opts = Dense(1, 1, activation=activation, init=init, bias=bias, alpha=alpha)
        self.activation, self.init, self.bias, self.alpha = \
            opts.activation, opts.init, opts.bias, opts.alpha
        self._ws_sizes: dict = {}

    # parameters -------------------------------------------------------------
    def param_shapes(self):
        shapes = {"W": (self.out_channels, self.in_channels) + self.kernel_size}
        if self.bias:
            shapes["b"] = (self.out_channels,)
        return shapes

    def init_params(self, rng):
        W, shape = self.W, self.W.shape
        fans = {"he": _init.he_normal, "he_normal": _init.he_normal,
                "he_uniform": _init.he_uniform, "xavier": _init.xavier_normal,
                "xavier_normal": _init.xavier_normal, "xavier_uniform": _init.xavier_uniform}
        if self.init in fans:
            fans[self.init](shape, rng=rng, out=W)
        elif self.init == "normal":
            _init.normal(shape, std=0.01, rng=rng, out=W)
        elif self.init == "uniform":
            _init.uniform(shape, 0.05, rng=rng, out=W)
        else:
            W[...] = 0
        if self.bias:
            self.b[...] = 0

    # shapes -------------------------------------------------------------------
    def expected_input_shape(self):
        return (self.in_channels, None, None)

    def compute_output_shape(self, shape):
        _image_shape(self, shape, self.in_channels)
        ho, wo = _spatial_out(self, shape, self.kernel_size, self.stride, self.padding)
        return (self.out_channels, ho, wo)

    # forward / backward -------------------------------------------------------
    def _workspace(self, fn, x_shape, out_hw, dtype, backward):
        # one slice for each thread of a kernel ``fn`` that runs its own (functional/conv.py)
        threads = _threads_for(fn)
        key = (x_shape, dtype, backward, threads)
        size = self._ws_sizes.get(key)
        if size is None:
            if len(self._ws_sizes) >= 16:
                self._ws_sizes.clear()
            size = self._ws_sizes[key] = workspace_size(
                x_shape, self.W.shape, out_hw, dtype, backward=backward, threads=threads)
        return workspace(size, dtype)

    def forward(self, x):
        n, _, h, w = x.shape
        dt = x.dtype
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        shape = (n, self.out_channels, ho, wo)
        act = self.activation
        self._x = x
        y = self._buf("y", shape, dt)
        conv = self._k("conv2d_forward")
        ws = self._workspace(conv, x.shape, (ho, wo), dt, False)
        if act is None or act in _FUSED:
            conv(x, self.W, self.b, y, ws, sh, sw, ph, pw, act, self.alpha)
            self._z = y
        else:
            z = self._buf("z", shape, dt)
            conv(x, self.W, self.b, z, ws, sh, sw, ph, pw, None, 0.0)
            if act in _CHANNEL_SOFTMAX:
                _channel_softmax(act, z, y)
            else:
                apply_activation(self._k, act, z, y, self.alpha)
            self._z = z
        self._y = y
        return y

    def backward(self, dy, need_dx=True):
        dt = dy.dtype
        act = self.activation
        x = self._x
        if act is None:
            dz = dy
        else:
            dz = self._buf("dz", dy.shape, dt)
            if act in _CHANNEL_SOFTMAX:
                _channel_softmax_backward(act, dy, self._y, dz)
            else:
                apply_activation_backward(self._k, act, dy, self._z, dz, self.alpha, self._y)
        dx = self._buf("dx", x.shape, dt) if need_dx else None
        # the kernel always writes db: without a bias it goes to a scratch buffer
        db = self.db if self.bias else self._buf("db", (self.out_channels,), dt)
        conv_back = self._k("conv2d_backward")
        ws = self._workspace(conv_back, x.shape, dy.shape[2:], dt, True)
        conv_back(dz, x, self.W, dx, self.dW, db, ws, *self.stride, *self.padding)
        return dx

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "activation": self.activation,
                "init": self.init, "bias": self.bias, "alpha": self.alpha}


def _channel_softmax(act, z, y):
    """y = softmax or log_softmax of z (N, O, H, W) over the channels O, stable."""
    np.subtract(z, z.max(axis=1, keepdims=True), out=y)
    if act == "softmax":
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)
    else:
        y -= np.log(np.exp(y).sum(axis=1, keepdims=True))


def _channel_softmax_backward(act, dy, y, dz):
    """dz through the channel softmax from its output y: softmax ``y (dy - sum_c dy y)``,
    log_softmax ``dy - exp(y) sum_c dy``."""
    if act == "softmax":
        np.multiply(dy, y, out=dz)
        s = dz.sum(axis=1, keepdims=True)
        np.subtract(dy, s, out=dz)
        dz *= y
    else:
        np.exp(y, out=dz)
        dz *= dy.sum(axis=1, keepdims=True)
        np.subtract(dy, dz, out=dz)


class _Pool2D(Layer, register=False):
    """What max and average pooling share: the window, the shapes, the config."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair("stride", stride, 1)
        self._stride_given = stride is not None

    def expected_input_shape(self):
        return (None, None, None)

    def compute_output_shape(self, shape):
        _image_shape(self, shape)
        ho, wo = _spatial_out(self, shape, self.kernel_size, self.stride, (0, 0))
        return (shape[0], ho, wo)

    def _out_shape(self, x):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return x.shape[:2] + ((x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1)

    def get_config(self):
        return {"kernel_size": list(self.kernel_size),
                "stride": list(self.stride) if self._stride_given else None}


class MaxPool2D(_Pool2D):
    """Max pooling over ``kernel_size`` windows moved by ``stride`` (default: the
    window, so windows tile), no padding: ``(N, C, H, W) -> (N, C, Ho, Wo)`` with
    ``Ho = (H - kh) // sh + 1``.  The gradient goes to the first maximum of each window
    (overlapping windows add theirs), as ``torch.nn.MaxPool2d``."""

    def compute_output_shape(self, shape):
        # argmax indexes a plane in int32, as in F.max_pool2d: a larger plane's indices
        # would wrap, and the backward pass write before dx
        out = super().compute_output_shape(shape)  # (C, H, W) checked there
        if shape[1] is not None and shape[2] is not None and shape[1] * shape[2] > _MAX_PLANE:
            raise ValueError(f"MaxPool2D: a plane of {shape[1]}x{shape[2]} pixels is more "
                             f"than the int32 argmax indexes ({_MAX_PLANE})")
        return out

    def forward(self, x):
        shape = self._out_shape(x)
        y = self._buf("y", shape, x.dtype)
        am = self._buf("argmax", shape, ARGMAX_DTYPE)
        self._k("max_pool2d")(x, y, am, *self.kernel_size, *self.stride)
        self._argmax, self._x_shape = am, x.shape
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        dx = self._buf("dx", self._x_shape, dy.dtype)
        self._k("max_pool2d_backward")(dy, self._argmax, dx)
        return dx


class AvgPool2D(_Pool2D):
    """Average pooling over ``kernel_size`` windows moved by ``stride`` (default: the
    window), no padding: each output is the mean of its ``kh kw`` inputs, as
    ``torch.nn.AvgPool2d``."""

    def forward(self, x):
        y = self._buf("y", self._out_shape(x), x.dtype)
        self._k("avg_pool2d")(x, y, *self.kernel_size, *self.stride)
        self._x_shape = x.shape
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        dx = self._buf("dx", self._x_shape, dy.dtype)
        self._k("avg_pool2d_backward")(dy, dx, *self.kernel_size, *self.stride)
        return dx


class Flatten(Layer):
    """``(N, *shape) -> (N, prod(shape))``, row-major (as ``torch.nn.Flatten``): a view,
    no copy.  Put it between the image layers and the first ``Dense``, whose
    ``in_features`` is then ``C * H * W`` of the last image layer's output."""

    def compute_output_shape(self, shape):
        if any(d is None for d in shape):
            return (None,)
        return (math.prod(shape),)

    def forward(self, x):
        self._x_shape = x.shape
        # the width spelled out: -1 cannot be inferred from an empty batch
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._x_shape) if need_dx else None
