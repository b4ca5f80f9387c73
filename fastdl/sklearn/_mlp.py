"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's estimators of the same names,
trained by fastdl's kernels."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import (check_classification_targets, type_of_target,
                                      unique_labels)
from sklearn.utils.validation import column_or_1d

from fastdl import _validate as V
from fastdl.sklearn._base import BaseMLP, _check_fits_array, _sk_validate_data

__all__ = ["MLPClassifier", "MLPRegressor"]


def _numeric_targets(y):
    """The regressor's ``y`` (checked by scikit-learn: no NaN or inf in a numeric array)
    as numbers: an object array converted to float64, as scikit-learn's ``y_numeric``
    does (``["1", "2"]`` as objects trains on 1 and 2, as in scikit-learn), then checked
    to be finite (``"nan"`` converts to NaN after scikit-learn's check); an array of
    strings, bytes or anything else not a number is refused (scikit-learn fails on it
    too, in numpy's arithmetic)."""
    if sp.issparse(y):
        return y
    if y.dtype.kind == "O":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"y: expected numeric targets, got a value that is not a "
                             f"number ({e})") from None
        ok = np.isfinite(y)
        if not ok.all():
            raise ValueError(f"y: expected finite targets, got {y[~ok][0]}")
    elif y.dtype.kind not in "fiub":
        raise TypeError(f"y: expected numeric targets, got an array of {y.dtype} (convert "
                        f"it with y.astype(float) if its strings are numbers)")
    return y


def _given(local_vars):
    """A constructor's arguments, from its ``locals()``."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "__class__")}


_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer; ``()`` for none (a linear model).
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Of the hidden layers (scikit-learn's names; "logistic" is the sigmoid).
    solver : {"adam", "sgd"}, default="adam"
        "lbfgs" is refused.
    alpha : float >= 0, default=1e-4
        L2 penalty ``0.5 * alpha * sum ||W||^2 / m`` per batch of ``m`` rows, on the
        weights only: scikit-learn's convention, exactly.
    batch_size : int or "auto", default="auto"
        "auto" is ``min(200, n_samples)``; a larger int is clipped with a warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule for ``solver="sgd"``: invscaling sets ``lr = learning_rate_init /
        (t_ + 1) ** power_t`` after each epoch; adaptive divides it by 5 instead of
        stopping when the loss (or validation score) stalls.
    learning_rate_init : float > 0, default=1e-3
    power_t : float >= 0, default=0.5
    max_iter : int >= 1, default=200
        Epochs (passes over the data); reaching it warns ``ConvergenceWarning``.
    shuffle : bool, default=True
    random_state : None, int or numpy.random.RandomState, default=None
        Initial weights, validation split, batch order and dropout masks.
    tol : float >= 0, default=1e-4
    verbose : bool or int, default=False
    warm_start : bool, default=False
    momentum : float in [0, 1), default=0.9
        For ``solver="sgd"`` (scikit-learn also accepts 1).
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (stratified for binary targets, as
        scikit-learn's code does), score them after each epoch (accuracy, or R^2 for the regressor),
        stop after ``n_iter_no_change`` epochs without a gain of ``tol``, and keep the
        best epoch's weights.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float > 0, default=1e-8
        Adam's epsilon, added to sqrt(v_hat) (scikit-learn adds it to sqrt(v)).
    n_iter_no_change : int >= 1 or np.inf, default=10
    max_fun : int, default=15000
        Accepted and unused, as by scikit-learn for the stochastic solvers.
    dropout : float in [0, 1), default=0.0
        fastdl: inverted dropout after each hidden layer while training.
    class_weight : {dict, "balanced"} or None, default=None
        fastdl (classifier only): each row's loss weighted by its class's weight, the
        batch loss divided by the batch's total weight.
    backend : str or None, default=None
        fastdl: the kernels' backend ("numpy", "numba", "cython"); None is the default.
    dtype : "float32" or "float64", default="float32"
        fastdl: the network's parameters and arithmetic; outputs have this dtype.
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron classifier trained by fastdl: scikit-learn's
    ``MLPClassifier`` (same parameters, attributes and training loop), several times faster.

    Multi-class targets train a softmax output with cross-entropy; binary targets and
    multilabel targets (a 2-D 0/1 indicator ``y``) one sigmoid output per label with binary
    cross-entropy.  Labels may be of any type scikit-learn accepts (strings, negative ints).
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : (n_classes,) array of the labels (for multilabel: the label indices)
    loss_, loss_curve_ : the last epoch's loss and every epoch's (penalty included)
    best_loss_ : the lowest loss (None with early stopping)
    validation_scores_, best_validation_score_ : with early stopping, else None
    n_iter_ : epochs run by the last ``fit`` (1 after ``partial_fit``)
    t_ : training rows seen, over every call
    coefs_, intercepts_ : per-layer views into the parameters (assigning a list of arrays
        copies them in)
    n_features_in_, feature_names_in_, n_layers_, n_outputs_, out_activation_
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, class_weight=None, backend=None, dtype="float32"):
        super().__init__(**_given(locals()))

    def _validate_input(self, X, y, incremental, reset):
        X, y = _sk_validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                                 dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        # which calls define the classes, as scikit-learn's MLPClassifier._validate_input
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        onehot = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            Y = np.ascontiguousarray(onehot.argmax(axis=1), dtype=np.int64)
        else:  # binary (one output) or multilabel (one per label)
            Y = onehot
        return X, Y, y

    def _n_outputs(self, Y):
        return len(self.classes_) if Y.ndim == 1 else Y.shape[1]

    def _output_kind(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _as_targets(self, Y, dtype):
        # multiclass: int64 labels; binary and multilabel: 0/1 columns of the model's dtype
        return Y if Y.ndim == 1 else np.ascontiguousarray(Y, dtype=dtype)

    def _stratify(self, y):
        # as scikit-learn's code: only a network with one output (binary targets) gets a
        # stratified split (its n_outputs_ counts the binarized columns)
        if self.n_outputs_ == 1:
            return self._label_binarizer.transform(y)
        return None

    def _class_weight_array(self, y, incremental, dtype):
        cw = self.class_weight
        if cw is None:
            return None
        if not (cw == "balanced" if isinstance(cw, str) else isinstance(cw, dict)):
            raise ValueError(f"class_weight: expected None, 'balanced' or a dict "
                             f"{{label: weight}}, got {cw!r}")
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            raise ValueError("class_weight: not supported with multilabel targets")
        if isinstance(cw, str) and incremental:
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: "
                             "pass a dict computed on the whole data, e.g. with "
                             "sklearn.utils.class_weight.compute_class_weight")
        if isinstance(cw, dict):
            # each value a real number (a string or None reached numpy's isfinite, whose
            # TypeError named nothing) that the model's dtype holds (1e300 became inf in
            # float32, and the weights NaN)
            cw = {k: V.check_fits(f"class_weight[{k!r}]",
                                  V.check_finite(f"class_weight[{k!r}]", v, lo=0.0), dtype)
                  for k, v in cw.items()}
        w = compute_class_weight(cw, classes=self.classes_, y=y)
        if len(self.classes_) == 1:
            w = np.concatenate([w, w])  # a single class: one logistic output, rows all 0
        # a batch's loss is divided by its total weight, so only the ratios matter: scaled
        # to at most 1, a batch's weights cannot add up beyond the dtype (the softmax
        # kernel's float32 total of three weights of 3e38 was inf, and the weights NaN)
        scale = max(float(w.max()), 1.0)
        out = np.ascontiguousarray(w / scale, dtype=dtype)
        lost = (out == 0) & (w > 0)  # a positive weight would count as 0
        if lost.any():
            i = int(np.argmax(lost))
            k = self.classes_[min(i, len(self.classes_) - 1)]
            k = k.item() if isinstance(k, np.generic) else k  # 1, not np.int64(1)
            raise ValueError(f"class_weight[{k!r}]: {w[i]:g} rounds to 0 in "
                             f"{np.dtype(dtype)} (the model's dtype) once the weights are "
                             f"divided by the largest, {scale:g}")
        return out

    def _score_val(self, X, y):
        return accuracy_score(y, self._predict_outputs(self._network.outputs(X)))

    def _predict_outputs(self, P):
        if self.n_outputs_ == 1:
            P = P.ravel()
        return self._label_binarizer.inverse_transform(P)

    def predict(self, X):
        """The predicted labels ``(n_samples,)`` (``(n_samples, n_labels)`` 0/1 for
        multilabel): the most probable class; for one sigmoid output, the positive class
        where its probability is above 0.5."""
        X = self._validate_X(X)
        return self._predict_outputs(self._network.outputs(X))

    def predict_proba(self, X):
        """Probabilities ``(n_samples, n_classes)`` in the order of ``classes_`` (per label,
        independent, for multilabel), of the network's dtype."""
        X = self._validate_X(X)
        P = self._network.outputs(X)
        if self.n_outputs_ == 1:
            p = P.ravel()
            return np.vstack([1 - p, p]).T
        return P

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer
        state.  ``classes`` (every label of the whole data) is required on the first call,
        as in scikit-learn."""
        if self.solver not in ("adam", "sgd"):
            self._check_params()  # the message for lbfgs and unknown solvers
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call "
                                     f"to partial_fit, was: {self.classes_!r}")
            else:
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
                self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron regressor trained by fastdl: scikit-learn's
    ``MLPRegressor`` (same parameters, attributes and training loop), several times faster.

    ``loss="squared_error"`` (identity output, half the mean squared error) or
    ``"poisson"`` (log link, targets >= 0); ``y`` may have several columns.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
""" + _PARAMS_DOC.split("----------\n", 1)[1] + """
    Attributes
    ----------
    As ``MLPClassifier``'s, without ``classes_``; ``validation_scores_`` are R^2 scores.
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, class_weight=None, backend=None, dtype="float32"):
        super().__init__(**_given(locals()))

    def _check_params(self):
        if self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"loss: expected 'squared_error' or 'poisson', got {self.loss!r}")
        return super()._check_params()

    def _validate_input(self, X, y, incremental, reset):
        # not y_numeric=True: it converts object arrays only (numpy's error for "a" named
        # nothing), and lets string arrays through, which trained silently on ["1", "2"],
        # failed in numpy, or let a "nan" pass the finiteness check; _numeric_targets
        # does what it does, with messages naming y
        X, y = _sk_validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                                 dtype=(np.float64, np.float32), reset=reset)
        y = _numeric_targets(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(f"y: the poisson loss needs targets >= 0, got {y.min()}")
        Y = y.reshape(y.shape[0], -1)
        return X, Y, y

    def _n_outputs(self, Y):
        return Y.shape[1]

    def _output_kind(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _as_targets(self, Y, dtype):
        _check_fits_array("y", Y, dtype)
        return np.ascontiguousarray(Y, dtype=dtype)

    def _score_val(self, X, y):
        pred = self._predict_outputs(self._network.outputs(X))
        if not np.all(np.isfinite(pred)):
            return np.nan
        return r2_score(y, pred)

    def _predict_outputs(self, P):
        return P.ravel() if P.shape[1] == 1 else P

    def predict(self, X):
        """Predicted values ``(n_samples,)`` (``(n_samples, n_outputs)`` for several
        outputs), of the network's dtype."""
        X = self._validate_X(X)
        return self._predict_outputs(self._network.outputs(X))

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer
        state."""
        return self._fit(X, y, incremental=True)
