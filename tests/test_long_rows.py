"""Reductions along rows of millions of classes, in float32, against float64 math.

Each row's sum (softmax's denominator, the cross-entropy dots, the softmax backward's
row dot) was a float32 running sum per vector lane: its error grew with the row's
length, to 1e-3 relative at 2^20 classes and 12% at 2^26 (NumPy's pairwise sum stays
near 1e-7).  Row: one logit of 10, the rest 0, so that every exp term but one is the
same small number and the sum's rounding shows.

The dense bias gradient is the same reduction down the columns of a tall dy: a float32
running sum per column drifted to 1.6e-5 relative at a million rows, in every backend and
the reference (NumPy adds an axis-0 sum's rows one after another).
"""
import numpy as np
import pytest

import fastdl.functional as F

C = 2**20 + 3  # and a tail the vector loops leave over
RTOL = 2e-6     # float32 results of float64-accurate sums (a few ulp), far below 1e-3


def _rows():
    x = np.zeros((2, C), np.float32)
    x[:, 0] = 10
    x[1, 5::7] = -1  # a second row with other terms
    return x


def _softmax64(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_and_log_softmax(backend):
    x = _rows()
    p = _softmax64(x)
    np.testing.assert_allclose(F.softmax(x, backend=backend), p, rtol=RTOL, atol=0)
    np.testing.assert_allclose(F.log_softmax(x, backend=backend), np.log(p), rtol=RTOL,
                               atol=0)


def test_softmax_backward_row_dots(backend):
    x = _rows()
    p = _softmax64(x)
    dy = np.full_like(x, 0.5)
    dy[:, 0] = 3.0
    dy64 = dy.astype(np.float64)
    want = p * (dy64 - np.sum(dy64 * p, axis=1, keepdims=True))
    got = F.softmax_backward(dy, p.astype(np.float32), backend=backend)
    # the row dot is 0.5 + 2.5 p0: its error shows in every entry of the row
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    lp = np.log(p)
    want = dy64 - p * dy64.sum(axis=1, keepdims=True)
    got = F.log_softmax_backward(dy, lp.astype(np.float32), backend=backend)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("kind", ["labels", "probs"])
def test_softmax_cross_entropy(backend, kind, smoothing):
    x = _rows()
    p = _softmax64(x)
    y = np.array([0, 1])
    t = np.zeros((2, C), np.float32)
    t[0, 0] = 1
    t[1, :4] = 0.25
    target = y if kind == "labels" else t
    tt = (np.arange(C) == y[:, None]).astype(np.float64) if kind == "labels" \
        else t.astype(np.float64)
    tt = (1 - smoothing) * tt + smoothing / C
    want = -np.sum(tt * np.log(p), axis=1)
    loss, dlogits = F.softmax_cross_entropy(x, target, label_smoothing=smoothing,
                                            reduction="none", backend=backend)
    np.testing.assert_allclose(loss, want, rtol=RTOL)
    np.testing.assert_allclose(dlogits, p * tt.sum(axis=1, keepdims=True) - tt, rtol=1e-5,
                               atol=1e-9)


def test_cross_entropy_on_probabilities(backend):
    p = _softmax64(_rows())
    t = np.full((2, C), 1.0 / C, np.float32)  # every term counts
    want = -np.sum(t.astype(np.float64) * np.log(p), axis=1)
    got = F.cross_entropy(p.astype(np.float32), t, reduction="none", backend=backend)
    np.testing.assert_allclose(got, want, rtol=RTOL)


def test_dense_bias_gradient_over_a_million_rows(backend):
    rng = np.random.default_rng(0)
    n = 2**20 + 5
    dy = (0.1 + rng.random((n, 3))).astype(np.float32)
    x = np.ones((n, 1), np.float32)
    W = np.ones((1, 3), np.float32)
    _, dW, db = F.dense_backward(dy, x, W, need_dx=False, backend=backend)
    want = dy.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(db, want, rtol=RTOL)
    np.testing.assert_allclose(dW[0], want, rtol=1e-4)  # BLAS's own float32 sums
