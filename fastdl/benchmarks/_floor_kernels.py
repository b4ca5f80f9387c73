"""The memory-floor kernels of ``floors.kernels`` (its docstring says what each one
stands for).  At module level, not defined inside a function: Numba's cache keys a
closure by its captured objects, which differ in every process, so the closures were
compiled again in each bench run and their cache grew by one entry each time."""
import numpy as np
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
