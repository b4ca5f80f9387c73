"""sgd_update_ / adam_update_ and the clipping kernels (sum_squares, scale, clip_value):
every compiled backend against the reference over 200-step trajectories, the
reference against hand-computed steps, convergence, the contract and bad input."""
import functools
import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastdl.functional as F
from fastdl._registry import kernel, ops
from conftest import COMPILED, DTYPES, assert_close, rng

SIZES = [1, 17, 100_003]  # 100,003 > PARALLEL_THRESHOLD: the parallel paths run
STEPS = 200

# (kind, hyper-parameters): every loop of both kernels in every backend (plain;
# clipping only; penalties), with and without Nesterov.  The clip-only configurations
# leave grad_scale at 1: a kernel that took its plain loop whenever there is no
# penalty and grad_scale == 1 skipped the clipping
CONFIGS = {
    "sgd": ("sgd", dict(lr=0.01)),
    "sgd-l1l2": ("sgd", dict(lr=0.01, l1=1e-3, l2=1e-2)),
    "momentum": ("sgd", dict(lr=0.01, momentum=0.9)),
    "nesterov": ("sgd", dict(lr=0.01, momentum=0.8, nesterov=True)),
    "nesterov-elastic": ("sgd", dict(lr=0.01, momentum=0.9, nesterov=True, l1=1e-3, l2=1e-2)),
    "momentum-clip": ("sgd", dict(lr=0.02, momentum=0.5, grad_scale=0.3, grad_clip=0.5)),
    "sgd-clip-only": ("sgd", dict(lr=0.01, grad_clip=0.3)),
    "adam": ("adam", dict(lr=1e-2)),
    "adamw": ("adam", dict(lr=1e-2, weight_decay=0.1)),
    "adam-clip": ("adam", dict(lr=1e-2, grad_scale=0.5, grad_clip=0.3)),
    "adam-clip-only": ("adam", dict(lr=1e-2, grad_clip=0.3)),
    "adam-l1l2-clip": ("adam", dict(lr=1e-2, l1=1e-3, l2=1e-2, grad_scale=0.7, grad_clip=1.0)),
    "adam-betas": ("adam", dict(lr=1e-3, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.01)),
}


@functools.lru_cache(maxsize=None)
def _grad_pool(n, dtype):
    # for the large size a pool of random arrays, rescaled at each step, keeps the
    # test fast (the kernels are elementwise: independence across steps adds nothing)
    r = rng(123)
    return [r.standard_normal(n).astype(dtype) for _ in range(5)]


def trajectory(name, n, dtype, backend, steps=STEPS, seed=0):
    """(w, state...) after ``steps`` updates with random gradients of varying scale."""
    kind, cfg = CONFIGS[name]
    r = rng(seed)
    w = r.standard_normal(n).astype(dtype)
    s1, s2 = np.zeros(n, dtype), np.zeros(n, dtype)
    pool = _grad_pool(n, dtype) if n > 1000 else None
    for t in range(1, steps + 1):
        scale = r.uniform(0.1, 3.0)
        if pool is None:
            g = (r.standard_normal(n) * scale).astype(dtype)
        else:
            g = pool[t % len(pool)] * dtype(scale)
        check = t in (1, steps)
        g_before = g.copy() if check else None
        if kind == "sgd":
            vel = s1 if cfg.get("momentum", 0) > 0 else None
            F.sgd_update_(w, g, velocity=vel, backend=backend, **cfg)
        else:
            F.adam_update_(w, g, s1, s2, t, backend=backend, **cfg)
        if check:
            assert np.array_equal(g, g_before)  # grad is never modified
    return (w, s1) if kind == "sgd" else (w, s1, s2)


_reference = functools.lru_cache(maxsize=None)(
    lambda name, n, dtype: trajectory(name, n, dtype, "numpy"))


# The parallel path runs the same per-element code as the serial one: at the large
# size a subset of configurations that still takes every branch keeps the test fast.
LARGE = ["sgd-l1l2", "nesterov-elastic", "momentum-clip", "adam-l1l2-clip", "adam-betas"]
CASES = [(name, n) for n in SIZES for name in CONFIGS if n < 1000 or name in LARGE]


@pytest.mark.parametrize("name, n", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_trajectory_matches_reference(compiled, dtype, name, n, on_threads):
    on_threads(2)  # the parallel path split over threads whatever the machine's load
    ref = _reference(name, n, dtype)
    got = trajectory(name, n, dtype, compiled)
    for a, e in zip(got, ref):
        assert a.dtype == dtype
        # 200 steps of rounding differences (FMA contraction, lr / bc1 folded
        # into one constant) accumulate: 10x the single-operation tolerance
        assert_close(a, e, dtype, scale=10)


# ---- reference against hand-computed steps ----

def _run_ref(kind, w0, grads, **cfg):
    w = np.array([w0], dtype=np.float64)
    s1, s2 = np.zeros(1), np.zeros(1)
    for t, g in enumerate(grads, start=1):
        g = np.array([g])
        if kind == "sgd":
            F.sgd_update_(w, g, velocity=s1 if cfg.get("momentum", 0) else None,
                          backend="numpy", **cfg)
        else:
            F.adam_update_(w, g, s1, s2, t, backend="numpy", **cfg)
    return w[0], s1[0], s2[0]


def test_reference_sgd_closed_forms():
    close = functools.partial(pytest.approx, rel=1e-14, abs=1e-15)
    # w -= lr g
    assert _run_ref("sgd", 1.0, [0.5], lr=0.1)[0] == close(0.95)
    assert _run_ref("sgd", 1.0, [0.5, -2.0], lr=0.1)[0] == close(0.95 + 0.2)
    # momentum: v1 = 0.05, w1 = 0.95; v2 = 0.9 * 0.05 + 0.05 = 0.095, w2 = 0.855
    w, v, _ = _run_ref("sgd", 1.0, [0.5], lr=0.1, momentum=0.9)
    assert (w, v) == (close(0.95), close(0.05))
    w, v, _ = _run_ref("sgd", 1.0, [0.5, 0.5], lr=0.1, momentum=0.9)
    assert (w, v) == (close(0.855), close(0.095))
    # Nesterov: w1 = 1 - (0.9 * 0.05 + 0.05) = 0.905; w2 = 0.905 - (0.9 * 0.095 + 0.05)
    assert _run_ref("sgd", 1.0, [0.5], lr=0.1, momentum=0.9, nesterov=True)[0] == close(0.905)
    assert _run_ref("sgd", 1.0, [0.5, 0.5], lr=0.1, momentum=0.9, nesterov=True)[0] == \
        close(0.905 - 0.1355)
    # elastic net: g = 0.5 + 0.1 * sign(-2) + 2 * 0.25 * (-2) = -0.6, so w = -2 + 0.06
    assert _run_ref("sgd", -2.0, [0.5], lr=0.1, l1=0.1, l2=0.25)[0] == close(-1.94)
    # then g = 0.5 - 0.1 + 0.5 * (-1.94) = -0.57, so w = -1.94 + 0.057
    assert _run_ref("sgd", -2.0, [0.5, 0.5], lr=0.1, l1=0.1, l2=0.25)[0] == close(-1.883)
    # sign(0) = 0: an L1 penalty does not move a zero weight with a zero gradient
    assert _run_ref("sgd", 0.0, [0.0], lr=0.1, l1=0.5)[0] == 0.0
    # clipping: 4 * 0.25 = 1 -> clipped to 0.5 -> w = 1 - 0.05
    assert _run_ref("sgd", 1.0, [4.0], lr=0.1, grad_scale=0.25, grad_clip=0.5)[0] == close(0.95)


def test_reference_adam_closed_forms():
    close = functools.partial(pytest.approx, rel=1e-13, abs=1e-15)
    lr, eps = 0.1, 1e-8
    # step 1: m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25: w = 1 - 0.1 * 0.5 / (0.5 + eps)
    w, m, v = _run_ref("adam", 1.0, [0.5], lr=lr)
    assert (w, m, v) == (close(1 - lr * 0.5 / (0.5 + eps)), close(0.05), close(0.00025))
    # step 2 with g = -0.25: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625
    w2, m2, v2 = _run_ref("adam", 1.0, [0.5, -0.25], lr=lr)
    m_hat, v_hat = 0.02 / (1 - 0.81), 0.00031225 / (1 - 0.998001)
    assert (m2, v2) == (close(0.02), close(0.00031225))
    assert w2 == close(w - lr * m_hat / (math.sqrt(v_hat) + eps))
    # decoupled weight decay first: w = 2 * (1 - 0.1 * 0.5) - 0.1 * 1 / (1 + eps)
    assert _run_ref("adam", 2.0, [1.0], lr=lr, weight_decay=0.5)[0] == \
        close(2 * 0.95 - lr / (1 + eps))
    # penalties use the weights before the decay: g = 1 + 0.5 + 2 * 0.25 * 2 = 2.5
    w, m, _ = _run_ref("adam", 2.0, [1.0], lr=lr, weight_decay=0.5, l1=0.5, l2=0.25)
    assert m == close(0.25)
    assert w == close(2 * 0.95 - lr * 2.5 / (2.5 + eps))
    # other betas, eps: m_hat = g, v_hat = g^2 at step 1 whatever the betas
    assert _run_ref("adam", 0.0, [-3.0], lr=0.01, beta1=0.5, beta2=0.9, eps=0.1)[0] == \
        close(0.01 * 3 / (3 + 0.1))


# ---- convergence ----

@pytest.mark.parametrize("opt", ["momentum", "nesterov", "adam"])
def test_converges_on_quadratic(backend, dtype, opt):
    # f(w) = 0.5 sum a (w - c)^2 with curvatures spread over two decades
    r = rng(5)
    n = 37
    a = r.uniform(0.1, 10.0, n)
    c = r.standard_normal(n)
    w = np.zeros(n, dtype)
    s1, s2 = np.zeros(n, dtype), np.zeros(n, dtype)
    for t in range(1, 1501):
        g = (a * (w - c)).astype(dtype)
        if opt == "adam":
            lr = 0.05 if t < 1000 else 0.005
            F.adam_update_(w, g, s1, s2, t, lr=lr, backend=backend)
        else:
            F.sgd_update_(w, g, 0.05, momentum=0.9, velocity=s1, nesterov=opt == "nesterov",
                          backend=backend)
    np.testing.assert_allclose(w, c, atol=2e-3)


# ---- the clipping kernels ----
# on 2 threads pinned: the adaptive count falls to 1 on a loaded machine, and one
# chunk per thread then hid a chunk size rounded down (an odd n lost its last value)

@pytest.mark.parametrize("n", [1, 17, 100_003])
def test_clipping_kernels_match_reference(backend, dtype, n, on_threads):
    on_threads(2)
    x = rng(n).standard_normal(n).astype(dtype) * 3
    exact = math.fsum(float(v) ** 2 for v in x.astype(np.float64))
    got = kernel("sum_squares", backend)(x)
    assert isinstance(got, float)
    assert got == pytest.approx(exact, rel=1e-13)  # float64 accumulation for both dtypes
    y = x.copy()
    kernel("scale", backend)(y, 0.3)
    np.testing.assert_array_equal(y, x * dtype(0.3))
    y = x.copy()
    kernel("clip_value", backend)(y, 1.5)
    np.testing.assert_array_equal(y, np.clip(x, dtype(-1.5), dtype(1.5)))


def test_sum_squares_float32_accuracy(backend, on_threads):
    # 1e6 float32 values of 0.1: a float32 running sum would be off by about 1e-3.  In
    # float64 each of the Cython kernel's 8 accumulators adds at most 8,192 equal terms
    # in each of its 16 chunks of 65,536 values (the last one shorter: the odd count)
    on_threads(2)
    x = np.full(1_000_003, 0.1, np.float32)
    exact = 1_000_003 * float(np.float32(0.1)) ** 2
    assert kernel("sum_squares", backend)(x) == pytest.approx(exact, rel=1e-10)
    assert kernel("sum_squares", backend)(np.zeros(0, np.float32)) == 0.0


@pytest.mark.parametrize("n", [70_000, 535_818, 3_000_001])
def test_sum_squares_is_the_same_on_any_thread_count(backend, n, on_threads):
    # ranks of a distributed fit may run different thread counts: their gradient norms
    # (clip_norm, the History's grad_norm) must agree bit for bit.  One partial sum a
    # thread made the norms differ, and clipped parameters parted between ranks
    x = rng(n).standard_normal(n).astype(np.float32)
    got = {}
    for threads in (1, 2):
        on_threads(threads)
        got[threads] = kernel("sum_squares", backend)(x)
        box = []
        t = threading.Thread(target=lambda: box.append(kernel("sum_squares", backend)(x)))
        t.start()
        t.join()
        got[threads, "thread"] = box[0]
    assert len(set(got.values())) == 1, got


def test_clipping_kernels_nan(backend):
    x = np.array([np.nan, 5.0, -5.0, 0.5])
    kernel("clip_value", backend)(x, 1.0)
    np.testing.assert_array_equal(x, [np.nan, 1.0, -1.0, 0.5])
    assert math.isnan(kernel("sum_squares", backend)(x))


# ---- contract ----

def test_registry_lists_the_optim_ops():
    assert {op.name for op in ops("optim")} == {"sgd_update", "adam_update", "sum_squares",
                                                "scale", "clip_value"}


def test_contract(backend, dtype):
    r = rng(2)
    w = r.standard_normal((6, 5)).astype(dtype)
    g = r.standard_normal((6, 5)).astype(dtype)
    g.setflags(write=False)  # a read-only gradient is fine: it is only read
    w_flat, g_flat = w.reshape(-1).copy(), g.reshape(-1).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    m_flat, v_flat = np.zeros(30, dtype), np.zeros(30, dtype)
    out = F.adam_update_(w, g, m, v, 1, lr=0.1, weight_decay=0.1, backend=backend)
    assert out is w and w.dtype == dtype and w.shape == (6, 5)
    F.adam_update_(w_flat, g_flat, m_flat, v_flat, 1, lr=0.1, weight_decay=0.1, backend=backend)
    np.testing.assert_array_equal(w.reshape(-1), w_flat)  # the shape does not matter
    np.testing.assert_array_equal(m.reshape(-1), m_flat)
    np.testing.assert_array_equal(g.reshape(-1), g_flat)  # grad untouched
    # strided and Fortran-order gradients are accepted (copied)
    for gl in (np.asfortranarray(g), np.repeat(g, 2, axis=1)[:, ::2]):
        w1, w2 = w.copy(), w.copy()
        vel1, vel2 = np.zeros_like(w), np.zeros_like(w)
        F.sgd_update_(w1, np.ascontiguousarray(gl), 0.1, 0.9, vel1, backend=backend)
        assert F.sgd_update_(w2, gl, 0.1, 0.9, vel2, backend=backend) is w2
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(vel1, vel2)
    # empty arrays
    e = np.zeros(0, dtype)
    F.sgd_update_(e, e.copy(), 0.1, backend=backend)
    F.adam_update_(e, e.copy(), e.copy(), e.copy(), 1, backend=backend)


def test_velocity_without_momentum_is_updated(backend):
    # an explicit velocity follows the formula even when momentum = 0: v = lr g
    w, g, vel = np.ones(3), np.array([1.0, 2.0, 3.0]), np.full(3, 7.0)
    F.sgd_update_(w, g, 0.5, 0.0, vel, backend=backend)
    np.testing.assert_allclose(vel, [0.5, 1.0, 1.5])
    np.testing.assert_allclose(w, [0.5, 0.0, -0.5])


def test_nan_and_inf_propagate_elementwise(backend, dtype):
    w = np.array([1.0, np.inf, 2.0, 3.0], dtype)
    g = np.array([np.nan, 1.0, 1.0, 1.0], dtype)
    F.sgd_update_(w, g, 0.5, backend=backend)
    assert math.isnan(w[0]) and w[1] == np.inf  # no 0 * inf from an unused penalty
    np.testing.assert_array_equal(w[2:], [1.5, 2.5])
    w = np.array([1.0, 1.0], dtype)
    m, v = np.zeros(2, dtype), np.zeros(2, dtype)
    F.adam_update_(w, np.array([np.nan, 1.0], dtype), m, v, 1, lr=0.1, backend=backend)
    assert math.isnan(w[0]) and math.isnan(m[0]) and math.isnan(v[0])
    assert w[1] == pytest.approx(0.9, rel=1e-6)
    # grad_clip leaves NaN as NaN (as torch.clamp)
    w = np.ones(2, dtype)
    F.sgd_update_(w, np.array([np.nan, 9.0], dtype), 0.1, grad_clip=1.0, backend=backend)
    assert math.isnan(w[0]) and w[1] == pytest.approx(0.9)


@pytest.mark.parametrize("n", [5, 100_003])  # serial and parallel paths
def test_moments_below_the_smallest_normal_are_stored_as_zero(backend, dtype, n):
    # with a zero gradient the moments decay geometrically: 1.05 tiny becomes 0.945 tiny
    # (Adam's m, beta1 0.9; the velocity, momentum 0.9) and 1.0005 tiny 0.9995 tiny
    # (v, beta2 0.999), subnormal, stored as 0; 2 tiny stays normal; NaN stays
    tiny = np.finfo(dtype).tiny
    start = np.tile(np.array([1.05 * tiny, -1.05 * tiny, 2 * tiny, np.nan, 1.0], dtype), n // 5)
    kept = np.isin(np.arange(start.size) % 5, [2, 4])
    w, g = np.ones_like(start), np.zeros_like(start)
    m, v = start.copy(), np.abs(start)
    v[~kept & ~np.isnan(start)] = dtype(1.0005 * tiny)
    F.adam_update_(w, g, m, v, 1, lr=1e-3, backend=backend)
    vel = start.copy()
    F.sgd_update_(np.ones_like(start), g, 0.1, momentum=0.9, velocity=vel, backend=backend)
    for got, decay in ((m, 0.9), (v, 0.999), (vel, 0.9)):
        flushed = ~kept & ~np.isnan(start)
        assert np.all(got[flushed] == 0), got[:5]
        np.testing.assert_allclose(got[kept], decay * np.abs(start[kept]), rtol=1e-6)
        assert np.all(np.isnan(got[np.isnan(start)]))
    assert not np.any(np.isnan(w[kept]))


def test_subnormal_arithmetic_is_left_on_after_an_update(backend):
    # the Cython Adam and momentum updates flush subnormals in each thread's FP control
    # word during the update; afterwards, on the calling thread and on the OpenMP
    # threads that run the next parallel kernel (scale: above PARALLEL_THRESHOLD), they
    # are computed again.  Compared as bits: with denormals-are-zero left on, a float
    # comparison would read the subnormal as 0 too
    n = 100_003
    tiny = np.finfo(np.float32).tiny
    half = (np.float32(tiny) * np.float32(0.5)).view(np.uint32)
    assert half == 1 << 22  # 2**-127: the subnormal with the top mantissa bit
    for update in ("adam", "momentum"):
        w, m, v = (np.ones(n, np.float32), np.full(n, 1.05 * tiny, np.float32),
                   np.ones(n, np.float32))
        if update == "adam":
            F.adam_update_(w, np.zeros(n, np.float32), m, v, 1, lr=1e-3, backend=backend)
        else:
            F.sgd_update_(w, np.zeros(n, np.float32), 0.1, momentum=0.9, velocity=m,
                          backend=backend)
        assert (np.float32(tiny) * np.float32(0.5)).view(np.uint32) == half, update
        x = np.full(n, tiny, np.float32)
        kernel("scale", "cython" if "cython" in COMPILED else backend)(x, 0.5)
        assert np.all(x.view(np.uint32) == half), update


@pytest.mark.parametrize("n", [2, 100_002])  # serial and parallel paths
def test_subnormal_params_and_gradients_are_read_as_their_values(backend, dtype, n):
    # the Cython Adam flushes subnormal results to zero during the update, but must read
    # subnormal operands as they are: a subnormal weight keeps its L1 step (sign(w)), a
    # subnormal gradient scaled up by grad_scale its update
    sub = dtype(np.finfo(dtype).tiny / 1024)
    w, g = np.tile(np.array([sub, -sub], dtype), n // 2), np.zeros(n, dtype)
    results = []
    for be in (backend, "numpy"):
        ws, m, v = w.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
        F.adam_update_(ws, g, m, v, 1, lr=1e-3, l1=0.01, backend=be)
        ones, m2, v2 = np.ones(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)
        F.adam_update_(ones, w, m2, v2, 1, lr=1e-3, grad_scale=float(np.finfo(dtype).max / 4),
                       backend=be)
        # the momentum update flushes as Adam does: the same two reads
        wm, vel = w.copy(), np.zeros(n, dtype)
        F.sgd_update_(wm, g, 1e-3, momentum=0.9, velocity=vel, l1=0.01, backend=be)
        ones2, vel2 = np.ones(n, dtype), np.zeros(n, dtype)
        F.sgd_update_(ones2, w, 1e-3, momentum=0.9, velocity=vel2,
                      grad_scale=float(np.finfo(dtype).max / 4), backend=be)
        results.append((ws, m, v, ones, m2, v2, wm, vel, ones2, vel2))
    for got, want in zip(*results):
        assert_close(got, want, dtype, scale=5)
    assert np.all(results[0][0][::2] < -1e-4) and np.all(results[0][3][::2] < 1 - 1e-4)
    assert np.all(results[0][6][::2] < -1e-6) and np.all(results[0][8][::2] < 1 - 5e-7)


# ---- bad input: a clear error, every array unchanged ----

def _arrays(dtype=np.float32, n=5):
    r = rng(9)
    return dict(param=r.standard_normal(n).astype(dtype), grad=r.standard_normal(n).astype(dtype),
                m=r.standard_normal(n).astype(dtype) ** 2, v=r.random(n).astype(dtype),
                velocity=r.standard_normal(n).astype(dtype))


def _bad_cases():
    f32, f64 = np.float32, np.float64
    A = _arrays
    sgd, adam = "sgd", "adam"
    return [
        # (kernel, overrides, exception, text the message must contain)
        (sgd, dict(param=[1.0, 2.0]), TypeError, "param"),
        (sgd, dict(param=np.arange(5)), TypeError, "param"),
        (sgd, dict(grad=A(f64)["grad"]), TypeError, "grad"),
        (sgd, dict(grad=np.zeros(4, f32)), ValueError, "grad"),
        (sgd, dict(grad=np.zeros(5, np.int32)), TypeError, "grad"),
        (sgd, dict(grad="abc"), TypeError, "grad"),
        (sgd, dict(velocity=np.zeros(5, f64)), TypeError, "velocity"),
        (sgd, dict(velocity=np.zeros(6, f32)), ValueError, "velocity"),
        (sgd, dict(velocity=None), ValueError, "velocity"),
        (sgd, dict(lr=-0.1), ValueError, "lr"),
        (sgd, dict(lr=math.nan), ValueError, "lr"),
        (sgd, dict(lr=math.inf), ValueError, "lr"),
        (sgd, dict(lr="0.1"), TypeError, "lr"),
        (sgd, dict(lr=None), TypeError, "lr"),
        (sgd, dict(momentum=1.0), ValueError, "momentum"),
        (sgd, dict(momentum=-0.1), ValueError, "momentum"),
        (sgd, dict(nesterov="yes"), TypeError, "nesterov"),
        (sgd, dict(l1=-1e-3), ValueError, "l1"),
        (sgd, dict(l2=-1e-3), ValueError, "l2"),
        (sgd, dict(l2=True), TypeError, "l2"),
        (sgd, dict(grad_clip=-1.0), ValueError, "grad_clip"),
        (sgd, dict(grad_scale=math.nan), ValueError, "grad_scale"),
        (adam, dict(m=np.zeros(5, f64)), TypeError, "m"),
        (adam, dict(v=np.zeros((5, 1), f32)), ValueError, "v"),
        (adam, dict(m=None), TypeError, "m"),
        (adam, dict(step=0), ValueError, "step"),
        (adam, dict(step=1.0), TypeError, "step"),
        (adam, dict(step=True), TypeError, "step"),
        (adam, dict(lr=-1.0), ValueError, "lr"),
        (adam, dict(beta1=1.0), ValueError, "beta1"),
        (adam, dict(beta1=-0.5), ValueError, "beta1"),
        (adam, dict(beta2=1.5), ValueError, "beta2"),
        (adam, dict(eps=0.0), ValueError, "eps"),
        (adam, dict(eps=math.inf), ValueError, "eps"),
        (adam, dict(weight_decay=-0.01), ValueError, "weight_decay"),
        (adam, dict(l1=-1.0), ValueError, "l1"),
        (adam, dict(l2=math.nan), ValueError, "l2"),
    ]


def _call(which, a, backend):
    if which == "sgd":
        return F.sgd_update_(a["param"], a["grad"], a.get("lr", 0.1), a.get("momentum", 0.9),
                             a["velocity"], a.get("nesterov", False), a.get("l1", 0.0),
                             a.get("l2", 0.0), grad_scale=a.get("grad_scale", 1.0),
                             grad_clip=a.get("grad_clip"), backend=backend)
    return F.adam_update_(a["param"], a["grad"], a["m"], a["v"], a.get("step", 3),
                          a.get("lr", 0.1), a.get("beta1", 0.9), a.get("beta2", 0.999),
                          a.get("eps", 1e-8), a.get("weight_decay", 0.0), a.get("l1", 0.0),
                          a.get("l2", 0.0), backend=backend)


@pytest.mark.parametrize("which, bad, exc, match", _bad_cases(),
                         ids=lambda x: x if isinstance(x, str) else None)
def test_bad_input_leaves_arrays_unchanged(backend, which, bad, exc, match):
    a = _arrays()
    a.update(bad)
    before = {k: v.copy() for k, v in a.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc, match=match):
        _call(which, a, backend)
    for k, v in before.items():
        np.testing.assert_array_equal(a[k], v, err_msg=k)


@pytest.mark.parametrize("which", ["sgd", "adam"])
def test_param_must_be_updatable_in_place(backend, which):
    # a strided or Fortran-order param cannot be updated in place through a copy
    r = rng(10)
    shape = (3, 4)
    a = {k: r.random(shape).astype(np.float32) for k in ("grad", "m", "v", "velocity")}
    fortran = np.asfortranarray(r.random(shape).astype(np.float32))
    strided = np.zeros((3, 8), np.float32)[:, ::2]
    strided[...] = r.random(shape)
    ro = r.random(shape).astype(np.float32)
    ro.setflags(write=False)
    for param, match in [(fortran, "C-contiguous"), (strided, "C-contiguous"),
                         (ro, "read-only")]:
        before = param.copy()
        state = {k: v.copy() for k, v in a.items()}
        with pytest.raises(ValueError, match=match):
            _call(which, dict(state, param=param), backend)
        np.testing.assert_array_equal(param, before)
        for k in a:
            np.testing.assert_array_equal(state[k], a[k], err_msg=k)
    # the state arrays are updated in place too: a strided one is refused
    key = "velocity" if which == "sgd" else "m"
    param = r.random(shape).astype(np.float32)
    with pytest.raises(ValueError, match=key):
        _call(which, dict(a, param=param, **{key: strided}), backend)


def test_overlapping_arrays_refused(backend):
    a = _arrays()
    w = a["param"]
    before = w.copy()
    with pytest.raises(ValueError, match="velocity"):
        F.sgd_update_(w, a["grad"], 0.1, 0.9, w, backend=backend)
    with pytest.raises(ValueError, match="grad"):
        F.sgd_update_(w, w, 0.1, backend=backend)
    with pytest.raises(ValueError, match="v"):
        F.adam_update_(w, a["grad"], a["m"], a["m"], 1, backend=backend)
    np.testing.assert_array_equal(w, before)


def test_bad_backend_leaves_arrays_unchanged():
    a = _arrays()
    before = a["param"].copy()
    with pytest.raises(ValueError, match="backend"):
        F.sgd_update_(a["param"], a["grad"], 0.1, backend="fortran")
    np.testing.assert_array_equal(a["param"], before)


# ---- properties ----

@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), be=st.sampled_from(COMPILED), dt=st.sampled_from(DTYPES),
       step=st.integers(1, 10_000), lr=st.floats(0, 1), beta1=st.floats(0, 0.99),
       beta2=st.floats(0, 0.9999), wd=st.floats(0, 1), l1=st.floats(0, 0.1),
       l2=st.floats(0, 0.1), clip=st.one_of(st.none(), st.floats(0, 2)),
       seed=st.integers(0, 2**31))
def test_property_adam_one_step(n, be, dt, step, lr, beta1, beta2, wd, l1, l2, clip, seed):
    r = rng(seed)
    w, g = r.standard_normal(n).astype(dt), r.standard_normal(n).astype(dt)
    m, v = r.standard_normal(n).astype(dt), r.random(n).astype(dt)
    got = [w.copy(), m.copy(), v.copy()]
    ref = [w.copy(), m.copy(), v.copy()]
    kw = dict(lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd, l1=l1, l2=l2, grad_clip=clip)
    F.adam_update_(got[0], g, got[1], got[2], step, backend=be, **kw)
    F.adam_update_(ref[0], g, ref[1], ref[2], step, backend="numpy", **kw)
    for a, e in zip(got, ref):
        assert_close(a, e, dt, scale=5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), be=st.sampled_from(COMPILED), dt=st.sampled_from(DTYPES),
       lr=st.floats(0, 1), momentum=st.floats(0, 0.99), nesterov=st.booleans(),
       l1=st.floats(0, 0.1), l2=st.floats(0, 0.1), scale=st.floats(0, 1),
       seed=st.integers(0, 2**31))
def test_property_sgd_one_step(n, be, dt, lr, momentum, nesterov, l1, l2, scale, seed):
    r = rng(seed)
    w, g, vel = (r.standard_normal(n).astype(dt) for _ in range(3))
    got, ref = [w.copy(), vel.copy()], [w.copy(), vel.copy()]
    kw = dict(momentum=momentum, nesterov=nesterov, l1=l1, l2=l2, grad_scale=scale)
    F.sgd_update_(got[0], g, lr, velocity=got[1], backend=be, **kw)
    F.sgd_update_(ref[0], g, lr, velocity=ref[1], backend="numpy", **kw)
    for a, e in zip(got, ref):
        assert_close(a, e, dt, scale=5)


# ---- optional: against PyTorch ----

@pytest.mark.parametrize("which", ["adamw", "sgd-nesterov"])
def test_against_torch(backend, dtype, which):
    torch = pytest.importorskip("torch")
    r = rng(11)
    n = 1000
    w0 = r.standard_normal(n).astype(dtype)
    grads = [r.standard_normal(n).astype(dtype) for _ in range(20)]
    tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    if which == "adamw":
        opt = torch.optim.AdamW([tp], lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    else:
        # torch's buffer is ours divided by lr: the same trajectory at a constant lr
        opt = torch.optim.SGD([tp], lr=1e-2, momentum=0.9, nesterov=True)
    w = w0.copy()
    s1, s2 = np.zeros(n, dtype), np.zeros(n, dtype)
    for t, g in enumerate(grads, start=1):
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        if which == "adamw":
            F.adam_update_(w, g, s1, s2, t, lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8,
                           weight_decay=0.1, backend=backend)
        else:
            F.sgd_update_(w, g, 1e-2, momentum=0.9, velocity=s1, nesterov=True,
                          backend=backend)
    assert_close(w, tp.detach().numpy(), dtype, scale=10)
