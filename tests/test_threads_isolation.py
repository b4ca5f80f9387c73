"""What fastdl leaves alone (fastdl/_threads.py): the environment, PyTorch's and
NumPy's thread settings, whatever the import order; and its results, whatever its
thread count.  The probes run in fresh interpreters: what is loaded before fastdl is
what they vary."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
import fastdl.functional as F

TORCH = importlib.util.find_spec("torch") is not None
TWO = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs")

# what a user's program does with fastdl: every backend's kernels at sizes that run
# parallel regions, a dense layer (BLAS), a training step, the settings and info()
_USE_FASTDL = """
import numpy as np, fastdl, fastdl.functional as F
from fastdl import nn
x = np.linspace(-3, 3, 1 << 18).astype(np.float32)
for be in fastdl.backends():
    F.sigmoid_backward(x, F.gelu(x, backend=be), backend=be)
    F.dense_forward(x.reshape(512, 512), x.reshape(512, 512)[:, :64], None, "relu", backend=be)
    m = nn.Sequential(nn.Dense(64, 32, "relu"), nn.Dense(32, 3), seed=0, backend=be)
    m.fit(x[:64 * 128].reshape(128, 64), np.arange(128) % 3, epochs=1, batch_size=32, verbose=0)
fastdl.set_num_threads(1)
F.relu(x)
fastdl.info()
"""

_ENV_PROBE = """
import os, sys
before = dict(os.environ)
if sys.argv[1] == "numpy-first":
    import numpy
if sys.argv[1] == "torch-first":
    import torch
""" + _USE_FASTDL + """
after = dict(os.environ)
print(sorted(set(after.items()) ^ set(before.items())))
"""


def run_probe(code, *args, env=None, drop=(), timeout=300):
    """``code`` in a fresh interpreter with this environment minus ``drop`` plus ``env``;
    its last line of output."""
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env or {})
    out = subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("order", ["fastdl-first", "numpy-first"]
                         + (["torch-first"] if TORCH else []))
def test_environment_left_as_it_was(order):
    # import fastdl used to set OMP_WAIT_POLICY and OPENBLAS_THREAD_TIMEOUT for the
    # whole process (PyTorch's OpenMP read the first: its epoch 1.4-3x slower)
    assert run_probe(_ENV_PROBE, order, drop=("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT",
                                                "KMP_DUPLICATE_LIB_OK")) == "[]"


_TORCH_PROBE = """
import ctypes, sys
first, count = sys.argv[1], int(sys.argv[2])
if first == "fastdl":
    import fastdl
import torch
if count:
    torch.set_num_threads(count)
gomp = ctypes.CDLL("libgomp.so.1")
def settings():
    return (torch.get_num_threads(), torch.get_num_interop_threads(),
            gomp.omp_get_max_threads(), gomp.omp_get_max_active_levels(),
            gomp.omp_get_dynamic())
before = settings()
t = torch.randn(256, 256)
(t @ t).relu_().sum()
""" + _USE_FASTDL + """
fastdl.set_num_threads(2)
from fastdl import _threads
from fastdl._kernels.cython import _threads as omp
inside = _threads.scoped(omp.get_num_threads, blas=True)()  # fastdl's count, in a kernel
(t @ t).relu_().sum()
print(before == settings(), inside, before, settings())
"""


@pytest.mark.skipif(not TORCH, reason="PyTorch is not installed")
@pytest.mark.skipif("cython" not in fastdl.backends(), reason="needs the Cython backend")
@TWO
@pytest.mark.parametrize("first", ["torch", "fastdl"])
@pytest.mark.parametrize("count", [0, 1])
def test_torch_thread_settings_left_as_they_were(first, count):
    # PyTorch's wheel ships libgomp.so.1: whichever loads first serves the Cython
    # kernels and Numba's omp layer too, so OpenMP's count is PyTorch's; Numba's pool
    # launch sets it and enables nested regions in the calling thread
    same, inside, *_ = run_probe(_TORCH_PROBE, first, str(count),
                                 drop=("OMP_NUM_THREADS",)).split(maxsplit=2)
    assert same == "True", _
    assert inside == "2"   # and fastdl's own count still reaches its kernels


_BLAS_PROBE = """
import sys
import numpy as np, scipy.linalg
from threadpoolctl import threadpool_info, threadpool_limits
if sys.argv[1] != "-":
    threadpool_limits(int(sys.argv[1]), user_api="blas")  # the user's own limit
def counts():
    return sorted((d["filepath"], d["num_threads"]) for d in threadpool_info()
                  if d["user_api"] == "blas")
before = counts()
""" + _USE_FASTDL + """
fastdl.set_num_threads(2)
x = np.ones((256, 256), np.float32)
F.dense_forward(x, x, backend="cython")
from fastdl import _threads
inside = _threads.scoped(counts, blas=True)()
print(before == counts(), len(before), sorted({n for _, n in inside}))
"""


@pytest.mark.skipif("cython" not in fastdl.backends(), reason="needs the Cython backend")
@TWO
@pytest.mark.parametrize("limit", ["-", "1"])
def test_blas_thread_counts_left_as_they_were(limit):
    # set_num_threads used to limit every BLAS of the process (NumPy's np.matmul too);
    # now fastdl's count holds inside its kernels only
    same, count, inside = run_probe(_BLAS_PROBE, limit).split(maxsplit=2)
    assert same == "True" and int(count) >= 2 and inside == "[2]"


_FORK_PROBE = """
import os, threading
import numpy as np, scipy.linalg
from threadpoolctl import threadpool_info
import fastdl, fastdl.functional as F
def counts():
    return sorted(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")
fastdl.set_num_threads(2)
x = np.ones((16, 8, 16, 16), np.float32)
W = np.ones((8, 8, 3, 3), np.float32)
F.conv2d_forward(x, W, backend="cython")  # SciPy's OpenBLAS loaded
before = counts()
busy = threading.Event()
stop = False
def loop():
    while not stop:
        F.conv2d_forward(x, W, backend="cython")  # a scoped call: BLAS at 1 inside
        busy.set()
t = threading.Thread(target=loop)
t.start()
busy.wait()
r, w = os.pipe()
pid = os.fork()  # while the thread may be inside a call that never returns in the child
if pid == 0:
    F.conv2d_forward(x, W, backend="cython")  # the child's own calls return
    os.write(w, repr(counts() == before).encode())
    os._exit(0)
os.waitpid(pid, 0)
stop = True
t.join()
print(os.read(r, 100).decode(), counts() == before)
"""


@pytest.mark.skipif("cython" not in fastdl.backends(), reason="needs the Cython backend")
@TWO
def test_blas_counts_restored_in_a_child_forked_during_a_call():
    # the child inherited the other thread's call under way, which never returned there,
    # so its BLAS counts stayed at fastdl's for good (in every run of 7)
    results = {run_probe(_FORK_PROBE) for _ in range(3)}
    assert results == {"True True"}, results


_LAYER_PROBE = """
import ctypes, os, sys
if sys.argv[1] == "preload":
    ctypes.CDLL("libgomp.so.1")  # an OpenMP runtime loaded before fastdl
import numpy as np, numba, fastdl, fastdl.functional as F
fastdl.set_num_threads(2)
F.relu(np.ones(1 << 18, np.float32), backend="numba")  # a parallel kernel: picks the layer
print(numba.threading_layer(), fastdl.info()["numba_threading_layer"])
"""


@pytest.mark.skipif("numba" not in fastdl.backends(), reason="needs the Numba backend")
@pytest.mark.parametrize("env, preload, want", [
    ({}, "", "omp omp"),          # one OpenMP pool for both compiled backends
    ({}, "preload", "omp omp"),   # whoever loaded libgomp first (PyTorch, say)
    ({"NUMBA_THREADING_LAYER": "workqueue"}, "", "workqueue workqueue"),  # the user's
])
def test_numba_threading_layer(env, preload, want):
    assert run_probe(_LAYER_PROBE, preload or "-", env=env,
                     drop=("NUMBA_THREADING_LAYER",)) == want


# ------------------------------------------------------- results, whatever the count
@pytest.fixture
def fixed_threads():
    from fastdl import _threads as T

    saved = dict(T._state)
    omp = T._omp()
    if omp is not None:
        omp.set_blas_spin(0.0)  # parallel regions even right after a GEMM
    yield
    T._state.update(saved)
    T._reset(saved["adaptive"])
    if omp is not None:
        omp.set_blas_spin(T.blas_spin_seconds())


def _ops(be, r):
    """name -> outputs of a kernel call at a size that runs parallel regions."""
    n = 1 << 18
    x = r.standard_normal(n, dtype=np.float32)
    dy = r.standard_normal(n, dtype=np.float32)
    X = x.reshape(512, 512)
    W = r.standard_normal((512, 256), dtype=np.float32) * np.float32(0.05)
    labels = np.arange(512) % 512
    out = {}
    for name in ("sigmoid", "tanh", "relu", "gelu", "silu", "elu", "leaky_relu"):
        out[name] = getattr(F, name)(x, backend=be)
        out[name + "_backward"] = getattr(F, name + "_backward")(dy, x, backend=be)
    out["softmax"] = F.softmax(X, backend=be)
    out["log_softmax_backward"] = F.log_softmax_backward(X, F.log_softmax(X, backend=be),
                                                         backend=be)
    out["dense_forward"] = F.dense_forward(X, W, W[0], "gelu", backend=be)
    out["dense_backward"] = F.dense_backward(dy.reshape(512, 512)[:, :256], X, W, backend=be)
    out["maxout"] = F.maxout(X, 4, backend=be)
    out["dropout"] = F.dropout(x, 0.3, np.random.default_rng(1), backend=be)
    w, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
    F.adam_update_(w, dy, m, v, 1, backend=be)
    out["adam_update_"] = (w, m, v)
    out["softmax_cross_entropy"] = F.softmax_cross_entropy(X, labels, backend=be)
    out["mse"] = F.mse(x, dy, backend=be)
    return out


def _flat(v):
    return [np.asarray(a) for a in (v if isinstance(v, tuple) else (v,)) if a is not None]


@TWO
@pytest.mark.parametrize("be", [b for b in ("numba", "cython") if b in fastdl.backends()])
def test_results_do_not_depend_on_the_thread_count(be, fixed_threads):
    results = []
    for n in (1, 2):
        fastdl.set_num_threads(n)
        results.append(_ops(be, np.random.default_rng(0)))
    for name, one in results[0].items():
        for a, b in zip(_flat(one), _flat(results[1][name])):
            if name in REDUCING or name in GEMM:
                # sums within a row or over the array: the serial and the parallel code
                # (Numba compiles them apart) may add in another order; GEMMs split
                # between threads: BLAS may round a block's dot products differently
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max(),
                                           err_msg=name)
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)


# measured 2026-12-07: Numba's softmax (1 ulp in 12% of the elements) and
# log_softmax_backward (cancellation: up to 4e-4 relative) differ between 1 and 2 threads
REDUCING = {"softmax", "log_softmax_backward", "softmax_cross_entropy", "mse"}
# measured 2026-12-07 on an AVX2 Zen 3 (OpenBLAS 0.3.30, Haswell kernels): the rows of a
# block of a product differ in the last bits from the same rows of the whole product,
# single-threaded too, and NumPy's own matmul differs between 1 and 2 threads (equal bit
# for bit on the AVX-512 Zen 4 before)
GEMM = {"dense_forward", "dense_backward"}


@TWO
def test_training_does_not_depend_on_the_thread_count(fixed_threads):
    from fastdl import nn

    r = np.random.default_rng(0)
    X = r.random((512, 64), dtype=np.float32)
    y = r.integers(0, 10, 512)
    weights = []
    for n in (1, 2):
        fastdl.set_num_threads(n)
        m = nn.Sequential(nn.Dense(64, 256, "relu"), nn.Dense(256, 10), seed=0)
        m.fit(X, y, epochs=2, batch_size=64, verbose=0, seed=0)
        weights.append(m.parameters().data.copy())
    # the GEMMs split their output between threads, not their sums: the same weights up
    # to the order of the few reductions (gradient of the bias, the loss)
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="needs Numba")
def test_info_does_not_import_numba():
    # finding Numba's omppool submodule imported Numba, whose bad setting then failed
    # info() in a program that runs the Cython kernels only
    code = ("import sys, fastdl; i = fastdl.info(); "
            "print(i['numba_threading_layer'], 'numba' in sys.modules)")
    assert run_probe(code, env={"NUMBA_NUM_THREADS": "0"}) in ("omp False",
                                                              "workqueue False")


_FIRST_USE_RACE = """
import threading, numpy as np, fastdl
import fastdl.functional as F
from fastdl import _threads as T
inside, a_done = threading.Event(), threading.Event()
default = T.default_threads
def slow_default():  # the first kernel call's lazy decision, caught in the middle
    inside.set()
    a_done.wait(1.0)
    return default()
T.default_threads = slow_default
def first_kernel():
    F.relu(np.ones(10, np.float32), backend="cython")
def fixed_count():
    inside.wait()
    fastdl.set_num_threads(3)
    a_done.set()
ts = [threading.Thread(target=first_kernel), threading.Thread(target=fixed_count)]
[t.start() for t in ts]; [t.join() for t in ts]
print(T._state["requested"], T._state["effective"], T._state["adaptive"], T._omp().get_count())
"""


@pytest.mark.skipif("cython" not in fastdl.backends(), reason="needs the Cython backend")
def test_the_first_kernel_call_beside_set_num_threads_keeps_one_count():
    # the count, decided lazily at the first kernel call outside the lock, interleaved
    # with set_num_threads in another thread: effective 2 with OpenMP at 3, or adaptive
    # left on (27 of 30 fresh processes with a short switch interval)
    assert run_probe(_FIRST_USE_RACE, env={"OMP_NUM_THREADS": ""}) == "3 3 False 3"


_HELD_LOCKS_PROBE = """
import os, threading, time
import numpy as np, fastdl
from fastdl import _threads as T, nn
m = nn.Sequential(nn.Dense(4, 2), seed=0)
X = np.ones((3, 4), np.float32)
m.predict(X)
setup_held, model_held = threading.Event(), threading.Event()
setup_done, forked = threading.Event(), threading.Event()
def setup():  # a first Numba set-up, under way at the fork: the fork waits for it
    with T._lock:
        setup_held.set()
        setup_done.wait()
def predict():  # a predict in another thread, under way at the fork and after it
    with m._lock:
        model_held.set()
        forked.wait()
threads = [threading.Thread(target=setup), threading.Thread(target=predict)]
for t in threads:
    t.start()
setup_held.wait()
model_held.wait()
threading.Timer(0.3, setup_done.set).start()
r, w = os.pipe()
pid = os.fork()  # waits for T._lock (released at 0.3 s); m's lock is still held then
if pid == 0:
    ok = T._lock.acquire(timeout=5) and m._lock.acquire(timeout=5)
    os.write(w, (repr(ok) + " " + repr(m.predict(X).shape)).encode())
    os._exit(0)
for _ in range(200):  # a hung child is killed after 20 s
    if os.waitpid(pid, os.WNOHANG)[0]:
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.write(w, b"hung")
forked.set()
for t in threads:
    t.join()
print(os.read(r, 100).decode())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_fastdls_locks_are_held_can_take_them():
    # a child forked while another thread held fastdl's set-up lock or a model's lock
    # waited for it for ever (the thread that held it does not exist there)
    assert run_probe(_HELD_LOCKS_PROBE) == "True (3,)"
