"""``fastdl bench``: every kernel and backend against the NumPy reference, and
against PyTorch when it is installed, in one process, interleaved.

Method (see shared/BENCH.md for why):
* every competitor of a row runs in the same process; rounds interleave them
  (A, B, C, A, B, C, ...) in a rotating order, and the table reports medians;
* before each timed block the same call runs untimed for a short while, so that
  BLAS threads still spinning from a previous row do not bill this one;
* JIT compilation happens in a warm-up call before any timing; the cold compile
  time and the load from Numba's cache are measured separately, in fresh processes;
* threads are pinned on both sides (``fastdl.set_num_threads``,
  ``torch.set_num_threads``);
* memory-bound rows report GB/s beside a one-pass copy of the same bytes measured
  in the same run; GEMM-bound rows report GFLOP/s beside a bare ``np.matmul``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

BACKENDS = ("numpy", "numba", "cython")


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="small sizes, fewer rounds (< 1 min)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the figures as JSON")
    p.add_argument("--plot", default=None, metavar="PATH", help="bar chart of the ratios (PNG)")
    p.add_argument("--threads", type=int, default=None, help="threads on every side "
                   "(default: fastdl.get_num_threads(), i.e. OMP_NUM_THREADS or all cores)")
    p.add_argument("--only", default=None, help="comma-separated substrings of row names")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per row")
    p.add_argument("--no-startup", action="store_true",
                   help="skip the start-up and compile-time measurements (subprocesses)")


# --------------------------------------------------------------------------- timing
def _time_block(fn, loops):
    t = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - t) / loops


def _run_for(fn, seconds):
    end = time.perf_counter() + seconds
    n = 0
    while True:
        fn()
        n += 1
        if time.perf_counter() >= end:
            return n


def measure(fns: dict, rounds: int, sample: float, pre: float, pair=None) -> dict:
    """Median seconds per call of each function, interleaved over ``rounds`` rounds.

    Each round runs every function untimed for ``pre`` seconds, then times a block
    of calls lasting about ``sample`` seconds; the order rotates from round to round.
    With ``pair`` (the key of a baseline), every other block is followed by a block
    of the baseline (after its own ``pre``), and ``paired`` is the median of the
    per-round time ratios: drift of the machine between rounds cancels out of it."""
    loops = {}
    for k, fn in fns.items():
        fn()  # compile / first-touch outside every figure
        t = _time_block(fn, 1)
        loops[k] = max(1, int(sample / max(t, 1e-7)))
    samples = {k: [] for k in fns}
    ratios = {k: [] for k in fns if pair is not None and k != pair}
    keys = list(fns)
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            if pre > 0:
                _run_for(fns[k], pre)
            t = _time_block(fns[k], loops[k])
            samples[k].append(t)
            if k in ratios:
                if pre > 0:
                    _run_for(fns[pair], pre)
                ratios[k].append(t / _time_block(fns[pair], loops[pair]))
    out = {k: {"median": statistics.median(v), "min": min(v), "mean": statistics.fmean(v),
               "rounds": len(v), "loops": loops[k]} for k, v in samples.items()}
    for k, v in ratios.items():
        out[k]["paired"] = statistics.median(v)
    return out


# ---------------------------------------------------------------------------- rows
@dataclass
class Row:
    name: str            # what is timed, with its size
    group: str           # "activation", "loss", "dense", "optimizer", "training", ...
    kind: str            # "memory" (work = bytes), "gemm" (work = flops), "step"
    work: float          # bytes moved or flops per call (0 if not meaningful)
    fns: dict            # competitor -> zero-argument callable
    baseline: tuple | None = None   # ("copy" | "matmul", callable)
    floor: object = None            # callable: the row's memory floor (see _floors)
    ops: tuple = ()                 # the registry ops the row runs (every op has a row)
    note: str = ""
    results: dict = field(default_factory=dict)


def _rng():
    return np.random.default_rng(0)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _copy_baseline(nbytes, dtype=np.float32):
    """A one-pass copy moving ``nbytes`` (read + write), for the GB/s column."""
    n = max(1, int(nbytes // (2 * np.dtype(dtype).itemsize)))
    a = np.ones(n, dtype)
    b = np.empty_like(a)
    return ("copy", lambda: np.copyto(b, a))


_FLOOR_KERNELS = {}


def _floors():
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
    if not _FLOOR_KERNELS:
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

        _FLOOR_KERNELS.update(map1=map1, map2=map2, map1_nt=map1_nt, map2_nt=map2_nt,
                              adam=adam, sgd=sgd)
    return _FLOOR_KERNELS


def _activation_floor(n):
    """forward + backward's bytes: streamed where the activations stream their output"""
    from fastdl._kernels.numba._stream import STREAM_MIN_BYTES, STREAMS

    r = _rng()
    x, dy = r.standard_normal(n, dtype=np.float32), r.standard_normal(n, dtype=np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)
    zero = np.float32(0)
    nt = "_nt" if STREAMS and y.nbytes >= STREAM_MIN_BYTES else ""

    def f():
        k = _floors()
        k["map1" + nt](x, y, zero)
        k["map2" + nt](dy, x, dx)
    return f


def _update_floor(name, n, arrays):
    # np.full, not np.zeros: a calloc'd array that is only read (the gradient) stays
    # mapped to the kernel's shared zero page and reads from cache: the Adam floor then
    # moved 24 of its 28 bytes an element from memory (10M: 6.5 ms against 7.4 ms)
    bufs = [np.full(n, 1e-3, np.float32) for _ in range(arrays)]
    return lambda: _floors()[name](*bufs)


ACT_PARAMS = {"leaky_relu": {"alpha": 0.1}, "elu": {"alpha": 1.0}}


def activation_rows(n, backends, torch):
    import fastdl.functional as F

    rows = []
    r = _rng()
    x = r.standard_normal(n, dtype=np.float32)
    dy = r.standard_normal(n, dtype=np.float32)
    y = np.empty_like(x)
    dx = np.empty_like(x)
    floor = _activation_floor(n)
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu"):
        fwd, bwd = getattr(F, name), getattr(F, name + "_backward")
        kw = ACT_PARAMS.get(name, {})
        fns = {}
        for be in backends:
            def f(be=be, fwd=fwd, bwd=bwd, kw=kw):
                fwd(x, out=y, backend=be, **kw)
                bwd(dy, x, out=dx, backend=be, **kw)
            fns[be] = f
        if torch is not None:
            fns["torch"] = _torch_activation(torch, name, x, dy)
        rows.append(Row(f"{name} fwd+bwd {_size(n)}", "activation", "memory", 20.0 * n, fns,
                        _copy_baseline(20.0 * n), floor=floor, ops=(name, name + "_backward")))
    return rows


def _torch_activation(torch, name, x, dy):
    tf = torch.nn.functional
    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
           "leaky_relu": lambda t: tf.leaky_relu(t, 0.1), "elu": lambda t: tf.elu(t, 1.0),
           "gelu": lambda t: tf.gelu(t, approximate="none"), "silu": tf.silu}[name]
    return _torch_fwd_bwd(torch, act, x, dy)


def _torch_fwd_bwd(torch, fn, x, dy=None):
    """PyTorch autograd: ``fn(x)`` then its backward (from ``dy``, or from a scalar
    loss when ``dy`` is None), into a fresh gradient each call."""
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    dyt = None if dy is None else torch.from_numpy(dy)

    def f():
        xt.grad = None
        fn(xt).backward(dyt)
    return f


def softmax_rows(shapes, backends, torch):
    rows = []
    for n, c in shapes:
        rows += _softmax_shape_rows(n, c, backends, torch)
    return rows


def _softmax_shape_rows(n, c, backends, torch):
    # one function call per shape: the closures below must keep this shape's arrays
    import fastdl.functional as F

    rows = []
    r = _rng()
    x = (r.standard_normal((n, c)) * 3).astype(np.float32)
    dy = r.standard_normal((n, c)).astype(np.float32)
    labels = r.integers(0, c, n)
    y = np.empty_like(x)
    dx = np.empty_like(x)
    for name in ("softmax", "log_softmax"):
        fwd, bwd = getattr(F, name), getattr(F, name + "_backward")
        fns = {}
        for be in backends:
            def f(be=be, fwd=fwd, bwd=bwd):
                fwd(x, out=y, backend=be)
                bwd(dy, y, out=dx, backend=be)
            fns[be] = f
        if torch is not None:
            fns["torch"] = _torch_rowwise(torch, name, x, dy)
        rows.append(Row(f"{name} fwd+bwd {n}x{c}", "softmax", "memory", 20.0 * n * c, fns,
                        _copy_baseline(20.0 * n * c), ops=(name, name + "_backward")))
    fns = {}
    for be in backends:
        fns[be] = (lambda be=be: F.softmax_cross_entropy(x, labels, backend=be))
    if torch is not None:
        fns["torch"] = _torch_ce(torch, x, labels)
    rows.append(Row(f"softmax_cross_entropy fwd+bwd {n}x{c}", "loss", "memory",
                    8.0 * n * c, fns, _copy_baseline(8.0 * n * c),
                    ops=("softmax_cross_entropy",)))
    return rows


def _torch_rowwise(torch, name, x, dy):
    fn = torch.softmax if name == "softmax" else torch.log_softmax
    return _torch_fwd_bwd(torch, lambda t: fn(t, -1), x, dy)


def _torch_ce(torch, x, labels):
    lt = torch.from_numpy(labels)
    return _torch_fwd_bwd(torch, lambda t: torch.nn.functional.cross_entropy(t, lt), x)


def loss_rows(n, backends, torch):
    import fastdl.functional as F

    r = _rng()
    p = r.standard_normal((n, 1)).astype(np.float32)
    t = r.standard_normal((n, 1)).astype(np.float32)
    yb = (r.random((n, 1)) < 0.5).astype(np.float32)
    rows = []
    pairs = {
        "mse": (lambda be: (F.mse(p, t, backend=be), F.mse_backward(p, t, backend=be))),
        "binary_cross_entropy_with_logits": (
            lambda be: (F.binary_cross_entropy_with_logits(p, yb, backend=be),
                        F.binary_cross_entropy_with_logits_backward(p, yb, backend=be))),
    }
    for name, call in pairs.items():
        fns = {be: (lambda be=be, call=call: call(be)) for be in backends}
        if torch is not None:
            tt = torch.from_numpy(t if name == "mse" else yb)
            tf = torch.nn.functional
            lf = tf.mse_loss if name == "mse" else tf.binary_cross_entropy_with_logits
            fns["torch"] = _torch_fwd_bwd(torch, lambda v, lf=lf, tt=tt: lf(v, tt), p)
        rows.append(Row(f"{name} fwd+bwd {_size(n)}", "loss", "memory", 12.0 * n, fns,
                        _copy_baseline(12.0 * n), ops=(name, name + "_backward")))
    return rows


def dense_rows(shapes, backends, torch):
    rows = []
    for n, k, m in shapes:
        rows += _dense_shape_rows(n, k, m, backends, torch)
    return rows


def _dense_shape_rows(n, k, m, backends, torch):
    # one function call per shape: the closures below must keep this shape's arrays
    import fastdl.functional as F

    rows = []
    r = _rng()
    x = r.standard_normal((n, k), dtype=np.float32)
    W = (r.standard_normal((k, m), dtype=np.float32) * 0.05)
    b = r.standard_normal(m, dtype=np.float32)
    y = np.empty((n, m), np.float32)
    dy = r.standard_normal((n, m), dtype=np.float32)
    bufs = (np.empty((n, k), np.float32), np.empty((k, m), np.float32),
            np.empty(m, np.float32))
    fns = {be: (lambda be=be: F.dense_forward(x, W, b, "relu", out=y, backend=be))
           for be in backends}
    if torch is not None:
        xt, Wt, bt = (torch.from_numpy(a) for a in (x, W, b))
        yt = torch.from_numpy(y.copy())

        def tfwd():
            torch.addmm(bt, xt, Wt, out=yt)
            torch.relu_(yt)
        fns["torch"] = tfwd
    yb = np.empty((n, m), np.float32)
    rows.append(Row(f"dense_forward+relu {n}x{k}x{m}", "dense", "gemm", 2.0 * n * k * m,
                    fns, ("matmul", lambda: np.matmul(x, W, out=yb)), ops=("dense_forward",)))
    fns = {be: (lambda be=be: F.dense_backward(dy, x, W, out=bufs, backend=be))
           for be in backends}
    if torch is not None:
        dyt = torch.from_numpy(dy)
        dxt, dWt = torch.from_numpy(bufs[0].copy()), torch.from_numpy(bufs[1].copy())
        dbt = torch.from_numpy(bufs[2].copy())

        def tbwd():
            torch.mm(dyt, Wt.t(), out=dxt)
            torch.mm(xt.t(), dyt, out=dWt)
            torch.sum(dyt, 0, out=dbt)
        fns["torch"] = tbwd
    b1, b2 = np.empty((n, k), np.float32), np.empty((k, m), np.float32)

    def mm2():
        np.matmul(dy, W.T, out=b1)
        np.matmul(x.T, dy, out=b2)
    rows.append(Row(f"dense_backward {n}x{k}x{m}", "dense", "gemm", 4.0 * n * k * m, fns,
                    ("matmul", mm2), ops=("dense_backward",)))
    return rows


def optimizer_rows(n, backends, torch):
    import fastdl.functional as F

    rows = []
    r = _rng()
    w0 = r.standard_normal(n, dtype=np.float32)
    g = r.standard_normal(n, dtype=np.float32) * np.float32(1e-3)
    state = {be: (w0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32))
             for be in backends}
    fns = {}
    for be in backends:
        w, m, v = state[be]
        fns[be] = (lambda be=be, w=w, m=m, v=v:
                   F.adam_update_(w, g, m, v, 1, lr=1e-3, backend=be))
    if torch is not None:
        fns["torch"] = _torch_adam(torch, w0, g)
    rows.append(Row(f"adam_update_ {_size(n)}", "optimizer", "memory", 28.0 * n, fns,
                    _copy_baseline(28.0 * n), floor=_update_floor("adam", n, 4),
                    ops=("adam_update",)))
    fns = {}
    for be in backends:
        w, vel = w0.copy(), np.zeros(n, np.float32)
        fns[be] = (lambda be=be, w=w, vel=vel:
                   F.sgd_update_(w, g, 0.01, momentum=0.9, velocity=vel, backend=be))
    if torch is not None:
        fns["torch"] = _torch_sgd(torch, w0, g)
    rows.append(Row(f"sgd_update_ momentum {_size(n)}", "optimizer", "memory", 20.0 * n, fns,
                    _copy_baseline(20.0 * n), floor=_update_floor("sgd", n, 3),
                    ops=("sgd_update",)))
    return rows


def _torch_adam(torch, w0, g):
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    p.grad = torch.from_numpy(g.copy())
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    return opt.step


def _torch_sgd(torch, w0, g):
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    p.grad = torch.from_numpy(g.copy())
    opt = torch.optim.SGD([p], lr=0.01, momentum=0.9, foreach=True)
    return opt.step


def mlp_rows(batches, n_rows, backends, torch):
    """One training epoch of a 784-512-256-10 ReLU MLP, softmax CE, Adam."""
    from fastdl import nn, optim

    rows = []
    r = _rng()
    X = r.random((n_rows, 784), dtype=np.float32)
    y = r.integers(0, 10, n_rows)
    for bs in batches:
        fns = {}
        for be in backends:
            model = nn.Sequential(nn.Dense(784, 512, "relu"), nn.Dense(512, 256, "relu"),
                                  nn.Dense(256, 10), seed=0, backend=be)
            opt = optim.Adam(model.parameters(), lr=1e-3)
            fns[be] = (lambda model=model, opt=opt, bs=bs:
                       _quiet_fit(model, X, y, optimizer=opt, epochs=1, batch_size=bs,
                                  verbose=0, seed=0))
        if torch is not None:
            fns["torch"] = _torch_epoch(torch, X, y, bs)
        steps = -(-n_rows // bs)
        # forward and dW products: 2 N P each; dx products for all but the first layer
        flops = 2.0 * n_rows * (3 * (784 * 512 + 512 * 256 + 256 * 10) - 784 * 512)
        rows.append(Row(f"MLP epoch 784-512-256-10 batch {bs} ({steps} steps)", "training",
                        "gemm", flops, fns, ("matmul", _bare_products(X, bs)),
                        note=f"{steps} steps"))
    return rows


def _row(name, group, nbytes, fns, ops, torch_fn=None):
    """A memory-bound row over every backend's callable, with PyTorch's when given."""
    if torch_fn is not None:
        fns["torch"] = torch_fn
    return Row(name, group, "memory", nbytes, fns, _copy_baseline(nbytes), ops=ops)


def more_rows(n, backends, torch):
    """The rest of the registry, so that every op has a row: maxout, dropout, the
    probability losses, gradient clipping, the confusion matrix, image augmentation.
    ``n`` is the element count of each row's main array."""
    import fastdl
    import fastdl.functional as F
    from fastdl import augment, metrics

    r = _rng()
    rows = []
    # maxout: 4 pieces per output unit; forward writes y and the int32 argmax
    m = max(1, n // 1024)
    z = r.standard_normal((m, 1024), dtype=np.float32)
    dyz = r.standard_normal((m, 256), dtype=np.float32)

    def maxout(be):
        _, am = F.maxout(z, 4, backend=be)
        F.maxout_backward(dyz, am, 4, backend=be)
    t = None if torch is None else _torch_fwd_bwd(
        torch, lambda v: v.view(m, 256, 4).amax(-1), z, dyz)
    rows.append(_row(f"maxout fwd+bwd {m}x1024 pieces 4", "layer", 12.0 * m * 1024,
                     {be: (lambda be=be: maxout(be)) for be in backends},
                     ("maxout", "maxout_backward"), t))

    # dropout p = 0.5: the mask's random bits are part of the operation on both sides
    x = r.standard_normal(n, dtype=np.float32)
    dy = r.standard_normal(n, dtype=np.float32)
    gens = {be: np.random.default_rng(1) for be in backends}

    def dropout(be):
        _, mask = F.dropout(x, 0.5, gens[be], backend=be)
        F.dropout_backward(dy, mask, 0.5, backend=be)
    t = None if torch is None else _torch_fwd_bwd(
        torch, lambda v: torch.nn.functional.dropout(v, 0.5, training=True), x, dy)
    rows.append(_row(f"dropout fwd+bwd p=0.5 {_size(n)}", "layer", 18.0 * n,
                     {be: (lambda be=be: dropout(be)) for be in backends},
                     ("dropout", "dropout_backward"), t))

    # binary cross-entropy on probabilities
    p = r.uniform(0.01, 0.99, n).astype(np.float32)
    yb = (r.random(n) < 0.5).astype(np.float32)

    def bce(be):
        F.binary_cross_entropy(p, yb, backend=be)
        F.binary_cross_entropy_backward(p, yb, backend=be)
    t = None
    if torch is not None:
        by = torch.from_numpy(yb)
        t = _torch_fwd_bwd(
            torch, lambda v: torch.nn.functional.binary_cross_entropy(v, by), p)
    rows.append(_row(f"binary_cross_entropy fwd+bwd {_size(n)}", "loss", 20.0 * n,
                     {be: (lambda be=be: bce(be)) for be in backends},
                     ("binary_cross_entropy", "binary_cross_entropy_backward"), t))

    # cross-entropy and KL divergence on probability rows (forward: a loss value)
    c = 1000
    rn = max(1, n // c)
    logits = r.standard_normal((rn, c), dtype=np.float32)
    probs = F.softmax(logits, backend="numpy")
    q = F.softmax(logits[::-1].copy(), backend="numpy")
    labels = r.integers(0, c, rn)
    t = None
    if torch is not None:
        pt, qt, lt = (torch.from_numpy(a) for a in (probs, q, labels))
        eps = float(np.finfo(np.float32).eps)

        def t(pt=pt, lt=lt):
            # integer labels: only each row's labelled probability is read (as fastdl)
            pt.gather(1, lt[:, None]).clamp(eps, 1 - eps).log().mean().neg()
    # one probability and one int64 label a row are read
    rows.append(_row(f"cross_entropy probs+labels {rn}x{c}", "loss", 12.0 * rn,
                     {be: (lambda be=be: F.cross_entropy(probs, labels, backend=be))
                      for be in backends}, ("cross_entropy",), t))
    t = None
    if torch is not None:
        def t(pt=pt, qt=qt):
            torch.nn.functional.kl_div(torch.log(qt), pt, reduction="batchmean")
    rows.append(_row(f"kl_divergence {rn}x{c}", "loss", 8.0 * rn * c,
                     {be: (lambda be=be: F.kl_divergence(probs, q, backend=be))
                      for be in backends}, ("kl_divergence",), t))

    # gradient clipping, in place: by the global norm (a sum of squares, then a scale;
    # the norm stays at max_norm after the first call, so every call scales) and by value
    grads = {be: r.standard_normal(n, dtype=np.float32) for be in backends}
    t = tv = None
    if torch is not None:
        pg = torch.nn.Parameter(torch.zeros(n))
        pg.grad = torch.from_numpy(r.standard_normal(n, dtype=np.float32))

        def t():
            torch.nn.utils.clip_grad_norm_([pg], 1.0)

        def tv():
            torch.nn.utils.clip_grad_value_([pg], 0.5)
    rows.append(_row(f"clip_grad_norm_ {_size(n)}", "optimizer", 12.0 * n,
                     {be: (lambda be=be: fastdl.clip_grad_norm_(grads[be], 1.0, backend=be))
                      for be in backends}, ("sum_squares", "scale"), t))
    rows.append(_row(f"clip_grad_value_ {_size(n)}", "optimizer", 8.0 * n,
                     {be: (lambda be=be: fastdl.clip_grad_value_(grads[be], 0.5, backend=be))
                      for be in backends}, ("clip_value",), tv))

    # confusion matrix of n labels, 10 classes
    yt_, yp_ = r.integers(0, 10, n), r.integers(0, 10, n)
    t = None
    if torch is not None:
        ytt, ypt = torch.from_numpy(yt_), torch.from_numpy(yp_)

        def t():
            torch.bincount(ytt * 10 + ypt, minlength=100).view(10, 10)
    rows.append(_row(f"confusion_matrix {_size(n)} labels, 10 classes", "metric", 16.0 * n,
                     {be: (lambda be=be: metrics.confusion_matrix(yt_, yp_, 10, backend=be))
                      for be in backends}, ("confusion_matrix",), t))

    # image augmentation of 28x28 images (no PyTorch row: torchvision is not a
    # dependency, and torch itself has no random shift or crop)
    k = max(1, n // 784)
    imgs = r.random((k, 28, 28), dtype=np.float32)
    outs = {be: np.empty_like(imgs) for be in backends}
    agens = {be: np.random.default_rng(2) for be in backends}
    aug = {"random_flip": ("flip_images", lambda im, g, o, be: augment.random_flip(
               im, g, out=o, backend=be)),
           "random_shift": ("shift_images", lambda im, g, o, be: augment.random_shift(
               im, 2, g, out=o, backend=be)),
           "random_crop": ("crop_images", lambda im, g, o, be: augment.random_crop(
               im, 2, g, out=o, backend=be)),
           "gaussian_noise": ("noise_images", lambda im, g, o, be: augment.gaussian_noise(
               im, 0.1, g, clip=(0.0, 1.0), out=o, backend=be))}
    for name, (op, call) in aug.items():
        fns = {be: (lambda be=be, call=call: call(imgs, agens[be], outs[be], be))
               for be in backends}
        row = _row(f"{name} {k}x28x28", "augment", 8.0 * imgs.size, fns, (op,))
        row.note = "no PyTorch equivalent"
        rows.append(row)
    return rows


def _quiet_fit(model, X, y, **kw):
    # A row retrains one model for hundreds of epochs on random labels until it has
    # learnt them: the loss and the gradients then reach 0 in float32 and fit warns
    # (rightly) of vanishing gradients.  The cost of a step does not depend on the
    # values (no kernel branches on them), so the warning is only noise here.
    import warnings

    from fastdl.nn.model import GradientWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientWarning)
        return model.fit(X, y, **kw)


def _bare_products(X, bs):
    """The matrix products of one training epoch alone, as the floor of a step."""
    r = _rng()
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


def _torch_epoch(torch, X, y, bs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n = X.shape[0]
    lossf = torch.nn.functional.cross_entropy

    def epoch():
        perm = torch.randperm(n)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            lossf(model(xb), yb).backward()
            opt.step()
    return epoch


def threading_row(backends):
    """A parallel Numba kernel interleaved with multi-threaded BLAS calls: the pattern
    that made a training step 50x slower with Numba's spinning OpenMP layer."""
    import fastdl.functional as F

    if "numba" not in backends:
        return []
    r = _rng()
    a = r.standard_normal((256, 512), dtype=np.float32)
    W = r.standard_normal((512, 512), dtype=np.float32)
    h = np.empty((256, 512), np.float32)
    y = np.empty_like(h)
    big = r.standard_normal(1 << 18, dtype=np.float32)   # above the parallel threshold
    big_out = np.empty_like(big)

    def gemm_only():
        np.matmul(a, W, out=h)

    def numba_only():
        F.relu(big, out=big_out, backend="numba")

    def interleaved():
        np.matmul(a, W, out=h)
        F.relu(big, out=big_out, backend="numba")
    return [Row("BLAS GEMM + parallel Numba kernel, interleaved", "threading", "step", 0,
                {"gemm only": gemm_only, "numba only": numba_only, "interleaved": interleaved},
                note="interleaved should be about gemm only + numba only")]


def _size(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else \
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


# ------------------------------------------------------------------- compile / start-up
def startup_figures(quick):
    """Import time, Numba cold compile and cache load, first training step: each in a
    fresh process."""
    import tempfile

    py = sys.executable
    out = {}
    code_import = "import time; t=time.perf_counter(); import fastdl; print(time.perf_counter()-t)"
    vals = [float(subprocess.check_output([py, "-c", code_import], text=True))
            for _ in range(3 if quick else 5)]
    out["import fastdl (s)"] = statistics.median(vals)
    code_jit = ("import time, numpy as np, fastdl.functional as F; "
                "x=np.ones(1000,np.float32); t=time.perf_counter(); "
                "F.relu(x, backend='numba'); F.relu_backward(x, x, backend='numba'); "
                "print(time.perf_counter()-t)")
    if quick:
        # the cold compile alone takes 10-15 s here: only the full run measures it
        subprocess.check_output([py, "-c", code_jit], text=True)  # warm the cache
        out["numba relu fwd+bwd, load from cache (s)"] = float(
            subprocess.check_output([py, "-c", code_jit], text=True))
    else:
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, NUMBA_CACHE_DIR=d)
            out["numba relu fwd+bwd, cold compile (s)"] = float(
                subprocess.check_output([py, "-c", code_jit], text=True, env=env))
            out["numba relu fwd+bwd, load from cache (s)"] = float(
                subprocess.check_output([py, "-c", code_jit], text=True, env=env))
    code_step = ("import time; t=time.perf_counter(); import numpy as np, fastdl; "
                 "from fastdl import nn; "
                 "m=nn.Sequential(nn.Dense(784,512,'relu'),nn.Dense(512,256,'relu'),"
                 "nn.Dense(256,10),seed=0); X=np.random.rand(32,784).astype(np.float32); "
                 "y=np.arange(32)%10; m.fit(X,y,epochs=1,batch_size=32,verbose=0); "
                 "print(time.perf_counter()-t)")
    for be in ("cython", "numba"):
        c = code_step.replace("seed=0)", f"seed=0, backend='{be}')")
        subprocess.check_output([py, "-c", c], text=True)  # warm the cache
        out[f"first training step in a fresh process, {be}, warm cache (s)"] = float(
            subprocess.check_output([py, "-c", c], text=True))
    return out


# --------------------------------------------------------------------------- main
def build_rows(quick, backends, torch, only=None, tiny=False):
    """The rows of a run.  ``tiny`` keeps every row of ``--quick`` at toy sizes (tests)."""
    rows = []
    if tiny:
        rows += activation_rows(4096, backends, torch)
        rows += softmax_rows([(16, 100)], backends, torch)
        rows += loss_rows(4096, backends, torch)
        rows += dense_rows([(16, 784, 512)], backends, torch)
        rows += optimizer_rows(4096, backends, torch)
        rows += more_rows(4096, backends, torch)
        rows += mlp_rows([32, 256], 256, backends, torch)
    elif quick:
        rows += activation_rows(1_000_000, backends, torch)
        rows += softmax_rows([(256, 1000)], backends, torch)
        rows += loss_rows(1_000_000, backends, torch)
        rows += dense_rows([(256, 784, 512)], backends, torch)
        rows += optimizer_rows(1_000_000, backends, torch)
        rows += more_rows(250_000, backends, torch)
        rows += mlp_rows([32, 256], 1024, backends, torch)
    else:
        rows += activation_rows(10_000_000, backends, torch)
        rows += softmax_rows([(256, 1000), (64, 32000)], backends, torch)
        rows += loss_rows(10_000_000, backends, torch)
        rows += dense_rows([(32, 784, 512), (256, 784, 512), (1024, 784, 512)], backends, torch)
        rows += optimizer_rows(1_000_000, backends, torch)
        rows += optimizer_rows(10_000_000, backends, torch)
        rows += more_rows(10_000_000, backends, torch)
        rows += mlp_rows([32, 256, 1024], 8192, backends, torch)
    rows += threading_row(backends)
    if only:
        keys = [k.strip() for k in only.split(",") if k.strip()]
        rows = [r for r in rows if any(k in r.name for k in keys)]
    return rows


def run(quick=False, threads=None, use_torch=True, only=None, rounds=None, startup=True,
        progress=True, sample=None, pre=None, tiny=False):
    import fastdl

    backends = fastdl.backends()
    threads = threads or fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    torch = _torch() if use_torch else None
    if torch is not None:
        torch.set_num_threads(threads)
    rounds = rounds or (5 if quick else 9)
    sample = sample if sample is not None else (0.01 if quick else 0.03)
    pre = pre if pre is not None else (0.01 if quick else 0.15)
    rows = build_rows(quick, backends, torch, only, tiny)
    for i, row in enumerate(rows):
        if progress:
            print(f"[{i + 1}/{len(rows)}] {row.name}", file=sys.stderr, flush=True)
        fns = dict(row.fns)
        if row.baseline is not None:
            fns["__baseline__"] = row.baseline[1]
        if row.floor is not None:
            fns["__floor__"] = row.floor
        # dense rows: a 2-thread GEMM drifts more than the few percent a fused pass costs,
        # so each competitor is also timed against the bare matmul in adjacent blocks
        # (not the MLP rows: an epoch is long, and --quick must stay under a minute)
        pair = "__baseline__" if row.group == "dense" and row.baseline is not None else None
        row.results = measure(fns, rounds, sample, pre, pair)
    info = fastdl.info()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "fastdl bench" + (" --quick" if quick else ""),
        "threads": threads,
        "versions": info["versions"],
        "torch": getattr(torch, "__version__", None),
        "torch_note": None if torch is not None else
        ("PyTorch is not installed: rows without the torch column" if use_torch
         else "PyTorch left out (--no-torch)"),
        "blas": info["blas"],
        "rows": [_row_json(r, backends) for r in rows],
    }
    if startup:
        report["startup"] = startup_figures(quick)
    return report


def _row_json(row, backends):
    res = row.results
    med = {k: v["median"] for k, v in res.items() if k not in ("__baseline__", "__floor__")}
    d = {"name": row.name, "group": row.group, "kind": row.kind, "note": row.note,
         "median_s": med, "detail": res}
    compiled = [b for b in ("numba", "cython") if b in med]
    if compiled:
        best = min(compiled, key=lambda b: med[b])
        d["best"] = best
        if "numpy" in med:
            d["best_vs_reference"] = med[best] / med["numpy"]
        if "torch" in med:
            d["best_vs_torch"] = med[best] / med["torch"]
    if row.baseline is not None:
        base = res["__baseline__"]["median"]
        d["baseline"] = {"kind": row.baseline[0], "median_s": base}
        if row.kind == "memory" and row.work:
            d["gbps"] = {k: row.work / v / 1e9 for k, v in med.items()}
            d["baseline"]["gbps"] = row.work / base / 1e9
        elif row.kind == "gemm" and row.work:
            d["gflops"] = {k: row.work / v / 1e9 for k, v in med.items()}
            d["baseline"]["gflops"] = row.work / base / 1e9
            if all("paired" in res[k] for k in med):
                d["paired_vs_baseline"] = {k: res[k]["paired"] for k in med}
    if row.floor is not None:
        fl = res["__floor__"]["median"]
        d["floor"] = {"median_s": fl, "gbps": row.work / fl / 1e9}
        if "torch" in med:
            d["floor"]["vs_torch"] = fl / med["torch"]
        if compiled:
            d["floor"]["best_vs_floor"] = med[d["best"]] / fl
    return d


def _fmt_t(s):
    return f"{s * 1e6:9.1f} us" if s < 1e-3 else f"{s * 1e3:9.2f} ms"


def format_table(report):
    lines = []
    lines.append(f"fastdl bench ({report['command']}), {report['date']}, "
                 f"{report['threads']} threads, float32; median of interleaved rounds")
    v = report["versions"]
    lines.append("versions: " + ", ".join(f"{k} {x}" for k, x in v.items())
                 + (f", torch {report['torch']}" if report["torch"] else ""))
    if report.get("torch_note"):
        lines.append(report["torch_note"])
    lines.append("")
    hdr = f"{'row':<46} {'competitor':<12} {'median':>12} {'vs ref':>8} {'vs torch':>9}  rate"
    lines.append(hdr)
    lines.append("-" * len(hdr) + "-" * 24)
    for d in report["rows"]:
        med = d["median_s"]
        ref, tor = med.get("numpy"), med.get("torch")
        first = True
        for k, t in med.items():
            rate = ""
            if "gbps" in d:
                rate = (f"{d['gbps'][k]:6.1f} GB/s ({d['gbps'][k] / d['baseline']['gbps']:.0%} "
                        "of copy)")
            elif "gflops" in d:
                share = d['gflops'][k] / d['baseline']['gflops']
                rate = f"{d['gflops'][k]:6.1f} GFLOP/s ({share:.0%} of matmul"
                paired = d.get("paired_vs_baseline", {}).get(k)
                rate += ")" if paired is None else f"; paired {paired:.2f}x its time)"
            vs_ref = f"{t / ref:7.2f}x" if ref else ""
            vs_t = f"{t / tor:8.2f}x" if tor else ""
            mark = " *" if d.get("best") == k else ""
            lines.append(f"{d['name'] if first else '':<46} {k + mark:<12} {_fmt_t(t):>12} "
                         f"{vs_ref:>8} {vs_t:>9}  {rate}")
            first = False
        if "baseline" in d:
            b = d["baseline"]
            lines.append(f"{'':<46} {'(' + b['kind'] + ')':<12} {_fmt_t(b['median_s']):>12}")
        if "floor" in d:
            f = d["floor"]
            vs_t = f"{f['vs_torch']:8.2f}x" if "vs_torch" in f else ""
            lines.append(f"{'':<46} {'(floor)':<12} {_fmt_t(f['median_s']):>12} {'':>8} "
                         f"{vs_t:>9}  {f['gbps']:6.1f} GB/s")
    lines.append("")
    lines.append("* the fastest compiled backend of the row; 'vs ref' and 'vs torch' are time "
                 "ratios (below 1 is faster)")
    lines.append("(floor): the same bytes moved by a bare parallel loop (one add an element), "
                 "with streaming stores where the kernels have them (activation outputs from "
                 "16 MiB): no kernel moving those bytes beats it")
    lines.append("paired: median over rounds of the time over the bare matmul's, timed in "
                 "adjacent blocks (drift cancels)")
    if "startup" in report:
        lines.append("")
        for k, x in report["startup"].items():
            lines.append(f"{k:<66} {x:8.3f}")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [d for d in report["rows"] if "best_vs_reference" in d or "best_vs_torch" in d]
    names = [d["name"] for d in rows]
    ref = [d.get("best_vs_reference", np.nan) for d in rows]
    tor = [d.get("best_vs_torch", np.nan) for d in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.5))
    ax.barh(y - 0.2, ref, 0.4, label="best fastdl / NumPy reference")
    ax.barh(y + 0.2, tor, 0.4, label="best fastdl / PyTorch")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("time ratio (below 1: fastdl is faster)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args):
    report = run(quick=args.quick, threads=args.threads, use_torch=not args.no_torch,
                 only=args.only, rounds=args.rounds, startup=not args.no_startup)
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1, default=float)
    if args.plot:
        plot(report, args.plot)
    return 0
