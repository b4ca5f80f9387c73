"""Elementwise activations and their backward kernels: every backend against the
reference (dtypes, shapes across the parallel threshold, layouts, extreme values),
the reference against closed forms, every backward against finite differences
of the reference forward, the API contract and bad input."""
import math

import mpmath
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
import fastdl.functional.activations as FA
from fastdl._config import PARALLEL_THRESHOLD
from fastdl._registry import kernel, ops
from conftest import BACKENDS, assert_close, five_point, layouts, rng, tol

ACTS = [op.name for op in ops("activations") if not op.name.endswith("_backward")]
DEFAULT_ALPHA = {"leaky_relu": 0.1, "elu": 1.0}
# odd sizes, 0-D, and two sizes above the parallel threshold (so both paths run)
SHAPES = [(), (1,), (7,), (33, 65), (3, 5, 7), (PARALLEL_THRESHOLD + 4465,), (300, 257)]
NAN, INF = float("nan"), float("inf")


def fwd(act, x, backend, alpha=None, **kw):
    args = () if alpha is None else (alpha,)
    return getattr(F, act)(x, *args, backend=backend, **kw)


def bwd(act, dy, x, backend, alpha=None, **kw):
    args = () if alpha is None else (alpha,)
    return getattr(F, act + "_backward")(dy, x, *args, backend=backend, **kw)


def sample(shape, dtype, seed=0, scale=3.0):
    r = rng(seed)
    return (r.standard_normal(shape) * scale).astype(dtype), r.standard_normal(shape).astype(dtype)


def test_registry_and_public_names_complete():
    names = {op.name for op in ops("activations")}
    assert names == set(FA.__all__)
    assert set(ACTS) == {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu"}
    for name in names:
        assert callable(getattr(F, name))
        for be in BACKENDS:
            assert callable(kernel(name, be))


# ---- every backend against the reference ----------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_reference(backend, dtype, shape, act):
    x, _ = sample(shape, dtype)
    ref = fwd(act, x, "numpy")
    got = fwd(act, x, backend)
    assert got.shape == x.shape and got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_backward_matches_reference(backend, dtype, shape, act):
    x, dy = sample(shape, dtype, seed=1)
    ref = bwd(act, dy, x, "numpy")
    got = bwd(act, dy, x, backend)
    assert got.shape == x.shape and got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("act, alpha", [("leaky_relu", -0.5), ("leaky_relu", 0.0),
                                        ("leaky_relu", 2.0), ("elu", 0.0), ("elu", 0.5),
                                        ("elu", 2.5)])
@pytest.mark.parametrize("n", [9, PARALLEL_THRESHOLD + 3])
def test_alpha_matches_reference(backend, dtype, act, alpha, n):
    x, dy = sample(n, dtype, seed=2)
    assert_close(fwd(act, x, backend, alpha), fwd(act, x, "numpy", alpha), dtype)
    assert_close(bwd(act, dy, x, backend, alpha), bwd(act, dy, x, "numpy", alpha), dtype)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("act", ACTS)
def test_any_layout(backend, dtype, layout, act):
    x, dy = sample((6, 5), dtype, seed=3)
    ref_y, ref_dx = fwd(act, x, "numpy"), bwd(act, dy, x, "numpy")
    y = fwd(act, layouts(x)[layout], backend)
    dx = bwd(act, layouts(dy)[layout], layouts(x)[layout], backend)
    for got, ref in ((y, ref_y), (dx, ref_dx)):
        assert got.flags.c_contiguous and got.shape == (6, 5)
        assert_close(got, ref, dtype)


EXTREMES = [-INF, -1e30, -1e4, -100.0, -20.0, -5.5, -1e-30, -0.0, 0.0, 1e-30, 5.5, 20.0,
            100.0, 1e4, 1e30, INF, NAN]


@pytest.mark.parametrize("act", ACTS)
def test_extreme_values(backend, dtype, act):
    # no overflow for any finite input, NaN propagates, +-inf gives the limits; the
    # array is tiled past the threshold so the parallel path sees them too
    x = np.tile(np.array(EXTREMES, dtype), PARALLEL_THRESHOLD // len(EXTREMES) + 1)
    dy = np.ones_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no warning (underflow is fine)
        ref_y, ref_dx = fwd(act, x, "numpy"), bwd(act, dy, x, "numpy")
    y, dx = fwd(act, x, backend), bwd(act, dy, x, backend)
    finite = np.isfinite(x)
    big = np.abs(x) == INF
    assert np.all(np.isnan(y) == np.isnan(x)) and np.all(np.isnan(dx) == np.isnan(x))
    assert np.all(np.isfinite(dx[finite]))
    if act not in ("relu", "leaky_relu", "elu", "gelu", "silu"):  # the bounded ones
        assert np.all(np.isfinite(y[finite | big]))
    assert_close(y, ref_y, dtype)
    assert_close(dx, ref_dx, dtype)


LIMITS = {  # act: (f(-inf), f(inf), f'(-inf), f'(inf)) with default alpha
    "sigmoid": (0, 1, 0, 0), "tanh": (-1, 1, 0, 0), "relu": (0, INF, 0, 1),
    "leaky_relu": (-INF, INF, 0.1, 1), "elu": (-1, INF, 0, 1), "gelu": (0, INF, 0, 1),
    "silu": (0, INF, 0, 1)}


@pytest.mark.parametrize("act", ACTS)
def test_limits_at_infinity(backend, dtype, act):
    x = np.array([-INF, INF], dtype)
    y, dx = fwd(act, x, backend), bwd(act, np.ones_like(x), x, backend)
    lo, hi, dlo, dhi = LIMITS[act]
    np.testing.assert_allclose(y, [lo, hi], rtol=1e-6)
    np.testing.assert_allclose(dx, [dlo, dhi], rtol=1e-6)


def test_leaky_relu_alpha_zero_at_minus_infinity(backend, dtype):
    # 0 * -inf: NaN in every backend, as PyTorch's leaky_relu(-inf, 0.0); the gradient is 0;
    # the reference computes it without a RuntimeWarning (hypothesis drew this case)
    import warnings

    x = np.array([-INF, -1.0, INF], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fwd("leaky_relu", x, backend, 0.0)
        dx = bwd("leaky_relu", np.ones_like(x), x, backend, 0.0)
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == INF
    np.testing.assert_array_equal(dx, [0, 0, 1])


def test_kinks_and_nan_gradient(backend, dtype):
    # the left derivative at 0 (PyTorch's convention) and NaN for NaN, both sides of 0
    x = np.array([-0.0, 0.0, NAN], dtype)
    one = np.ones(3, dtype)
    for act, at0 in (("relu", 0.0), ("leaky_relu", 0.1), ("elu", 1.0), ("sigmoid", 0.25),
                     ("tanh", 1.0), ("gelu", 0.5), ("silu", 0.5)):
        dx = bwd(act, one, x, backend)
        np.testing.assert_allclose(dx[:2], [at0, at0], rtol=1e-6, err_msg=act)
        assert np.isnan(dx[2]), act
        y0 = 0.5 if act == "sigmoid" else 0.0
        np.testing.assert_array_equal(fwd(act, x[:2], backend), [y0, y0])
    np.testing.assert_allclose(bwd("leaky_relu", one, x, backend, 0.3)[:2], [0.3, 0.3],
                               rtol=1e-6)
    np.testing.assert_allclose(bwd("elu", one, x, backend, 2.0)[:2], [2.0, 2.0], rtol=1e-6)


def test_gelu_left_tail_keeps_relative_accuracy(backend, dtype):
    # far left gelu and gelu' are tiny: Phi(x) must come from erfc there, since
    # 1/2 (1 + erf(x / sqrt 2)) cancels (it gave 4% error at x = -5 and 0 from -5.9 on in
    # float32).  Relative tolerance of the type, down to results near the smallest normal.
    xs = [-1.5, -3.0, -5.0, -6.0, -8.0, -10.0, -12.0]
    if dtype == np.float64:
        xs += [-20.0, -30.0, -37.0]
    x = np.array(xs, dtype)
    with mpmath.workdps(40):
        v = [mpmath.mpf(float(t)) for t in x]
        exact = np.array([float(t * mpmath.ncdf(t)) for t in v])
        exact_d = np.array([float(mpmath.ncdf(t) + t * mpmath.npdf(t)) for t in v])
    rtol = tol(dtype)["rtol"]
    np.testing.assert_allclose(fwd("gelu", x, backend), exact, rtol=rtol, atol=0)
    np.testing.assert_allclose(bwd("gelu", np.ones_like(x), x, backend), exact_d, rtol=rtol,
                               atol=0)


def test_gelu_float32_error_in_ulp(compiled):
    # the compiled float32 gelu and gelu' (one algorithm in both backends) over 2^20
    # floats spread evenly in bits over [-14, 14], against float64: the bounds sit just
    # above the maxima over every float32 in [-16, 16], 6.9 and 15.7 ulp with FMA, 8.3 and
    # 20.3 in a build without (the Cython backend without FASTDL_NATIVE).  Where the result
    # is subnormal, and near the zero of gelu' (x = -0.752), where Phi + x phi cancels,
    # only the reference tolerance applies.
    top = int(np.float32(14).view(np.uint32))
    bits = np.linspace(0, top, 1 << 19).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), -bits.view(np.float32)])
    xd = x.astype(np.float64)
    y = [xd * scipy.special.ndtr(xd), fwd("gelu", x, compiled).astype(np.float64)]
    d = [scipy.special.ndtr(xd) + xd * np.exp(-xd * xd / 2) / math.sqrt(2 * math.pi),
         bwd("gelu", np.ones_like(x), x, compiled).astype(np.float64)]
    for (want, got), bound, skip in ((y, 8.5, False), (d, 21.0, True)):
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        err = np.abs(got - want) / ulp
        keep = (np.abs(want) >= np.finfo(np.float32).tiny) & ~(skip & (np.abs(x + 0.752) < 0.1))
        assert err[keep].max() <= bound, (bound, x[keep][np.argmax(err[keep])])


# ---- the reference against closed forms and finite differences ---------------------

def _closed(act, v, alpha):
    if act == "sigmoid":
        return 1 / (1 + math.exp(-v))
    if act == "tanh":
        return math.tanh(v)
    if act == "relu":
        return max(v, 0.0)
    if act == "leaky_relu":
        return v if v >= 0 else alpha * v
    if act == "elu":
        return v if v >= 0 else alpha * (math.exp(v) - 1)
    if act == "gelu":
        return v * 0.5 * (1 + math.erf(v / math.sqrt(2)))
    return v / (1 + math.exp(-v))  # silu


def _closed_d(act, v, alpha):
    if act == "sigmoid":
        s = 1 / (1 + math.exp(-v))
        return s * (1 - s)
    if act == "tanh":
        return 1 - math.tanh(v) ** 2
    if act == "relu":
        return 1.0 if v > 0 else 0.0
    if act == "leaky_relu":
        return 1.0 if v > 0 else alpha
    if act == "elu":
        return 1.0 if v > 0 else alpha * math.exp(v)
    if act == "gelu":
        return 0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(
            2 * math.pi)
    s = 1 / (1 + math.exp(-v))
    return s + v * s * (1 - s)  # silu


@pytest.mark.parametrize("act", ACTS)
def test_reference_closed_form(act):
    alpha = DEFAULT_ALPHA.get(act, 0.0)
    x = np.array([-7.5, -3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 2.5, 9.0])
    dy = np.linspace(-2, 2, x.size)
    np.testing.assert_allclose(fwd(act, x, "numpy"), [_closed(act, v, alpha) for v in x],
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(bwd(act, dy, x, "numpy"),
                               dy * [_closed_d(act, v, alpha) for v in x], rtol=1e-12,
                               atol=1e-15)


def test_reference_known_values():
    one = np.array([1.0])
    assert fwd("sigmoid", np.array(0.0), "numpy") == 0.5
    np.testing.assert_allclose(fwd("gelu", one, "numpy"), [0.8413447460685429], rtol=1e-15)
    np.testing.assert_allclose(fwd("silu", one, "numpy"), [0.7310585786300049], rtol=1e-15)
    np.testing.assert_allclose(fwd("elu", -one, "numpy"), [math.exp(-1) - 1], rtol=1e-15)
    np.testing.assert_allclose(fwd("leaky_relu", -one, "numpy", 2.0), [-2.0])
    np.testing.assert_allclose(fwd("leaky_relu", one, "numpy", 2.0), [1.0])  # not max
    # sigmoid' keeps full relative precision where s (1 - s) would round to 0
    np.testing.assert_allclose(bwd("sigmoid", one, 40 * one, "numpy"),
                               [math.exp(-40) / (1 + math.exp(-40)) ** 2], rtol=1e-14)
    np.testing.assert_allclose(bwd("tanh", one, 30 * one, "numpy"),
                               [1 / math.cosh(30) ** 2], rtol=1e-13)


@pytest.mark.parametrize("act, alpha", [(a, None) for a in ACTS] +
                         [("leaky_relu", -0.5), ("leaky_relu", 2.0), ("elu", 0.3)])
def test_backward_against_finite_differences(backend, act, alpha):
    # points away from the kink at 0 (the stencil is 2e-4 wide)
    x = np.array([-6.0, -2.7, -1.3, -0.4, -0.05, 0.03, 0.6, 1.1, 2.2, 4.9])
    dy = rng(4).standard_normal(x.size)
    a = DEFAULT_ALPHA.get(act) if alpha is None else alpha

    def loss(v):
        return float(np.sum(dy * fwd(act, v, "numpy", a)))

    np.testing.assert_allclose(bwd(act, dy, x, backend, a), five_point(loss, x),
                               rtol=1e-8, atol=1e-10)


# ---- the API contract --------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
def test_contract(backend, act):
    # read-only inputs, out=, inputs unmodified (a small array: read-only arrays are
    # another Numba signature, and the parallel path is the same kernel per chunk)
    x, dy = sample((7, 11), np.float32, seed=5)
    for a in (x, dy):
        a.setflags(write=False)
    xc, dyc = x.copy(), dy.copy()
    y_new = fwd(act, x, backend)
    out = np.empty_like(x)
    assert fwd(act, x, backend, out=out) is out
    dx_new = bwd(act, dy, x, backend)
    dout = np.empty_like(x)
    assert bwd(act, dy, x, backend, out=dout) is dout
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(dy, dyc)
    np.testing.assert_array_equal(out, y_new)
    np.testing.assert_array_equal(dout, dx_new)


@pytest.mark.parametrize("n", [7 * 11, PARALLEL_THRESHOLD + 123], ids=["serial", "parallel"])
@pytest.mark.parametrize("act", ACTS)
def test_in_place(backend, act, n):
    # out may be x; dx may be dy or x.  The compiled kernels take another loop for an
    # exact alias, which may round differently in the last bit: compared closely.
    x, dy = sample(n, np.float32, seed=7)
    y_new, dx_new = fwd(act, x, backend), bwd(act, dy, x, backend)
    xi = x.copy()
    assert fwd(act, xi, backend, out=xi) is xi
    assert_close(xi, y_new, np.float32, scale=0.1)
    for target in ("dy", "x"):
        d, v = dy.copy(), x.copy()
        o = d if target == "dy" else v
        assert bwd(act, d, v, backend, out=o) is o
        assert_close(o, dx_new, np.float32, scale=0.1)


# arrays of 16 MiB and more are written with streaming stores, in blocks after an
# unaligned head (every Cython activation, the Numba relu and leaky_relu): from an
# unaligned start, with an odd tail, and in place
STREAM_BYTES = 1 << 24


@pytest.mark.parametrize("act", ACTS)
def test_streaming_store_sizes(dtype, act):
    n = STREAM_BYTES // np.dtype(dtype).itemsize + 37
    x, dy = sample(n + 1, dtype, seed=11)
    x, dy = x[1:], dy[1:]  # 4 or 8 bytes past the allocation's alignment
    y_ref, dx_ref = fwd(act, x, "numpy"), bwd(act, dy, x, "numpy")
    for backend in BACKENDS:
        assert_close(fwd(act, x, backend), y_ref, dtype, err_msg=backend)
        assert_close(bwd(act, dy, x, backend), dx_ref, dtype, err_msg=backend)
        xi = x.copy()
        fwd(act, xi, backend, out=xi)
        assert_close(xi, y_ref, dtype, err_msg=backend)
        d = dy.copy()
        bwd(act, d, x, backend, out=d)
        assert_close(d, dx_ref, dtype, err_msg=backend)


def test_numba_kernels_stream_only_into_c_order():
    # stream() writes at out's address plus the index: a strided out of streaming size,
    # which only a direct caller passes, must take the ordinary loops (it was written
    # as if contiguous: wrong values, and beyond the array for a negative stride).
    # float32 only: each layout compiles the kernels anew
    pytest.importorskip("numba")
    from fastdl._registry import kernel

    dtype = np.float32
    n = STREAM_BYTES // np.dtype(dtype).itemsize + 37
    x, dy = sample(n, dtype, seed=13)
    for out in (np.zeros(2 * n, dtype)[::2], np.zeros(n, dtype)[::-1]):
        kernel("relu", "numba")(x, out)
        np.testing.assert_array_equal(out, np.maximum(x, 0))
        kernel("relu_backward", "numba")(dy, x, out)
        np.testing.assert_array_equal(out, np.where(x > 0, dy, 0))


def test_numba_streaming_drivers_compute_every_activation(dtype):
    # the Numba streaming drivers stream relu and leaky_relu only; given any other
    # activation code they must still compute that activation (once they computed
    # leaky_relu for every code), even though the public path never sends them one
    pytest.importorskip("numba")
    from fastdl._kernels.numba import activations as A
    from fastdl._kernels.numba import _scalar

    x, dy = sample(1000, dtype, seed=12)
    for act in ACTS:
        code = getattr(_scalar, "ACT_" + act.upper())
        alpha = dtype(DEFAULT_ALPHA.get(act, 0.0))
        y, dx = np.empty_like(x), np.empty_like(x)
        A._forward_chunks_stream(x, y, code, alpha)
        A._backward_chunks_stream(dy, x, dx, code, alpha)
        assert_close(y, fwd(act, x, "numpy", DEFAULT_ALPHA.get(act)), dtype, err_msg=act)
        assert_close(dx, bwd(act, dy, x, "numpy", DEFAULT_ALPHA.get(act)), dtype, err_msg=act)


def test_partial_overlap_is_safe(backend):
    # out a shifted view of x's memory: the result must be as if x were copied first
    buf = np.linspace(-3, 3, PARALLEL_THRESHOLD + 101)
    x = buf[:-1]
    expected = F.tanh(x.copy(), backend="numpy")
    got = F.tanh(x, out=buf[1:], backend=backend)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # dx one element ahead of x: each write lands on an x not yet read
    buf = np.linspace(-3, 3, 1001)
    dy = np.ones(1000)
    expected = F.sigmoid_backward(dy, buf[:-1].copy(), backend="numpy")
    got = F.sigmoid_backward(dy, buf[:-1], out=buf[1:], backend=backend)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_ranks_scalars_and_empty(backend, dtype):
    y = F.relu(np.array(-2.0, dtype), backend=backend)
    assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == dtype and y == 0
    z = F.sigmoid(3.0, backend=backend)  # a Python float is a 0-D float64 array
    assert z.shape == () and z.dtype == np.float64
    np.testing.assert_allclose(z, 1 / (1 + math.exp(-3.0)))
    for shape in [(0,), (3, 0), (0, 4, 2)]:
        e = np.zeros(shape, dtype)
        for act in ACTS:
            assert fwd(act, e, backend).shape == shape
            assert bwd(act, e, e, backend).dtype == dtype
    g = F.gelu_backward([[1.0, 2.0]], [[0.5, -0.5]], backend=backend)  # nested lists
    assert g.shape == (1, 2) and g.dtype == np.float64


def test_default_alpha_and_keywords(backend):
    x, dy = sample(50, np.float64, seed=6)
    np.testing.assert_array_equal(F.leaky_relu(x, backend=backend),
                                  F.leaky_relu(x, alpha=0.1, backend=backend))
    np.testing.assert_array_equal(F.elu_backward(dy, x, backend=backend),
                                  F.elu_backward(dy, x, alpha=1.0, backend=backend))
    with pytest.raises(TypeError):
        F.relu(x, None, backend)  # out and backend are keyword only


# ---- bad input ---------------------------------------------------------------------

X32 = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize("call, exc, match", [
    (lambda b: F.relu(np.zeros(3, np.int64), backend=b), TypeError, "x"),
    (lambda b: F.sigmoid(np.zeros(3, np.float16), backend=b), TypeError, "x"),
    (lambda b: F.tanh("abc", backend=b), TypeError, "x"),
    (lambda b: F.gelu([1, 2], backend=b), TypeError, "x"),
    (lambda b: F.silu(X32, out=np.zeros((3, 2), np.float32), backend=b), ValueError, "out"),
    (lambda b: F.silu(X32, out=np.zeros((2, 3)), backend=b), TypeError, "out"),
    (lambda b: F.silu(X32, out=np.zeros((3, 2), np.float32).T, backend=b), ValueError, "out"),
    (lambda b: F.silu(X32, out=[[0.0] * 3] * 2, backend=b), TypeError, "out"),
    (lambda b: F.relu_backward(X32, np.zeros((2, 3)), backend=b), TypeError, "x"),
    (lambda b: F.relu_backward(np.zeros((2, 3), np.int32), X32, backend=b), TypeError, "dy"),
    (lambda b: F.tanh_backward(X32, np.zeros((3, 2), np.float32), backend=b), ValueError, "x"),
    (lambda b: F.tanh_backward(X32, np.zeros(6, np.float32), backend=b), ValueError, "x"),
    (lambda b: F.gelu_backward(X32, X32, out=np.zeros(6, np.float32), backend=b),
     ValueError, "out"),
    (lambda b: F.elu(X32, -0.5, backend=b), ValueError, "alpha"),
    (lambda b: F.elu_backward(X32, X32, alpha=-1.0, backend=b), ValueError, "alpha"),
    (lambda b: F.leaky_relu(X32, NAN, backend=b), ValueError, "alpha"),
    (lambda b: F.leaky_relu_backward(X32, X32, INF, backend=b), ValueError, "alpha"),
    (lambda b: F.leaky_relu(X32, "0.1", backend=b), TypeError, "alpha"),
    (lambda b: F.elu(X32, True, backend=b), TypeError, "alpha"),
    (lambda b: F.relu(X32, backend=b + "x"), ValueError, "backend"),
])
def test_bad_input(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(backend)


def test_read_only_out_refused(backend):
    out = np.zeros((2, 3), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out"):
        F.relu(X32, out=out, backend=backend)


# ---- properties --------------------------------------------------------------------

_values = st.one_of(st.floats(-60, 60), st.sampled_from([INF, -INF, NAN, 0.0, -0.0, 1e30,
                                                         -1e30, 1e-30]))


@settings(max_examples=60, deadline=None)
@given(data=st.lists(_values, min_size=0, max_size=40), act=st.sampled_from(ACTS),
       be=st.sampled_from(BACKENDS), dt=st.sampled_from([np.float32, np.float64]),
       alpha=st.floats(0, 3), seed=st.integers(0, 2**31))
def test_property_matches_reference(data, act, be, dt, alpha, seed):
    x = np.array(data, dt)
    dy = rng(seed).standard_normal(x.shape).astype(dt)
    a = alpha if act in DEFAULT_ALPHA else None
    assert_close(fwd(act, x, be, a), fwd(act, x, "numpy", a), dt)
    assert_close(bwd(act, dy, x, be, a), bwd(act, dy, x, "numpy", a), dt)


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.floats(-30, 30), min_size=1, max_size=30),
       be=st.sampled_from(BACKENDS), dt=st.sampled_from([np.float32, np.float64]))
def test_property_identities(data, be, dt):
    x = np.array(data, dt)
    s = F.sigmoid(x, backend=be)
    assert np.all((s >= 0) & (s <= 1))
    assert_close(s + F.sigmoid(-x, backend=be), np.ones_like(x), dt)  # s(x) + s(-x) = 1
    assert_close(F.silu(x, backend=be), x * s, dt)
    t = F.tanh(x, backend=be)
    assert_close(t, 2 * F.sigmoid(2 * x, backend=be) - 1, dt, scale=5)
    assert np.all(F.relu(x, backend=be) >= 0)
    assert_close(F.relu(x, backend=be) - F.relu(-x, backend=be), x, dt)
