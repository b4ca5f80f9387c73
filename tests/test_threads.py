"""The thread-count mechanism (fastdl/_threads.py): the decision from injected CPU
readings, the load measurement from injected /proc/stat files, and the scoping of
OpenMP's and BLAS's counts around a kernel call (no timing here)."""
import os
import subprocess
import sys
import threading

import pytest

import fastdl
from fastdl import _threads as T


# ------------------------------------------------------------------ the decision
@pytest.mark.parametrize("current, ceiling, free, want", [
    (2, 2, 1.95, 2),   # quiet
    (2, 2, 1.0, 1),    # one busy process beside us
    (2, 2, 0.3, 1),    # two
    (2, 2, 1.6, 2),    # a little load: kept (no flapping)
    (2, 2, 1.45, 1),   # more than half a CPU taken: one thread fewer
    (1, 2, 1.7, 1),    # going up needs three quarters of a CPU free
    (1, 2, 1.8, 2),
    (1, 2, 2.0, 2),
    (1, 1, 2.0, 1),    # never above the ceiling
    (2, 2, 0.0, 1),    # never below 1
    (8, 8, 5.2, 5),    # many CPUs: one thread per CPU left free
    (5, 8, 6.8, 7),
    (5, 8, 5.6, 5),
    (3, 2, 2.0, 2),    # a ceiling lowered since: obeyed at once
])
def test_decide(current, ceiling, free, want):
    assert T.decide(current, ceiling, free) == want


def test_decide_is_stable_under_its_own_answer():
    # whatever the reading, deciding again on the same reading changes nothing
    for ceiling in (1, 2, 4, 16):
        for free10 in range(0, 10 * ceiling + 1):
            for current in range(1, ceiling + 1):
                n = T.decide(current, ceiling, free10 / 10)
                assert 1 <= n <= ceiling
                assert T.decide(n, ceiling, free10 / 10) == n, (current, ceiling, free10)


# ------------------------------------------------------------- the measurement
def _stat(path, rows):
    """/proc/stat with the per-CPU rows ``rows`` ({cpu: (user, nice, system, idle,
    iowait, irq, softirq, steal)}) and the lines that follow them."""
    total = [sum(col) for col in zip(*rows.values())]
    lines = ["cpu  " + " ".join(map(str, total + [0, 0]))]
    lines += [f"cpu{c} " + " ".join(map(str, v + (0, 0))) for c, v in sorted(rows.items())]
    lines += ["intr 1 2 3", "ctxt 4", "procs_running 3"]
    path.write_text("\n".join(lines) + "\n")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_cpu_load_counts_others_on_our_cpus_only(tmp_path):
    hz = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    zero = (0,) * 8
    _stat(stat, {0: zero, 1: zero, 2: zero})
    wall, own = Clock(), Clock()
    load = T.CpuLoad([0, 1], path=str(stat), clock=wall, own=own)
    # one second: cpu0 fully busy (user), cpu1 half busy (system 0.25, steal 0.25) and
    # idle/iowait otherwise; cpu2 (not ours) busy; we used 0.5 s of CPU ourselves
    _stat(stat, {0: (hz, 0, 0, 0, 0, 0, 0, 0), 1: (0, 0, hz // 4, hz // 4, hz // 4, 0, 0, hz // 4),
                 2: (hz, 0, 0, 0, 0, 0, 0, 0)})
    wall.t, own.t = 1.0, 0.5
    assert load.sample() == pytest.approx(1.5 - 0.5, abs=0.02)
    # the next period: nothing changed but time; our own time never makes it negative
    wall.t, own.t = 2.0, 1.0
    assert load.sample() == 0.0


def test_cpu_load_without_proc_stat(tmp_path):
    load = T.CpuLoad([0], path=str(tmp_path / "missing"))
    assert load.sample() is None


def test_cpu_load_reads_the_real_file():
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    load = T.CpuLoad(T.allowed_cpus())
    load.sample()
    x = load.sample()
    assert x is None or 0.0 <= x <= len(T.allowed_cpus())


@pytest.mark.parametrize("text, want", [("max 100000\n", None), ("150000 100000\n", 1.5),
                                        ("50000 100000\n", 1.0), ("junk", None)])
def test_cpu_quota(tmp_path, text, want):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert T.cpu_quota(str(path)) == want
    assert T.cpu_quota(str(tmp_path / "none")) is None


@pytest.mark.parametrize("value, want", [(None, None), ("3", 3), ("2,1", 2), ("0", None),
                                         ("x", None), ("", None), ("100000", "max"),
                                         # digits int() refuses or libgomp does not read
                                         ("\u00b2", None), ("\u00b3,1", None),
                                         ("\u0661", None)])
def test_env_threads(monkeypatch, value, want):
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert T.env_threads() == (T.max_threads() if want == "max" else want)


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), ("max+1", ValueError),
                                    (10**30, ValueError), (2.0, TypeError), (True, TypeError)])
def test_set_num_threads_refuses(n, exc):
    # 100,000 threads crashed the OpenMP runtime (SIGSEGV); 10**30 raised OverflowError
    before = T.get_num_threads()
    with pytest.raises(exc, match="^n: "):
        T.set_num_threads(T.max_threads() + 1 if n == "max+1" else n)
    assert T.get_num_threads() == before


def test_max_threads_is_taken_and_runs():
    # the most allowed still runs a parallel kernel (in a subprocess: the count is
    # process-wide)
    code = ("import numpy as np, fastdl, fastdl.functional as F\n"
            "from fastdl import _threads as T\n"
            "fastdl.set_num_threads(T.max_threads())\n"
            "x = np.ones(1 << 20, np.float32)\n"
            "print(fastdl.get_num_threads() == T.max_threads(), "
            "float(F.relu(x, backend='cython' if 'cython' in fastdl.backends() "
            "else 'numpy').sum()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", str(float(1 << 20))]


def test_finding_blas_beside_imports_does_not_deadlock():
    # fastdl looks for the loaded OpenBLAS libraries at a thread's first kernel calls,
    # while another thread may be importing (Numba, SciPy).  Through dl_iterate_phdr
    # with a Python callback this hung every run (the callback, holding glibc's loader
    # lock, waited for the GIL; the importing thread, holding the GIL in dlopen, for the
    # loader lock).  A fresh process, since each library loads once; faulthandler ends
    # a hang with the stacks.
    code = ("import faulthandler, threading\n"
            "faulthandler.dump_traceback_later(60, exit=True)\n"
            "from fastdl import _blas\n"
            "found, stop = [], threading.Event()\n"
            "def look():\n"
            "    while not stop.is_set():\n"
            "        found.append(len(_blas.loaded_libraries()))\n"
            "t = threading.Thread(target=look)\n"
            "t.start()\n"
            "import scipy.special, scipy.linalg, scipy.sparse, numba  # noqa\n"
            "stop.set()\n"
            "t.join()\n"
            "print(len(found) > 0 and min(found) > 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["True"]


def test_loaded_libraries_are_the_mapped_shared_objects():
    from fastdl import _blas
    import numpy.linalg._umath_linalg as ext

    paths = _blas.loaded_libraries()
    assert os.path.realpath(ext.__file__) in paths
    assert len(paths) == len(set(paths)) and all(os.path.isabs(p) for p in paths)


@pytest.mark.parametrize("value, want", [(None, 2.0 ** 28 / 1.5e9), ("14", 2.0 ** 14 / 1.5e9),
                                         ("1", 2.0 ** 4 / 1.5e9), ("40", 2.0 ** 30 / 1.5e9),
                                         ("no", 2.0 ** 28 / 1.5e9),
                                         ("\u00b2", 2.0 ** 28 / 1.5e9)])
def test_blas_spin_seconds(monkeypatch, value, want):
    if value is None:
        monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", value)
    assert T.blas_spin_seconds() == pytest.approx(want)


# ----------------------------------------------------- the count and its updates
class FakeLoad:
    def __init__(self, readings, cpus=2):
        self.readings = list(readings)
        self.cpus = set(range(cpus))
        self.quota = None

    def sample(self):
        return self.readings.pop(0)


@pytest.fixture
def threads_state(monkeypatch):
    """fastdl's thread state, put back afterwards."""
    saved = dict(T._state)
    load = T._load
    yield
    T._load = load
    T._state.clear()
    T._state.update(saved)
    T._reset(saved["adaptive"])
    if T._omp() is not None:
        T._omp().set_blas_spin(T.blas_spin_seconds())


def test_default_count_adapts_to_injected_load(threads_state, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    T._state["requested"] = None
    T._reset()
    ceiling = T.get_num_threads()
    if ceiling < 2:
        pytest.skip("needs 2 CPUs for a count to adapt")
    assert T.adaptive() and T.effective_threads() == ceiling
    # readings: CPUs other processes kept busy in each period
    T._load = FakeLoad([1.0, 1.0, 0.1, 1.0, 0.1, 0.1, ceiling - 0.1], cpus=ceiling)
    generation = T._state["generation"]
    T.update()   # down at once
    assert T.effective_threads() == ceiling - 1 and T._state["generation"] > generation
    T.update()
    assert T.effective_threads() == ceiling - 1
    T.update()   # up only after two free periods in a row
    assert T.effective_threads() == ceiling - 1
    T.update()
    T.update()
    assert T.effective_threads() == ceiling - 1
    T.update()
    assert T.effective_threads() == ceiling
    T.update()
    assert T.effective_threads() == 1
    assert fastdl.get_num_threads() == ceiling  # the count asked for is unchanged


def test_a_count_given_is_kept_whatever_the_load(threads_state):
    fastdl.set_num_threads(2)
    assert not T.adaptive()
    T._load = FakeLoad([2.0])
    T.update()
    assert T.effective_threads() == 2 and fastdl.get_num_threads() == 2
    fastdl.set_num_threads(2, adaptive=True)
    T._load = FakeLoad([2.0])
    T.update()
    assert T.effective_threads() == 1 and fastdl.get_num_threads() == 2


def test_adapting_count_is_capped_by_the_cgroup_quota(threads_state):
    # 2 idle CPUs but a quota of 1 CPU: the quota is what is free (2 threads would
    # share one CPU's time)
    fastdl.set_num_threads(2, adaptive=True)
    T._load = FakeLoad([0.0], cpus=2)
    T._load.quota = 1.0
    T.update()
    assert T.effective_threads() == 1 and T._state["free"] == 1.0


def test_default_threads_is_capped_by_the_cgroup_quota(monkeypatch):
    # 4 CPUs allowed, a quota of 1.5 CPUs: 1 thread (the whole CPUs of the quota)
    from fastdl import _cpu

    monkeypatch.setattr(_cpu, "allowed_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(_cpu, "cpu_quota", lambda: 1.5)
    assert T.default_threads() == 1
    monkeypatch.setattr(_cpu, "cpu_quota", lambda: None)
    assert T.default_threads() == 4


def test_omp_num_threads_is_a_count_given(threads_state, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    T._state["requested"] = None
    T._reset()
    assert fastdl.get_num_threads() == 3 and T.effective_threads() == 3 and not T.adaptive()


def test_set_num_threads_rejects(threads_state):
    for bad, err in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
                     ("2", TypeError)):
        with pytest.raises(err, match="n"):
            fastdl.set_num_threads(bad)
    with pytest.raises(TypeError, match="adaptive"):
        fastdl.set_num_threads(1, adaptive=1)


# ------------------------------------------------------------------- the scoping
omp = pytest.importorskip("fastdl._kernels.cython._threads") \
    if "cython" in fastdl.backends() else None


def _blas_counts():
    from fastdl._blas import blas_info

    return [d["num_threads"] for d in blas_info()]


@pytest.mark.skipif(omp is None, reason="needs the Cython backend's extension")
def test_scoped_call_sets_and_restores_openmp_and_blas(threads_state):
    import scipy.linalg  # noqa: F401  (SciPy's OpenBLAS too)

    T.find_blas()
    fastdl.set_num_threads(1)
    outside = (omp.get_num_threads(), _blas_counts())
    inside = T.scoped(lambda: (omp.get_num_threads(), _blas_counts()))()
    assert inside == (1, [1] * len(outside[1]))
    assert (omp.get_num_threads(), _blas_counts()) == outside

    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        T.scoped(boom)()
    assert (omp.get_num_threads(), _blas_counts()) == outside


@pytest.mark.skipif(omp is None, reason="needs the Cython backend's extension")
def test_scoped_calls_run_serially_while_blas_threads_spin(threads_state, monkeypatch):
    fastdl.set_num_threads(2)
    T.find_blas()
    if omp.blas_count() == 0:
        pytest.skip("no OpenBLAS loaded")
    probe = T.scoped(lambda: omp.get_num_threads())
    gemm = T.scoped(lambda: None, blas=True)
    omp.set_blas_spin(0.0)
    gemm()  # closes the window an earlier test's BLAS call may have opened
    monkeypatch.setattr(T, "blas_spin_seconds", lambda: 3600.0)
    assert probe() == 2
    T.scoped(lambda: None, blas=True)  # takes the spin time
    gemm()
    assert probe() == 1   # a parallel region now would share a CPU with a spinning thread
    assert T.scoped(lambda: omp.get_num_threads(), blas=True)() == 2  # BLAS itself: not
    omp.set_blas_spin(0.0)
    gemm()
    assert probe() == 2


def test_python_scoped_gives_blas_one_thread_for_serial_blas_kernels(threads_state,
                                                                       monkeypatch):
    # without the Cython extension, Scoped's Python stand-in sets each OpenBLAS's count:
    # fastdl's for a kernel, 1 for one that runs its own threads over BLAS calls
    counts = [7]
    monkeypatch.setattr(T, "_py_blas", [(lambda: counts[0], lambda n: counts.__setitem__(0, n))])
    fastdl.set_num_threads(2)
    assert T._PyScoped(lambda: counts[0])() == 2
    assert T._PyScoped(lambda: counts[0], serial_blas=True)() == 1
    assert counts == [7]


def test_python_scoped_restores_after_calls_that_end_out_of_order(threads_state,
                                                                  monkeypatch):
    # two Python threads' calls: the serial-BLAS one begins first, the other ends last.
    # Saved and restored per call, the count was left at 1; now the last call out
    # restores the count from before the first
    counts = [7]
    monkeypatch.setattr(T, "_py_blas", [(lambda: counts[0], lambda n: counts.__setitem__(0, n))])
    fastdl.set_num_threads(2)
    started, first_done, second_in = threading.Event(), threading.Event(), threading.Event()

    def first():  # serial BLAS: enters first, leaves first
        def body():
            started.set()
            second_in.wait(10)
        T._PyScoped(body, serial_blas=True)()
        first_done.set()

    def second():
        started.wait(10)

        def body():
            second_in.set()
            first_done.wait(10)
        T._PyScoped(body)()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert counts == [7] and T._py_scope["depth"] == 0
