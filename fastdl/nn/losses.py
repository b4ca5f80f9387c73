"""The training losses of ``Sequential``: target checks, the loss and its gradient
at the model's output, and the count of correct predictions."""
from __future__ import annotations

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.nn.layers import Sigmoid, Softmax

__all__ = ["LOSSES", "train_layers", "check_y", "loss_grad", "correct"]

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")


def train_layers(model, loss):
    """The layers trained through: a final Softmax (with cross-entropy) or Sigmoid
    (with binary cross-entropy) is folded into the stable fused loss instead."""
    last = model.layers[-1]
    if (loss == "cross_entropy" and isinstance(last, Softmax)) or \
            (loss == "binary_cross_entropy" and isinstance(last, Sigmoid)):
        return model.layers[:-1]
    return model.layers


def check_y(model, y, n, loss, name="y"):
    if not isinstance(y, np.ndarray):
        y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"{name}: expected {n} targets (one per row of X), "
                         f"got shape {y.shape}")
    if loss == "cross_entropy":
        c = model.out_features
        if y.dtype.kind == "f":
            if not np.all(np.mod(y, 1) == 0):
                raise TypeError(f"{name}: cross_entropy expects integer class labels, "
                                f"got {y.dtype} values that are not integers")
            y = y.astype(np.int64)
        return V.as_labels(name, y, n, c)
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected numeric targets, got {y.dtype}")
    if loss == "binary_cross_entropy":
        if model.out_features != 1:
            raise ValueError(f"{name}: binary_cross_entropy needs a model with 1 output, "
                             f"this one has {model.out_features}")
        y = y.reshape(n, 1)
        if np.any((y < 0) | (y > 1)):
            raise ValueError(f"{name}: binary targets must be in [0, 1]")
        return np.ascontiguousarray(y, dtype=model.dtype)
    if y.ndim == 1:
        y = y.reshape(n, 1)
    if y.shape[1:] != (model.out_features,):
        raise ValueError(f"{name}: expected targets of shape ({n}, {model.out_features}), "
                         f"got {y.shape}")
    return np.ascontiguousarray(y, dtype=model.dtype)


def _ce_step(model, out, yb, weight):
    """The training step's softmax cross-entropy: the fused kernel called directly
    on buffers made once per batch shape (``fit`` validated the labels and the
    weights), so a step allocates nothing.  Returns (mean loss * rows, dlogits)."""
    n, c = out.shape
    key = (n, c, out.dtype)
    bufs = model._ce_bufs.get(key)
    if bufs is None:
        bufs = (np.empty(n, out.dtype), np.empty((n, c), out.dtype),
                np.ones(c, out.dtype))
        model._ce_bufs[key] = bufs
    rows, dlogits, ones = bufs
    w = ones if weight is None else weight
    denom = float(n) if weight is None else float(np.sum(weight[yb], dtype=np.float64))
    scale = 1.0 / denom if denom != 0 else float("nan")
    kernel("softmax_cross_entropy", model.backend)(out, yb, w, rows, dlogits, 0.0, scale)
    return float(np.sum(rows, dtype=np.float64)) * scale * n, dlogits


def loss_grad(model, out, yb, loss, weight, need_grad=True):
    """(the batch's mean loss times its row count, gradient of the mean loss or None).

    With class weights the mean is weighted: sum_n w[y_n] l_n / sum_n w[y_n]."""
    import fastdl.functional as F

    be, m = model.backend, out.shape[0]
    if loss == "cross_entropy" and need_grad:
        return _ce_step(model, out, yb, weight)
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


def correct(out, yb, loss):
    if loss == "cross_entropy":
        return int(np.count_nonzero(out.argmax(axis=1) == yb))
    if loss == "binary_cross_entropy":
        return int(np.count_nonzero((out > 0) == (yb > 0.5)))
    return 0
