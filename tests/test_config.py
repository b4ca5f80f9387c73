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


def test_use_backend_is_per_thread():
    # a block in one thread set every thread's backend, and two threads' blocks left
    # one of them as the default after both ended
    import threading

    before = fastdl.get_backend()
    seen, inside = {}, threading.Barrier(2)

    def block(name):
        with fastdl.use_backend(name):
            inside.wait()
            seen[name] = fastdl.get_backend()
            inside.wait()

    threads = [threading.Thread(target=block, args=(b,)) for b in ("numpy", "cython")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"numpy": "numpy", "cython": "cython"}
    assert fastdl.get_backend() == before
    with fastdl.use_backend("numpy"):
        other = []
        t = threading.Thread(target=lambda: other.append(fastdl.get_backend()))
        t.start()
        t.join()
        assert other == [before]


def test_set_backend_rejects_unknown():
    with pytest.raises(ValueError, match="backend"):
        fastdl.set_backend("cuda")
    with pytest.raises(TypeError, match="backend"):
        fastdl.set_backend(3)


def test_threads_roundtrip():
    n0 = fastdl.get_num_threads()
    adaptive0 = fastdl.info()["threads"]["adaptive"]
    try:
        fastdl.set_num_threads(1)
        assert fastdl.get_num_threads() == 1
        assert fastdl.info()["threads"]["effective"] == 1
    finally:
        fastdl.set_num_threads(n0, adaptive=adaptive0)
    assert fastdl.get_num_threads() == n0


def test_info_keys():
    d = fastdl.info()
    for key in ("versions", "backends", "num_threads", "threads", "blas", "gemm", "cpu",
                "environment"):
        assert key in d
    assert d["versions"]["fastdl"] == fastdl.__version__
    assert set(d["threads"]) >= {"requested", "effective", "adaptive", "cpus_allowed"}
    assert "OMP_WAIT_POLICY" in d["environment"] and "OPENBLAS_CORETYPE" in d["environment"]
    assert d["cpu"]["model"] and d["cpu"]["count"] >= 1


_THREADS_PROBE = """
import sys
import numpy as np, numba, fastdl, fastdl.functional as F
from fastdl import _threads
from fastdl._kernels.cython import _threads as omp
if sys.argv[1] != "-":
    fastdl.set_num_threads(int(sys.argv[1]))
F.relu(np.ones(1 << 18, np.float32), backend="numba")  # launches Numba's pool
inside = _threads.scoped(omp.get_num_threads, blas=True)()  # OpenMP's count in a kernel
print(fastdl.get_num_threads(), numba.get_num_threads(), inside)
"""


@pytest.mark.skipif(not {"numba", "cython"} <= set(fastdl.backends()),
                    reason="needs both compiled backends")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell 1 from the default")
@pytest.mark.parametrize("omp, call, want", [
    (None, "1", "1 1 1"),   # Numba's pool launch used to reset OpenMP's count to 2
    ("1", "-", "1 1 1"),    # OMP_NUM_THREADS is the count, as in PyTorch, for Numba too
    ("1,1", "-", "1 1 1"),  # its first entry
    (None, "2", "2 {m} 2"),
])
def test_every_backend_gets_the_same_thread_count(omp, call, want):
    # fastdl's count, Numba's and OpenMP's inside a kernel (the Cython kernels'), after a
    # Numba kernel
    got = run_probe(_THREADS_PROBE, call, drop=("OMP_NUM_THREADS",),
                    env=None if omp is None else {"OMP_NUM_THREADS": omp})
    m = min(2, int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count())))
    assert got == want.format(m=m).split()


@pytest.mark.skipif(not {"numba", "cython"} <= set(fastdl.backends()),
                    reason="needs both compiled backends")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell 1 from the default")
def test_thread_count_reaches_kernels_called_from_other_threads():
    # OpenMP's and Numba's counts belong to the thread that sets them: after
    # set_num_threads(1) in this thread, a kernel called from a threading.Thread ran
    # on every core.  Numba is started here first, so the worker starts from the defaults.
    import threading

    import numba

    import fastdl.functional as F
    from fastdl import _threads as T
    from fastdl._kernels.cython import _threads

    n0, adaptive0 = fastdl.get_num_threads(), T.adaptive()
    seen = []
    probe = T.scoped(_threads.get_num_threads, blas=True)

    def work():
        F.relu(np.ones(8, np.float32), backend="numba")
        F.relu(np.ones(8, np.float32), backend="cython")
        seen.append((numba.get_num_threads(), probe()))

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
        fastdl.set_num_threads(n0, adaptive=adaptive0)


_CONCURRENT_PROBE = """
import threading
import numpy as np, numba, fastdl, fastdl.functional as F
from fastdl._registry import kernel
fastdl.set_num_threads(2)
x = np.linspace(-5, 5, 1 << 20).astype(np.float32)
ref = F.sigmoid(x, backend="numpy")
ref_sq = kernel("sum_squares", "numpy")(x)
img = np.linspace(-1, 1, 8 * 3 * 10 * 10).astype(np.float32).reshape(8, 3, 10, 10)
filt = np.linspace(-1, 1, 4 * 3 * 3 * 3).astype(np.float32).reshape(4, 3, 3, 3)
ref_conv = F.conv2d_forward(img, filt, None, 1, 1, backend="numpy")
ref_grads = F.conv2d_backward(ref_conv, img, filt, 1, 1, backend="numpy")
bad = []

def work():
    # an elementwise kernel, the one that picks its parallel twin by itself, and the
    # convolution, whose kernels run their own threads over BLAS
    for _ in range(20):
        if not np.allclose(F.sigmoid(x, backend="numba"), ref, rtol=1e-5):
            bad.append(1)
        if not np.isclose(kernel("sum_squares", "numba")(x), ref_sq, rtol=1e-9):
            bad.append(2)
        if not np.allclose(F.conv2d_forward(img, filt, None, 1, 1, backend="numba"),
                           ref_conv, rtol=1e-4, atol=1e-4):
            bad.append(3)
        got = F.conv2d_backward(ref_conv, img, filt, 1, 1, backend="numba")
        if not all(np.allclose(a, r, rtol=1e-4, atol=1e-3) for a, r in zip(got, ref_grads)):
            bad.append(4)

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
