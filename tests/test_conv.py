"""conv2d_forward / conv2d_backward: every backend against the reference over shapes,
strides, paddings and workspace sizes; the reference against an independent loop,
PyTorch (when importable) and finite differences; the API contract."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from fastdl.functional import conv as C
from fastdl.functional.dense import ACTIVATIONS
from conftest import BACKENDS, COMPILED, assert_close, five_point, rng

# (N, C, H, W, O, kh, kw, stride, padding)
SHAPES = [
    (1, 1, 5, 5, 1, 1, 1, 1, 0),           # 1x1, N = 1, C = 1
    (2, 3, 7, 6, 4, 3, 3, 1, 1),           # 3x3, "same" padding
    (3, 2, 9, 11, 5, 5, 5, 1, 2),          # 5x5, padding 2, odd sizes
    (2, 3, 8, 7, 2, 2, 3, (2, 1), (0, 1)),  # non-square kernel, stride and padding
    (1, 16, 6, 6, 8, 3, 3, 2, 1),          # more channels, stride 2
    (4, 1, 10, 9, 3, 5, 3, 2, 2),          # stride 2, padding 2, C = 1
    (2, 64, 5, 5, 33, 3, 3, 1, 0),         # many channels (K = 576)
    (1, 2, 3, 3, 2, 3, 3, 1, 0),           # kernel as large as the input
    (2, 1, 4, 4, 2, 3, 3, 2, 2),           # padding larger than half the kernel
]
IDS = ["1x1", "3x3p1", "5x5p2", "2x3s21", "c16s2", "c1s2p2", "c64", "full", "p2s2"]
ACTS = [None] + list(ACTIVATIONS)


def make(shape, dtype, seed=0):
    n, c, h, w, o, kh, kw, stride, padding = shape
    r = rng(seed)
    return (r.standard_normal((n, c, h, w)).astype(dtype),
            r.standard_normal((o, c, kh, kw)).astype(dtype),
            r.standard_normal(o).astype(dtype), stride, padding)


def out_shape(shape):
    n, c, h, w, o, kh, kw, stride, padding = shape
    (sh, sw), (ph, pw) = C._pair("s", stride, 1), C._pair("p", padding, 0)
    return n, o, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def naive_forward(x, W, b, stride, padding):
    """The definition, one output element at a time (independent of the reference)."""
    (sh, sw), (ph, pw) = C._pair("s", stride, 1), C._pair("p", padding, 0)
    n, c, h, w = x.shape
    o, _, kh, kw = W.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for a in range(n):
        for f in range(o):
            for r in range(ho):
                for s in range(wo):
                    acc = b[f]
                    for ch in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                ih, iw = r * sh + i - ph, s * sw + j - pw
                                if 0 <= ih < h and 0 <= iw < w:
                                    acc += W[f, ch, i, j] * x[a, ch, ih, iw]
                    y[a, f, r, s] = acc
    return y


def naive_backward(dy, x, W, stride, padding):
    (sh, sw), (ph, pw) = C._pair("s", stride, 1), C._pair("p", padding, 0)
    dx, dW = np.zeros(x.shape), np.zeros(W.shape)
    n, o, ho, wo = dy.shape
    _, c, kh, kw = W.shape
    for a in range(n):
        for f in range(o):
            for r in range(ho):
                for s in range(wo):
                    for ch in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                ih, iw = r * sh + i - ph, s * sw + j - pw
                                if 0 <= ih < x.shape[2] and 0 <= iw < x.shape[3]:
                                    dW[f, ch, i, j] += dy[a, f, r, s] * x[a, ch, ih, iw]
                                    dx[a, ch, ih, iw] += dy[a, f, r, s] * W[f, ch, i, j]
    return dx, dW, dy.sum(axis=(0, 2, 3))


@pytest.fixture(params=[None, 1, 7, 40], ids=["ws-default", "ws-1", "ws-7", "ws-40"])
def chunk(request, monkeypatch):
    """Workspaces of the default size, and ones that hold 1, 7 or 40 output positions,
    so that chunks end inside output rows and images, or hold a few whole images (the
    kernels' two ways to unfold: by positions, or image by image)."""
    if request.param is not None:
        monkeypatch.setattr(C, "WORKSPACE_BYTES", 0)
        monkeypatch.setattr(C, "_MIN_CHUNK", request.param)
    return request.param


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_forward_matches_reference(compiled, dtype, shape, chunk):
    x, W, b, stride, padding = make(shape, dtype)
    for act, bias in ((None, True), ("relu", False), ("tanh", True)):
        bb = b if bias else None
        ref = F.conv2d_forward(x, W, bb, stride, padding, act, backend="numpy")
        got = F.conv2d_forward(x, W, bb, stride, padding, act, backend=compiled)
        assert got.dtype == dtype and got.flags.c_contiguous
        assert got.shape == out_shape(shape)
        assert_close(got, ref, dtype, scale=20, err_msg=str(act))


@pytest.mark.parametrize("act", ACTS, ids=str)
def test_forward_activations(compiled, dtype, act):
    x, W, b, stride, padding = make(SHAPES[2], dtype)
    ref = F.conv2d_forward(x, W, b, stride, padding, act, backend="numpy")
    got = F.conv2d_forward(x, W, b, stride, padding, act, backend=compiled)
    assert_close(got, ref, dtype, scale=20)


def test_forward_alpha(backend):
    x, W, b, stride, padding = make(SHAPES[1], np.float64)
    z = F.conv2d_forward(x, W, b, stride, padding, backend="numpy")
    y = F.conv2d_forward(x, W, b, stride, padding, "leaky_relu", alpha=0.3, backend=backend)
    np.testing.assert_allclose(y, np.where(z < 0, 0.3 * z, z), rtol=1e-12, atol=1e-12)
    y = F.conv2d_forward(x, W, b, stride, padding, "elu", alpha=2.0, backend=backend)
    np.testing.assert_allclose(y, np.where(z > 0, z, 2.0 * np.expm1(np.minimum(z, 0))),
                               rtol=1e-12, atol=1e-12)


def test_softmax_over_channels(backend):
    x, W, b, stride, padding = make(SHAPES[1], np.float64)
    z = F.conv2d_forward(x, W, b, stride, padding, backend="numpy")
    e = np.exp(z - z.max(axis=1, keepdims=True))
    y = F.conv2d_forward(x, W, b, stride, padding, "softmax", backend=backend)
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    ly = F.conv2d_forward(x, W, b, stride, padding, "log_softmax", backend=backend)
    np.testing.assert_allclose(ly, np.log(e / e.sum(axis=1, keepdims=True)), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_backward_matches_reference(compiled, dtype, shape, chunk):
    x, W, _, stride, padding = make(shape, dtype)
    dy = rng(1).standard_normal(out_shape(shape)).astype(dtype)
    ref = F.conv2d_backward(dy, x, W, stride, padding, backend="numpy")
    for need_dx in (True, False):
        got = F.conv2d_backward(dy, x, W, stride, padding, need_dx, backend=compiled)
        if need_dx:
            assert_close(got[0], ref[0], dtype, scale=20)
        else:
            assert got[0] is None
        for g, r in zip(got[1:], ref[1:]):
            assert g.dtype == dtype and g.flags.c_contiguous
            assert_close(g, r, dtype, scale=50)  # dW sums N Ho Wo products


@pytest.mark.parametrize("shape", SHAPES[:6], ids=IDS[:6])
def test_reference_against_naive_loops(shape):
    x, W, b, stride, padding = make(shape, np.float64)
    np.testing.assert_allclose(F.conv2d_forward(x, W, b, stride, padding, backend="numpy"),
                               naive_forward(x, W, b, stride, padding), rtol=1e-12, atol=1e-12)
    dy = rng(1).standard_normal(out_shape(shape))
    got = F.conv2d_backward(dy, x, W, stride, padding, backend="numpy")
    for g, e in zip(got, naive_backward(dy, x, W, stride, padding)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_reference_closed_form():
    # a 2x2 box filter on a ramp, with padding: each output is the sum of its window
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y = F.conv2d_forward(x, np.ones((1, 1, 2, 2)), np.array([0.5]), padding=1,
                         backend="numpy")
    expect = np.array([[0, 1, 3, 2], [3, 8, 12, 7], [9, 20, 24, 13], [6, 13, 15, 8]]) + 0.5
    np.testing.assert_array_equal(y[0, 0], expect)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3], SHAPES[5]], ids=IDS[1:6:2])
def test_reference_against_torch(shape):
    torch = pytest.importorskip("torch")
    x, W, b, stride, padding = make(shape, np.float64)
    (sh, sw), (ph, pw) = C._pair("s", stride, 1), C._pair("p", padding, 0)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    yt = torch.nn.functional.conv2d(xt, Wt, bt, stride=(sh, sw), padding=(ph, pw))
    y = F.conv2d_forward(x, W, b, stride, padding, backend="numpy")
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng(1).standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    got = F.conv2d_backward(dy, x, W, stride, padding, backend="numpy")
    for g, t in zip(got, (xt, Wt, bt)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 2, 5, 4, 3, 3, 2, (2, 1), 1), (1, 1, 4, 4, 2, 2, 2, 2, 0)],
                         ids=["s21p1", "s2"])
def test_backward_against_finite_differences(shape):
    x, W, b, stride, padding = make(shape, np.float64)
    dy = rng(2).standard_normal(out_shape(shape))

    def loss(x_=x, W_=W, b_=b):
        return float(np.sum(dy * F.conv2d_forward(x_, W_, b_, stride, padding,
                                                  backend="numpy")))

    dx, dW, db = F.conv2d_backward(dy, x, W, stride, padding, backend="numpy")
    np.testing.assert_allclose(dx, five_point(lambda v: loss(x_=v), x), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(dW, five_point(lambda v: loss(W_=v), W), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(db, five_point(lambda v: loss(b_=v), b), rtol=1e-8, atol=1e-9)


def test_layouts_and_out(backend, dtype):
    x, W, b, stride, padding = make(SHAPES[3], dtype)
    ref = F.conv2d_forward(x, W, b, stride, padding, "relu", backend="numpy")
    dy = rng(3).standard_normal(ref.shape).astype(dtype)
    rb = F.conv2d_backward(dy, x, W, stride, padding, backend="numpy")
    big = np.zeros((2,) + x.shape, dtype)
    big[1] = x
    strided = np.zeros(x.shape[:3] + (2 * x.shape[3],), dtype)
    strided[..., ::2] = x
    for xx in (np.asfortranarray(x), strided[..., ::2], x.transpose(0, 2, 3, 1).copy()
               .transpose(0, 3, 1, 2)):
        assert not xx.flags.c_contiguous
        assert_close(F.conv2d_forward(xx, np.asfortranarray(W), np.repeat(b, 2)[::2], stride,
                                      padding, "relu", backend=backend), ref, dtype, scale=20)
        got = F.conv2d_backward(np.asfortranarray(dy), xx, W, stride, padding, backend=backend)
        for g, r in zip(got, rb):
            assert g.flags.c_contiguous
            assert_close(g, r, dtype, scale=50)
    out = np.full(ref.shape, np.nan, dtype)
    assert F.conv2d_forward(x, W, b, stride, padding, "relu", out=out, backend=backend) is out
    assert_close(out, ref, dtype, scale=20)
    bufs = (np.full(x.shape, np.nan, dtype), np.full(W.shape, np.nan, dtype),
            np.full(b.shape, np.nan, dtype))
    got = F.conv2d_backward(dy, x, W, stride, padding, out=bufs, backend=backend)
    for g, buf, r in zip(got, bufs, rb):
        assert g is buf
        assert_close(g, r, dtype, scale=50)


def misaligned(a):
    """A C-contiguous copy of ``a`` at an address that is not a multiple of its item size."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    m = raw[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


def test_misaligned_inputs_and_out(backend, dtype):
    x, W, b, stride, padding = make(SHAPES[2], dtype)
    ref = F.conv2d_forward(x, W, b, stride, padding, backend="numpy")
    out = misaligned(np.zeros_like(ref))
    got = F.conv2d_forward(misaligned(x), misaligned(W), misaligned(b), stride, padding,
                           out=out, backend=backend)
    assert got is out
    assert_close(out, ref, dtype, scale=20)
    dy = rng(4).standard_normal(ref.shape).astype(dtype)
    rb = F.conv2d_backward(dy, x, W, stride, padding, backend="numpy")
    bufs = tuple(misaligned(np.zeros_like(r)) for r in rb)
    got = F.conv2d_backward(misaligned(dy), misaligned(x), misaligned(W), stride, padding,
                            out=bufs, backend=backend)
    for g, buf, r in zip(got, bufs, rb):
        assert g is buf
        assert_close(g, r, dtype, scale=50)


def test_out_overlapping_an_input(backend):
    # out on x's own memory: x is copied first, the result is the same
    x, W, b, stride, padding = make((2, 3, 6, 6, 3, 1, 1, 1, 0), np.float64)
    ref = F.conv2d_forward(x, W, b, stride, padding, backend="numpy")
    got = F.conv2d_forward(x, W, b, stride, padding, out=x, backend=backend)
    assert got is x
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_read_only_inputs_are_not_written(backend):
    x, W, b, stride, padding = make(SHAPES[1], np.float32)
    y = F.conv2d_forward(x, W, b, stride, padding, backend="numpy")
    dy = np.ones_like(y)
    for a in (x, W, b, dy):
        a.setflags(write=False)
    copies = [a.copy() for a in (x, W, b, dy)]
    F.conv2d_forward(x, W, b, stride, padding, backend=backend)
    F.conv2d_backward(dy, x, W, stride, padding, backend=backend)
    for a, c in zip((x, W, b, dy), copies):
        np.testing.assert_array_equal(a, c)


def test_empty_batch_and_no_filters(backend):
    x = np.zeros((0, 2, 5, 5), np.float32)
    W = np.ones((3, 2, 3, 3), np.float32)
    assert F.conv2d_forward(x, W, backend=backend).shape == (0, 3, 3, 3)
    dx, dW, db = F.conv2d_backward(np.zeros((0, 3, 3, 3), np.float32), x, W, backend=backend)
    assert dx.shape == x.shape and not dW.any() and not db.any()
    x = np.ones((2, 2, 5, 5), np.float32)
    W = np.ones((0, 2, 3, 3), np.float32)
    assert F.conv2d_forward(x, W, backend=backend).shape == (2, 0, 3, 3)
    dx, dW, db = F.conv2d_backward(np.zeros((2, 0, 3, 3), np.float32), x, W, backend=backend)
    assert not dx.any() and dW.shape == W.shape and db.shape == (0,)


def test_two_threads_do_not_share_a_workspace(compiled):
    # many small chunks, so that a shared workspace would be overwritten mid-call
    x, W, b, stride, padding = make((8, 4, 12, 12, 6, 3, 3, 1, 1), np.float64)
    x2 = x[::-1].copy()
    expect = [F.conv2d_forward(a, W, b, stride, padding, backend="numpy") for a in (x, x2)]
    results, errors = [None, None], []

    def run(i, a):
        try:
            for _ in range(20):
                results[i] = F.conv2d_forward(a, W, b, stride, padding, backend=compiled)
                np.testing.assert_allclose(results[i], expect[i], rtol=1e-10, atol=1e-10)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    run_in_threads(run, [(0, x), (1, x2)], 5)
    assert not errors, errors


def run_in_threads(run, args, min_chunk):
    # run(*a) for each a in its own Python thread, all at once, with chunks of
    # min_chunk positions (many, so that a shared workspace would be overwritten)
    saved = C.WORKSPACE_BYTES, C._MIN_CHUNK
    C.WORKSPACE_BYTES, C._MIN_CHUNK = 0, min_chunk
    try:
        threads = [threading.Thread(target=run, args=a) for a in args]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        C.WORKSPACE_BYTES, C._MIN_CHUNK = saved


def _forward_backward(shape, dtype, backend, seed=0):
    x, W, b, stride, padding = make(shape, dtype, seed)
    y = F.conv2d_forward(x, W, b, stride, padding, "tanh", backend=backend)
    dy = make((shape[0], shape[4], *y.shape[2:], 1, 1, 1, 1, 0), dtype, seed + 1)[0]
    return (y, *F.conv2d_backward(dy, x, W, stride, padding, backend=backend))


THREAD_SHAPES = SHAPES + [(9, 4, 12, 12, 6, 3, 3, 1, 1), (16, 3, 10, 10, 8, 5, 5, 1, 2)]


@pytest.mark.parametrize("min_chunk", [None, 7, 100, 150, 300], ids=lambda m: f"q{m}")
@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=IDS + ["n9", "n16"])
def test_same_results_on_one_and_two_threads(compiled, dtype, shape, min_chunk, on_threads,
                                             monkeypatch):
    # the compiled kernels split the chunks over their threads, each with its own slice
    # of the workspace and its own dW, db; the sums' order differs, nothing else.
    # Chunks of positions (7), of one whole image or a few (100 - 300: the backward
    # pass runs parallel only over those)
    if min_chunk is not None:
        monkeypatch.setattr(C, "WORKSPACE_BYTES", 0)
        monkeypatch.setattr(C, "_MIN_CHUNK", min_chunk)
    on_threads(1)
    one = _forward_backward(shape, dtype, compiled)
    on_threads(2)
    two = _forward_backward(shape, dtype, compiled)
    ref = _forward_backward(shape, dtype, "numpy")
    for name, a, b, r in zip(("y", "dx", "dW", "db"), one, two, ref):
        assert_close(b, a, dtype, scale=20, err_msg=name)
        assert_close(b, r, dtype, scale=20, err_msg=name)


def test_two_python_threads_on_two_threads(compiled, on_threads):
    # two Python threads, each calling the kernels on two OpenMP threads at once
    on_threads(2)
    shapes = [(9, 4, 12, 12, 6, 3, 3, 1, 1), (16, 3, 10, 10, 8, 5, 5, 1, 2)]
    expect = [_forward_backward(s, np.float64, "numpy", i) for i, s in enumerate(shapes)]
    errors = []

    def run(i):
        try:
            for _ in range(10):
                got = _forward_backward(shapes[i], np.float64, compiled, i)
                for a, e in zip(got, expect[i]):
                    np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    run_in_threads(run, [(0,), (1,)], 150)
    assert not errors, errors


def test_workspace_is_bounded_and_per_thread():
    # the workspace depends on the layer, not on the batch
    small = C.workspace_size((64, 16, 12, 12), (32, 16, 5, 5), (8, 8), np.float32, True)
    huge = C.workspace_size((100_000, 16, 12, 12), (32, 16, 5, 5), (8, 8), np.float32, True)
    assert small == huge
    assert huge * 4 <= C.WORKSPACE_BYTES + 32 * 16 * 25 * 4 + (16 * 25 + 32) * 4 + 12 * 8 * 4
    a = C.workspace(100, np.float32)
    assert C.workspace(50, np.float32).base is a.base  # reused, not reallocated
    other = []
    t = threading.Thread(target=lambda: other.append(C.workspace(100, np.float32)))
    t.start()
    t.join()
    assert not np.may_share_memory(other[0], a)


@pytest.mark.parametrize("bad, exc, match", [
    (dict(x=np.zeros((2, 3, 5)), W=np.zeros((1, 3, 3, 3))), ValueError, "x"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((3, 3, 3))), ValueError, "W"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 2, 3, 3))), ValueError, "W"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 6, 3))), ValueError, "W"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 8, 3)), padding=1), ValueError, "W"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), stride=0), ValueError, "stride"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), stride=(1, 0)), ValueError,
     "stride"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), padding=-1), ValueError,
     "padding"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), stride=1.5), TypeError,
     "stride"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), padding="same"), TypeError,
     "padding"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), stride=(1, 2, 3)), ValueError,
     "stride"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), stride=True), TypeError,
     "stride"),
    # beyond 2**31 - 1: a stride of 2**63 wrapped in the Numba kernels (a wrong output)
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), stride=2**63), ValueError,
     "stride"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), padding=(0, 2**63)),
     ValueError, "padding"),
    # an output plane of 2**32 pixels, from the padding alone (NumPy's allocation refused)
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((1, 3, 3, 3)), padding=2**15), ValueError,
     "padding"),
    (dict(x=np.zeros((2, 3, 5, 5), np.float32), W=np.zeros((1, 3, 3, 3))), TypeError, "W"),
    (dict(x=np.zeros((2, 3, 5, 5), np.int64), W=np.zeros((1, 3, 3, 3))), TypeError, "x"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((2, 3, 3, 3)), b=np.zeros(3)), ValueError, "b"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((2, 3, 3, 3)), b=np.zeros(2, np.float32)),
     TypeError, "b"),
    (dict(x=np.zeros((2, 0, 5, 5)), W=np.zeros((2, 0, 3, 3))), ValueError, "channel"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((2, 3, 0, 3))), ValueError, "W"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((2, 3, 3, 3)), activation="swish"), ValueError,
     "activation"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((2, 3, 3, 3)), activation="elu", alpha=-1.0),
     ValueError, "alpha"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((2, 3, 3, 3)), out=np.zeros((2, 2, 3, 4))),
     ValueError, "out"),
    (dict(x=np.zeros((2, 3, 5, 5)), W=np.zeros((2, 3, 3, 3)),
          out=np.zeros((2, 2, 3, 3), np.float32)), TypeError, "out"),
])
def test_forward_bad_input(backend, bad, exc, match):
    with pytest.raises(exc, match=match):
        F.conv2d_forward(**bad, backend=backend)


def test_backward_bad_input(backend):
    x, W = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match="dy"):
        F.conv2d_backward(np.zeros((2, 4, 4, 3)), x, W, backend=backend)
    with pytest.raises(ValueError, match="dy"):
        F.conv2d_backward(np.zeros((2, 4, 3, 3)), x, W, padding=1, backend=backend)
    with pytest.raises(ValueError, match="W"):
        F.conv2d_backward(np.zeros((2, 4, 3, 3)), x, np.zeros((4, 2, 3, 3)), backend=backend)
    with pytest.raises(TypeError, match="x"):
        F.conv2d_backward(np.zeros((2, 4, 3, 3)), x.astype(np.float32), W, backend=backend)
    with pytest.raises(ValueError, match="stride"):
        F.conv2d_backward(np.zeros((2, 4, 3, 3)), x, W, stride=0, backend=backend)
    with pytest.raises(TypeError, match="need_dx"):
        F.conv2d_backward(np.zeros((2, 4, 3, 3)), x, W, need_dx="no", backend=backend)
    with pytest.raises(TypeError, match="out"):
        F.conv2d_backward(np.zeros((2, 4, 3, 3)), x, W, out=[None, None, None], backend=backend)
    dW = np.zeros(W.shape)
    with pytest.raises(ValueError, match="share memory"):
        F.conv2d_backward(np.zeros((2, 4, 3, 3)), x, W, out=(None, dW, dW.reshape(-1)[:4]),
                          backend=backend)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
       o=st.integers(1, 4), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       be=st.sampled_from(COMPILED), dt=st.sampled_from([np.float32, np.float64]),
       q=st.sampled_from([None, 1, 3, 8]), seed=st.integers(0, 2**31))
def test_property_forward_backward(n, c, h, w, o, kh, kw, sh, sw, ph, pw, be, dt, q, seed):
    kh, kw = min(kh, h + 2 * ph), min(kw, w + 2 * pw)
    shape = (n, c, h, w, o, kh, kw, (sh, sw), (ph, pw))
    x, W, b, stride, padding = make(shape, dt, seed)
    saved = C.WORKSPACE_BYTES, C._MIN_CHUNK
    if q is not None:
        C.WORKSPACE_BYTES, C._MIN_CHUNK = 0, q
    try:
        assert_close(F.conv2d_forward(x, W, b, stride, padding, backend=be),
                     F.conv2d_forward(x, W, b, stride, padding, backend="numpy"), dt, scale=20)
        dy = rng(seed + 1).standard_normal(out_shape(shape)).astype(dt)
        for g, r in zip(F.conv2d_backward(dy, x, W, stride, padding, backend=be),
                        F.conv2d_backward(dy, x, W, stride, padding, backend="numpy")):
            assert_close(g, r, dt, scale=50)
    finally:
        C.WORKSPACE_BYTES, C._MIN_CHUNK = saved


def test_every_conv_op_is_tested():
    from fastdl._registry import ops
    assert {op.name for op in ops("conv")} == {"conv2d_forward", "conv2d_backward"}
    assert set(BACKENDS) == {"numpy", "numba", "cython"}
