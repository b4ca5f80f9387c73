"""Classification metrics, all computed from one confusion matrix.

Labels are integers ``0..C-1``.  ``C`` is ``num_classes`` where given, else 1 + the
largest label in ``y_true`` or ``y_pred``.  Every per-class result and every average
runs over all ``C`` classes, as scikit-learn does with ``labels=range(C)``.

The confusion matrix ``M`` (rows actual, columns predicted) is one compiled pass over
the labels (``confusion_matrix``, in every backend); everything else is arithmetic on
``M``'s row sums, column sums and diagonal.  For class ``c`` (one against the rest)::

    tp = M[c, c]        fp = sum_i M[i, c] - tp      fn = sum_j M[c, j] - tp
    tn = N - tp - fp - fn                            support = tp + fn

    precision   = tp / (tp + fp)          recall (sensitivity) = tp / (tp + fn)
    specificity = tn / (tn + fp)          npv (negative predictive value) = tn / (tn + fn)
    fbeta       = (1 + b^2) tp / (b^2 (tp + fn) + (tp + fp))        f1 = fbeta with b = 1

``average`` combines the per-class values:

* ``"binary"``: the value of class ``pos_label`` only; needs at most 2 classes (labels
  0 and 1; with ``num_classes`` unset, C is at least ``pos_label + 1``).
* ``"micro"``: numerators and denominators summed over the classes, then divided
  (micro precision = micro recall = micro F1 = accuracy; micro specificity is
  sum tn / sum (tn + fp)).
* ``"macro"``: the unweighted mean of the per-class values.
* ``"weighted"``: the mean weighted by each class's support (its count in ``y_true``),
  for every metric, specificity and npv included.
* ``None``: the per-class values, a ``(C,)`` float64 array.

A ratio whose denominator is 0 is ``zero_division`` (0.0, 1.0 or nan).  As in
scikit-learn, macro and weighted averages skip nan values (``zero_division=nan``),
and a weighted average whose remaining weights are all 0 is the plain mean.

``accuracy`` in its natural form: with ``average="binary"`` (the default),
``"micro"`` or ``"weighted"`` it is the fraction of correct predictions,
``trace(M) / N``, for any number of classes (``pos_label`` does not matter: the
accuracy of two classes is symmetric).  Per class (``average=None``) it is the
fraction of class ``c``'s samples predicted correctly, ``tp / support``, and
``"macro"`` is the mean of those (scikit-learn's ``balanced_accuracy_score`` when
every class occurs in ``y_true``); this is torchmetrics' multiclass accuracy.

Results match scikit-learn's ``precision_score``, ``recall_score``, ``f1_score``,
``fbeta_score``, ``accuracy_score`` and ``classification_report`` with
``labels=range(C)``.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel

__all__ = ["confusion_matrix", "accuracy", "precision", "recall", "specificity", "npv",
           "f1", "fbeta", "classification_report", "AVERAGES"]

AVERAGES = ("binary", "micro", "macro", "weighted", None)

_INT64_MAX = np.iinfo(np.int64).max
_MAX_DIGITS = 100  # float64 has 17 significant digits; 2**63 made format() fail unnamed


# ---------------------------------------------------------------------------- checks

def _labels(name: str, y, with_max=False):
    """Integer labels as a C-contiguous int64 (N,) array (bools count as 0 and 1);
    with ``with_max``, also the largest label (-1 when empty)."""
    a = V.as_ndarray(name, y)
    if a.size == 0 and a.dtype.kind == "f" and not isinstance(y, np.ndarray):
        a = a.astype(np.int64)  # np.asarray([]) is float64: an empty list is no float data
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels, got dtype {a.dtype}")
    V.check_ndim(name, a, 1)
    hi = -1
    if a.size:
        hi = int(a.max())
        lo = int(a.min()) if a.dtype.kind == "i" else 0
        if lo < 0:
            raise ValueError(f"{name}: expected labels in [0, C), got {lo}")
        if hi > _INT64_MAX:
            raise ValueError(f"{name}: expected labels in [0, C), got {hi}")
    a = V.aligned(np.ascontiguousarray(a, dtype=np.int64))
    return (a, hi) if with_max else a


def _pair(y_true, y_pred, num_classes, min_classes=0):
    """Both label arrays checked, and C."""
    yt, hi_t = _labels("y_true", y_true, with_max=True)
    yp, hi_p = _labels("y_pred", y_pred, with_max=True)
    if yp.shape[0] != yt.shape[0]:
        raise ValueError(f"y_pred: expected {yt.shape[0]} labels (as y_true), "
                         f"got {yp.shape[0]}")
    if num_classes is None:
        c = max(max(hi_t, hi_p) + 1, min_classes)
    else:
        c = V.check_int("num_classes", num_classes, lo=1)
        for name, hi in (("y_true", hi_t), ("y_pred", hi_p)):
            if hi >= c:
                raise ValueError(f"{name}: expected labels in [0, {c}) (num_classes={c}), "
                                 f"got {hi}")
    if c * c > _MAX_CELLS:
        # (C, C) int64 cells could not even be addressed (NumPy's message named nothing);
        # a matrix that is merely too large for this machine fails in _new_matrix
        raise ValueError(_too_many(c, num_classes))
    return yt, yp, c


_MAX_CELLS = np.iinfo(np.intp).max // 8


def _too_many(c, num_classes) -> str:
    if num_classes is None:
        return (f"y_true, y_pred: the largest label makes C = {V.show_int(c)} classes, and a "
                f"(C, C) int64 confusion matrix does not fit in memory; relabel to 0..C-1")
    return (f"num_classes: a (C, C) int64 confusion matrix does not fit in memory, got "
            f"num_classes={V.show_int(c)}")


def _new_matrix(c, num_classes) -> np.ndarray:
    """An empty (c, c) int64 matrix, or ValueError naming what made c so large."""
    try:
        return np.empty((c, c), dtype=np.int64)
    except MemoryError:
        raise ValueError(_too_many(c, num_classes)) from None


def _check_average(average):
    if isinstance(average, str) or average is None:
        if average in AVERAGES:
            return average
    raise ValueError(f"average: expected one of {AVERAGES}, got {average!r}")


def _check_zero_division(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"zero_division: expected 0.0, 1.0 or nan, got {value!r}")
    if isinstance(value, numbers.Integral) and value not in (0, 1):
        raise ValueError(f"zero_division: expected 0.0, 1.0 or nan, got {value!r}")
    v = float(value)
    if not (v == 0.0 or v == 1.0 or v != v):
        raise ValueError(f"zero_division: expected 0.0, 1.0 or nan, got {value!r}")
    return v


def _check_beta(beta) -> float:
    b = V.check_real("beta", beta, lo=0.0, lo_open=True)
    if not np.isfinite(b) or not np.isfinite(b * b):
        # beta^2 overflowing made (1 + b^2) p r / (b^2 p + r) inf / inf: NaN, silently
        raise ValueError(f"beta: expected a finite value > 0 whose square is finite, got "
                         f"{beta}")
    return b


# ---------------------------------------------------------------------------- core

@V.aligned_out
def confusion_matrix(y_true, y_pred, num_classes=None, *, out=None, backend=None):
    """The confusion matrix: rows are the actual classes, columns the predicted ones.

    Parameters
    ----------
    y_true, y_pred : (N,) integer labels in ``[0, C)`` (any integer dtype, or bool)
    num_classes : int, optional
        ``C``; default 1 + the largest label in either array (0 when both are empty).
    out : (C, C) int64, optional

    Returns
    -------
    M : (C, C) int64, ``M[i, j]`` = the number of samples of class ``i`` predicted as ``j``.
        One compiled pass over the labels.
    """
    yt, yp, c = _pair(y_true, y_pred, num_classes)
    given = out is not None
    out = V.make_out(out, (c, c), np.int64) if given else _new_matrix(c, num_classes)
    if given:
        yt, yp = V.copy_overlapping(out, (yt, yp))  # the kernel zeroes out before it counts
    kernel("confusion_matrix", backend)(yt, yp, out)
    return out


def _counts(cm):
    """Per-class (tp, fp, fn, tn, support) of a confusion matrix, as int64 arrays."""
    tp = np.diag(cm).copy()
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1)
    n = true.sum()
    fp = pred - tp
    fn = true - tp
    return tp, fp, fn, n - tp - fp - fn, true


def _ratio(num, den, zero_division):
    """num / den elementwise, ``zero_division`` where den == 0 (float64)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanaverage(values, weights=None) -> float:
    """Mean of the non-nan values, weighted if given (scikit-learn's rule: all-zero
    remaining weights give the plain mean; nothing left gives nan)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    values = values[keep]
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)[keep]
        if w.sum() > 0:
            return float(np.average(values, weights=w))
    return float(np.mean(values))


def _num_den(metric, tp, fp, fn, tn, support, beta):
    """Numerator and denominator of ``metric`` for each class."""
    if metric == "precision":
        return tp, tp + fp
    if metric in ("recall", "accuracy"):
        return tp, support
    if metric == "specificity":
        return tn, tn + fp
    if metric == "npv":
        return tn, tn + fn
    b2 = beta * beta  # fbeta, written from the counts as scikit-learn does
    return (1 + b2) * tp.astype(np.float64), b2 * support.astype(np.float64) + (tp + fp)


def _from_matrix(metric, cm, average, pos_label, zero_division, beta=1.0):
    tp, fp, fn, tn, support = _counts(cm)
    num, den = _num_den(metric, tp, fp, fn, tn, support, beta)
    if metric == "accuracy" and average in ("binary", "micro", "weighted"):
        return float(_ratio(tp.sum(), support.sum(), zero_division))
    if average == "micro":
        return float(_ratio(np.sum(num), np.sum(den), zero_division))
    per_class = _ratio(num, den, zero_division)
    if average is None:
        return per_class
    if average == "binary":
        return float(per_class[pos_label])
    return _nanaverage(per_class, support if average == "weighted" else None)


def _score(metric, y_true, y_pred, average, pos_label, zero_division, num_classes,
           backend, beta=1.0):
    average = _check_average(average)
    zero_division = _check_zero_division(zero_division)
    binary = average == "binary" and metric != "accuracy"
    if binary:
        pos_label = V.check_int("pos_label", pos_label, lo=0)
        if pos_label > 1:
            raise ValueError(f"pos_label: expected 0 or 1 with average='binary', "
                             f"got {pos_label}")
    yt, yp, c = _pair(y_true, y_pred, num_classes,
                      min_classes=pos_label + 1 if binary else 0)
    if yt.shape[0] == 0:
        raise ValueError("y_true: expected at least one label, got an empty array")
    if binary:
        if c > 2:
            raise ValueError(f"average: 'binary' needs 2 classes (labels 0 and 1), got "
                             f"{c} classes; use average='micro', 'macro', 'weighted' or None")
        if pos_label >= c:
            raise ValueError(f"pos_label: expected a label in [0, {c}), got {pos_label}")
    cm = _new_matrix(c, num_classes)
    kernel("confusion_matrix", backend)(yt, yp, cm)
    return _from_matrix(metric, cm, average, pos_label, zero_division, beta)


_PARAMS = """
    Parameters
    ----------
    y_true, y_pred : (N,) integer labels in ``[0, C)``, N >= 1
    average : ``"binary"``, ``"micro"``, ``"macro"``, ``"weighted"`` or None
        See the module docstring; ``"binary"`` needs at most 2 classes.
    pos_label : int
        The class reported with ``average="binary"`` (0 or 1); ignored otherwise.
    zero_division : 0.0, 1.0 or nan
        The value of a ratio whose denominator is 0.
    num_classes : int, optional
        ``C``; default 1 + the largest label in either array.

    Returns
    -------
    float, or a (C,) float64 array when ``average`` is None.
    """


def accuracy(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0,
             num_classes=None, *, backend=None):
    """Accuracy: ``trace(M) / N`` (the fraction of correct predictions) for
    ``average`` ``"binary"``, ``"micro"`` and ``"weighted"``, whatever the number of
    classes; per class ``tp / support`` (``None``) and their mean (``"macro"``,
    the balanced accuracy).  ``pos_label`` is accepted and ignored.
    """
    return _score("accuracy", y_true, y_pred, average, pos_label, zero_division,
                  num_classes, backend)


def precision(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0,
              num_classes=None, *, backend=None):
    """Precision, ``tp / (tp + fp)``: of the samples predicted as the class, the
    fraction that belong to it (scikit-learn's ``precision_score``).
    """
    return _score("precision", y_true, y_pred, average, pos_label, zero_division,
                  num_classes, backend)


def recall(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0,
           num_classes=None, *, backend=None):
    """Recall (sensitivity, true positive rate), ``tp / (tp + fn)``: of the samples of
    the class, the fraction predicted as it (scikit-learn's ``recall_score``).
    """
    return _score("recall", y_true, y_pred, average, pos_label, zero_division,
                  num_classes, backend)


def specificity(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0,
                num_classes=None, *, backend=None):
    """Specificity (true negative rate), ``tn / (tn + fp)``, one class against the rest:
    of the samples not in the class, the fraction not predicted as it.  With two
    classes, the specificity of one is the recall of the other.
    """
    return _score("specificity", y_true, y_pred, average, pos_label, zero_division,
                  num_classes, backend)


def npv(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0,
        num_classes=None, *, backend=None):
    """Negative predictive value, ``tn / (tn + fn)``, one class against the rest: of the
    samples not predicted as the class, the fraction not in it.  With two classes,
    the npv of one is the precision of the other.
    """
    return _score("npv", y_true, y_pred, average, pos_label, zero_division,
                  num_classes, backend)


def f1(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0,
       num_classes=None, *, backend=None):
    """F1 score, ``2 tp / (2 tp + fp + fn)``, the harmonic mean of precision and recall
    (scikit-learn's ``f1_score``).
    """
    return _score("fbeta", y_true, y_pred, average, pos_label, zero_division,
                  num_classes, backend, beta=1.0)


def fbeta(y_true, y_pred, beta, average="binary", pos_label=1, zero_division=0.0,
          num_classes=None, *, backend=None):
    """F-beta score, ``(1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp)``: recall weighted
    ``beta`` times as much as precision (scikit-learn's ``fbeta_score``).  ``beta``
    must be finite and > 0.
    """
    beta = _check_beta(beta)
    return _score("fbeta", y_true, y_pred, average, pos_label, zero_division,
                  num_classes, backend, beta=beta)


for _f in (accuracy, precision, recall, specificity, npv, f1, fbeta):
    _f.__doc__ += _PARAMS
del _f


def classification_report(y_true, y_pred, num_classes=None, target_names=None, digits=2,
                          zero_division=0.0, output_dict=False, *, backend=None):
    """Per-class precision, recall, F1 and support, then accuracy and the macro and
    weighted averages, as text laid out as scikit-learn's ``classification_report``
    (the same string as scikit-learn's with ``labels=range(C)``).

    Parameters
    ----------
    y_true, y_pred : (N,) integer labels in ``[0, C)``, N >= 1
    num_classes : int, optional
    target_names : sequence of C str, optional
        Row names (default the labels ``"0"``, ``"1"``, ...).
    digits : int in [0, 100]
        Decimals of the scores.
    zero_division : 0.0, 1.0 or nan
    output_dict : bool
        Return a dict instead (scikit-learn's layout: ``{name: {"precision",
        "recall", "f1-score", "support"}, "accuracy": float, "macro avg": {...},
        "weighted avg": {...}}``).

    Returns
    -------
    str (or dict)
    """
    zero_division = _check_zero_division(zero_division)
    digits = V.check_int("digits", digits, lo=0, hi=_MAX_DIGITS)
    output_dict = V.check_bool("output_dict", output_dict)
    yt, yp, c = _pair(y_true, y_pred, num_classes)
    if yt.shape[0] == 0:
        raise ValueError("y_true: expected at least one label, got an empty array")
    # the matrix first: a C too large for memory is refused before C names are made
    cm = _new_matrix(c, num_classes)
    if target_names is None:
        names = [str(i) for i in range(c)]
    else:
        try:
            count = -1 if isinstance(target_names, (str, bytes)) else len(target_names)
        except TypeError:  # no length: a number, a 0-d array
            count = -1
        if count < 0:
            raise TypeError(f"target_names: expected a sequence of {c} names, got "
                            f"{type(target_names).__name__}")
        if count != c:
            raise ValueError(f"target_names: expected {c} names (one per class), got {count}")
        names = [str(t) for t in target_names]
    kernel("confusion_matrix", backend)(yt, yp, cm)
    support = cm.sum(axis=1)
    scores = {m: _from_matrix(m, cm, None, 1, zero_division) for m in ("precision", "recall")}
    scores["f1-score"] = _from_matrix("fbeta", cm, None, 1, zero_division)
    headers = ["precision", "recall", "f1-score", "support"]
    averages = {}
    for avg in ("micro", "macro", "weighted"):
        averages[avg] = [_from_matrix(m, cm, avg, 1, zero_division)
                         for m in ("precision", "recall", "fbeta")] + [int(support.sum())]

    if output_dict:
        report = {name: {"precision": float(scores["precision"][i]),
                         "recall": float(scores["recall"][i]),
                         "f1-score": float(scores["f1-score"][i]),
                         "support": float(support[i])}
                  for i, name in enumerate(names)}
        # every label is in range(C), so the micro average is the accuracy
        report["accuracy"] = averages["micro"][2]
        for avg in ("macro", "weighted"):
            report[f"{avg} avg"] = dict(zip(headers, map(float, averages[avg])))
        return report

    # the layout of scikit-learn's report, character for character
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    text = ("{:>{width}s} " + " {:>9}" * 4).format("", *headers, width=width) + "\n\n"
    row = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    for i, name in enumerate(names):
        text += row.format(name, scores["precision"][i], scores["recall"][i],
                           scores["f1-score"][i], int(support[i]), width=width, digits=digits)
    text += "\n"
    acc_row = "{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f}" + " {:>9}\n"
    text += acc_row.format("accuracy", "", "", *averages["micro"][2:], width=width,
                           digits=digits)
    for avg in ("macro", "weighted"):
        text += row.format(f"{avg} avg", *averages[avg], width=width, digits=digits)
    return text
