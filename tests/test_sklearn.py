"""fastdl.sklearn: scikit-learn's own estimator checks; the training loop against
scikit-learn's MLP (float64: the same loss curve to rounding, which pins the alpha
convention, the losses, the batch order and the stopping rules); the meta-estimators;
pickling, labels of any type, pandas, sparse input, partial_fit and warm_start; fastdl's
extras; bad parameters; the examples of docs/sklearn.md."""
import io
import pathlib
import pickle
import re
from contextlib import redirect_stdout

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier as SkClassifier, MLPRegressor as SkRegressor
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastdl.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def digits(n=300):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def curves_match(ours, theirs, rtol):
    a, b = np.asarray(ours.loss_curve_), np.asarray(theirs.loss_curve_)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol)


def adam_eps_on_v_hat(self, grads):
    """scikit-learn's Adam step with epsilon added to sqrt(v_hat), as fastdl (and PyTorch)
    add it; scikit-learn adds it to sqrt(v), the one documented difference."""
    self.t += 1
    self.ms = [self.beta_1 * m + (1 - self.beta_1) * g for m, g in zip(self.ms, grads)]
    self.vs = [self.beta_2 * v + (1 - self.beta_2) * g**2 for v, g in zip(self.vs, grads)]
    c1, c2 = 1 - self.beta_1**self.t, 1 - self.beta_2**self.t
    return [-self.learning_rate_init * (m / c1) / (np.sqrt(v / c2) + self.epsilon)
            for m, v in zip(self.ms, self.vs)]


SMALL = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=12, dtype="float64")


@pytest.mark.parametrize("kw", [
    dict(solver="sgd"),
    dict(solver="sgd", alpha=0.05, batch_size=64),  # a partial last batch: alpha / m
    dict(solver="sgd", activation="tanh", learning_rate="invscaling", learning_rate_init=0.1),
    dict(solver="sgd", activation="logistic", momentum=0.5, nesterovs_momentum=False),
    dict(solver="sgd", learning_rate="adaptive", n_iter_no_change=2, tol=0.05, max_iter=30),
    dict(solver="sgd", tol=0.02, n_iter_no_change=2, max_iter=50),  # stops on tol
    dict(solver="sgd", early_stopping=True, validation_fraction=0.2),
    dict(solver="sgd", shuffle=False, hidden_layer_sizes=()),
    dict(solver="adam"),
    dict(solver="adam", beta_1=0.5, beta_2=0.9, learning_rate_init=0.01, alpha=0.1),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel"])
def test_classifier_trains_as_sklearn(kw, target, monkeypatch):
    monkeypatch.setattr(AdamOptimizer, "_get_updates", adam_eps_on_v_hat)
    X, y = digits()
    if target == "binary":
        y = np.where(y > 4, "big", "small")
    elif target == "multilabel":
        y = np.stack([y > 4, y % 2 == 0, y == 3], axis=1).astype(int)
    params = dict(SMALL, **kw)
    ours = MLPClassifier(**params).fit(X, y)
    sk_params = {k: v for k, v in params.items() if k != "dtype"}
    theirs = SkClassifier(**sk_params).fit(X, y)
    curves_match(ours, theirs, rtol=1e-9)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-7)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, atol=1e-7)
    if kw.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
        assert ours.best_validation_score_ == theirs.best_validation_score_
        assert ours.best_loss_ is None
    else:
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-6)
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_regressor_trains_as_sklearn(loss, outputs, early_stopping):
    X, y = digits()
    t = X[:, 20:23] @ np.array([1.0, 2.0, 3.0])
    Y = t if outputs == 1 else np.stack([t, 2 * t + 1], axis=1)
    params = dict(SMALL, solver="sgd", loss=loss, early_stopping=early_stopping)
    ours = MLPRegressor(**params).fit(X, Y)
    theirs = SkRegressor(**{k: v for k, v in params.items() if k != "dtype"}).fit(X, Y)
    curves_match(ours, theirs, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)
    assert ours.predict(X).shape == Y.shape
    if early_stopping:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)


def test_adam_default_is_close_to_sklearn_and_float32_reaches_the_same_accuracy():
    X, y = digits(600)
    theirs = SkClassifier(hidden_layer_sizes=(32,), random_state=0, max_iter=30).fit(X, y)
    ours64 = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, max_iter=30,
                           dtype="float64").fit(X, y)
    curves_match(ours64, theirs, rtol=0.05)  # epsilon's place only
    ours32 = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, max_iter=30).fit(X, y)
    assert ours32.coefs_[0].dtype == np.float32
    assert ours32.predict_proba(X).dtype == np.float32
    Xt, yt = load_digits(return_X_y=True)
    Xt, yt = Xt[1000:] / 16.0, yt[1000:]
    assert ours32.score(Xt, yt) >= theirs.score(Xt, yt) - 0.01


def test_partial_fit_as_sklearn_and_after_pickling():
    X, y = digits()
    params = dict(SMALL, solver="sgd")
    sk = {k: v for k, v in params.items() if k != "dtype"}
    ours, theirs = MLPClassifier(**params), SkClassifier(**sk)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    for part in (slice(0, 150), slice(150, 300), slice(0, 300)):
        ours.partial_fit(X[part], y[part], classes=np.arange(10))
        theirs.partial_fit(X[part], y[part], classes=np.arange(10))
        assert ours.n_iter_ == 1
    curves_match(ours, theirs, rtol=1e-9)
    assert ours.t_ == theirs.t_ == 600
    # pickled mid-training, the copy goes on exactly as the original (weights and
    # optimizer state restored, layers re-bound to the one parameter buffer)
    copy = pickle.loads(pickle.dumps(ours))
    ours.partial_fit(X, y)
    copy.partial_fit(X, y)
    np.testing.assert_array_equal(copy.predict_proba(X), ours.predict_proba(X))
    assert copy.loss_curve_ == ours.loss_curve_
    with pytest.raises(ValueError, match="not the same as on last call"):
        ours.partial_fit(X, y, classes=np.arange(11))
    with pytest.raises(ValueError, match="classes not in"):
        ours.partial_fit(X, y + 20)


def test_set_params_between_partial_fits_keeps_the_optimizers_schedule():
    # as scikit-learn, the optimizer partial_fit keeps keeps its schedule: the solver and
    # learning_rate were read anew each call, and a kept Adam decayed by invscaling
    rs = np.random.RandomState(0)
    X, y = rs.randn(40, 3), rs.randn(40)
    for solver in ("adam", "sgd"):
        base = dict(hidden_layer_sizes=(4,), random_state=0, solver=solver)
        ours, theirs = MLPRegressor(**base, dtype="float64"), SkRegressor(**base)
        for est in (ours, theirs):
            est.partial_fit(X, y)
            est.set_params(solver="sgd", learning_rate="invscaling")
            for _ in range(3):
                est.partial_fit(X, y)
        # (Adam's documented epsilon difference: 6e-9; the old schedule: 3e-3)
        curves_match(ours, theirs, rtol=1e-7)


def test_warm_start_continues():
    X, y = digits()
    est = MLPClassifier(**dict(SMALL, solver="sgd", warm_start=True, max_iter=5)).fit(X, y)
    first = list(est.loss_curve_)
    est.fit(X, y)
    assert est.n_iter_ == 5 and len(est.loss_curve_) == 10 and est.t_ == 10 * 300
    assert est.loss_curve_[:5] == first and est.loss_curve_[5] < first[-1]
    cold = MLPClassifier(**dict(SMALL, solver="sgd", max_iter=5)).fit(X, y).fit(X, y)
    assert cold.loss_curve_ == first  # without warm_start, fit starts over
    with pytest.raises(ValueError, match="same classes"):
        est.fit(X, (y + 1) % 11)
    est.set_params(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="must stay"):
        est.fit(X, y)


def test_meta_estimators_pipeline_grid_search_cross_val_score():
    X, y = digits(240)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=30, random_state=0))
    assert pipe.fit(X, y).score(X, y) > 0.9
    grid = GridSearchCV(MLPClassifier(max_iter=20, random_state=0),
                        {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}, cv=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"hidden_layer_sizes", "alpha"}
    scores = cross_val_score(MLPRegressor(max_iter=30, random_state=0), X, X[:, 20], cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_labels_of_any_type_and_pandas_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = digits(200)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])
    for labels in (names[y], y - 5, 2.0 * y):
        est = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=40,
                            random_state=0)
        est.fit(X, labels)
        np.testing.assert_array_equal(est.classes_, np.unique(labels))
        assert est.predict(X).dtype == np.asarray(labels).dtype
        assert est.score(X, labels) > 0.8
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    est.fit(df, pd.Series(names[y]))
    np.testing.assert_array_equal(est.feature_names_in_, df.columns)
    assert est.n_features_in_ == 64
    with pytest.warns(UserWarning, match="feature names"):
        plain = est.predict(X)
    np.testing.assert_array_equal(est.predict(df), plain)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df.rename(columns={"px0": "other"}))


def test_sparse_input_gives_the_dense_result():
    X, y = digits()
    Xs = sp.csr_matrix(X)
    for fmt in ("csr", "csc", "coo"):
        for shuffle in (True, False):
            params = dict(SMALL, shuffle=shuffle)
            dense = MLPClassifier(**params).fit(X, y)
            sparse = MLPClassifier(**params).fit(Xs.asformat(fmt), y)
            assert sparse.loss_curve_ == pytest.approx(dense.loss_curve_, rel=1e-12)
            np.testing.assert_allclose(sparse.predict_proba(Xs.asformat(fmt)),
                                       dense.predict_proba(X), rtol=1e-12)


def test_pickle_round_trip_and_views():
    X, y = digits()
    est = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=5, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    assert [c.shape for c in est.coefs_] == [(64, 16), (16, 8), (8, 10)]
    assert [b.shape for b in est.intercepts_] == [(16,), (8,), (10,)]
    assert est.n_layers_ == 4 and est.n_outputs_ == 10 and est.out_activation_ == "softmax"
    est.coefs_[-1][...] = 0
    est.intercepts_[-1][...] = np.arange(10)
    assert np.all(est.predict(X) == 9)  # coefs_ are views into the trained network
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    assert not hasattr(MLPClassifier(), "coefs_")


def test_assigned_coefs_and_intercepts_are_the_models():
    # scikit-learn lets coefs_ / intercepts_ be assigned (weights from elsewhere): ours
    # copy them into the network, which then predicts as scikit-learn's with them
    X, y = digits()
    theirs = SkClassifier(hidden_layer_sizes=(16, 8), max_iter=5, random_state=1).fit(X, y)
    ours = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=1, random_state=0,
                         dtype="float64").fit(X, y)
    ours.coefs_, ours.intercepts_ = theirs.coefs_, tuple(theirs.intercepts_)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)
    assert ours.coefs_[0] is not theirs.coefs_[0]  # copied, not shared
    before = [c.copy() for c in ours.coefs_]
    good = [c * 2 for c in theirs.coefs_]
    for bad, exc, match in [
            (good[:2], ValueError, r"coefs_: expected a list of 3 arrays, got list of 2"),
            (good[0], ValueError, r"coefs_: expected a list of 3 arrays, got ndarray"),
            (good[:2] + [good[2].T], ValueError, r"coefs_\[2\]: expected shape \(8, 10\)"),
            (good[:2] + [good[2] * np.nan], ValueError, r"coefs_\[2\]: expected finite"),
            (good[:2] + [good[2].astype(complex)], TypeError, r"coefs_\[2\]: expected real"),
            (good[:2] + [good[2].astype(str)], TypeError, r"coefs_\[2\]")]:
        with pytest.raises(exc, match=match):
            ours.coefs_ = bad
        for a, b in zip(ours.coefs_, before):  # none copied when one is refused
            np.testing.assert_array_equal(a, b)
    small = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"coefs_\[0\]: 1e\+300 overflows float32"):
        small.coefs_ = [np.full(c.shape, 1e300) for c in small.coefs_]
    with pytest.raises(AttributeError, match="not fitted"):
        MLPClassifier().intercepts_ = theirs.intercepts_


def test_a_pickle_from_a_machine_with_another_backend_loads(monkeypatch):
    # a backend built there and not here: unpickling raised, and the fitted estimator was
    # lost; now it predicts on the default backend, with a warning (as fastdl.load)
    from fastdl import _config

    X, y = digits()
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                        backend="numpy").fit(X, y)
    blob = pickle.dumps(est)
    monkeypatch.setattr(_config, "backends", lambda: ("cython",))
    with pytest.warns(RuntimeWarning, match="backend 'numpy', which is not available"):
        copy = pickle.loads(blob)
    np.testing.assert_allclose(copy.predict_proba(X), est.predict_proba(X), rtol=1e-5)


def test_random_state_reproducible_and_convergence_warning():
    X, y = digits()
    a = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=1)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        a.fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=1).fit(X, y)
    c = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=2).fit(X, y)
    assert a.loss_curve_ == b.loss_curve_ and a.loss_curve_ != c.loss_curve_
    rs = np.random.RandomState(3)
    d = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=rs).fit(X, y)
    assert np.isfinite(d.loss_).all()
    # no tolerance stop: every epoch runs
    e = MLPClassifier(hidden_layer_sizes=(4,), max_iter=40, tol=0.0, n_iter_no_change=np.inf,
                      random_state=0).fit(X[:50], y[:50])
    assert e.n_iter_ == 40


def test_extras_dropout_class_weight_backend_dtype():
    X, y = digits()
    base = dict(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=20,
                random_state=0)
    plain = MLPClassifier(**base).fit(X, y)
    drop = MLPClassifier(**base, dropout=0.3).fit(X, y)
    again = MLPClassifier(**base, dropout=0.3).fit(X, y)
    assert drop.loss_curve_ == again.loss_curve_ != plain.loss_curve_
    np.testing.assert_array_equal(drop.predict(X), again.predict(X))  # no dropout at predict
    yb = (y == 3).astype(int)
    heavy = MLPClassifier(**base, class_weight={0: 1.0, 1: 20.0}).fit(X, yb)
    light = MLPClassifier(**base).fit(X, yb)
    assert heavy.predict(X).sum() > light.predict(X).sum()  # more positives
    bal = MLPClassifier(**base, class_weight="balanced").fit(X, y)
    assert bal.score(X, y) > 0.8
    with pytest.raises(ValueError, match="partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(class_weight="balanced").fit(X, np.stack([yb, 1 - yb], 1))
    ref = MLPClassifier(**base, backend="numpy", dtype="float64").fit(X, y)
    fast = MLPClassifier(**base, backend="cython", dtype="float64").fit(X, y)
    np.testing.assert_allclose(fast.loss_curve_, ref.loss_curve_, rtol=1e-8)
    assert ref.predict_proba(X).dtype == np.float64


def test_verbose_prints_and_predict_log_proba():
    X, y = digits(100)
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, verbose=True, random_state=0)
    out = io.StringIO()
    with redirect_stdout(out):
        est.fit(X, y)
    assert "Iteration 1, loss =" in out.getvalue()
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), est.predict_proba(X),
                               rtol=1e-6)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(solver="lbfgs"), ValueError, "lbfgs"),
    (dict(solver="rmsprop"), ValueError, "solver"),
    (dict(activation="sigmoid"), ValueError, "logistic"),
    (dict(hidden_layer_sizes=(0,)), ValueError, "hidden_layer_sizes"),
    (dict(hidden_layer_sizes="big"), TypeError, "hidden_layer_sizes"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size="big"), ValueError, "batch_size"),
    (dict(learning_rate="cosine"), ValueError, "learning_rate"),
    (dict(learning_rate_init=0.0), ValueError, "learning_rate_init"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(early_stopping=True, validation_fraction=0.0), ValueError, "validation_fraction"),
    (dict(beta_1=1.0), ValueError, "beta_1"),
    (dict(epsilon=0.0), ValueError, "epsilon"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(class_weight="heavy"), ValueError, "class_weight"),
    (dict(class_weight={0: -1.0}), ValueError, "class_weight"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(dtype="int32"), TypeError, "dtype"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(tol=-1.0), ValueError, "tol"),
])
def test_bad_parameters_raise_at_fit(kw, exc, match):
    X, y = digits(40)
    est = MLPClassifier(**dict(dict(max_iter=2), **kw))  # the constructor only stores
    with pytest.raises(exc, match=match):
        est.fit(X, y)


def test_bad_regressor_input_and_stopping_rules():
    X, y = digits(40)
    with pytest.raises(ValueError, match="class_weight"):
        MLPRegressor(class_weight="balanced").fit(X, y)
    with pytest.raises(ValueError, match="poisson"):
        MLPRegressor(loss="poisson").fit(X, y - 5.0)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(X, y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)
    with pytest.raises(ValueError, match="too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.01).fit(X[:20], y[:20])
    with pytest.warns(UserWarning, match="clipped"):
        MLPRegressor(batch_size=500, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="non-finite"), np.errstate(all="ignore"):
        MLPRegressor(learning_rate_init=1e6, solver="sgd", max_iter=5,
                     random_state=0).fit(X * 1e6, y * 1e6)


def test_docs_examples_run():
    """The Python blocks of docs/sklearn.md, in order, in one namespace."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "sklearn.md").read_text()
    blocks = re.findall(r"```python\n(.+?)\n```", text, flags=re.S)
    assert len(blocks) >= 3
    out = io.StringIO()
    namespace = {}
    with redirect_stdout(out):
        for code in blocks:
            exec(compile(code, "docs/sklearn.md", "exec"), namespace)
    assert namespace["clf"].score(namespace["X_test"], namespace["y_test"]) > 0.9
    assert namespace["res"]["accuracy"]["mean"] > 0.8
