"""fastdl.init: sample mean, standard deviation and bounds against the formulas
(fixed seeds; tolerances of five standard errors, derived below), seeding,
dtype, ``out=`` and bad input."""
import math

import numpy as np
import pytest
from scipy import stats

from fastdl import init
from fastdl.optim import Parameters

FAN_IN, FAN_OUT = 300, 200  # n = 60,000 samples
N = FAN_IN * FAN_OUT

# (function, args, distribution, scale: std for normals, bound a for uniforms)
CASES = [
    ("xavier_normal", (FAN_IN, FAN_OUT), "normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("xavier_uniform", (FAN_IN, FAN_OUT), "uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("he_normal", (FAN_IN, FAN_OUT), "normal", math.sqrt(2 / FAN_IN)),
    ("he_uniform", (FAN_IN, FAN_OUT), "uniform", math.sqrt(6 / FAN_IN)),
    ("normal", ((FAN_IN, FAN_OUT), 0.37), "normal", 0.37),
    ("uniform", ((FAN_IN, FAN_OUT), 2.5), "uniform", 2.5),
]


def _check_sample(x, dist, scale):
    x64 = x.astype(np.float64).ravel()
    n = x64.size
    std = scale if dist == "normal" else scale / math.sqrt(3)
    # standard error of the mean: std / sqrt(n); of the sample std: std sqrt((kurt - 1) / 4n)
    # with kurtosis 3 (normal) or 9/5 (uniform)
    kurt = 3.0 if dist == "normal" else 1.8
    assert abs(x64.mean()) < 5 * std / math.sqrt(n)
    assert abs(x64.std() - std) < 5 * std * math.sqrt((kurt - 1) / (4 * n))
    if dist == "uniform":
        assert x64.min() >= -scale and x64.max() <= scale
        # the extremes come close to the bounds: P(max < a (1 - 1e-3)) = (1 - 5e-4)^n ~ 1e-13
        assert x64.max() > scale * (1 - 1e-3) and x64.min() < -scale * (1 - 1e-3)
        ks = stats.kstest(x64, stats.uniform(-scale, 2 * scale).cdf)
    else:
        # about 1 in 370 normal samples is beyond 3 std; 1e-5 of them beyond 4.4 std
        assert 0.002 < np.mean(np.abs(x64) > 3 * std) < 0.0035
        ks = stats.kstest(x64, stats.norm(0, std).cdf)
    assert ks.pvalue > 1e-3  # the whole distribution, not only two moments


@pytest.mark.parametrize("name, args, dist, scale", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distribution(name, args, dist, scale, dtype):
    x = getattr(init, name)(*args, rng=1234, dtype=dtype)
    assert x.dtype == dtype and x.shape == (FAN_IN, FAN_OUT) and x.flags.c_contiguous
    _check_sample(x, dist, scale)


@pytest.mark.parametrize("name, args, dist, scale", CASES, ids=[c[0] for c in CASES])
def test_seeding(name, args, dist, scale):
    f = getattr(init, name)
    a = f(*args, rng=7)
    np.testing.assert_array_equal(a, f(*args, rng=7))
    np.testing.assert_array_equal(a, f(*args, rng=np.random.default_rng(7)))
    assert not np.array_equal(a, f(*args, rng=8))
    assert not np.array_equal(f(*args), f(*args))  # None: fresh entropy
    g = np.random.default_rng(3)
    first, second = f(*args, rng=g), f(*args, rng=g)  # a Generator advances
    assert not np.array_equal(first, second)
    assert a.dtype == np.float32  # the default dtype


@pytest.mark.parametrize("name, args, dist, scale", CASES, ids=[c[0] for c in CASES])
def test_out_into_parameters(name, args, dist, scale):
    # write straight into a view of the flat buffer
    p = Parameters({"b": (7,), "W": (FAN_IN, FAN_OUT), "c": (3,)}, dtype=np.float64)
    f = getattr(init, name)
    res = f(*args, rng=5, out=p["W"])
    assert res is p["W"]
    np.testing.assert_array_equal(res, f(*args, rng=5, dtype=np.float64))
    assert not p["b"].any() and not p["c"].any()  # the neighbours are untouched
    # a strided out= is filled too (same numbers)
    big = np.zeros((FAN_IN, 2 * FAN_OUT), np.float64)
    res = f(*args, rng=5, out=big[:, ::2])
    np.testing.assert_array_equal(big[:, ::2], p["W"])
    assert not big[:, 1::2].any()


def test_small_and_empty_shapes():
    assert init.normal(0).shape == (0,)
    assert init.uniform((2, 0, 3), 1.0).shape == (2, 0, 3)
    assert init.he_uniform(1, 1, rng=0).shape == (1, 1)
    assert abs(init.he_uniform(1, 1, rng=0)[0, 0]) <= math.sqrt(6)
    assert init.normal((), std=0.0, rng=0) == 0.0


@pytest.mark.parametrize("call, exc, match", [
    (lambda: init.he_normal(0, 3), ValueError, "fan_in"),
    (lambda: init.he_normal(3, -1), ValueError, "fan_out"),
    (lambda: init.xavier_uniform(3.0, 2), TypeError, "fan_in"),
    (lambda: init.normal((3, -2)), ValueError, "shape"),
    (lambda: init.normal("3"), TypeError, "shape"),
    (lambda: init.normal(3, std=-1.0), ValueError, "std"),
    (lambda: init.normal(3, std=math.inf), ValueError, "std"),
    (lambda: init.uniform(3, -1.0), ValueError, "a"),
    (lambda: init.uniform(3, "1"), TypeError, "a"),
    (lambda: init.normal(3, rng="seed"), TypeError, "rng"),
    (lambda: init.normal(3, rng=-1), ValueError, "rng"),
    (lambda: init.normal(3, rng=1.5), TypeError, "rng"),
    (lambda: init.normal(3, dtype=np.int32), TypeError, "dtype"),
    (lambda: init.he_normal(3, 2, out=np.zeros((2, 3), np.float32)), ValueError, "out"),
    (lambda: init.he_normal(3, 2, out=np.zeros((3, 2), np.int64)), TypeError, "out"),
    (lambda: init.he_normal(3, 2, out=[[0.0] * 2] * 3), TypeError, "out"),
    (lambda: init.he_normal(3, 2, out=np.zeros((3, 2)), dtype=np.float32), TypeError, "out"),
    # scales the dtype cannot hold drew +-inf or NaN; NumPy's size error named nothing
    (lambda: init.uniform(3, 1e39), ValueError, "a: 1e"),
    (lambda: init.normal(3, std=1e300), ValueError, "std: 1e"),
    (lambda: init.xavier_normal(2**40, 2**40), ValueError, "shape"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_uniform_up_to_the_largest_scale():
    # 2 a overflowed to inf for a = 1e308 (float64): every sample was inf
    x = init.uniform(1000, 1e308, rng=0, dtype=np.float64)
    assert np.all(np.isfinite(x)) and np.all(np.abs(x) <= 1e308) and x.min() < 0 < x.max()


def test_read_only_out_is_refused_and_unchanged():
    out = np.ones((3, 2), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        init.he_normal(3, 2, out=out)
    assert (out == 1).all()


@pytest.mark.parametrize("fn", [init.he_normal, init.he_uniform, init.xavier_normal,
                                init.xavier_uniform])
def test_fans_or_one_shape_tuple(fn):
    a = fn(7, 5, rng=3)
    np.testing.assert_array_equal(fn((7, 5), rng=3), a)
    np.testing.assert_array_equal(fn([7, 5], np.random.default_rng(3)), a)
    # a convolution kernel (out, in, kh, kw): the fans count the window, as PyTorch
    w = fn((64, 8, 3, 3), rng=0, dtype=np.float64)
    assert w.shape == (64, 8, 3, 3)
    fan_in, fan_out = 8 * 9, 64 * 9
    if fn is init.he_normal:
        assert w.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    if fn is init.xavier_uniform:
        assert np.abs(w).max() <= math.sqrt(6 / (fan_in + fan_out))
    with pytest.raises(TypeError, match="fan_out"):
        fn((7, 5), 3)  # a shape and a fan_out: which is meant is unclear
    with pytest.raises(ValueError, match="shape"):
        fn((7,))
    with pytest.raises(ValueError, match="shape"):
        fn((7, 0))
