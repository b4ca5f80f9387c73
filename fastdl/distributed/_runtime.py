"""Starting MPI, and keeping a failed job from hanging.

mpi4py is imported on first use only, so that fastdl imports and runs without it.
``init`` installs two guards (see ``docs/distributed.md``, "Faults"):

- an exception hook: a rank whose exception reaches the top prints its traceback and
  calls ``MPI.COMM_WORLD.Abort(1)``.  Without it the rank would run mpi4py's
  ``MPI_Finalize`` at exit, which waits for ranks that wait in a collective for it:
  measured here (Open MPI 5.0.11), such a job hangs until killed.
- a watchdog thread: each of fastdl's collective calls sets a deadline
  (``FASTDL_MPI_TIMEOUT`` seconds, default 300) and clears it when the call returns;
  a call still waiting past its deadline (another rank left the job with
  ``sys.exit`` or returned early, or is stuck) prints what it waited for and aborts
  the job.  mpi4py releases the GIL inside blocking MPI calls, so the thread runs
  while the main thread waits; outside a collective it only wakes up to look.

A rank killed by a signal needs neither: Open MPI's ``mpirun`` ends the whole job
when a process dies (measured: 1.5 s after a SIGKILL, exit status 137).
"""
from __future__ import annotations

import os
import sys
import threading
import time

from fastdl._threads import env_threads

MISSING = ('fastdl.distributed needs MPI: install it with  pip install "fastdl[mpi]"  '
           "(mpi4py and Open MPI, whose mpirun launches the ranks: "
           "mpirun -n K python script.py)")

DEFAULT_TIMEOUT = 300.0
_ENV_TIMEOUT = "FASTDL_MPI_TIMEOUT"


class _State:
    MPI = None            # the mpi4py.MPI module once loaded
    comm = None           # fastdl's own duplicate of COMM_WORLD, after init()
    rank = 0
    size = 1
    local_size = 1        # ranks on this node
    timeout = DEFAULT_TIMEOUT  # seconds, or None: collectives wait forever
    wait = None           # (deadline on time.monotonic(), what) while in a collective
    watchdog = None
    previous_hook = None
    lock = threading.Lock()


_state = _State()


def _load():
    """The ``mpi4py.MPI`` module, or ImportError saying what to install."""
    if _state.MPI is not None:
        return _state.MPI
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as e:  # OSError: libmpi missing or broken
        raise ImportError(f"{MISSING}; importing mpi4py.MPI failed: {e}") from e
    _state.MPI = MPI
    return MPI


def is_available() -> bool:
    """True when mpi4py is installed (``pip install "fastdl[mpi]"``).

    Cheap: MPI is not started (``init`` does that, and may still fail if the MPI
    library cannot be loaded; its error says so)."""
    if _state.MPI is not None:
        return True
    try:
        import mpi4py  # noqa: F401  (a package with no MPI side effects)
        import importlib.util
        return importlib.util.find_spec("mpi4py.MPI") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["mpi4py"] is None
        return False


def _timeout_from_env():
    raw = os.environ.get(_ENV_TIMEOUT)
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT
    try:
        return _check_timeout(_ENV_TIMEOUT, float(raw))
    except (TypeError, ValueError):
        raise ValueError(f"{_ENV_TIMEOUT}: expected a number of seconds >= 0 "
                         f"(0: no limit), got {raw!r}") from None


def _check_timeout(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number of seconds, got {type(value).__name__}")
    value = float(value)
    if not value >= 0:  # also NaN
        raise ValueError(f"{name}: expected a number of seconds >= 0 (0: no limit), "
                         f"got {value}")
    return value or None


def init(timeout=None):
    """Start MPI (if not started yet) and fastdl's fault handling; idempotent.

    Every rank must call it (it is collective); the other functions of
    ``fastdl.distributed`` call it on first use.

    Parameters
    ----------
    timeout : float >= 0, optional
        Seconds a collective call of fastdl may wait for the other ranks before the
        job is aborted; 0 waits forever.  Default: ``FASTDL_MPI_TIMEOUT`` from the
        environment, else 300.  Given again on a later call, it replaces the limit.

    Raises
    ------
    ImportError
        mpi4py is not installed: ``pip install "fastdl[mpi]"``.
    RuntimeError
        MPI was already finalized.
    """
    given = timeout is not None
    if given:
        timeout = _check_timeout("timeout", timeout)
    with _state.lock:
        if _state.comm is None:
            _start(timeout if given else _timeout_from_env())
        elif given:
            _state.timeout = timeout


def _start(timeout):
    MPI = _load()
    if MPI.Is_finalized():
        raise RuntimeError("fastdl.distributed: MPI was already finalized in this process")
    if not MPI.Is_initialized():  # mpi4py.rc.initialize = False was set by the user
        MPI.Init_thread()
    _state.timeout = timeout
    world = MPI.COMM_WORLD
    _state.rank, _state.size = world.Get_rank(), world.Get_size()
    _install_hook()
    _start_watchdog()
    # A library talks on its own communicator: collectives match by their order on a
    # communicator, so fastdl's and a program's own on COMM_WORLD never mix.
    with bounded("init (duplicating COMM_WORLD)"):
        dup = world.Dup()
        node = dup.Split_type(MPI.COMM_TYPE_SHARED)
    _state.local_size = node.Get_size()
    node.Free()
    _state.comm = dup


def comm():
    """fastdl's communicator (a duplicate of ``MPI.COMM_WORLD``), starting MPI if needed."""
    if _state.comm is None:
        init()
    return _state.comm


def rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD``: 0 .. world_size() - 1.

    Outside ``mpirun`` MPI starts a world of one process (rank 0).  Raises
    ImportError naming ``pip install "fastdl[mpi]"`` when mpi4py is missing."""
    if _state.comm is None:
        init()
    return _state.rank


def world_size() -> int:
    """The number of processes in ``MPI.COMM_WORLD`` (1 outside ``mpirun``)."""
    if _state.comm is None:
        init()
    return _state.size


def is_initialized() -> bool:
    """True once ``init`` has run in this process (never starts MPI or imports mpi4py).

    For code that behaves differently under MPI without requiring it, e.g. writing a
    file from rank 0 only: ``if not is_initialized() or rank() == 0: save()``."""
    return _state.comm is not None


def local_size() -> int:
    """The number of ranks on this node (those sharing its memory)."""
    if _state.comm is None:
        init()
    return _state.local_size


def threads_per_rank() -> int:
    """Threads for this rank's kernels so that the ranks of a node do not oversubscribe it.

    ``OMP_NUM_THREADS`` when set; else the cores this rank is bound to (mpirun binds
    each rank to one core when there are at most 2 ranks, to a package or NUMA domain
    otherwise, or to ``PE=n`` cores with ``--map-by ...:PE=n``), at most the node's
    cores divided by its ranks (``--bind-to none``)."""
    if _state.comm is None:
        init()
    env = env_threads()
    if env is not None:
        return env
    cores = os.cpu_count() or 1
    try:
        bound = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        bound = cores
    return max(1, min(bound, cores // _state.local_size))


# ---- faults ----

class bounded:
    """``with bounded("allreduce_ ..."):`` arms the watchdog for one collective call.

    A class, not a generator context manager: it costs about half a microsecond,
    and it is entered on every training step."""
    __slots__ = ("what",)

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        t = _state.timeout
        if t is not None:
            _state.wait = (time.monotonic() + t, self.what, t)

    def __exit__(self, *exc):
        _state.wait = None
        return False


def _install_hook():
    if _state.previous_hook is not None:
        return
    _state.previous_hook = sys.excepthook
    sys.excepthook = _excepthook


def _excepthook(tp, value, tb):
    MPI = _state.MPI
    alive = MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized()
    if alive and _state.size > 1:
        _say(f"fastdl.distributed: rank {_state.rank} of {_state.size}: uncaught "
             f"{tp.__name__}; aborting every rank (MPI_Abort)\n")
    try:
        _state.previous_hook(tp, value, tb)
    finally:
        if alive and _state.size > 1:
            try:
                sys.stderr.flush()
                sys.stdout.flush()
            finally:
                MPI.COMM_WORLD.Abort(1)


def abort_on_exit(exc) -> None:
    """A ``SystemExit`` with a failure status leaving a collective section (``fit``) on
    one rank: abort every rank now, with that status.  SystemExit does not reach the
    exception hook, and the rank's ``MPI_Finalize`` would wait for ranks that wait in
    a collective for it: the job hung until the time limit.  ``sys.exit(0)`` (or no
    status) is left to finish: every rank may be leaving at the same point."""
    code = exc.code
    if code is None or code == 0:
        return
    MPI = _state.MPI
    if MPI is None or _state.size <= 1 or not MPI.Is_initialized() or MPI.Is_finalized():
        return
    status = code if isinstance(code, int) else 1
    _say(f"fastdl.distributed: rank {_state.rank} of {_state.size}: sys.exit({code!r}) "
         f"during a collective section; aborting every rank (MPI_Abort)\n")
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        MPI.COMM_WORLD.Abort(status)


def _say(text):
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001  (a closed or broken stderr must not stop the abort)
        pass
    try:
        os.write(2, text.encode())
    except OSError:
        pass


def _start_watchdog():
    if _state.watchdog is not None:
        return
    t = threading.Thread(target=_watch, name="fastdl.distributed watchdog", daemon=True)
    _state.watchdog = t
    t.start()


def _watch():
    while True:
        t = _state.timeout
        time.sleep(1.0 if t is None else min(1.0, max(t / 8, 0.05)))
        w = _state.wait
        if w is not None and time.monotonic() > w[0]:
            _expire(w[1], w[2])


def _expire(what, limit):
    MPI = _state.MPI
    _say(f"fastdl.distributed: rank {_state.rank} of {_state.size} waited more than "
         f"{limit:g} s in {what}: another rank has exited, failed or is stuck; "
         f"aborting every rank (the limit is {_ENV_TIMEOUT} or "
         "fastdl.distributed.init(timeout=...))\n")
    if MPI.Query_thread() == MPI.THREAD_MULTIPLE:
        MPI.COMM_WORLD.Abort(1)
    # MPI_Abort from a second thread needs THREAD_MULTIPLE.  A rank that exits
    # without MPI_Finalize ends the job too (mpirun tears it down: measured 1.6 s).
    os._exit(1)
