"""Floors: the least time any kernel moving the same bytes, or any training epoch doing
the same matrix products, can take on this machine, measured in the same run.

A kernel row's floor is a bare parallel Numba loop over the row's arrays (``floor``);
an MLP epoch's is its matrix products alone, NumPy's ``np.matmul`` into preallocated
buffers (``bare_products``).  A row's time over its floor says how much is left to
gain, and a target below floor/PyTorch cannot be met.
"""
from __future__ import annotations

import numpy as np

_KERNELS = {}


def kernels():
    """Memory floors: parallel Numba loops that move exactly the bytes of a kernel with
    one add per element, so no kernel that reads and writes the same arrays can be
    faster on this machine.  map1 and map2 store as ordinary stores do, reading each
    written line first; map1_nt and map2_nt write with streaming (non-temporal) stores,
    which skip that read, as the activations do for outputs of 16 MiB and more (Cython:
    all of them; Numba: relu and leaky_relu): an activation row of that size takes the
    streaming pair as its floor (with the ordinary pair, relu fwd+bwd 10M ran at
    0.66-0.81x its floor).  For the in-place updates (Adam, SGD) every written line is
    read anyway.  So a target clearly below floor/PyTorch cannot be met (the floor and a
    kernel are timed in different blocks: a kernel at 0.92-0.99x its floor has been seen,
    which is the run's noise, not a faster kernel).  Compiled on first use
    (never at import; the compile is outside every figure, as for every competitor)."""
    if not _KERNELS:
        from fastdl.benchmarks import _floor_kernels as k

        _KERNELS.update(map1=k.map1, map2=k.map2, map1_nt=k.map1_nt, map2_nt=k.map2_nt,
                        adam=k.adam, sgd=k.sgd)
    return _KERNELS


def activation(n):
    """forward + backward's bytes: streamed where the activations stream their output"""
    from fastdl._kernels.numba._stream import STREAM_MIN_BYTES, STREAMS

    r = np.random.default_rng(0)
    x, dy = r.standard_normal(n, dtype=np.float32), r.standard_normal(n, dtype=np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)
    zero = np.float32(0)
    nt = "_nt" if STREAMS and y.nbytes >= STREAM_MIN_BYTES else ""

    def f():
        k = kernels()
        k["map1" + nt](x, y, zero)
        k["map2" + nt](dy, x, dx)
    return f


def update(name, n, arrays):
    # np.full, not np.zeros: a calloc'd array that is only read (the gradient) stays
    # mapped to the kernel's shared zero page and reads from cache: the Adam floor then
    # moved 24 of its 28 bytes an element from memory (10M: 6.5 ms against 7.4 ms)
    bufs = [np.full(n, 1e-3, np.float32) for _ in range(arrays)]
    return lambda: kernels()[name](*bufs)


def bare_products(X, bs):
    """The matrix products of one training epoch alone, as the floor of a step."""
    r = np.random.default_rng(0)
    Ws = [r.standard_normal(s, dtype=np.float32) for s in ((784, 512), (512, 256), (256, 10))]
    n = X.shape[0]
    acts = [np.empty((bs, 784), np.float32), np.empty((bs, 512), np.float32),
            np.empty((bs, 256), np.float32), np.empty((bs, 10), np.float32)]
    grads = [np.empty(W.shape, np.float32) for W in Ws]

    def epoch():
        for s in range(0, n, bs):
            m = min(bs, n - s)
            a = [t[:m] for t in acts]
            a[0][...] = X[s:s + m]
            for i, W in enumerate(Ws):
                np.matmul(a[i], W, out=a[i + 1])
            for i in (2, 1, 0):
                np.matmul(a[i].T, a[i + 1], out=grads[i])
                if i:
                    np.matmul(a[i + 1], Ws[i].T, out=a[i])
    return epoch


def floor(spec):
    """The floor callable of a kernel row's spec (None where it has none)."""
    n = spec["data"][1]  # the element count: activation_data(n), optim_data(n)
    if spec["floor"] == "activation":
        return activation(n)
    if spec["floor"] in ("adam", "sgd"):
        return update(spec["floor"], n, 4 if spec["floor"] == "adam" else 3)
    return None
