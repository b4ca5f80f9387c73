"""Backends, threads, info: the top-level contract."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl._registry import OPS, kernel


def run_probe(code, *args, drop=(), env=None, timeout=300):
    """Run ``code`` in a fresh interpreter (what is loaded before fastdl, and the
    environment then, are what these tests vary), with this environment minus ``drop``
    plus ``env``; its output, split into words."""
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env or {})
    out = subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


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
    for key in ("versions", "backends", "num_threads", "blas", "cpu", "openblas_thread_timeout",
                "openblas_loaded_before_fastdl"):
        assert key in d
    assert d["versions"]["fastdl"] == fastdl.__version__


_LAYER_PROBE = """
import ctypes, os, sys
if sys.argv[1] == "preload":
    ctypes.CDLL("libgomp.so.1")  # an OpenMP runtime loaded before fastdl: policy unknown
import numpy as np, numba, fastdl, fastdl.functional as F
fastdl.set_num_threads(2)
F.relu(np.ones(1 << 18, np.float32), backend="numba")  # a parallel kernel: picks the layer
print(numba.threading_layer(), fastdl.info()["numba_threading_layer"],
      os.environ["OMP_WAIT_POLICY"])
"""


@pytest.mark.parametrize("env, preload, want", [
    ({}, "", "omp omp PASSIVE"),                                    # fastdl's default
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "", "workqueue workqueue ACTIVE"),  # spinning omp: avoided
    ({}, "preload", "workqueue workqueue PASSIVE"),                 # libgomp loaded too early
    ({"NUMBA_THREADING_LAYER": "workqueue"}, "", "workqueue workqueue PASSIVE"),  # user's
])
def test_numba_threading_layer(env, preload, want):
    got = run_probe(_LAYER_PROBE, preload or "-", env=env,
                    drop=("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER"))
    assert got == want.split()


_SPIN_PROBE = """
import sys, time
if sys.argv[1] == "numpy-first":
    import numpy
import fastdl
import numpy as np
fastdl.set_num_threads(2)
a = np.ones((512, 512), np.float32)
for _ in range(5):
    np.matmul(a, a)  # a 2-thread GEMM: OpenBLAS's worker then idles
t0 = time.process_time()
time.sleep(0.08)
print(time.process_time() - t0, fastdl.info()["openblas_loaded_before_fastdl"])
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for a BLAS worker")
@pytest.mark.parametrize("env, order, spins", [
    ({}, "fastdl-first", False),                                 # fastdl's short timeout
    ({}, "numpy-first", True),                                   # OpenBLAS loaded too early
    ({"OPENBLAS_THREAD_TIMEOUT": "28"}, "fastdl-first", True),   # the user's setting wins
])
def test_openblas_idle_threads_stop_spinning(env, order, spins):
    # CPU time burnt while the process sleeps 80 ms after a GEMM: OpenBLAS's idle worker
    # spinning (its default, 2^28 cycles, about 0.1 s) or asleep (fastdl's 2^14)
    cpu, before = run_probe(_SPIN_PROBE, order, env=env, drop=("OPENBLAS_THREAD_TIMEOUT",))
    assert before == str(order == "numpy-first")
    assert float(cpu) > 0.02 if spins else float(cpu) < 0.01, cpu


_BLAS_PROBE = """
import numpy as np, fastdl, fastdl.functional as F
from threadpoolctl import threadpool_info
fastdl.set_num_threads(1)
x = np.ones((8, 8), np.float32)
F.dense_forward(x, x, None, None, backend="cython")  # loads SciPy's OpenBLAS now
blas = [d for d in threadpool_info() if d["user_api"] == "blas"]
print(len(blas), *(d["num_threads"] for d in blas))
"""


@pytest.mark.skipif("cython" not in fastdl.backends(), reason="needs the Cython backend")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell 1 from the default")
def test_thread_limit_reaches_a_blas_loaded_later():
    # set_num_threads before the Cython dense kernel first loads SciPy's OpenBLAS (a fresh
    # process): that BLAS must get the limit too (it ran 2 threads, found by measurement)
    count, *threads = run_probe(_BLAS_PROBE)
    assert int(count) >= 2, threads  # NumPy's and SciPy's
    assert threads == ["1"] * int(count), threads


_THREADS_PROBE = """
import sys
import numpy as np, numba, fastdl, fastdl.functional as F
from fastdl._kernels.cython import _threads
if sys.argv[1] != "-":
    fastdl.set_num_threads(int(sys.argv[1]))
F.relu(np.ones(1 << 18, np.float32), backend="numba")  # launches Numba's pool
print(fastdl.get_num_threads(), numba.get_num_threads(), _threads.get_num_threads())
"""


@pytest.mark.skipif(not {"numba", "cython"} <= set(fastdl.backends()),
                    reason="needs both compiled backends")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell 1 from the default")
@pytest.mark.parametrize("omp, call, want", [
    (None, "1", "1 1 1"),   # Numba's pool launch reset libgomp's count (Cython's) to 2
    ("1", "-", "1 1 1"),    # OMP_NUM_THREADS is the default, as in PyTorch, for Numba too
    ("1,1", "-", "1 1 1"),  # its first entry
    (None, "-", "{c} {m} {c}"),  # unset: the CPU count (Numba's pool may be smaller)
])
def test_every_backend_gets_the_same_thread_count(omp, call, want):
    # fastdl's count, Numba's and OpenMP's (the Cython kernels), after a Numba kernel
    got = run_probe(_THREADS_PROBE, call, drop=("OMP_NUM_THREADS",),
                    env=None if omp is None else {"OMP_NUM_THREADS": omp})
    c = os.cpu_count()
    m = min(c, int(os.environ.get("NUMBA_NUM_THREADS", c)))
    assert got == want.format(c=c, m=m).split()


@pytest.mark.skipif(not {"numba", "cython"} <= set(fastdl.backends()),
                    reason="needs both compiled backends")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell 1 from the default")
def test_thread_count_reaches_kernels_called_from_other_threads():
    # OpenMP's and Numba's counts belong to the thread that sets them: after
    # set_num_threads(1) in this thread, a kernel called from a threading.Thread ran
    # on every core.  Numba is started here first, so the worker starts from the defaults.
    import threading

    import numba
    import numpy as np

    import fastdl.functional as F
    from fastdl._kernels.cython import _threads

    n0 = fastdl.get_num_threads()
    seen = []

    def work():
        F.relu(np.ones(8, np.float32), backend="numba")
        F.relu(np.ones(8, np.float32), backend="cython")
        seen.append((numba.get_num_threads(), _threads.get_num_threads()))

    try:
        fastdl.set_num_threads(1)
        F.relu(np.ones(8, np.float32), backend="numba")
        for n in (1, 2, 1):
            fastdl.set_num_threads(n)
            t = threading.Thread(target=work)
            t.start()
            t.join()
            assert seen[-1] == (min(n, numba.config.NUMBA_NUM_THREADS), n), n
    finally:
        fastdl.set_num_threads(n0)


_CONCURRENT_PROBE = """
import threading
import numpy as np, numba, fastdl, fastdl.functional as F
fastdl.set_num_threads(2)
x = np.linspace(-5, 5, 1 << 20).astype(np.float32)
ref = F.sigmoid(x, backend="numpy")
bad = []

def work():
    for _ in range(20):
        if not np.allclose(F.sigmoid(x, backend="numba"), ref, rtol=1e-5):
            bad.append(1)

threads = [threading.Thread(target=work) for _ in range(3)]
for t in threads:
    t.start()
work()  # the main thread too, at the same time
for t in threads:
    t.join()
print(numba.threading_layer(), len(bad))
"""


@pytest.mark.skipif("numba" not in fastdl.backends(), reason="needs the Numba backend")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for parallel kernels")
@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_numba_kernels_from_several_threads_at_once(layer):
    # the workqueue layer aborts the process when two threads launch parallel kernels at
    # once (it did, SIGABRT): off the main thread fastdl takes the serial kernels there
    assert run_probe(_CONCURRENT_PROBE, env={"NUMBA_THREADING_LAYER": layer}) == [layer, "0"]


def test_renamed_libgomp_copies_do_not_count_as_loaded():
    # scikit-learn's wheels carry libgomp under another soname (libgomp-<hash>.so): ours
    # (libgomp.so.1) still loads afterwards and takes the passive policy, so importing
    # scikit-learn first must not cost the omp layer (it did: any "libgomp" counted)
    probe = ("import sklearn.utils._openmp_helpers, fastdl\n"
             "maps = open('/proc/self/maps').read()\n"
             "print(fastdl.info()['numba_threading_layer'], '/libgomp-' in maps, "
             "'/libgomp.so' in maps)")
    layer, renamed, ours = run_probe(probe, drop=("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER"))
    if renamed != "True" or ours != "False":
        pytest.skip("this scikit-learn does not load a renamed libgomp copy alone")
    assert layer == "omp"


_FORK_PROBE = """
import multiprocessing as mp, sys, warnings
import numpy as np, fastdl, fastdl.functional as F
backend = sys.argv[1]
x = np.linspace(-3, 3, 1 << 20).astype(np.float32)
F.sigmoid(x, backend=backend)  # OpenMP's (or Numba's) threads start in the parent

def child(_):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fastdl.set_num_threads(2)  # kept at 1, with a warning
    y = F.sigmoid(x, backend=backend)
    return float(y.sum()), fastdl.get_num_threads(), len(w)

with mp.get_context("fork").Pool(2) as pool:
    got = pool.map(child, range(2))
want = float(F.sigmoid(x, backend=backend).sum())
print(all(abs(s - want) <= 1e-3 * abs(want) and n == 1 and k == 1 for s, n, k in got),
      fastdl.get_num_threads())
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for parallel kernels")
@pytest.mark.parametrize("backend", [b for b in ("cython", "numba") if b in fastdl.backends()])
def test_forked_children_run_kernels(backend):
    # a child forked after the parent's OpenMP threads started hung in its first Cython
    # parallel kernel, or was terminated by Numba (and the Pool waited forever)
    got = run_probe(_FORK_PROBE, backend, drop=("NUMBA_THREADING_LAYER", "OMP_NUM_THREADS"),
                    timeout=120)
    assert got == ["True", str(os.cpu_count())]
