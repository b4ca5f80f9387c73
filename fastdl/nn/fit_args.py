"""The checks of ``Sequential.fit``'s arguments, all made before anything changes
(``checked``), and the per-class weights (``class_weight_array``, also for
``evaluate``)."""
from __future__ import annotations

import numpy as np

from fastdl import _validate as V
from fastdl.nn.losses import check_loss, check_y

__all__ = ["checked", "check_finite", "class_weight_array"]


def check_finite(name, X):
    ok = np.isfinite(X)
    if not ok.all():
        raise ValueError(f"{name}: expected finite values, got {X[~ok].reshape(-1)[0]} at "
                         f"index {tuple(int(i) for i in np.argwhere(~ok)[0])}")


class _Args:
    """fit's arguments, checked and converted."""
    __slots__ = ("X", "y", "loss", "opt", "weight", "validation", "callbacks", "first",
                 "verbose", "epochs", "batch_size", "validation_split")


def checked(model, X, y, loss, optimizer, epochs, batch_size, validation_data,
             validation_split, schedule, callbacks, class_weight, augment, shuffle, seed,
             verbose, initial_epoch):
    """Every check of fit's arguments, before anything changes (TypeError/ValueError)."""
    a = _Args()
    a.loss = loss = check_loss("loss", loss, model.output_activation)
    X = model._check_X(X)
    n = X.shape[0]
    if n == 0:
        raise ValueError("X: expected at least one row, got 0")
    check_finite("X", X)
    out_shape = model._out_shape(X.shape[1:])
    a.X, a.y = X, check_y(y, n, loss, out_shape, model.dtype)
    if model._params.num_parameters == 0:
        raise ValueError("model: it has no parameters to train (layers: "
                         f"{', '.join(type(l).__name__ for l in model.layers)})")
    a.epochs = V.check_int("epochs", epochs, 1)
    a.batch_size = None if batch_size is None else V.check_int("batch_size", batch_size, 1)
    a.validation_split = validation_split = V.check_real(
        "validation_split", validation_split, lo=0.0, hi=1.0, hi_open=True)
    a.verbose = V.check_int("verbose", verbose, 0)
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle: expected a bool, got {type(shuffle).__name__}")
    a.first = model.epochs_trained if initial_epoch is None else \
        V.check_int("initial_epoch", initial_epoch, 0)
    if schedule is not None and not callable(schedule):
        raise TypeError("schedule: expected a callable schedule(epoch) -> lr")
    if schedule is not None:
        # its first rate, before anything changes (refused in the loop, it had already
        # replaced the model's optimizer and history); each epoch's is checked there
        V.check_finite(f"schedule({a.first})", schedule(a.first), lo=0.0)
    if augment is not None and not callable(augment):
        raise TypeError("augment: expected a callable augment(xb, rng) -> xb")
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks: expected a list of callbacks, got "
                        f"{type(callbacks).__name__}")
    a.callbacks = list(callbacks) if callbacks is not None else []
    for i, cb in enumerate(a.callbacks):
        if isinstance(cb, type):
            raise TypeError(f"callbacks[{i}]: expected a callback, got the class "
                            f"{cb.__name__} (call it: {cb.__name__}())")
        if not hasattr(cb, "on_epoch_end"):
            raise TypeError(f"callbacks[{i}]: expected a fastdl.callbacks.Callback, got "
                            f"{type(cb).__name__}")
    if seed is not None and not isinstance(seed, np.random.Generator):
        V.check_int("seed", seed, 0, V.MAX_SEED)

    a.validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data: expected a tuple (X_val, y_val)")
        Xv = model._check_X(validation_data[0], "validation_data[0]")
        check_finite("validation_data[0]", Xv)
        if Xv.shape[0] == 0:  # as X: a mean over no rows is no score (val_loss read nan)
            raise ValueError("validation_data[0]: expected at least one row, got 0")
        yv = check_y(validation_data[1], Xv.shape[0], loss, model._out_shape(Xv.shape[1:]),
                     model.dtype, "validation_data[1]")
        a.validation = (Xv, yv)
    elif validation_split > 0:
        n_val = int(round(n * validation_split))
        if n_val < 1 or n_val >= n:
            raise ValueError(f"validation_split: {validation_split} of {n} rows leaves "
                             "no training or no validation rows")
    _check_monitors(a.callbacks, schedule, a.validation is not None or validation_split > 0,
                    loss)
    a.weight = None if class_weight is None else \
        class_weight_array(class_weight, a.y, loss, out_shape[0], model.dtype)
    a.opt = _make_optimizer(model, optimizer)
    return a


def _check_monitors(callbacks, schedule, validated, loss):
    # a callback or schedule watching a key that fit will not log was refused only at the
    # end of the first epoch, after a full epoch of training.  Keys of fit's own logs
    # only: another callback may add keys of its own
    watchers = [(f"callbacks[{i}]", cb) for i, cb in enumerate(callbacks)]
    inner = schedule
    while inner is not None:  # a LinearWarmup's ReduceLROnPlateau is fed the logs too
        watchers.append(("schedule", inner))
        inner = getattr(inner, "schedule", None)
    for where, w in watchers:
        key = getattr(w, "monitor", None)
        if not isinstance(key, str):
            continue
        if key.startswith("val_") and not validated:
            raise ValueError(f"{where}: it monitors {key!r}, which fit logs only with "
                             "validation_data or validation_split")
        if key.removeprefix("val_") == "accuracy" and loss == "mse":
            raise ValueError(f"{where}: it monitors {key!r}, which fit does not log for "
                             "the mse loss")


def _make_optimizer(model, optimizer):
    from fastdl.optim import SGD, Adam

    # the model's backend for the optimizers fit makes, as for every other kernel
    if optimizer is None:
        return model.optimizer if model.optimizer is not None else \
            Adam(model._params, backend=model.backend)
    if isinstance(optimizer, str):
        name = V.check_choice("optimizer", optimizer.lower(), ("adam", "sgd"))
        return Adam(model._params, backend=model.backend) if name == "adam" else \
            SGD(model._params, lr=0.01, backend=model.backend)
    if not callable(getattr(optimizer, "step", None)) or not hasattr(optimizer, "lr"):
        # (fit reads and sets lr each epoch: one without it failed after an epoch)
        raise TypeError("optimizer: expected None, 'adam', 'sgd' or an optimizer (with "
                        f"step() and lr), got {type(optimizer).__name__}")
    params = getattr(optimizer, "params", model._params)
    if params is not model._params:
        raise ValueError("optimizer: it updates other parameters than this model's; "
                         "create it with model.parameters()")
    return optimizer


def class_weight_array(class_weight, y, loss, num_classes, dtype):
    """The per-class weights of ``class_weight`` (see ``fit``) as an array of ``dtype``
    (``("binary", w)`` for binary cross-entropy); ``y`` as ``check_y`` returns it."""
    from fastdl import data as _data

    if loss == "mse":
        raise ValueError("class_weight: only for classification losses")
    if loss == "cross_entropy":
        c, labels = num_classes, (y if y.ndim == 1 else y.argmax(axis=1))
    else:
        c, labels = 2, (y.reshape(-1) > 0.5).astype(np.int64)
    if isinstance(class_weight, str):
        V.check_choice("class_weight", class_weight, ("complement", "balanced"))
        w = _data.class_weights(labels, method=class_weight, num_classes=c)
    elif isinstance(class_weight, dict):
        w = np.ones(c)
        for k, v in class_weight.items():
            k = V.check_int("class_weight key", k, 0)
            if k >= c:
                raise ValueError(f"class_weight: class {k} is not in [0, {c})")
            w[k] = V.check_fits(f"class_weight[{k}]",
                                V.check_finite(f"class_weight[{k}]", v, lo=0.0), dtype)
    else:
        w = np.asarray(class_weight, dtype=np.float64)
        if w.shape != (c,):
            raise ValueError(f"class_weight: expected {c} weights, got shape {w.shape}")
        with np.errstate(over="ignore"):  # an overflow is what this refuses
            cast = w.astype(dtype)
        if np.any(w < 0) or not np.all(np.isfinite(cast)):
            raise ValueError(f"class_weight: weights must be >= 0 and finite in {np.dtype(dtype)}")
    w = np.ascontiguousarray(w, dtype=dtype)
    # a zero total over the classes present: every loss 0 / 0, NaN parameters
    if labels.size and not np.any(w[np.unique(labels)] > 0):
        raise ValueError("class_weight: the classes in y all have weight 0")
    if loss == "binary_cross_entropy":
        return ("binary", w)
    return w
