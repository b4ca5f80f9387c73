"""Default backend and thread count, shared by every kernel.

Threading arrangement (why it looks like this): on this class of machine, Numba's
OpenMP layer spin-waiting against OpenBLAS's own spinning threads made one MLP
training step 50x slower.  fastdl therefore
  * asks libgomp (Cython's prange, and Numba's ``omp`` layer: the same
    libgomp.so.1) to wait passively (OMP_WAIT_POLICY=PASSIVE) unless the user set
    a policy, before libgomp is first loaded;
  * runs Numba's parallel kernels on the ``omp`` layer when that passive policy
    is in force (no libgomp.so.1 loaded before: PyTorch's counts, scikit-learn's
    renamed copy does not), else on the ``workqueue`` layer (its workers sleep on a
    condition variable; not thread-safe, so there only the main thread launches
    parallel kernels: ``numba_parallel_here``), unless the user chose a layer through
    NUMBA_THREADING_LAYER.  Measured here: a parallel Adam step over 1M
    parameters took 0.36 ms on omp and 0.88 ms on workqueue, whose launch cost
    made parallel kernels slower than serial ones up to about 0.5M elements;
  * never calls BLAS from inside a parallel region, and keeps small elementwise
    calls serial (see ``parallel_threshold``), so a step alternates between one
    multi-threaded BLAS call and short serial passes;
  * asks OpenBLAS's idle threads to stop spinning after 2^14 cycles instead of
    2^28 (OPENBLAS_THREAD_TIMEOUT=14, unless the user set it), which OpenBLAS reads
    once, when it loads: so only for an OpenBLAS loaded after ``import fastdl``
    (NumPy's, when fastdl is imported first, as the ``fastdl`` command does; SciPy's,
    which the Cython backend loads).  For about 0.1 s after each BLAS call its
    worker otherwise spins on the other core, and a parallel kernel started in that
    time shares that core with it.  Measured here: Adam over the 536k parameters of
    the 784-512-256-10 MLP right after a 256x784x512 GEMM took 414-497 us, and
    203-289 us with timeouts of 2^4 to 2^14 cycles (164-185 us in a loop of its
    own); a training epoch over the bare matrix products of the same epoch, batch
    32: 1.87-2.14x, then 1.54-1.78x; batch 256: 1.20-1.29x, then 1.17-1.23x; the
    bare products themselves unchanged.  2^14 cycles (several microseconds) still
    bridge two back-to-back BLAS calls.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import threading

def _loaded_libraries() -> str:
    # the shared objects mapped so far (libgomp and OpenBLAS read their settings when loaded)
    try:
        with open("/proc/self/maps") as fh:
            return fh.read()
    except OSError:
        return ""


def _libgomp_loaded() -> bool:
    # whether a library of soname libgomp.so.1 (the one the Cython kernels and Numba's omp
    # layer link) is loaded; RTLD_NOLOAD asks without loading it.  Copies renamed by
    # auditwheel (scikit-learn's libgomp-<hash>.so) are other libraries and do not count;
    # PyTorch's torch/lib/libgomp.so.1 does (ours would bind to it).
    import ctypes

    try:
        ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return False
    return True


_MAPS = _loaded_libraries()
# whether libgomp waits passively: the policy is PASSIVE and set before libgomp loads
_PASSIVE_OMP = (os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE").upper() == "PASSIVE"
                and not _libgomp_loaded())
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "14")
# an OpenBLAS (NumPy's) loaded before fastdl keeps the timeout it was loaded with
_OPENBLAS_BEFORE = "openblas" in _MAPS.lower()
del _MAPS

BACKENDS_ALL = ("numpy", "numba", "cython")

# Below this many elements an elementwise kernel runs on one thread: a parallel
# region costs a few microseconds to start, and stalls when the other core is busy.
PARALLEL_THRESHOLD = 1 << 16

_lock = threading.Lock()
# blas_threads: the limit set_num_threads gave the BLAS libraries (None: never set);
# generation: bumped whenever the per-thread counts must be applied again (apply_threads)
# forked_omp: this process was forked from one with libgomp loaded (_after_fork_in_child)
_state = {"backend": None, "threads": None, "blas_threads": None, "generation": 0,
          "forked_omp": False}
_local = threading.local()  # per Python thread: the generation applied to it
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


def get_backend() -> str:
    """The current default backend."""
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
    """``with fastdl.use_backend("numba"): ...`` sets the default backend for a block."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        _state["backend"] = previous


_numba_ready = False
_numba_threadsafe = False  # the Numba threading layer may be entered by two threads at once
_MAIN_THREAD = threading.main_thread().ident


def numba_module():
    """Import Numba once, with fastdl's threading layer and thread count applied."""
    global _numba_ready, _numba_threadsafe
    import numba

    if not _numba_ready:
        with _lock:
            if not _numba_ready:
                layer = numba_threading_layer()
                if "NUMBA_THREADING_LAYER" not in os.environ:
                    numba.config.THREADING_LAYER = layer
                _numba_threadsafe = layer in ("omp", "tbb", "threadsafe")
                _numba_ready = True
                _state["generation"] += 1  # every thread now has a Numba count to set
                apply_threads()
    return numba


def numba_parallel_here() -> bool:
    """Whether the calling thread may launch Numba's parallel kernels.

    Numba's workqueue layer (taken when libgomp cannot wait passively, see the module
    docstring, or when the user asks for it) is not thread-safe: two Python threads
    launching parallel kernels at once abort the process (measured: "Concurrent access
    has been detected", SIGABRT).  On it only the main thread runs them; kernels called
    from other threads take their serial twins.  omp and tbb are thread-safe."""
    return _numba_threadsafe or threading.get_ident() == _MAIN_THREAD


def numba_threading_layer() -> str:
    """The Numba threading layer fastdl asks for (see the module docstring)."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return os.environ["NUMBA_THREADING_LAYER"]
    if _PASSIVE_OMP and importlib.util.find_spec("numba.np.ufunc.omppool") is not None:
        return "omp"
    return "workqueue"


def get_num_threads() -> int:
    """Threads used by every backend's kernels and by BLAS.

    Until set_num_threads is called: OMP_NUM_THREADS (its first entry) when it holds a
    positive integer, as PyTorch does, else the CPU count.  OpenMP (the Cython kernels)
    and OpenBLAS read that variable themselves; Numba does not, and is given this."""
    if _state["threads"] is None:
        _state["threads"] = _env_threads() or os.cpu_count() or 1
    return _state["threads"]


def _env_threads() -> int | None:
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def set_num_threads(n: int) -> None:
    """Set the threads of Numba, OpenMP (Cython) and BLAS together."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    if n > 1 and _state["forked_omp"]:
        import warnings

        warnings.warn(f"set_num_threads({n}) in a process forked after OpenMP started: kept at "
                      "1 thread (OpenMP's threads do not survive fork; a parallel kernel "
                      "would hang). Use the 'spawn' or 'forkserver' start method for more.",
                      RuntimeWarning, stacklevel=2)
        n = 1
    _state["threads"] = n
    _state["generation"] += 1
    apply_threads()
    _state["blas_threads"] = n
    limit_blas()


def _after_fork_in_child() -> None:
    # GNU OpenMP's threads do not survive fork: a child forked after the parent ran an
    # OpenMP region hung in its first Cython parallel kernel, and Numba's omp layer
    # terminated such a child ("fork() called from a process already using GNU OpenMP"),
    # which left a multiprocessing Pool waiting forever (both measured).  One thread runs
    # a region without that pool, so a child of a process with libgomp loaded runs every
    # kernel on one thread (applied per thread through the generation, as ever).  BLAS
    # keeps the parent's count: OpenBLAS restarts its own threads after fork.
    if _libgomp_loaded():
        _state["forked_omp"] = True
        _state["threads"] = 1
        _state["generation"] += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def apply_threads() -> None:
    """Give the calling thread fastdl's thread count, for Numba and for OpenMP.

    Both counts belong to the thread that sets them: set in the main thread, they did
    not reach a kernel called from a ``threading.Thread`` (measured: after
    set_num_threads(1) a Cython kernel there ran on 2 threads).  So the registry calls
    this in any thread whose generation is behind, before it hands out a kernel.
    Numba first: its first call launches Numba's pool, which on the omp layer sets
    libgomp's count (the Cython kernels') to the pool's size (measured: after
    set_num_threads(1), Cython's prange then ran on 2 threads)."""
    n = get_num_threads()
    _local.generation = _state["generation"]
    if _numba_ready:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if _probe("cython"):
        from fastdl._kernels.cython import _threads

        _threads.set_num_threads(n)


def limit_blas() -> None:
    """Give every BLAS loaded so far set_num_threads' limit (nothing if it was never called).

    threadpoolctl sets the libraries loaded when it runs, and SciPy's OpenBLAS (the
    Cython backend's BLAS, through ``scipy.linalg.cython_blas``) loads with the first
    Cython dense kernel, often after set_num_threads: the registry calls this after it
    imports a Cython kernel module.  Found by measurement: after set_num_threads(1) that
    BLAS still ran its GEMMs on 2 threads."""
    n = _state["blas_threads"]
    if n is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")


def info() -> dict:
    """Versions, backends, threads, BLAS libraries and CPU features."""
    import platform

    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    from fastdl import __version__

    versions = {"fastdl": __version__, "python": platform.python_version(),
                "numpy": np.__version__, "scipy": scipy.__version__}
    for mod in ("numba", "Cython", "torch"):
        spec = importlib.util.find_spec(mod)
        if spec is not None and mod != "torch":
            versions[mod] = importlib.import_module(mod).__version__
    flags = []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = sorted(f for f in have if f.startswith(("avx", "fma", "sse4")))
                    break
    except OSError:
        pass
    blas = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "filepath",
                                   "architecture", "threading_layer")}
            for d in threadpool_info() if d.get("user_api") == "blas"]
    return {
        "versions": versions,
        "backends": backends(),
        "default_backend": get_backend(),
        "num_threads": get_num_threads(),
        "numba_threading_layer": numba_threading_layer()
        if _probe("numba") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        "openblas_loaded_before_fastdl": _OPENBLAS_BEFORE,
        "blas": blas,
        "cpu": {"model": platform.processor() or platform.machine(), "count": os.cpu_count(),
                "features": flags},
    }
