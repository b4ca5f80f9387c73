"""softmax / log_softmax and their backward kernels: every backend against the
reference (dtypes, shapes across the parallel threshold, any axis, layouts,
extreme logits), the reference against closed forms, the backward kernels
against finite differences of the reference forward, the API contract and bad input."""
import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from fastdl._config import PARALLEL_THRESHOLD
from fastdl._registry import kernel, ops
from conftest import BACKENDS, assert_close, five_point, layouts, rng

# the module (fastdl.functional.softmax is the function of the same name)
FS = importlib.import_module("fastdl.functional.softmax")

FORWARD = ["softmax", "log_softmax"]
# N=1, C=1, odd sizes, and sizes above the parallel threshold: many short rows,
# few long rows (a float32 sum over 40000 terms), one column
SHAPES = [(1, 1), (1, 7), (5, 3), (33, 65), (300, 257), (2, 40000),
          (PARALLEL_THRESHOLD + 7, 1)]
INF, NAN = float("inf"), float("nan")


def logits(shape, dtype, seed=0, scale=3.0):
    return (rng(seed).standard_normal(shape) * scale).astype(dtype)


def closed(op, x, axis=-1):
    """softmax / log_softmax in float64 straight from the definition."""
    x = np.asarray(x, np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return np.exp(z - lse) if op == "softmax" else z - lse


def test_registry_and_public_names_complete():
    names = {op.name for op in ops("softmax")}
    assert names == set(FS.__all__) == {"softmax", "softmax_backward", "log_softmax",
                                        "log_softmax_backward"}
    for name in names:
        assert callable(getattr(F, name))
        for be in BACKENDS:
            assert callable(kernel(name, be))


# ---- every backend against the reference ------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_forward_matches_reference(backend, dtype, shape, op):
    x = logits(shape, dtype)
    ref = getattr(F, op)(x, backend="numpy")
    got = getattr(F, op)(x, backend=backend)
    assert got.shape == x.shape and got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, ref, dtype)
    if op == "softmax":
        assert_close(got.sum(axis=-1), np.ones(shape[0]), dtype, scale=5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_backward_matches_reference(backend, dtype, shape, op):
    y = getattr(F, op)(logits(shape, dtype), backend="numpy")
    dy = logits(shape, dtype, seed=1, scale=1.0)
    bwd = getattr(F, op + "_backward")
    ref = bwd(dy, y, backend="numpy")
    got = bwd(dy, y, backend=backend)
    assert got.dtype == dtype and got.flags.c_contiguous
    # dx is a difference of O(1) terms: compare on the scale of those terms
    scale = np.abs(dy).max() + np.abs(y).max() * np.abs(dy).sum(axis=-1).max()
    np.testing.assert_allclose(got, ref, rtol=0,
                               atol=(2e-6 if dtype == np.float32 else 1e-13) * scale)


def test_reference_matches_closed_form(dtype):
    x = logits((6, 11), dtype)
    for op in FORWARD:
        assert_close(getattr(F, op)(x, backend="numpy"), closed(op, x), dtype)
    x = np.array([[0.0, math.log(2.0), math.log(5.0)]])
    np.testing.assert_allclose(F.softmax(x, backend="numpy"), [[0.125, 0.25, 0.625]], rtol=1e-15)
    np.testing.assert_allclose(F.log_softmax(x, backend="numpy"),
                               np.log([[0.125, 0.25, 0.625]]), rtol=1e-14)


@pytest.mark.parametrize("op", FORWARD)
def test_backward_against_finite_differences(op):
    x = logits((3, 5), np.float64, scale=1.0)
    dy = logits((3, 5), np.float64, seed=2, scale=1.0)
    fwd = getattr(F, op)
    y = fwd(x, backend="numpy")
    num = five_point(lambda v: float(np.sum(dy * fwd(v, backend="numpy"))), x)
    for be in BACKENDS:
        dx = getattr(F, op + "_backward")(dy, y, backend=be)
        np.testing.assert_allclose(dx, num, rtol=1e-8, atol=1e-9)
    # and along another axis of a 3-D array
    x3 = logits((2, 3, 4), np.float64, scale=1.0)
    dy3 = logits((2, 3, 4), np.float64, seed=3, scale=1.0)
    num = five_point(lambda v: float(np.sum(dy3 * fwd(v, axis=1, backend="numpy"))), x3)
    for be in BACKENDS:
        dx = getattr(F, op + "_backward")(dy3, fwd(x3, axis=1, backend=be), axis=1, backend=be)
        np.testing.assert_allclose(dx, num, rtol=1e-8, atol=1e-9)


# ---- any axis, any rank, any layout ---------------------------------------------------

@pytest.mark.parametrize("shape, axis", [((7,), 0), ((7,), -1), ((4, 5, 6), 0), ((4, 5, 6), 1),
                                         ((4, 5, 6), 2), ((4, 5, 6), -2), ((3, 4, 1), 1),
                                         ((2, 3, 4, 5), 2)], ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_any_axis(backend, dtype, shape, axis, op):
    x = logits(shape, dtype)
    got = getattr(F, op)(x, axis=axis, backend=backend)
    assert got.shape == shape and got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, closed(op, x, axis), dtype)
    dy = logits(shape, dtype, seed=4, scale=1.0)
    y = closed(op, x, axis).astype(dtype)
    if op == "softmax":
        want = y * (dy - np.sum(dy * y, axis=axis, keepdims=True, dtype=np.float64))
    else:
        want = dy - np.exp(y.astype(np.float64)) * np.sum(dy, axis=axis, keepdims=True,
                                                          dtype=np.float64)
    dx = getattr(F, op + "_backward")(dy, y, axis=axis, backend=backend)
    assert dx.shape == shape and dx.flags.c_contiguous
    assert_close(dx, want, dtype, scale=10)


@pytest.mark.parametrize("layout", ["F", "strided"])
@pytest.mark.parametrize("op", FORWARD)
def test_any_layout(backend, dtype, layout, op):
    x = logits((9, 13), dtype)
    dy = logits((9, 13), dtype, seed=5, scale=1.0)
    fwd, bwd = getattr(F, op), getattr(F, op + "_backward")
    for axis in (-1, 0):
        ref = fwd(x, axis=axis, backend="numpy")
        got = fwd(layouts(x)[layout], axis=axis, backend=backend)
        assert got.flags.c_contiguous
        assert_close(got, ref, dtype)
        got = bwd(layouts(dy)[layout], layouts(ref)[layout], axis=axis, backend=backend)
        assert got.flags.c_contiguous
        assert_close(got, bwd(dy, ref, axis=axis, backend="numpy"), dtype, scale=5)


# ---- extreme values -----------------------------------------------------------------------

def test_extreme_logits(backend, dtype):
    big = 3e38 if dtype == np.float32 else 1e308
    x = np.array([[1e4, -1e4, 0.0, 1e4],         # huge spread, a tie at the top
                  [-INF, 0.0, math.log(3.0), -INF],  # -inf entries get probability 0
                  [7.0, 7.0, 7.0, 7.0],          # all equal
                  [-1e4, -1e4 + 1, -1e4 - 1, -1e4],
                  [big, -big, big, 0.0]], dtype)  # x - max overflows to -inf: still fine
    p = F.softmax(x, backend=backend)
    lp = F.log_softmax(x, backend=backend)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    ln2 = math.log(2.0)
    np.testing.assert_allclose(p[0], [0.5, 0, 0, 0.5], atol=1e-7)
    np.testing.assert_allclose(lp[0, [0, 3]], -ln2, rtol=1e-6)
    assert lp[0, 1] <= -1.9e4 and np.isfinite(lp[0, 1])
    np.testing.assert_allclose(p[1], [0, 0.25, 0.75, 0], rtol=1e-6)
    assert lp[1, 0] == -INF and lp[1, 3] == -INF
    np.testing.assert_allclose(lp[1, 1:3], np.log([0.25, 0.75]), rtol=1e-6)
    np.testing.assert_allclose(p[2], 0.25, rtol=1e-6)
    np.testing.assert_allclose(lp[2], -math.log(4.0), rtol=1e-6)
    assert_close(lp[3], closed("log_softmax", x[3].astype(np.float64)), dtype)
    np.testing.assert_allclose(p[4], [0.5, 0, 0.5, 0], atol=1e-7)
    assert np.isfinite(lp[4, [0, 2]]).all() and lp[4, 1] == -INF
    # backward from outputs holding 0 and -inf stays finite
    dy = np.ones_like(x)
    assert np.isfinite(F.softmax_backward(dy, p, backend=backend)).all()
    assert np.isfinite(F.log_softmax_backward(dy, lp, backend=backend)).all()


def test_log_softmax_keeps_precision_near_large_max(backend):
    # (x - max) is exact; rounding x - (max + log s) would cost ~1e-3 at |x| = 1e4 in float32
    x = np.array([[1e4, 1e4 + 0.5, 1e4 - 0.25]], np.float32)
    want = closed("log_softmax", np.array([[0.0, 0.5, -0.25]]))
    np.testing.assert_allclose(F.log_softmax(x, backend=backend), want, rtol=1e-6, atol=1e-6)


def test_nan_and_undefined_rows_propagate(backend, dtype):
    x = np.array([[0.0, NAN, 1.0], [NAN, 0.0, 1.0], [-INF, -INF, -INF], [0.0, INF, 1.0],
                  [1.0, 2.0, 3.0]], dtype)
    for op in FORWARD:
        y = getattr(F, op)(x, backend=backend)
        assert np.isnan(y[:4]).all(), (op, y)   # NaN, +inf, or no finite max: a NaN row
        assert np.isfinite(y[4]).all()          # other rows untouched


# ---- API contract ---------------------------------------------------------------------------

@pytest.mark.parametrize("op", FORWARD)
def test_contract(backend, op):
    x = logits((4, 6), np.float32)
    dy = logits((4, 6), np.float32, seed=6)
    fwd, bwd = getattr(F, op), getattr(F, op + "_backward")
    y = fwd(x, backend="numpy")
    for a in (x, dy, y):
        a.setflags(write=False)
    copies = [a.copy() for a in (x, dy, y)]
    out = np.full((4, 6), NAN, np.float32)
    assert fwd(x, out=out, backend=backend) is out
    assert_close(out, y)
    out_t = np.full((6, 4), NAN, np.float32)  # axis=0 writes through a moved copy
    assert fwd(x.T, axis=0, out=out_t, backend=backend) is out_t
    assert_close(out_t, y.T)
    dout = np.full((4, 6), NAN, np.float32)
    assert bwd(dy, y, out=dout, backend=backend) is dout
    assert_close(dout, bwd(dy, y, backend="numpy"), scale=5)
    for a, c in zip((x, dy, y), copies):
        np.testing.assert_array_equal(a, c)
    # lists are accepted, and empty arrays give empty results
    np.testing.assert_allclose(fwd([[0.0, 0.0]], backend=backend), fwd(np.zeros((1, 2)),
                                                                       backend="numpy"))
    for shape in ((0, 3), (3, 0), (2, 0, 4)):
        e = np.zeros(shape, np.float32)
        assert fwd(e, backend=backend).shape == shape
        assert bwd(e, e, backend=backend).shape == shape


@pytest.mark.parametrize("call, exc, match", [
    (lambda be: F.softmax(np.zeros((2, 3), np.int64), backend=be), TypeError, "x"),
    (lambda be: F.log_softmax(np.float64(1.0), backend=be), ValueError, "x"),
    (lambda be: F.softmax("abc", backend=be), TypeError, "x"),
    (lambda be: F.softmax(np.zeros((2, 3)), axis=2, backend=be), ValueError, "axis"),
    (lambda be: F.softmax(np.zeros((2, 3)), axis=-3, backend=be), ValueError, "axis"),
    (lambda be: F.softmax(np.zeros((2, 3)), axis=1.0, backend=be), TypeError, "axis"),
    (lambda be: F.softmax(np.zeros((2, 3)), axis=True, backend=be), TypeError, "axis"),
    (lambda be: F.softmax(np.zeros((2, 3)), out=np.zeros((3, 2)), backend=be),
     ValueError, "out"),
    (lambda be: F.softmax(np.zeros((2, 3)), out=np.zeros((2, 3), np.float32), backend=be),
     TypeError, "out"),
    (lambda be: F.softmax_backward(np.zeros((2, 3)), np.zeros((3, 2)), backend=be),
     ValueError, "y"),
    (lambda be: F.log_softmax_backward(np.zeros((2, 3)), np.zeros((2, 3), np.float32),
                                       backend=be), TypeError, "y"),
    (lambda be: F.softmax_backward(np.zeros((2, 3), np.int32), np.zeros((2, 3)), backend=be),
     TypeError, "dy"),
    (lambda be: F.log_softmax_backward(np.zeros((2, 3)), np.zeros((2, 3)), axis=5,
                                       backend=be), ValueError, "axis"),
])
def test_bad_input(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(backend)


# ---- properties ----------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), data=st.data(),
       be=st.sampled_from(BACKENDS), dt=st.sampled_from([np.float32, np.float64]),
       shift=st.floats(-1e3, 1e3), seed=st.integers(0, 2**31))
def test_property_shift_invariance_and_reference(shape, data, be, dt, shift, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = logits(tuple(shape), np.float64, seed)
    for op in FORWARD:
        want = closed(op, x, axis)
        got = getattr(F, op)((x + shift).astype(dt), axis=axis, backend=be)
        # adding a constant along the axis changes nothing (up to rounding x + shift)
        err = 1e-4 if dt == np.float32 else 1e-11
        np.testing.assert_allclose(got, want, rtol=err, atol=err * (1 + abs(shift)))
    p = F.softmax(x.astype(dt), axis=axis, backend=be)
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-5 if dt == np.float32 else 1e-12)
