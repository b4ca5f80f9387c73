"""What ``MLPClassifier`` and ``MLPRegressor`` share: the hyper-parameters and their checks,
``fit`` / ``partial_fit`` with scikit-learn's training loop (stopping on ``tol`` and
``n_iter_no_change``, early stopping on a validation split, the ``sgd`` learning-rate
schedules), the fitted attributes, tags and pickling.

The loop follows scikit-learn's ``BaseMultilayerPerceptron._fit_stochastic`` step for step
and draws from the same ``RandomState`` in the same order (initial weights, validation
split, one shuffle per epoch), so that one ``random_state`` gives both libraries the same
start, split and batches."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from fastdl import _validate as V
from fastdl.sklearn._network import HIDDEN_ACTIVATIONS, Network

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _sk_validate_data(est, *args, **kwargs):
        return est._validate_data(*args, **kwargs)

SOLVERS = ("adam", "sgd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _hidden_sizes(value):
    sizes = [value] if not hasattr(value, "__iter__") or isinstance(value, str) else list(value)
    out = []
    for s in sizes:
        out.append(V.check_int("hidden_layer_sizes", s, lo=1))
    return out


def _check_fits_array(name, a, dtype):
    """ValueError naming ``name`` when a value of ``a`` (finite: scikit-learn's checks
    ran) overflows ``dtype``, the model's: the cast made it +-inf, and the network gave
    NaN probabilities (predict made-up labels from them) or, in fit, non-finite weights
    blamed on the solver.  Two reductions, no copy; only a float wider than ``dtype``
    can overflow it (an int64's magnitude is below 1e19)."""
    data = a.data if sp.issparse(a) else a
    if data.dtype.kind != "f" or data.dtype.itemsize <= dtype.itemsize or not data.size:
        return
    top = float(np.finfo(dtype).max)
    hi, lo = float(data.max()), float(data.min())
    if hi > top or lo < -top:
        raise ValueError(f"{name}: {hi if hi > top else lo:g} overflows {dtype} (the "
                         f"model's dtype), expected values of at most {top:.6g} in "
                         f"magnitude; scale the data, or use dtype='float64'")


def _check_dtype(value):
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {value!r}") from None
    if dt not in V.FLOATS:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dt


class BaseMLP(BaseEstimator):
    """Shared base; use ``MLPClassifier`` or ``MLPRegressor``."""

    _loss_kinds: tuple = ()

    def __init__(self, **params):
        # scikit-learn's rule: the constructor stores each parameter as given (checks
        # happen in fit); the subclasses spell out the names and defaults
        for name, value in params.items():
            setattr(self, name, value)

    # hyper-parameters -----------------------------------------------------------
    def _check_params(self) -> dict:
        """The hyper-parameters checked (at fit, as scikit-learn does), as a dict."""
        import fastdl

        p = {"hidden": _hidden_sizes(self.hidden_layer_sizes)}
        if self.activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"activation: expected one of {tuple(HIDDEN_ACTIVATIONS)} "
                             f"(scikit-learn's names; 'logistic' is the sigmoid), "
                             f"got {self.activation!r}")
        if self.solver == "lbfgs":
            raise ValueError("solver: 'lbfgs' (full-batch L-BFGS) is not supported by "
                             "fastdl; use 'adam' or 'sgd', or scikit-learn's own MLP for "
                             "lbfgs")
        V.check_choice("solver", self.solver, SOLVERS)
        # finite, as scikit-learn asks (an inf reached fastdl's optimizer, whose message
        # named its own argument, l2 or lr)
        p["alpha"] = V.check_finite("alpha", self.alpha, lo=0.0)
        if isinstance(self.batch_size, str):
            V.check_choice("batch_size", self.batch_size, ("auto",))
        else:
            V.check_int("batch_size", self.batch_size, lo=1)
        V.check_choice("learning_rate", self.learning_rate, LEARNING_RATES)
        p["lr"] = V.check_finite("learning_rate_init", self.learning_rate_init, lo=0.0,
                                 lo_open=True)
        p["power_t"] = V.check_finite("power_t", self.power_t, lo=0.0)
        p["max_iter"] = V.check_int("max_iter", self.max_iter, lo=1)
        _check_bool("shuffle", self.shuffle)
        p["tol"] = V.check_finite("tol", self.tol, lo=0.0)
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"verbose: expected a bool or an int, "
                            f"got {type(self.verbose).__name__}")
        _check_bool("warm_start", self.warm_start)
        # fastdl's momentum is in [0, 1): 1 would never forget a gradient
        p["momentum"] = V.check_real("momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True)
        _check_bool("nesterovs_momentum", self.nesterovs_momentum)
        _check_bool("early_stopping", self.early_stopping)
        if self.early_stopping:
            V.check_real("validation_fraction", self.validation_fraction, lo=0.0, hi=1.0,
                         lo_open=True, hi_open=True)
        else:
            V.check_real("validation_fraction", self.validation_fraction, lo=0.0, hi=1.0,
                         hi_open=True)
        V.check_real("beta_1", self.beta_1, lo=0.0, hi=1.0, hi_open=True)
        V.check_real("beta_2", self.beta_2, lo=0.0, hi=1.0, hi_open=True)
        eps = V.check_finite("epsilon", self.epsilon, lo=0.0, lo_open=True)
        if isinstance(self.n_iter_no_change, numbers.Real) and \
                not isinstance(self.n_iter_no_change, numbers.Integral) and \
                self.n_iter_no_change == np.inf:
            p["n_iter_no_change"] = np.inf
        else:
            p["n_iter_no_change"] = V.check_int("n_iter_no_change", self.n_iter_no_change, 1)
        V.check_int("max_fun", self.max_fun, lo=1)
        p["dropout"] = V.check_real("dropout", self.dropout, lo=0.0, hi=1.0, hi_open=True)
        if self.backend is not None and self.backend not in fastdl.backends():
            raise ValueError(f"backend: expected None or one of {fastdl.backends()}, "
                             f"got {self.backend!r}")
        p["dtype"] = dt = _check_dtype(self.dtype)
        # as the kernels see them, in the model's dtype: alpha / m multiplies the weights
        # (m = 1 for a last batch of one row) and a learning rate the updates, so one that
        # overflows made the first step inf (then the misleading "non-finite parameter
        # weights" error); a rate or Adam's epsilon that rounds to 0 is not the positive
        # value asked for (epsilon 0: 0 / 0 where a gradient is 0)
        V.check_fits("alpha", p["alpha"], dt)
        V.check_fits("learning_rate_init", p["lr"], dt, nonzero=True)
        if self.solver == "adam":
            V.check_fits("epsilon", eps, dt, nonzero=True)
        return p

    # data -----------------------------------------------------------------------
    def _as_input(self, X, dtype):
        """Validated X as the network reads it: C-contiguous of ``dtype``, or CSR; a value
        that overflows ``dtype`` is refused."""
        _check_fits_array("X", X, dtype)
        if sp.issparse(X):
            return sp.csr_matrix(X, dtype=dtype)
        return np.ascontiguousarray(X, dtype=dtype)

    def _validate_X(self, X):
        """X for predict: the fitted feature count and names checked."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        X = _sk_validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                              dtype=(np.float64, np.float32))
        return self._as_input(X, self._network.dtype)

    # fitting ----------------------------------------------------------------------
    def fit(self, X, y):
        """Fit the network to ``X`` (n_samples, n_features; dense or sparse) and ``y``.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental):
        p = self._check_params()
        first_pass = not hasattr(self, "_network") or (not self.warm_start and not incremental)
        # everything is checked before training starts, and a refusal leaves a fitted
        # estimator as it was: _validate_input replaces classes_ and n_features_in_ first
        # (a refused class_weight then left new classes_ over the old network)
        before = dict(self.__dict__)
        try:
            X, Y, y_score, cw, sizes = self._checked_data(X, y, incremental, first_pass, p)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        rs = check_random_state(self.random_state)
        if first_pass:
            self._initialize(sizes, p, rs)
        self._fit_stochastic(X, Y, y_score, rs, p, incremental, cw)
        if not np.all(np.isfinite(self._network.params.data)):
            raise ValueError("Solver produced non-finite parameter weights. The input data "
                             "may contain large values and need to be preprocessed.")
        return self

    def _checked_data(self, X, y, incremental, first_pass, p):
        X, Y, y_score = self._validate_input(X, y, incremental, reset=first_pass)
        X = self._as_input(X, p["dtype"])
        Y = self._as_targets(Y, p["dtype"])
        cw = self._class_weight_array(y_score, incremental, p["dtype"])
        sizes = [X.shape[1], *p["hidden"], self._n_outputs(Y)]
        if not first_pass:
            net = self._network
            if net.sizes != sizes or net.activation != self.activation or \
                    net.dropout != p["dropout"] or net.dtype != p["dtype"]:
                raise ValueError(
                    f"hidden_layer_sizes, activation, dropout and dtype must stay as they "
                    f"were for warm_start and partial_fit: the network has layers "
                    f"{net.sizes}, activation {net.activation!r}, dropout {net.dropout}, "
                    f"dtype {net.dtype}; now {sizes}, {self.activation!r}, {p['dropout']}, "
                    f"{p['dtype']}")
        return X, Y, y_score, cw, sizes

    def _initialize(self, sizes, p, rs):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = sizes[-1]
        self.n_layers_ = len(sizes)
        self.out_activation_ = self._output_kind()
        self._network = Network(sizes, self.activation, self.out_activation_, p["dropout"],
                                p["dtype"], self.backend, rs)
        self._best_params = self._network.params.data.copy()
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._reset_scores()

    def _reset_scores(self):
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _fit_stochastic(self, X, Y, y_score, rs, p, incremental, cw):
        net = self._network
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early = bool(self.early_stopping)
        if early != (self.validation_scores_ is not None):
            self._reset_scores()  # warm_start after early_stopping was switched
        X_val = y_val = None
        if early:
            rows = np.arange(X.shape[0])
            tr, va = train_test_split(rows, random_state=rs,
                                      test_size=self.validation_fraction,
                                      stratify=self._stratify(y_score))
            if va.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            X_val, y_val = X[va], y_score[va]
            X, Y = X[tr], Y[tr]
        n = X.shape[0]
        if self.batch_size == "auto":
            bs = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", stacklevel=5)
            bs = int(np.clip(self.batch_size, 1, n))
        if not incremental or net.optimizer is None:
            net.make_optimizer(self.solver, p["alpha"], bs, learning_rate_init=p["lr"],
                               momentum=p["momentum"],
                               nesterovs_momentum=self.nesterovs_momentum,
                               beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
            self._lr_init = p["lr"]
            # the optimizer's schedule, fixed with it as scikit-learn's: a set_params
            # between partial_fit calls decayed a kept Adam's rate by invscaling
            self._schedule = (self.solver == "sgd", self.learning_rate, p["power_t"])
        net.seed_dropout(rs)
        opt = net.optimizer
        sgd, schedule, power_t = getattr(self, "_schedule", (
            self.solver == "sgd", self.learning_rate, p["power_t"]))  # (pickled before it)
        sample_idx = np.arange(n)
        self.n_iter_ = 0
        try:
            for _ in range(p["max_iter"]):
                order = None
                if self.shuffle:
                    # as sklearn.utils.shuffle: the previous order, permuted
                    perm = np.arange(n)
                    rs.shuffle(perm)
                    sample_idx = sample_idx[perm]
                    order = sample_idx
                self.loss_ = net.epoch(X, Y, order, bs, p["alpha"], cw)
                self.n_iter_ += 1
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early, X_val, y_val, p["tol"])
                if sgd and schedule == "invscaling":
                    opt.lr = self._lr_init / (self.t_ + 1) ** power_t
                if self._no_improvement_count > p["n_iter_no_change"]:
                    what = ("Validation score" if early else "Training loss")
                    msg = (f"{what} did not improve more than tol={p['tol']:f} for "
                           f"{p['n_iter_no_change']} consecutive epochs.")
                    if sgd and schedule == "adaptive" and opt.lr > 1e-6:
                        opt.lr = opt.lr / 5.0
                        self._no_improvement_count = 0
                        if self.verbose:
                            print(msg + " Setting learning rate to %f" % opt.lr)
                    else:
                        if self.verbose:
                            print(msg + " Stopping.")
                        break
                if incremental:
                    break
                if self.n_iter_ == p["max_iter"]:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                                  "the optimization hasn't converged yet." % p["max_iter"],
                                  ConvergenceWarning, stacklevel=5)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=5)
        if early:
            np.copyto(net.params.data, self._best_params)

    def _update_no_improvement_count(self, early, X_val, y_val, tol):
        if early:
            score = self._score_val(X_val, y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                np.copyto(self._best_params, self._network.params.data)
        else:
            last = self.loss_curve_[-1]
            if last > self.best_loss_ - tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last < self.best_loss_:
                self.best_loss_ = last

    def _as_targets(self, Y, dtype):
        """``Y`` as ``Network.epoch`` reads it (see there)."""
        return Y

    def _class_weight_array(self, y, incremental, dtype):
        """The per-class weights ``(C,)`` of ``dtype``, or None."""
        if self.class_weight is not None:
            raise ValueError("class_weight: only for classification (MLPClassifier)")
        return None

    def _stratify(self, y):
        return None

    # fitted attributes ------------------------------------------------------------
    def __sklearn_is_fitted__(self):
        return "_network" in self.__dict__

    @property
    def coefs_(self):
        """Weight matrices ``(fan_in, fan_out)`` per layer: views into the network's
        parameters (writing into them changes the model; assigning a list of arrays of their
        shapes copies them in)."""
        net = self.__dict__.get("_network")
        if net is None:
            raise AttributeError("coefs_: the estimator is not fitted yet")
        return net.coefs

    @coefs_.setter
    def coefs_(self, values):
        self._assign("coefs_", values)

    @property
    def intercepts_(self):
        """Bias vectors ``(fan_out,)`` per layer: views into the network's parameters."""
        net = self.__dict__.get("_network")
        if net is None:
            raise AttributeError("intercepts_: the estimator is not fitted yet")
        return net.intercepts

    @intercepts_.setter
    def intercepts_(self, values):
        self._assign("intercepts_", values)

    def _assign(self, name, values):
        """``est.coefs_ = [...]`` (as scikit-learn allows): every array is checked
        against the fitted layer's shape, finite and held by the model's dtype, then
        all are copied into the network's parameters (none when one is refused)."""
        net = self.__dict__.get("_network")
        if net is None:
            raise AttributeError(f"{name}: the estimator is not fitted yet (fit it first; "
                                 "the layers' shapes come from the data)")
        views = getattr(self, name)
        if not isinstance(values, (list, tuple)) or len(values) != len(views):
            raise ValueError(f"{name}: expected a list of {len(views)} arrays, got "
                             f"{type(values).__name__}"
                             + (f" of {len(values)}" if isinstance(values, (list, tuple))
                                else ""))
        arrays = []
        for i, (view, v) in enumerate(zip(views, values)):
            a = np.asarray(v)
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{name}[{i}]: expected real numbers, got {a.dtype}")
            if a.shape != view.shape:
                raise ValueError(f"{name}[{i}]: expected shape {view.shape}, got {a.shape}")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{name}[{i}]: expected finite values")
            _check_fits_array(f"{name}[{i}]", a, view.dtype)
            arrays.append(a)
        for view, a in zip(views, arrays):
            view[...] = a

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified one batch at a time
        return tags
