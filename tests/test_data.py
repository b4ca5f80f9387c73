"""fastdl.data: batches, class weights (against their formulas and scikit-learn),
over- and undersampling (against their definitions), the stratified split, k-fold splits
and cross-validation; seeding and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.utils.class_weight import compute_class_weight

from fastdl import data as D
from conftest import rng


def xy(n, c=3, seed=0, features=4):
    r = rng(seed)
    X = r.standard_normal((n, features)).astype(np.float32)
    y = r.integers(0, c, n)
    return X, y


def rows_of(X):
    return {tuple(row) for row in np.asarray(X).reshape(len(X), -1)}


# ------------------------------------------------------------------ batches

@pytest.mark.parametrize("n, bs", [(10, 3), (10, 5), (10, 1), (10, 10), (10, 32), (1, 4),
                                   (7, None)], ids=str)
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_row_once(n, bs, shuffle):
    X = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    y = np.arange(n)
    got = list(D.batches(X, y, bs, shuffle=shuffle, seed=1))
    size = n if bs is None else bs
    assert [len(b[0]) for b in got] == [min(size, n - s) for s in range(0, n, size)]
    idx = np.concatenate([yb for _, yb in got])
    np.testing.assert_array_equal(np.sort(idx), np.arange(n))  # each row exactly once
    if not shuffle:
        np.testing.assert_array_equal(idx, np.arange(n))
    for xb, yb in got:
        np.testing.assert_array_equal(xb, X[yb])  # rows and labels stay paired
        assert xb.flags.c_contiguous and yb.flags.c_contiguous


def test_batches_shuffle_is_seeded():
    X, y = xy(50)
    a = [yb for _, yb in D.batches(X, y, 8, seed=3)]
    b = [yb for _, yb in D.batches(X, y, 8, seed=3)]
    c = [yb for _, yb in D.batches(X, y, 8, seed=4)]
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))
    order = np.concatenate([yb for _, yb in D.batches(X, np.arange(50), 50, seed=5)])
    np.testing.assert_array_equal(order, np.random.default_rng(5).permutation(50))
    # a Generator is used as is: two epochs from one Generator differ
    g = np.random.default_rng(0)
    e1 = np.concatenate([yb for _, yb in D.batches(X, np.arange(50), 10, seed=g)])
    e2 = np.concatenate([yb for _, yb in D.batches(X, np.arange(50), 10, seed=g)])
    assert not np.array_equal(e1, e2)


def test_batches_y_none_multidim_strided_empty():
    X = np.arange(24.0).reshape(6, 2, 2)
    got = list(D.batches(X, None, 4, shuffle=False))
    assert [b[1] for b in got] == [None, None]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), X)
    Xs = np.asfortranarray(np.arange(12.0).reshape(6, 2))
    Y = np.arange(12.0).reshape(6, 2)  # targets with columns (regression)
    for xb, yb in D.batches(Xs, Y, 4, shuffle=False):
        assert xb.flags.c_contiguous
        np.testing.assert_array_equal(xb, yb)
    assert list(D.batches(np.zeros((0, 3)), np.zeros(0), 4)) == []
    X0 = X.copy()
    list(D.batches(X, None, 2, seed=0))
    np.testing.assert_array_equal(X, X0)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-2), ValueError, "batch_size"),
    (dict(batch_size=2.0), TypeError, "batch_size"),
    (dict(batch_size=True), TypeError, "batch_size"),
    (dict(y=np.zeros(4)), ValueError, "y"),
    (dict(X=np.float64(1.0)), ValueError, "X"),
    (dict(X=None), TypeError, "X"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
])
def test_batches_bad_input_raises_at_call(kw, exc, match):
    args = dict(X=np.zeros((5, 2)), y=np.zeros(5), batch_size=2)
    args.update(kw)
    with pytest.raises(exc, match=match):
        D.batches(**args)  # no next(): checked when called


# ------------------------------------------------------------------ class weights

def test_class_weights_formulas():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 0, 1, 0])  # counts 6, 3, 1
    np.testing.assert_allclose(D.class_weights(y), [1 - 6 / 10, 1 - 3 / 10, 1 - 1 / 10])
    np.testing.assert_allclose(D.class_weights(y, "balanced"),
                               [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])
    w = D.class_weights(y, "balanced")
    assert w.dtype == np.float64 and w.shape == (3,)
    # balanced: every class carries the same total weight, N / K
    np.testing.assert_allclose(np.bincount(y) * w, [10 / 3] * 3)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 200), c=st.integers(1, 8), seed=st.integers(0, 2**31))
def test_property_class_weights_match_sklearn(n, c, seed):
    y = rng(seed).integers(0, c, n)
    present = np.unique(y)
    got = D.class_weights(y, "balanced", num_classes=c)
    want = compute_class_weight("balanced", classes=present, y=y)
    np.testing.assert_allclose(got[present], want, rtol=1e-12)
    counts = np.bincount(y, minlength=c)
    np.testing.assert_allclose(D.class_weights(y, num_classes=c), 1 - counts / n, rtol=1e-12)
    assert np.all(got[counts == 0] == 0)


def test_class_weights_absent_class_and_single_class():
    y = np.array([0, 0, 2])  # class 1 absent
    np.testing.assert_allclose(D.class_weights(y, "balanced"), [3 / (2 * 2), 0.0, 3 / (2 * 1)])
    np.testing.assert_allclose(D.class_weights(y, "complement"), [1 / 3, 1.0, 2 / 3])
    np.testing.assert_allclose(D.class_weights(y, "balanced", num_classes=5),
                               [0.75, 0, 1.5, 0, 0])
    np.testing.assert_allclose(D.class_weights([1, 1], "balanced"), [0.0, 1.0])
    np.testing.assert_allclose(D.class_weights([0, 0, 0], "complement"), [0.0])


@pytest.mark.parametrize("kw, exc, match", [
    (dict(y=[0, 1], method="inverse"), ValueError, "method"),
    (dict(y=[]), ValueError, "y"),
    (dict(y=[0.0, 1.0]), TypeError, "y"),
    (dict(y=[0, -1]), ValueError, "y"),
    (dict(y=[[0, 1]]), ValueError, "y"),
    (dict(y=[0, 3], num_classes=3), ValueError, "y"),
    (dict(y=[0, 1], num_classes=0), ValueError, "num_classes"),
    # 10**12 classes: NumPy's MemoryError named nothing
    (dict(y=[0, 10**12]), ValueError, "^y: "),
    (dict(y=[0, 1], num_classes=10**12), ValueError, "^num_classes: "),
])
def test_class_weights_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        D.class_weights(**kw)


# ------------------------------------------------------------------ resampling

@pytest.mark.parametrize("over", [True, False])
@pytest.mark.parametrize("c", [1, 2, 5])
def test_resampling_balances_and_keeps_pairs(over, c):
    r = rng(c)
    y = r.choice(c, size=97, p=np.arange(1, c + 1) / (c * (c + 1) / 2))
    X = np.stack([np.arange(97.0), y.astype(float)], axis=1)  # row id, then its label
    fn = D.oversample if over else D.undersample
    Xr, yr = fn(X, y, seed=0)
    counts = np.bincount(y, minlength=c)
    target = counts[counts > 0].max() if over else counts[counts > 0].min()
    present = np.flatnonzero(counts)
    np.testing.assert_array_equal(np.bincount(yr, minlength=c)[present], target)
    np.testing.assert_array_equal(Xr[:, 1], yr)  # every row still carries its label
    ids = Xr[:, 0].astype(int)
    np.testing.assert_array_equal(y[ids], yr)
    if over:
        assert set(ids) == set(range(97))  # every original sample kept
        for k in present:  # at least once each, the rest drawn from the same class
            assert np.all(np.bincount(ids[yr == k], minlength=97)[y == k] >= 1)
    else:
        assert len(set(ids)) == len(ids)  # drawn without replacement
    # shuffled, not grouped by class
    if c > 1:
        assert not np.all(np.diff(yr) >= 0)
    Xr2, yr2 = fn(X, y, seed=0)
    np.testing.assert_array_equal(Xr, Xr2)
    np.testing.assert_array_equal(yr, yr2)
    Xr3, _ = fn(X, y, seed=1)
    assert not np.array_equal(Xr, Xr3)


def test_resampling_multidim_x_any_labels_empty():
    X = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    y = np.array(["a", "b", "a", "a", "b"])
    Xr, yr = D.oversample(X, y, seed=2)
    assert Xr.shape == (6, 2, 3) and Xr.dtype == np.float32
    assert sorted(yr) == ["a"] * 3 + ["b"] * 3
    Xu, yu = D.undersample(X, y, seed=2)
    assert Xu.shape == (4, 2, 3) and sorted(yu) == ["a", "a", "b", "b"]
    for xr, lab in zip(Xu, yu):
        assert any(np.array_equal(xr, X[i]) and y[i] == lab for i in range(5))
    Xe, ye = D.oversample(np.zeros((0, 3)), np.zeros(0, int), seed=0)
    assert Xe.shape == (0, 3) and ye.shape == (0,)


@pytest.mark.parametrize("fn", [D.oversample, D.undersample])
def test_resampling_bad_input(fn):
    with pytest.raises(ValueError, match="y"):
        fn(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="y"):
        fn(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(TypeError, match="seed"):
        fn(np.zeros((4, 2)), np.zeros(4), seed="x")


# ------------------------------------------------------------------ split

def check_split(X, y, parts, n_test, stratify):
    Xtr, Xte, ytr, yte = parts
    n = len(y)
    assert len(Xte) == len(yte) == n_test and len(Xtr) == len(ytr) == n - n_test
    ids = np.concatenate([Xtr[:, 0], Xte[:, 0]]).astype(int)
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))  # disjoint, complete
    np.testing.assert_array_equal(y[Xtr[:, 0].astype(int)], ytr)
    np.testing.assert_array_equal(y[Xte[:, 0].astype(int)], yte)
    if stratify:
        classes, counts = np.unique(y, return_counts=True)
        exact = counts * n_test / n
        got = np.array([np.sum(yte == k) for k in classes])
        assert np.all(got >= np.floor(exact)) and np.all(got <= np.ceil(exact))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 120), c=st.integers(1, 6), frac=st.floats(0.01, 0.99),
       as_count=st.booleans(), stratify=st.booleans(), seed=st.integers(0, 2**31))
def test_property_split(n, c, frac, as_count, stratify, seed):
    y = rng(seed).integers(0, c, n)
    X = np.stack([np.arange(n), y], axis=1).astype(float)
    if as_count:
        n_test = min(max(int(round(frac * n)), 1), n - 1)
        test_size = n_test
    else:
        n_test = int(np.ceil(frac * n))  # as train_test_split
        test_size = frac
        if n_test > n - 1:
            with pytest.raises(ValueError, match="test_size"):
                D.split(X, y, test_size=test_size, seed=seed, stratify=stratify)
            return
    parts = D.split(X, y, test_size=test_size, seed=seed, stratify=stratify)
    check_split(X, y, parts, n_test, stratify)


def test_split_fraction_like_sklearn_and_seeded():
    X, y = xy(1797, c=10)
    X = np.concatenate([np.arange(1797)[:, None], X], axis=1)
    parts = D.split(X, y, test_size=0.2, seed=0)
    check_split(X, y, parts, 360, True)  # ceil(0.2 * 1797), as train_test_split
    again = D.split(X, y, test_size=0.2, seed=0)
    for a, b in zip(parts, again):
        np.testing.assert_array_equal(a, b)
    other = D.split(X, y, test_size=0.2, seed=1)
    assert not np.array_equal(parts[1], other[1])
    check_split(X, y, D.split(X, y, test_size=100, seed=2, stratify=False), 100, False)
    # each part comes shuffled
    assert not np.all(np.diff(parts[1][:, 0]) > 0)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(test_size=0.0), ValueError, "test_size"),
    (dict(test_size=1.0), ValueError, "test_size"),
    (dict(test_size=0), ValueError, "test_size"),
    (dict(test_size=10), ValueError, "test_size"),
    (dict(X=np.zeros((1, 2)), y=np.zeros(1, int)), ValueError, "test_size"),  # N=1
    (dict(test_size=True), TypeError, "test_size"),
    (dict(test_size="0.2"), TypeError, "test_size"),
    (dict(y=np.zeros(9)), ValueError, "y"),
    (dict(y=np.zeros((10, 2))), ValueError, "y"),
    (dict(seed=2.0), TypeError, "seed"),
    (dict(stratify="no"), TypeError, "stratify"),  # it stratified
])
def test_split_bad_input(kw, exc, match):
    args = dict(X=np.zeros((10, 2)), y=np.arange(10) % 2, seed=0)
    args.update(kw)
    with pytest.raises(exc, match=match):
        D.split(**args)


# ------------------------------------------------------------------ kfold

def check_folds(folds, n, k, y=None):
    assert len(folds) == k
    tests = [te for _, te in folds]
    for train, test in folds:
        assert train.dtype == test.dtype == np.int64
        assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)  # sorted, no repeats
        np.testing.assert_array_equal(np.union1d(train, test), np.arange(n))
        assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(n))  # partition
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 1
    if y is not None:
        for c in np.unique(y):
            per_fold = [np.sum(y[t] == c) for t in tests]
            assert max(per_fold) - min(per_fold) <= 1, (c, per_fold)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 150), c=st.integers(1, 5), k=st.integers(2, 8),
       shuffle=st.booleans(), seed=st.integers(0, 2**31))
def test_property_kfold_partitions_and_balances(n, c, k, shuffle, seed):
    y = rng(seed).integers(0, c, n)
    counts = np.bincount(y)
    counts = counts[counts > 0]
    if k > n:
        with pytest.raises(ValueError, match="k"):
            D.kfold(n, k)
        return
    check_folds(list(D.kfold(n, k, shuffle=shuffle, seed=seed)), n, k)
    check_folds(list(D.kfold(y, k, shuffle=shuffle, seed=seed, stratify=False)), n, k)
    if k > counts.min():
        with pytest.raises(ValueError, match="smallest|at least"):
            D.kfold(y, k, shuffle=shuffle, seed=seed)
        return
    folds = list(D.kfold(y, k, shuffle=shuffle, seed=seed))
    check_folds(folds, n, k, y)
    again = list(D.kfold(y, k, shuffle=shuffle, seed=seed))  # determinism by seed
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_kfold_plain_blocks_seeds_and_labels_of_any_type():
    folds = list(D.kfold(10, 3, shuffle=False))
    assert [t.tolist() for _, t in folds] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    a = [t for _, t in D.kfold(100, 5, seed=0)]
    b = [t for _, t in D.kfold(100, 5, seed=1)]
    assert not all(np.array_equal(u, v) for u, v in zip(a, b))
    g = np.random.default_rng(0)  # a Generator is used as is: two calls differ
    c = [t for _, t in D.kfold(100, 5, seed=g)]
    d = [t for _, t in D.kfold(100, 5, seed=g)]
    assert not all(np.array_equal(u, v) for u, v in zip(c, d))
    y = np.array(["b", "a", "c"] * 4 + ["a"] * 3)
    check_folds(list(D.kfold(y, 4, seed=3)), 15, 4, y)
    check_folds(list(D.kfold(y, 4, shuffle=False)), 15, 4, y)
    # like scikit-learn's StratifiedKFold: every fold keeps the class proportions
    from sklearn.model_selection import StratifiedKFold
    y = rng(5).integers(0, 4, 203)
    ours = sorted(np.bincount(y[t], minlength=4).tolist() for _, t in D.kfold(y, 5, seed=0))
    theirs = sorted(np.bincount(y[t], minlength=4).tolist()
                    for _, t in StratifiedKFold(5).split(np.zeros(203), y))
    assert np.abs(np.array(ours) - np.array(theirs)).max() <= 1


@pytest.mark.parametrize("args, kw, exc, match", [
    ((np.arange(10) % 2,), dict(k=1), ValueError, "k"),
    ((np.arange(10) % 2,), dict(k=11), ValueError, "k"),
    ((np.arange(10) % 2,), dict(k=6), ValueError, "class"),  # 5 rows per class
    ((np.arange(10) % 2,), dict(k=2.0), TypeError, "k"),
    ((np.zeros((10, 2)),), {}, ValueError, "1-D"),
    ((np.zeros(0),), {}, ValueError, "y"),
    ((0,), {}, ValueError, "y"),
    ((None,), {}, TypeError, "y"),
    ((10,), dict(shuffle=1), TypeError, "shuffle"),
    ((10,), dict(stratify="yes"), TypeError, "stratify"),
    ((10,), dict(seed="x"), TypeError, "seed"),
])
def test_kfold_bad_input_raises_at_call(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        D.kfold(*args, **kw)


# ------------------------------------------------------------------ cross_validate

class Centroids:
    """A tiny deterministic model: the nearest class mean; records its calls."""
    calls = []

    def fit(self, X, y, seed=None, verbose=1, shift=0.0):
        self.classes = np.unique(y)
        self.means = np.stack([X[y == c].mean(axis=0) for c in self.classes]) + shift
        Centroids.calls.append(dict(n=len(y), seed=seed, verbose=verbose))
        return self

    def predict(self, X):
        d = ((X[:, None, :] - self.means[None]) ** 2).sum(-1)
        return self.classes[d.argmin(1)]

    def evaluate(self, X, y):
        return {"loss": float(np.mean(self.predict(X) != y))}


def blobs(n=90, c=3, seed=0):
    r = rng(seed)
    y = np.arange(n) % c
    X = r.standard_normal((n, 2)) * 0.8 + np.stack([y, y % 2], 1) * 2.0
    return X, y


def test_cross_validate_scores_each_fold_as_its_metrics():
    from fastdl import metrics as M
    X, y = blobs()
    Centroids.calls = []
    res = D.cross_validate(Centroids, X, y, k=3, seed=0,
                           metrics=("accuracy", "loss", "f1_macro", "recall_weighted"))
    assert list(res) == ["accuracy", "loss", "f1_macro", "recall_weighted"]
    # each fold: the train part, verbose off, a seed drawn from seed; reproducible
    assert [c["n"] for c in Centroids.calls] == [60] * 3
    assert all(c["verbose"] == 0 and isinstance(c["seed"], int) for c in Centroids.calls)
    folds = list(D.kfold(y, 3, seed=np.random.default_rng(0)))
    for i, (train, test) in enumerate(folds):
        model = Centroids().fit(X[train], y[train])
        pred = model.predict(X[test])
        assert res["accuracy"]["folds"][i] == pytest.approx(M.accuracy(y[test], pred))
        assert res["loss"]["folds"][i] == pytest.approx(1 - M.accuracy(y[test], pred))
        assert res["f1_macro"]["folds"][i] == pytest.approx(
            M.f1(y[test], pred, average="macro", num_classes=3))
    for name, r in res.items():
        assert r["mean"] == pytest.approx(np.mean(r["folds"]))
        assert r["std"] == pytest.approx(np.std(r["folds"]))
    assert D.cross_validate(Centroids, X, y, k=3, seed=0, metrics=("f1_macro",)) == \
        {"f1_macro": res["f1_macro"]}
    Centroids.calls = []
    D.cross_validate(Centroids, X, y, k=3, seed=0, verbose=2, shift=0.5)
    assert all(c["verbose"] == 2 for c in Centroids.calls)  # fit_kwargs win


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cross_validate_labels_callables_and_real_models():
    from fastdl import nn
    from fastdl.sklearn import MLPClassifier
    X, y = blobs(120, c=2)
    names = np.array(["no", "yes"])[y]
    res = D.cross_validate(Centroids, X, names, k=4, seed=1,
                           metrics=("accuracy", "f1", lambda t, p: float(np.mean(t == p))))
    assert res["<lambda>"]["folds"] == pytest.approx(res["accuracy"]["folds"])
    assert res["accuracy"]["mean"] > 0.8
    build = lambda: nn.Sequential(nn.Dense(2, 8, activation="relu"), nn.Dense(8, 2), seed=0)
    r1 = D.cross_validate(build, X.astype(np.float32), y, k=3, seed=2,
                          metrics=("accuracy", "loss"), epochs=80)
    r2 = D.cross_validate(build, X.astype(np.float32), y, k=3, seed=2,
                          metrics=("accuracy", "loss"), epochs=80)
    assert r1 == r2 and r1["accuracy"]["mean"] > 0.8  # determinism by seed
    r3 = D.cross_validate(lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=100,
                                                learning_rate_init=0.01, random_state=0),
                          X, names, k=3, seed=0)
    assert r3["accuracy"]["mean"] > 0.8
    # regression targets: plain folds, the loss only
    Xr = X.astype(np.float32)
    yr = (Xr[:, 0] * 2).astype(np.float32)
    rr = D.cross_validate(lambda: nn.Sequential(nn.Dense(2, 1), seed=0), Xr, yr, k=3,
                          seed=0, metrics=("loss",), loss="mse", epochs=5)
    assert len(rr["loss"]["folds"]) == 3


@pytest.mark.parametrize("kw, exc, match", [
    (dict(build=None), TypeError, "build"),
    (dict(build=lambda: object()), TypeError, "fit"),
    (dict(metrics=("accurracy",)), ValueError, "accurracy"),
    (dict(metrics=("f1_average",)), ValueError, "f1_average"),
    (dict(metrics=()), ValueError, "metrics"),
    (dict(metrics=(3,)), TypeError, "metrics"),
    (dict(metrics=("accuracy", "accuracy")), ValueError, "distinct"),
    (dict(metrics=("f1",)), ValueError, "f1_macro"),  # 3 classes
    (dict(k=1), ValueError, "k"),
    (dict(k=31), ValueError, "class"),  # 30 rows per class
    (dict(y=np.zeros(5)), ValueError, "y"),
])
def test_cross_validate_bad_input(kw, exc, match):
    X, y = blobs()
    args = dict(build=Centroids, X=X, y=y, k=3, seed=0)
    args.update(kw)
    with pytest.raises(exc, match=match):
        D.cross_validate(**args)


def test_cross_validate_loss_needs_evaluate():
    class NoEvaluate(Centroids):
        evaluate = None
    X, y = blobs()
    Centroids.calls = []
    with pytest.raises(TypeError, match="evaluate"):
        D.cross_validate(NoEvaluate, X, y, k=3, metrics=("loss",))
    assert Centroids.calls == []  # refused before the first fold's fit, not after
    with pytest.raises(TypeError, match="build: returned the class"):
        D.cross_validate(lambda: Centroids, X, y, k=3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cross_validate_scikit_learn_pipelines_and_sparse_X():
    # a fit(X, y, **params) that routes keywords on (Pipeline) got seed= and verbose=,
    # which it refused; sparse X was refused as "a scalar"
    import scipy.sparse as sp
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from fastdl.sklearn import MLPClassifier

    class Keywords(Centroids):
        def fit(self, X, y, **params):
            assert params == {}
            return super().fit(X, y)

    X, y = blobs()
    assert D.cross_validate(Keywords, X, y, k=3, seed=0)["accuracy"]["mean"] > 0.8
    mlp = lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=0.01,
                                random_state=0)
    res = D.cross_validate(lambda: make_pipeline(StandardScaler(), mlp()), X, y, k=3, seed=0)
    assert res["accuracy"]["mean"] > 0.8
    dense = D.cross_validate(mlp, X, y, k=3, seed=0)
    assert D.cross_validate(mlp, sp.csr_matrix(X), y, k=3, seed=0) == dense
