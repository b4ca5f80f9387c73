"""Backends, threads, info: the top-level contract."""
import numpy as np
import pytest

import fastdl
from fastdl._registry import OPS, kernel


def test_all_backends_present():
    # CI must build and test every backend; a missing one is a failure, never a skip.
    assert fastdl.backends() == ("numpy", "numba", "cython"), fastdl.backends()


@pytest.mark.parametrize("op", list(OPS), ids=list(OPS))
@pytest.mark.parametrize("be", ["numpy", "numba", "cython"])
def test_registry_resolves_every_kernel(op, be):
    assert callable(kernel(op, be))


def test_default_backend_is_fastest_available():
    from fastdl import _config
    assert _config._fastest() == "cython"


def test_use_backend_restores():
    before = fastdl.get_backend()
    with fastdl.use_backend("numpy"):
        assert fastdl.get_backend() == "numpy"
    assert fastdl.get_backend() == before


def test_set_backend_rejects_unknown():
    with pytest.raises(ValueError, match="backend"):
        fastdl.set_backend("cuda")
    with pytest.raises(TypeError, match="backend"):
        fastdl.set_backend(3)


def test_threads_roundtrip():
    from threadpoolctl import threadpool_info

    n0 = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        assert fastdl.get_num_threads() == 1
        assert all(d["num_threads"] == 1 for d in threadpool_info() if d["user_api"] == "blas")
        from fastdl._kernels.cython import _threads
        assert _threads.get_num_threads() == 1
    finally:
        fastdl.set_num_threads(n0)
    with pytest.raises(ValueError, match="n"):
        fastdl.set_num_threads(0)
    with pytest.raises(TypeError, match="n"):
        fastdl.set_num_threads(1.5)


def test_info_keys():
    d = fastdl.info()
    for key in ("versions", "backends", "num_threads", "blas", "cpu"):
        assert key in d
    assert d["versions"]["fastdl"] == fastdl.__version__
