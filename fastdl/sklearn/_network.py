"""The network behind ``fastdl.sklearn``'s estimators: a ``fastdl.nn.Sequential`` whose last
``Dense`` gives raw scores (logits), one fastdl optimizer over its single parameter buffer,
and scikit-learn's mini-batch step, written on fastdl's public API only.

scikit-learn's step (``sklearn/neural_network/_multilayer_perceptron.py``, ``_backprop``)
for a batch of ``m`` rows, which this one reproduces:

    loss = data_loss(batch) + 0.5 * alpha * sum_l ||W_l||^2 / m
    grad W_l = dL/dW_l (of the mean data loss) + alpha * W_l / m;  grad b_l = dL/db_l

so ``alpha`` penalises the weights only, never the intercepts, and its strength per step
depends on the batch's row count (the last, partial batch of an epoch is penalised more).
fastdl's optimizers fuse an L2 term ``2 * l2 * w`` over the whole buffer into their update
pass; the optimizer is built with ``l2 = alpha / (2 * batch_size)``, so that a full batch
needs nothing more, and each step only takes the penalty back out of the (small) bias
gradients, plus, for a batch of another size, adds the difference on the weights.

The data losses, and the gradient each hands back at the logits ``z`` (``m`` rows, ``k``
outputs), are scikit-learn's:

- ``"softmax"``: mean cross-entropy over the rows; ``(softmax(z) - onehot) / m``.
- ``"logistic"`` (binary, multilabel): binary cross-entropy summed over the ``k`` outputs,
  mean over the rows; ``(sigmoid(z) - y) / m``.
- ``"identity"`` (squared error): ``0.5 * mean((z - y)^2)`` over all ``m * k`` entries;
  ``(z - y) / m`` (scikit-learn's gradient, which is ``k`` times that loss's for ``k > 1``).
- ``"exp"`` (Poisson, log link): ``sum_k mean_rows(y log(y / mu) - y + mu)``, ``mu = exp(z)``;
  ``(mu - y) / m``.

Class weights (fastdl's extra) make the data loss a weighted mean:
``sum_i w_i l_i / sum_i w_i`` with ``w_i`` the weight of row i's class; a batch whose rows
all weigh 0 has data loss 0 and a zero gradient (as ``fastdl.nn``'s ``fit``), so its step
applies the L2 penalty only.
"""
from __future__ import annotations

import numpy as np

import fastdl.functional as F
from fastdl import _config, nn, optim
from fastdl.optim.clipping import sum_squares

__all__ = ["Network", "HIDDEN_ACTIVATIONS", "OUTPUTS"]

# scikit-learn's activation names -> fastdl's
HIDDEN_ACTIVATIONS = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
OUTPUTS = ("softmax", "logistic", "identity", "exp")
_PREDICT_CHUNK = 4096


class Network:
    """Layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them (optionally
    followed by dropout) and raw outputs; weights and intercepts drawn as scikit-learn's
    MLP draws them (Glorot uniform, ``U(-b, b)`` with ``b = sqrt(6 / (fan_in + fan_out))``,
    2 instead of 6 for the logistic activation), in the same order from ``rs``, so that the
    same ``random_state`` starts both libraries from the same point.

    Parameters
    ----------
    sizes : list of int, ``[n_features, *hidden_layer_sizes, n_outputs]``
    activation : scikit-learn's name (``HIDDEN_ACTIVATIONS``)
    output : one of ``OUTPUTS``, how the outputs turn into predictions and the loss
    dropout : float in [0, 1), inverted dropout after each hidden layer while training
    dtype, backend : the model's
    rs : numpy.random.RandomState
    """

    def __init__(self, sizes, activation, output, dropout, dtype, backend, rs):
        self.sizes = [int(s) for s in sizes]
        self.activation = activation
        self.output = output
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self._build()
        factor = 2.0 if activation == "logistic" else 6.0
        for d in self.dense:
            bound = np.sqrt(factor / (d.in_features + d.out_features))
            d.W[...] = rs.uniform(-bound, bound, (d.in_features, d.out_features))
            d.b[...] = rs.uniform(-bound, bound, d.out_features)
        self.optimizer = None
        self._grad_l2 = 0.0  # the optimizer's fused L2 gradient coefficient, 2 * l2

    def _build(self):
        act = HIDDEN_ACTIVATIONS[self.activation]
        layers = []
        last = len(self.sizes) - 2
        for i in range(last + 1):
            # init="zeros": no random draws here; the weights are drawn in __init__
            layers.append(nn.Dense(self.sizes[i], self.sizes[i + 1],
                                   activation=None if i == last else act, init="zeros"))
            if i < last and self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
        self.model = nn.Sequential(*layers, dtype=self.dtype, backend=self.backend)
        self.dense = [l for l in layers if isinstance(l, nn.Dense)]
        self.dropouts = [l for l in layers if isinstance(l, nn.Dropout)]
        self._bufs = {}
        # made once: the step's L2 bookkeeping runs on these without allocating
        self._wflat = [d.W.reshape(-1) for d in self.dense]
        self._bias = [(d.b, d.db, np.empty_like(d.b)) for d in self.dense]

    # parameters -------------------------------------------------------------
    @property
    def params(self):
        return self.model.parameters()

    @property
    def coefs(self):
        """The weight matrices ``(fan_in, fan_out)``: views into the parameter buffer."""
        return [d.W for d in self.dense]

    @property
    def intercepts(self):
        return [d.b for d in self.dense]

    def seed_dropout(self, rs):
        for d in self.dropouts:
            d.rng = np.random.default_rng(rs.randint(np.iinfo(np.int32).max))

    def make_optimizer(self, solver, alpha, batch_size, *, learning_rate_init, momentum,
                       nesterovs_momentum, beta_1, beta_2, epsilon):
        """A new optimizer (scikit-learn builds one per ``fit``, and keeps it across
        ``partial_fit`` calls); its fused L2 is exact for batches of ``batch_size``."""
        l2 = alpha / (2.0 * batch_size)
        if solver == "adam":
            self.optimizer = optim.Adam(self.params, lr=learning_rate_init,
                                        betas=(beta_1, beta_2), eps=epsilon, l2=l2,
                                        backend=self.backend)
        else:
            self.optimizer = optim.SGD(self.params, lr=learning_rate_init, momentum=momentum,
                                       nesterov=bool(nesterovs_momentum and momentum > 0),
                                       l2=l2, backend=self.backend)
        self._grad_l2 = 2.0 * l2

    # training ---------------------------------------------------------------
    def _buf(self, key, shape, dtype):
        b = self._bufs.get(key)
        if b is None or b.shape != shape or b.dtype != dtype:
            b = np.empty(shape, dtype=dtype)
            self._bufs[key] = b
        return b

    def epoch(self, X, Y, order, batch_size, alpha, class_weight=None):
        """One pass over the rows of ``X`` in ``order`` (None: in order), one optimizer
        step per batch.  Returns scikit-learn's epoch loss: the row-weighted mean over the
        batches of (data loss + L2 penalty), each taken before its batch's step.

        ``X`` is (n, f) of the model's dtype, C-contiguous, or a CSR matrix (densified a
        batch at a time); ``Y`` int64 labels (n,) for ``"softmax"``, else (n, k) targets of
        the model's dtype; ``class_weight`` None or (C,) of the model's dtype."""
        with self.model._lock:  # (its batch buffers too: see new_lock)
            model, opt = self.model, self.optimizer
            n = X.shape[0]
            sparse = not isinstance(X, np.ndarray)
            if order is not None:
                ybuf = self._buf("y", (min(batch_size, n),) + Y.shape[1:], Y.dtype)
                if not sparse:
                    xbuf = self._buf("x", (min(batch_size, n), X.shape[1]), X.dtype)
            total = 0.0
            # the model's unchecked passes, as its own fit: X was checked once, and a
            # diverging step's inf gradient is scikit-learn's "non-finite weights" at the end
            model._set_mode(True)
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                m = stop - start
                if order is None:
                    xb, yb = X[start:stop], Y[start:stop]
                else:
                    idx = order[start:stop]
                    yb = ybuf[:m]
                    # mode="clip": idx is a permutation, and "raise" buffers out= (slower)
                    np.take(Y, idx, axis=0, out=yb, mode="clip")
                    if sparse:
                        xb = X[idx]
                    else:
                        xb = xbuf[:m]
                        np.take(X, idx, axis=0, out=xb, mode="clip")
                if sparse:
                    xb = np.asarray(xb.toarray(), dtype=self.dtype)
                z = model._forward(xb)
                loss, dz = self._loss(z, yb, class_weight)
                if alpha:
                    sq = 0.0
                    for w in self._wflat:
                        sq += sum_squares(w, self.backend)
                    loss += 0.5 * alpha * sq / m
                model._backward(dz)
                self._fix_l2(alpha, m)
                opt.step()
                total += loss * m
            return total / n

    def _fix_l2(self, alpha, m):
        """Make the optimizer's fused ``2 l2 w`` term into scikit-learn's ``alpha W / m``:
        take it back out of the intercepts' gradients, and top up the weights' when the
        batch is not of the size the optimizer was built for."""
        g2 = self._grad_l2
        if g2:
            for b, db, tmp in self._bias:
                np.multiply(b, g2, out=tmp)
                np.subtract(db, tmp, out=db)
        extra = alpha / m - g2
        if extra and abs(extra) > 1e-12 * max(g2, alpha / m):
            for d in self.dense:
                d.dW += extra * d.W

    def _loss(self, z, yb, class_weight):
        """(data loss of the batch as a float, its gradient at the logits ``z``)."""
        m, k = z.shape
        be = self.backend
        dz = self._buf("dz", z.shape, z.dtype)
        out = self.output
        if out == "softmax":
            if class_weight is not None and not np.any(class_weight[yb]):
                # rows that all weigh 0: F's weighted mean is then 0 / 0, NaN (PyTorch's
                # rule), which made every parameter NaN
                dz.fill(0)
                return 0.0, dz
            loss, dz = F.softmax_cross_entropy(z, yb, weight=class_weight, out=(None, dz),
                                               backend=be)
            return float(loss), dz
        if out == "logistic":
            F.binary_cross_entropy_with_logits_backward(z, yb, reduction="sum", out=dz,
                                                        backend=be)  # sigmoid(z) - y
            if class_weight is None:
                loss = float(F.binary_cross_entropy_with_logits(z, yb, reduction="sum",
                                                                backend=be)) / m
                dz *= z.dtype.type(1.0 / m)
                return loss, dz
            # binary only (k == 1): the weight of each row's class
            w = class_weight[(yb[:, 0] > 0.5).astype(np.intp)]
            wsum = float(np.sum(w, dtype=np.float64))
            if wsum == 0:  # rows that all weigh 0 (dividing by wsum raised ZeroDivisionError)
                dz.fill(0)
                return 0.0, dz
            rows = F.binary_cross_entropy_with_logits(z, yb, reduction="none", backend=be)
            loss = float(np.dot(rows[:, 0].astype(np.float64), w)) / wsum
            dz *= (w / wsum)[:, None]
            return loss, dz
        if out == "identity":
            np.subtract(z, yb, out=dz)
            flat = dz.reshape(-1)
            loss = 0.5 * sum_squares(flat, self.backend) / (m * k)
            dz *= z.dtype.type(1.0 / m)
            return loss, dz
        # "exp": Poisson deviance with the log link
        with np.errstate(over="ignore", invalid="ignore"):
            mu = np.exp(z)
            yz = yb * z
            ylogy = np.where(yb > 0, yb * np.log(np.where(yb > 0, yb, 1)), 0)
            loss = float(np.sum(ylogy - yz - yb + mu, dtype=np.float64)) / m
        np.subtract(mu, yb, out=dz)
        dz *= z.dtype.type(1.0 / m)
        return loss, dz

    # inference --------------------------------------------------------------
    def decision(self, X):
        """Raw outputs (logits) ``(N, k)`` of the model's dtype for the rows of ``X`` (a
        C-contiguous array of the model's dtype, or a CSR matrix), in inference mode
        (no dropout); a new array."""
        with self.model._lock:  # see fastdl.nn.base.new_lock
            n = X.shape[0]
            self.model._set_mode(False)
            if isinstance(X, np.ndarray):
                if n <= _PREDICT_CHUNK:
                    return self.model._forward(X).copy()
                out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
                for s in range(0, n, _PREDICT_CHUNK):
                    out[s:s + _PREDICT_CHUNK] = self.model._forward(
                        np.ascontiguousarray(X[s:s + _PREDICT_CHUNK]))
                return out
            out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
            for s in range(0, n, _PREDICT_CHUNK):
                xb = np.asarray(X[s:s + _PREDICT_CHUNK].toarray(), dtype=self.dtype)
                out[s:s + xb.shape[0]] = self.model._forward(xb)
            return out

    def outputs(self, X):
        """The output activation applied to ``decision(X)``: class probabilities
        (softmax), per-output probabilities (logistic), values (identity, exp)."""
        z = self.decision(X)
        if self.output == "softmax":
            return F.softmax(z, out=z, backend=self.backend)
        if self.output == "logistic":
            return F.sigmoid(z, out=z, backend=self.backend)
        if self.output == "exp":
            return np.exp(z, out=z)
        return z

    # pickling: the layers hold views into the parameter buffer, which pickle would
    # turn into separate copies; rebuild the model and copy the buffers in instead
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("model", "dense", "dropouts", "_bufs", "optimizer")}
        state["params_data"] = self.params.data.copy()
        state["optimizer_state"] = (None if self.optimizer is None
                                    else self.optimizer.state_dict())
        state["dropout_rngs"] = [d.rng for d in self.dropouts]
        return state

    def __setstate__(self, state):
        data = state.pop("params_data")
        opt_state = state.pop("optimizer_state")
        rngs = state.pop("dropout_rngs")
        self.__dict__.update(state)
        # pickled where a backend is built that is not here: the default one, with a
        # warning, as fastdl.load (the estimator could not be unpickled at all)
        self.backend = _config.restored_backend(self.backend, "the estimator", stacklevel=4)
        self._build()
        np.copyto(self.params.data, data)
        for d, r in zip(self.dropouts, rngs):
            d.rng = r
        self.optimizer = None
        if opt_state is not None:
            cls = optim.Adam if opt_state["optimizer"] == "Adam" else optim.SGD
            self.optimizer = cls(self.params, lr=opt_state["lr"], backend=self.backend)
            self.optimizer.load_state_dict(opt_state)
