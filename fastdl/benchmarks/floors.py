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
        from numba import prange

        from fastdl._kernels.numba._jit import jit
        from fastdl._kernels.numba._stream import sfence, stream
        from fastdl._kernels.numba.activations import BLOCK, CHUNK, _head

        @jit(parallel=True)
        def map1(x, y, c):
            # the forward of an activation: read x, write y (c = 0 is not folded away)
            for i in prange(x.shape[0]):
                y[i] = x[i] + c

        @jit(parallel=True)
        def map2(a, b, y):
            # the backward of an activation: read dy and x, write dx
            for i in prange(a.shape[0]):
                y[i] = a[i] + b[i]

        @jit(parallel=True)
        def adam(p, g, m, v):
            # Adam's traffic: read p, g, m, v; write p, m, v (28 B a float32 parameter)
            for i in prange(p.shape[0]):
                gi = g[i]
                p[i] += gi
                m[i] += gi
                v[i] += gi

        @jit(parallel=True)
        def sgd(w, g, vel):
            # momentum SGD's traffic: read w, g, vel; write w, vel
            for i in prange(w.shape[0]):
                u = vel[i] + g[i]
                vel[i] = u
                w[i] += u

        @jit
        def span1_nt(x, y, c):
            # y = x + c over one chunk, written BLOCK elements at a time through a buffer
            # in L1 with streaming stores, as the streaming activations write
            n = y.shape[0]
            i = min(_head(y), n)
            for j in range(i):
                y[j] = x[j] + c
            buf = np.empty(BLOCK, y.dtype)
            while i + BLOCK <= n:
                # slices, as the activations' blocks: indexed as x[i + j] this ran 1.8x slower
                xb = x[i:i + BLOCK]
                for j in range(BLOCK):
                    buf[j] = xb[j] + c
                stream(y, i, buf)
                i += BLOCK
            for j in range(i, n):
                y[j] = x[j] + c
            sfence()

        @jit
        def span2_nt(a, b, y):
            # y = a + b over one chunk, as span1_nt
            n = y.shape[0]
            i = min(_head(y), n)
            for j in range(i):
                y[j] = a[j] + b[j]
            buf = np.empty(BLOCK, y.dtype)
            while i + BLOCK <= n:
                ab, bb = a[i:i + BLOCK], b[i:i + BLOCK]
                for j in range(BLOCK):
                    buf[j] = ab[j] + bb[j]
                stream(y, i, buf)
                i += BLOCK
            for j in range(i, n):
                y[j] = a[j] + b[j]
            sfence()

        @jit(parallel=True)
        def map1_nt(x, y, c):
            # the forward of a streaming activation: read x, stream y
            for k in prange((y.shape[0] + CHUNK - 1) // CHUNK):
                lo = k * CHUNK
                hi = min(lo + CHUNK, y.shape[0])
                span1_nt(x[lo:hi], y[lo:hi], c)

        @jit(parallel=True)
        def map2_nt(a, b, y):
            # the backward of a streaming activation: read dy and x, stream dx
            for k in prange((y.shape[0] + CHUNK - 1) // CHUNK):
                lo = k * CHUNK
                hi = min(lo + CHUNK, y.shape[0])
                span2_nt(a[lo:hi], b[lo:hi], y[lo:hi])

        _KERNELS.update(map1=map1, map2=map2, map1_nt=map1_nt, map2_nt=map2_nt,
                              adam=adam, sgd=sgd)
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
