"""The boundary checks of fastdl._validate: the short path for the common case must
accept exactly what the full checks accept, and return the array itself."""
import math

import numpy as np
import pytest

import fastdl
import fastdl.functional as F
from fastdl import _validate as V


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_as_float_returns_a_ready_array_itself(dtype):
    x = np.ones((3, 4), dtype)
    assert V.as_float("x", x, ndim=2) is x
    assert V.as_float("x", x) is x
    assert V.as_float("x", x, ndim=(1, 2)) is x
    assert V.as_float("x", x, ndim=2, dtype=np.dtype(dtype)) is x


def test_as_float_copies_or_refuses_what_is_not_ready():
    x = np.arange(12.0).reshape(3, 4)
    f = np.asfortranarray(x)
    c = V.as_float("x", f, ndim=2)
    assert c is not f and c.flags.c_contiguous
    np.testing.assert_array_equal(c, x)
    s = x[:, ::2]
    np.testing.assert_array_equal(V.as_float("x", s, ndim=2), s)
    z = np.array(2.0)
    assert V.as_float("x", z) is not z and V.as_float("x", z).shape == ()
    with pytest.raises(ValueError, match="x: expected a 1-D array"):
        V.as_float("x", x, ndim=1)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        V.as_float("x", x, ndim=2, dtype=np.dtype(np.float32))
    with pytest.raises(TypeError, match="x: expected a float32 or float64"):
        V.as_float("x", x.astype(">f8"))
    with pytest.raises(TypeError, match="x: expected a float32 or float64"):
        V.as_float("x", x.astype(np.int32))
    with pytest.raises(TypeError, match="x: expected a float32 or float64"):
        F.relu(np.ones(3, ">f4"))


def test_make_out_returns_a_ready_buffer_itself():
    out = np.empty((2, 3), np.float32)
    assert V.make_out(out, (2, 3), np.dtype(np.float32)) is out
    with pytest.raises(ValueError, match="out: expected shape"):
        V.make_out(out, (3, 2), np.dtype(np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float64"):
        V.make_out(out, (2, 3), np.dtype(np.float64))
    with pytest.raises(ValueError, match="out: expected a C-contiguous"):
        V.make_out(np.empty((3, 2), np.float32).T, (2, 3), np.dtype(np.float32))
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out: array is read-only"):
        V.make_out(out, (2, 3), np.dtype(np.float32))
    with pytest.raises(ValueError, match="out: array is read-only"):
        F.relu(np.ones((2, 3), np.float32), out=out)


def test_check_real_short_path_agrees():
    assert V.check_real("a", 0.25) == 0.25
    assert V.check_real("a", -math.inf) == -math.inf  # unbounded: infinities are values
    assert type(V.check_real("a", np.float32(0.5))) is float
    with pytest.raises(ValueError, match="a: expected a number, got nan"):
        V.check_real("a", math.nan)
    with pytest.raises(TypeError, match="a: expected a real number, got bool"):
        V.check_real("a", True)
    with pytest.raises(ValueError, match="a: expected a value in"):
        V.check_real("a", 2.0, lo=0.0, hi=1.0)


@pytest.mark.parametrize("dtype", ["i1", "i4", "i8", "u1", "u8", ">i8", "<u4", ">u2"])
def test_as_labels_range_every_int_dtype(dtype):
    y = np.array([0, 2, 1], dtype)
    out = V.as_labels("y", y, 3, 3)
    assert out.dtype == np.int64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [0, 2, 1])
    with pytest.raises(ValueError, match=r"y: labels must be in \[0, 2\), got 2"):
        V.as_labels("y", y, 3, 2)
    if np.dtype(dtype).kind == "i":
        with pytest.raises(ValueError, match=r"y: labels must be in \[0, 3\), got -1"):
            V.as_labels("y", np.array([0, -1, 2], dtype), 3, 3)
    with pytest.raises(ValueError, match=r"y: labels must be in \[0, 0\), got 2"):
        V.as_labels("y", y, 3, 0)
    assert V.as_labels("y", y[:0], 0, 0).shape == (0,)


def test_as_labels_catches_what_a_byte_swap_would_hide():
    # 2^56 in big-endian bytes reads as 1 in little-endian: the range check must see 2^56
    y = np.array([0, 1 << 56], ">i8")
    with pytest.raises(ValueError, match=f"got {1 << 56}"):
        V.as_labels("y", y, 2, 3)
    with pytest.raises(ValueError, match=f"got {-(1 << 62)}"):
        V.as_labels("y", np.array([-(1 << 62), 1], np.int64)[::-1], 2, 3)  # strided view


class _Lying(np.ndarray):
    """An ndarray subclass whose reductions hide its data, as a masked array's skip
    the masked entries: a check must look at what the kernels will read."""
    def min(self, *args, **kwargs):
        return 0

    def max(self, *args, **kwargs):
        return 0


def _index_calls(bad, wrap):
    """(argument name, call) for every public function taking indices or labels."""
    am = wrap(np.full((1, 1, 2, 2), bad, np.int64))
    yield "argmax", lambda b: F.max_pool2d_backward(np.ones((1, 1, 2, 2)), am, (1, 1, 4, 4),
                                                    backend=b)
    am2 = wrap(np.full((2, 3), bad, np.int64))
    yield "argmax", lambda b: F.maxout_backward(np.ones((2, 3)), am2, 2, backend=b)
    y = wrap(np.array([bad, 1]))
    yield "target", lambda b: F.softmax_cross_entropy(np.zeros((2, 3)), y, backend=b)


@pytest.mark.parametrize("bad", [100, -1, 10**9])
def test_indices_are_checked_as_the_kernels_read_them(backend, bad):
    for name, call in _index_calls(bad, lambda a: a.view(_Lying)):
        with pytest.raises(ValueError, match=name):
            call(backend)
    for name, call in _index_calls(bad, lambda a: np.ma.array(a, mask=True)):
        with pytest.raises(TypeError, match=f"{name}: masked arrays"):
            call(backend)


def test_masked_inputs_are_refused_by_name():
    x = np.ma.array(np.ones((2, 3), np.float32), mask=False)
    with pytest.raises(TypeError, match="x: masked"):
        F.relu(x)
    with pytest.raises(TypeError, match="y_true: masked"):
        fastdl.metrics.accuracy(np.ma.array([0, 1]), [0, 1])
    m = fastdl.nn.Sequential(fastdl.nn.Dense(3, 2), seed=0)
    with pytest.raises(TypeError, match="X: masked"):
        m.predict(x)
    with pytest.raises(TypeError, match="y: masked"):
        m.fit(np.ones((2, 3), np.float32), np.ma.array([0, 1]), epochs=1, verbose=0)
    # other subclasses (np.matrix, np.memmap) are read through a base-class view
    np.testing.assert_array_equal(F.relu(np.eye(2).view(_Lying)), np.eye(2))


def test_ragged_lists_and_unknown_class_weights_are_named():
    # NumPy's "inhomogeneous shape" and class_weights' "method:" named nothing the
    # caller passed
    m = fastdl.nn.Sequential(fastdl.nn.Dense(5, 3), seed=0)
    with pytest.raises(ValueError, match="X: not an array"):
        m.predict([[1, 2, 3, 4, 5], [1, 2]])
    with pytest.raises(ValueError, match="x: not an array"):
        F.relu([[1.0, 2.0], [1.0]])
    with pytest.raises(ValueError, match="class_weight: expected one of"):
        m.fit(np.zeros((4, 5), np.float32), [0, 1, 2, 0], class_weight="bogus", verbose=0)
