"""The training loop of ``Sequential.fit``."""
from __future__ import annotations

import warnings

import numpy as np

from fastdl import _validate as V
from fastdl.nn.history import History
from fastdl.nn.losses import LOSSES, check_y, correct, loss_grad, train_layers

__all__ = ["fit", "GradientWarning", "class_weight_array"]

VANISH, EXPLODE = 1e-7, 1e3


class GradientWarning(UserWarning):
    """A layer's gradient norm vanished (< 1e-7) or exploded (> 1e3, or not finite)."""


def fit(model, X, y, *, loss, optimizer, epochs, batch_size, validation_data,
        validation_split, schedule, callbacks, class_weight, augment, shuffle, seed, verbose):
    """``Sequential.fit`` (documented there)."""
    from fastdl.optim import SGD, Adam

    loss = V.check_choice("loss", loss, LOSSES)
    X = model._check_X(X)
    n = X.shape[0]
    if n == 0:
        raise ValueError("X: expected at least one row, got 0")
    y = check_y(model, y, n, loss)
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
    _seed_layers(model, rng)

    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data: expected a tuple (X_val, y_val)")
        Xv = model._check_X(validation_data[0], "validation_data[0]")
        yv = check_y(model, validation_data[1], Xv.shape[0], loss, "validation_data[1]")
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
        weight = class_weight_array(model, class_weight, y, loss)

    opt = _make_optimizer(model, optimizer, SGD, Adam)
    model.optimizer, model.loss = opt, loss
    layers = train_layers(model, loss)
    bs = n if batch_size is None else min(batch_size, n)
    history = History()
    for cb in callbacks:
        cb.on_train_begin(model)
    names = model.layer_names()
    player = list(model.param_layers())
    xbuf = np.empty((bs,) + X.shape[1:], dtype=model.dtype)
    ybuf = np.empty((bs,) + y.shape[1:], dtype=y.dtype)
    bar = None
    try:
        for epoch in range(epochs):
            if schedule is not None:
                opt.lr = float(schedule(epoch))
            order = rng.permutation(n) if shuffle else np.arange(n)
            total, n_correct = 0.0, 0
            model._set_mode(True)
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
                    xb = np.ascontiguousarray(augment(xb, rng), dtype=model.dtype)
                    if xb.shape != (m,) + X.shape[1:]:
                        raise ValueError(f"augment: returned shape {xb.shape}, expected "
                                         f"{(m,) + X.shape[1:]}")
                out = model._forward(xb, layers)
                lv, g = loss_grad(model, out, yb, loss, weight)
                total += lv
                n_correct += correct(out, yb, loss)
                model._backward(g, False, layers)
                if start + bs >= n:
                    norms = _grad_norms(model, player)
                opt.step()
                if bar is not None:
                    bar.update(m)
            logs = {"loss": total / n, "lr": float(opt.lr)}
            if loss != "mse":
                logs["accuracy"] = n_correct / n
            if Xv is not None:
                ev = model._evaluate(Xv, yv, loss, weight)
                logs["val_loss"] = ev["loss"]
                if "accuracy" in ev:
                    logs["val_accuracy"] = ev["accuracy"]
            for name, v in zip(names, norms):
                logs[f"grad_norm/{name}"] = v
            _diagnose(model, names, norms)
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
        cb.on_train_end(model)
    model.history = history
    return history


def _seed_layers(model, rng, layers=None):
    from fastdl.nn.layers import Dropout

    for layer in layers or model.layers:
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(rng.integers(2**63))
        if hasattr(layer, "layers"):
            _seed_layers(model, rng, layer.layers)


def _make_optimizer(model, optimizer, SGD, Adam):
    if optimizer is None:
        return model.optimizer if model.optimizer is not None else Adam(model._params)
    if isinstance(optimizer, str):
        name = V.check_choice("optimizer", optimizer.lower(), ("adam", "sgd"))
        return Adam(model._params) if name == "adam" else SGD(model._params, lr=0.01)
    if not hasattr(optimizer, "step"):
        raise TypeError("optimizer: expected None, 'adam', 'sgd' or an optimizer, got "
                        f"{type(optimizer).__name__}")
    params = getattr(optimizer, "params", model._params)
    if params is not model._params:
        raise ValueError("optimizer: it updates other parameters than this model's; "
                         "create it with model.parameters()")
    return optimizer


def class_weight_array(model, class_weight, y, loss):
    from fastdl import data as _data

    if loss == "mse":
        raise ValueError("class_weight: only for classification losses")
    c = model.out_features if loss == "cross_entropy" else 2
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
    w = np.ascontiguousarray(w, dtype=model.dtype)
    if loss == "binary_cross_entropy":
        return ("binary", w)
    return w


def _grad_norms(model, player):
    g = []
    for _, layer in player:
        sq = 0.0
        for name in layer.param_shapes():
            v = model._params.grad_of(layer._prefix + name)
            sq += float(np.dot(v.reshape(-1), v.reshape(-1)))
        g.append(float(np.sqrt(sq)))
    return g


def _diagnose(model, names, norms):
    for name, v in zip(names, norms):
        if name in model._warned:
            continue
        if not np.isfinite(v) or v > EXPLODE:
            model._warned.add(name)
            warnings.warn(f"exploding gradient in layer {name}: norm {v:.3g} (> {EXPLODE:g}"
                          " or not finite); lower the learning rate, clip gradients "
                          "(clip_norm=) or check the initialisation", GradientWarning,
                          stacklevel=4)
        elif v < VANISH:
            model._warned.add(name)
            warnings.warn(f"vanishing gradient in layer {name}: norm {v:.3g} (< {VANISH:g});"
                          " consider ReLU-family activations, He initialisation or skip "
                          "connections", GradientWarning, stacklevel=4)
