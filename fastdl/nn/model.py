"""``Sequential``: a stack of layers over one flat parameter buffer, with ``fit``,
``predict``, ``evaluate``, ``save`` and ``fastdl.load``."""
from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
import zlib

import numpy as np

from fastdl import _config
from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.nn.layers import Layer, Sigmoid, Softmax, layer_config, layer_from_config

__all__ = ["Sequential", "History", "GradientWarning", "load"]

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")
FORMAT = "fastdl-model"
FORMAT_VERSION = 1
VANISH, EXPLODE = 1e-7, 1e3


class GradientWarning(UserWarning):
    """A layer's gradient norm vanished (< 1e-7) or exploded (> 1e3, or not finite)."""


class History:
    """``history`` maps each logged name to its per-epoch list; ``epoch`` lists the epochs."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


def _check_layer(layer, where, seen):
    """A layer (and the layers inside a Residual) fit to be bound into a new model.

    Each layer keeps its weights as views into one model's buffer and the activations
    of its last forward for its backward, so one object used twice, or already bound
    into another model, would read the other use's weights or saved activations (a
    wrong gradient, with no error), and a nested Sequential's weights would stay
    outside the model's buffer and its optimizer."""
    if not isinstance(layer, Layer):
        raise TypeError(f"{where}: expected a fastdl.nn layer, got {type(layer).__name__}")
    if isinstance(layer, Sequential):
        raise TypeError(f"{where}: a Sequential cannot be a layer of another model; pass "
                        "its layers instead (nn.Residual for a skip connection)")
    if id(layer) in seen:
        raise ValueError(f"{where}: this layer object is used twice; each use needs its own "
                         "layer (it keeps its own weights and saved activations)")
    if getattr(layer, "_params", None) is not None:
        raise ValueError(f"{where}: this layer already belongs to another model; build a "
                         "new layer (weights can be copied through parameters().data)")
    seen.add(id(layer))
    for j, sub in enumerate(getattr(layer, "layers", ())):
        _check_layer(sub, f"{where}.layers[{j}]", seen)


class Sequential(Layer):
    """Layers applied in order.  All parameters live in one ``fastdl.optim.Parameters``
    buffer (``model.parameters()``), initialised at construction from ``seed``.

    Parameters
    ----------
    *layers : fastdl.nn layers
    dtype : float32 (default) or float64, the dtype of parameters and activations
    seed : int or numpy Generator, optional, for the initial weights
    backend : str, optional, the backend of every kernel (None: the default backend)
    """

    def __init__(self, *layers, dtype=np.float32, seed=None, backend=None):
        super().__init__()
        from fastdl.optim import Parameters

        if not layers:
            raise ValueError("layers: Sequential needs at least one layer")
        seen: set = set()
        for i, layer in enumerate(layers):
            _check_layer(layer, f"layers[{i}]", seen)
        self.dtype = np.dtype(dtype)
        if self.dtype not in V.FLOATS:
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        if backend is not None:
            _config.check_backend(backend)
        self.backend = backend
        self.layers = list(layers)
        self.in_features = next((f for f in (l.input_features() for l in self.layers)
                                 if f is not None), None)
        f = self.in_features
        for layer in self.layers:
            if f is not None:
                f = layer.output_features(f)
        self.out_features = f
        shapes = {}
        for i, layer in enumerate(self.layers):
            for name, shape in layer.param_shapes().items():
                shapes[f"{i}.{name}"] = shape
        self._params = Parameters(shapes, dtype=self.dtype)
        for i, layer in enumerate(self.layers):
            layer.bind(self._params, f"{i}.")
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.init_params(rng)
        self.loss = None
        self.optimizer = None
        self._warned: set = set()
        self._ce_bufs: dict = {}
        self._forward_shape = None  # the output shape of the last public forward

    # structure ----------------------------------------------------------
    def parameters(self):
        """The flat parameter buffer: ``.data``, ``.grad`` and the named views."""
        return self._params

    def param_layers(self, prefix=""):
        for i, layer in enumerate(self.layers):
            yield from layer.param_layers(f"{prefix}{i}")

    def layer_names(self):
        """Names of the layers with parameters, as used in ``grad_norm/<name>``."""
        return [f"{type(l).__name__.lower()}_{path}" for path, l in self.param_layers()]

    def get_config(self):
        return {"layers": [layer_config(l) for l in self.layers], "dtype": self.dtype.name}

    def __repr__(self):
        inner = ",\n  ".join(repr(l) for l in self.layers)
        return f"Sequential(\n  {inner}\n)"

    # forward / backward --------------------------------------------------
    def _set_mode(self, training, layers=None):
        for layer in layers or self.layers:
            layer.training = training
            layer.backend = self.backend
            if hasattr(layer, "layers"):
                self._set_mode(training, layer.layers)

    def forward(self, X, training=True):
        """The model's output for the rows of ``X`` (N, in_features), for a training loop
        of your own: ``training=True`` runs dropout as ``fit`` does, False as ``predict``.

        Returns the last layer's output buffer (N, out_features), the model's dtype: the
        next ``forward`` with the same batch size writes over it, so copy what you keep.
        ``X`` is checked as in ``fit`` (the layers' kernels trust their inputs)."""
        X = self._check_X(X)
        if not isinstance(training, bool):
            raise TypeError(f"training: expected a bool, got {type(training).__name__}")
        self._set_mode(training)
        out = self._forward(X)
        self._forward_shape = out.shape
        return out

    def backward(self, dy, need_dx=False):
        """Back-propagate ``dy``, the gradient at the output of the last ``forward``
        (same shape), writing every parameter's gradient into ``parameters().grad``
        (overwritten, not added to).  Returns the gradient at ``X`` when ``need_dx``,
        else None (the first layer then skips that product).  Needs a ``forward`` just
        before it (``fit``, ``predict`` and ``evaluate`` in between replace what the layers
        saved)."""
        shape = self._forward_shape
        if shape is None:
            raise ValueError("dy: call forward just before backward (none since the model "
                             "was built or last ran fit, predict or evaluate)")
        if not isinstance(need_dx, bool):
            raise TypeError(f"need_dx: expected a bool, got {type(need_dx).__name__}")
        dy = V.as_float("dy", dy, dtype=self.dtype)
        V.check_shape("dy", dy, shape)
        return self._backward(dy, need_dx)

    def _forward(self, x, layers=None):
        # the unchecked forward of fit and predict: x is C-contiguous, of the model's
        # dtype and width.  It replaces what the layers saved for a backward, so a
        # public backward needs a public forward after it
        self._forward_shape = None
        h = x
        for layer in layers if layers is not None else self.layers:
            h = layer.forward(h)
        return h

    def _backward(self, dy, need_dx=False, layers=None):
        layers = layers if layers is not None else self.layers
        g = dy
        last = len(layers) - 1
        for i in range(last, -1, -1):
            g = layers[i].backward(g, need_dx or i > 0)
        return g

    def _check_X(self, X, name="X"):
        if not isinstance(X, np.ndarray):
            X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a numeric array, got {X.dtype}")
        if X.ndim > 2 and X.shape[0] >= 0:
            X = X.reshape(X.shape[0], -1)  # images (N, H, W[, C]) are flattened
        V.check_ndim(name, X, 2)
        if self.in_features is not None and X.shape[1] != self.in_features:
            raise ValueError(f"{name}: expected {self.in_features} features per row, "
                             f"got shape {X.shape}")
        return np.ascontiguousarray(X, dtype=self.dtype)

    def __call__(self, X):
        """The model's raw output (logits for classification) for the rows of ``X``."""
        return self._infer(self._check_X(X), self.layers).copy()

    def _infer(self, X, layers, chunk=4096):
        self._set_mode(False)
        n = X.shape[0]
        if n <= chunk:
            return self._forward(X, layers)
        out = None
        for s in range(0, n, chunk):
            h = self._forward(np.ascontiguousarray(X[s:s + chunk]), layers)
            if out is None:
                out = np.empty((n,) + h.shape[1:], dtype=h.dtype)
            out[s:s + h.shape[0]] = h
        return out

    # losses ---------------------------------------------------------------
    def _train_layers(self, loss):
        """The layers trained through: a final Softmax (with cross-entropy) or Sigmoid
        (with binary cross-entropy) is folded into the stable fused loss instead."""
        last = self.layers[-1]
        if (loss == "cross_entropy" and isinstance(last, Softmax)) or \
                (loss == "binary_cross_entropy" and isinstance(last, Sigmoid)):
            return self.layers[:-1]
        return self.layers

    def _check_y(self, y, n, loss, name="y"):
        if not isinstance(y, np.ndarray):
            y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{name}: expected {n} targets (one per row of X), "
                             f"got shape {y.shape}")
        if loss == "cross_entropy":
            c = self.out_features
            if y.dtype.kind == "f":
                if not np.all(np.mod(y, 1) == 0):
                    raise TypeError(f"{name}: cross_entropy expects integer class labels, "
                                    f"got {y.dtype} values that are not integers")
                y = y.astype(np.int64)
            return V.as_labels(name, y, n, c)
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected numeric targets, got {y.dtype}")
        if loss == "binary_cross_entropy":
            if self.out_features != 1:
                raise ValueError(f"{name}: binary_cross_entropy needs a model with 1 output, "
                                 f"this one has {self.out_features}")
            y = y.reshape(n, 1)
            if np.any((y < 0) | (y > 1)):
                raise ValueError(f"{name}: binary targets must be in [0, 1]")
            return np.ascontiguousarray(y, dtype=self.dtype)
        if y.ndim == 1:
            y = y.reshape(n, 1)
        if y.shape[1:] != (self.out_features,):
            raise ValueError(f"{name}: expected targets of shape ({n}, {self.out_features}), "
                             f"got {y.shape}")
        return np.ascontiguousarray(y, dtype=self.dtype)

    def _ce_step(self, out, yb, weight):
        """The training step's softmax cross-entropy: the fused kernel called directly
        on buffers made once per batch shape (``fit`` validated the labels and the
        weights), so a step allocates nothing.  Returns (mean loss * rows, dlogits)."""
        n, c = out.shape
        key = (n, c, out.dtype)
        bufs = self._ce_bufs.get(key)
        if bufs is None:
            bufs = (np.empty(n, out.dtype), np.empty((n, c), out.dtype),
                    np.ones(c, out.dtype))
            self._ce_bufs[key] = bufs
        rows, dlogits, ones = bufs
        w = ones if weight is None else weight
        denom = float(n) if weight is None else float(np.sum(weight[yb], dtype=np.float64))
        scale = 1.0 / denom if denom != 0 else float("nan")
        kernel("softmax_cross_entropy", self.backend)(out, yb, w, rows, dlogits, 0.0, scale)
        return float(np.sum(rows, dtype=np.float64)) * scale * n, dlogits

    def _loss_grad(self, out, yb, loss, weight, need_grad=True):
        """(the batch's mean loss times its row count, gradient of the mean loss or None).

        With class weights the mean is weighted: sum_n w[y_n] l_n / sum_n w[y_n]."""
        import fastdl.functional as F

        be, m = self.backend, out.shape[0]
        if loss == "cross_entropy" and need_grad:
            return self._ce_step(out, yb, weight)
        if loss == "cross_entropy":
            lv, g = F.softmax_cross_entropy(out, yb, weight=weight, backend=be)
            return float(lv) * m, g
        if loss == "binary_cross_entropy":
            if weight is None:
                lv = float(F.binary_cross_entropy_with_logits(out, yb, backend=be))
                g = F.binary_cross_entropy_with_logits_backward(out, yb, backend=be) \
                    if need_grad else None
                return lv * m, g
            w = weight[1][(yb > 0.5).astype(np.intp)]
            wsum = float(w.sum())
            per = F.binary_cross_entropy_with_logits(out, yb, reduction="none", backend=be)
            lv = float(np.sum(per * w)) / wsum if wsum > 0 else float("nan")
            g = None
            if need_grad:
                g = F.binary_cross_entropy_with_logits_backward(out, yb, reduction="sum",
                                                                backend=be)
                g *= w / wsum if wsum > 0 else 0
            return lv * m, g
        lv = float(F.mse(out, yb, backend=be)) * m
        g = F.mse_backward(out, yb, backend=be) if need_grad else None
        return lv, g

    @staticmethod
    def _correct(out, yb, loss):
        if loss == "cross_entropy":
            return int(np.count_nonzero(out.argmax(axis=1) == yb))
        if loss == "binary_cross_entropy":
            return int(np.count_nonzero((out > 0) == (yb > 0.5)))
        return 0

    # fit ------------------------------------------------------------------
    def fit(self, X, y, *, loss="cross_entropy", optimizer=None, epochs=10, batch_size=32,
            validation_data=None, validation_split=0.0, schedule=None, callbacks=(),
            class_weight=None, augment=None, shuffle=True, seed=None, verbose=1):
        """Train with mini-batch gradient descent; returns a ``History``.

        ``batch_size=1`` is stochastic gradient descent, ``batch_size=None`` full-batch.
        ``loss`` is ``"cross_entropy"`` (fused softmax + cross-entropy on the logits;
        ``y`` integer labels), ``"binary_cross_entropy"`` (on one logit per row; ``y`` in
        [0, 1]) or ``"mse"``.  ``optimizer`` is None (the model's current optimizer, or
        Adam(lr=1e-3)), ``"adam"``, ``"sgd"`` or an optimizer over ``model.parameters()``.
        ``schedule(epoch) -> lr`` is applied at the start of each epoch.  ``class_weight``
        is ``"complement"`` (1 - n_c/N), ``"balanced"``, a dict or an array over the
        classes; the weighted mean loss divides by the batch's total weight.
        ``augment(xb, rng) -> xb`` transforms each training batch.  The same ``seed``
        (shuffling, dropout, augmentation, validation split) on one thread gives an
        identical History.  Per epoch, ``History.history`` holds ``loss``, ``lr``,
        ``accuracy`` (classification), ``val_loss`` / ``val_accuracy`` (with validation
        data) and ``grad_norm/<layer>``: the L2 norm of each layer's gradient at the
        epoch's last step, before clipping; a norm below 1e-7 (vanishing) or above 1e3
        or not finite (exploding) warns once per layer with a ``GradientWarning``.
        """
        from fastdl.optim import SGD, Adam

        loss = V.check_choice("loss", loss, LOSSES)
        X = self._check_X(X)
        n = X.shape[0]
        if n == 0:
            raise ValueError("X: expected at least one row, got 0")
        y = self._check_y(y, n, loss)
        epochs = V.check_int("epochs", epochs, 1)
        if batch_size is not None:
            batch_size = V.check_int("batch_size", batch_size, 1)
        validation_split = V.check_real("validation_split", validation_split, lo=0.0, hi=1.0,
                                        hi_open=True)
        verbose = V.check_int("verbose", verbose, 0)
        if schedule is not None and not callable(schedule):
            raise TypeError("schedule: expected a callable schedule(epoch) -> lr")
        if augment is not None and not callable(augment):
            raise TypeError("augment: expected a callable augment(xb, rng) -> xb")
        callbacks = list(callbacks) if callbacks is not None else []
        rng = np.random.default_rng(seed)
        self._seed_layers(rng)

        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a tuple (X_val, y_val)")
            Xv = self._check_X(validation_data[0], "validation_data[0]")
            yv = self._check_y(validation_data[1], Xv.shape[0], loss, "validation_data[1]")
        elif validation_split > 0:
            n_val = int(round(n * validation_split))
            if n_val < 1 or n_val >= n:
                raise ValueError(f"validation_split: {validation_split} of {n} rows leaves "
                                 "no training or no validation rows")
            perm = rng.permutation(n)
            vi, ti = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            Xv, yv, X, y = X[vi], y[vi], X[ti], y[ti]
            n = X.shape[0]
        else:
            Xv = yv = None

        weight = None
        if class_weight is not None:
            weight = self._class_weight(class_weight, y, loss)

        opt = self._make_optimizer(optimizer, SGD, Adam)
        self.optimizer, self.loss = opt, loss
        train_layers = self._train_layers(loss)
        bs = n if batch_size is None else min(batch_size, n)
        history = History()
        for cb in callbacks:
            cb.on_train_begin(self)
        names = self.layer_names()
        player = list(self.param_layers())
        xbuf = np.empty((bs,) + X.shape[1:], dtype=self.dtype)
        ybuf = np.empty((bs,) + y.shape[1:], dtype=y.dtype)
        bar = None
        try:
            for epoch in range(epochs):
                if schedule is not None:
                    opt.lr = float(schedule(epoch))
                order = rng.permutation(n) if shuffle else np.arange(n)
                total, correct = 0.0, 0
                self._set_mode(True)
                if verbose:
                    from tqdm.auto import tqdm
                    bar = tqdm(total=n, desc=f"epoch {epoch + 1}/{epochs}", unit="row",
                               leave=True, mininterval=0.2)
                for start in range(0, n, bs):
                    idx = order[start:start + bs]
                    m = idx.shape[0]
                    xb = xbuf[:m]
                    yb = ybuf[:m]
                    # mode="clip": idx is a permutation of range(n), so never out of
                    # range, and the default mode="raise" copies through a buffer
                    # when out= is given (2.3x slower at 1024 x 784, measured)
                    np.take(X, idx, axis=0, out=xb, mode="clip")
                    np.take(y, idx, axis=0, out=yb, mode="clip")
                    if augment is not None:
                        xb = np.ascontiguousarray(augment(xb, rng), dtype=self.dtype)
                        if xb.shape != (m,) + X.shape[1:]:
                            raise ValueError(f"augment: returned shape {xb.shape}, expected "
                                             f"{(m,) + X.shape[1:]}")
                    out = self._forward(xb, train_layers)
                    lv, g = self._loss_grad(out, yb, loss, weight)
                    total += lv
                    correct += self._correct(out, yb, loss)
                    self._backward(g, False, train_layers)
                    if start + bs >= n:
                        norms = self._grad_norms(player)
                    opt.step()
                    if bar is not None:
                        bar.update(m)
                logs = {"loss": total / n, "lr": float(opt.lr)}
                if loss != "mse":
                    logs["accuracy"] = correct / n
                if Xv is not None:
                    ev = self._evaluate(Xv, yv, loss, weight)
                    logs["val_loss"] = ev["loss"]
                    if "accuracy" in ev:
                        logs["val_accuracy"] = ev["accuracy"]
                for name, v in zip(names, norms):
                    logs[f"grad_norm/{name}"] = v
                self._diagnose(names, norms)
                history.append(epoch, logs)
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()
                                     if k in ("loss", "accuracy", "val_loss", "val_accuracy")})
                    bar.close()
                    bar = None
                stop = False
                for cb in callbacks:
                    stop = bool(cb.on_epoch_end(epoch, logs)) or stop
                if schedule is not None and hasattr(schedule, "update"):
                    schedule.update(logs)
                if stop:
                    break
        finally:
            if bar is not None:
                bar.close()
        for cb in callbacks:
            cb.on_train_end(self)
        self.history = history
        return history

    def _seed_layers(self, rng, layers=None):
        from fastdl.nn.layers import Dropout

        for layer in layers or self.layers:
            if isinstance(layer, Dropout):
                layer.rng = np.random.default_rng(rng.integers(2**63))
            if hasattr(layer, "layers"):
                self._seed_layers(rng, layer.layers)

    def _make_optimizer(self, optimizer, SGD, Adam):
        if optimizer is None:
            return self.optimizer if self.optimizer is not None else Adam(self._params)
        if isinstance(optimizer, str):
            name = V.check_choice("optimizer", optimizer.lower(), ("adam", "sgd"))
            return Adam(self._params) if name == "adam" else SGD(self._params, lr=0.01)
        if not hasattr(optimizer, "step"):
            raise TypeError("optimizer: expected None, 'adam', 'sgd' or an optimizer, got "
                            f"{type(optimizer).__name__}")
        params = getattr(optimizer, "params", self._params)
        if params is not self._params:
            raise ValueError("optimizer: it updates other parameters than this model's; "
                             "create it with model.parameters()")
        return optimizer

    def _class_weight(self, class_weight, y, loss):
        from fastdl import data as _data

        if loss == "mse":
            raise ValueError("class_weight: only for classification losses")
        c = self.out_features if loss == "cross_entropy" else 2
        labels = y if loss == "cross_entropy" else (y.reshape(-1) > 0.5).astype(np.int64)
        if isinstance(class_weight, str):
            w = _data.class_weights(labels, method=class_weight, num_classes=c)
        elif isinstance(class_weight, dict):
            w = np.ones(c)
            for k, v in class_weight.items():
                k = V.check_int("class_weight key", k, 0)
                if k >= c:
                    raise ValueError(f"class_weight: class {k} is not in [0, {c})")
                w[k] = V.check_real(f"class_weight[{k}]", v, lo=0.0)
        else:
            w = np.asarray(class_weight, dtype=np.float64)
            if w.shape != (c,):
                raise ValueError(f"class_weight: expected {c} weights, got shape {w.shape}")
            if np.any(w < 0) or not np.all(np.isfinite(w)):
                raise ValueError("class_weight: weights must be finite and >= 0")
        w = np.ascontiguousarray(w, dtype=self.dtype)
        if loss == "binary_cross_entropy":
            return ("binary", w)
        return w

    def _grad_norms(self, player):
        g = []
        for _, layer in player:
            sq = 0.0
            for name in layer.param_shapes():
                v = self._params.grad_of(layer._prefix + name)
                sq += float(np.dot(v.reshape(-1), v.reshape(-1)))
            g.append(float(np.sqrt(sq)))
        return g

    def _diagnose(self, names, norms):
        for name, v in zip(names, norms):
            if name in self._warned:
                continue
            if not np.isfinite(v) or v > EXPLODE:
                self._warned.add(name)
                warnings.warn(f"exploding gradient in layer {name}: norm {v:.3g} (> {EXPLODE:g}"
                              " or not finite); lower the learning rate, clip gradients "
                              "(clip_norm=) or check the initialisation", GradientWarning,
                              stacklevel=3)
            elif v < VANISH:
                self._warned.add(name)
                warnings.warn(f"vanishing gradient in layer {name}: norm {v:.3g} (< {VANISH:g});"
                              " consider ReLU-family activations, He initialisation or skip "
                              "connections", GradientWarning, stacklevel=3)

    # inference ------------------------------------------------------------
    def _loss_name(self):
        if self.loss is not None:
            return self.loss
        return "cross_entropy" if (self.out_features or 0) > 1 else "binary_cross_entropy"

    def predict_proba(self, X):
        """Class probabilities ``(N, C)`` (cross-entropy) or ``P(y=1)`` as ``(N,)`` (binary)."""
        import fastdl.functional as F

        loss = self._loss_name()
        if loss == "mse":
            raise ValueError("predict_proba: the model was trained for regression (mse)")
        X = self._check_X(X)
        out = self._infer(X, self._train_layers(loss))
        if loss == "cross_entropy":
            return F.softmax(out, backend=self.backend)
        return F.sigmoid(out, backend=self.backend).reshape(-1)

    def predict(self, X):
        """Class labels (int64) for classification, values for ``"mse"``."""
        loss = self._loss_name()
        X = self._check_X(X)
        out = self._infer(X, self._train_layers(loss))
        if loss == "cross_entropy":
            return out.argmax(axis=1).astype(np.int64)
        if loss == "binary_cross_entropy":
            return (out.reshape(-1) > 0).astype(np.int64)
        return out.copy()

    def evaluate(self, X, y, class_weight=None):
        """``{"loss": mean loss, "accuracy": ...}`` on ``(X, y)`` (inference mode)."""
        loss = self._loss_name()
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0], loss)
        weight = None if class_weight is None else self._class_weight(class_weight, y, loss)
        return self._evaluate(X, y, loss, weight)

    def _evaluate(self, X, y, loss, weight):
        n = X.shape[0]
        out = self._infer(X, self._train_layers(loss))
        lv, _ = self._loss_grad(out, y, loss, weight, need_grad=False)
        res = {"loss": lv / max(n, 1)}
        if loss != "mse":
            res["accuracy"] = self._correct(out, y, loss) / max(n, 1)
        return res

    # persistence ------------------------------------------------------------
    def save(self, path):
        """Write the architecture, parameters and optimizer state to one ``.npz`` file.

        The file is written under a temporary name in the same folder, flushed to disk
        and renamed over ``path``, so a crash never leaves half a model behind."""
        data = self._params.data
        meta = {"format": FORMAT, "version": FORMAT_VERSION,
                "architecture": self.get_config(), "loss": self.loss,
                "num_params": int(data.size),
                "crc32": zlib.crc32(np.ascontiguousarray(data).view(np.uint8)) & 0xFFFFFFFF}
        arrays = {"params": data}
        if self.optimizer is not None:
            opt_meta, opt_arrays = _flatten_state(self.optimizer.state_dict())
            meta["optimizer"] = {"type": type(self.optimizer).__name__, "state": opt_meta}
            arrays.update({f"optimizer/{k}": v for k, v in opt_arrays.items()})
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".fastdl-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path


def _flatten_state(state, prefix=""):
    """Split a state dict into JSON metadata and arrays (keys joined with '/')."""
    meta, arrays = {}, {}
    for k, v in state.items():
        key = f"{prefix}{k}"
        if isinstance(v, np.ndarray):
            arrays[key] = v
            meta[k] = {"__array__": key}
        elif isinstance(v, dict):
            m, a = _flatten_state(v, key + "/")
            meta[k] = {"__dict__": m}
            arrays.update(a)
        elif isinstance(v, (np.floating, np.integer)):
            meta[k] = v.item()
        elif isinstance(v, tuple):
            meta[k] = {"__tuple__": list(v)}
        else:
            meta[k] = v
    return meta, arrays


def _unflatten_state(meta, arrays):
    out = {}
    for k, v in meta.items():
        if isinstance(v, dict) and "__array__" in v:
            out[k] = arrays[v["__array__"]]
        elif isinstance(v, dict) and "__dict__" in v:
            out[k] = _unflatten_state(v["__dict__"], arrays)
        elif isinstance(v, dict) and "__tuple__" in v:
            out[k] = tuple(v["__tuple__"])
        else:
            out[k] = v
    return out


def load(path):
    """Read a model saved by ``model.save``: the architecture, parameters and optimizer
    state (as ``model.optimizer``).  A missing file raises ``OSError``; a file that is
    not a fastdl model, is truncated or damaged, or whose parameters do not match its
    architecture raises ``ValueError`` saying what is wrong."""
    from fastdl import optim

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            files = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, KeyError) as e:
        raise ValueError(f"{path}: not a readable fastdl model file (damaged, truncated or "
                         f"another format): {e}") from None
    if "meta" not in files or "params" not in files:
        raise ValueError(f"{path}: not a fastdl model file (no 'meta'/'params' entries; "
                         f"found {sorted(files)})")
    try:
        meta = json.loads(files["meta"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: damaged model metadata: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastdl model file (format {meta.get('format')!r})"
                         if isinstance(meta, dict) else f"{path}: not a fastdl model file")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model format version {meta.get('version')!r} is not "
                         f"supported (this fastdl reads version {FORMAT_VERSION})")
    arch = meta.get("architecture", {})
    try:
        model = Sequential(*[layer_from_config(c) for c in arch["layers"]],
                           dtype=arch.get("dtype", "float32"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: the architecture cannot be rebuilt: {e}") from None
    params = files["params"]
    data = model.parameters().data
    if params.shape != data.shape or params.dtype != data.dtype:
        raise ValueError(f"{path}: parameters of shape {params.shape} and dtype "
                         f"{params.dtype} do not match the architecture, which needs "
                         f"{data.shape} {data.dtype}")
    crc = zlib.crc32(np.ascontiguousarray(params).view(np.uint8)) & 0xFFFFFFFF
    if crc != meta.get("crc32"):
        raise ValueError(f"{path}: parameter checksum mismatch (the file is damaged)")
    np.copyto(data, params)
    model.loss = meta.get("loss")
    if "optimizer" in meta:
        o = meta["optimizer"]
        cls = {"SGD": optim.SGD, "Adam": optim.Adam}.get(o.get("type"))
        if cls is None:
            raise ValueError(f"{path}: unknown optimizer type {o.get('type')!r}")
        arrays = {k[len("optimizer/"):]: v for k, v in files.items()
                  if k.startswith("optimizer/")}
        state = _unflatten_state(o["state"], arrays)
        opt = cls(model.parameters())
        try:
            opt.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: the optimizer state does not load: {e}") from None
        model.optimizer = opt
    return model
