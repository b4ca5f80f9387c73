"""EarlyStopping's rule, driven epoch by epoch: what counts as an improvement
(``min_delta`` in both modes) and a first epoch whose value is not finite."""
import math

import pytest

from fastdl import callbacks, nn


def feed(es, values, monitor="val_loss"):
    """``es`` started on a small model, then given one epoch per value: the stop flags."""
    es.on_train_begin(nn.Sequential(nn.Dense(2, 2), seed=0))
    return [es.on_epoch_end(epoch, {monitor: v}) for epoch, v in enumerate(values)]


@pytest.mark.parametrize("mode, values", [
    ("min", [1.0, 0.95, 0.92]),   # each better than 1.0, none by more than 0.1
    ("max", [1.0, 1.05, 1.08]),
])
def test_early_stopping_gains_below_min_delta_do_not_count(mode, values):
    es = callbacks.EarlyStopping(min_delta=0.1, patience=2, mode=mode)
    assert feed(es, values) == [False, False, True]
    assert es.best_epoch == 0 and es.best == 1.0 and es.stopped_epoch == 2


@pytest.mark.parametrize("mode, values", [("min", [0.9, 0.85]), ("max", [1.1, 1.15])])
def test_early_stopping_gains_above_min_delta_count(mode, values):
    es = callbacks.EarlyStopping(min_delta=0.05, patience=1, mode=mode)
    assert feed(es, [1.0] + values) == [False, False, True]
    assert es.best_epoch == 1 and es.best == values[0]


def test_early_stopping_a_finite_value_replaces_a_nan_first_epoch():
    # the NaN epoch is a waiting epoch, not the best: 1.0 becomes the best and 0.5
    # improves on it (with NaN kept as the best nothing compared better, and training
    # stopped at epoch 2 with best_epoch 0)
    es = callbacks.EarlyStopping(patience=2)
    assert feed(es, [math.nan, 1.0, 0.5]) == [False, False, False]
    assert es.stopped_epoch is None and es.best_epoch == 2 and es.best == 0.5
