"""``Sequential``: a stack of layers over one flat parameter buffer, with ``fit``,
``predict``, ``evaluate``, ``summary`` and ``save``.  The training loop lives in
``fastdl.nn.training``, the losses in ``fastdl.nn.losses``, saving and ``fastdl.load``
in ``fastdl.nn.persistence``."""
from __future__ import annotations

import math

import numpy as np

from fastdl import _config
from fastdl import _validate as V
from fastdl.nn import losses as _losses
from fastdl.nn.base import MAX_DEPTH, Layer, fmt_shape, layer_config, layer_type, new_lock, \
    propagate_shape, required_input_shape, walk_layers
from fastdl.nn.fit_args import check_finite
from fastdl.nn.history import History
from fastdl.nn.heads import split_output_activation
from fastdl.nn.layers import Residual
from fastdl.nn.summary import summary_table

__all__ = ["Sequential", "History", "GradientWarning", "load"]

def _check_layer(layer, where, seen, depth=0):
    """A layer (and the layers inside it) fit to be bound into a new model.

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
    # Residual blocks nest as load counts them (a Maxout's inner Dense is no block): the
    # model saved, and then fastdl.load refused the file
    block = isinstance(layer, Residual)
    if block and depth >= MAX_DEPTH:
        raise ValueError(f"{where}: Residual blocks nested more than {MAX_DEPTH} deep")
    for j, sub in enumerate(layer.sublayers()):
        _check_layer(sub, f"{where}.layers[{j}]", seen, depth + block)


class Sequential(Layer, register=False):
    """Layers applied in order.  All parameters live in one ``fastdl.optim.Parameters``
    buffer (``model.parameters()``), initialised at construction from ``seed``.

    Parameters
    ----------
    *layers : fastdl.nn layers
    dtype : float32 (default) or float64, the dtype of parameters and activations
    seed : int or numpy Generator, optional, for the initial weights
    backend : str, optional, the backend of every kernel (None: the default backend)

    Attributes
    ----------
    input_shape : per-sample shape of ``X`` (no batch axis; None entries: any size), or
        None when the first layers take any shape.  ``X`` is ``(N, *input_shape)``; a
        model whose input is ``(features,)`` also takes images ``(N, H, W[, C])`` and
        flattens them, and one whose input is ``(1, H, W)`` (a 1-channel ``Conv2D``
        first) also takes ``(N, H, W)`` images, as ``(N, 1, H, W)``.
    output_shape : per-sample output shape (None where it depends on ``X``)
    output_activation : ``"softmax"``, ``"sigmoid"`` (a final ``nn.Softmax()`` /
        ``nn.Sigmoid()`` or a last ``Dense`` with that activation, Flatten layers after
        them looked through where exact: see ``fastdl.nn.heads``) or None
    loss, optimizer, history : set by ``fit`` (``loss`` and ``optimizer`` are saved)
    epochs_trained : epochs run by ``fit`` so far (saved; numbers the next epoch)

    Layers are named ``<type>_<index>`` (``dense_0``), nested ones by their path
    (``residual_1.dense_0``); the same names key the parameters (``dense_0.W``), the
    history (``grad_norm/dense_0``) and the summary.
    """

    def __init__(self, *layers, dtype=np.float32, seed=None, backend=None):
        from fastdl.data import _rng

        # before _build, which binds the layers to this model: refused after it, they
        # could not go into a corrected model
        rng = _rng(seed)  # None, an int >= 0 or a Generator, else an error naming seed
        self._build(layers, dtype, backend)
        for layer in self.layers:
            layer.init_params(rng)

    def _build(self, layers, dtype, backend, warn=True):
        """Everything but the initial weights (``fastdl.load`` copies them in instead)."""
        super().__init__()
        from fastdl.optim import Parameters

        if not layers:
            raise ValueError("layers: Sequential needs at least one layer")
        seen: set = set()
        for i, layer in enumerate(layers):
            _check_layer(layer, f"layers[{i}]", seen)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
        if self.dtype not in V.FLOATS:
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        if backend is not None:
            _config.check_backend(backend)
        self.backend = backend
        self.layers = list(layers)
        self._names = [f"{layer_type(l)}_{i}" for i, l in enumerate(self.layers)]
        self.input_shape = required_input_shape(self.layers)
        self.output_shape = None
        start = next((i for i, l in enumerate(self.layers)
                      if l.expected_input_shape() is not None), None)
        if start is not None:  # check the layers fit together now, not at the first batch
            shapes = propagate_shape(self.layers[start:],
                                     tuple(self.layers[start].expected_input_shape()),
                                     start=start)
            if all(l.keeps_shape for l in self.layers[:start]):
                self.output_shape = shapes[-1]
        self._plans: dict = {}
        shapes, aliases = {}, {}
        for i, (name, layer) in enumerate(zip(self._names, self.layers)):
            for p, shape in layer.param_shapes().items():
                shapes[f"{name}.{p}"] = shape
                # the names before layers were named by type ("0.W"), still readable
                aliases[".".join([str(i)] + [c.rsplit("_", 1)[-1] for c in p.split(".")[:-1]]
                                 + [p.split(".")[-1]])] = f"{name}.{p}"
        self._params = Parameters(shapes, dtype=self.dtype)
        self._params._aliases = aliases
        # every check passed: only now may the layers change (a refused model leaves
        # its layers as they were, free for another model)
        self.output_activation, self._body, self._full = split_output_activation(self.layers,
                                                                                 warn)
        for name, layer in zip(self._names, self.layers):
            layer.bind(self._params, f"{name}.")
        self.loss = None
        self.optimizer = None
        self.history = None
        self.epochs_trained = 0
        self._seed = None  # the seed of fit's random streams (see fastdl.nn.training)
        self._distributed = False  # trained by fit(distributed=True): save on rank 0 only
        self._warned: set = set()
        self._forward_shape = None  # the output shape of the last public forward
        self._lock = new_lock(self)  # see base.new_lock

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        # pickle and deepcopy give every layer's weight views arrays of their own: bind
        # the layers to the model's (unpickled) buffers again, as at construction
        self.__dict__.update(state)
        self._lock = new_lock(self)
        for name, layer in zip(self._names, self.layers):
            layer.bind(self._params, f"{name}.")

    # structure ----------------------------------------------------------
    def parameters(self):
        """The flat parameter buffer: ``.data``, ``.grad`` and the named views."""
        return self._params

    def param_layers(self, prefix=""):
        """(name, layer) of every layer with parameters, nested ones included."""
        for name, layer in zip(self._names, self.layers):
            yield from layer.param_layers(prefix + name)

    def layer_names(self):
        """Names of the layers with parameters, as used in ``grad_norm/<name>``."""
        return [name for name, _ in self.param_layers()]

    @property
    def in_features(self):
        """The feature count of ``X``'s rows, or None when the input is not a vector."""
        s = self.input_shape
        return s[0] if s is not None and len(s) == 1 else None

    @property
    def out_features(self):
        """The model's output width, or None when the output is not a known vector."""
        s = self.output_shape
        return s[0] if s is not None and len(s) == 1 else None

    def sublayers(self):
        return list(self._full)

    def get_config(self):
        return {"layers": [layer_config(l) for l in self.layers], "dtype": self.dtype.name}

    def __repr__(self):
        inner = ",\n  ".join(repr(l) for l in self.layers)
        return f"Sequential(\n  {inner}\n)"

    def summary(self, input_shape=None) -> str:
        """A table of the layers: name, type, output shape (``?``: set by ``X``),
        parameter count; then the total.  Prints nothing (``print(m.summary())``).
        ``input_shape``, one sample's shape (``(1, 28, 28)``), shows the shapes that
        input gives (a model over images of any size has ``?`` for H and W)."""
        shape = self.input_shape
        if input_shape is not None:
            if not isinstance(input_shape, (tuple, list)):
                raise TypeError(f"input_shape: expected a tuple of ints, got "
                                f"{type(input_shape).__name__}")
            dims = tuple(V.check_int("input_shape", d, 1) for d in input_shape)
            shape = self._check_X(np.empty((0,) + dims, self.dtype), "input_shape").shape[1:]

        return summary_table(self, shape)

    # forward / backward --------------------------------------------------
    def _set_mode(self, training):
        for layer in walk_layers(self._full):
            layer.training = training
            layer.backend = self.backend

    def forward(self, X, training=True):
        """The model's output for the rows of ``X`` (N, *input_shape), for a training
        loop of your own: ``training=True`` runs dropout as ``fit`` does, False as
        ``predict``.  The output activation, if any, is applied (probabilities).

        Returns the last layer's output buffer (N, *output_shape), the model's dtype:
        the next forward writes over it, so copy what you keep.  ``X`` is checked as in
        ``fit`` (the layers' kernels trust their inputs)."""
        with self._lock:  # see base.new_lock
            X = self._check_X(X)
            check_finite("X", X)  # as fit and predict: forward returned NaN rows silently
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
        with self._lock:  # see base.new_lock
            shape = self._forward_shape
            if shape is None:
                raise ValueError("dy: call forward just before backward (none since the model "
                                 "was built or last ran fit, predict or evaluate)")
            if not isinstance(need_dx, bool):
                raise TypeError(f"need_dx: expected a bool, got {type(need_dx).__name__}")
            dy = V.as_float("dy", dy, dtype=self.dtype)
            V.check_shape("dy", dy, shape)
            check_finite("dy", dy)
            return self._backward(dy, need_dx)

    def _forward(self, x, layers=None):
        # the unchecked forward of fit and predict: x is C-contiguous, of the model's
        # dtype and shape.  It replaces what the layers saved for a backward, so a
        # public backward needs a public forward after it
        self._forward_shape = None
        h = x
        for layer in self._full if layers is None else layers:
            h = layer.forward(h)
        return h

    def _backward(self, dy, need_dx=False, layers=None):
        layers = self._full if layers is None else layers
        g = dy
        for i in range(len(layers) - 1, -1, -1):
            g = layers[i].backward(g, need_dx or i > 0)
        return g

    def _check_X(self, X, name="X"):
        """``X`` as a C-contiguous array of the model's dtype, its shape checked
        against the layers (ValueError naming ``name``)."""
        X = V.as_ndarray(name, X)
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a numeric array, got {X.dtype}")
        want = self.input_shape
        if X.ndim > 2 and (want is None or len(want) == 1):
            X = X.reshape(X.shape[0], math.prod(X.shape[1:]))  # images into an MLP
        elif X.ndim == 3 and want is not None and len(want) == 3 and want[0] == 1:
            X = X[:, None]  # (N, H, W) images into a 1-channel first layer: (N, 1, H, W)
        if want is None:
            if X.ndim < 2:
                raise ValueError(f"{name}: expected a 2-D array (N, features), got shape "
                                 f"{X.shape}")
        elif len(want) == 1:
            V.check_ndim(name, X, 2)
            if want[0] is not None and X.shape[1] != want[0]:
                raise ValueError(f"{name}: expected {want[0]} features per row, "
                                 f"got shape {X.shape}")
        elif X.ndim != 1 + len(want) or any(
                w is not None and w != d for w, d in zip(want, X.shape[1:])):
            raise ValueError(f"{name}: expected shape {fmt_shape(want, batch=True)}, got "
                             f"{X.shape}")
        self._out_shape(X.shape[1:], name)
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _out_shape(self, sample_shape, name="X"):
        """The per-sample output shape for per-sample input ``sample_shape`` (cached)."""
        out = self._plans.get(sample_shape)
        if out is None:
            try:
                out = propagate_shape(self._full, sample_shape)[-1]
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            if len(self._plans) >= 16:
                self._plans.clear()
            self._plans[sample_shape] = out
        return out

    def __call__(self, X):
        """The model's output (after its output activation) for the rows of ``X``."""
        with self._lock:  # see base.new_lock
            X = self._check_X(X)
            check_finite("X", X)
            return self._infer(X, self._full).copy()

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

    def _layers_for(self, loss):
        """The layers a loss runs through: up to the logits for a classification loss
        (its kernel applies the output activation), all of them for ``mse``."""
        _losses.check_loss("loss", loss, self.output_activation)
        return self._full if loss == "mse" else self._body

    # fit ------------------------------------------------------------------
    def fit(self, X, y, *, loss="cross_entropy", optimizer=None, epochs=10, batch_size=32,
            validation_data=None, validation_split=0.0, schedule=None, callbacks=(),
            class_weight=None, augment=None, shuffle=True, seed=None, verbose=1,
            initial_epoch=None, distributed=False):
        """Train with mini-batch gradient descent; returns a ``History``.

        ``X`` is ``(N, *input_shape)`` (finite values).  ``batch_size=1`` is stochastic
        gradient descent, ``batch_size=None`` full-batch.  ``loss`` is
        ``"cross_entropy"`` (fused softmax + cross-entropy on the logits; ``y`` integer
        labels ``(N,)`` or class probabilities ``(N, C)``, e.g. one-hot),
        ``"binary_cross_entropy"`` (on one logit per row; ``y`` in [0, 1]) or ``"mse"``
        (``y`` as the output).  A final softmax (cross-entropy) or sigmoid (binary) is
        folded into the loss.  ``optimizer`` is None (the model's current optimizer, or
        Adam(lr=1e-3)), ``"adam"``, ``"sgd"`` (lr 0.01) or an optimizer over
        ``model.parameters()``.  ``schedule(epoch) -> lr`` is applied at the start of
        each epoch.  ``class_weight`` is ``"complement"`` (1 - n_c/N), ``"balanced"``, a
        dict or an array over the classes; the weighted mean loss divides by the
        batch's total weight (``sum_n sum_c w[c] t[n, c]`` for probabilities: one-hot
        targets train as labels).  ``augment(xb, rng) -> xb`` transforms each training batch.
        ``verbose=1`` shows a progress bar on a terminal or in a notebook and one line
        per epoch elsewhere (a log file); ``verbose=2`` one line per epoch; 0 nothing.

        Epochs are numbered from ``initial_epoch`` (default: ``epochs_trained``, the
        epochs this model has run, so a second ``fit`` goes on where the first
        stopped); the number indexes ``schedule``, ``History.epoch`` and the callbacks.
        Epoch ``e`` draws its shuffle, dropout masks and augmentation from a generator
        seeded by ``(seed, e)``; ``seed=None`` takes the model's seed (the last one
        given, saved with the model; fresh entropy the first time).  So, on one thread,
        ``fit(epochs=k)`` then ``fit(epochs=m)``, with a ``save``/``fastdl.load`` in
        between or not, trains exactly as ``fit(epochs=k + m)``, and the same seed gives
        an identical History.

        Per epoch, ``History.history`` holds ``loss``, ``lr``, ``accuracy``
        (classification), ``val_loss`` / ``val_accuracy`` (with validation data) and
        ``grad_norm/<layer>``: the L2 norm of each layer's gradient at the epoch's last
        step, before clipping; a norm below 1e-7 (vanishing) or above 1e3 (exploding)
        warns once per layer with a ``GradientWarning``.  An epoch whose loss, gradient
        or parameters are not finite (a diverging run) ends training with a
        ``DivergenceWarning``: the parameters are then not usable (an
        ``EarlyStopping(restore_best_weights=True)`` callback restores the best epoch's,
        and the optimizer's state of that epoch).

        ``distributed=True`` trains data-parallel over MPI (``pip install
        "fastdl[mpi]"``; launch every rank with ``mpirun -n K python script.py``; every
        rank makes the same call with the same data): ``batch_size`` is the global
        batch, of which each rank trains on its contiguous share; the gradients are
        averaged over the ranks, weighted by share, so that without dropout the
        parameters equal those of one process with the same seed and ``batch_size``, up
        to the order of float additions.  Every rank starts from rank 0's parameters and
        returns the same History; only rank 0 reports progress; dropout and augmentation
        draw a stream per rank.  See ``docs/distributed.md``.
        """
        from fastdl.nn import training

        with self._lock:  # see base.new_lock
            return training.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                                batch_size=batch_size, validation_data=validation_data,
                                validation_split=validation_split, schedule=schedule,
                                callbacks=callbacks, class_weight=class_weight,
                                augment=augment, shuffle=shuffle, seed=seed, verbose=verbose,
                                initial_epoch=initial_epoch, distributed=distributed)

    # inference ------------------------------------------------------------
    def _task(self, X, loss=None):
        """``(X checked, the loss)``: ``loss`` when given, else the fitted one, else the
        guess of ``fastdl.nn.losses.guess_loss``."""
        X = self._check_X(X)
        # as fit: a NaN row was predicted as class 0, with no error
        check_finite("X", X)
        if loss is None:
            loss = self.loss
        out_shape = self._out_shape(X.shape[1:])
        if loss is None:
            loss = _losses.guess_loss(self.output_activation, out_shape)
        loss = _losses.check_loss("loss", loss, self.output_activation)
        _losses.check_output("loss", loss, out_shape)
        return X, loss

    def predict_proba(self, X):
        """Class probabilities ``(N, C)`` (cross-entropy) or ``P(y=1)`` as ``(N,)`` (binary)."""
        with self._lock:  # see base.new_lock
            import fastdl.functional as F

            X, loss = self._task(X)
            if loss == "mse":
                raise ValueError("predict_proba: the model is for regression (mse)")
            out = self._infer(X, self._layers_for(loss))
            if loss == "cross_entropy":
                return F.softmax(out, backend=self.backend)
            return F.sigmoid(out, backend=self.backend).reshape(-1)

    def predict(self, X):
        """Class labels (int64) for classification, values for ``"mse"``.

        The task is ``model.loss`` (set by ``fit``, saved), else guessed as in
        ``evaluate``."""
        with self._lock:  # see base.new_lock
            X, loss = self._task(X)
            out = self._infer(X, self._layers_for(loss))
            if loss == "cross_entropy":
                return out.argmax(axis=1).astype(np.int64)
            if loss == "binary_cross_entropy":
                return (out.reshape(-1) > 0).astype(np.int64)
            return out.copy()

    def evaluate(self, X, y, loss=None, *, class_weight=None):
        """``{"loss": mean loss, "accuracy": ...}`` on ``(X, y)`` (inference mode).

        ``loss`` defaults to the loss the model was fitted with; for a model never
        fitted it is guessed from its output: a final softmax means ``cross_entropy``,
        a final sigmoid ``binary_cross_entropy``, otherwise ``cross_entropy`` for more
        than one output and ``mse`` for one.  ``y`` as in ``fit``; ``class_weight`` weights
        the loss as in ``fit``.  ``"accuracy"`` is there for the classification losses,
        not for ``mse``."""
        with self._lock:  # see base.new_lock
            X, loss = self._task(X, loss)
            if X.shape[0] == 0:  # as fit: a mean over no rows is no score (it read 0.0)
                raise ValueError("X: expected at least one row, got 0")
            y = _losses.check_y(y, X.shape[0], loss, self._out_shape(X.shape[1:]), self.dtype)
            weight = None
            if class_weight is not None:
                from fastdl.nn.training import class_weight_array
                weight = class_weight_array(class_weight, y, loss,
                                            self._out_shape(X.shape[1:])[0], self.dtype)
            return self._evaluate(X, y, loss, weight)

    def _evaluate(self, X, y, loss, weight):
        n = X.shape[0]
        out = self._infer(X, self._layers_for(loss))
        lv, _ = _losses.loss_grad(self, out, y, loss, weight, need_grad=False)
        res = {"loss": lv / max(n, 1)}
        if loss != "mse":
            res["accuracy"] = _losses.correct(out, y, loss) / max(n, 1)
        return res

    def buffer_nbytes(self) -> int:
        """Bytes of work buffers held by the model and its layers (bounded: see
        ``fastdl.nn.base.BufferCache``)."""
        return self._bufs.nbytes + sum(l._bufs.nbytes for l in walk_layers(self._full))

    # persistence ------------------------------------------------------------
    def save(self, path):
        """Write the architecture, parameters, loss, optimizer state and training
        position (``epochs_trained``, seed) to one ``.npz`` file; ``fastdl.load`` reads
        it back.  The file is written as a temporary in the same folder, flushed to
        disk and renamed over ``path``, so a crash never leaves half a model behind nor
        loses the old one.  Returns ``path`` (a str).  A path naming a folder, or an
        existing non-regular file (a device, a FIFO), raises ValueError; a write that
        fails, OSError naming ``path``.

        A model trained by ``fit(distributed=True)`` is written by rank 0 only; on the
        other ranks ``save`` writes nothing (and does not wait for rank 0)."""
        with self._lock:  # see base.new_lock
            from fastdl.nn import persistence

            return persistence.save(self, path)


# re-exported: these names were importable from this module before it was split
from fastdl.nn.persistence import load  # noqa: E402
from fastdl.nn.training import GradientWarning  # noqa: E402
