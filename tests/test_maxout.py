"""maxout / maxout_backward: every backend against the reference (exactly: a max
involves no rounding), the reference against a closed form, the backward pass
against finite differences of the reference forward, ties and NaN, the API
contract and bad input (an argmax out of range must be refused before any kernel
writes through it)."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from fastdl._config import PARALLEL_THRESHOLD
from fastdl._registry import kernel, ops
from conftest import BACKENDS, five_point, layouts, rng

FM = importlib.import_module("fastdl.functional.maxout")  # F.maxout is the function
# (N, out, pieces): N=1, one piece, odd sizes, and above the parallel threshold
# with many rows and with a single long row
SHAPES = [(1, 1, 1), (1, 3, 2), (5, 7, 3), (33, 17, 4), (300, 65, 5),
          (1, PARALLEL_THRESHOLD // 2 + 3, 2), (7, 11, 1)]
NAN, INF = float("nan"), float("inf")


def sample(n, m, p, dtype, seed=0):
    return rng(seed).standard_normal((n, m * p)).astype(dtype)


def closed(z, p):
    g = np.asarray(z).reshape(z.shape[0], -1, p)
    return g.max(axis=2), g.argmax(axis=2)


def test_registry_and_public_names_complete():
    names = {op.name for op in ops("maxout")}
    assert names == {"maxout", "maxout_backward"} == set(FM.__all__)
    assert FM.ARGMAX_DTYPE == np.int32
    for name in names:
        for be in BACKENDS:
            assert callable(kernel(name, be))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference(backend, dtype, shape):
    n, m, p = shape
    z = sample(n, m, p, dtype)
    y, a = F.maxout(z, p, backend=backend)
    y0, a0 = F.maxout(z, p, backend="numpy")
    assert y.shape == a.shape == (n, m) and y.dtype == dtype and a.dtype == np.int32
    assert y.flags.c_contiguous and a.flags.c_contiguous
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_reference(backend, dtype, shape):
    n, m, p = shape
    _, a = F.maxout(sample(n, m, p, dtype), p, backend="numpy")
    dy = rng(1).standard_normal((n, m)).astype(dtype)
    dz = F.maxout_backward(dy, a, p, backend=backend)
    assert dz.shape == (n, m * p) and dz.dtype == dtype and dz.flags.c_contiguous
    np.testing.assert_array_equal(dz, F.maxout_backward(dy, a, p, backend="numpy"))


def test_reference_matches_closed_form(dtype):
    z = np.array([[1.0, 5.0, -2.0, 3.0, 3.0, 0.5],
                  [-1.0, -1.0, -1.0, 7.0, -INF, 7.5]], dtype)
    y, a = F.maxout(z, 3, backend="numpy")
    np.testing.assert_array_equal(y, [[5.0, 3.0], [-1.0, 7.5]])
    np.testing.assert_array_equal(a, [[1, 0], [0, 2]])
    y, a = F.maxout(z, 2, backend="numpy")
    np.testing.assert_array_equal(y, [[5.0, 3.0, 3.0], [-1.0, 7.0, 7.5]])
    np.testing.assert_array_equal(a, [[1, 1, 0], [0, 1, 1]])
    dz = F.maxout_backward(np.array([[10.0, 20.0], [30.0, 40.0]], dtype),
                           np.array([[1, 0], [0, 2]]), 3, backend="numpy")
    np.testing.assert_array_equal(dz, [[0, 10, 0, 20, 0, 0], [30, 0, 0, 0, 0, 40]])


def test_backward_against_finite_differences():
    # away from ties: pieces of a group at least 0.1 apart (the step is 1e-4)
    n, m, p = 3, 4, 3
    base = rng(2).permutation(n * m * p).reshape(n, m * p) * 0.1
    z = base + rng(3).uniform(0, 0.01, base.shape)
    dy = rng(4).standard_normal((n, m))
    num = five_point(lambda v: float(np.sum(dy * F.maxout(v, p, backend="numpy")[0])), z)
    for be in BACKENDS:
        _, a = F.maxout(z, p, backend=be)
        np.testing.assert_allclose(F.maxout_backward(dy, a, p, backend=be), num,
                                   rtol=1e-8, atol=1e-9)


def test_ties_inf_and_nan(backend, dtype):
    z = np.array([[2.0, 2.0, 2.0, 2.0,       # tie everywhere: the first piece
                   -1.0, 3.0, 3.0, 0.0,      # tie at the top: the first of them
                   -INF, -INF, -INF, -INF,   # all -inf: -inf, piece 0
                   1.0, INF, INF, 2.0,       # +inf wins
                   1.0, NAN, 5.0, NAN,       # NaN wins (the first one), as np.argmax
                   NAN, 1.0, 2.0, 3.0,
                   0.0, 1.0, 2.0, NAN]], dtype)
    y, a = F.maxout(z, 4, backend=backend)
    np.testing.assert_array_equal(a, [[0, 1, 0, 1, 1, 0, 3]])
    np.testing.assert_array_equal(y, [[2.0, 3.0, -INF, INF, NAN, NAN, NAN]])
    y0, a0 = F.maxout(z, 4, backend="numpy")
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("pieces", [1, 2, 3, 5])
def test_nan_anywhere_matches_np_argmax(backend, dtype, pieces):
    # every kernel path (pieces == 2 has its own loops; the others redo a row
    # that holds a NaN with the exact rule): the winner is np.argmax's
    z = np.round(sample(40, 30, pieces, dtype, seed=pieces))
    r = rng(9)
    z[r.random(z.shape) < 0.05] = NAN
    z[r.random(z.shape) < 0.05] = -INF
    z[r.random(z.shape) < 0.02] = INF
    y, a = F.maxout(z, pieces, backend=backend)
    y0, a0 = closed(z, pieces)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(y, y0)


def test_any_layout_and_contract(backend, dtype):
    z = sample(6, 5, 3, dtype)
    y0, a0 = F.maxout(z, 3, backend="numpy")
    for layout, zl in layouts(z).items():
        y, a = F.maxout(zl, 3, backend=backend)
        np.testing.assert_array_equal(y, y0, err_msg=layout)
        np.testing.assert_array_equal(a, a0, err_msg=layout)
    dy = rng(5).standard_normal((6, 5)).astype(dtype)
    want = F.maxout_backward(dy, a0, 3, backend="numpy")
    for layout in ("F", "strided"):
        got = F.maxout_backward(layouts(dy)[layout], layouts(a0)[layout], 3, backend=backend)
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, want, err_msg=layout)
    # read-only inputs, inputs unchanged, out= overwritten (not accumulated into)
    for arr in (z, dy, a0):
        arr.setflags(write=False)
    copies = [arr.copy() for arr in (z, dy, a0)]
    F.maxout(z, 3, backend=backend)
    out = np.full((6, 15), NAN, dtype)
    assert F.maxout_backward(dy, a0, 3, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)
    for arr, c in zip((z, dy, a0), copies):
        np.testing.assert_array_equal(arr, c)
    # any integer argmax dtype (np.argmax gives int64), and lists
    for dt in (np.int64, np.uint8, np.int16):
        np.testing.assert_array_equal(F.maxout_backward(dy, a0.astype(dt), 3, backend=backend),
                                      want)
    np.testing.assert_array_equal(F.maxout_backward(dy, a0.tolist(), 3, backend=backend), want)
    # empty batches and zero groups
    y, a = F.maxout(np.zeros((0, 6), dtype), 3, backend=backend)
    assert y.shape == a.shape == (0, 2)
    y, a = F.maxout(np.zeros((4, 0), dtype), 2, backend=backend)
    assert y.shape == (4, 0)
    assert F.maxout_backward(np.zeros((4, 0), dtype), np.zeros((4, 0), np.int32), 2,
                             backend=backend).shape == (4, 0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda be: F.maxout(np.zeros((2, 6), np.int32), 2, backend=be), TypeError, "z"),
    (lambda be: F.maxout(np.zeros(6), 2, backend=be), ValueError, "z"),
    (lambda be: F.maxout(np.zeros((2, 7)), 2, backend=be), ValueError, "pieces"),
    (lambda be: F.maxout(np.zeros((2, 6)), 0, backend=be), ValueError, "pieces"),
    (lambda be: F.maxout(np.zeros((2, 6)), 2.0, backend=be), TypeError, "pieces"),
    (lambda be: F.maxout(np.zeros((2, 6)), True, backend=be), TypeError, "pieces"),
    (lambda be: F.maxout(np.zeros((2, 0)), 2**31, backend=be), ValueError, "pieces"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.full((2, 3), 2), 2, backend=be),
     ValueError, r"argmax.*\[0, 2\).*2"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.full((2, 3), -1), 2, backend=be),
     ValueError, r"argmax.*-1"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.full((2, 3), 2**40), 4, backend=be),
     ValueError, "argmax"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.zeros((2, 3)), 2, backend=be),
     TypeError, "argmax"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.zeros((2, 3), bool), 2, backend=be),
     TypeError, "argmax"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.zeros((3, 2), np.int32), 2, backend=be),
     ValueError, "argmax"),
    (lambda be: F.maxout_backward(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int32), 2,
                                  backend=be), TypeError, "dy"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.zeros((2, 3), np.int32), 0,
                                  backend=be), ValueError, "pieces"),
    (lambda be: F.maxout_backward(np.zeros((2, 3)), np.zeros((2, 3), np.int32), 2,
                                  out=np.zeros((2, 3)), backend=be), ValueError, "out"),
])
def test_bad_input(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(backend)


def test_bad_argmax_writes_nothing(backend):
    out = np.full((2, 6), 7.0)
    bad = np.array([[0, 1, 2], [0, 3, 1]])
    with pytest.raises(ValueError, match="argmax"):
        F.maxout_backward(np.ones((2, 3)), bad, 2, out=out, backend=backend)
    np.testing.assert_array_equal(out, 7.0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 20), m=st.integers(1, 20), p=st.integers(1, 6),
       be=st.sampled_from(BACKENDS), dt=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31), grid=st.booleans())
def test_property_matches_closed_form(n, m, p, be, dt, seed, grid):
    z = sample(n, m, p, dt, seed)
    if grid:  # many ties
        z = np.round(z)
    y, a = F.maxout(z, p, backend=be)
    y0, a0 = closed(z, p)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(a, a0)
    dy = rng(seed + 1).standard_normal((n, m)).astype(dt)
    dz = F.maxout_backward(dy, a, p, backend=be).reshape(n, m, p)
    np.testing.assert_array_equal(dz.sum(axis=2), dy)          # all of dy, once
    assert (np.count_nonzero(dz, axis=2) <= 1).all()
    np.testing.assert_array_equal(np.take_along_axis(dz, a0[:, :, None], 2)[:, :, 0], dy)
