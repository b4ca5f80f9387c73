"""Shared test helpers: backends, dtypes, tolerances, layouts, finite differences.

Every backend is always tested: a missing backend makes its tests fail (through
``fastdl._config.check_backend``) rather than skip, and ``test_config.py`` says
which one is missing."""
import time

import numpy as np
import pytest

BACKENDS = ("numpy", "numba", "cython")
COMPILED = ("numba", "cython")
DTYPES = (np.float32, np.float64)

# float32: about 1e-5 relative; float64: about 1e-10 relative.
TOL = {np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6),
       np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}


def tol(dtype, scale=1.0):
    t = TOL[np.dtype(dtype)]
    return dict(rtol=t["rtol"] * scale, atol=t["atol"] * scale)


def assert_close(actual, expected, dtype=None, scale=1.0, err_msg=""):
    """Compare with the dtype's tolerance; the result must keep the expected dtype."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dtype = np.dtype(dtype or expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, err_msg=err_msg, **tol(dtype, scale))


def layouts(x):
    """The same values as C-contiguous, Fortran-order and strided (non-contiguous) arrays."""
    x = np.ascontiguousarray(x)
    out = {"C": x, "F": np.asfortranarray(x)}
    big = np.zeros((x.shape[0] * 2,) + x.shape[1:], dtype=x.dtype) if x.ndim else None
    if big is not None:
        big[::2] = x
        out["strided"] = big[::2]
    return out


def five_point(f, x, h=1e-4):
    """d f(x) / dx by the five-point stencil, for a scalar function f of a float64 array."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        v = flat[i]
        vals = []
        for s in (2, 1, -1, -2):
            flat[i] = v + s * h
            vals.append(f(x))
        flat[i] = v
        gflat[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=COMPILED)
def compiled(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


_spin_waited = []


@pytest.fixture
def on_threads():
    """A function that sets fastdl's count (not adapting to the load), with no
    OpenBLAS spin window to run a call on one thread; the state put back afterwards."""
    from fastdl import _threads as T

    saved, omp = dict(T._state), T._omp()

    def use(n):
        T.set_num_threads(n)
        if omp is not None:
            omp.set_blas_spin(0.0)
    use(1)
    if not _spin_waited:  # past any spin window a call before these tests opened
        time.sleep(T.blas_spin_seconds())
        _spin_waited.append(True)
    yield use
    T._state.clear()
    T._state.update(saved)
    T._reset(saved["adaptive"])
    if omp is not None:
        omp.set_blas_spin(T.blas_spin_seconds())
