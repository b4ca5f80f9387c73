"""Arrays not aligned to their item size, in every public kernel and every backend.

NumPy arrays may start at any byte (``np.frombuffer(buf, offset=1)``, a view of a byte
buffer); ``np.ascontiguousarray`` keeps them so.  A misaligned ``out=`` of 16 MiB or
more killed the process (exit 139) in the Numba relu/leaky_relu and all seven Cython
activations, forward and backward: their streaming stores assumed item alignment.
Now the public layer gives the kernels only aligned arrays (inputs copied, ``out=``
through an aligned temporary) and the streaming drivers check the pointer themselves,
so that a direct caller of a kernel cannot crash them either.
"""
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastdl.functional as F
from fastdl import _validate as V
from fastdl import augment, metrics
from fastdl._config import PARALLEL_THRESHOLD
from fastdl._registry import kernel
from conftest import BACKENDS, DTYPES, rng

ACTS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "silu")


def misaligned(a):
    """A copy of ``a`` (C order) that starts one byte past an aligned address."""
    a = np.asarray(a)
    buf = np.empty(a.nbytes + a.itemsize + 1, np.uint8)
    start = (-buf.ctypes.data) % a.itemsize + 1  # aligned + 1: misaligned for itemsize > 1
    m = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert a.itemsize == 1 or a.size == 0 or not m.flags.aligned
    return m


def test_misaligned_helper_is_misaligned():
    for dt in (np.float32, np.float64, np.int64):
        m = misaligned(np.arange(10, dtype=dt))
        assert not m.flags.aligned and m.flags.c_contiguous and m.ctypes.data % 4
        np.testing.assert_array_equal(m, np.arange(10, dtype=dt))
        # ascontiguousarray does not mend it: the check has to be the aligned flag
        assert np.ascontiguousarray(m) is m


# ---- the public layer: same result as with aligned arrays, at every threshold ----------

_SIZES = [1, 7, PARALLEL_THRESHOLD - 1, PARALLEL_THRESHOLD + 37]


def _act_args(name, r, n, dtype, backward):
    x = r.standard_normal(n).astype(dtype)
    args = [r.standard_normal(n).astype(dtype), x] if backward else [x]
    return args + ([0.3] if name in ("leaky_relu", "elu") else [])


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("n", _SIZES)
def test_activations_misaligned_inputs_and_out(backend, dtype, name, n, backward):
    fn = getattr(F, name + "_backward" if backward else name)
    args = _act_args(name, rng(n), n, dtype, backward)
    expected = fn(*args, backend=backend)
    arrays = [misaligned(a) if isinstance(a, np.ndarray) else a for a in args]
    out = misaligned(np.zeros(n, dtype))
    got = fn(*arrays, out=out, backend=backend)
    assert got is out and not out.flags.aligned
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(fn(*arrays, backend=backend), expected)


def _f(r, *shape, dtype=np.float32):
    return r.standard_normal(shape).astype(dtype)


# name -> (inputs from a generator and a dtype, keyword arguments, out shape or None)
CASES = {
    "dense_forward": (lambda r, d: [_f(r, 70, 9, dtype=d), _f(r, 9, 5, dtype=d),
                                    _f(r, 5, dtype=d)], {"activation": "gelu"}, (70, 5)),
    "softmax": (lambda r, d: [_f(r, 33, 17, dtype=d)], {}, (33, 17)),
    "log_softmax_backward": (lambda r, d: [_f(r, 33, 17, dtype=d), -np.abs(_f(r, 33, 17,
                                                                             dtype=d))],
                             {"axis": 0}, (33, 17)),
    "maxout_backward": (lambda r, d: [_f(r, 20, 6, dtype=d), r.integers(0, 3, (20, 6)), 3],
                        {}, (20, 18)),
    "dropout_backward": (lambda r, d: [_f(r, 301, dtype=d), r.random(301) < 0.5, 0.25], {},
                         (301,)),
    "mse_backward": (lambda r, d: [_f(r, 50, dtype=d), _f(r, 50, dtype=d)], {}, (50,)),
    "binary_cross_entropy_with_logits": (lambda r, d: [_f(r, 50, dtype=d), r.random(50).astype(d)],
                                         {"reduction": "none"}, (50,)),
    "kl_divergence": (lambda r, d: [r.random((9, 4)).astype(d), r.random((9, 4)).astype(d)],
                      {"reduction": "none"}, (9,)),
    "cross_entropy": (lambda r, d: [r.random((9, 4)).astype(d), r.integers(0, 4, 9)],
                      {"reduction": "sum"}, ()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_misaligned_inputs_and_out_match_the_aligned_call(name, backend, dtype):
    make, kw, shape = CASES[name]
    args = make(rng(1), dtype)
    fn = getattr(F, name)
    expected = fn(*args, backend=backend, **kw)
    arrays = [misaligned(a) if isinstance(a, np.ndarray) else a for a in args]
    np.testing.assert_array_equal(fn(*arrays, backend=backend, **kw), expected)
    out = misaligned(np.zeros(shape, dtype))
    assert fn(*arrays, out=out, backend=backend, **kw) is out
    np.testing.assert_array_equal(out, expected)


def test_dense_backward_and_softmax_cross_entropy_misaligned_outs(backend, dtype):
    r = rng(2)
    dy, x, W = _f(r, 40, 6, dtype=dtype), _f(r, 40, 9, dtype=dtype), _f(r, 9, 6, dtype=dtype)
    expected = F.dense_backward(dy, x, W, backend=backend)
    outs = (misaligned(np.zeros((40, 9), dtype)), misaligned(np.zeros((9, 6), dtype)),
            misaligned(np.zeros(6, dtype)))
    got = F.dense_backward(misaligned(dy), misaligned(x), misaligned(W), out=outs,
                           backend=backend)
    for g, o, e in zip(got, outs, expected):
        assert g is o
        np.testing.assert_array_equal(o, e)
    # need_dx=False: dx's buffer is neither written nor returned
    dx = misaligned(np.full((40, 9), 7, dtype))
    got = F.dense_backward(dy, x, W, False, out=(dx, outs[1], outs[2]), backend=backend)
    assert got[0] is None and (dx == 7).all()

    logits, labels = _f(r, 30, 5, dtype=dtype), r.integers(0, 5, 30)
    loss, dlogits = F.softmax_cross_entropy(logits, labels, reduction="none", backend=backend)
    outs = (misaligned(np.zeros(30, dtype)), misaligned(np.zeros((30, 5), dtype)))
    got = F.softmax_cross_entropy(misaligned(logits), misaligned(labels), reduction="none",
                                  out=outs, backend=backend)
    assert got[0] is outs[0] and got[1] is outs[1]
    np.testing.assert_array_equal(outs[0], loss)
    np.testing.assert_array_equal(outs[1], dlogits)


def test_misaligned_results_that_share_memory_are_refused(backend):
    # a temporary standing in for a misaligned result overlaps nothing, so the results'
    # overlap check passed and its copy-back overwrote a sibling result (dW, dlogits,
    # argmax wrong, silently)
    r = rng(3)
    buf = np.zeros(4 * 64 + 3, np.uint8)
    at = lambda off, shape, dt=np.float32: buf[off:off + 4 * math.prod(shape)].view(
        dt).reshape(shape)
    off = (-buf.ctypes.data) % 4  # an aligned start, then one 2 bytes into it
    dy, x, W = _f(r, 5, 3), _f(r, 5, 4), _f(r, 4, 3)
    with pytest.raises(ValueError, match=r"out\[1\] and out\[2\]"):
        F.dense_backward(dy, x, W, out=(None, at(off, (4, 3)), at(off + 2, (3,))),
                         backend=backend)
    with pytest.raises(ValueError, match=r"out\[0\] and out\[1\]"):
        F.softmax_cross_entropy(_f(r, 6, 4), r.integers(0, 4, 6), reduction="none",
                                out=(at(off + 2, (6,)), at(off, (6, 4))), backend=backend)
    with pytest.raises(ValueError, match=r"out\[0\] and out\[1\]"):
        F.max_pool2d(_f(r, 1, 1, 4, 4), 2, out=(at(off + 2, (1, 1, 2, 2)),
                                               at(off, (1, 1, 2, 2), np.int32)),
                     backend=backend)


def test_optimizers_update_misaligned_arrays_in_place(backend, dtype):
    r = rng(3)
    w, g = _f(r, 1001, dtype=dtype), _f(r, 1001, dtype=dtype)
    m, v = np.zeros(1001, dtype), np.zeros(1001, dtype)
    ws, ms, vs = misaligned(w), misaligned(m), misaligned(v)
    F.adam_update_(w, g, m, v, 2, weight_decay=0.01, backend=backend)
    assert F.adam_update_(ws, misaligned(g), ms, vs, 2, weight_decay=0.01,
                          backend=backend) is ws
    for a, b in ((ws, w), (ms, m), (vs, v)):
        np.testing.assert_array_equal(a, b)
    vel = np.zeros(1001, dtype)
    vels = misaligned(vel)
    F.sgd_update_(w, g, 0.1, 0.9, vel, True, backend=backend)
    F.sgd_update_(ws, misaligned(g), 0.1, 0.9, vels, True, backend=backend)
    np.testing.assert_array_equal(ws, w)
    np.testing.assert_array_equal(vels, vel)


def test_augment_and_metrics_misaligned(backend):
    r = rng(4)
    images = r.random((5, 6, 7)).astype(np.float32)
    for fn, kw in ((augment.random_flip, {}), (augment.random_shift, {"max_shift": 2}),
                   (augment.random_crop, {"padding": 2}),
                   (augment.gaussian_noise, {"std": 0.1})):
        expected = fn(images, rng=7, backend=backend, **kw)
        out = misaligned(np.zeros_like(images))
        # gaussian_noise refused a misaligned out with NumPy's unnamed message
        assert fn(misaligned(images), rng=7, out=out, backend=backend, **kw) is out
        np.testing.assert_array_equal(out, expected)
    yt, yp = r.integers(0, 4, 500), r.integers(0, 4, 500)
    out = misaligned(np.zeros((4, 4), np.int64))
    assert metrics.confusion_matrix(misaligned(yt), misaligned(yp), 4, out=out,
                                    backend=backend) is out
    np.testing.assert_array_equal(out, metrics.confusion_matrix(yt, yp, 4, backend=backend))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(ACTS), backward=st.booleans(), n=st.integers(0, 300),
       backend=st.sampled_from(BACKENDS), dtype=st.sampled_from(DTYPES),
       which=st.sets(st.sampled_from(["in", "out"])), seed=st.integers(0, 2 ** 16))
def test_activations_any_alignment_hypothesis(name, backward, n, backend, dtype, which, seed):
    fn = getattr(F, name + "_backward" if backward else name)
    args = _act_args(name, rng(seed), n, dtype, backward)
    expected = fn(*args, backend="numpy")
    if "in" in which:
        args = [misaligned(a) if isinstance(a, np.ndarray) else a for a in args]
    out = misaligned(np.zeros(n, dtype)) if "out" in which else np.zeros(n, dtype)
    assert fn(*args, out=out, backend=backend) is out
    np.testing.assert_allclose(out, expected, rtol=2e-5 if dtype == np.float32 else 1e-10,
                               atol=1e-6)


# ---- the checks themselves -----------------------------------------------------------

def test_as_float_copies_a_misaligned_array():
    m = misaligned(np.arange(6.0).reshape(2, 3))
    a = V.as_float("x", m, ndim=2)
    assert a.flags.aligned and a is not m
    np.testing.assert_array_equal(a, m)
    assert V.aligned(None) is None
    ok = np.arange(3.0)
    assert V.aligned(ok) is ok


def test_make_out_refuses_a_misaligned_out():
    out = misaligned(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="out: expected an array aligned"):
        V.make_out(out, (2, 3), np.dtype(np.float64))


def test_aligned_out_keeps_the_other_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        F.relu(x, out=misaligned(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="out: expected shape"):
        F.relu(x, out=misaligned(np.zeros((3, 2), np.float32)))
    ro = misaligned(np.zeros((2, 3), np.float32))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        F.relu(x, out=ro)
    out = misaligned(np.full((2, 3), 5, np.float32))
    with pytest.raises(ValueError, match="alpha"):
        F.elu(x, -1.0, out=out)
    assert (out == 5).all()  # a refused call leaves out untouched


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
@pytest.mark.parametrize("kind", ["matrix", "masked", "memmap"])
def test_out_of_an_ndarray_subclass(kind, backend, tmp_path):
    # np.matrix reshaped to 2-D (Cython: wrong buffer rank, Numba: a typing error) and a
    # masked array is no Numba type: the kernels now write a base-class view of its memory
    x = rng(5).standard_normal((4, 6)).astype(np.float32)
    if kind == "matrix":
        out = np.matrix(np.zeros((4, 6), np.float32))
    elif kind == "masked":
        out = np.ma.zeros((4, 6), np.float32)
    else:
        out = np.memmap(tmp_path / "out.bin", np.float32, "w+", shape=(4, 6))
    for fn, args in ((F.relu, (x,)), (F.softmax, (x,)), (F.sigmoid_backward, (x, x))):
        assert fn(*args, out=out, backend=backend) is out
        np.testing.assert_array_equal(np.asarray(out), fn(*args, backend=backend))
    w = np.matrix(x.copy())
    F.sgd_update_(w, x, 0.5, backend=backend)
    np.testing.assert_allclose(np.asarray(w), x * 0.5, rtol=1e-6)
    mask = np.matrix((x > 0).astype(np.int32))
    np.testing.assert_array_equal(F.dropout_backward(x, mask, 0.5, backend=backend),
                                  F.dropout_backward(x, x > 0, 0.5, backend=backend))


def test_cython_kernels_called_directly_with_misaligned_arrays(dtype):
    # what the nn layers do (no public layer): every Cython kernel on misaligned arrays
    # gives the aligned result (no crash, no wrong value) below the streaming size
    n = PARALLEL_THRESHOLD + 5
    r = rng(6)
    x, dy = r.standard_normal(n).astype(dtype), r.standard_normal(n).astype(dtype)
    for name in ACTS:
        extra = (0.2,) if name in ("leaky_relu", "elu") else ()
        for suffix, args in (("", (x,)), ("_backward", (dy, x))):
            k = kernel(name + suffix, "cython")
            ref = np.empty(n, dtype)
            k(*args, ref, *extra)
            out = misaligned(np.zeros(n, dtype))
            k(*[misaligned(a) for a in args], out, *extra)
            np.testing.assert_array_equal(out, ref)
    for name, extra in (("scale", (0.5,)), ("clip_value", (0.7,))):
        ref, m = x.copy(), misaligned(x)
        kernel(name, "cython")(ref, *extra)
        kernel(name, "cython")(m, *extra)
        np.testing.assert_array_equal(m, ref)
    assert kernel("sum_squares", "cython")(misaligned(x)) == \
        kernel("sum_squares", "cython")(x)


# ---- 16 MiB: the streaming stores (a crash on the old code, in a subprocess) ----------

_STREAM_PROBE = r"""
import sys
import numpy as np
import fastdl.functional as F
from fastdl._registry import kernel

def misaligned(n, dtype):
    return np.empty(n * np.dtype(dtype).itemsize + 1, np.uint8)[1:].view(dtype)

def same(a, b):  # the streamed and the plain loop may round the last bit differently
    return np.allclose(a, b, rtol=1e-6, atol=1e-7)

n = (1 << 24) // 4 + 77   # float32: 16 MiB and more, the streaming threshold
x = np.linspace(-3, 3, n, dtype=np.float32)
for backend in ("cython", "numba"):
    for name in sys.argv[1].split(","):
        extra = (0.2,) if name in ("leaky_relu", "elu") else ()
        f, fb = getattr(F, name), getattr(F, name + "_backward")
        # through the public layer ...
        out = misaligned(n, np.float32)
        f(x, *extra, out=out, backend=backend)
        assert same(out, f(x, *extra, backend=backend)), (backend, name)
        out = misaligned(n, np.float32)
        fb(x, x, *extra, out=out, backend=backend)
        assert same(out, fb(x, x, *extra, backend=backend)), (backend, name)
        # ... and straight to the kernel, as the nn layers call it
        if backend == "cython" or name in ("relu", "leaky_relu"):
            out = misaligned(n, np.float32)
            kernel(name, backend)(x, out, *extra)
            assert same(out, f(x, *extra, backend=backend)), (backend, name)
            out = misaligned(n, np.float32)
            kernel(name + "_backward", backend)(x, x, out, *extra)
            assert same(out, fb(x, x, *extra, backend=backend)), (backend, name)
# the Numba streaming driver itself, handed a misaligned out (its own guard)
from fastdl._kernels.numba import activations as NA
out = misaligned(n, np.float32)
NA._forward_chunks_stream(x, out, NA.ACT_RELU, np.float32(0))
assert same(out, np.maximum(x, 0))
print("ok")
"""


def test_big_misaligned_16mib_out_does_not_crash():
    # BIG: 16 MiB arrays in a subprocess, a few seconds (the crash needs the full size)
    # exit 139 (SIGSEGV) on the old code, in the first call
    r = subprocess.run([sys.executable, "-c", _STREAM_PROBE, ",".join(ACTS)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.split() == ["ok"]
