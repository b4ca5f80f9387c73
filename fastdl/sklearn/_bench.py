"""The scikit-learn comparison's workload: train scikit-learn's ``MLPClassifier`` or
fastdl's on the same data, architecture and epochs, and report the fit time and the
held-out accuracy.

Each library must run in its own fresh process, and the scikit-learn one must not import
fastdl (importing fastdl sets thread and OpenMP settings for its process).  So this file
imports nothing of fastdl at module level, and runs as a script::

    python <path of this file> --library sklearn --recipe digits --epochs 10
    python <path of this file> --library fastdl  --recipe digits --epochs 10

which prints one JSON object (``run``'s result).  ``command(library, **kw)`` builds that
argv, ``run_in_process(library, **kw)`` runs it and parses the result; do not use
``python -m fastdl.sklearn._bench`` for the scikit-learn side (``-m`` imports the package).

Data recipes (``load(recipe, ...)``), all ``(X_train, y_train, X_test, y_test)`` with 784
features in [0, 1] and 10 classes:

- ``"digits"``: scikit-learn's 8x8 digits (shipped with it, so always available), split
  75/25 by image first, then upsampled to 28x28 (bilinear) with a random shift of up to 2
  pixels and a little noise per copy, to ``n_train`` / ``n_test`` rows.
- ``"synthetic"``: ``make_classification`` with 784 features (60 informative), clipped
  into [0, 1].
- ``"fashion-mnist"``, ``"mnist"``: the IDX files (``train-images-idx3-ubyte.gz`` ...) in
  the folder named by ``FASTDL_FASHION_MNIST`` / ``FASTDL_MNIST``, by default
  ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) and
  ``/usr/share/datasets/mnist``; the first ``n_train`` / ``n_test`` rows.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np

RECIPES = ("digits", "synthetic", "fashion-mnist", "mnist")
LIBRARIES = ("sklearn", "fastdl", "fastdl-nn")
_IDX_DIRS = {"fashion-mnist": ("FASTDL_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"),
             "mnist": ("FASTDL_MNIST", "/usr/share/datasets/mnist")}


def _digits(n_train, n_test, seed):
    from scipy.ndimage import shift as nd_shift, zoom
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8) / 16.0
    rng = np.random.default_rng(seed)
    perm = rng.permutation(images.shape[0])
    cut = images.shape[0] * 3 // 4
    big = np.clip(zoom(images, (1, 3.5, 3.5), order=1), 0.0, 1.0)  # (N, 28, 28)

    def grow(idx, n):
        pick = idx[rng.integers(0, idx.shape[0], n)]
        out = np.empty((n, 28, 28))
        moves = rng.integers(-2, 3, (n, 2))
        for i in range(n):
            out[i] = nd_shift(big[pick[i]], moves[i], order=0, mode="constant")
        out += rng.normal(0.0, 0.05, out.shape)
        return np.clip(out, 0.0, 1.0).reshape(n, 784), labels[pick]

    X_tr, y_tr = grow(perm[:cut], n_train)
    X_te, y_te = grow(perm[cut:], n_test)
    return X_tr, y_tr, X_te, y_te


def _synthetic(n_train, n_test, seed):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n_train + n_test, n_features=784, n_informative=60,
                               n_redundant=40, n_classes=10, n_clusters_per_class=2,
                               class_sep=1.5, random_state=seed)
    X = np.clip(X / 8.0 + 0.5, 0.0, 1.0)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _idx(recipe, n_train, n_test):
    env, default = _IDX_DIRS[recipe]
    folder = os.environ.get(env, default)

    def read(name, offset):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"recipe {recipe!r}: no {path} (set {env} to the folder "
                                    f"of the IDX files)")
        with gzip.open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

    X_tr = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:n_train] / 255.0
    y_tr = read("train-labels-idx1-ubyte.gz", 8)[:n_train].astype(np.int64)
    X_te = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:n_test] / 255.0
    y_te = read("t10k-labels-idx1-ubyte.gz", 8)[:n_test].astype(np.int64)
    return X_tr, y_tr, X_te, y_te


def load(recipe="digits", n_train=10000, n_test=2000, seed=0, dtype="float64"):
    """``(X_train, y_train, X_test, y_test)``: X ``(n, 784)`` of ``dtype`` in [0, 1], y int64
    labels 0-9 (see the module docstring for the recipes)."""
    if recipe == "digits":
        data = _digits(n_train, n_test, seed)
    elif recipe == "synthetic":
        data = _synthetic(n_train, n_test, seed)
    elif recipe in _IDX_DIRS:
        data = _idx(recipe, n_train, n_test)
    else:
        raise ValueError(f"recipe: expected one of {RECIPES}, got {recipe!r}")
    X_tr, y_tr, X_te, y_te = data
    return (np.ascontiguousarray(X_tr, dtype=dtype), np.asarray(y_tr, dtype=np.int64),
            np.ascontiguousarray(X_te, dtype=dtype), np.asarray(y_te, dtype=np.int64))


def run(library, recipe="digits", n_train=10000, n_test=2000, hidden=(256, 128),
        batch_size=64, epochs=10, learning_rate_init=1e-3, seed=0, threads=None,
        x_dtype="float64"):
    """Fit one library's ``MLPClassifier`` for exactly ``epochs`` epochs (Adam, no early
    stopping, no tolerance stop) and score it on the held-out rows.

    ``library`` is ``"sklearn"``, ``"fastdl"`` (fastdl's estimator at its defaults: float32
    parameters, the fastest backend) or ``"fastdl-nn"`` (the same network through
    ``Sequential.fit``, for the estimator layer's cost); all get the same ``X`` (of ``x_dtype``; scikit-learn
    computes in X's dtype) and ``random_state``.  ``threads``: BLAS / kernel threads for
    the fit (None: the library's default).  Run it in a fresh process per library (see
    ``run_in_process``).

    Returns ``{"library", "recipe", "fit_seconds", "fit_cpu_seconds", "accuracy", "epochs",
    "n_train", "n_test", "hidden", "batch_size", "threads", "x_dtype", "final_loss"}``:
    ``fit_seconds`` is wall time; ``fit_cpu_seconds`` the process's CPU time over the fit
    (all its threads), which with ``threads=1`` leaves out the time other processes took
    the core: the steadier figure on a shared machine.
    """
    if library not in LIBRARIES:
        raise ValueError(f"library: expected one of {LIBRARIES}, got {library!r}")
    X_tr, y_tr, X_te, y_te = load(recipe, n_train, n_test, seed, x_dtype)
    params = dict(hidden_layer_sizes=tuple(hidden), batch_size=batch_size,
                  learning_rate_init=learning_rate_init, max_iter=epochs, tol=0.0,
                  n_iter_no_change=np.inf, early_stopping=False, random_state=seed)
    import warnings

    from threadpoolctl import threadpool_limits
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier
        limit = threadpool_limits(threads) if threads else None
    else:
        import fastdl
        from fastdl.sklearn import MLPClassifier
        limit = None
        if threads:
            fastdl.set_num_threads(threads)
    est = MLPClassifier(**params) if library != "fastdl-nn" else _Sequential(params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is the plan
            c0, t0 = time.process_time(), time.perf_counter()
            est.fit(X_tr, y_tr)
            fit_seconds = time.perf_counter() - t0
            fit_cpu_seconds = time.process_time() - c0
        accuracy = float(est.score(X_te, y_te))
    finally:
        if limit is not None:
            limit.unregister()
    return {"library": library, "recipe": recipe, "fit_seconds": fit_seconds,
            "fit_cpu_seconds": fit_cpu_seconds,
            "accuracy": accuracy, "epochs": int(est.n_iter_), "n_train": int(X_tr.shape[0]),
            "n_test": int(X_te.shape[0]), "hidden": list(hidden), "batch_size": batch_size,
            "threads": threads, "x_dtype": x_dtype, "final_loss": float(est.loss_curve_[-1])}


class _Sequential:
    """The same network and Adam step through ``fastdl.nn.Sequential.fit`` directly (He
    initialisation, L2 on every parameter: not scikit-learn's loop), to show what the
    estimator layer adds."""

    def __init__(self, params):
        from fastdl import nn, optim

        self.p = params
        sizes = [784, *params["hidden_layer_sizes"], 10]
        layers = [nn.Dense(a, b, activation="relu") for a, b in zip(sizes[:-2], sizes[1:-1])]
        self.model = nn.Sequential(*layers, nn.Dense(sizes[-2], sizes[-1]),
                                   seed=params["random_state"])
        self.opt = optim.Adam(self.model.parameters(), lr=params["learning_rate_init"],
                              l2=1e-4 / (2 * params["batch_size"]))

    def fit(self, X, y):
        h = self.model.fit(X, y, optimizer=self.opt, epochs=self.p["max_iter"],
                           batch_size=self.p["batch_size"], seed=self.p["random_state"],
                           verbose=0)
        self.n_iter_, self.loss_curve_ = len(h.epoch), h.history["loss"]
        return self

    def score(self, X, y):
        return float(np.mean(self.model.predict(X) == y))


def command(library, **kw):
    """The argv that runs ``run(library, **kw)`` in a fresh process (this file as a script)."""
    argv = [sys.executable, os.path.abspath(__file__), "--library", library]
    for k, v in kw.items():
        if v is None:
            continue
        flag = "--" + k.replace("_", "-")
        argv += [flag] + ([str(x) for x in v] if k == "hidden" else [str(v)])
    return argv


def child_env():
    """This process's environment without what ``import fastdl`` added to it (its
    ``setdefault`` of ``OMP_WAIT_POLICY`` and ``OPENBLAS_THREAD_TIMEOUT``, which a child
    would inherit: scikit-learn's process must run as the user's would)."""
    env = dict(os.environ)
    if "fastdl._config" in sys.modules:
        for name, value in (("OMP_WAIT_POLICY", "PASSIVE"), ("OPENBLAS_THREAD_TIMEOUT", "14")):
            if env.get(name) == value:
                del env[name]
    return env


def run_in_process(library, timeout=None, **kw):
    """``run(library, **kw)`` in a fresh Python process (with ``child_env()``); its
    result dict."""
    out = subprocess.run(command(library, **kw), capture_output=True, text=True,
                         timeout=timeout, check=False, env=child_env())
    if out.returncode != 0:
        raise RuntimeError(f"the {library} workload failed ({out.returncode}): "
                           f"{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", required=True, choices=LIBRARIES)
    ap.add_argument("--recipe", default="digits", choices=RECIPES)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--learning-rate-init", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--x-dtype", default="float64", choices=("float32", "float64"))
    a = ap.parse_args(argv)
    res = run(a.library, recipe=a.recipe, n_train=a.n_train, n_test=a.n_test,
              hidden=a.hidden, batch_size=a.batch_size, epochs=a.epochs,
              learning_rate_init=a.learning_rate_init, seed=a.seed, threads=a.threads,
              x_dtype=a.x_dtype)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
