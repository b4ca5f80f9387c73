"""How many threads fastdl's kernels use, and what fastdl leaves alone.

What it leaves alone.  Importing fastdl changes no environment variable and no other
library's setting (it used to set OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT
for the whole process; PyTorch's OpenMP read the first and its MLP epoch ran 1.4-3x
slower).  A kernel call changes nothing that outlives it: the registry hands out every
kernel wrapped by ``scoped``, which sets OpenMP's thread count of the calling thread
and each OpenBLAS's thread count for the duration of the call, then restores them
(``Scoped`` in fastdl/_kernels/cython/_threads.pyx says why both are shared with
other libraries: PyTorch's, NumPy's, SciPy's).  Only Numba's own per-thread count
(``numba.set_num_threads``) is set in the threads that call fastdl's Numba kernels,
and kept.

How many.  The count starts from the CPUs this process may use (its affinity,
capped by a cgroup CPU quota), from ``OMP_NUM_THREADS`` (its first entry, as PyTorch
reads it), or from ``set_num_threads(n)``.  A count given by the variable or by
``set_num_threads`` is used as given.  The default one adapts to the CPU others leave
free: at most every ``PERIOD`` seconds, from the next kernel call (there is no thread
of its own), ``CpuLoad`` measures the CPU time spent on this process's CPUs minus its
own over the last period, and ``decide`` keeps one thread per CPU left free.  Why: a
parallel region, and a multi-threaded GEMM, wait for their slowest thread, and a
thread sharing its CPU with a busy process waits for the scheduler, milliseconds, at
every region.  Measured on 2 vCPUs, MLP epoch at batch 32: beside two busy processes
1,738 ms on 2 threads, 391 ms on 1; with the machine's load at 5-7, 2.9-8.1 s on 2
threads, 0.42-0.67 s on 1.  A thread too many costs far more than one too few, so a
thread is dropped as soon as others take ``DOWN`` of its CPU, and added back only when
``UP`` of a further CPU was free for ``UP_PERIODS`` periods in a row.

Waiting.  Idle threads spin before they sleep: libgomp's for a few
milliseconds, OpenBLAS's for about 0.1 s after each multi-threaded call, and a
parallel region started then shares a CPU with a spinning thread.  So the dense
and convolution kernels (Cython and Numba) split their products between
OpenMP threads, each calling BLAS on one thread (``serial_blas``): OpenBLAS's pool
never wakes, and one OpenMP pool runs every region of a training step.  Where a
kernel does run BLAS's own threads (the NumPy backend's GEMMs), ``Scoped`` runs the
other kernels on one thread for ``blas_spin_seconds`` afterwards.  Numba's
threading layer is ``omp`` where Numba has it (the libgomp.so.1 the Cython kernels
use: one OpenMP thread pool for both backends), else ``workqueue``, which is not
thread-safe, so there only the main thread launches parallel kernels
(``numba_parallel_here``); NUMBA_THREADING_LAYER overrides.

docs/threads.md has the measurements and the ways to override.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import threading
import time

from fastdl._cpu import CpuLoad, allowed_cpus, cpu_quota, default_threads

PERIOD = 0.25   # seconds between two looks at the CPU load
DOWN = 0.5      # drop a thread when others take more than this much of a CPU from it
UP = 0.75       # add one when at least this much of a further CPU is free ...
UP_PERIODS = 2  # ... in this many periods in a row


def decide(current: int, ceiling: int, free: float) -> int:
    """Threads for the next period.

    ``current``: threads now; ``ceiling``: the most allowed; ``free``: CPUs that other
    processes left free over the last period (this process's CPUs minus their busy
    time over wall time).  Down to ``round(free)`` (at least 1) when ``free`` is more
    than ``DOWN`` below ``current``; up to ``floor(free + 1 - UP)`` when at least ``UP``
    of a CPU beyond ``current`` is free; else ``current``; always in [1, ceiling]."""
    if free < current - DOWN:
        current = int(free + 0.5)
    elif free >= current + UP:
        current = int(free + 1.0 - UP)
    return max(1, min(ceiling, current))


def max_threads() -> int:
    """The most threads fastdl runs: 4 per CPU of the machine, and at least 64.  Beyond
    the CPUs threads only wait for each other (5,000 made an epoch 300x slower), and
    at 100,000 the OpenMP runtime crashed the process (SIGSEGV)."""
    return max(64, 4 * (os.cpu_count() or 1))


def env_threads() -> int | None:
    """OMP_NUM_THREADS's first entry, when a positive integer (as PyTorch reads it), at
    most ``max_threads()``."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    # ASCII digits only: str.isdigit() took '²', which int() refuses (every kernel
    # call raised), and int() reads other scripts' digits, which libgomp does not
    ok = first.isascii() and first.isdigit()
    return min(int(first), max_threads()) if ok and int(first) > 0 else None


# ---------------------------------------------------------------------------- state
_lock = threading.Lock()
# the count's state (set_num_threads, and update from any thread's kernel call): two
# threads setting it at once left info() at 1 thread while OpenMP ran 3
_count_lock = threading.RLock()
# requested: set_num_threads' n (None: the default); adaptive: the count follows the
# load; effective: the count in force; generation: bumped when the per-thread Numba
# counts must be applied again; forked_omp: forked from a process with libgomp loaded
# periods: how many load periods ended at each count (for info() and the benchmarks)
_state = {"requested": None, "adaptive": None, "effective": None, "generation": 0,
          "forked_omp": False, "free": None, "periods": {}, "up_votes": 0}
_local = threading.local()   # per Python thread: the generation applied to it
_load: CpuLoad | None = None


_ext = []


def _omp():
    # the scoping extension (built with the Cython backend), or None
    if not _ext:
        try:
            from fastdl._kernels.cython import _threads as ext
        except ImportError:
            ext = None
        _ext.append(ext)
    return _ext[0]


def get_num_threads() -> int:
    """The thread count asked for: ``set_num_threads``' n, else OMP_NUM_THREADS, else
    the CPUs this process may use (1 in a child forked after OpenMP started).  With the
    default, fewer run while other processes keep CPUs busy (``effective_threads``)."""
    if _state["forked_omp"]:
        return 1
    if _state["requested"] is None:
        return env_threads() or default_threads()
    return _state["requested"]


def _decided() -> None:
    # the count is decided at its first use, under the lock: a first kernel call in one
    # thread beside set_num_threads in another left effective 2 with OpenMP at 3
    if _state["effective"] is None or _state["adaptive"] is None:
        with _count_lock:
            if _state["effective"] is None or _state["adaptive"] is None:
                _reset()


def effective_threads() -> int:
    """The thread count in force for the next kernel call."""
    if _state["effective"] is None:
        _decided()
    return _state["effective"]


def adaptive() -> bool:
    """Whether the count follows the CPU load (the default count does)."""
    if _state["adaptive"] is None:
        _decided()
    return _state["adaptive"]


def set_num_threads(n: int, *, adaptive: bool = False) -> None:
    """Threads for every backend's kernels and for BLAS inside them.

    ``n`` is used as given, whatever the load, unless ``adaptive=True``: then ``n`` is
    the most used and fewer run while other processes keep CPUs busy.  ``n`` is at
    most ``max_threads()``."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive int, got {type(n).__name__}")
    if not 1 <= n <= max_threads():
        raise ValueError(f"n: expected an int in [1, {max_threads()}] (4 threads per CPU "
                         f"at most), got {n}")
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive: expected a bool, got {type(adaptive).__name__}")
    if n > 1 and _state["forked_omp"]:
        import warnings

        warnings.warn(f"set_num_threads({n}) in a process forked after OpenMP started: kept at "
                      "1 thread (OpenMP's threads do not survive fork; a parallel kernel "
                      "would hang). Use the 'spawn' or 'forkserver' start method for more.",
                      RuntimeWarning, stacklevel=2)
        n = 1
    with _count_lock:
        _state["requested"] = n
        _reset(adaptive)


def _reset(adapt=None) -> None:
    # the count as asked for, adapting or not; the load measured from now on
    global _load
    if adapt is None:
        adapt = _state["requested"] is None and env_threads() is None
    _state["adaptive"] = adapt and not _state["forked_omp"]
    _state["free"], _state["up_votes"] = None, 0
    _set_effective(1 if _state["forked_omp"] else get_num_threads())
    omp = _omp()
    if _state["adaptive"]:
        if _load is None:
            _load = CpuLoad(allowed_cpus())
            _load.quota = cpu_quota()
        else:
            _load.sample()  # a fresh period
        if omp is not None:
            omp.set_hook(update, time.monotonic() + PERIOD)
    elif omp is not None:
        omp.set_hook(None, 0.0)


def _set_effective(n: int) -> None:
    if n != _state["effective"]:
        _state["effective"] = n
        _state["generation"] += 1   # every thread's Numba count, at its next kernel
    omp = _omp()
    if omp is not None:
        omp.set_count(n)


def update() -> None:
    """Measure the load of the last period and set the count for the next (called by
    the first kernel call of each period)."""
    omp = _omp()
    if omp is not None:
        omp.set_due(time.monotonic() + PERIOD)
    with _count_lock:
        _update()


def _update():
    if not _state["adaptive"] or _load is None:
        return
    others = _load.sample()
    if others is None:
        return
    free = len(_load.cpus) - others
    if _load.quota is not None:
        free = min(free, _load.quota)
    _state["free"] = free
    n = decide(_state["effective"], get_num_threads(), free)
    _state["up_votes"] = _state["up_votes"] + 1 if n > _state["effective"] else 0
    if n < _state["effective"] or _state["up_votes"] >= UP_PERIODS:
        _state["up_votes"] = 0
        _set_effective(n)
    periods = _state["periods"]
    periods[_state["effective"]] = periods.get(_state["effective"], 0) + 1



# ---------------------------------------------------------------------- per thread
_numba_ready = False
_numba_threadsafe = False  # the Numba threading layer may be entered by two threads at once
_MAIN_THREAD = threading.main_thread().ident


def apply_threads() -> None:
    """Give the calling thread fastdl's count for Numba (whose count belongs to the
    thread: set in the main thread, it did not reach a kernel called from a
    ``threading.Thread``).  The registry calls this in any thread whose generation is
    behind, before it hands out a kernel."""
    effective_threads()  # the count decided, the first time
    _local.generation = _state["generation"]
    if _numba_ready:
        import numba

        numba.set_num_threads(min(effective_threads(), numba.config.NUMBA_NUM_THREADS))


def numba_threading_layer() -> str:
    """The Numba threading layer fastdl asks for (see the module docstring)."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return os.environ["NUMBA_THREADING_LAYER"]
    # looked for as a file: finding the submodule's spec imports Numba itself, which
    # fails under a bad Numba setting (NUMBA_NUM_THREADS=0) even where only Cython runs
    spec = importlib.util.find_spec("numba")
    for root in (spec.submodule_search_locations or ()) if spec is not None else ():
        if glob.glob(os.path.join(root, "np", "ufunc", "omppool*")):
            return "omp"
    return "workqueue"


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
                omp = _omp()
                before = omp.omp_state() if omp is not None else None
                # numba.set_num_threads starts Numba's pool; on the omp layer that sets
                # OpenMP's count and nested regions in this thread (PyTorch's too, when
                # it shares the libgomp): put them back
                numba.set_num_threads(min(effective_threads(), numba.config.NUMBA_NUM_THREADS))
                if before is not None:
                    omp.restore_omp_state(before)
                _numba_ready = True
                _state["generation"] += 1  # every thread now has a Numba count to set
                apply_threads()
    return numba


def numba_parallel_here() -> bool:
    """Whether the calling thread should launch Numba's parallel kernels now: not on
    one thread, and on the workqueue layer (not thread-safe: two Python threads
    launching parallel kernels at once aborted the process, SIGABRT) only from the
    main thread; other threads take the serial twins.  omp and tbb are thread-safe."""
    omp = _omp()
    if effective_threads() == 1 or (omp is not None and omp.get_num_threads() == 1):
        return False  # one thread: for fastdl, or for this call (``Scoped``)
    return _numba_threadsafe or threading.get_ident() == _MAIN_THREAD


# ---------------------------------------------------------------------------- BLAS
_blas_seen: set[str] = set()


def find_blas() -> None:
    """Register every OpenBLAS loaded so far with ``Scoped`` (each once; called again
    after an import that may have loaded one: SciPy's loads with the first Cython
    dense kernel).  MKL and BLIS are left at their own counts."""
    import ctypes

    from fastdl._blas import openblas_counters, openblas_libraries

    omp = _omp()
    for path in openblas_libraries():
        path = os.path.realpath(path)
        if path in _blas_seen:
            continue
        _blas_seen.add(path)
        counters = openblas_counters(path)
        if counters is None:
            continue
        if omp is not None:
            omp.register_blas(*(ctypes.cast(f, ctypes.c_void_p).value for f in counters))
        else:
            _py_blas.append(counters)


_py_blas: list = []   # (get, set) ctypes functions, where the extension is missing
_py_due = 0.0


class _PyScoped:
    """``Scoped`` without the Cython backend: BLAS counts only (no OpenMP here)."""

    def __init__(self, fn, serial_blas=False):
        self.fn = self.__wrapped__ = fn
        self.serial_blas = serial_blas

    def __call__(self, *args, **kwargs):
        global _py_due
        if _state["adaptive"] and time.monotonic() >= _py_due:
            _py_due = time.monotonic() + PERIOD
            update()
        _py_blas_enter(1 if self.serial_blas else effective_threads())
        try:
            return self.fn(*args, **kwargs)
        finally:
            _py_blas_leave()


# BLAS's count is process-wide: as the Cython Scoped, the first of the calls under way
# saves the counts and sets its own, the last one out restores them.  Saved and restored
# per call, two calls of other Python threads that ended in the other order than they
# began left the count at the first one's (1, measured)
_py_scope = {"depth": 0, "saved": []}
_py_scope_lock = threading.Lock()


def _py_blas_enter(want):
    with _py_scope_lock:
        if _py_scope["depth"] == 0:
            _py_scope["saved"] = [(put, n) for get, put in _py_blas if (n := get()) != want]
            for put, _ in _py_scope["saved"]:
                put(want)
        _py_scope["depth"] += 1


def _py_blas_leave():
    with _py_scope_lock:
        _py_scope["depth"] -= 1
        if _py_scope["depth"] == 0:
            _py_blas_restore()


def _py_blas_restore():
    # the counts from before the first call under way; none under way afterwards
    for put, n in _py_scope["saved"]:
        put(n)
    _py_scope["saved"], _py_scope["depth"] = [], 0


def blas_spin_seconds() -> float:
    """How long OpenBLAS's idle threads spin after a call: 2^OPENBLAS_THREAD_TIMEOUT
    cycles of its time-stamp counter (2^28 when unset; taken at 1.5 GHz, slower than
    any x86 TSC, so that this is an upper bound)."""
    t = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "").strip()
    t = min(max(int(t), 4), 30) if t.isascii() and t.isdigit() and int(t) > 0 else 28
    return 2.0 ** t / 1.5e9


def scoped(fn, blas: bool = False, serial_blas: bool = False):
    """``fn`` run with fastdl's thread count, the caller's restored afterwards;
    ``blas``: ``fn`` calls BLAS; ``serial_blas``: ``fn`` runs its own threads, each
    calling BLAS single-threaded (``Scoped`` says why both matter)."""
    effective_threads()  # the count decided before the first call
    omp = _omp()
    if omp is None:
        return _PyScoped(fn, serial_blas)
    omp.set_blas_spin(blas_spin_seconds())
    return omp.Scoped(fn, blas, serial_blas)


# ---------------------------------------------------------------------------- fork
def _libgomp_loaded() -> bool:
    # a library of soname libgomp.so.1 (the Cython kernels' and Numba's omp layer's,
    # or PyTorch's copy, which ours binds to); RTLD_NOLOAD asks without loading it.
    # Copies renamed by auditwheel (scikit-learn's libgomp-<hash>.so) do not count.
    import ctypes

    try:
        ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return False
    return True


def _after_fork_in_child() -> None:
    # GNU OpenMP's threads do not survive fork: a child forked after the parent ran an
    # OpenMP region hung in its first Cython parallel kernel, and Numba's omp layer
    # terminated such a child, which left a multiprocessing Pool waiting forever (both
    # measured).  One thread runs a region without that pool, so such a child runs
    # every kernel on one thread.  OpenBLAS restarts its own threads after fork.
    global _load
    _load = None
    omp = _ext[0] if _ext else None  # only if loaded: importing it here could deadlock
    if omp is not None:
        omp.reset_after_fork()
    global _py_scope_lock, _lock, _count_lock
    _py_scope_lock = threading.Lock()  # another thread may have held it at the fork
    _count_lock = threading.RLock()
    _lock = threading.Lock()  # held by _before_fork
    _py_blas_restore()  # the same for the calls of _PyScoped
    if _libgomp_loaded():
        _state["forked_omp"] = True
        _reset(False)
    elif _state["adaptive"]:
        _reset(True)  # the parent's CPU time is not the child's


def _before_fork() -> None:
    # a fork waits for another thread's Numba set-up (numba_module, some 35 ms): a child
    # forked in the middle of it hung in its first Numba kernel, on this lock and then on
    # the launch lock Numba holds under it
    _lock.acquire()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=lambda: _lock.release(),
                        after_in_child=_after_fork_in_child)


def info() -> dict:
    """The thread settings in force, for ``fastdl.info()``."""
    return {"requested": get_num_threads(), "effective": effective_threads(),
            "adaptive": adaptive(), "cpus_allowed": len(allowed_cpus()),
            "cpu_quota": cpu_quota(), "free_cpus_last_period": _state["free"],
            "periods_by_count": dict(sorted(_state["periods"].items())),
            "numba_threading_layer": numba_threading_layer()
            if importlib.util.find_spec("numba") else None}
