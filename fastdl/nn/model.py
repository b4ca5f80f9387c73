"""``Sequential``: a stack of layers over one flat parameter buffer, with ``fit``,
``predict``, ``evaluate`` and ``save``.  The training loop lives in
``fastdl.nn.training``, the losses in ``fastdl.nn.losses``, saving and ``fastdl.load``
in ``fastdl.nn.persistence``."""
from __future__ import annotations

import numpy as np

from fastdl import _config
from fastdl import _validate as V
from fastdl.nn import losses as _losses
from fastdl.nn.history import History
from fastdl.nn.layers import Layer, layer_config

__all__ = ["Sequential", "History", "GradientWarning", "load"]



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
        from fastdl.nn import training

        return training.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                            batch_size=batch_size, validation_data=validation_data,
                            validation_split=validation_split, schedule=schedule,
                            callbacks=callbacks, class_weight=class_weight, augment=augment,
                            shuffle=shuffle, seed=seed, verbose=verbose)

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
        out = self._infer(X, _losses.train_layers(self, loss))
        if loss == "cross_entropy":
            return F.softmax(out, backend=self.backend)
        return F.sigmoid(out, backend=self.backend).reshape(-1)

    def predict(self, X):
        """Class labels (int64) for classification, values for ``"mse"``."""
        loss = self._loss_name()
        X = self._check_X(X)
        out = self._infer(X, _losses.train_layers(self, loss))
        if loss == "cross_entropy":
            return out.argmax(axis=1).astype(np.int64)
        if loss == "binary_cross_entropy":
            return (out.reshape(-1) > 0).astype(np.int64)
        return out.copy()

    def evaluate(self, X, y, class_weight=None):
        """``{"loss": mean loss, "accuracy": ...}`` on ``(X, y)`` (inference mode)."""
        loss = self._loss_name()
        X = self._check_X(X)
        y = _losses.check_y(self, y, X.shape[0], loss)
        weight = None
        if class_weight is not None:
            from fastdl.nn.training import class_weight_array
            weight = class_weight_array(self, class_weight, y, loss)
        return self._evaluate(X, y, loss, weight)

    def _evaluate(self, X, y, loss, weight):
        n = X.shape[0]
        out = self._infer(X, _losses.train_layers(self, loss))
        lv, _ = _losses.loss_grad(self, out, y, loss, weight, need_grad=False)
        res = {"loss": lv / max(n, 1)}
        if loss != "mse":
            res["accuracy"] = _losses.correct(out, y, loss) / max(n, 1)
        return res

    # persistence ------------------------------------------------------------
    def save(self, path):
        """Write the architecture, parameters and optimizer state to one ``.npz`` file.

        The file is written under a temporary name in the same folder, flushed to disk
        and renamed over ``path``, so a crash never leaves half a model behind."""
        from fastdl.nn import persistence

        return persistence.save(self, path)


# re-exported: these names were importable from this module before it was split
from fastdl.nn.persistence import load  # noqa: E402
from fastdl.nn.training import GradientWarning  # noqa: E402
