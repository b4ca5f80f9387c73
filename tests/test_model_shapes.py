"""Sequential over per-sample shapes: the layer protocol with image-shaped layers,
input checks, bounded work buffers, output activations, the summary and the names."""
import numpy as np
import pytest

from fastdl import nn, optim
from fastdl.nn.base import BufferCache, Layer
from conftest import BACKENDS, five_point, rng


class ChannelScale(Layer):
    """y[n, c, h, w] = x[n, c, h, w] * s[c]: a layer over images of any size, with a
    parameter, as a convolution will be (input (C, ?, ?))."""

    has_params = True

    def __init__(self, channels):
        super().__init__()
        self.channels = channels

    def param_shapes(self):
        return {"s": (self.channels,)}

    def bind(self, params, prefix):
        super().bind(params, prefix)
        self.s, self.ds = params[prefix + "s"], params.grad_of(prefix + "s")

    def init_params(self, rng):
        self.s[...] = rng.uniform(0.5, 1.5, self.channels)

    def expected_input_shape(self):
        return (self.channels, None, None)

    def compute_output_shape(self, shape):
        if len(shape) != 3 or shape[0] not in (None, self.channels):
            raise ValueError(f"ChannelScale: expected ({self.channels}, H, W), got {shape}")
        return shape

    def forward(self, x):
        self._x = x
        y = self._buf("y", x.shape, x.dtype)
        np.multiply(x, self.s[None, :, None, None], out=y)
        return y

    def backward(self, dy, need_dx=True):
        self.ds[...] = np.einsum("nchw,nchw->c", dy, self._x)
        if not need_dx:
            return None
        dx = self._buf("dx", dy.shape, dy.dtype)
        np.multiply(dy, self.s[None, :, None, None], out=dx)
        return dx


class Flat(Layer):
    """(C, H, W) -> (C H W,), as nn.Flatten will be."""

    def compute_output_shape(self, shape):
        if any(d is None for d in shape):
            return (None,)
        return (int(np.prod(shape)),)

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._shape) if need_dx else None


def image_model(dtype=np.float64, backend=None):
    return nn.Sequential(ChannelScale(3), nn.ReLU(), Flat(), nn.Dense(3 * 4 * 5, 6, "tanh"),
                         nn.Dense(6, 2), dtype=dtype, seed=0, backend=backend)


def test_image_model_takes_nchw_without_flattening():
    m = image_model()
    assert m.input_shape == (3, None, None) and m.in_features is None
    X = rng(0).standard_normal((7, 3, 4, 5))
    out = m.forward(X, training=False)
    assert out.shape == (7, 2)
    # the first layer saw the images themselves, not flattened rows
    assert m.layers[0]._x.shape == (7, 3, 4, 5)
    with pytest.raises(ValueError, match=r"X: expected shape \(N, 3, \?, \?\)"):
        m.predict(X.reshape(7, -1))
    with pytest.raises(ValueError, match=r"X: expected shape \(N, 3, \?, \?\)"):
        m.predict(rng(0).standard_normal((7, 2, 4, 5)))
    # H, W that do not reach the Dense's 60 features: the message names the layer
    with pytest.raises(ValueError, match=r"X: layers\[3\] \(Dense\).*60 input features"):
        m.predict(rng(0).standard_normal((7, 3, 4, 4)))


@pytest.mark.parametrize("be", BACKENDS)
def test_image_model_gradient_and_training(be):
    m = image_model(backend=be)
    X = rng(1).standard_normal((5, 3, 4, 5))
    dy = rng(2).standard_normal((5, 2))
    p = m.parameters()

    def f(theta):
        saved = p.data.copy()
        p.data[...] = theta
        out = float(np.sum(m.forward(X, training=True) * dy))
        p.data[...] = saved
        return out

    m.forward(X)
    m.backward(dy)
    np.testing.assert_allclose(p.grad, five_point(f, p.data.copy(), h=1e-5),
                               rtol=1e-6, atol=1e-8)
    y = (X[:, 0].sum(axis=(1, 2)) > 0).astype(int)
    h = m.fit(X.repeat(8, 0), y.repeat(8), epochs=15, batch_size=8, seed=0, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert "grad_norm/channelscale_0" in h.history
    assert m.predict(X).shape == (5,)


def test_mlp_still_flattens_images():
    m = nn.Sequential(nn.Dense(12, 3), seed=0)
    X = rng(0).random((4, 3, 4), dtype=np.float32)
    np.testing.assert_array_equal(m(X), m(X.reshape(4, 12)))
    m.fit(X, np.arange(4) % 3, epochs=1, verbose=0)
    # an activation before the Dense: the model still needs (12,) and flattens
    m2 = nn.Sequential(nn.ReLU(), nn.Dense(12, 3), seed=0)
    assert m2.input_shape == (12,)
    assert m2.predict(X).shape == (4,)


def test_shapes_checked_at_construction():
    with pytest.raises(ValueError, match=r"layers\[2\] \(Dense\).*expected 4 input features"):
        nn.Sequential(nn.Dense(3, 5), nn.ReLU(), nn.Dense(4, 2))
    with pytest.raises(ValueError, match=r"Flatten"):
        nn.Sequential(ChannelScale(3), nn.Dense(60, 2))
    m = nn.Sequential(ChannelScale(3), Flat(), nn.Dense(60, 2))
    assert m.output_shape is not None and m.output_shape == (2,)


def test_model_of_only_activations():
    # fit raised TypeError: '<' not supported between 'int' and 'NoneType'
    m = nn.Sequential(nn.ReLU(), nn.Tanh())
    X = rng(0).standard_normal((6, 3)).astype(np.float32)
    np.testing.assert_allclose(m(X), np.tanh(np.maximum(X, 0)), rtol=1e-6)
    assert m.evaluate(X, np.arange(6) % 3)["loss"] > 0
    with pytest.raises(ValueError, match="no parameters to train"):
        m.fit(X, np.arange(6) % 3, verbose=0)
    # softmax over zero features raised a bare reshape error from inside the layer
    with pytest.raises(ValueError, match=r"X: layers\[1\] \(Softmax\).*at least one feature"):
        nn.Sequential(nn.ReLU(), nn.Softmax()).predict(np.zeros((3, 0)))


# ------------------------------------------------------------ bounded buffers
def test_buffer_cache_is_bounded_and_reuses_views():
    c = BufferCache()
    a = c.get("y", (4, 3), np.float32)
    assert c.get("y", (4, 3), np.float32) is a
    for n in range(1, 200):
        c.get("y", (n, 3), np.float32)
    assert c.nbytes == 199 * 3 * 4  # one block, as large as the largest request
    assert len(c._views) <= c.MAX_VIEWS
    c.get("y", (2, 3), np.float64)
    assert c.nbytes == 199 * 3 * 4 + 2 * 3 * 8


def test_predict_of_every_size_keeps_memory_bounded():
    # predict(X[:n]) for n = 1..600 grew RSS by 713 MB on a 256-512-512-10 MLP: every
    # layer kept one buffer per batch size
    m = nn.Sequential(nn.Dense(32, 64, "relu"), nn.Dropout(0.1), nn.Dense(64, 64, "tanh"),
                      nn.Maxout(64, 16, 2), nn.Residual(nn.Dense(16, 16, "gelu")),
                      nn.Dense(16, 10), seed=0)
    X = rng(0).random((600, 32), dtype=np.float32)
    m.predict(X)
    m.predict_proba(X)
    m.evaluate(X, np.arange(600) % 10)
    full = m.buffer_nbytes()
    for n in range(1, 601):
        m.predict(X[:n])
        m.predict_proba(X[:n])
    assert m.buffer_nbytes() == full
    # the old scheme held the sum over every size: about 300 times as much
    assert full < 600 * 4 * (64 * 6 + 16 * 8 + 10 * 4)


def test_training_after_inference_allocates_nothing_more():
    m = nn.Sequential(nn.Dense(8, 16, "relu"), nn.Dense(16, 3), seed=0)
    X, y = rng(0).random((100, 8), dtype=np.float32), np.arange(100) % 3
    m.fit(X, y, epochs=1, batch_size=16, validation_split=0.2, seed=0, verbose=0)
    before = m.buffer_nbytes()
    m.fit(X, y, epochs=2, batch_size=16, validation_split=0.2, seed=0, verbose=0)
    assert m.buffer_nbytes() == before


# ------------------------------------------------------- output activations
def _both_spellings(act, out, dtype=np.float64):
    a = nn.Sequential(nn.Dense(8, 16, "relu"), nn.Dense(16, out, activation=act),
                      seed=3, dtype=dtype)
    b = nn.Sequential(nn.Dense(8, 16, "relu"), nn.Dense(16, out),
                      nn.Softmax() if act == "softmax" else nn.Sigmoid(), seed=3, dtype=dtype)
    return a, b


@pytest.mark.parametrize("act, loss, out", [("softmax", "cross_entropy", 3),
                                            ("sigmoid", "binary_cross_entropy", 1)])
def test_output_activation_both_spellings_are_one_model(act, loss, out):
    X = rng(0).standard_normal((120, 8))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1 if out == 3 else 0)
    a, b = _both_spellings(act, out)
    np.testing.assert_array_equal(a.parameters().data, b.parameters().data)
    assert a.output_activation == b.output_activation == act
    ha = a.fit(X, y, loss=loss, epochs=10, batch_size=16, seed=1, verbose=0,
               optimizer=optim.Adam(a.parameters(), lr=0.01))
    hb = b.fit(X, y, loss=loss, epochs=10, batch_size=16, seed=1, verbose=0,
               optimizer=optim.Adam(b.parameters(), lr=0.01))
    assert ha.history == hb.history
    np.testing.assert_array_equal(a.parameters().data, b.parameters().data)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a(X), b(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    # applied once: the probabilities are those of the logits before the activation
    logits = a._infer(a._check_X(X), a._body).copy()
    p = a.predict_proba(X)
    if act == "softmax":
        e = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-12)
        np.testing.assert_allclose(a(X), p, rtol=1e-12)
    else:
        np.testing.assert_allclose(p, 1 / (1 + np.exp(-logits[:, 0])), rtol=1e-12)
    assert ha.history["accuracy"][-1] > 0.8


def test_dense_sigmoid_output_learns_separable_data():
    # trained to 0.46-0.52 accuracy when the sigmoid was applied twice
    X = rng(0).standard_normal((400, 8)).astype(np.float32)
    y = (X @ rng(1).standard_normal(8) > 0).astype(int)
    m = nn.Sequential(nn.Dense(8, 16, "relu"), nn.Dense(16, 1, activation="sigmoid"), seed=0)
    m.fit(X, y, loss="binary_cross_entropy", epochs=30, seed=0, verbose=0)
    assert m.evaluate(X, y)["accuracy"] > 0.9


def test_loss_that_does_not_fit_the_output_activation():
    m = nn.Sequential(nn.Dense(4, 3, activation="sigmoid"), seed=0)
    X = rng(0).random((6, 4))
    with pytest.raises(ValueError, match="loss: cross_entropy .* ends in sigmoid"):
        m.fit(X, np.arange(6) % 3, verbose=0)
    # mse through the sigmoid is fine: values in (0, 1)
    m.fit(X, rng(1).random((6, 3)), loss="mse", epochs=2, verbose=0)
    assert np.all((m.predict(X) > 0) & (m.predict(X) < 1))


# ------------------------------------------------------------ summary and names
def test_one_naming_scheme():
    m = nn.Sequential(nn.Dense(4, 8, "relu"), nn.Residual(nn.Dense(8, 8), nn.Tanh()),
                      nn.Maxout(8, 3, 2), seed=0)
    names = m.layer_names()
    assert names == ["dense_0", "residual_1.dense_0", "maxout_2"]
    assert m.parameters().names == ["dense_0.W", "dense_0.b", "residual_1.dense_0.W",
                                    "residual_1.dense_0.b", "maxout_2.W", "maxout_2.b"]
    h = m.fit(rng(0).random((20, 4)), np.arange(20) % 3, epochs=1, verbose=0)
    assert [k for k in h.history if k.startswith("grad_norm/")] == \
        [f"grad_norm/{n}" for n in names]
    s = m.summary()
    for n in names:
        assert n in s
    # the names of before ('0.W', '1.0.W') still reach the same arrays
    p = m.parameters()
    assert p["0.W"] is p["dense_0.W"] and p.grad_of("1.0.b") is p.grad_of("residual_1.dense_0.b")
    assert "2.W" in p


def test_summary():
    m = nn.Sequential(nn.Dense(784, 512, "relu"), nn.Dropout(0.2), nn.Dense(512, 10, "softmax"))
    s = m.summary()
    lines = s.splitlines()
    assert "input (N, 784)" in lines[0]
    assert lines[1].split() == ["layer", "type", "output", "shape", "parameters"]
    assert lines[2].split() == ["dense_0", "Dense(relu)", "(N,", "512)", "401,920"]
    assert lines[3].split() == ["dropout_1", "Dropout", "(N,", "512)", "0"]
    assert lines[4].split() == ["dense_2", "Dense(softmax)", "(N,", "10)", "5,130"]
    assert lines[-1] == "total parameters: 407,050"
    assert "(N, 3, ?, ?)" in image_model().summary()


def test_a_refused_model_leaves_its_layers_unchanged():
    d = nn.Dense(16, 3, "softmax")
    with pytest.raises(ValueError):
        nn.Sequential(nn.Dense(8, 5), d)
    m = nn.Sequential(nn.Dense(8, 16), d, nn.Dense(3, 2), seed=0)  # d is not last here
    x = rng(0).random((4, 8))
    h = m.layers[0].forward(m._check_X(x))
    np.testing.assert_allclose(d.forward(h).sum(axis=1), 1, rtol=1e-6)  # softmax applied
