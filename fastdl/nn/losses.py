"""The losses of ``Sequential``: which loss a model is for, target checks, the loss and
its gradient at the model's output, and the count of correct predictions.

Every loss works on the logits where the model has an output activation: a final
softmax (``nn.Softmax()`` or ``Dense(..., activation="softmax")``) is folded into
``cross_entropy`` (the fused softmax cross-entropy kernel) and a final sigmoid into
``binary_cross_entropy`` (the stable with-logits form), so the activation is applied
exactly once whichever way it was written."""
from __future__ import annotations


import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.functional.losses import _ones

__all__ = ["LOSSES", "check_loss", "guess_loss", "check_output", "check_y", "loss_grad",
           "correct", "total_weight"]

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")
_FOLDS = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def check_loss(name, loss, output_activation):
    """``loss`` checked against the model's output activation."""
    if not isinstance(loss, str):
        raise TypeError(f"{name}: expected one of {LOSSES}, got {type(loss).__name__}")
    V.check_choice(name, loss, LOSSES)
    other = {"softmax": "sigmoid", "sigmoid": "softmax"}.get(output_activation)
    if other is not None and _FOLDS.get(loss) == other:
        raise ValueError(f"{name}: {loss} works on logits and applies {other} itself, but this "
                         f"model ends in {output_activation}; use "
                         f"{'binary_cross_entropy' if other == 'softmax' else 'cross_entropy'}"
                         f" or 'mse', or end the model without {output_activation}")
    return loss


def guess_loss(output_activation, out_shape):
    """The loss of a model that was never fitted (``model.loss`` is None).

    A final softmax means ``cross_entropy``, a final sigmoid on one output
    ``binary_cross_entropy``.  Otherwise a raw output of more than one column is read as
    class logits (``cross_entropy``, ``fit``'s default) and anything else as regression
    values (``mse``): a single raw output gives no sign of a classifier."""
    width = out_shape[0] if len(out_shape) == 1 else None
    if output_activation == "softmax":
        return "cross_entropy"
    if output_activation == "sigmoid":
        return "binary_cross_entropy" if width == 1 else "mse"
    return "cross_entropy" if width is not None and width > 1 else "mse"


def flat_width(name, loss, out_shape):
    """The class count of a classification loss: the output must be (N, C)."""
    if len(out_shape) != 1:
        raise ValueError(f"{name}: {loss} needs a model whose output is (N, C); this one gives "
                         f"per-sample shape {out_shape} (end it with nn.Flatten() and nn.Dense)")
    return out_shape[0]


def check_output(name, loss, out_shape):
    """The model's per-sample output ``out_shape`` must suit ``loss``: ``(C,)`` for
    cross-entropy, ``(1,)`` for binary cross-entropy (ValueError naming ``name``)."""
    if loss == "mse":
        return
    width = flat_width(name, loss, out_shape)
    if loss == "binary_cross_entropy" and width != 1:
        raise ValueError(f"{name}: binary_cross_entropy needs a model with 1 output, "
                         f"this one has {width}")


def _bad_value(y, ok):
    return y[~ok].reshape(-1)[0]


def check_y(y, n, loss, out_shape, dtype, name="y"):
    """The targets of ``loss`` for ``n`` rows and a model output of per-sample shape
    ``out_shape``, converted: cross-entropy labels ``(n,)`` int64 or probabilities
    ``(n, C)`` (one-hot, or rows summing to 1) of ``dtype``; binary targets ``(n, 1)`` in
    [0, 1]; regression targets ``(n, *out_shape)``.  Every value must be finite."""
    y = V.as_ndarray(name, y)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"{name}: expected {n} targets (one per row of X), "
                         f"got shape {y.shape}")
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected numeric targets, got {y.dtype}")
    if loss == "cross_entropy":
        c = flat_width(name, loss, out_shape)
        if y.ndim == 2:
            return _check_probabilities(y, n, c, dtype, name)
        if y.ndim != 1:
            raise ValueError(f"{name}: cross_entropy expects labels ({n},) or class "
                             f"probabilities ({n}, {c}), got shape {y.shape}")
        if y.dtype.kind == "b":
            y = y.astype(np.int64)
        elif y.dtype.kind == "f":
            ok = np.isfinite(y)
            if not ok.all():
                raise ValueError(f"{name}: class labels must be finite, got {_bad_value(y, ok)}")
            if not np.all(np.mod(y, 1) == 0):
                raise TypeError(f"{name}: cross_entropy expects integer class labels, "
                                f"got {y.dtype} values that are not integers")
            ok = (y >= 0) & (y < c)
            if not ok.all():  # before the cast, which would wrap 1e300
                raise ValueError(f"{name}: labels must be in [0, {c}), got {_bad_value(y, ok)}")
            y = y.astype(np.int64)
        return V.as_labels(name, y, n, c)
    if loss == "binary_cross_entropy":
        if flat_width(name, loss, out_shape) != 1:
            raise ValueError(f"{name}: binary_cross_entropy needs a model with 1 output, "
                             f"this one has {out_shape[0]}")
        if y.size != n:
            raise ValueError(f"{name}: binary_cross_entropy expects targets ({n},) or ({n}, 1),"
                             f" got shape {y.shape}")
        y = y.reshape(n, 1)
        ok = (y >= 0) & (y <= 1)  # also refuses nan
        if not ok.all():
            raise ValueError(f"{name}: binary targets must be in [0, 1], got {_bad_value(y, ok)}")
        return np.ascontiguousarray(y, dtype=dtype)
    want = (n,) + tuple(out_shape)
    if y.shape == (n,) and tuple(out_shape) == (1,):
        y = y.reshape(n, 1)
    if y.shape != want:
        raise ValueError(f"{name}: expected targets of shape {want} (the model's output), "
                         f"got {y.shape}")
    y = np.ascontiguousarray(y, dtype=dtype)
    ok = np.isfinite(y)
    if not ok.all():
        raise ValueError(f"{name}: targets must be finite, got {_bad_value(y, ok)}")
    return y


def _check_probabilities(y, n, c, dtype, name):
    if y.shape != (n, c):
        raise ValueError(f"{name}: expected class probabilities of shape ({n}, {c}) (one "
                         f"column per output), got {y.shape}")
    y = np.ascontiguousarray(y, dtype=dtype)
    ok = np.isfinite(y) & (y >= 0)
    if not ok.all():
        raise ValueError(f"{name}: class probabilities must be finite and >= 0, got "
                         f"{_bad_value(y, ok)}")
    s = y.sum(axis=1, dtype=np.float64)
    bad = np.abs(s - 1) > 1e-3
    if bad.any():
        raise ValueError(f"{name}: each row of class probabilities (one-hot targets) must sum "
                         f"to 1, row {int(np.argmax(bad))} sums to {s[bad][0]:.6g} (for "
                         "regression targets pass loss='mse')")
    return y


def _ce_step(model, out, yb, weight):
    """The training step's softmax cross-entropy: the fused kernel called directly on
    the model's buffers (``fit`` validated the targets and the weights), so a step
    allocates nothing.  Returns (mean loss * rows, dlogits)."""
    n, c = out.shape
    rows = model._buf("ce_rows", (n,), out.dtype)
    dlogits = model._buf("ce_dlogits", (n, c), out.dtype)
    w = _ones(c, out.dtype) if weight is None else weight
    denom = float(n) if weight is None else total_weight(yb, weight)
    # a batch whose rows all weigh 0 adds 0 to the loss and a zero gradient (a NaN scale,
    # 0 / 0, made every parameter NaN: a small last batch of a weight-0 class did it)
    scale = 1.0 / denom if denom != 0 else 0.0
    kernel("softmax_cross_entropy", model.backend)(out, yb, w, rows, dlogits, 0.0, scale)
    return float(np.sum(rows, dtype=np.float64)) * scale * n, dlogits


def total_weight(yb, weight):
    """What the weighted mean cross-entropy of a batch divides by: its total class
    weight, sum_n w[y_n] for labels and sum_n sum_c w[c] t[n, c] for probabilities
    (the same number for one-hot targets: both forms train alike).  ``F.
    softmax_cross_entropy`` divides probabilities by N instead, as PyTorch; fit's
    documented mean is this one (one-hot targets trained with a step sum_n w[y_n] / N
    times larger)."""
    if yb.ndim == 1:
        return float(np.sum(weight[yb], dtype=np.float64))
    return float(np.dot(np.sum(yb, axis=0, dtype=np.float64), weight.astype(np.float64)))


def loss_grad(model, out, yb, loss, weight, need_grad=True):
    """(the batch's mean loss times its row count, gradient of the mean loss or None),
    at the logits ``out`` for the classification losses.

    With class weights the mean is weighted: sum_n w[y_n] l_n / sum_n w[y_n] (for
    probabilities t, the weights sum_c w[c] t[n, c]: ``total_weight``)."""
    import fastdl.functional as F

    be, m = model.backend, out.shape[0]
    if loss == "cross_entropy" and need_grad:
        return _ce_step(model, out, yb, weight)
    if loss == "cross_entropy":
        if weight is None:
            lv, g = F.softmax_cross_entropy(out, yb, backend=be)
            return float(lv) * m, g
        denom = total_weight(yb, weight)
        if denom == 0:
            return 0.0, None  # rows that all weigh 0, as in _ce_step
        lv, _ = F.softmax_cross_entropy(out, yb, weight=weight, reduction="sum", backend=be)
        return float(lv) / denom * m, None
    if loss == "binary_cross_entropy":
        if weight is None:
            lv = float(F.binary_cross_entropy_with_logits(out, yb, backend=be))
            g = F.binary_cross_entropy_with_logits_backward(out, yb, backend=be) \
                if need_grad else None
            return lv * m, g
        w = weight[1][(yb > 0.5).astype(np.intp)]
        wsum = float(w.sum())
        per = F.binary_cross_entropy_with_logits(out, yb, reduction="none", backend=be)
        lv = float(np.sum(per * w)) / wsum if wsum > 0 else 0.0  # as in _ce_step
        g = None
        if need_grad:
            g = F.binary_cross_entropy_with_logits_backward(out, yb, reduction="sum",
                                                            backend=be)
            g *= w / wsum if wsum > 0 else 0
        return lv * m, g
    lv = float(F.mse(out, yb, backend=be)) * m
    g = F.mse_backward(out, yb, backend=be) if need_grad else None
    return lv, g


def correct(out, yb, loss):
    """The number of rows whose predicted class is the target's (0 for ``mse``)."""
    if loss == "cross_entropy":
        want = yb if yb.ndim == 1 else yb.argmax(axis=1)
        return int(np.count_nonzero(out.argmax(axis=1) == want))
    if loss == "binary_cross_entropy":
        return int(np.count_nonzero((out > 0) == (yb > 0.5)))
    return 0
