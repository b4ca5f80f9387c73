"""The boundary checks of fastdl._validate: the short path for the common case must
accept exactly what the full checks accept, and return the array itself."""
import math

import numpy as np
import pytest

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
