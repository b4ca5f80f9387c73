"""Data handling for training: mini-batches, class weights, class balancing by
resampling, and a (stratified) train/test split.  Everything random is seeded:
``seed`` is None (fresh entropy), an int, or a ``numpy.random.Generator`` (used as is,
so one Generator threaded through several calls gives one reproducible stream).
"""
from __future__ import annotations

import numbers

import numpy as np

from fastdl import _validate as V

__all__ = ["batches", "class_weights", "oversample", "undersample", "split"]


def _rng(seed, name="seed") -> np.random.Generator:
    """A Generator from None, an int seed (>= 0) or a Generator (returned as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name}: expected None, an int or a numpy.random.Generator, "
                        f"got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def _rows(name: str, x) -> np.ndarray:
    """An array with at least one dimension (its rows are the samples), C-contiguous."""
    if x is None:
        raise TypeError(f"{name}: expected an array, got None")
    a = np.asarray(x)
    if a.ndim == 0:
        raise ValueError(f"{name}: expected an array with one row per sample, got a scalar")
    return np.ascontiguousarray(a)


def _xy(X, y, y_ndim=None):
    X = _rows("X", X)
    y = _rows("y", y)
    if y_ndim is not None:
        V.check_ndim("y", y, y_ndim)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} rows (one per row of X {X.shape}), "
                         f"got {y.shape[0]}")
    return X, y


def batches(X, y, batch_size, shuffle=True, seed=None):
    """Iterate over mini-batches ``(xb, yb)`` of the rows of ``X`` and ``y``.

    Parameters
    ----------
    X : (N, ...) array
    y : (N, ...) array, or None (then ``yb`` is None)
    batch_size : int >= 1, or None for one batch of all N rows (full-batch descent)
    shuffle : bool
        Visit the rows in a random order (a new permutation per call) or in order.
    seed : None, int or numpy.random.Generator

    Yields
    ------
    xb : (B, ...) C-contiguous, ``B = batch_size`` except the last, partial batch
        (kept, never dropped).  Without shuffling the batches are views of ``X``
        (of a C-contiguous copy when ``X`` is strided); with shuffling, copies.
    yb : (B, ...) likewise, or None

    Arguments are checked at the call, not at the first ``next``.  N = 0 yields nothing.
    """
    if y is None:
        X = _rows("X", X)
    else:
        X, y = _xy(X, y)
    n = X.shape[0]
    if batch_size is None:
        size = max(n, 1)
    else:
        size = V.check_int("batch_size", batch_size, lo=1)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle: expected a bool, got {type(shuffle).__name__}")
    order = _rng(seed).permutation(n) if shuffle else None
    return _iterate(X, y, size, order)


def _iterate(X, y, size, order):
    n = X.shape[0]
    for start in range(0, n, size):
        if order is None:
            sl = slice(start, start + size)
            yield X[sl], (None if y is None else y[sl])
        else:
            idx = order[start:start + size]
            yield X[idx], (None if y is None else y[idx])


def _int_labels(y, num_classes):
    from fastdl.metrics import _labels

    y = _labels("y", y)
    if y.shape[0] == 0:
        raise ValueError("y: expected at least one label, got an empty array")
    hi = int(y.max())
    if num_classes is None:
        c = hi + 1
    else:
        c = V.check_int("num_classes", num_classes, lo=1)
        if hi >= c:
            raise ValueError(f"y: expected labels in [0, {c}) (num_classes={c}), got {hi}")
    return y, c


def class_weights(y, method="complement", num_classes=None) -> np.ndarray:
    """One weight per class, for losses weighted by class (``fit(class_weight=...)``).

    Parameters
    ----------
    y : (N,) integer labels in ``[0, C)``, N >= 1
    method : ``"complement"`` or ``"balanced"``
        ``"complement"`` (the course's): ``w_c = 1 - n_c / N``; frequent classes weigh
        less.  A class absent from ``y`` gets 1; note that with a single class every
        weight is 0.
        ``"balanced"`` (scikit-learn's ``compute_class_weight``): ``w_c = N / (K n_c)``
        with K the number of classes present in ``y``, so that every present class
        carries the same total weight and the weights sum to N over the samples.  A
        class absent from ``y`` gets 0 (scikit-learn refuses such a class; it
        contributes no term to a loss either way, and 0 keeps every weight finite).
    num_classes : int, optional
        C; default 1 + the largest label.

    Returns
    -------
    weights : (C,) float64
    """
    V.check_choice("method", method, ("complement", "balanced"))
    y, c = _int_labels(y, num_classes)
    counts = np.bincount(y, minlength=c).astype(np.float64)
    n = float(y.shape[0])
    if method == "complement":
        return 1.0 - counts / n
    present = counts > 0
    weights = np.zeros(c, dtype=np.float64)
    weights[present] = n / (np.count_nonzero(present) * counts[present])
    return weights


def _resample(X, y, seed, over: bool):
    X, y = _xy(X, y, y_ndim=1)
    rng = _rng(seed)
    if y.shape[0] == 0:
        return X.copy(), y.copy()
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    members = np.argsort(inverse, kind="stable")  # sample indices grouped by class
    bounds = np.concatenate(([0], np.cumsum(counts)))
    target = counts.max() if over else counts.min()
    picks = []
    for k in range(counts.shape[0]):
        idx = members[bounds[k]:bounds[k + 1]]
        if over:
            # every sample kept once, the shortfall drawn with replacement
            picks.append(idx)
            picks.append(rng.choice(idx, target - counts[k], replace=True))
        else:
            picks.append(rng.choice(idx, target, replace=False))
    order = rng.permutation(np.concatenate(picks))
    return X[order], y[order]


def oversample(X, y, seed=None):
    """Balance the classes by random oversampling: every class grows to the size of
    the largest one, keeping each of its samples once and drawing the shortfall from
    them with replacement (imbalanced-learn's ``RandomOverSampler``).

    Parameters
    ----------
    X : (N, ...) array;  y : (N,) labels (any dtype; the classes are the distinct values)
    seed : None, int or numpy.random.Generator

    Returns
    -------
    X_res : (K * max_c n_c, ...), y_res : (K * max_c n_c,), in random order (copies).
    """
    return _resample(X, y, seed, over=True)


def undersample(X, y, seed=None):
    """Balance the classes by random undersampling: every class shrinks to the size of
    the smallest one, drawn without replacement (imbalanced-learn's
    ``RandomUnderSampler``).

    Parameters
    ----------
    X : (N, ...) array;  y : (N,) labels (any dtype; the classes are the distinct values)
    seed : None, int or numpy.random.Generator

    Returns
    -------
    X_res : (K * min_c n_c, ...), y_res : (K * min_c n_c,), in random order (copies).
    """
    return _resample(X, y, seed, over=False)


def split(X, y, test_size=0.2, seed=None, stratify=True):
    """Split the rows at random into a training and a test part (for train / validation
    / test, split twice), as scikit-learn's ``train_test_split``.

    Parameters
    ----------
    X : (N, ...) array;  y : (N,) labels or targets
    test_size : float in (0, 1) (a fraction: ``n_test = ceil(test_size * N)``) or int in
        [1, N - 1] (a count); both parts get at least one row.
    seed : None, int or numpy.random.Generator
    stratify : bool
        Keep the class proportions of ``y`` in both parts: class c gets
        ``floor(n_c * n_test / N)`` test rows, and the rows still missing go one each
        to the classes with the largest remainders (ties at random).  ``y`` must then
        be 1-D (labels of any dtype).

    Returns
    -------
    X_train, X_test, y_train, y_test : copies, each part in random order.
    """
    X, y = _xy(X, y, y_ndim=1 if stratify else None)
    n = X.shape[0]
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size: expected a float in (0, 1) or an int, "
                        f"got {type(test_size).__name__}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    else:
        frac = V.check_real("test_size", test_size, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        n_test = int(np.ceil(frac * n))
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size: expected 1 to {n - 1} test rows out of N={n} "
                         f"(both parts non-empty), got test_size={test_size} "
                         f"({n_test} rows)")
    rng = _rng(seed)
    if not stratify:
        perm = rng.permutation(n)
        train, test = perm[n_test:], perm[:n_test]
    else:
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        # integer quotas, so that they sum to n_test exactly (largest remainder method)
        quota, rem = np.divmod(counts * n_test, n)
        short = n_test - int(quota.sum())
        rank = np.lexsort((rng.random(counts.shape[0]), -rem))
        quota[rank[:short]] += 1
        members = np.argsort(inverse, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(counts)))
        train_parts, test_parts = [], []
        for k in range(counts.shape[0]):
            idx = rng.permutation(members[bounds[k]:bounds[k + 1]])
            test_parts.append(idx[:quota[k]])
            train_parts.append(idx[quota[k]:])
        train = rng.permutation(np.concatenate(train_parts))
        test = rng.permutation(np.concatenate(test_parts))
    return X[train], X[test], y[train], y[test]
