"""The GEMM of the compiled kernels (fastdl/_blas.py, ``gemm``): NumPy's OpenBLAS where
NumPy has one, else SciPy's.  The other tests run the library chosen here; these run
the dense and convolution kernels on each library (NumPy's is a 64-bit-integer build:
a size passed 32 bits wide would be read with garbage in its upper half), on one and
two threads, split however small, over blocks of rows."""
import os

import numpy as np
import pytest

import fastdl.functional as F
from fastdl import _blas, _threads
from fastdl._kernels.cython import dense as cython_dense
from fastdl._kernels.numba import dense as numba_dense
from conftest import assert_close, rng

DENSE = {"cython": cython_dense, "numba": numba_dense}


def _numpy_blas_name():
    deps = np.show_config(mode="dicts").get("Build Dependencies", {})
    return (deps.get("blas") or {}).get("name", "")


@pytest.fixture(params=["numpy", "scipy"])
def library(request):
    if request.param == "numpy" and _blas.numpy_gemm() is None:
        pytest.skip(f"NumPy's BLAS ({_numpy_blas_name()}) is not an OpenBLAS fastdl can use")
    old = _blas.use_gemm(request.param)
    yield request.param
    _blas.use_gemm(old)


def test_numpys_openblas_is_chosen_where_numpy_has_one():
    if "openblas" not in _numpy_blas_name():
        pytest.skip(f"NumPy's BLAS is {_numpy_blas_name()!r}")
    chosen = _blas.gemm()
    assert chosen.library == "numpy" and chosen.sgemm and chosen.dgemm
    # the file NumPy's own module resolves its BLAS symbols to
    assert os.path.basename(chosen.file).startswith(("libscipy_openblas", "libopenblas"))
    config = [b for b in _blas.blas_info() if b["filepath"] == chosen.file][0]["config"]
    assert chosen.int_bytes == (8 if "USE64BITINT" in config.split() else 4)
    F.dense_forward(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32),
                    backend="cython")
    # registered with Scoped, which runs it on one thread inside the split kernels
    assert chosen.file in _threads._blas_seen


def test_use_gemm_checks_its_value():
    with pytest.raises(ValueError, match="library"):
        _blas.use_gemm("mkl")
    assert _blas.gemm().library in ("numpy", "scipy")


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (33, 65, 31), (300, 64, 257), (8, 200, 20)],
                         ids=str)
@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_dense_on_each_library(library, backend, dtype, shape, split, on_threads):
    r = rng(3)
    n, k, m = shape
    x, W, b = (r.standard_normal((n, k)).astype(dtype), r.standard_normal((k, m)).astype(dtype),
               r.standard_normal(m).astype(dtype))
    dy = r.standard_normal((n, m)).astype(dtype)
    ref = (F.dense_forward(x, W, b, "relu", backend="numpy"),
           *F.dense_backward(dy, x, W, backend="numpy"))
    mod = DENSE[backend]
    old = mod.set_gemm_parallel_flops(0 if split else 2e6)
    try:
        for threads in (1, 2):
            on_threads(threads)
            got = (F.dense_forward(x, W, b, "relu", backend=backend),
                   *F.dense_backward(dy, x, W, backend=backend))
            for name, g, want in zip(("y", "dx", "dW", "db"), got, ref):
                assert_close(g, want, dtype, scale=10, err_msg=f"{name} on {threads}")
    finally:
        mod.set_gemm_parallel_flops(old)


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_dense_over_blocks_of_rows_on_each_library(library, backend, dtype):
    # BLAS's largest int lowered to 7: 23 rows in 4 blocks, dW summed with beta = 1
    r = rng(4)
    x, W, b = (r.standard_normal((23, 5)).astype(dtype), r.standard_normal((5, 6)).astype(dtype),
               r.standard_normal(6).astype(dtype))
    dy = r.standard_normal((23, 6)).astype(dtype)
    old = DENSE[backend].set_blas_int_max(7)
    try:
        got = (F.dense_forward(x, W, b, backend=backend), *F.dense_backward(dy, x, W,
                                                                            backend=backend))
    finally:
        DENSE[backend].set_blas_int_max(old)
    ref = (F.dense_forward(x, W, b, backend="numpy"), *F.dense_backward(dy, x, W,
                                                                        backend="numpy"))
    for g, want in zip(got, ref):
        assert_close(g, want, dtype, scale=10)


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_conv_on_each_library(library, backend, dtype, on_threads):
    # the three GEMM orientations of the convolution kernels (forward; dW with beta =
    # 1 over chunks; dx), stride and padding
    r = rng(5)
    x = r.standard_normal((5, 3, 11, 9)).astype(dtype)
    W = r.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = r.standard_normal(4).astype(dtype)
    for threads in (1, 2):
        on_threads(threads)
        y = F.conv2d_forward(x, W, b, (2, 1), 1, "tanh", backend=backend)
        ref = F.conv2d_forward(x, W, b, (2, 1), 1, "tanh", backend="numpy")
        assert_close(y, ref, dtype, scale=20)
        dy = r.standard_normal(y.shape).astype(dtype)
        got = F.conv2d_backward(dy, x, W, (2, 1), 1, backend=backend)
        for g, want in zip(got, F.conv2d_backward(dy, x, W, (2, 1), 1, backend="numpy")):
            assert_close(g, want, dtype, scale=20)
