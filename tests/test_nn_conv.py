"""nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D and nn.Flatten inside Sequential: gradients
against finite differences through a small CNN, the parameter and gradient views, the
model against the same computation with the public kernels, save/load, training on
the digit images, shapes and bad configurations, and ``fastdl train --model cnn``."""
import os
import re
import warnings
from functools import partial

import numpy as np
import pytest

import fastdl
import fastdl.functional as F
from fastdl import augment, data, datasets, nn, optim
from fastdl.functional.conv import workspace
from conftest import BACKENDS, five_point, rng


def small_cnn(dtype=np.float64, backend=None, act2="relu", seed=0, mask_seed=None):
    """Every image layer and option: padding, a non-square kernel, stride 2 on one axis,
    no bias, a non-fused activation, overlapping average windows, dropout after a
    convolution (a fixed mask, so the model is a function of its parameters)."""
    drop = nn.Dropout(0.25)
    model = nn.Sequential(
        nn.Conv2D(2, 3, 3, padding=1, activation="tanh"),
        nn.MaxPool2D(2),
        nn.Conv2D(3, 4, (2, 3), stride=(1, 2), padding=(0, 1), activation=act2, bias=False),
        drop,
        nn.AvgPool2D(2, stride=1),
        nn.Flatten(),
        nn.Dense(4 * 2 * 1, 5, "elu"),
        nn.Dense(5, 3),
        dtype=dtype, seed=seed, backend=backend)
    if mask_seed is not None:
        drop.fixed_mask = (rng(mask_seed).random((4, 4, 3, 2)) > 0.25).astype(dtype)
    return model


# conv: 9x8, pool: 4x4, conv: 3x2, avg pool: 2x1, Flatten: 8
X_SMALL = rng(1).standard_normal((4, 2, 9, 8))


# every backend with the fused activation; the others (the layer's own passes) once each
GRAD_CASES = [(be, "relu") for be in BACKENDS] + [
    ("cython", "leaky_relu"), ("numba", "gelu"), ("cython", "softmax"),
    ("numba", "log_softmax")]


@pytest.mark.parametrize("be, act2", GRAD_CASES)
def test_cnn_gradient_finite_differences(be, act2):
    model = small_cnn(backend=be, act2=act2, mask_seed=3)
    x = X_SMALL
    dy = rng(2).standard_normal((4, 3))
    params = model.parameters()

    def f(theta=None, xin=x):
        saved = params.data.copy()
        if theta is not None:
            params.data[...] = theta
        out = float(np.sum(model.forward(xin, training=True) * dy))
        params.data[...] = saved
        return out

    model.forward(x, training=True)
    dx = model.backward(dy, need_dx=True).copy()
    assert dx.shape == x.shape
    np.testing.assert_allclose(params.grad, five_point(f, params.data.copy(), h=1e-5),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, five_point(lambda xi: f(None, xi), x, h=1e-5),
                               rtol=1e-6, atol=1e-8)


def test_parameter_and_gradient_views():
    model = small_cnn(dtype=np.float32)
    p = model.parameters()
    conv, conv2 = model.layers[0], model.layers[2]
    assert conv.W.shape == (3, 2, 3, 3) and conv.b.shape == (3,)
    assert conv2.W.shape == (4, 3, 2, 3) and conv2.b is None and conv2.db is None
    assert "conv2d_2.b" not in p.names and "conv2d_0.b" in p.names
    for layer, name in ((conv, "conv2d_0"), (conv2, "conv2d_2")):
        assert layer.W.flags.c_contiguous and layer.W.dtype == np.float32
        assert np.shares_memory(layer.W, p.data) and np.shares_memory(layer.dW, p.grad)
        np.testing.assert_array_equal(p[f"{name}.W"], layer.W)
    # He normal with PyTorch's fans: fan_in = C kh kw
    assert model.layer_names() == ["conv2d_0", "conv2d_2", "dense_6", "dense_7"]
    big = nn.Sequential(nn.Conv2D(8, 64, 5), nn.Flatten(), seed=0)
    assert abs(big.layers[0].W.std() - np.sqrt(2 / (8 * 25))) < 0.01
    assert p.num_parameters == (3 * 2 * 9 + 3) + 4 * 3 * 6 + (8 * 5 + 5) + (5 * 3 + 3)
    # the optimizer's step reaches the layers' views
    p.grad[...] = 1
    before = conv.W.copy()
    optim.SGD(p, lr=0.5).step()
    np.testing.assert_allclose(conv.W, before - 0.5)
    for init in ("he_uniform", "xavier", "xavier_uniform", "normal", "uniform", "zeros"):
        w = nn.Sequential(nn.Conv2D(2, 3, 3, init=init), nn.Flatten(), seed=0).layers[0].W
        assert (w == 0).all() == (init == "zeros")


@pytest.mark.parametrize("be", BACKENDS)
def test_cnn_is_the_functional_kernels_composed(be):
    """The model's output and gradients are those of the public kernels, chained by hand."""
    model = small_cnn(dtype=np.float32, backend=be)
    model.layers[3].p = 0.0  # no dropout: a plain composition
    x = X_SMALL.astype(np.float32)
    dy = rng(4).standard_normal((4, 3)).astype(np.float32)
    out = model.forward(x, training=True).copy()
    model.backward(dy)
    P = model.parameters()
    W0, b0, W2 = P["conv2d_0.W"], P["conv2d_0.b"], P["conv2d_2.W"]
    W6, b6, W7, b7 = P["dense_6.W"], P["dense_6.b"], P["dense_7.W"], P["dense_7.b"]
    k = dict(backend=be)
    z0 = F.conv2d_forward(x, W0, b0, padding=1, **k)
    h0 = F.tanh(z0, **k)
    h1, am = F.max_pool2d(h0, 2, **k)
    h2 = F.conv2d_forward(h1, W2, None, stride=(1, 2), padding=(0, 1), activation="relu", **k)
    h4 = F.avg_pool2d(h2, 2, 1, **k)
    h5 = h4.reshape(4, -1)
    z6 = F.dense_forward(h5, W6, b6, **k)
    h6 = F.elu(z6, **k)
    h7 = F.dense_forward(h6, W7, b7, **k)
    np.testing.assert_array_equal(out, h7)
    d6, dW7, db7 = F.dense_backward(dy, h6, W7, **k)
    d5, dW6, db6 = F.dense_backward(F.elu_backward(d6, z6, **k), h5, W6, **k)
    d4 = F.avg_pool2d_backward(d5.reshape(h4.shape), h2.shape, 2, 1, **k)
    d2, dW2, _ = F.conv2d_backward(F.relu_backward(d4, h2, **k), h1, W2, stride=(1, 2),
                                   padding=(0, 1), **k)
    d1 = F.max_pool2d_backward(d2, am, h0.shape, **k)
    _, dW0, db0 = F.conv2d_backward(F.tanh_backward(d1, z0, **k), x, W0, padding=1,
                                    need_dx=False, **k)
    for name, want in (("conv2d_0.W", dW0), ("conv2d_0.b", db0), ("conv2d_2.W", dW2),
                       ("dense_6.W", dW6), ("dense_6.b", db6), ("dense_7.W", dW7),
                       ("dense_7.b", db7)):
        np.testing.assert_array_equal(P.grad_of(name), want, err_msg=name)


def test_empty_batch_through_flatten():
    # Flatten's reshape(N, -1) could not infer -1 from 0 rows; a model with it predicts
    # an empty batch as MLPs and CNNs without it do
    m = nn.Sequential(nn.Conv2D(1, 2, 3, activation="relu"), nn.MaxPool2D(2), nn.Flatten(),
                      nn.Dense(2 * 3 * 3, 3), seed=0)
    X = np.zeros((0, 1, 8, 8), np.float32)
    assert m.predict_proba(X).shape == (0, 3) and m.predict(X).shape == (0,)
    flat = nn.Sequential(nn.Flatten(), nn.Dense(64, 2), seed=0)
    assert flat.predict_proba(X).shape == (0, 2)


def test_hw_images_into_a_one_channel_model():
    """(N, H, W) into a model whose first layer is a 1-channel Conv2D: read as
    (N, 1, H, W); a model over 3 channels still needs the channel axis."""
    m = nn.Sequential(nn.Conv2D(1, 4, 3, activation="relu"), nn.Flatten(),
                      nn.Dense(4 * 6 * 6, 3), seed=0)
    X = rng(0).random((5, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(m.predict_proba(X), m.predict_proba(X[:, None]))
    assert m.evaluate(X, np.arange(5) % 3) == m.evaluate(X[:, None], np.arange(5) % 3)
    h = m.fit(X, np.arange(5) % 3, epochs=2, verbose=0, validation_data=(X, np.arange(5) % 3))
    assert "val_loss" in h.history
    m3 = nn.Sequential(nn.Conv2D(3, 4, 3), nn.Flatten(), seed=0)
    with pytest.raises(ValueError, match=r"X: expected shape \(N, 3, \?, \?\), got \(5, 8, 8\)"):
        m3.predict(X)


def test_summary_and_shapes():
    m = nn.Sequential(nn.Conv2D(1, 8, 3, padding=1, activation="relu"), nn.MaxPool2D(2),
                      nn.Conv2D(8, 16, 3), nn.AvgPool2D((1, 2)), nn.Flatten(),
                      nn.Dense(32, 10), seed=0)
    assert m.input_shape == (1, None, None) and m.output_shape == (10,)
    text = m.summary()
    assert "(N, 8, ?, ?)" in text and "Flatten" in text
    text = m.summary((1, 8, 8))
    rows = {line.split()[0]: line for line in text.splitlines()[2:-1]}
    assert "(N, 8, 8, 8)" in rows["conv2d_0"] and "80" in rows["conv2d_0"]
    assert "(N, 8, 4, 4)" in rows["maxpool2d_1"]
    assert "(N, 16, 2, 2)" in rows["conv2d_2"] and "1,168" in rows["conv2d_2"]
    assert "(N, 16, 2, 1)" in rows["avgpool2d_3"]
    assert "(N, 32)" in rows["flatten_4"]
    assert m.summary((8, 8)) == text  # (H, W) for a 1-channel model
    with pytest.raises(ValueError, match=r"input_shape: .*\(Dense\).*expected 32 input features"):
        m.summary((1, 10, 10))
    with pytest.raises(TypeError, match="input_shape"):
        m.summary(8)


@pytest.mark.parametrize("layers, match", [
    # a channel count that does not follow: found when the model is built
    (lambda: [nn.Conv2D(1, 4, 3), nn.Conv2D(3, 2, 3)],
     r"layers\[1\] \(Conv2D\).*expected 3 input channels.*\(4, \?, \?\)"),
    (lambda: [nn.Conv2D(1, 4, 3), nn.MaxPool2D(2), nn.Dense(4, 2)],
     r"layers\[2\] \(Dense\).*add nn.Flatten"),
    (lambda: [nn.Conv2D(1, 4, 3), nn.Flatten(), nn.Conv2D(4, 2, 3)],
     r"layers\[2\] \(Conv2D\).*expected images \(C, H, W\)"),
    (lambda: [nn.Dense(4, 8), nn.MaxPool2D(2)], r"layers\[1\] \(MaxPool2D\)"),
])
def test_layers_that_do_not_fit_together(layers, match):
    with pytest.raises(ValueError, match=match):
        nn.Sequential(*layers(), seed=0)


def test_sizes_checked_when_x_is_seen():
    m = nn.Sequential(nn.Conv2D(1, 4, 5), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(36, 3),
                      seed=0)
    # a kernel larger than the image: found at the model's shape check, named
    with pytest.raises(ValueError, match=r"X: layers\[0\] \(Conv2D\).*5x5 window is larger "
                                         r"than the input, 4x4"):
        m.predict(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"X: layers\[1\] \(MaxPool2D\).*2x2 window"):
        m.fit(np.zeros((2, 1, 5, 5), np.float32), np.zeros(2, int), verbose=0)
    # Flatten -> Dense: the Dense names the count it expects, and the count it got
    with pytest.raises(ValueError, match=r"X: layers\[3\] \(Dense\).*expected 36 input "
                                         r"features, got per-sample shape \(64,\)"):
        m.predict(np.zeros((2, 1, 12, 12), np.float32))
    assert m.predict(np.zeros((2, 1, 10, 10), np.float32)).shape == (2,)
    pad = nn.Sequential(nn.Conv2D(1, 2, 5, padding=(2, 0)), nn.Flatten(), seed=0)
    with pytest.raises(ValueError, match=r"padded input, 8x4"):
        pad.predict(np.zeros((1, 1, 4, 4)))


@pytest.mark.parametrize("make, exc, match", [
    (lambda: nn.Conv2D(0, 4, 3), ValueError, "in_channels"),
    (lambda: nn.Conv2D(1, True, 3), TypeError, "out_channels"),
    (lambda: nn.Conv2D(1, 4, 0), ValueError, "kernel_size"),
    (lambda: nn.Conv2D(1, 4, (3, 3, 3)), ValueError, "kernel_size"),
    (lambda: nn.Conv2D(1, 4, 3.0), TypeError, "kernel_size"),
    (lambda: nn.Conv2D(1, 4, 3, stride=0), ValueError, "stride"),
    (lambda: nn.Conv2D(1, 4, 3, padding=-1), ValueError, "padding"),
    (lambda: nn.Conv2D(1, 4, 3, activation="swish"), ValueError, "activation"),
    (lambda: nn.Conv2D(1, 4, 3, activation=len), TypeError, "activation"),
    (lambda: nn.Conv2D(1, 4, 3, init="kaiming"), ValueError, "init"),
    (lambda: nn.Conv2D(1, 4, 3, bias=1), TypeError, "bias"),
    (lambda: nn.Conv2D(1, 4, 3, activation="leaky_relu", alpha=-0.1), ValueError, "alpha"),
    (lambda: nn.Conv2D(1, 4, 3, activation="relu", alpha=0.5), ValueError, "alpha"),
    (lambda: nn.Dense(4, 3, activation="relu", alpha=0.5), ValueError, "alpha"),
    (lambda: nn.Dense(4, 3, alpha=0.5), ValueError, "alpha"),
    (lambda: nn.Conv2D(2**16, 2**16, 2**8), ValueError, "32-bit"),
    (lambda: nn.Conv2D(1, 4, 3, stride=2**63), ValueError, "stride"),
    (lambda: nn.Conv2D(1, 4, 3, padding=2**31), ValueError, "padding"),
    (lambda: nn.MaxPool2D(2, stride=2**64), ValueError, "stride"),
    (lambda: nn.AvgPool2D(2**63), ValueError, "kernel_size"),
    (lambda: nn.MaxPool2D(0), ValueError, "kernel_size"),
    (lambda: nn.MaxPool2D(2, stride=(1, 0)), ValueError, "stride"),
    (lambda: nn.AvgPool2D("2"), TypeError, "kernel_size"),
])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (nn.Conv2D(1, 1, 1, padding=2**20), (1, 1, 1), "padding"),
    (nn.Conv2D(1, 1, 1, padding=(0, 2**30)), (1, 1, 1), "padding"),
    (nn.MaxPool2D(1), (1, 2**16, 2**15 + 1), "int32 argmax"),
])
def test_planes_beyond_the_kernels_sizes_are_refused_by_the_layers(layer, shape, match):
    # as F.conv2d_forward and F.max_pool2d refuse them: the layers took them (a 16 TiB
    # allocation refused naming nothing; a max pool whose int32 argmax would wrap)
    m = nn.Sequential(layer, nn.Flatten(), seed=0)
    with pytest.raises(ValueError, match=match):
        m.summary(input_shape=shape)
    with pytest.raises(ValueError, match=match):
        m.predict(np.ones((0,) + shape, np.float32))


def digits_split():
    X, y = datasets.load_digits(images=True, channel_axis=True)
    return data.split(X, y, test_size=0.2, seed=0)


def test_cnn_learns_the_digit_images():
    """A small CNN on the 8x8 digit images, with dropout after a convolution and
    channels-first augmentation: at least 0.98 held-out accuracy in a few seconds."""
    X_train, X_test, y_train, y_test = digits_split()
    model = nn.Sequential(
        nn.Conv2D(1, 16, 3, padding=1, activation="relu"),
        nn.Conv2D(16, 32, 3, padding=1, activation="relu"), nn.MaxPool2D(2),
        nn.Dropout(0.1), nn.Flatten(),
        nn.Dense(32 * 4 * 4, 64, activation="relu"), nn.Dense(64, 10), seed=0)
    aug = augment.Compose([partial(augment.random_shift, max_shift=1)], layout="NCHW")
    h = model.fit(X_train, y_train, optimizer=optim.Adam(model.parameters(), lr=2e-3),
                  epochs=12, batch_size=32, augment=aug, seed=0, verbose=0)
    assert {"grad_norm/conv2d_0", "grad_norm/conv2d_1", "grad_norm/dense_5"} <= set(h.history)
    assert all(v > 0 for v in h.history["grad_norm/conv2d_0"])
    acc = np.mean(model.predict(X_test) == y_test)
    assert acc >= 0.98, acc
    assert model.evaluate(X_test, y_test)["accuracy"] == acc
    assert model.predict_proba(X_test).shape == (len(y_test), 10)


def test_save_load_round_trip_with_optimizer_state(tmp_path):
    X_train, _, y_train, _ = digits_split()
    X, y = X_train[:256], y_train[:256]
    m = nn.Sequential(nn.Conv2D(1, 6, 3, padding=1, activation="leaky_relu", alpha=0.05),
                      nn.MaxPool2D(2, stride=(2, 1)), nn.Conv2D(6, 8, (3, 2), bias=False),
                      nn.AvgPool2D(2), nn.Flatten(), nn.Dropout(0.2), nn.Dense(8 * 1 * 3, 10),
                      seed=0)
    m.fit(X, y, epochs=2, seed=0, verbose=0)
    path = tmp_path / "cnn.npz"
    m.save(path)
    m2 = fastdl.load(path)
    assert [l.get_config() for l in m2.layers] == [l.get_config() for l in m.layers]
    assert m2.layers[2].kernel_size == (3, 2) and m2.layers[1].stride == (2, 1)
    np.testing.assert_array_equal(m2.parameters().data, m.parameters().data)
    np.testing.assert_array_equal(m2.predict_proba(X), m.predict_proba(X))
    s1, s2 = m.optimizer.state_dict(), m2.optimizer.state_dict()
    for k in s1:
        if isinstance(s1[k], np.ndarray):
            np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    fastdl.set_num_threads(1)
    try:  # the same next epoch on both: the optimizer state came back
        m.fit(X, y, epochs=1, seed=3, verbose=0)
        m2.fit(X, y, epochs=1, seed=3, verbose=0)
    finally:
        fastdl.set_num_threads(os.cpu_count())
    np.testing.assert_array_equal(m2.parameters().data, m.parameters().data)
    # the default stride is saved as None, so it follows the kernel size
    assert nn.MaxPool2D(3).get_config() == {"kernel_size": [3, 3], "stride": None}


def test_steady_state_buffers_and_bounded_workspace():
    m = nn.Sequential(nn.Conv2D(1, 8, 3, padding=1, activation="relu"), nn.MaxPool2D(2),
                      nn.Flatten(), nn.Dense(8 * 4 * 4, 10), seed=0)
    X = rng(0).random((64, 1, 8, 8), dtype=np.float32)
    y = np.arange(64) % 10
    m.fit(X, y, epochs=1, batch_size=16, verbose=0)
    held = m.buffer_nbytes()
    m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert m.buffer_nbytes() == held
    # the im2col workspace does not grow with the batch
    m.predict(rng(0).random((2000, 1, 8, 8), dtype=np.float32))
    size = workspace(0, np.float32).base.size
    m.predict(rng(0).random((8000, 1, 8, 8), dtype=np.float32))
    assert workspace(0, np.float32).base.size == size <= (1 << 20)


def test_fastdl_train_model_cnn(tmp_path, capsys):
    from fastdl import cli

    path = tmp_path / "cnn.npz"
    status = cli.main(["train", "--model", "cnn", "--quiet", "--threads", "1",
                       "--output", str(path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "CNN conv3x3(16)" in out and "confusion matrix" in out
    acc = float(re.search(r"held-out test accuracy: ([0-9.]+)", out).group(1))
    assert acc >= 0.98, out
    model = fastdl.load(path)
    assert type(model.layers[0]).__name__ == "Conv2D"
    X, y = datasets.load_digits(images=True)
    assert model.predict(X[:10]).shape == (10,)


def test_an_output_activation_before_trailing_flattens(tmp_path):
    # Dense(softmax) + Flatten was trained and evaluated through a second softmax
    # (probabilities [0, 0, 1] read as [0.21, 0.21, 0.58]); a sigmoid commutes with Flatten
    X = rng(0).standard_normal((40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    a = nn.Sequential(nn.Dense(3, 2, activation="softmax"), nn.Flatten(), seed=0)
    b = nn.Sequential(nn.Dense(3, 2, activation="softmax"), seed=0)
    assert a.output_activation == "softmax"
    ha = a.fit(X, y, epochs=3, batch_size=8, seed=0, verbose=0)
    hb = b.fit(X, y, epochs=3, batch_size=8, seed=0, verbose=0)
    assert ha.history["loss"] == hb.history["loss"]
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    a.save(tmp_path / "a.npz")
    np.testing.assert_array_equal(fastdl.load(tmp_path / "a.npz").predict_proba(X),
                                  b.predict_proba(X))
    img = nn.Sequential(nn.Conv2D(1, 2, 1), nn.Sigmoid(), nn.Flatten(), seed=0)
    assert img.output_activation == "sigmoid"
    with pytest.warns(UserWarning, match=r"layers\[0\] \(Conv2D\) applies its activation"):
        nn.Sequential(nn.Conv2D(1, 2, 1, activation="softmax"), nn.Flatten(), seed=0)
    with pytest.warns(UserWarning, match=r"layers\[1\] \(Softmax\)"):
        nn.Sequential(nn.Conv2D(1, 2, 1), nn.Softmax(), nn.Flatten(), seed=0)
    with pytest.warns(UserWarning, match=r"layers\[1\] \(Softmax\) .* before Dropout"):
        m = nn.Sequential(nn.Dense(3, 2), nn.Softmax(), nn.Dropout(0.5), seed=0)
    assert m.output_activation is None
    m.save(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said at construction, not again at load
        fastdl.load(tmp_path / "m.npz")
