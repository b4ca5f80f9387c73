"""fit's input checks, divergence, random streams and epochs; evaluate's loss; one-hot
targets; History.plot; the package's names."""
import builtins
import os
import warnings

import numpy as np
import pytest

import fastdl
from fastdl import callbacks, nn, optim
from conftest import rng


def blobs(n=200, d=6, c=3, seed=0, dtype=np.float32):
    r = rng(seed)
    y = r.integers(0, c, n)
    X = r.standard_normal((c, d))[y] * 3 + r.standard_normal((n, d))
    return X.astype(dtype), y


def mlp(d=6, c=3, seed=0, dtype=np.float32):
    return nn.Sequential(nn.Dense(d, 16, "relu"), nn.Dense(16, c), seed=seed, dtype=dtype)


# ------------------------------------------------------------------ bad input
@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e300])
def test_fit_refuses_non_finite_X(value):
    X, y = blobs()
    X = X.astype(np.float64)
    X[3, 2] = value  # 1e300 becomes inf in float32
    with pytest.raises(ValueError, match=r"X: expected finite values"):
        mlp().fit(X, y, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[0\]: expected finite"):
        mlp().fit(*blobs(), validation_data=(X, y), verbose=0)


@pytest.mark.parametrize("labels, exc, match", [
    (1e300, ValueError, r"y: labels must be in \[0, 3\), got 1e\+300"),  # was -9223372036854775808
    (np.nan, ValueError, "y: class labels must be finite"),
    (np.inf, ValueError, "y: class labels must be finite"),
    (1.5, TypeError, "y: cross_entropy expects integer"),
    (-1.0, ValueError, r"y: labels must be in \[0, 3\), got -1.0"),
])
def test_fit_refuses_bad_float_labels(labels, exc, match):
    X, y = blobs()
    y = y.astype(np.float64)
    y[5] = labels
    with pytest.raises(exc, match=match):
        mlp().fit(X, y, verbose=0)


def test_fit_refuses_non_finite_targets():
    X, _ = blobs()
    t = np.zeros((len(X), 3))
    t[1, 1] = np.nan
    with pytest.raises(ValueError, match="y: targets must be finite"):
        mlp().fit(X, t, loss="mse", verbose=0)
    with pytest.raises(ValueError, match=r"y: binary targets must be in \[0, 1\], got nan"):
        mlp(c=1).fit(X, np.where(np.arange(len(X)) == 4, np.nan, 1.0),
                     loss="binary_cross_entropy", verbose=0)


def test_seed_is_named():
    X, y = blobs()
    with pytest.raises(ValueError, match="seed: expected an int >= 0, got -1"):
        mlp().fit(X, y, seed=-1, verbose=0)
    with pytest.raises(TypeError, match="seed"):
        mlp().fit(X, y, seed=1.5, verbose=0)
    mlp().fit(X, y, seed=np.random.default_rng(0), epochs=1, verbose=0)
    # a seed a saved model could not hold (it saved, then would not load)
    with pytest.raises(ValueError, match="seed: expected an int <= "):
        mlp().fit(X, y, seed=2**128, verbose=0)
    mlp().fit(X, y, seed=2**128 - 1, epochs=1, verbose=0)
    # the model's own seed too (NumPy's messages named nothing)
    with pytest.raises(ValueError, match="seed: expected an int >= 0, got -1"):
        nn.Sequential(nn.Dense(6, 3), seed=-1)
    with pytest.raises(TypeError, match="seed"):
        nn.Sequential(nn.Dense(6, 3), seed="a")


def test_schedule_returning_no_number_is_named():
    X, y = blobs()
    with pytest.raises(TypeError, match=r"schedule\(0\)"):
        mlp().fit(X, y, schedule=lambda e: "fast", epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"schedule\(1\)"):
        mlp().fit(X, y, schedule=lambda e: 0.01 if e == 0 else float("nan"), epochs=2,
                  verbose=0)


def _state(m):
    return (m.parameters().data.copy(), m.optimizer, m.loss, m.history, m._seed,
            m.epochs_trained)


def _unchanged(m, before):
    now = _state(m)
    np.testing.assert_array_equal(now[0], before[0])
    assert now[1:] == before[1:] or all(a is b for a, b in zip(now[1:], before[1:]))


class _Raises(callbacks.Callback):
    def on_train_begin(self, model):
        raise RuntimeError("begin")


def _interrupts(xb, rng):
    raise KeyboardInterrupt


@pytest.mark.parametrize("kw, exc, match", [
    # refused only in the first epoch's loop, after fit had replaced the optimizer, loss,
    # seed and history (a trained Adam's state was lost)
    (dict(schedule=lambda e: -1.0), ValueError, r"schedule\(2\)"),
    (dict(schedule=lambda e: "x"), TypeError, r"schedule\(2\)"),
    # refused at the end of the first epoch, after a full epoch of training
    (dict(callbacks=[callbacks.EarlyStopping()]), ValueError, r"callbacks\[0\].*val_loss"),
    (dict(schedule=None, callbacks=[callbacks.EarlyStopping(monitor="val_accuracy")],
          validation_data=None), ValueError, "val_accuracy"),
    (dict(callbacks=[callbacks.EarlyStopping]), TypeError, r"callbacks\[0\].*class"),
    (dict(callbacks=1), TypeError, "callbacks"),
    (dict(validation_data=(np.zeros((0, 6), np.float32), np.zeros(0, int))), ValueError,
     r"validation_data\[0\]"),
    # stopped in the first step, after fit had replaced the optimizer, loss, seed, history
    (dict(augment=lambda xb, rng: xb[:, :2]), ValueError, "augment: returned"),
    (dict(augment=lambda xb, rng: None), ValueError, "augment: returned"),
    (dict(augment=_interrupts), KeyboardInterrupt, None),
    (dict(callbacks=[_Raises()]), RuntimeError, "begin"),
])
def test_refused_fit_leaves_the_model_as_it_was(kw, exc, match):
    X, y = blobs()
    m = mlp()
    m.fit(X, y, epochs=2, seed=1, verbose=0)
    before = _state(m)
    with pytest.raises(exc, match=match):
        m.fit(X, y, optimizer="sgd", seed=5, verbose=0, **kw)
    _unchanged(m, before)


def test_refused_fit_leaves_the_kept_optimizers_rate():
    # the schedule set the kept optimizer's rate before the first batch was refused
    from fastdl import schedules
    X, y = blobs()
    m = mlp()
    m.fit(X, y, epochs=1, seed=1, verbose=0)
    lr = m.optimizer.lr
    with pytest.raises(ValueError, match="augment"):
        m.fit(X, y, schedule=schedules.StepDecay(0.5, 0.5, 1), verbose=0,
              augment=lambda xb, rng: xb[:, :2])
    assert m.optimizer.lr == lr


def test_fit_stopped_after_a_step_keeps_what_trained_the_model():
    X, y = blobs()
    m = mlp()
    calls = []

    def stop_second(xb, rng):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return xb

    with pytest.raises(KeyboardInterrupt):
        m.fit(X, y, optimizer="sgd", batch_size=8, seed=5, verbose=0, augment=stop_second)
    # one step ran: the optimizer that took it, and its seed, stay with the parameters
    assert m.optimizer is not None and m._seed == 5


def test_a_monitored_key_of_fits_logs_is_checked_before_training():
    from fastdl import schedules

    X, y = blobs()
    t = X[:, :2].copy()
    m = nn.Sequential(nn.Dense(6, 2), seed=0)
    with pytest.raises(ValueError, match="mse"):
        m.fit(X, t, loss="mse", epochs=1, verbose=0, validation_split=0.2,
              callbacks=[callbacks.EarlyStopping(monitor="val_accuracy", mode="max")])
    with pytest.raises(ValueError, match="schedule: it monitors 'val_loss'"):
        m.fit(X, t, loss="mse", epochs=1, verbose=0,
              schedule=schedules.ReduceLROnPlateau(0.01))
    with pytest.raises(ValueError, match="schedule: it monitors 'val_loss'"):  # wrapped
        m.fit(X, t, loss="mse", epochs=1, verbose=0,
              schedule=schedules.LinearWarmup(schedules.ReduceLROnPlateau(0.01), 2))
    assert m.epochs_trained == 0
    # with validation, and keys of the training logs, it runs
    m.fit(X, t, loss="mse", epochs=1, verbose=0, validation_split=0.2,
          callbacks=[callbacks.EarlyStopping(), callbacks.EarlyStopping(monitor="loss")])


def test_fit_makes_its_optimizer_on_the_models_backend():
    X, y = blobs()
    m = nn.Sequential(nn.Dense(6, 3), seed=0, backend="numpy")
    m.fit(X, y, epochs=1, verbose=0)
    assert m.optimizer.backend == "numpy"
    m.fit(X, y, optimizer="sgd", epochs=1, verbose=0)
    assert m.optimizer.backend == "numpy"


def test_a_refused_seed_leaves_the_layers_free():
    layers = (nn.Dense(6, 8, "relu"), nn.Dense(8, 3, "softmax"))
    with pytest.raises(ValueError, match="seed"):
        nn.Sequential(*layers, seed=-1)
    nn.Sequential(*layers, seed=0)  # "this layer already belongs to another model" before


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_predict_and_evaluate_refuse_non_finite_rows(bad):
    # as fit: a NaN row was predicted as class 0, and evaluate returned a NaN loss
    X, y = blobs()
    m = mlp()
    X = X.copy()
    X[3, 2] = bad
    for call in (m.predict, m.predict_proba, lambda a: m.evaluate(a, y)):
        with pytest.raises(ValueError, match=r"X: expected finite values.*\(3, 2\)"):
            call(X)


def test_evaluate_on_no_rows_is_refused():
    # as fit does: the mean over no rows read loss nan and accuracy 0.0
    X, y = blobs()
    with pytest.raises(ValueError, match="X: expected at least one row"):
        mlp().evaluate(X[:0], y[:0])


@pytest.mark.parametrize("alpha", [np.inf, -np.inf, np.nan, 1e400])
def test_non_finite_alpha_is_refused(alpha):
    for make in (nn.LeakyReLU, nn.ELU, lambda a: nn.Dense(3, 3, "leaky_relu", alpha=a),
                 lambda a: nn.Dense(3, 3, "elu", alpha=a)):
        with pytest.raises(ValueError, match="alpha"):
            make(alpha)


def test_a_refused_fit_leaves_the_model_as_it_was():
    m = mlp()
    before = m.parameters().data.copy()
    with pytest.raises(ValueError):
        m.fit(*blobs(), epochs=0, verbose=0)
    assert m.optimizer is None and m.loss is None and m._seed is None
    np.testing.assert_array_equal(m.parameters().data, before)


# ------------------------------------------------------------------ divergence
def test_non_finite_loss_stops_training_with_a_clear_warning():
    # a diverging run warned "vanishing gradient ... norm 0" and went on
    X, _ = blobs()
    t = np.full((len(X), 3), 1e20, np.float32)  # finite targets, (1e20)^2 overflows float32
    m = mlp()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = m.fit(X, t, loss="mse", epochs=5, verbose=0)
    div = [x for x in w if issubclass(x.category, nn.DivergenceWarning)]
    assert len(div) == 1 and "not usable" in str(div[0].message)
    assert "training loss is inf" in str(div[0].message)
    assert not any("vanishing" in str(x.message) or "zero gradient" in str(x.message) for x in w)
    assert len(h.epoch) == 1 and m.epochs_trained == 1


def test_non_finite_parameters_are_caught_and_early_stopping_restores():
    X, y = blobs()  # 200 rows: 7 steps an epoch at batch 32
    Xv, yv = blobs(seed=1)
    m = mlp()
    es = callbacks.EarlyStopping(patience=5)

    class Overflowing(optim.SGD):
        def step(self):
            super().step()
            if self.steps == 21:  # the last step of epoch 2: its loss was still finite
                self.params.data[0] = np.inf
    with pytest.warns(nn.DivergenceWarning, match="epoch 2: the parameters are not finite"):
        h = m.fit(X, y, epochs=10, validation_data=(Xv, yv), callbacks=[es], verbose=0,
                  optimizer=Overflowing(m.parameters(), lr=0.01))
    assert len(h.epoch) == 3 and np.isfinite(h.history["loss"]).all()
    assert np.isfinite(m.parameters().data).all()  # the best epoch's weights are back


def test_a_rising_loss_is_reported_as_divergence_not_as_vanishing_gradients():
    from fastdl import datasets

    X, y = datasets.load_digits()
    m = nn.Sequential(nn.Dense(64, 128, "relu"), nn.Dense(128, 10), seed=0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m.fit(X * 1e3, y, optimizer=optim.SGD(m.parameters(), lr=100), epochs=4, seed=0,
              verbose=0)
    msgs = [str(x.message) for x in w]
    assert any("training is diverging in epoch 0" in s and "lower the learning rate" in s
               for s in msgs), msgs
    assert not any("vanishing" in s or "zero gradient" in s for s in msgs), msgs


# ------------------------------------------------------- random streams, epochs
def test_continued_fit_is_the_same_run(one_thread=None):
    fastdl.set_num_threads(1)
    try:
        X, y = blobs(dtype=np.float64)

        def model():
            return nn.Sequential(nn.Dense(6, 16, "relu"), nn.Dropout(0.3), nn.Dense(16, 3),
                                 seed=0, dtype=np.float64)
        a, b = model(), model()
        ha = a.fit(X, y, epochs=4, seed=5, batch_size=16, verbose=0,
                   augment=lambda xb, r: xb + r.normal(0, 0.1, xb.shape))
        for _ in range(2):
            hb = b.fit(X, y, epochs=2, seed=5, batch_size=16, verbose=0,
                       augment=lambda xb, r: xb + r.normal(0, 0.1, xb.shape))
        assert hb.epoch == [2, 3] and ha.history["loss"][2:] == hb.history["loss"]
        np.testing.assert_array_equal(a.parameters().data, b.parameters().data)
        # initial_epoch=0 starts the numbering (and the random streams) again
        assert b.fit(X, y, epochs=1, initial_epoch=0, verbose=0).epoch == [0]
        with pytest.raises(ValueError, match="initial_epoch"):
            b.fit(X, y, initial_epoch=-1, verbose=0)
    finally:
        fastdl.set_num_threads(os.cpu_count())


# ----------------------------------------------------- evaluate and targets
def test_evaluate_before_fit_guesses_the_loss_from_the_output():
    X = rng(0).random((30, 3))
    reg = nn.Sequential(nn.Dense(3, 1), seed=0)
    # a 1-output regression model failed with "binary targets must be in [0, 1]"
    t = X.sum(axis=1) * 5
    res = reg.evaluate(X, t)
    assert set(res) == {"loss"}
    np.testing.assert_allclose(res["loss"], np.mean((reg(X)[:, 0] - t) ** 2), rtol=1e-5)
    assert reg.predict(X).shape == (30, 1)
    binary = nn.Sequential(nn.Dense(3, 1), nn.Sigmoid(), seed=0)
    assert "accuracy" in binary.evaluate(X, np.arange(30) % 2)
    multi = nn.Sequential(nn.Dense(3, 4), seed=0)
    assert "accuracy" in multi.evaluate(X, np.arange(30) % 4)
    with pytest.raises(ValueError, match="loss='mse'"):
        multi.evaluate(X, rng(1).random((30, 4)))
    # loss= says it
    assert set(multi.evaluate(X, rng(1).random((30, 4)), loss="mse")) == {"loss"}
    assert "accuracy" in reg.evaluate(X, np.arange(30) % 2, loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="loss"):
        reg.evaluate(X, t, loss="hinge")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_hot_targets_train_as_labels(dtype):
    X, y = blobs(dtype=dtype)
    onehot = np.eye(3)[y]
    a, b = mlp(dtype=dtype), mlp(dtype=dtype)
    ha = a.fit(X, y, epochs=3, seed=0, verbose=0, validation_split=0.2)
    hb = b.fit(X, onehot, epochs=3, seed=0, verbose=0, validation_split=0.2)
    for k in ha.history:
        np.testing.assert_allclose(hb.history[k], ha.history[k], rtol=1e-5 if dtype ==
                                   np.float32 else 1e-12, err_msg=k)
    assert a.evaluate(X, y) == pytest.approx(b.evaluate(X, onehot.astype(int)))
    soft = 0.9 * onehot + 0.1 / 3
    nll = -np.log(a.predict_proba(X).astype(np.float64))
    want = np.mean(0.9 * nll[np.arange(len(y)), y] + 0.1 / 3 * nll.sum(axis=1))
    assert a.evaluate(X, soft)["loss"] == pytest.approx(want, rel=1e-4)
    with pytest.raises(ValueError, match="sum to 1"):
        a.fit(X, onehot * 2, verbose=0)
    with pytest.raises(ValueError, match=r"y: expected class probabilities of shape"):
        a.fit(X, onehot[:, :2], verbose=0)
    with pytest.raises(ValueError, match=">= 0"):
        a.fit(X, onehot - 0.5 * (onehot == 0) + 0.5 * onehot, verbose=0)


# ---------------------------------------------------------------- History.plot
def test_history_plot(tmp_path):
    m = mlp()
    h = m.fit(*blobs(), epochs=3, validation_split=0.2, verbose=0)
    fig = h.plot(title="dropout off")
    loss_ax, acc_ax = fig.axes
    assert [t for t in loss_ax.get_xticks() if 1 <= t <= 3] == [1, 2, 3]
    assert loss_ax.get_legend_handles_labels()[1] == ["training", "validation"]
    assert acc_ax.get_title() == "accuracy"
    out = tmp_path / "h.png"
    assert h.plot(out) == os.fspath(out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    reg = nn.Sequential(nn.Dense(6, 1), seed=0)
    X, _ = blobs()
    assert len(reg.fit(X, X[:, 0], loss="mse", epochs=2, verbose=0).plot().axes) == 1


def test_history_plot_without_matplotlib(monkeypatch):
    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *a, **k)
    h = nn.History()
    h.append(0, {"loss": 1.0})
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(ImportError, match=r'pip install "fastdl\[plot\]"'):
        h.plot()


# ------------------------------------------------------------------ names
def test_dir_fastdl_is_complete():
    names = dir(fastdl)
    for n in ("load", "__version__", "nn", "optim", "functional", "init", "data", "metrics",
              "schedules", "callbacks", "clip_grad_norm_", "clip_grad_value_", "Parameters"):
        assert n in names, n
        assert getattr(fastdl, n) is not None
    assert fastdl.load is nn.load
    for n in fastdl.__all__:
        getattr(fastdl, n)


@pytest.mark.filterwarnings("ignore:zero gradient")
def test_data_parallel_hooks(monkeypatch):
    # the hooks a data-parallel fit fills in: a share of every global batch, the
    # gradient before each step, the sums before each epoch's logs
    from fastdl.nn import training

    X, y = blobs(n=70)
    plain = mlp().fit(X, y, epochs=2, batch_size=32, seed=0, verbose=0)
    calls = []
    monkeypatch.setattr(training._Run, "share", staticmethod(lambda m: slice(0, m)))
    monkeypatch.setattr(training._Run, "reduce_grad",
                        staticmethod(lambda g, k, m: calls.append((g.shape, k, m))))
    monkeypatch.setattr(training._Run, "reduce_sums", staticmethod(lambda s: calls.append(s)
                                                                   or s))
    m = mlp()
    hooked = m.fit(X, y, epochs=2, batch_size=32, seed=0, verbose=0)
    assert hooked.history == plain.history
    p = (m.parameters().size,)
    step = [(p, 32, 32), (p, 32, 32), (p, 6, 6)]
    assert calls[:3] == step and calls[4:7] == step
    assert calls[3][2] == calls[7][2] == 70
    # an empty share (more processes than rows in a batch): a zero gradient, no NaN
    monkeypatch.setattr(training._Run, "share", staticmethod(lambda m: slice(0, 0)))
    monkeypatch.setattr(training._Run, "reduce_sums",
                        staticmethod(lambda s: (1.0, 0, 1, 0.0, 0.0)))
    calls.clear()
    m.fit(X, y, epochs=1, batch_size=32, verbose=0)
    assert [c[1:] for c in calls] == [(0, 32), (0, 32), (0, 6)]
    assert not m.parameters().grad.any()


def test_progress_is_one_line_per_epoch_off_a_terminal(capsys):
    # tqdm's carriage-return updates filled log files (about 30 KB a run)
    X, y = blobs(n=64)
    mlp().fit(X, y, epochs=3, verbose=1)  # pytest's stderr is not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "loss" in lines[0] and "accuracy" in lines[0]
    mlp().fit(X, y, epochs=1, verbose=0)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["labels", "one-hot", "binary"])
def test_the_weighted_epoch_loss_is_the_weighted_mean_over_its_rows(kind):
    # a mean of the batches' weighted means, by rows: 1.1553 where val_loss and evaluate
    # on the same rows said 1.1531 (2e-2 apart in float32)
    r = np.random.default_rng(0)
    X = r.standard_normal((30, 5))
    if kind == "binary":
        y, cw, head = r.integers(0, 2, (30, 1)).astype(float), [1.0, 3.0], 1
    else:
        y, cw, head = r.integers(0, 3, 30), [1.0, 2.0, 3.0], 3
        if kind == "one-hot":
            y = np.eye(3)[y]
    loss = "binary_cross_entropy" if kind == "binary" else "cross_entropy"
    m = nn.Sequential(nn.Dense(5, 6, "relu"), nn.Dense(6, head), seed=0, dtype=np.float64)
    h = m.fit(X, y, loss=loss, optimizer=optim.SGD(m.parameters(), lr=0.0), epochs=1,
              batch_size=7, class_weight=cw, validation_data=(X, y), verbose=0, seed=0)
    assert h.history["loss"][0] == pytest.approx(h.history["val_loss"][0], rel=1e-12)
    ev = m.evaluate(X, y, class_weight=cw)
    assert h.history["loss"][0] == pytest.approx(ev["loss"], rel=1e-12)
    # the accuracy stays a share of the rows (it was divided by the total weight once)
    assert h.history["accuracy"][0] == h.history["val_accuracy"][0] == ev["accuracy"]
