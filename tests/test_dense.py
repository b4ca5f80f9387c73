"""dense_forward / dense_backward: every backend against the reference, the
reference against closed forms and finite differences, and the API contract."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from fastdl.functional.dense import ACTIVATIONS
from conftest import BACKENDS, assert_close, five_point, layouts, rng

SHAPES = [(1, 1, 1), (1, 7, 3), (5, 3, 17), (33, 65, 31), (300, 64, 257)]
ACTS = [None] + list(ACTIVATIONS)


def make(n, k, m, dtype, seed=0):
    r = rng(seed)
    return (r.standard_normal((n, k)).astype(dtype), r.standard_normal((k, m)).astype(dtype),
            r.standard_normal(m).astype(dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("act", ACTS, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_reference(backend, dtype, shape, act, bias):
    x, W, b = make(*shape, dtype)
    b = b if bias else None
    ref = F.dense_forward(x, W, b, act, backend="numpy")
    got = F.dense_forward(x, W, b, act, backend=backend)
    assert got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, ref, dtype, scale=10)  # GEMM sums K products: error grows with K


def test_reference_forward_closed_form():
    x = np.array([[1.0, -2.0]])
    W = np.array([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])
    b = np.array([0.5, -0.5, 1.0])
    z = np.array([[1 - 6 + 0.5, 2 + 2 - 0.5, 0.5 + 1.0]])
    np.testing.assert_allclose(F.dense_forward(x, W, b, backend="numpy"), z)
    np.testing.assert_allclose(F.dense_forward(x, W, b, "relu", backend="numpy"),
                               np.maximum(z, 0))
    np.testing.assert_allclose(F.dense_forward(x, W, b, "sigmoid", backend="numpy"),
                               1 / (1 + np.exp(-z)))
    e = np.exp(z - z.max())
    np.testing.assert_allclose(F.dense_forward(x, W, b, "softmax", backend="numpy"), e / e.sum())


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("need_dx", [True, False])
def test_backward_matches_reference(backend, dtype, shape, need_dx):
    x, W, _ = make(*shape, dtype)
    dy = rng(1).standard_normal((shape[0], shape[2])).astype(dtype)
    ref = F.dense_backward(dy, x, W, backend="numpy")
    got = F.dense_backward(dy, x, W, need_dx=need_dx, backend=backend)
    if need_dx:
        assert_close(got[0], ref[0], dtype, scale=10)
    else:
        assert got[0] is None
    assert_close(got[1], ref[1], dtype, scale=10)
    assert_close(got[2], ref[2], dtype, scale=10)


def test_backward_against_finite_differences():
    x, W, b = make(3, 4, 5, np.float64)
    dy = rng(2).standard_normal((3, 5))
    dx, dW, db = F.dense_backward(dy, x, W, backend="numpy")

    def loss(x_=x, W_=W, b_=b):
        return float(np.sum(dy * F.dense_forward(x_, W_, b_, backend="numpy")))

    np.testing.assert_allclose(dx, five_point(lambda v: loss(x_=v), x), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(dW, five_point(lambda v: loss(W_=v), W), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(db, five_point(lambda v: loss(b_=v), b), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_any_layout(backend, dtype, layout):
    x, W, b = make(6, 5, 4, dtype)
    ref = F.dense_forward(x, W, b, "tanh", backend="numpy")
    got = F.dense_forward(layouts(x)[layout], layouts(W)[layout], b, "tanh", backend=backend)
    assert_close(got, ref, dtype, scale=10)
    dy = rng(3).standard_normal((6, 4)).astype(dtype)
    r = F.dense_backward(dy, x, W, backend="numpy")
    g = F.dense_backward(layouts(dy)[layout], layouts(x)[layout], layouts(W)[layout],
                         backend=backend)
    for a, e in zip(g, r):
        assert a.flags.c_contiguous
        assert_close(a, e, dtype, scale=10)


def test_contract(backend):
    x, W, b = make(4, 3, 2, np.float32)
    for a in (x, W, b):
        a.setflags(write=False)
    copies = [a.copy() for a in (x, W, b)]
    out = np.empty((4, 2), np.float32)
    y = F.dense_forward(x, W, b, "relu", out=out, backend=backend)
    assert y is out
    for a, c in zip((x, W, b), copies):
        np.testing.assert_array_equal(a, c)
    F.dense_backward(np.ones((4, 2), np.float32), x, W, backend=backend)
    for a, c in zip((x, W, b), copies):
        np.testing.assert_array_equal(a, c)


def test_no_bias_and_empty_inner_dim(backend, dtype):
    x, W, _ = make(3, 4, 2, dtype)
    assert_close(F.dense_forward(x, W, backend=backend), x @ W, dtype, scale=10)
    x0, W0 = np.zeros((3, 0), dtype), np.zeros((0, 2), dtype)
    np.testing.assert_array_equal(F.dense_forward(x0, W0, np.ones(2, dtype), backend=backend),
                                  np.ones((3, 2)))
    dx, dW, db = F.dense_backward(np.ones((3, 2), dtype), x0, W0, backend=backend)
    assert dx.shape == (3, 0) and dW.shape == (0, 2)
    np.testing.assert_array_equal(db, [3, 3])


def test_no_bias_over_many_widths_keeps_memory_bounded(backend):
    # the Numba backend kept a zero bias per (width, dtype) for good: 2,000 widths held
    # 160 MiB.  Now the 32 last used; results unchanged
    x = rng(1).standard_normal((2, 3)).astype(np.float32)
    for m in range(1, 80):
        W = rng(m).standard_normal((3, m)).astype(np.float32)
        assert_close(F.dense_forward(x, W, backend=backend), x @ W, np.float32, scale=10)
    if backend == "numba":
        from fastdl._kernels.numba.dense import _zeros
        assert _zeros.cache_info().currsize <= 32


def test_extreme_values_softmax_fused(backend, dtype):
    x = np.array([[1.0]], dtype)
    W = np.array([[1e4, -1e4, 0.0]], dtype)
    y = F.dense_forward(x, W, None, "softmax", backend=backend)
    np.testing.assert_allclose(y, [[1, 0, 0]], atol=1e-7)
    ly = F.dense_forward(x, W, None, "log_softmax", backend=backend)
    assert np.isfinite(ly[0, 0]) and ly[0, 1] < -1e4 and ly[0, 0] == 0


@pytest.mark.parametrize("bad, exc, match", [
    (dict(x=np.zeros((2, 3), np.float32), W=np.zeros((4, 2), np.float32)), ValueError, "W"),
    (dict(x=np.zeros((2, 3), np.float32), W=np.zeros((3, 2), np.float64)), TypeError, "W"),
    (dict(x=np.zeros((2, 3), np.int64), W=np.zeros((3, 2))), TypeError, "x"),
    (dict(x=np.zeros(3), W=np.zeros((3, 2))), ValueError, "x"),
    (dict(x=np.zeros((2, 3)), W=np.zeros((3, 2)), b=np.zeros(3)), ValueError, "b"),
    (dict(x=np.zeros((2, 3)), W=np.zeros((3, 2)), activation="swish"), ValueError, "activation"),
    (dict(x=np.zeros((2, 3)), W=np.zeros((3, 2)), out=np.zeros((2, 3))), ValueError, "out"),
    (dict(x=np.zeros((2, 3)), W=np.zeros((3, 2)), out=np.zeros((2, 2), np.float32)),
     TypeError, "out"),
    (dict(x="abc", W=np.zeros((3, 2))), TypeError, "x"),
])
def test_forward_bad_input(backend, bad, exc, match):
    with pytest.raises(exc, match=match):
        F.dense_forward(**bad, backend=backend)


def test_backward_bad_input(backend):
    with pytest.raises(ValueError, match="x"):
        F.dense_backward(np.zeros((2, 3)), np.zeros((3, 4)), np.zeros((4, 3)), backend=backend)
    with pytest.raises(ValueError, match="W"):
        F.dense_backward(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((4, 2)), backend=backend)
    with pytest.raises(TypeError, match="x"):
        F.dense_backward(np.zeros((2, 3)), np.zeros((2, 4), np.float32), np.zeros((4, 3)),
                         backend=backend)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 40), m=st.integers(1, 40),
       act=st.sampled_from(ACTS), be=st.sampled_from(BACKENDS),
       dt=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31))
def test_property_forward(n, k, m, act, be, dt, seed):
    x, W, b = make(n, k, m, dt, seed)
    assert_close(F.dense_forward(x, W, b, act, backend=be),
                 F.dense_forward(x, W, b, act, backend="numpy"), dt, scale=10)


# ---------------------------------- the compiled backends' products split over threads
SPLIT_SHAPES = [(40, 33, 140), (140, 33, 40), (300, 64, 257), (5, 9, 200), (200, 9, 5),
                (8, 200, 20), (20, 200, 8)]


@pytest.fixture(params=["cython", "numba"])
def split_everything(request):
    """A compiled backend's dense kernels split every product over the threads, however
    small; the backend's dense module, its name as ``.backend``."""
    import importlib

    mod = importlib.import_module(f"fastdl._kernels.{request.param}.dense")
    old = mod.set_gemm_parallel_flops(0)
    mod.backend = request.param
    yield mod
    mod.set_gemm_parallel_flops(old)


def test_split_plan(split_everything):
    # one block a thread along the longer side of the column-major output, block
    # starts a multiple of 16 elements, at most one block per 64 of that side
    plan = split_everything.split_plan
    assert plan(512, 32, 784, 2) == (2, True, 256)
    assert plan(10, 1024, 256, 2) == (2, False, 512)
    assert plan(300, 30, 5, 4) == (4, True, 80)
    assert plan(200, 30, 5, 4) == (3, True, 80)
    assert plan(300, 30, 5, 1) == (1, True, 300)
    assert plan(127, 8, 5, 2) == (1, True, 127)
    assert plan(128, 8, 5, 2) == (2, True, 64)
    split_everything.set_gemm_parallel_flops(2e6)
    assert plan(128, 100, 77, 2)[0] == 1      # 1.97 MFLOP: one thread
    assert plan(128, 100, 79, 2)[0] == 2
    assert plan(1000, 100, 20, 64) == (4, True, 256)  # 4 MFLOP: blocks of 1 or more


@pytest.mark.parametrize("shape", SPLIT_SHAPES, ids=str)
@pytest.mark.parametrize("act", ACTS, ids=str)
def test_split_forward_same_on_one_and_two_threads(dtype, shape, act, split_everything,
                                                   on_threads):
    # blocks of rows and of columns of y, each finished with the bias and the
    # activation by its thread (softmax over column blocks: in a pass of its own)
    x, W, b = make(*shape, dtype)
    be = split_everything.backend
    on_threads(1)
    one = F.dense_forward(x, W, b, act, backend=be)
    on_threads(2)
    two = F.dense_forward(x, W, b, act, backend=be)
    assert_close(two, one, dtype, scale=10)
    assert_close(two, F.dense_forward(x, W, b, act, backend="numpy"), dtype, scale=10)


@pytest.mark.parametrize("shape", SPLIT_SHAPES, ids=str)
def test_split_backward_same_on_one_and_two_threads(dtype, shape, split_everything,
                                                    on_threads):
    x, W, _ = make(*shape, dtype)
    dy = rng(1).standard_normal((shape[0], shape[2])).astype(dtype)
    ref = F.dense_backward(dy, x, W, backend="numpy")
    for n in (1, 2, 3):
        on_threads(n)
        got = F.dense_backward(dy, x, W, backend=split_everything.backend)
        for name, g, r in zip(("dx", "dW", "db"), got, ref):
            assert_close(g, r, dtype, scale=10, err_msg=f"{name} on {n} threads")


def test_split_from_two_python_threads_at_once(split_everything, on_threads):
    # two Python threads, each splitting its products over two OpenMP threads: four
    # single-threaded BLAS calls at once, each into its own block
    import threading

    be = split_everything.backend
    on_threads(2)
    shapes = [(300, 64, 257), (8, 100, 20)]
    data = [make(*s, np.float64, seed=i) for i, s in enumerate(shapes)]
    dys = [rng(9 + i).standard_normal((s[0], s[2])) for i, s in enumerate(shapes)]
    expect = [(F.dense_forward(x, W, b, "tanh", backend="numpy"),
               *F.dense_backward(dy, x, W, backend="numpy"))
              for (x, W, b), dy in zip(data, dys)]
    errors = []

    def run(i):
        (x, W, b), dy = data[i], dys[i]
        try:
            for _ in range(30):
                got = (F.dense_forward(x, W, b, "tanh", backend=be),
                       *F.dense_backward(dy, x, W, backend=be))
                for g, e in zip(got, expect[i]):
                    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_numba_kernels_take_any_layout_when_called_directly(dtype):
    # the Numba kernels hand BLAS blocks by address, which assumes C order: other
    # layouts, which only a direct caller passes, go to NumPy's matmul instead
    from fastdl._registry import kernel

    x, W, b = make(40, 33, 140, dtype)
    dy = rng(3).standard_normal((40, 140)).astype(dtype)
    y_ref = F.dense_forward(x, W, b, "relu", backend="numpy")
    grads_ref = F.dense_backward(dy, x, W, backend="numpy")
    out = np.zeros((40, 280), dtype)[:, ::2]
    kernel("dense_forward", "numba")(np.asfortranarray(x), W, b, out, "relu", 0.0)
    assert_close(out, y_ref, dtype, scale=10)
    dx, dW, db = np.empty((33, 40), dtype).T, np.empty((33, 140), dtype), np.empty(140, dtype)
    kernel("dense_backward", "numba")(np.asfortranarray(dy), x, np.asfortranarray(W), dx, dW, db)
    for got, ref in zip((dx, dW, db), grads_ref):
        assert_close(got, ref, dtype, scale=10)
