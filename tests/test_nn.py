"""Layers, Sequential, fit, callbacks, save/load."""
import json
import os
import warnings

import numpy as np
import pytest

import fastdl
from fastdl import callbacks, nn, optim, schedules
from conftest import BACKENDS, five_point, rng


def blobs(n=300, d=6, c=3, seed=0, dtype=np.float32):
    r = rng(seed)
    centers = r.standard_normal((c, d)) * 3
    y = r.integers(0, c, n)
    X = centers[y] + r.standard_normal((n, d))
    return X.astype(dtype), y


def mlp(d=6, c=3, hidden=16, seed=0, backend=None, dtype=np.float32):
    return nn.Sequential(nn.Dense(d, hidden, "relu"), nn.Dense(hidden, c), seed=seed,
                         backend=backend, dtype=dtype)


# ------------------------------------------------------------------ gradients
def _net(dtype=np.float64, mask_seed=3):
    drop = nn.Dropout(0.3)
    model = nn.Sequential(
        nn.Dense(5, 6, "tanh"),
        nn.Residual(nn.Dense(6, 6, "leaky_relu"), nn.Dense(6, 6), nn.ELU()),
        nn.Maxout(6, 4, pieces=3),
        drop,
        nn.Dense(4, 5, "gelu"),
        nn.SiLU(),
        nn.Dense(5, 3, "sigmoid"),
        seed=1, dtype=dtype)
    drop.fixed_mask = (rng(mask_seed).random((7, 4)) > 0.3).astype(dtype)
    return model


@pytest.mark.parametrize("be", BACKENDS)
def test_sequential_gradient_finite_differences(be):
    """A whole Sequential with Residual, Maxout and Dropout (fixed mask), float64."""
    model = _net()
    model.backend = be
    x = rng(0).standard_normal((7, 5))
    dy = rng(1).standard_normal((7, 3))
    params = model.parameters()

    def f(theta=None, xin=x):
        if theta is not None:
            saved = params.data.copy()
            params.data[...] = theta
        model._set_mode(True)
        out = model.forward(np.ascontiguousarray(xin)).copy()
        if theta is not None:
            params.data[...] = saved
        return float(np.sum(out * dy))

    model._set_mode(True)
    model.forward(x)
    dx = model.backward(dy, need_dx=True).copy()
    g = params.grad.copy()
    num = five_point(lambda th: f(th), params.data.copy(), h=1e-5)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
    numx = five_point(lambda xi: f(None, xi), x, h=1e-5)
    np.testing.assert_allclose(dx, numx, rtol=1e-6, atol=1e-8)


def test_backends_agree_on_a_training_run():
    X, y = blobs()
    hs = []
    for be in BACKENDS:
        fastdl.set_num_threads(1)
        m = mlp(backend=be, dtype=np.float64)
        hs.append(m.fit(X, y, epochs=3, batch_size=16, seed=0, verbose=0).history["loss"])
    fastdl.set_num_threads(os.cpu_count())
    np.testing.assert_allclose(hs[1], hs[0], rtol=1e-9)
    np.testing.assert_allclose(hs[2], hs[0], rtol=1e-9)


# -------------------------------------------------------------------- fit
def test_fit_digits_reaches_95_percent():
    from fastdl import data, datasets

    X, y = datasets.load_digits()
    Xtr, Xte, ytr, yte = data.split(X, y, test_size=0.25, seed=0)
    model = nn.Sequential(nn.Dense(64, 128, "relu"), nn.Dense(128, 10), seed=0)
    model.fit(Xtr, ytr, optimizer=optim.Adam(model.parameters(), lr=2e-3), epochs=30,
              batch_size=32, seed=0, verbose=0)
    acc = float(np.mean(model.predict(Xte) == yte))
    assert acc >= 0.95, acc
    assert model.evaluate(Xte, yte)["accuracy"] == pytest.approx(acc)


@pytest.mark.parametrize("batch_size", [1, 7, None])
def test_fit_batch_modes_decrease_loss(batch_size):
    X, y = blobs(n=120)
    m = mlp()
    opt = optim.SGD(m.parameters(), lr=0.01 if batch_size == 1 else 0.1)
    h = m.fit(X, y, optimizer=opt, epochs=8, batch_size=batch_size, seed=0, verbose=0)
    assert h.history["loss"][-1] < 0.6 * h.history["loss"][0]
    assert set(h.history) >= {"loss", "accuracy", "lr", "grad_norm/dense_0", "grad_norm/dense_1"}
    assert len(h.history["loss"]) == 8


def test_history_keys_validation_and_schedule():
    X, y = blobs()
    m = mlp()
    sched = schedules.StepDecay(0.01, 0.5, 2)
    h = m.fit(X, y, epochs=4, validation_split=0.2, schedule=sched, seed=0, verbose=0)
    assert h.history["lr"] == [pytest.approx(sched(e)) for e in range(4)]
    for k in ("val_loss", "val_accuracy", "accuracy"):
        assert len(h.history[k]) == 4
    Xv, yv = blobs(seed=5)
    h2 = mlp().fit(X, y, epochs=2, validation_data=(Xv, yv), seed=0, verbose=0)
    assert len(h2.history["val_loss"]) == 2


def test_determinism_same_seed_one_thread():
    X, y = blobs()
    fastdl.set_num_threads(1)
    try:
        runs = []
        for _ in range(2):
            m = nn.Sequential(nn.Dense(6, 16, "relu"), nn.Dropout(0.2), nn.Dense(16, 3), seed=4)
            runs.append(m.fit(X, y, epochs=3, batch_size=8, seed=11, verbose=0,
                              augment=lambda xb, r: xb + r.normal(0, 0.01, xb.shape)).history)
        assert runs[0] == runs[1]
    finally:
        fastdl.set_num_threads(os.cpu_count())


def test_early_stopping_stops_and_restores_best():
    X, y = blobs()
    Xv, yv = blobs(seed=9)
    m = mlp()
    # a learning rate this high diverges after a few epochs: val_loss rises
    es = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    snapshots = []

    class Snap(callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots.append(m.parameters().data.copy())

    h = m.fit(X, y, optimizer=optim.SGD(m.parameters(), lr=0.05), epochs=50,
              validation_data=(Xv, yv), callbacks=[Snap(), es], seed=0, verbose=0)
    vl = h.history["val_loss"]
    assert es.stopped_epoch is not None and len(vl) < 50
    best = int(np.argmin(vl))
    assert es.best_epoch == best
    assert len(vl) == best + 1 + 2  # stopped after `patience` epochs without improvement
    np.testing.assert_array_equal(m.parameters().data, snapshots[best])


def test_early_stopping_mode_max_and_errors():
    es = callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=1,
                                 restore_best_weights=False)
    m = mlp()
    es.on_train_begin(m)
    assert not es.on_epoch_end(0, {"val_accuracy": 0.5})
    assert not es.on_epoch_end(1, {"val_accuracy": 0.6})
    assert es.on_epoch_end(2, {"val_accuracy": 0.6})
    with pytest.raises(ValueError, match="monitor"):
        es.on_epoch_end(3, {"loss": 1.0})
    with pytest.raises(ValueError, match="patience"):
        callbacks.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="up")


def test_class_weight_and_losses():
    X, y = blobs(n=200, c=2)
    m = mlp(c=2)
    h = m.fit(X, y, epochs=3, class_weight="balanced", seed=0, verbose=0)
    assert np.isfinite(h.history["loss"]).all()
    m2 = nn.Sequential(nn.Dense(6, 8, "relu"), nn.Dense(8, 1), seed=0)
    h2 = m2.fit(X, y, loss="binary_cross_entropy", epochs=15, seed=0, verbose=0,
                class_weight={0: 1.0, 1: 2.0})
    assert h2.history["loss"][-1] < h2.history["loss"][0]
    assert set(np.unique(m2.predict(X))) <= {0, 1}
    p = m2.predict_proba(X)
    assert p.shape == (200,) and np.all((p >= 0) & (p <= 1))
    # regression
    t = X[:, :2] @ np.array([[1.0, -2.0], [0.5, 1.0]], np.float32)
    m3 = nn.Sequential(nn.Dense(6, 16, "relu"), nn.Dense(16, 2), seed=0)
    h3 = m3.fit(X, t, loss="mse", epochs=20, seed=0, verbose=0,
                optimizer=optim.Adam(m3.parameters(), lr=1e-2))
    assert h3.history["loss"][-1] < 0.2 * h3.history["loss"][0]
    assert m3.predict(X).shape == (200, 2)


@pytest.mark.parametrize("cw, match", [
    ({0: np.inf}, r"class_weight\[0\]"),
    ({1: 1e300}, r"class_weight\[1\]"),   # finite, but inf in float32
    ({0: 0.0, 1: 0.0}, "weight 0"),        # a zero total: every loss 0 / 0
    ([1e300, 1.0], "class_weight"),
])
def test_class_weight_that_would_make_nan_parameters_is_refused(cw, match):
    # each was accepted, and the parameters became NaN (with a warning)
    X, y = blobs(n=40, c=2)
    m = mlp(c=2)
    before = m.parameters().data.copy()
    with pytest.raises(ValueError, match=match):
        m.fit(X, y, epochs=1, class_weight=cw, seed=0, verbose=0)
    np.testing.assert_array_equal(m.parameters().data, before)


@pytest.mark.parametrize("where", ["last", "first"])
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_a_batch_whose_rows_all_weigh_zero(loss, where):
    # class 0 weighs 0 and the last batch holds only class 0: that batch adds 0 to the
    # loss and a zero gradient (its 0 / 0 made every parameter NaN, or the loss NaN and
    # a false divergence); the first batch: its loss of 0 is not the one a rise is
    # measured from (every epoch's loss read as a rise from 0: a false divergence)
    X, y = blobs(n=66, c=2)
    order = np.argsort(y != 0, kind="stable")
    if where == "last":
        order = order[::-1]
    X, y = X[order], y[order]
    assert np.all(y[64:] == 0) if where == "last" else np.all(y[:16] == 0)
    m = mlp(c=2) if loss == "cross_entropy" else \
        nn.Sequential(nn.Dense(6, 8, "relu"), nn.Dense(8, 1), seed=0)
    with warnings.catch_warnings():
        # no divergence, and no "zero gradient" blamed on dead units: the last batch's
        # gradient is zero because its rows weigh 0
        warnings.simplefilter("error", nn.DivergenceWarning)
        warnings.simplefilter("error", nn.GradientWarning)
        h = m.fit(X, y, loss=loss, class_weight={0: 0.0}, batch_size=16, epochs=3,
                  shuffle=False, seed=0, verbose=0, validation_data=(X[:2], y[:2])
                  if where == "first" else (X[64:], y[64:]))
    assert len(h.epoch) == 3 and np.isfinite(h.history["loss"]).all()
    assert h.history["val_loss"] == [0.0, 0.0, 0.0]  # the validation rows all weigh 0
    assert np.isfinite(m.parameters().data).all()


def test_final_softmax_layer_is_folded_into_the_loss():
    X, y = blobs()
    m = nn.Sequential(nn.Dense(6, 16, "relu"), nn.Dense(16, 3), nn.Softmax(), seed=0)
    h = m.fit(X, y, epochs=5, seed=0, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    p = m.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_gradient_warnings():
    X, y = blobs()
    m = nn.Sequential(nn.Dense(6, 8, "relu", init="zeros"), nn.Dense(8, 3, init="zeros"),
                      seed=0)
    with pytest.warns(nn.GradientWarning, match="zero gradient in layer dense_0"):
        m.fit(X, y, epochs=2, seed=0, verbose=0)
    m2 = mlp()
    m2.parameters().data[...] = 1e3
    with pytest.warns(nn.GradientWarning, match="exploding gradient"):
        m2.fit(X * 100, y, epochs=1, seed=0, verbose=0,
               optimizer=optim.SGD(m2.parameters(), lr=0.0))


def test_gradient_norms_are_summed_in_float64():
    # the float32 dot of each layer's gradient logged 7e19 as inf (fit stopped as
    # diverged while the clipped step was fine) and 4e-26 as 0 ("zero gradient")
    r = np.random.default_rng(0)
    X = (r.standard_normal((16, 4)) * 1e20).astype(np.float32)
    y = r.integers(0, 2, 16)
    m = nn.Sequential(nn.Dense(4, 2), seed=0)
    opt = optim.SGD(m.parameters(), lr=1e-3, clip_norm=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", nn.DivergenceWarning)
        h = m.fit(X, y, optimizer=opt, epochs=2, batch_size=16, seed=0, verbose=0)
    assert h.history["grad_norm/dense_0"][-1] == pytest.approx(opt.last_grad_norm, rel=1e-6)
    m = nn.Sequential(nn.Dense(4, 2, bias=False), seed=0)
    with pytest.warns(nn.GradientWarning, match="vanishing"):
        h = m.fit(X * np.float32(1e-45), y, epochs=1, batch_size=16, seed=0, verbose=0,
                  optimizer=optim.SGD(m.parameters(), lr=0.0))
    assert h.history["grad_norm/dense_0"][-1] > 0


def test_steady_state_allocates_no_new_buffers():
    X, y = blobs(n=64)
    m = mlp()
    m.fit(X, y, epochs=1, batch_size=16, seed=0, verbose=0)
    def held():
        caches = [m._bufs] + [layer._bufs for layer in m.layers]
        return {id(b) for c in caches for b in (*c._blocks.values(), *c._views.values())}
    before = held()
    m.fit(X, y, epochs=2, batch_size=16, seed=0, verbose=0)
    assert held() == before


@pytest.mark.parametrize("bad, exc, match", [
    (dict(X=np.zeros((10, 6), np.float32), y=np.zeros(9, int)), ValueError, "y"),
    (dict(X=np.zeros((10, 5), np.float32), y=np.zeros(10, int)), ValueError, "X"),
    (dict(X=np.zeros((10, 6), np.float32), y=np.full(10, 3)), ValueError, "y"),
    (dict(X=np.zeros((10, 6), np.float32), y=np.full(10, -1)), ValueError, "y"),
    (dict(X=np.zeros((10, 6), np.float32), y=np.zeros(10, int), epochs=0), ValueError, "epochs"),
    (dict(X=np.zeros((10, 6), np.float32), y=np.zeros(10, int), batch_size=0), ValueError,
     "batch_size"),
    (dict(X=np.zeros((10, 6), np.float32), y=np.zeros(10, int), loss="hinge"), ValueError,
     "loss"),
    (dict(X=np.zeros((10, 6), np.float32), y=np.zeros(10, int), validation_split=1.0),
     ValueError, "validation_split"),
    (dict(X=np.array([["a"] * 6] * 10), y=np.zeros(10, int)), TypeError, "X"),
])
def test_fit_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        mlp().fit(**bad, verbose=0)


def test_layer_construction_errors():
    with pytest.raises(ValueError, match="in_features"):
        nn.Dense(0, 3)
    with pytest.raises(ValueError, match="activation"):
        nn.Dense(3, 3, activation="swish")
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="Dense"):
        nn.Sequential(nn.Dense(3, 4), nn.Dense(5, 2))
    with pytest.raises(ValueError, match="Residual"):
        nn.Sequential(nn.Residual(nn.Dense(3, 4)))
    with pytest.raises(TypeError, match="layers"):
        nn.Sequential(nn.Dense(3, 4), "relu")


def test_a_layer_object_is_bound_once():
    # each refused case was accepted before: a nested Sequential left its weights out of
    # the model (fit then raised KeyError), and a Dense used twice gave gradients off by
    # up to 2.2 from finite differences, with no error
    with pytest.raises(TypeError, match=r"layers\[0\]: a Sequential cannot"):
        nn.Sequential(nn.Sequential(nn.Dense(4, 4)), nn.Dense(4, 2))
    d = nn.Dense(4, 4)
    with pytest.raises(ValueError, match=r"layers\[2\]: this layer object is used twice"):
        nn.Sequential(d, nn.Tanh(), d)
    with pytest.raises(ValueError, match=r"layers\[1\].layers\[0\]: this layer object"):
        nn.Sequential(d, nn.Residual(d))
    nn.Sequential(d)
    with pytest.raises(ValueError, match=r"layers\[0\]: this layer already belongs"):
        nn.Sequential(d)


@pytest.mark.parametrize("be", BACKENDS)
def test_public_forward_backward_check_their_input(be):
    # they used to hand X straight to the kernels: a row of 100,000 features for a
    # model of 6 read far past the first weight matrix and returned NaN
    m = mlp(backend=be)
    X, _ = blobs(8)
    with pytest.raises(ValueError, match="dy: call forward"):
        m.backward(np.ones((8, 3), np.float32))
    for bad, exc in ((np.ones((8, 100_000), np.float32), ValueError),
                     (np.ones((8, 5), np.float32), ValueError),
                     (np.ones(6, np.float32), ValueError), (np.array([["a"] * 6]), TypeError)):
        with pytest.raises(exc, match="X"):
            m.forward(bad)
    with pytest.raises(TypeError, match="training"):
        m.forward(X, training=1)
    want = m(X)  # a copy of the eval-mode output
    out = m.forward(X.astype(np.float64), training=False)  # converted, as in fit
    assert out.shape == (8, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6)
    for bad in (np.ones((7, 3), np.float32), np.ones((8, 4), np.float32)):
        with pytest.raises(ValueError, match="dy"):
            m.backward(bad)
    with pytest.raises(TypeError, match="dy"):
        m.backward(np.ones((8, 3), np.float64))
    assert m.backward(np.ones((8, 3), np.float32)) is None
    dx = m.backward(np.ones((8, 3), np.float32), need_dx=True)
    assert dx.shape == (8, 6)
    m.predict(X[:5])  # replaces what the layers saved for backward
    with pytest.raises(ValueError, match="dy: call forward"):
        m.backward(np.ones((8, 3), np.float32))


# -------------------------------------------------------------- save / load
def test_save_load_roundtrip_bit_identical(tmp_path):
    X, y = blobs()
    m = nn.Sequential(nn.Dense(6, 16, "relu"), nn.Residual(nn.Dense(16, 16, "tanh")),
                      nn.Maxout(16, 8, 2), nn.Dropout(0.1), nn.Dense(8, 3), seed=0)
    m.fit(X, y, epochs=2, seed=0, verbose=0)
    path = tmp_path / "model.npz"
    m.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind
    m2 = fastdl.load(path)
    np.testing.assert_array_equal(m2.predict_proba(X), m.predict_proba(X))
    np.testing.assert_array_equal(m2.parameters().data, m.parameters().data)
    # the optimizer state came back: one more identical step on both
    s1, s2 = m.optimizer.state_dict(), m2.optimizer.state_dict()
    assert type(m2.optimizer) is type(m.optimizer)
    for k in s1:
        if isinstance(s1[k], np.ndarray):
            np.testing.assert_array_equal(s1[k], s2[k])
    fastdl.set_num_threads(1)
    try:
        m.fit(X, y, epochs=1, seed=3, verbose=0)
        m2.fit(X, y, epochs=1, seed=3, verbose=0)
    finally:
        fastdl.set_num_threads(os.cpu_count())
    np.testing.assert_array_equal(m2.parameters().data, m.parameters().data)


def test_load_errors(tmp_path):
    m = mlp()
    path = tmp_path / "m.npz"
    m.save(path)
    with pytest.raises(OSError):
        fastdl.load(tmp_path / "missing.npz")
    # truncated
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="trunc.npz"):
        fastdl.load(tmp_path / "trunc.npz")
    # not a zip at all
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError):
        fastdl.load(tmp_path / "text.npz")
    # a foreign npz
    np.savez(tmp_path / "foreign.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="not a fastdl model"):
        fastdl.load(tmp_path / "foreign.npz")
    # parameters that do not match the architecture
    with np.load(path) as f:
        files = {k: f[k] for k in f.files}
    bad = dict(files, params=files["params"][:-1])
    np.savez(tmp_path / "mismatch.npz", **bad)
    with pytest.raises(ValueError, match="do not match"):
        fastdl.load(tmp_path / "mismatch.npz")
    # damaged parameter bytes with an intact zip: the checksum catches it
    flipped = files["params"].copy()
    flipped[0] += 1
    np.savez(tmp_path / "flip.npz", **dict(files, params=flipped))
    with pytest.raises(ValueError, match="checksum"):
        fastdl.load(tmp_path / "flip.npz")
    # an unknown layer type in the architecture
    meta = json.loads(files["meta"].tobytes())
    meta["architecture"]["layers"][0]["type"] = "Conv2D"
    np.savez(tmp_path / "arch.npz", **dict(
        files, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8)))
    with pytest.raises(ValueError, match="architecture"):
        fastdl.load(tmp_path / "arch.npz")


def test_save_failure_leaves_previous_file(tmp_path, monkeypatch):
    m = mlp()
    path = tmp_path / "m.npz"
    m.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        m.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.parametrize("cls", [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Softmax])
def test_activation_layers_without_a_slope_refuse_alpha(cls):
    # only LeakyReLU and ELU have a slope; an alpha given to the others was ignored
    with pytest.raises(TypeError, match="alpha"):
        cls(alpha=5.0)


def test_forward_call_and_backward_refuse_non_finite_input():
    # predict and fit refused NaN in X; forward and model(X) returned NaN rows and
    # backward filled the gradient with NaN, silently
    m = mlp()
    X, _ = blobs()
    bad = X.copy()
    bad[3, 1] = np.nan
    for call in (lambda: m.forward(bad), lambda: m(bad)):
        with pytest.raises(ValueError, match=r"X: expected finite values, got nan at index \(3, 1\)"):
            call()
    out = m.forward(X)
    dy = np.ones_like(out)
    dy[0, 0] = np.inf
    with pytest.raises(ValueError, match="dy: expected finite"):
        m.backward(dy)
