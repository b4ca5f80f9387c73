"""Data handling for training: mini-batches, class weights, class balancing by
resampling, a (stratified) train/test split, k-fold splits and cross-validation of a
model.  Everything random is seeded:
``seed`` is None (fresh entropy), an int, or a ``numpy.random.Generator`` (used as is,
so one Generator threaded through several calls gives one reproducible stream).
"""
from __future__ import annotations

import numbers

import numpy as np

from fastdl import _validate as V

__all__ = ["batches", "class_weights", "oversample", "undersample", "split", "kfold",
           "cross_validate"]


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
    a = V.as_ndarray(name, x)
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
    try:
        counts = np.bincount(y, minlength=c).astype(np.float64)
    except MemoryError:  # NumPy's message named nothing
        name = "y" if num_classes is None else "num_classes"
        raise ValueError(f"{name}: {V.show_int(c)} classes (labels 0..C-1) do not fit in "
                         "memory; relabel to 0..C-1") from None
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
    X : (N, ...) array
    y : (N,) labels (any dtype; the classes are the distinct values)
    seed : None, int or numpy.random.Generator

    Returns
    -------
    X_res : (K * max_c n_c, ...), with K the number of classes
    y_res : (K * max_c n_c,)
        Both in one random order (copies).
    """
    return _resample(X, y, seed, over=True)


def undersample(X, y, seed=None):
    """Balance the classes by random undersampling: every class shrinks to the size of
    the smallest one, drawn without replacement (imbalanced-learn's
    ``RandomUnderSampler``).

    Parameters
    ----------
    X : (N, ...) array
    y : (N,) labels (any dtype; the classes are the distinct values)
    seed : None, int or numpy.random.Generator

    Returns
    -------
    X_res : (K * min_c n_c, ...), with K the number of classes
    y_res : (K * min_c n_c,)
        Both in one random order (copies).
    """
    return _resample(X, y, seed, over=False)


def split(X, y, test_size=0.2, seed=None, stratify=True):
    """Split the rows at random into a training and a test part (for train / validation
    / test, split twice), as scikit-learn's ``train_test_split``.

    Parameters
    ----------
    X : (N, ...) array
    y : (N,) labels or targets
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
    if not isinstance(stratify, (bool, np.bool_)):  # as kfold ("no" stratified)
        raise TypeError(f"stratify: expected a bool, got {type(stratify).__name__}")
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


def kfold(y, k=5, shuffle=True, seed=None, stratify=True):
    """Split ``range(N)`` into ``k`` folds: yield ``(train_idx, test_idx)`` for each fold.

    Parameters
    ----------
    y : (N,) labels of any dtype, or an int N (plain folds of ``range(N)``)
    k : int in [2, N]
    shuffle : bool
        Assign the rows to folds at random; without it, plain folds are contiguous blocks
        (as scikit-learn's ``KFold(shuffle=False)``) and stratified folds deal each class's
        rows in their order.
    seed : None, int or numpy.random.Generator
    stratify : bool
        Keep the class proportions of ``y`` in every fold (ignored when ``y`` is an int):
        the rows, grouped by class, are dealt to the folds in turn, so that each class
        has, in every fold, ``floor(n_c / k)`` or ``ceil(n_c / k)`` rows, and the fold
        sizes differ by at most one.  Needs ``k`` <= the smallest class's count.

    Yields
    ------
    train_idx, test_idx : int64 index arrays, sorted; the ``k`` test parts partition
        ``range(N)`` and each ``train_idx`` is the complement of its ``test_idx``.

    Arguments are checked at the call, not at the first ``next``.
    """
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        n = V.check_int("y", y, lo=1)
        labels = None
    else:
        labels = _rows("y", y)
        n = labels.shape[0]
        if n == 0:
            raise ValueError("y: expected at least one row, got an empty array")
    k = V.check_int("k", k, lo=2)
    if k > n:
        raise ValueError(f"k: expected at most N={n} folds (one row each), got {k}")
    for name, v in (("shuffle", shuffle), ("stratify", stratify)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    rng = _rng(seed)
    fold = np.empty(n, dtype=np.int64)
    if labels is None or not stratify:
        order = rng.permutation(n) if shuffle else np.arange(n)
        # contiguous blocks of the order: the first n % k folds one row larger
        sizes = np.full(k, n // k, dtype=np.int64)
        sizes[:n % k] += 1
        fold[order] = np.repeat(np.arange(k), sizes)
    else:
        if labels.ndim != 1:
            raise ValueError(f"y: stratified folds need 1-D labels, got shape {labels.shape}"
                             " (pass stratify=False for plain folds)")
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if k > counts.min():
            c = int(counts.argmin())
            raise ValueError(f"k: {k} stratified folds need at least {k} rows of every "
                             f"class; class {classes[c]!r} has {counts[c]} (lower k or pass "
                             f"stratify=False)")
        inverse = inverse.reshape(-1)
        if shuffle:
            # a random order within each class: sort by (class, random key)
            dealt = np.lexsort((rng.random(n), inverse))
        else:
            dealt = np.argsort(inverse, kind="stable")
        # dealing the class-grouped sequence in turn gives every class and every fold
        # counts within one of each other; a random relabelling of the folds spreads
        # the remainders
        ids = rng.permutation(k) if shuffle else np.arange(k)
        fold[dealt] = ids[np.arange(n) % k]
    return _folds(fold, k)


def _folds(fold, k):
    for f in range(k):
        test = np.flatnonzero(fold == f).astype(np.int64)
        train = np.flatnonzero(fold != f).astype(np.int64)
        yield train, test


# cross_validate lives in its own module (which imports this one when it runs)
from fastdl._crossval import cross_validate  # noqa: E402
