"""Default backend and thread count, shared by every kernel.

The thread count, and how fastdl keeps its settings to itself (no environment
variable, no other library's setting changed), are fastdl/_threads.py's; the names
below re-export it.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os

from fastdl import _blas, _threads
from fastdl._threads import (apply_threads, get_num_threads, numba_module,  # noqa: F401
                             numba_parallel_here, numba_threading_layer, set_num_threads)

BACKENDS_ALL = ("numpy", "numba", "cython")

# Below this many elements an elementwise kernel runs on one thread: a parallel
# region costs a few microseconds to start, and stalls when the other core is busy.
PARALLEL_THRESHOLD = 1 << 16

_state = {"backend": None}
_local, _thread_state = _threads._local, _threads._state
_available: dict[str, bool] = {}


def _probe(name: str) -> bool:
    if name in _available:
        return _available[name]
    ok = True
    if name == "numba":
        ok = importlib.util.find_spec("numba") is not None
    elif name == "cython":
        try:
            importlib.import_module("fastdl._kernels.cython._threads")
        except ImportError:
            ok = False
    _available[name] = ok
    return ok


def backends() -> tuple[str, ...]:
    """The backends usable here: ``"numpy"`` always, ``"numba"`` and ``"cython"`` when present."""
    return tuple(b for b in BACKENDS_ALL if _probe(b))


def _fastest() -> str:
    # Cython first: it compiles nothing at run time and has the least overhead per call
    # (small models such as the digits MLP); Numba wins the large GEMM-bound rows (it
    # calls NumPy's faster OpenBLAS) and the exp/tanh activations, but its first call of
    # each kernel compiles (seconds, cold).  README, Benchmarks: the fastest of each row.
    for name in ("cython", "numba", "numpy"):
        if _probe(name):
            return name
    return "numpy"


def check_backend(name) -> str:
    if name is None:
        return get_backend()
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a str or None, got {type(name).__name__}")
    if name not in BACKENDS_ALL:
        raise ValueError(f"backend: expected one of {BACKENDS_ALL}, got {name!r}")
    if not _probe(name):
        raise ValueError(f"backend: {name!r} is not available here (available: {backends()})")
    return name


def restored_backend(name, what="the model", stacklevel=3):
    """The backend a saved or pickled model asks for (``name``, or None for the
    default), so that it goes on with the same kernels; where that backend is not
    installed, None (the default one) with a RuntimeWarning: the model still loads,
    its results may differ in the last bits."""
    if name is None or name in backends():
        return name
    import warnings

    warnings.warn(f"{what} was saved with backend {name!r}, which is not available here: "
                  f"it runs on the default backend, {get_backend()!r}",
                  RuntimeWarning, stacklevel=stacklevel + 1)
    return None


# use_backend's block: per thread (and asyncio task), where set_backend's default is
# the process's (a block in one thread changed the backend of the others, and two
# threads' blocks left the other's backend as the default)
_block_backend = contextvars.ContextVar("fastdl.use_backend", default=None)


def get_backend() -> str:
    """The current default backend: ``use_backend``'s in its block, else ``set_backend``'s."""
    block = _block_backend.get()
    if block is not None:
        return block
    if _state["backend"] is None:
        _state["backend"] = _fastest()
    return _state["backend"]


def set_backend(name: str) -> None:
    """Set the default backend (``"numpy"``, ``"numba"`` or ``"cython"``)."""
    if name is None:
        raise TypeError("backend: expected a str, got None")
    _state["backend"] = check_backend(name)


@contextlib.contextmanager
def use_backend(name: str):
    """``with fastdl.use_backend("numba"): ...`` sets the default backend for a block, in
    the calling thread only (and its asyncio task): other threads keep theirs."""
    if name is None:
        raise TypeError("backend: expected a str, got None")
    token = _block_backend.set(check_backend(name))
    try:
        yield
    finally:
        _block_backend.reset(token)


# the environment variables that change how the thread pools behave or which kernels
# OpenBLAS picks: fastdl sets none of them; info() and the benchmarks record them
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_DYNAMIC", "GOMP_SPINCOUNT",
              "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE",
              "OPENBLAS_L2_SIZE", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "NUMBA_THREADING_LAYER")


def cpu_info(all_flags: bool = False) -> dict:
    """The CPU's model name, logical CPU count and vector instruction sets
    (``features``), and with ``all_flags`` every flag /proc/cpuinfo lists."""
    import platform

    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = sorted(value.split())
                    break
    except OSError:
        pass
    out = {"model": model, "count": os.cpu_count(),
           "features": [f for f in flags if f.startswith(("avx", "fma", "sse4"))]}
    if all_flags:
        out["flags"] = flags
    return out


def versions() -> dict:
    """fastdl's, Python's and its dependencies' versions (read from the installed
    packages' metadata: nothing is imported, so asking loads no OpenMP runtime)."""
    import platform
    from importlib import metadata

    from fastdl import __version__

    out = {"fastdl": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scipy", "numba", "Cython", "threadpoolctl", "torch",
                 "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def info() -> dict:
    """Versions, backends, threads, the BLAS libraries loaded and the one whose GEMM the
    compiled kernels call (``gemm``: NumPy's OpenBLAS, or SciPy's where NumPy's is not
    one), the thread-related environment variables (``None``: unset) and the CPU."""
    threads = _threads.info()
    return {
        "versions": versions(),
        "backends": backends(),
        "default_backend": get_backend(),
        "num_threads": get_num_threads(),
        "threads": threads,
        "numba_threading_layer": threads["numba_threading_layer"] if _probe("numba") else None,
        "environment": {k: os.environ.get(k) for k in THREAD_ENV},
        "blas": _blas.blas_info(),
        "gemm": {k: getattr(_blas.gemm(), k) for k in ("library", "file")},
        "cpu": cpu_info(),
    }
