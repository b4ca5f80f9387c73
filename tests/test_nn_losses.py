"""The training step's loss (fastdl.nn.losses) against the functional losses."""
import numpy as np
import pytest

import fastdl.functional as F
from fastdl import nn, optim
from conftest import rng


def test_class_weighted_cross_entropy_step_matches_functional(backend):
    # fit's fused step with class weights takes the weighted mean, dividing by the
    # batch's total weight sum_n w[y_n] (here 9.5 over 6 rows), not by the row count:
    # the loss it records and the SGD step it takes are those of
    # F.softmax_cross_entropy(out, y, weight=w) with the mean reduction
    r = rng(4)
    X = r.standard_normal((6, 4))
    y = np.array([0, 1, 2, 2, 1, 2])
    w = np.array([0.5, 3.0, 1.0])
    assert np.sum(w[y]) == 9.5
    m = nn.Sequential(nn.Dense(4, 3), seed=0, dtype=np.float64, backend=backend)
    before = m.parameters().data.copy()
    want_loss, dlogits = F.softmax_cross_entropy(m(X), y, weight=w, backend="numpy")
    m.forward(X, training=True)
    m.backward(dlogits)
    want_grad = m.parameters().grad.copy()
    lr = 0.1
    h = m.fit(X, y, optimizer=optim.SGD(m.parameters(), lr=lr), epochs=1, batch_size=None,
              class_weight=w, shuffle=False, seed=0, verbose=0)
    assert h.history["loss"][0] == pytest.approx(float(want_loss), rel=1e-12)
    np.testing.assert_allclose(m.parameters().data, before - lr * want_grad,
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
def test_one_hot_targets_train_as_labels_with_class_weights(backend):
    # fit's weighted mean divides by the batch's total weight for labels; one-hot rows
    # were divided by N (PyTorch's rule for probabilities): the same data trained with
    # a step sum_n w[y_n] / N times larger, and evaluate disagreed
    r = np.random.default_rng(0)
    X = r.standard_normal((24, 4))
    y = r.integers(0, 3, 24)
    cw = np.array([1.0, 5.0, 0.2])
    runs = []
    for target in (y, np.eye(3)[y]):
        m = nn.Sequential(nn.Dense(4, 3), dtype=np.float64, seed=0, backend=backend)
        h = m.fit(X, target, optimizer=optim.SGD(m.parameters(), lr=0.1), epochs=2,
                  batch_size=10, class_weight=cw, shuffle=False, verbose=0, seed=0,
                  validation_data=(X[:7], target[:7]))
        runs.append((m.parameters().data.copy(), h.history,
                     m.evaluate(X, target, class_weight=cw)["loss"]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-12, atol=1e-14)
    for k in ("loss", "val_loss"):
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=1e-12)
    assert runs[0][2] == pytest.approx(runs[1][2], rel=1e-12)
