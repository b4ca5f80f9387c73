"""fastdl.sklearn: inputs at the edges, each refused with an error naming scikit-learn's
argument (X, y, class_weight, a hyper-parameter) or handled as documented: class weights
of 0, values that overflow the model's float32, the regressor's string targets, and
hyper-parameters that are infinite or do not fit the model's dtype."""
import numpy as np
import pytest
import scipy.sparse as sp

from fastdl.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X4 = np.array([[0.0], [1.0], [2.0], [3.0]])
Y4 = np.array([0, 1, 0, 1])


# class weights of 0 -------------------------------------------------------------------
@pytest.mark.parametrize("y", [
    np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0]),  # binary: the logistic output
    np.array([0, 0, 0, 0, 1, 2, 1, 2, 0, 1, 2, 0]),  # multiclass: softmax
], ids=["binary", "multiclass"])
def test_a_batch_of_zero_weight_rows_adds_no_loss_and_no_gradient(y):
    # the first batch of 4 is all class 0, of weight 0: it divided by a total weight of
    # 0 (ZeroDivisionError, or NaN weights and a "non-finite" error for softmax).  Its
    # step must change nothing (plain SGD, no penalty), so the fit continues exactly as
    # one over the other rows alone, and the epoch loss counts it as 0 over its 4 rows
    X = np.linspace(-1.0, 1.0, 12).reshape(-1, 1)
    params = dict(hidden_layer_sizes=(3,), solver="sgd", momentum=0.0, alpha=0.0,
                  batch_size=4, shuffle=False, random_state=0, dtype="float64",
                  class_weight={c: float(c != 0) for c in np.unique(y)})
    classes = np.unique(y)
    full = MLPClassifier(**params).partial_fit(X, y, classes=classes)
    rest = MLPClassifier(**params).partial_fit(X[4:], y[4:], classes=classes)
    for a, b in zip(full.coefs_ + full.intercepts_, rest.coefs_ + rest.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert full.loss_ == pytest.approx(rest.loss_ * 8 / 12, rel=1e-12)


def test_zero_class_weights_in_shuffled_batches_train():
    # the audit's case: a rare class of weight 0 leaves some batches without weight
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 2))
    y = (rng.random(100) < 0.1).astype(int)
    est = MLPClassifier(hidden_layer_sizes=(4,), batch_size=8, max_iter=5, random_state=0,
                        class_weight={0: 0.0, 1: 1.0}).fit(X, y)
    assert np.all(np.isfinite(est.loss_curve_))
    y3 = np.r_[np.zeros(36, int), 1, 1, 2, 2]
    est = MLPClassifier(hidden_layer_sizes=(2,), batch_size=2, max_iter=5, random_state=0,
                        class_weight={0: 0.0, 1: 1.0, 2: 1.0})
    est.fit(np.arange(40.0).reshape(-1, 1), y3)
    assert np.all(np.isfinite(est.predict_proba(np.arange(40.0).reshape(-1, 1))))
    # every weight 0: only the L2 penalty is left to train on
    est = MLPClassifier(hidden_layer_sizes=(2,), max_iter=3, random_state=0,
                        class_weight={0: 0.0, 1: 0.0}).fit(X, y)
    assert np.all(np.isfinite(est.loss_curve_)) and est.loss_ < 1e-3


# values that overflow the model's float32 -----------------------------------------------
def test_X_that_overflows_float32_is_refused_naming_X():
    clf = MLPClassifier(hidden_layer_sizes=(3,), max_iter=5, random_state=0).fit(X4, Y4)
    reg = MLPRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0).fit(X4, Y4)
    big = np.array([[1e39], [-1e39]])
    # were [[nan, nan]] and made-up labels, with no error
    for call in (clf.predict, clf.predict_proba, clf.predict_log_proba, reg.predict):
        with pytest.raises(ValueError, match=r"^X: .*overflows float32"):
            call(big)
    with pytest.raises(ValueError, match=r"^X: -1e\+39 overflows float32"):
        clf.predict(big[1:])
    with pytest.raises(ValueError, match=r"^X: .*overflows float32"):
        clf.predict(sp.csr_matrix(big))
    # in fit it was "Solver produced non-finite parameter weights"
    with pytest.raises(ValueError, match=r"^X: .*overflows float32"):
        MLPClassifier(max_iter=5).fit(X4 * 1e39, Y4)
    with pytest.raises(ValueError, match=r"^X: .*overflows float32"):
        MLPRegressor(max_iter=5).fit(sp.csc_matrix(X4 * 1e39), Y4)
    # the largest float32 itself is fine, and a float64 model takes 1e39
    assert clf.predict(np.array([[3e38]])).shape == (1,)
    est = MLPClassifier(max_iter=2, dtype="float64").fit(X4 * 1e39, Y4)
    assert est.predict(big).shape == (2,)


def test_regressor_y_that_overflows_float32_is_refused_naming_y():
    with pytest.raises(ValueError, match=r"^y: 1e\+39 overflows float32"):
        MLPRegressor(max_iter=5).fit(X4, np.array([0, 1e39, 0, 1]))
    with pytest.raises(ValueError, match=r"^y: .*overflows float32"):
        MLPRegressor(max_iter=5).partial_fit(X4, np.array([[0, 1], [1, -1e39], [0, 0], [1, 1]]))
    est = MLPRegressor(max_iter=2, dtype="float64").fit(X4, np.array([0, 1e39, 0, 1]))
    assert est.predict(X4).dtype == np.float64


# the regressor's string targets ------------------------------------------------------------
@pytest.mark.parametrize("y", [
    np.array(["1", "2", "3", "4"]),      # trained silently on 1..4
    np.array(["a", "b", "c", "d"]),      # numpy's "could not convert", naming nothing
    np.array(["nan", "2", "3", "4"]),    # NaN got past the finiteness check
    np.array([b"1", b"2", b"3", b"4"]),
    ["1", "2", "3", "4"],
])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])  # poisson: UFuncTypeError
def test_regressor_refuses_string_targets_naming_y(y, loss):
    with pytest.raises(TypeError, match=r"^y: expected numeric targets"):
        MLPRegressor(loss=loss, max_iter=2).fit(X4, y)


def test_regressor_object_targets_convert_as_in_sklearn():
    # scikit-learn converts an object y to float64 (y_numeric); so does fastdl, and the
    # fit is the float one.  What does not convert, or converts to NaN, is refused
    kw = dict(hidden_layer_sizes=(3,), max_iter=3, random_state=0, dtype="float64")
    a = MLPRegressor(**kw).fit(X4, np.array(["1", "2", "3", "4"], dtype=object))
    b = MLPRegressor(**kw).fit(X4, np.array([1.0, 2.0, 3.0, 4.0]))
    assert a.loss_curve_ == b.loss_curve_
    with pytest.raises(ValueError, match=r"^y: expected numeric targets.*'a'"):
        MLPRegressor(max_iter=2).fit(X4, np.array(["a", "2", "3", "4"], dtype=object))
    with pytest.raises(ValueError, match=r"^y: expected finite targets, got nan"):
        MLPRegressor(max_iter=2).fit(X4, np.array(["nan", "2", "3", "4"], dtype=object))
    est = MLPRegressor(max_iter=2).fit(X4, np.array([True, False, True, False]))
    assert est.predict(X4).shape == (4,)


# class_weight values ----------------------------------------------------------------------
@pytest.mark.parametrize("weight, exc, match", [
    (1e300, ValueError, r"^class_weight\[0\]: 1e\+300 overflows float32"),
    (float("inf"), ValueError, r"^class_weight\[0\]: expected a finite number"),
    (float("nan"), ValueError, r"^class_weight\[0\]"),
    (-1.0, ValueError, r"^class_weight\[0\]"),
    ("2", TypeError, r"^class_weight\[0\]: expected a real number"),
    (None, TypeError, r"^class_weight\[0\]: expected a real number"),
])
def test_class_weight_values_are_checked_naming_class_weight(weight, exc, match):
    est = MLPClassifier(max_iter=2, class_weight={0: weight, 1: 1.0})
    with pytest.raises(exc, match=match):
        est.fit(X4, Y4)
    assert not hasattr(est, "coefs_")  # refused before the network was built


def test_large_class_weights_only_count_by_their_ratios():
    X = np.random.default_rng(0).standard_normal((50, 3))
    y = np.arange(50) % 3
    kw = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    # each fits float32, their total in a batch did not: NaN weights, "non-finite" error
    big = MLPClassifier(**kw, class_weight={0: 3e38, 1: 3e38, 2: 3e38}).fit(X, y)
    plain = MLPClassifier(**kw).fit(X, y)
    np.testing.assert_allclose(big.loss_curve_, plain.loss_curve_, rtol=1e-6)
    a = MLPClassifier(**kw, dtype="float64", class_weight={0: 1.0, 1: 2.0, 2: 4.0}).fit(X, y)
    b = MLPClassifier(**kw, dtype="float64", class_weight={0: 0.25, 1: 0.5, 2: 1.0}).fit(X, y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-13)
    # a positive weight that would count as 0 beside the largest is refused
    with pytest.raises(ValueError, match=r"^class_weight\[1\]: 1e-40 rounds to 0 in float32"):
        MLPClassifier(**kw, class_weight={0: 3e38, 1: 1e-40, 2: 1.0}).fit(X, y)
    with pytest.raises(ValueError, match=r"^class_weight\['b'\]: 1e-50 rounds to 0"):
        MLPClassifier(**kw, class_weight={"a": 1.0, "b": 1e-50}).fit(
            X, np.array(["a", "b"])[y % 2])


# hyper-parameters ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(learning_rate_init=float("inf")), r"^learning_rate_init: expected a finite"),  # lr:
    (dict(alpha=float("inf")), r"^alpha: expected a finite"),  # was "l2:"
    (dict(epsilon=float("inf")), r"^epsilon: expected a finite"),
    (dict(tol=float("inf")), r"^tol: expected a finite"),  # was accepted
    (dict(power_t=float("inf")), r"^power_t: expected a finite"),
    (dict(epsilon=1e-50), r"^epsilon: 1e-50 rounds to 0 in float32"),  # was "eps:"
    (dict(alpha=1e300), r"^alpha: 1e\+300 overflows float32"),  # "non-finite weights"
    (dict(learning_rate_init=1e300), r"^learning_rate_init: 1e\+300 overflows float32"),
    (dict(learning_rate_init=1e-50), r"^learning_rate_init: 1e-50 rounds to 0 in float32"),
])
def test_hyper_parameters_are_refused_at_fit_naming_them(kw, match):
    est = MLPClassifier(max_iter=2, **kw)  # the constructor only stores, as scikit-learn's
    with pytest.raises(ValueError, match=match):
        est.fit(X4, Y4)
    with pytest.raises(ValueError, match=match):
        MLPRegressor(max_iter=2, **kw).partial_fit(X4, Y4)


def test_hyper_parameters_checked_against_the_models_dtype_only_where_used():
    # float64 holds them; sgd has no epsilon
    MLPClassifier(max_iter=2, dtype="float64", epsilon=1e-50, learning_rate_init=1e-50,
                  alpha=1e39).fit(X4, Y4)
    MLPClassifier(max_iter=2, solver="sgd", epsilon=1e-50).fit(X4, Y4)


# a refused refit ----------------------------------------------------------------------
def test_a_refused_refit_leaves_the_fitted_estimator_as_it_was():
    # the labels and n_features_in_ were replaced before class_weight and X's range were
    # checked: new classes_ over the old network (predict gave labels of the new y) or a
    # feature count the network did not have
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 3), np.arange(60) % 3
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    state = {k: v for k, v in vars(clf).items() if not k.startswith("_")}
    proba = clf.predict_proba(X)
    clf.set_params(class_weight={"a": -1.0})
    with pytest.raises(ValueError, match="class_weight"):
        clf.fit(X, np.array(["a", "b", "c", "d"] * 15))
    clf.set_params(class_weight=None)
    with pytest.raises(ValueError, match="X"):
        clf.fit(np.c_[X, X] * 1e39, np.array(["a", "b"] * 30))
    assert {k: v for k, v in vars(clf).items() if not k.startswith("_")}.keys() == state.keys()
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_features_in_ == 3
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


def test_a_loss_beyond_float32_squares_is_finite():
    # targets of 1e19 fit float32, their squares do not: the float32 dot made the loss
    # curve inf (and tol's rule, inf > inf - tol, never stopped the fit)
    rng = np.random.RandomState(0)
    X = rng.randn(50, 3)
    y = (X @ [1.0, 2.0, 3.0]) * 1e19
    reg = MLPRegressor(hidden_layer_sizes=(5,), random_state=0, max_iter=3).fit(X, y)
    assert np.all(np.isfinite(reg.loss_curve_)) and reg.loss_curve_[0] > 1e38
