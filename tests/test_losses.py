"""Losses: the compiled backends against the reference, the reference against closed
forms, scikit-learn, SciPy and finite differences (every backend's gradients too),
extreme values, the API contract and bad input.  An optional extra test compares
softmax_cross_entropy with PyTorch when it is installed; nothing else needs it."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from fastdl._registry import ops
from conftest import BACKENDS, COMPILED, five_point, layouts, rng, tol

REDUCTIONS = ("mean", "sum", "none")
ELEMENTWISE_SHAPES = [(1,), (7,), (33, 17), (3, 5, 7), (70001,)]  # 70001 >= 65536: parallel
ROW_SHAPES = [(1, 1), (1, 7), (5, 3), (33, 17), (300, 257)]        # 300 * 257 >= 65536


def close(got, ref, dtype, scale=1.0, unit=0.0):
    """Same dtype and shape; equal within the dtype's tolerance, the absolute part
    taken relative to the largest finite magnitude of ``ref`` or ``unit`` (gradients of
    a mean are all small; a gradient that is exactly 0 in theory has rounding errors
    of the size of its terms, ``unit``)."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    t = tol(dtype, scale)
    fin = np.abs(ref[np.isfinite(ref)])
    mag = max(float(fin.max()) if fin.size else 0.0, unit, 1e-30)
    np.testing.assert_allclose(got, ref, rtol=t["rtol"], atol=t["atol"] * mag)


# ---------------------------------------------------------------- inputs

def pair_inputs(name, shape, dtype, seed=0):
    """(first, second) inputs of an elementwise loss ``name`` (forward stem)."""
    r = rng(seed)
    if name == "mse":
        a, b = r.standard_normal(shape), r.standard_normal(shape)
    elif name == "binary_cross_entropy":
        a, b = r.uniform(0.02, 0.98, shape), r.uniform(0, 1, shape)
        special = [0.0, 1.0, -0.5, 1.5, 1e-9]  # clipped entries
        k = min(len(special), a.size // 5)
        a.reshape(-1)[: 5 * k: 5] = special[:k]
    else:
        a, b = 4 * r.standard_normal(shape), r.uniform(0, 1, shape)
    return a.astype(dtype), b.astype(dtype)


ELEMENTWISE = {  # forward -> backward
    "mse": "mse_backward",
    "binary_cross_entropy": "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits": "binary_cross_entropy_with_logits_backward",
}


def sce_inputs(n, c, dtype, kind, weighted, seed=0):
    """logits (N, C), labels or probabilities, weight (one class weighs 0) or None."""
    r = rng(seed)
    z = (3 * r.standard_normal((n, c))).astype(dtype)
    if kind == "labels":
        t = r.integers(0, c, n)
    else:
        t = r.uniform(0, 1, (n, c)).astype(dtype)  # need not sum to 1
    w = None
    if weighted:
        w = r.uniform(0.2, 2.0, c).astype(dtype)
        if c > 1:
            w[-1] = 0.0
    return z, t, w


def prob_rows(n, c, dtype, seed=0):
    r = rng(seed)
    p = r.uniform(0.01, 1, (n, c))
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def grad_unit(n, w, red):
    """The size of one term of dlogits: max weight / N for a mean."""
    return (1.0 if w is None else float(w.max())) / (max(n, 1) if red == "mean" else 1)


def test_every_registered_loss_is_tested():
    tested = set(ELEMENTWISE) | set(ELEMENTWISE.values()) | {
        "softmax_cross_entropy", "cross_entropy", "kl_divergence"}
    assert {op.name for op in ops("losses")} == tested


# ---------------------------------------------------------------- compiled vs reference

@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_matches_reference(compiled, dtype, name, shape):
    a, b = pair_inputs(name, shape, dtype)
    fwd, bwd = getattr(F, name), getattr(F, ELEMENTWISE[name])
    for red in REDUCTIONS:
        ref = fwd(a, b, reduction=red, backend="numpy")
        got = fwd(a, b, reduction=red, backend=compiled)
        assert got.shape == (() if red != "none" else shape)
        close(got, ref, dtype)
        close(bwd(a, b, reduction=red, backend=compiled),
              bwd(a, b, reduction=red, backend="numpy"), dtype)


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_softmax_cross_entropy_matches_reference(compiled, dtype, shape, kind, weighted,
                                                 smoothing):
    z, t, w = sce_inputs(*shape, dtype, kind, weighted)
    for red in REDUCTIONS:
        ref_loss, ref_d = F.softmax_cross_entropy(z, t, w, smoothing, red, backend="numpy")
        loss, d = F.softmax_cross_entropy(z, t, w, smoothing, red, backend=compiled)
        assert loss.shape == (() if red != "none" else (shape[0],))
        close(loss, ref_loss, dtype, scale=2)
        close(d, ref_d, dtype, scale=2, unit=grad_unit(shape[0], w, red))
        assert d.flags.c_contiguous


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["labels", "probs"])
def test_cross_entropy_and_kl_match_reference(compiled, dtype, shape, kind):
    n, c = shape
    p = prob_rows(n, c, dtype)
    p.reshape(-1)[::3] = 0.0  # exercises the clipping and 0 log 0
    t = rng(1).integers(0, c, n) if kind == "labels" else prob_rows(n, c, dtype, seed=1)
    q = prob_rows(n, c, dtype, seed=2)
    for red in REDUCTIONS:
        close(F.cross_entropy(p, t, reduction=red, backend=compiled),
              F.cross_entropy(p, t, reduction=red, backend="numpy"), dtype)
        close(F.kl_divergence(p, q, reduction=red, backend=compiled),
              F.kl_divergence(p, q, reduction=red, backend="numpy"), dtype)


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_any_layout(backend, dtype, layout):
    z, t, w = sce_inputs(6, 5, dtype, "probs", True)
    ref = F.softmax_cross_entropy(z, t, w, 0.1, backend="numpy")
    got = F.softmax_cross_entropy(layouts(z)[layout], layouts(t)[layout], w, 0.1,
                                  backend=backend)
    close(got[0], ref[0], dtype)
    close(got[1], ref[1], dtype)
    assert got[1].flags.c_contiguous
    labels = np.arange(6) % 5
    close(F.softmax_cross_entropy(layouts(z)[layout], labels[::-1], backend=backend)[1],
          F.softmax_cross_entropy(z, labels[::-1].copy(), backend="numpy")[1], dtype)
    a, b = pair_inputs("binary_cross_entropy_with_logits", (6, 5), dtype)
    for name in ELEMENTWISE:
        for fn in (getattr(F, name), getattr(F, ELEMENTWISE[name])):
            r = fn(a, b, reduction="none", backend="numpy")
            g = fn(layouts(a)[layout], layouts(b)[layout], reduction="none", backend=backend)
            assert g.flags.c_contiguous
            close(g, r, dtype)
    p, q = prob_rows(6, 5, dtype), prob_rows(6, 5, dtype, seed=3)
    close(F.kl_divergence(layouts(p)[layout], layouts(q)[layout], backend=backend),
          F.kl_divergence(p, q, backend="numpy"), dtype)
    close(F.cross_entropy(layouts(p)[layout], layouts(q)[layout], backend=backend),
          F.cross_entropy(p, q, backend="numpy"), dtype)


def test_bce_logs_within_an_ulp_over_float32(compiled):
    # The compiled backends compute float32 log and log1p inline (not libm): -log p
    # (y = 1) and -log1p(-p) (y = 0) over every 4099th float32 in (0, 1).  For y = 1
    # through cross_entropy's -log p, whose eps may be the smallest subnormal, so that
    # nothing in range is clipped; for y = 0 eps is the smallest that binary losses take
    # (1 - eps must stay below 1 in float32), and p from eps up
    p = np.arange(1, 0x3F800000, 4099, dtype=np.uint32).view(np.float32)
    p64 = p.astype(np.float64)
    got = F.cross_entropy(p[:, None], np.zeros(p.size, int), eps=1e-45, reduction="none",
                          backend=compiled)
    cases = [(got, -np.log(p64))]
    eps = 2.0 ** -24
    q = p[p >= eps]
    got = F.binary_cross_entropy(q, np.zeros_like(q), eps=eps, reduction="none",
                                 backend=compiled)
    cases.append((got, -np.log1p(-q.astype(np.float64))))
    for got, ref in cases:
        spacing = np.spacing(np.maximum(np.abs(ref), 1e-45).astype(np.float32))
        ulps = np.abs(got - ref) / spacing.astype(np.float64)
        assert ulps.max() <= 1.0, (ref.size, np.argmax(ulps), ulps.max())


# ---------------------------------------------------------------- closed forms, oracles

def test_reference_closed_forms():
    kw = dict(backend="numpy")
    pred, target = np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 5.0])
    assert float(F.mse(pred, target, **kw)) == pytest.approx(5 / 3)
    assert float(F.mse(pred, target, "sum", **kw)) == pytest.approx(5)
    np.testing.assert_allclose(F.mse(pred, target, "none", **kw), [1, 0, 4])
    np.testing.assert_allclose(F.mse_backward(pred, target, **kw), [2 / 3, 0, -4 / 3])
    np.testing.assert_allclose(F.mse_backward(pred, target, "sum", **kw), [2, 0, -4])

    p, y = np.array([0.5, 0.9, 0.0, 1.0]), np.array([1.0, 0.0, 1.0, 0.0])
    eps = 1e-7
    np.testing.assert_allclose(F.binary_cross_entropy(p, y, reduction="none", **kw),
                               [math.log(2), -math.log(0.1), -math.log(eps),
                                -math.log1p(-(1 - eps))], rtol=1e-12)
    np.testing.assert_allclose(F.binary_cross_entropy_backward(p, y, reduction="sum", **kw),
                               [-2.0, 1 / 0.1, 0.0, 0.0], rtol=1e-12)

    z, y = np.array([0.0, 2.0, -3.0]), np.array([1.0, 0.25, 0.0])
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(z, y, reduction="none", **kw),
        -(y * np.log(s) + (1 - y) * np.log(1 - s)), rtol=1e-12)
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits_backward(z, y, **kw),
                               (s - y) / 3, rtol=1e-12)

    loss, d = F.softmax_cross_entropy(np.zeros((1, 3)), [1], **kw)
    assert float(loss) == pytest.approx(math.log(3))
    np.testing.assert_allclose(d, [[1 / 3, -2 / 3, 1 / 3]])

    p, q = np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([[0.25, 0.75], [0.5, 0.0]])
    np.testing.assert_allclose(F.kl_divergence(p, q, reduction="none", **kw),
                               [0.5 * math.log(2) + 0.5 * math.log(2 / 3), math.log(2)])


def torch_formula(z, target, w, eps, reduction):
    """PyTorch's CrossEntropyLoss written out with scalar loops (an independent oracle)."""
    n, c = z.shape
    w = np.ones(c) if w is None else w
    losses, denom = [], 0.0
    for i in range(n):
        m = max(z[i])
        lse = m + math.log(sum(math.exp(v - m) for v in z[i]))
        logp = [v - lse for v in z[i]]
        if np.ndim(target) == 1:
            y = int(target[i])
            li = (1 - eps) * w[y] * -logp[y] + eps / c * sum(w[k] * -logp[k] for k in range(c))
            denom += w[y]
        else:
            li = -sum(w[k] * ((1 - eps) * target[i][k] + eps / c) * logp[k] for k in range(c))
            denom += 1
        losses.append(li)
    if reduction == "none":
        return np.array(losses)
    return sum(losses) / denom if reduction == "mean" else sum(losses)


@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("smoothing", [0.0, 0.3, 1.0])
def test_softmax_cross_entropy_reference_against_formula(kind, weighted, smoothing):
    z, t, w = sce_inputs(5, 4, np.float64, kind, weighted, seed=7)
    for red in REDUCTIONS:
        loss, _ = F.softmax_cross_entropy(z, t, w, smoothing, red, backend="numpy")
        np.testing.assert_allclose(loss, torch_formula(z, t, w, smoothing, red), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
@pytest.mark.parametrize("kind", ["labels", "onehot"])
def test_cross_entropy_matches_sklearn(backend, dtype, kind):
    from sklearn.metrics import log_loss

    n, c = 40, 6
    p = prob_rows(n, c, dtype, seed=4)
    p[0] = 0  # clipped: sklearn clips to the dtype's machine epsilon, so do we
    p[0, 1] = 1
    p[1, 2] = 0  # clipped entries that count
    labels = rng(5).integers(0, c, n)
    labels[:2] = [0, 2]
    t = labels if kind == "labels" else np.eye(c, dtype=dtype)[labels]
    want_mean = log_loss(labels, p, labels=np.arange(c))
    want_sum = log_loss(labels, p, labels=np.arange(c), normalize=False)
    got = F.cross_entropy(p, t, backend=backend)
    assert got.dtype == dtype and got.shape == ()
    np.testing.assert_allclose(float(got), want_mean, rtol=tol(dtype)["rtol"])
    np.testing.assert_allclose(float(F.cross_entropy(p, t, reduction="sum", backend=backend)),
                               want_sum, rtol=tol(dtype)["rtol"])


def test_kl_matches_scipy(backend, dtype):
    from scipy.special import rel_entr

    p, q = prob_rows(9, 7, dtype), prob_rows(9, 7, dtype, seed=1)
    p[0, :3] = 0  # 0 log 0
    q[1, :2] = 0
    p[1, :2] = 0
    want = rel_entr(p.astype(np.float64), q.astype(np.float64)).sum(axis=1)
    got = F.kl_divergence(p, q, reduction="none", backend=backend)
    close(got, want.astype(dtype), dtype, scale=5)
    np.testing.assert_allclose(float(F.kl_divergence(p, q, backend=backend)), want.mean(),
                               rtol=5 * tol(dtype)["rtol"])


def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    for kind in ("labels", "probs"):
        for weighted in (False, True):
            for smoothing in (0.0, 0.25):
                z, t, w = sce_inputs(17, 9, dtype, kind, weighted, seed=11)
                tz = torch.tensor(z, dtype=tdt, requires_grad=True)
                tt = torch.tensor(t) if kind == "labels" else torch.tensor(t, dtype=tdt)
                tw = None if w is None else torch.tensor(w, dtype=tdt)
                for red in REDUCTIONS:
                    tz.grad = None
                    want = torch.nn.functional.cross_entropy(
                        tz, tt, weight=tw, label_smoothing=smoothing, reduction=red)
                    want.sum().backward()
                    for be in BACKENDS:
                        loss, d = F.softmax_cross_entropy(z, t, w, smoothing, red, backend=be)
                        close(loss, want.detach().numpy(), dtype, scale=5)
                        close(d, tz.grad.numpy(), dtype, scale=5)


# ---------------------------------------------------------------- finite differences

def summed(fn, *args, **kw):
    """The scalar whose gradient a backward returns: the loss, or the sum for "none"."""
    return lambda v: float(np.sum(fn(v, *args, **kw)))


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("red", REDUCTIONS)
def test_elementwise_backward_finite_differences(backend, name, red):
    a, b = pair_inputs(name, (3, 4), np.float64, seed=3)
    if name == "binary_cross_entropy":
        a = rng(4).uniform(0.1, 0.9, (3, 4))
        a[0, :2] = [-0.5, 1.5]  # clipped: the loss is flat there, the gradient 0
    want = five_point(summed(getattr(F, name), b, reduction=red, backend="numpy"), a)
    got = getattr(F, ELEMENTWISE[name])(a, b, reduction=red, backend=backend)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    if name == "binary_cross_entropy":
        assert np.all(got[0, :2] == 0)


@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("red", REDUCTIONS)
def test_dlogits_finite_differences(backend, kind, weighted, smoothing, red):
    z, t, w = sce_inputs(4, 5, np.float64, kind, weighted, seed=5)
    want = five_point(lambda v: float(np.sum(
        F.softmax_cross_entropy(v, t, w, smoothing, red, backend="numpy")[0])), z)
    _, d = F.softmax_cross_entropy(z, t, w, smoothing, red, backend=backend)
    np.testing.assert_allclose(d, want, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- extreme values

def test_softmax_cross_entropy_extreme_logits(backend, dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]], dtype)
    for smoothing in (0.0, 0.1):
        loss, d = F.softmax_cross_entropy(z, [0, 0], label_smoothing=smoothing,
                                          reduction="none", backend=backend)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(d))
        if smoothing == 0:
            np.testing.assert_allclose(loss, [0.0, 2e4], rtol=1e-6)
            np.testing.assert_allclose(d, [[0, 0, 0], [-1, 1, 0]], atol=1e-6)
    loss, d = F.softmax_cross_entropy(z, np.array([[1, 0, 0], [0, 0, 1]], dtype),
                                      reduction="sum", backend=backend)
    np.testing.assert_allclose(float(loss), 2e4, rtol=1e-6)
    assert np.all(np.isfinite(d))
    # gaps to the row max through exp's subnormal range and beyond its underflow
    z = np.stack([np.linspace(-800, 0, 257), np.linspace(-120, 3, 257)]).astype(dtype)
    for t in ([0, 256], [128, 5]):
        for smoothing in (0.0, 0.3):
            ref = F.softmax_cross_entropy(z, t, label_smoothing=smoothing, reduction="none",
                                          backend="numpy")
            got = F.softmax_cross_entropy(z, t, label_smoothing=smoothing, reduction="none",
                                          backend=backend)
            close(got[0], ref[0], dtype)
            close(got[1], ref[1], dtype)


def test_softmax_cross_entropy_minus_inf_logits(backend, dtype):
    ninf = -np.inf
    z = np.array([[0.0, ninf, 1.0]], dtype)
    loss, d = F.softmax_cross_entropy(z, [0], backend=backend)  # target is finite
    p0 = 1 / (1 + math.e)
    np.testing.assert_allclose(float(loss), -math.log(p0), rtol=1e-6)
    np.testing.assert_allclose(d, [[p0 - 1, 0, 1 - p0]], rtol=1e-6, atol=1e-7)
    loss, d = F.softmax_cross_entropy(z, [0], label_smoothing=0.1, backend=backend)
    assert float(loss) == np.inf  # eps/C of the mass sits on a class with p = 0
    assert np.all(np.isfinite(d))
    np.testing.assert_allclose(d[0, 1], -0.1 / 3, rtol=1e-6)
    # a zero coefficient on p = 0 contributes 0 (PyTorch: nan)
    loss, d = F.softmax_cross_entropy(z, np.array([[1.0, 0.0, 0.0]], dtype), backend=backend)
    np.testing.assert_allclose(float(loss), -math.log(p0), rtol=1e-6)
    w = np.array([1.0, 0.0, 1.0], dtype)
    loss, d = F.softmax_cross_entropy(z, [2], w, 0.2, backend=backend)
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    loss, d = F.softmax_cross_entropy(z, [1], backend=backend)  # the target has p = 0
    assert float(loss) == np.inf and np.all(np.isfinite(d))
    # nan and +inf spoil their own row only
    z = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]], dtype)
    loss, d = F.softmax_cross_entropy(z, [0, 1, 2], reduction="none", backend=backend)
    assert np.all(np.isnan(loss[:2])) and np.all(np.isnan(d[:2]))
    assert np.isfinite(loss[2]) and np.all(np.isfinite(d[2]))
    # whatever their coefficients: the target's class weighing 0 (the reference gave a
    # loss of 0 beside a NaN gradient), an all -inf row, probability targets with zeros
    z = np.array([[np.nan, 0.0, 0.0], [np.inf, 0.0, 0.0], [ninf, ninf, ninf]], dtype)
    w = np.array([0.0, 1.0, 1.0], dtype)
    for target in ([0, 0, 0], np.array([[1, 0, 0]] * 3, dtype)):
        for smoothing in (0.0, 0.1):
            loss, d = F.softmax_cross_entropy(z, target, w, smoothing, "none",
                                              backend=backend)
            assert np.all(np.isnan(loss)) and np.all(np.isnan(d)), (target, smoothing, loss)


def test_subnormal_class_weights_give_the_weighted_mean(backend, dtype):
    # the mean's 1 / sum(w) overflowed the dtype: a finite loss, an inf or NaN gradient
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], dtype)
    y = np.array([0, 1])
    tiny = np.finfo(dtype).tiny / 2**10  # subnormal: 1 / (2 tiny) overflows
    loss, g = F.softmax_cross_entropy(x, y, np.full(3, tiny, dtype), backend=backend)
    want_loss, want_g = F.softmax_cross_entropy(x, y, backend=backend)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(g, want_g, rtol=1e-6, atol=1e-7)


def test_subnormal_class_weights_beside_large_ones(backend):
    # scaled up by 2**k so that 1 / sum(w[y]) fits, the weight of a class no target has
    # (weighed in by label smoothing) went beyond float32 and was clamped: a mean that
    # overflows came out finite and 8x too small.  Now as float64 rounded to float32
    z = np.zeros((2, 2), np.float32)
    w = np.array([1e-40, 1.0], np.float32)  # the targets' class subnormal
    for smoothing, overflows in ((0.5, True), (0.0, False)):
        want_loss, want_d = F.softmax_cross_entropy(z.astype(np.float64), [0, 0],
                                                    w.astype(np.float64), smoothing,
                                                    backend="numpy")
        assert (abs(float(want_loss)) > float(np.finfo(np.float32).max)) == overflows
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss, d = F.softmax_cross_entropy(z, [0, 0], w, smoothing, backend=backend)
        with np.errstate(over="ignore"):
            want_loss, want_d = want_loss.astype(np.float32), want_d.astype(np.float32)
        np.testing.assert_allclose(float(loss), want_loss, rtol=1e-6)
        np.testing.assert_allclose(d, want_d, rtol=1e-6)


def test_softmax_cross_entropy_degenerate_sizes_and_weights(backend, dtype):
    loss, d = F.softmax_cross_entropy(np.array([[3.0]], dtype), [0], backend=backend)
    assert float(loss) == 0 and d.tolist() == [[0.0]]  # C = 1: p = 1
    loss, d = F.softmax_cross_entropy(np.array([[3.0]], dtype), [0], label_smoothing=0.5,
                                      reduction="none", backend=backend)
    assert loss.tolist() == [0.0] and d.tolist() == [[0.0]]
    z = rng().standard_normal((3, 4)).astype(dtype)
    w = np.array([0.0, 0.0, 1.0, 1.0], dtype)
    # zero total weight of the targets: nan for "mean", as PyTorch (even with smoothing)
    for smoothing in (0.0, 0.2):
        loss, d = F.softmax_cross_entropy(z, [0, 1, 0], w, smoothing, backend=backend)
        assert np.isnan(loss) and np.all(np.isnan(d))
    loss, d = F.softmax_cross_entropy(z, [0, 1, 0], w, reduction="sum", backend=backend)
    assert float(loss) == 0 and np.all(d == 0)
    # weighted mean divides by the targets' weights: classes 2 and 3 weigh 1
    loss, _ = F.softmax_cross_entropy(z, [0, 2, 3], w, backend=backend)
    rows, _ = F.softmax_cross_entropy(z, [0, 2, 3], w, reduction="none", backend=backend)
    assert rows[0] == 0
    np.testing.assert_allclose(float(loss), (rows[1] + rows[2]) / 2, rtol=1e-6)
    # no rows
    z0 = np.zeros((0, 4), dtype)
    loss, d = F.softmax_cross_entropy(z0, np.zeros(0, np.int64), backend=backend)
    assert np.isnan(loss) and d.shape == (0, 4)
    assert float(F.softmax_cross_entropy(z0, z0, reduction="sum", backend=backend)[0]) == 0
    assert F.softmax_cross_entropy(z0, z0, reduction="none", backend=backend)[0].shape == (0,)


def test_logits_bce_keeps_the_loss_of_confident_right_predictions(backend, dtype):
    # softplus(z) - z y cancelled to 0 for z = 20, y = 1 (the loss is e^-20 = 2e-9), in
    # the compiled kernels; the mirror case (z = -20, y = 0) was exact.  Relative error,
    # on each element and on the sum, against exact values
    z = np.array([20.0, 40.0, -20.0, -40.0, 15.0, 3.0], dtype)
    y = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0], dtype)
    exact = np.log1p(np.exp(-np.abs(z.astype(np.float64))))
    loss = F.binary_cross_entropy_with_logits(z, y, reduction="none", backend=backend)
    np.testing.assert_allclose(loss, exact, rtol=1e-6, atol=0)
    total = F.binary_cross_entropy_with_logits(z[:2], y[:2], reduction="sum", backend=backend)
    np.testing.assert_allclose(float(total), exact[:2].sum(), rtol=1e-6)


def test_bce_with_logits_gradient_of_confident_right_predictions(backend, dtype):
    # sigmoid(z) - y cancels for y = 1 (z > 0) and y = 0 (z < 0): the gradient is
    # -sigmoid(-z) and sigmoid(z), tiny and exactly representable in relative terms
    # (it was 0 in float32 from z = 17, and in float64 from z = 37)
    z = np.concatenate([np.linspace(5, 80, 31), -np.linspace(5, 80, 31)]).astype(dtype)
    y = (z > 0).astype(dtype)
    z64 = z.astype(np.float64)
    exact = np.where(z64 > 0, -1 / (1 + np.exp(z64)), 1 / (1 + np.exp(-z64)))
    got = F.binary_cross_entropy_with_logits_backward(z, y, reduction="sum", backend=backend)
    np.testing.assert_allclose(got, exact, rtol=8 * np.finfo(dtype).eps, atol=0)
    # wrong predictions and soft labels: within a few ulp of 1 - y and sigmoid(z) - y
    y = np.tile(np.array([0.0, 0.25, 0.5, 1.0], dtype), 31)[:62][::-1].copy()
    exact = 1 / (1 + np.exp(-z64)) - y
    got = F.binary_cross_entropy_with_logits_backward(z, y, reduction="sum", backend=backend)
    np.testing.assert_allclose(got, exact, rtol=8 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps)


def test_elementwise_extreme_values(backend, dtype):
    z = np.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dtype)
    loss = F.binary_cross_entropy_with_logits(z, y, reduction="none", backend=backend)
    np.testing.assert_allclose(loss, [0, 0, 1e4, 1e4, math.log(2)], rtol=1e-6)
    g = F.binary_cross_entropy_with_logits_backward(z, y, reduction="sum", backend=backend)
    np.testing.assert_allclose(g, [0, 0, 1, -1, 0], atol=1e-7)
    p = np.array([0.0, 1.0, 0.0, 1.0], dtype)
    y = np.array([0.0, 1.0, 1.0, 0.0], dtype)
    loss = F.binary_cross_entropy(p, y, reduction="none", backend=backend)
    assert np.all(np.isfinite(loss)) and loss[0] < 1e-6 and loss[2] > 15
    assert np.all(np.isfinite(F.binary_cross_entropy_backward(p, y, backend=backend)))
    nan = np.array([np.nan, 0.5], dtype)
    for fn in (F.mse, F.binary_cross_entropy, F.binary_cross_entropy_with_logits,
               F.mse_backward, F.binary_cross_entropy_backward,
               F.binary_cross_entropy_with_logits_backward):
        out = fn(nan, np.array([0.5, 0.5], dtype), reduction="none", backend=backend)
        assert np.isnan(out[0]) and np.isfinite(out[1]), fn.__name__
    empty = np.zeros((0, 3), dtype)
    assert np.isnan(F.mse(empty, empty, backend=backend))
    assert F.kl_divergence(empty.T, empty.T, reduction="none", backend=backend).tolist() == [0] * 3
    assert float(F.mse(empty, empty, "sum", backend=backend)) == 0
    assert F.mse_backward(empty, empty, backend=backend).shape == (0, 3)


# ---------------------------------------------------------------- contract

def test_contract(backend):
    dtype = np.float32
    z, t, w = sce_inputs(5, 4, dtype, "probs", True)
    a, b = pair_inputs("binary_cross_entropy", (5, 4), dtype)
    arrays = (z, t, w, a, b)
    for x in arrays:
        x.setflags(write=False)
    copies = [x.copy() for x in arrays]
    for name, bwd in ELEMENTWISE.items():
        fwd, bwd = getattr(F, name), getattr(F, bwd)
        out = np.empty((), dtype)
        assert fwd(a, b, out=out, backend=backend) is out
        out = np.empty((5, 4), dtype)
        assert fwd(a, b, reduction="none", out=out, backend=backend) is out
        assert bwd(a, b, out=out, backend=backend) is out
        res = fwd(a, b, backend=backend)
        assert isinstance(res, np.ndarray) and res.shape == () and res.dtype == dtype
    loss_out, d_out = np.empty((), dtype), np.empty((5, 4), dtype)
    loss, d = F.softmax_cross_entropy(z, t, w, 0.1, out=(loss_out, d_out), backend=backend)
    assert loss is loss_out and d is d_out
    rows_out = np.empty(5, dtype)
    labels = np.arange(5) % 4
    labels.setflags(write=False)
    loss, d = F.softmax_cross_entropy(z, labels, reduction="none",
                                      out=(rows_out, None), backend=backend)
    assert loss is rows_out and d.dtype == dtype and d.flags.c_contiguous
    p = prob_rows(5, 4, dtype)
    p.setflags(write=False)
    assert F.cross_entropy(p, t, out=loss_out, backend=backend) is loss_out
    assert F.kl_divergence(p, t, reduction="none", out=rows_out, backend=backend) is rows_out
    for x, c in zip(arrays, copies):
        np.testing.assert_array_equal(x, c)


# ---------------------------------------------------------------- bad input

Z = np.zeros((4, 3), np.float32)
LABELS = np.array([0, 1, 2, 0])


@pytest.mark.parametrize("fn, args, kw, exc, match", [
    (F.mse, (np.zeros(3, np.int64), np.zeros(3)), {}, TypeError, "pred"),
    (F.mse, (np.zeros(3), np.zeros(3, np.float32)), {}, TypeError, "target"),
    (F.mse, (np.zeros(3), np.zeros(4)), {}, ValueError, "target"),
    (F.mse, (np.zeros(3), np.zeros(3)), dict(reduction="avg"), ValueError, "reduction"),
    (F.mse, (np.zeros(3), np.zeros(3)), dict(out=np.zeros(3)), ValueError, "out"),
    (F.mse, (np.zeros(3), np.zeros(3)), dict(reduction="none", out=np.zeros(3, np.float32)),
     TypeError, "out"),
    (F.mse_backward, ("abc", np.zeros(3)), {}, TypeError, "pred"),
    (F.mse_backward, (np.zeros(3), np.zeros(3)), dict(out=np.zeros(4)), ValueError, "out"),
    (F.binary_cross_entropy, (np.zeros(3), np.zeros(3)), dict(eps=0.0), ValueError, "eps"),
    (F.binary_cross_entropy, (np.zeros(3), np.zeros(3)), dict(eps=0.6), ValueError, "eps"),
    (F.binary_cross_entropy, (np.zeros(3), np.zeros(3)), dict(eps="x"), TypeError, "eps"),
    (F.binary_cross_entropy_backward, (np.zeros(3), np.zeros(2)), {}, ValueError, "y"),
    (F.binary_cross_entropy_with_logits, (np.zeros(3), [1, 0, 1]), {}, TypeError, "y"),
    (F.binary_cross_entropy_with_logits_backward, (np.zeros(3, np.float16), np.zeros(3)), {},
     TypeError, "z"),
    (F.softmax_cross_entropy, (np.zeros(3, np.float32), LABELS), {}, ValueError, "logits"),
    (F.softmax_cross_entropy, (np.zeros((4, 0), np.float32), LABELS), {}, ValueError, "logits"),
    (F.softmax_cross_entropy, (Z, np.array([0, 1, 3, 0])), {}, ValueError, r"target.*\[0, 3\)"),
    (F.softmax_cross_entropy, (Z, np.array([0, -1, 2, 0])), {}, ValueError, "target"),
    (F.softmax_cross_entropy, (Z, np.array([0, 1, 2])), {}, ValueError, "target"),
    (F.softmax_cross_entropy, (Z, np.zeros(4, np.float32)), {}, ValueError, "target"),
    (F.softmax_cross_entropy, (Z, np.zeros((4, 2), np.float32)), {}, ValueError, "target"),
    (F.softmax_cross_entropy, (Z, np.zeros((4, 3)),), {}, TypeError, "target"),
    (F.softmax_cross_entropy, (Z, np.zeros(4, bool)), {}, TypeError, "target"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(weight=np.ones(2, np.float32)), ValueError,
     "weight"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(weight=np.array([1, -1, 1], np.float32)),
     ValueError, "weight"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(weight=np.array([1, np.nan, 1], np.float32)),
     ValueError, "weight"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(weight=np.ones(3)), TypeError, "weight"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(label_smoothing=1.5), ValueError,
     "label_smoothing"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(label_smoothing=-0.1), ValueError,
     "label_smoothing"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(label_smoothing="a"), TypeError,
     "label_smoothing"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(reduction="batchmean"), ValueError, "reduction"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(out=np.zeros(())), TypeError, "out"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(out=(None, np.zeros((4, 2), np.float32))),
     ValueError, r"out\[1\]"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(out=(np.zeros(4, np.float32), None)),
     ValueError, r"out\[0\]"),
    (F.softmax_cross_entropy, (Z, LABELS), dict(out=(None, Z)), ValueError, r"out\[1\]"),
    (F.cross_entropy, (Z, np.array([0, 1, 5, 0])), {}, ValueError, "target"),
    (F.cross_entropy, (Z, LABELS), dict(eps=-1e-3), ValueError, "eps"),
    (F.cross_entropy, (np.zeros((4, 3), np.int32), LABELS), {}, TypeError, "probs"),
    (F.kl_divergence, (Z, np.zeros((4, 2), np.float32)), {}, ValueError, "q"),
    (F.kl_divergence, (Z, np.zeros((4, 3))), {}, TypeError, "q"),
    (F.kl_divergence, (np.zeros(3), np.zeros(3)), {}, ValueError, "p"),
    (F.kl_divergence, (Z, Z.copy()), dict(reduction="none", out=Z[:, 0]), ValueError, "out"),
])
def test_bad_input(backend, fn, args, kw, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args, **kw, backend=backend)


def test_out_overlapping_an_input_is_refused(backend):
    buf = np.zeros(12)
    x, target = buf[:6], np.ones(6)
    with pytest.raises(ValueError, match="out: must not share memory with the input pred"):
        F.mse(x, target, reduction="none", out=buf[3:9], backend=backend)
    with pytest.raises(ValueError, match="out: must not share memory"):
        F.mse_backward(x, target, out=x, backend=backend)
    p = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match="out: must not share memory with the input p"):
        F.kl_divergence(p, p.copy(), reduction="none", out=p.reshape(-1)[:4], backend=backend)
    # the fused loss's two results: a 0-D loss inside dlogits (the "none" case checks
    # the rows against dlogits; "mean" wrote the loss over a gradient entry)
    for red in ("mean", "sum", "none"):
        d = np.zeros((4, 3), np.float32)
        loss = d[0, 0, ...] if red != "none" else d[:, 0]
        with pytest.raises(ValueError, match="out"):
            F.softmax_cross_entropy(Z, LABELS, reduction=red, out=(loss, d), backend=backend)


def test_refused_input_writes_nothing(backend):
    d_out = np.full((4, 3), 7.0, np.float32)
    with pytest.raises(ValueError, match="target"):
        F.softmax_cross_entropy(Z, np.array([0, 1, 3, 0]), out=(None, d_out), backend=backend)
    with pytest.raises(ValueError, match="out"):
        F.softmax_cross_entropy(Z, LABELS, out=(np.zeros(3, np.float32), d_out),
                                backend=backend)
    assert np.all(d_out == 7)


# ---------------------------------------------------------------- properties

@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), c=st.integers(1, 40), kind=st.sampled_from(["labels", "probs"]),
       weighted=st.booleans(), smoothing=st.sampled_from([0.0, 0.1, 1.0]),
       red=st.sampled_from(REDUCTIONS), be=st.sampled_from(BACKENDS),
       dt=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31))
def test_property_softmax_cross_entropy(n, c, kind, weighted, smoothing, red, be, dt, seed):
    z, t, w = sce_inputs(n, c, dt, kind, weighted, seed)
    loss, d = F.softmax_cross_entropy(z, t, w, smoothing, red, backend=be)
    ref_loss, ref_d = F.softmax_cross_entropy(z, t, w, smoothing, red, backend="numpy")
    close(loss, ref_loss, dt, scale=2)
    close(d, ref_d, dt, scale=2, unit=grad_unit(n, w, red))
    # softmax is shift-invariant, so every row of the gradient sums to zero
    if np.all(np.isfinite(d)):
        scale = np.abs(d).max(initial=0) * c
        np.testing.assert_allclose(d.sum(axis=1), 0, atol=tol(dt, 10)["atol"] * max(scale, 1))
    if np.all(np.isfinite(loss)):
        assert np.all(loss >= -tol(dt, 10)["atol"])  # a cross-entropy is never negative


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
       name=st.sampled_from(list(ELEMENTWISE)), red=st.sampled_from(REDUCTIONS),
       be=st.sampled_from(COMPILED), dt=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31))
def test_property_elementwise(shape, name, red, be, dt, seed):
    a, b = pair_inputs(name, shape, dt, seed)
    for fn in (getattr(F, name), getattr(F, ELEMENTWISE[name])):
        close(fn(a, b, reduction=red, backend=be), fn(a, b, reduction=red, backend="numpy"), dt)
