"""``fastdl.data.cross_validate``: k-fold cross-validation of any model with ``fit`` and
``predict`` (a ``fastdl.nn.Sequential``, a scikit-learn estimator or pipeline), scored by
fastdl's metrics; the folds are ``fastdl.data.kfold``'s."""
from __future__ import annotations

import inspect

import numpy as np
from scipy import sparse

__all__ = ["cross_validate"]


def _sparse_xy(X, y):
    from fastdl import data as D  # (data imports this module)

    # rows of a sparse matrix are taken by index arrays in CSR (COO has no indexing)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D sparse matrix, got shape {X.shape}")
    y = D._rows("y", y)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} rows (one per row of X {X.shape}), "
                         f"got {y.shape[0]}")
    return X.tocsr(), y


_METRICS = ("accuracy", "precision", "recall", "specificity", "npv", "f1")
_AVERAGES = ("micro", "macro", "weighted")


def _metric_fns(metrics):
    """[(name, fn(y_true_codes, y_pred_codes, C) or "loss")], every name checked."""
    from fastdl import metrics as M

    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    try:
        metrics = list(metrics)
    except TypeError:
        raise TypeError(f"metrics: expected a sequence of names or callables, got "
                        f"{type(metrics).__name__}") from None
    if not metrics:
        raise ValueError("metrics: expected at least one metric")
    out = []
    for m in metrics:
        if callable(m):
            name = getattr(m, "__name__", repr(m))
            out.append((name, ("callable", m)))
            continue
        if not isinstance(m, str):
            raise TypeError(f"metrics: expected names or callables, got {type(m).__name__}")
        base, _, avg = m.partition("_")
        if m == "loss":
            out.append((m, "loss"))
        elif base in _METRICS and (avg == "" or avg in _AVERAGES):
            out.append((m, ("fastdl", getattr(M, base), avg or "binary")))
        else:
            names = ["loss", *_METRICS] + [f"{b}_{a}" for b in _METRICS[1:] for a in _AVERAGES]
            raise ValueError(f"metrics: unknown metric {m!r}; expected a callable "
                             f"f(y_true, y_pred) or one of {names}")
    if len({name for name, _ in out}) != len(out):
        raise ValueError(f"metrics: names must be distinct, got {[n for n, _ in out]}")
    return out


def _accepts(fn, name):
    # a parameter of that name only: a fit(**params) that routes its keywords on (a
    # scikit-learn Pipeline, GridSearchCV) refuses those it does not know
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(name)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def _check_model(model, needs_evaluate):
    """What cross_validate calls on a model built by ``build``, before any fit."""
    if isinstance(model, type):
        raise TypeError(f"build: returned the class {model.__name__}, not a model; "
                        f"build must return a new instance")
    for attr in ("fit", "predict") + (("evaluate",) if needs_evaluate else ()):
        if not callable(getattr(model, attr, None)):
            raise TypeError(f"build: returned a {type(model).__name__}, which has no {attr} "
                            f"method" + (" (metrics: 'loss' needs evaluate(X, y))"
                                         if attr == "evaluate" else ""))


def cross_validate(build, X, y, k=5, seed=None, metrics=("accuracy",), *, stratify=None,
                   **fit_kwargs):
    """k-fold cross-validation: for each fold, ``build()`` a fresh model, ``fit`` it on the
    other folds and score it on this one.

    Parameters
    ----------
    build : callable () -> model
        A new, untrained model on each call: a ``fastdl.nn.Sequential`` or any object with
        ``fit(X, y, **fit_kwargs)`` and ``predict(X)`` (a scikit-learn estimator, e.g.
        ``fastdl.sklearn.MLPClassifier``), plus ``evaluate(X, y) -> {"loss": ...}`` for
        the ``"loss"`` metric.
    X : (N, ...) array, or a scipy.sparse matrix (N, F) for a model that takes one
    y : (N,) labels or (N, ...) targets
    k : int, the number of folds (see ``kfold``)
    seed : None, int or numpy.random.Generator
        The folds; and, when ``fit_kwargs`` has no ``seed`` and the model's ``fit`` takes
        one, a seed per fold drawn from it, so that one int gives one reproducible result
        (weights initialised in ``build`` are ``build``'s to seed).
    metrics : sequence of names or callables
        ``"loss"`` (the model's ``evaluate``), ``"accuracy"``, ``"precision"``,
        ``"recall"``, ``"specificity"``, ``"npv"``, ``"f1"`` from ``fastdl.metrics``
        (``"binary"`` averaging, for two classes), the same with ``_micro``, ``_macro``
        or ``_weighted`` for that averaging (e.g. ``"f1_macro"``), or a callable
        ``f(y_true, y_pred) -> float`` (named by its ``__name__``).  Label metrics run
        over every class of ``y`` (labels of any dtype, coded by their sorted order).
    stratify : None, bool
        Stratified folds; None: when ``y`` is 1-D with labels that are not floats.
    **fit_kwargs : passed to each ``fit`` (``verbose=0`` unless given, when ``fit`` takes it)

    Returns
    -------
    dict : ``{name: {"folds": [k floats], "mean": float, "std": float}}`` per metric, with
        ``std`` the population standard deviation of the folds (``numpy.std``).
    """
    from fastdl import data as D  # (data imports this module)

    if not callable(build):
        raise TypeError(f"build: expected a callable returning a new model, "
                        f"got {type(build).__name__}")
    if sparse.issparse(X):
        X, y = _sparse_xy(X, y)
    else:
        X, y = D._xy(X, y)
    fns = _metric_fns(metrics)
    if stratify is None:
        stratify = y.ndim == 1 and y.dtype.kind not in "fc"
    rng = D._rng(seed)
    folds = list(D.kfold(y, k, shuffle=True, seed=rng, stratify=bool(stratify)))
    classes = None
    if any(f != "loss" for _, f in fns):
        if y.ndim != 1:
            raise ValueError(f"metrics: label metrics need 1-D labels y, got shape {y.shape}"
                             "; use metrics=('loss',) for other targets")
        classes = np.unique(y)
    scores = {name: [] for name, _ in fns}
    for train, test in folds:
        model = build()
        _check_model(model, any(f == "loss" for _, f in fns))
        kwargs = dict(fit_kwargs)
        if "seed" not in kwargs and _accepts(model.fit, "seed"):
            kwargs["seed"] = int(rng.integers(2**63))
        if "verbose" not in kwargs and _accepts(model.fit, "verbose"):
            kwargs["verbose"] = 0
        model.fit(X[train], y[train], **kwargs)
        pred = None
        for name, f in fns:
            if f == "loss":
                scores[name].append(float(model.evaluate(X[test], y[test])["loss"]))
                continue
            if pred is None:
                pred = np.asarray(model.predict(X[test]))
            if f[0] == "callable":
                scores[name].append(float(f[1](y[test], pred)))
            else:
                scores[name].append(_label_metric(name, f[1], f[2], classes, y[test], pred))
    return {name: {"folds": v, "mean": float(np.mean(v)), "std": float(np.std(v))}
            for name, v in scores.items()}


def _label_metric(name, fn, average, classes, y_true, y_pred):
    """A fastdl.metrics score on labels coded as their index in ``classes`` (sorted)."""
    c = classes.shape[0]
    y_pred = np.asarray(y_pred).reshape(-1) if np.ndim(y_pred) else np.asarray(y_pred)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"metrics: the model's predict returned shape {y_pred.shape} for "
                         f"{y_true.shape[0]} rows; label metrics need one label per row")
    codes = []
    for lab in (y_true, y_pred):
        idx = np.clip(np.searchsorted(classes, lab), 0, c - 1)
        bad = classes[idx] != lab
        if np.any(bad):
            raise ValueError(f"metrics: the model predicted {lab[bad][0]!r}, which is not a "
                             f"class of y {classes.tolist()[:10]}")
        codes.append(idx)
    if average == "binary" and c > 2 and name != "accuracy":
        raise ValueError(f"metrics: {name!r} is for two classes and y has {c}; use "
                         f"'{name}_macro', '{name}_micro' or '{name}_weighted'")
    return float(fn(codes[0], codes[1], average=average, num_classes=max(c, 2)))
