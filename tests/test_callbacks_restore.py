"""EarlyStopping(restore_best_weights=True) puts back the best epoch's optimizer state with
its parameters: after a divergence the optimizer's moments were left NaN, so the next
``fit`` (even with a sane learning rate) NaN'd the restored model again, and ``save``
wrote the NaN state."""
import warnings

import numpy as np
import pytest

import fastdl
from fastdl import callbacks, nn, optim
from test_training import blobs, mlp

OPTIMIZERS = {
    "adam": lambda p: optim.Adam(p, lr=1e-3),
    "sgd_momentum": lambda p: optim.SGD(p, lr=0.01, momentum=0.9),
    "sgd_nesterov": lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
}


class Recorder(callbacks.Callback):
    """Keeps each epoch's parameters and optimizer state (as EarlyStopping sees them:
    after the epoch's last step); with ``scores``, also puts ``scores[epoch]`` in the
    logs as ``"score"`` (listed before the EarlyStopping, which monitors it)."""

    def __init__(self, scores=None):
        self.scores = scores
        self.params, self.states = {}, {}

    def on_train_begin(self, model):
        self.model = model

    def on_epoch_end(self, epoch, logs):
        self.params[epoch] = self.model.parameters().data.copy()
        self.states[epoch] = self.model.optimizer.state_dict()
        if self.scores is not None:
            logs["score"] = self.scores[epoch]
        return False


def state_arrays(state):
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}


def assert_state_equal(actual, expected):
    """Two optimizer state dicts are equal: the same keys, numbers and arrays."""
    assert set(actual) == set(expected)
    for k, v in expected.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(actual[k], v, err_msg=k)
        else:
            assert actual[k] == v, k


def finite_state(state):
    arrays = state_arrays(state)
    assert arrays  # Adam's m and v, SGD's velocity: the state this is about
    return all(np.isfinite(a).all() for a in arrays.values())


# ------------------------------------------------------------------ divergence
@pytest.mark.parametrize("name", ["adam", "sgd_momentum"])
def test_restore_after_divergence_restores_a_finite_optimizer_state(name, tmp_path):
    X, y = blobs()
    Xv, yv = blobs(seed=1)
    m = mlp()
    opt = OPTIMIZERS[name](m.parameters())
    rec = Recorder()
    es = callbacks.EarlyStopping(patience=5)
    # three sane epochs, then a learning rate that overflows float32 within an epoch
    with pytest.warns(nn.DivergenceWarning, match="training diverged in epoch 3"):
        h = m.fit(X, y, optimizer=opt, epochs=10, validation_data=(Xv, yv), seed=0,
                  schedule=lambda e: 1e-3 if e < 3 else 1e30, callbacks=[rec, es],
                  verbose=0)
    last = h.epoch[-1]
    assert last == 3 and es.best_epoch is not None and es.best_epoch < last
    # the diverged epoch left the optimizer's state non-finite: that is what is undone
    assert not finite_state(rec.states[last])
    best = es.best_epoch
    assert m.optimizer is opt
    np.testing.assert_array_equal(m.parameters().data, rec.params[best])
    assert np.isfinite(m.parameters().data).all()
    assert_state_equal(opt.state_dict(), rec.states[best])
    assert finite_state(opt.state_dict())
    assert opt.steps == rec.states[best]["step"] and opt.lr == 1e-3

    # save writes the restored (finite) state, and load gives it back
    path = m.save(tmp_path / "restored.npz")
    loaded = fastdl.load(path)
    np.testing.assert_array_equal(loaded.parameters().data, rec.params[best])
    assert_state_equal(loaded.optimizer.state_dict(), rec.states[best])
    assert finite_state(loaded.optimizer.state_dict())

    # training on with a sane learning rate keeps the model finite (the NaN moments
    # made the first step NaN again)
    for model in (m, loaded):
        with warnings.catch_warnings():
            warnings.simplefilter("error", nn.DivergenceWarning)
            h2 = model.fit(X, y, epochs=2, validation_data=(Xv, yv), seed=0,
                           schedule=lambda e: 1e-3, verbose=0)
        assert np.isfinite(h2.history["loss"]).all()
        assert np.isfinite(h2.history["val_loss"]).all()
        assert np.isfinite(model.parameters().data).all()
        assert finite_state(model.optimizer.state_dict())


# ------------------------------------------------------------------ normal run
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_restore_puts_back_the_best_epochs_optimizer_state(name):
    X, y = blobs()
    m = mlp()
    opt = OPTIMIZERS[name](m.parameters())
    # best at epoch 2, then 3 epochs without improvement: stops after epoch 5
    rec = Recorder(scores=[5.0, 4.0, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5])
    es = callbacks.EarlyStopping(monitor="score", patience=3)
    h = m.fit(X, y, optimizer=opt, epochs=10, batch_size=32, seed=0, callbacks=[rec, es],
              verbose=0)
    assert h.epoch == [0, 1, 2, 3, 4, 5]
    assert es.best_epoch == 2 and es.stopped_epoch == 5
    # the test means something: the state at the end differs from the best epoch's
    assert rec.states[5]["step"] == 2 * rec.states[2]["step"]
    for k, a in state_arrays(rec.states[2]).items():
        assert not np.array_equal(a, rec.states[5][k]), k

    np.testing.assert_array_equal(m.parameters().data, rec.params[2])
    assert opt.steps == rec.states[2]["step"] == 3 * 7  # 7 steps an epoch (200 rows)
    assert_state_equal(opt.state_dict(), rec.states[2])
    if name == "adam":
        np.testing.assert_array_equal(opt.m, rec.states[2]["m"])
        np.testing.assert_array_equal(opt.v, rec.states[2]["v"])
    else:
        np.testing.assert_array_equal(opt.velocity, rec.states[2]["velocity"])


def test_restore_when_training_runs_out_of_epochs():
    # no early stop: the best epoch's state is put back all the same
    X, y = blobs()
    m = mlp()
    opt = optim.Adam(m.parameters(), lr=1e-3)
    rec = Recorder(scores=[3.0, 1.0, 2.0, 2.5])
    es = callbacks.EarlyStopping(monitor="score", patience=5)
    m.fit(X, y, optimizer=opt, epochs=4, seed=0, callbacks=[rec, es], verbose=0)
    assert es.best_epoch == 1 and es.stopped_epoch is None
    np.testing.assert_array_equal(m.parameters().data, rec.params[1])
    assert_state_equal(opt.state_dict(), rec.states[1])


def test_without_restore_the_optimizer_is_left_as_it_ended():
    X, y = blobs()
    m = mlp()
    opt = optim.Adam(m.parameters(), lr=1e-3)
    rec = Recorder(scores=[3.0, 1.0, 2.0, 2.5])
    es = callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=False)
    m.fit(X, y, optimizer=opt, epochs=10, seed=0, callbacks=[rec, es], verbose=0)
    assert es.best_epoch == 1 and es.stopped_epoch == 3
    np.testing.assert_array_equal(m.parameters().data, rec.params[3])
    assert_state_equal(opt.state_dict(), rec.states[3])


def test_an_optimizer_without_a_state_dict_gets_its_parameters_back():
    # fit takes any object with step(): EarlyStopping restores what it can
    class Plain:
        def __init__(self, params, lr):
            self.params, self.lr = params, lr

        def step(self):
            self.params.data[...] -= self.lr * self.params.grad

    class Params(callbacks.Callback):
        def __init__(self, scores):
            self.scores, self.params = scores, {}

        def on_train_begin(self, model):
            self.model = model

        def on_epoch_end(self, epoch, logs):
            self.params[epoch] = self.model.parameters().data.copy()
            logs["score"] = self.scores[epoch]
            return False

    X, y = blobs()
    m = mlp()
    rec = Params([3.0, 1.0, 2.0, 2.5])
    es = callbacks.EarlyStopping(monitor="score", patience=2)
    m.fit(X, y, optimizer=Plain(m.parameters(), 0.01), epochs=10, seed=0,
          callbacks=[rec, es], verbose=0)
    assert es.best_epoch == 1 and es.stopped_epoch == 3
    np.testing.assert_array_equal(m.parameters().data, rec.params[1])
