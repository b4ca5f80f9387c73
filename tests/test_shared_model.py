"""One model used from several Python threads at once: its layers compute in buffers
the model owns, so the calls take turns (a lock per model).  Unguarded, two threads
predicting with one model read each other's rows: 1 to 5 of 16 results were wrong, on
every backend, on one kernel thread too."""
import copy
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastdl import nn
from fastdl.sklearn import MLPClassifier
from conftest import rng


def _batches(X):
    # batches of different lengths, so that a row read from another call shows
    return [X[i * 50:(i + 1) * 50 + 150 * (i % 3)] for i in range(24)]


def test_predictions_from_threads_are_the_serial_ones(backend):
    r = rng(0)
    X = r.random((1600, 32)).astype(np.float32)
    m = nn.Sequential(nn.Dense(32, 128, "relu"), nn.Dense(128, 10, "softmax"), seed=0,
                      backend=backend)
    m.fit(X, r.integers(0, 10, 1600), epochs=1, verbose=0, seed=0)
    xs = _batches(X)
    # (to rounding: a kernel called from a worker thread may split its products over
    # another thread count; a row of another call is wrong by up to 0.7)
    for method in (m.predict_proba, m):
        want = [method(x) for x in xs]
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(method, xs * 3))
        for a, b in zip(got, want * 3):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with ThreadPoolExecutor(4) as ex:
        labels = list(ex.map(m.predict, xs * 3))
    for lab, p in zip(labels, [m.predict_proba(x) for x in xs] * 3):
        top2 = np.sort(p, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4
        np.testing.assert_array_equal(lab[clear], p.argmax(axis=1)[clear])
    # the lock stays out of pickles and copies, and each copy has its own
    for c in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert c._lock is not m._lock
        np.testing.assert_array_equal(c.predict_proba(xs[0]), m.predict_proba(xs[0]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_predictions_from_threads_are_the_serial_ones():
    r = rng(1)
    X = r.random((1600, 32))
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=2, random_state=0)
    clf.fit(X, r.integers(0, 5, 1600))
    xs = _batches(X)
    want = [clf.predict_proba(x) for x in xs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(clf.predict_proba, xs * 3))
    for a, b in zip(got, want * 3):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
