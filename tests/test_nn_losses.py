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
