"""max_pool2d / avg_pool2d and their backward kernels: every backend against the
reference, the reference against an independent loop, PyTorch (when importable) and
finite differences; ties and NaN; the API contract."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from conftest import COMPILED, assert_close, five_point, rng

# (N, C, H, W, kernel_size, stride)
SHAPES = [
    (1, 1, 4, 4, 2, None),        # 2x2 stride 2, N = 1, C = 1
    (2, 3, 7, 9, 2, None),        # odd sizes: the last row and column are dropped
    (2, 2, 7, 7, 3, 2),           # overlapping windows (stride < kernel)
    (3, 4, 6, 8, (3, 2), (1, 2)),  # non-square kernel and stride
    (1, 2, 5, 5, 1, 1),           # 1x1: the identity
    (2, 32, 5, 6, (5, 1), 1),     # many channels, a kernel as tall as the input
    (1, 1, 3, 3, 3, None),        # one window covering the whole plane
]
IDS = ["2x2", "odd", "overlap", "3x2s12", "1x1", "c32", "whole"]


def out_hw(shape):
    n, c, h, w, k, s = shape
    kh, kw = (k, k) if isinstance(k, int) else k
    s = (kh, kw) if s is None else ((s, s) if isinstance(s, int) else s)
    return (h - kh) // s[0] + 1, (w - kw) // s[1] + 1, kh, kw, s[0], s[1]


def make(shape, dtype, seed=0):
    # a permutation: no ties, so the argmax is the same under any scan order
    n, c, h, w = shape[:4]
    return rng(seed).permutation(n * c * h * w).reshape(n, c, h, w).astype(dtype)


def naive_pool(x, shape):
    ho, wo, kh, kw, sh, sw = out_hw(shape)
    n, c, h, w = x.shape
    y, avg = np.zeros((n, c, ho, wo)), np.zeros((n, c, ho, wo))
    am = np.zeros((n, c, ho, wo), int)
    for a in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    best, where, tot = -np.inf, -1, 0.0
                    for i in range(kh):
                        for j in range(kw):
                            v = x[a, ch, r * sh + i, s * sw + j]
                            tot += v
                            if v > best:
                                best, where = v, (r * sh + i) * w + s * sw + j
                    y[a, ch, r, s], am[a, ch, r, s] = best, where
                    avg[a, ch, r, s] = tot / (kh * kw)
    return y, am, avg


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_forward_matches_reference(compiled, dtype, shape):
    x = make(shape, dtype) / 7
    k, s = shape[4:]
    ry, ra = F.max_pool2d(x, k, s, backend="numpy")
    y, a = F.max_pool2d(x, k, s, backend=compiled)
    assert y.dtype == dtype and a.dtype == np.int32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(a, ra)
    assert_close(F.avg_pool2d(x, k, s, backend=compiled), F.avg_pool2d(x, k, s, backend="numpy"),
                 dtype, scale=5)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_backward_matches_reference(compiled, dtype, shape):
    x = make(shape, dtype)
    k, s = shape[4:]
    y, a = F.max_pool2d(x, k, s, backend="numpy")
    dy = rng(1).standard_normal(y.shape).astype(dtype)
    got = F.max_pool2d_backward(dy, a, x.shape, backend=compiled)
    assert got.dtype == dtype and got.shape == x.shape
    assert_close(got, F.max_pool2d_backward(dy, a, x.shape, backend="numpy"), dtype)
    got = F.avg_pool2d_backward(dy, x.shape, k, s, backend=compiled)
    assert_close(got, F.avg_pool2d_backward(dy, x.shape, k, s, backend="numpy"), dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_reference_against_naive_loops(shape):
    x = make(shape, np.float64) / 3
    k, s = shape[4:]
    y, am, avg = naive_pool(x, shape)
    ry, ra = F.max_pool2d(x, k, s, backend="numpy")
    np.testing.assert_array_equal(ry, y)
    np.testing.assert_array_equal(ra, am)
    np.testing.assert_allclose(F.avg_pool2d(x, k, s, backend="numpy"), avg, rtol=1e-14)
    dy = rng(2).standard_normal(y.shape)
    dx = np.zeros(x.shape)
    for idx in np.ndindex(*y.shape):
        dx[idx[0], idx[1]].flat[am[idx]] += dy[idx]
    np.testing.assert_array_equal(F.max_pool2d_backward(dy, ra, x.shape, backend="numpy"), dx)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[2], SHAPES[3]], ids=IDS[1:4])
def test_reference_against_torch(shape):
    torch = pytest.importorskip("torch")
    x = make(shape, np.float64) / 5
    k, s = shape[4:]
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, k, s, return_indices=True)
    y, a = F.max_pool2d(x, k, s, backend="numpy")
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(a, it.numpy())
    dy = rng(3).standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(F.max_pool2d_backward(dy, a, x.shape, backend="numpy"),
                               xt.grad.numpy(), rtol=1e-14)
    xt.grad = None
    at = torch.nn.functional.avg_pool2d(xt, k, s)
    np.testing.assert_allclose(F.avg_pool2d(x, k, s, backend="numpy"), at.detach().numpy(),
                               rtol=1e-14)
    at.backward(torch.tensor(dy))
    np.testing.assert_allclose(F.avg_pool2d_backward(dy, x.shape, k, s, backend="numpy"),
                               xt.grad.numpy(), rtol=1e-14)


def test_backward_against_finite_differences():
    shape = (2, 2, 7, 7, 3, 2)  # overlapping windows: a pixel may win twice
    x = make(shape, np.float64) / 10
    y, a = F.max_pool2d(x, 3, 2, backend="numpy")
    dy = rng(4).standard_normal(y.shape)
    fd = five_point(lambda v: float(np.sum(dy * F.max_pool2d(v, 3, 2, backend="numpy")[0])),
                    x, h=1e-3)  # distinct values 0.1 apart: no winner changes within 2h
    np.testing.assert_allclose(F.max_pool2d_backward(dy, a, x.shape, backend="numpy"), fd,
                               rtol=1e-8, atol=1e-9)
    fd = five_point(lambda v: float(np.sum(dy * F.avg_pool2d(v, 3, 2, backend="numpy"))), x)
    np.testing.assert_allclose(F.avg_pool2d_backward(dy, x.shape, 3, 2, backend="numpy"), fd,
                               rtol=1e-8, atol=1e-9)


def test_ties_and_nan(backend, dtype):
    x = np.array([[[[1, 1, 0, 2], [0, 1, 2, 2],
                    [np.nan, 5, 3, np.nan], [5, np.nan, np.nan, 3]]]], dtype)
    y, a = F.max_pool2d(x, 2, backend=backend)
    # the first max in row-major window order; the first NaN
    np.testing.assert_array_equal(a, [[[[0, 3], [8, 11]]]])
    np.testing.assert_array_equal(y, [[[[1, 2], [np.nan, np.nan]]]])


@pytest.mark.parametrize("layout", ["F", "strided", "misaligned"])
def test_layouts_and_out(backend, dtype, layout):
    shape = SHAPES[3]
    x = make(shape, dtype)
    k, s = shape[4:]
    ry, ra = F.max_pool2d(x, k, s, backend="numpy")
    dy = rng(5).standard_normal(ry.shape).astype(dtype)
    rdx = F.max_pool2d_backward(dy, ra, x.shape, backend="numpy")
    ravg = F.avg_pool2d(x, k, s, backend="numpy")
    radx = F.avg_pool2d_backward(dy, x.shape, k, s, backend="numpy")

    def lay(a):
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "strided":
            big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
            big[..., ::2] = a
            assert not big[..., ::2].flags.c_contiguous
            return big[..., ::2]
        raw = np.zeros(a.nbytes + 1, np.uint8)
        m = raw[1:].view(a.dtype).reshape(a.shape)
        m[...] = a
        assert not m.flags.aligned
        return m

    outs = (lay(np.zeros_like(ry)), lay(np.zeros_like(ra)))
    if layout != "misaligned":
        outs = tuple(np.ascontiguousarray(o) for o in outs)
    y, a = F.max_pool2d(lay(x), k, s, out=outs, backend=backend)
    assert y is outs[0] and a is outs[1]
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(a, ra)
    out = lay(np.zeros_like(x)) if layout == "misaligned" else None
    dx = F.max_pool2d_backward(lay(dy), lay(ra), x.shape, out=out, backend=backend)
    assert out is None or dx is out
    assert_close(dx, rdx, dtype)
    assert_close(F.avg_pool2d(lay(x), k, s, backend=backend), ravg, dtype, scale=5)
    dx = F.avg_pool2d_backward(lay(dy), x.shape, k, s, out=out, backend=backend)
    assert out is None or dx is out
    assert_close(dx, radx, dtype)


def test_argmax_of_any_integer_dtype(backend):
    x = make(SHAPES[0], np.float64)
    y, a = F.max_pool2d(x, 2, backend="numpy")
    ref = F.max_pool2d_backward(y, a, x.shape, backend="numpy")
    for dt in (np.int64, np.uint16, np.dtype(">i8")):
        np.testing.assert_array_equal(
            F.max_pool2d_backward(y, a.astype(dt), x.shape, backend=backend), ref)


def test_large_inputs_take_the_parallel_kernels(compiled):
    # above the parallel threshold (65536 elements) the kernels run over planes in parallel
    x = rng(6).standard_normal((4, 8, 48, 48))
    y, a = F.max_pool2d(x, 2, backend=compiled)
    ry, ra = F.max_pool2d(x, 2, backend="numpy")
    np.testing.assert_array_equal(a, ra)
    dx = F.max_pool2d_backward(y, a, x.shape, backend=compiled)
    np.testing.assert_array_equal(dx, F.max_pool2d_backward(ry, ra, x.shape, backend="numpy"))
    assert_close(F.avg_pool2d(x, 3, 2, backend=compiled),
                 F.avg_pool2d(x, 3, 2, backend="numpy"), np.float64)
    g = F.avg_pool2d(x, 3, 2, backend="numpy")
    assert_close(F.avg_pool2d_backward(g, x.shape, 3, 2, backend=compiled),
                 F.avg_pool2d_backward(g, x.shape, 3, 2, backend="numpy"), np.float64)


@pytest.mark.parametrize("call, exc, match", [
    (lambda b: F.max_pool2d(np.zeros((2, 3, 4)), 2, backend=b), ValueError, "x"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4), np.int32), 2, backend=b), TypeError, "x"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), 5, backend=b), ValueError, "kernel_size"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), (2, 5), backend=b), ValueError,
     "kernel_size"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), 0, backend=b), ValueError, "kernel_size"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2.0, backend=b), TypeError, "kernel_size"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, 0, backend=b), ValueError, "stride"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, 2**64, backend=b), ValueError, "stride"),
    (lambda b: F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, (1, 2**63), backend=b), ValueError,
     "stride"),
    (lambda b: F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, (1, -1), backend=b), ValueError,
     "stride"),
    (lambda b: F.avg_pool2d(np.zeros((1, 1, 4, 4)), None, backend=b), TypeError,
     "kernel_size"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2,
                            out=(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2))), backend=b),
     TypeError, "out"),
    (lambda b: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, out=np.zeros((1, 1, 2, 2)), backend=b),
     TypeError, "out"),
    (lambda b: F.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)),
                                     (1, 1, 4, 4), backend=b), TypeError, "argmax"),
    (lambda b: F.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 3), np.int32),
                                     (1, 1, 4, 4), backend=b), ValueError, "argmax"),
    (lambda b: F.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), 16),
                                     (1, 1, 4, 4), backend=b), ValueError, "argmax"),
    (lambda b: F.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), -1),
                                     (1, 1, 4, 4), backend=b), ValueError, "argmax"),
    (lambda b: F.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), int),
                                     (1, 2, 4, 4), backend=b), ValueError, "x_shape"),
    (lambda b: F.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), int),
                                     (1, 1, 4), backend=b), TypeError, "x_shape"),
    (lambda b: F.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), int),
                                     (1, 1, 4.0, 4), backend=b), TypeError, "x_shape"),
    # a plane beyond the int32 argmax: an index of 2**31 + 8 wrapped to a negative one,
    # and the compiled kernels wrote before dx (SIGSEGV)
    (lambda b: F.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32),
                                     np.array([2**31 + 8]).reshape(1, 1, 1, 1),
                                     (1, 1, 1, 2**31 + 64), backend=b), ValueError, "x_shape"),
    (lambda b: F.avg_pool2d_backward(np.zeros((1, 1, 2, 3)), (1, 1, 4, 4), 2, backend=b),
     ValueError, "dy"),
    (lambda b: F.avg_pool2d_backward(np.zeros((1, 1, 2, 2)), (1, 1, 4, 4), 5, backend=b),
     ValueError, "kernel_size"),
    (lambda b: F.avg_pool2d_backward(np.zeros((1, 1, 2, 2)), (1, 1, -4, 4), 2, backend=b),
     ValueError, "x_shape"),
])
def test_bad_input(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(backend)


def test_results_must_not_share_memory(backend):
    buf = np.zeros(8, np.int32)
    with pytest.raises(ValueError, match="share memory"):
        F.max_pool2d(np.zeros((1, 1, 4, 4), np.float32), 2,
                     out=(buf[:4].view(np.float32).reshape(1, 1, 2, 2),
                          buf[:4].reshape(1, 1, 2, 2)),
                     backend=backend)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       be=st.sampled_from(COMPILED), dt=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31))
def test_property(n, c, h, w, kh, kw, sh, sw, be, dt, seed):
    kh, kw = min(kh, h), min(kw, w)
    x = rng(seed).standard_normal((n, c, h, w)).astype(dt)
    y, a = F.max_pool2d(x, (kh, kw), (sh, sw), backend=be)
    ry, ra = F.max_pool2d(x, (kh, kw), (sh, sw), backend="numpy")
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(a, ra)
    assert_close(F.max_pool2d_backward(y, a, x.shape, backend=be),
                 F.max_pool2d_backward(y, a, x.shape, backend="numpy"), dt)
    avg = F.avg_pool2d(x, (kh, kw), (sh, sw), backend=be)
    assert_close(avg, F.avg_pool2d(x, (kh, kw), (sh, sw), backend="numpy"), dt, scale=5)
    assert_close(F.avg_pool2d_backward(avg, x.shape, (kh, kw), (sh, sw), backend=be),
                 F.avg_pool2d_backward(avg, x.shape, (kh, kw), (sh, sw), backend="numpy"), dt)


def test_every_pool_op_is_tested():
    from fastdl._registry import ops
    assert {op.name for op in ops("pool")} == {"max_pool2d", "max_pool2d_backward",
                                               "avg_pool2d", "avg_pool2d_backward"}
