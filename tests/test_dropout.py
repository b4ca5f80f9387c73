"""dropout / dropout_backward: the same mask from every backend for the same seed,
y = x * mask / (1 - p) exactly, the kept fraction against 1 - p, the two-stage
draw against the exact 32-bit comparison it stands for, the kernels' tie lists
against the reference, the backward pass (it uses the mask; finite differences),
the API contract and bad input."""
import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from fastdl._config import PARALLEL_THRESHOLD
from fastdl._registry import kernel, ops
from conftest import BACKENDS, COMPILED, five_point, layouts, rng

FD = importlib.import_module("fastdl.functional.dropout")  # F.dropout is the function
# 0-D, N=1, sizes that are not multiples of 8, and above the parallel threshold
# (several chunks)
SHAPES = [(), (1,), (7,), (33, 65), (3, 5, 7), (PARALLEL_THRESHOLD * 2 + 3,), (300, 257)]
NAN, INF = float("nan"), float("inf")


def data(shape, dtype, seed=0):
    return rng(seed).standard_normal(shape).astype(dtype)


def expected_y(x, mask, p):
    scale = x.dtype.type(1.0 / (1.0 - p))
    return x * (mask * scale)


def test_registry_and_public_names_complete():
    names = {op.name for op in ops("dropout")}
    assert names == set(FD.__all__) == {"dropout", "dropout_backward"}
    for name in names:
        for be in BACKENDS:
            assert callable(kernel(name, be))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", [0.3, 0.5])
def test_same_mask_every_backend(backend, dtype, shape, p):
    x = data(shape, dtype)
    y0, m0 = F.dropout(x, p, 7, backend="numpy")
    y, m = F.dropout(x, p, np.random.default_rng(7), backend=backend)
    assert y.shape == m.shape == x.shape and y.dtype == dtype and m.dtype == np.bool_
    assert y.flags.c_contiguous and m.flags.c_contiguous
    np.testing.assert_array_equal(m, m0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(y, expected_y(x, m, p))  # exact: one rounding


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5 + 1 / 512, 0.9])
def test_kept_fraction(backend, p):
    # 4M units: the standard error of the kept fraction is <= 2.5e-4; 5 of them.
    # p = 0.5 + 1/512 puts the threshold mid-way through a top byte, so half of
    # the tied units (1/256 of all) must be kept: keeping all or none of them
    # would move the fraction by 1/512 = 7.8 standard errors.
    n = 1 << 22
    _, m = F.dropout(np.ones(n, np.float32), p, 12345, backend=backend)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(m.mean() - (1 - p)) < 5 * sigma, (m.mean(), 1 - p)


def replay(n, p, g):
    """The mask from the draws as fastdl/functional/dropout.py documents them:
    exactly U >= ceil(p 2^32) for U = top byte : 24 low bits of each unit."""
    nw = (n + 7) // 8
    words = g.integers(0, 2**64, nw + n // 512 + math.isqrt(n >> 4) // 2 + 4, dtype=np.uint64)
    top = words[:nw].view(np.uint8)[:n]
    pool = words[nw:].view(np.uint32)
    thr = math.ceil(p * 2**32)
    tied = np.flatnonzero(top == thr >> 24)
    if tied.size > pool.size:
        more = g.integers(0, 2**64, (tied.size - pool.size + 1) // 2, dtype=np.uint64)
        pool = np.concatenate([pool, more.view(np.uint32)])
    low = np.zeros(n, np.uint64)
    low[tied] = pool[:tied.size] >> 8
    u = (top.astype(np.uint64) << np.uint64(24)) | low
    return u >= thr


def same_state(g1, g2):
    def eq(a, b):
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)
        return np.array_equal(a, b)
    return eq(g1.bit_generator.state, g2.bit_generator.state)


def zero_generator():
    # MT19937 with an all-zero state draws zeros for ever: every byte is 0, so for
    # p < 2^-24 (top byte of the threshold 0) every unit is a tie, more than the pool
    bg = np.random.MT19937(0)
    state = bg.state
    state["state"]["key"] = np.zeros(624, np.uint32)
    state["state"]["pos"] = 0
    bg.state = state
    return np.random.Generator(bg)


@pytest.mark.parametrize("n, p, make", [
    (300_001, 0.37, lambda: np.random.default_rng(99)),
    (5, 0.5, lambda: np.random.default_rng(99)),
    (3000, 0.001, lambda: np.random.Generator(np.random.MT19937(5))),
    (3001, 0.6, lambda: np.random.Generator(np.random.SFC64(5))),
    (3002, 0.6, lambda: np.random.Generator(np.random.Philox(5))),
    (3003, 0.6, lambda: np.random.Generator(np.random.PCG64DXSM(5))),
    (5000, 1e-9, zero_generator),  # all ties, pool exhausted: more words drawn
    (5000, 0.0, zero_generator),   # p = 0: all kept, nothing drawn
], ids=["pcg", "tiny", "mt19937", "sfc64", "philox", "pcg64dxsm", "all-ties", "p0"])
def test_two_stage_draw_is_the_32_bit_comparison(backend, n, p, make):
    g, g2 = make(), make()
    _, m = F.dropout(np.ones(n), p, g, backend=backend)
    want = replay(n, p, g2) if p else np.ones(n, bool)
    np.testing.assert_array_equal(m, want)
    if p:
        assert same_state(g, g2)  # the same draws, no more
    if make is zero_generator and p:
        assert not m.any()  # U = 0 < threshold 1


def test_p_zero_and_p_near_one(backend, dtype):
    x = data((5, 9), dtype)
    g = np.random.default_rng(3)
    y, m = F.dropout(x, 0.0, g, backend=backend)
    np.testing.assert_array_equal(y, x)
    assert m.all() and y is not x
    assert same_state(g, np.random.default_rng(3))  # p = 0 draws nothing
    # p within 2^-33 of 1: the threshold is 2^32, every unit dropped (y = x * 0)
    top = np.nextafter(1.0, 0.0)
    y, m = F.dropout(x, top, 3, backend=backend)
    assert not m.any() and (y == 0).all()
    y, m = F.dropout(x, 0.999, 3, backend=backend)
    np.testing.assert_array_equal(y, expected_y(x, m, 0.999))


def test_seed_and_generator_agree_and_generator_advances(backend):
    x = data((40, 40), np.float64)
    a = F.dropout(x, 0.5, 11, backend=backend)[1]
    g = np.random.default_rng(11)
    b = F.dropout(x, 0.5, g, backend=backend)[1]
    c = F.dropout(x, 0.5, g, backend=backend)[1]
    np.testing.assert_array_equal(a, b)
    assert (b != c).any()


def test_kernels_list_ties_as_the_reference(compiled, dtype):
    # small chunks, a short last chunk, and bytes crowded on few values (many ties)
    n, chunk = 1000, 96
    r = rng(4).choice(np.array([0, 1, 2, 128, 254, 255], np.uint8), n)
    x = data(n, dtype)
    for t8 in (0, 1, 3, 128, 255):
        res = []
        for be in ("numpy", compiled):
            y = np.full(n, NAN, dtype)
            mask = np.full(n, 9, np.uint8)
            ties = np.full(n, -1, np.int64)
            counts = np.full(-(-n // chunk), -1, np.int64)
            kernel("dropout", be)(x, r, y, mask, ties, counts, t8, 1.25, chunk)
            lists = [ties[k * chunk:k * chunk + c] for k, c in enumerate(counts)]
            res.append((y, mask, counts, lists))
        (y0, m0, c0, l0), (y1, m1, c1, l1) = res
        np.testing.assert_array_equal(y1, y0)
        np.testing.assert_array_equal(m1, m0)
        np.testing.assert_array_equal(m0, r >= t8)
        np.testing.assert_array_equal(c1, c0)
        for a, b in zip(l1, l0):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.concatenate(l0), np.flatnonzero(r == t8))


# ---- backward ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_uses_the_mask(backend, dtype, shape):
    dy = data(shape, dtype, seed=1)
    m = rng(2).random(shape) < 0.6  # any mask, not only one from dropout
    dx = F.dropout_backward(dy, m, 0.4, backend=backend)
    assert dx.shape == np.shape(dy) and dx.dtype == dtype and dx.flags.c_contiguous
    np.testing.assert_array_equal(dx, expected_y(dy, m, 0.4))
    np.testing.assert_array_equal(dx, F.dropout_backward(dy, m, 0.4, backend="numpy"))
    np.testing.assert_array_equal(F.dropout_backward(dy, m.astype(np.uint8), 0.4,
                                                     backend=backend), dx)


def test_backward_against_finite_differences():
    # for a fixed seed the mask does not depend on x: y is linear in x
    x = data((4, 6), np.float64)
    dy = data((4, 6), np.float64, seed=3)
    num = five_point(lambda v: float(np.sum(dy * F.dropout(v, 0.35, 5, backend="numpy")[0])), x)
    for be in BACKENDS:
        m = F.dropout(x, 0.35, 5, backend=be)[1]
        np.testing.assert_allclose(F.dropout_backward(dy, m, 0.35, backend=be), num,
                                   rtol=1e-8, atol=1e-9)


def test_nan_and_inf(backend, dtype):
    # a product, as IEEE and torch: NaN and Inf in dropped units give NaN, kept ones stay
    x = np.array([NAN, INF, -INF, 1.0] * 16, dtype)
    y, m = F.dropout(x, 0.5, 0, backend=backend)
    assert 0 < m.sum() < m.size
    assert np.isnan(y[~m][np.isfinite(x[~m]) == 0]).all()
    np.testing.assert_array_equal(y[m], x[m] * dtype(2))
    dx = F.dropout_backward(x, m, 0.5, backend=backend)
    np.testing.assert_array_equal(dx, y)


# ---- API contract and bad input ----------------------------------------------------------

def test_contract_and_layouts(backend, dtype):
    x = data((8, 10), dtype)
    y0, m0 = F.dropout(x, 0.25, 21, backend="numpy")
    for layout, xl in layouts(x).items():
        y, m = F.dropout(xl, 0.25, 21, backend=backend)
        np.testing.assert_array_equal(m, m0, err_msg=layout)
        np.testing.assert_array_equal(y, y0, err_msg=layout)
        dx = F.dropout_backward(xl, layouts(m0)[layout], 0.25, backend=backend)
        assert dx.flags.c_contiguous
        np.testing.assert_array_equal(dx, y0, err_msg=layout)
    x.setflags(write=False)
    m0.setflags(write=False)
    xc, mc = x.copy(), m0.copy()
    F.dropout(x, 0.25, 21, backend=backend)
    out = np.full(x.shape, NAN, dtype)
    assert F.dropout_backward(x, m0, 0.25, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, y0)
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(m0, mc)
    y, m = F.dropout([1.0, 2.0, 3.0], 0.5, 1, backend=backend)
    assert y.dtype == np.float64 and m.shape == (3,)
    y, m = F.dropout(np.zeros((0, 3), dtype), 0.5, 1, backend=backend)
    assert y.shape == m.shape == (0, 3)


@pytest.mark.parametrize("call, exc, match", [
    (lambda be: F.dropout(np.zeros(4), 1.0, 0, backend=be), ValueError, "p"),
    (lambda be: F.dropout(np.zeros(4), -0.1, 0, backend=be), ValueError, "p"),
    (lambda be: F.dropout(np.zeros(4), NAN, 0, backend=be), ValueError, "p"),
    (lambda be: F.dropout(np.zeros(4), "0.5", 0, backend=be), TypeError, "p"),
    (lambda be: F.dropout(np.zeros(4), 0.5, "seed", backend=be), TypeError, "rng"),
    (lambda be: F.dropout(np.zeros(4), 0.5, 1.5, backend=be), TypeError, "rng"),
    (lambda be: F.dropout(np.zeros(4), 0.5, None, backend=be), TypeError, "rng"),
    (lambda be: F.dropout(np.zeros(4), 0.5, True, backend=be), TypeError, "rng"),
    (lambda be: F.dropout(np.zeros(4), 0.5, np.random.RandomState(0), backend=be),
     TypeError, "rng"),
    (lambda be: F.dropout(np.zeros(4), 0.5, -1, backend=be), ValueError, "rng"),
    (lambda be: F.dropout(np.zeros(4, np.int32), 0.5, 0, backend=be), TypeError, "x"),
    (lambda be: F.dropout_backward(np.zeros(4), np.ones(4, bool), 1.0, backend=be),
     ValueError, "p"),
    (lambda be: F.dropout_backward(np.zeros(4), np.ones(5, bool), 0.5, backend=be),
     ValueError, "mask"),
    (lambda be: F.dropout_backward(np.zeros(4), np.ones(4), 0.5, backend=be),
     TypeError, "mask"),
    (lambda be: F.dropout_backward(np.zeros(4, np.int8), np.ones(4, bool), 0.5, backend=be),
     TypeError, "dy"),
    (lambda be: F.dropout_backward(np.zeros(4), np.ones(4, bool), 0.5, out=np.zeros(4, np.float32),
                                   backend=be), TypeError, "out"),
])
def test_bad_input(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(backend)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(0, 40), max_size=3), p=st.floats(0.0, 0.99),
       seed=st.integers(0, 2**32), dt=st.sampled_from([np.float32, np.float64]))
def test_property_backends_agree(shape, p, seed, dt):
    x = data(tuple(shape), dt, seed % 1000)
    y0, m0 = F.dropout(x, p, seed, backend="numpy")
    np.testing.assert_array_equal(y0, expected_y(x, m0, p))
    for be in COMPILED:
        y, m = F.dropout(x, p, seed, backend=be)
        np.testing.assert_array_equal(m, m0)
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(F.dropout_backward(x, m, p, backend=be), y0)


def test_a_dropout_layers_step_allocates_only_its_random_draws():
    # nn.Dropout called the public dropout, which allocates y, the mask and 8 bytes a
    # unit of work each step (632 KB at 256 x 128, against 17 KB without the layer)
    import tracemalloc

    from fastdl import nn

    X = rng(0).standard_normal((256, 64)).astype(np.float32)
    m = nn.Sequential(nn.Dense(64, 128, "relu"), nn.Dropout(0.1), nn.Dense(128, 10), seed=0)
    dy = np.ones((256, 10), np.float32)
    for _ in range(3):
        m.forward(X)
        m.backward(dy)
    tracemalloc.start()
    try:
        for _ in range(5):
            m.forward(X)
            m.backward(dy)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 256 * 128  # the draws: about a byte a unit
