"""fastdl's side of the kernel rows: for each spec (specs.py), a callable per backend
(the NumPy reference included), the bare NumPy baseline beside it (a one-pass copy of
the same bytes, or the same ``np.matmul``) and its floor (floors.py).  All of them run
in one process, interleaved (timing.py): fastdl against itself."""
from __future__ import annotations

import numpy as np

from fastdl.benchmarks import floors
from fastdl.benchmarks.specs import ACT_PARAMS, make_data, threading_data

BASELINE, FLOOR = "__baseline__", "__floor__"


def competitors(spec, backends) -> dict:
    """{name: zero-argument callable} for the row: each backend, the baseline and the
    floor (under BASELINE and FLOOR) where the row has them."""
    d = make_data(spec)
    fns = {be: _BUILD[spec["fn"] if "fn" in spec else spec["group"]](spec, d, be)
           for be in backends}
    if spec["baseline"] == "copy":
        fns[BASELINE] = copy_baseline(spec["work"])
    elif spec["baseline"] == "matmul":
        fns[BASELINE] = _matmul_baseline(spec, d)
    f = floors.floor(spec)
    if f is not None:
        fns[FLOOR] = f
    return fns


def copy_baseline(nbytes, dtype=np.float32):
    """A one-pass copy moving ``nbytes`` (read + write), for the GB/s column."""
    n = max(1, int(nbytes // (2 * np.dtype(dtype).itemsize)))
    a = np.ones(n, dtype)
    b = np.empty_like(a)
    return lambda: np.copyto(b, a)


def _matmul_baseline(spec, d):
    x, W, dy = d["x"], d["W"], d["dy"]
    if spec["fn"] == "dense_forward":
        y = np.empty((x.shape[0], W.shape[1]), np.float32)
        return lambda: np.matmul(x, W, out=y)
    b1, b2 = np.empty(x.shape, np.float32), np.empty(W.shape, np.float32)

    def mm2():
        np.matmul(dy, W.T, out=b1)
        np.matmul(x.T, dy, out=b2)
    return mm2


# ------------------------------------------------------------------ per row kind
def _activation(spec, d, be):
    import fastdl.functional as F

    name = spec["act"]
    fwd, bwd, kw = getattr(F, name), getattr(F, name + "_backward"), ACT_PARAMS.get(name, {})
    x, dy = d["x"], d["dy"]
    y, dx = np.empty_like(x), np.empty_like(x)

    def f():
        fwd(x, out=y, backend=be, **kw)
        bwd(dy, x, out=dx, backend=be, **kw)
    return f


def _softmax_pair(spec, d, be):
    import fastdl.functional as F

    fwd, bwd = getattr(F, spec["fn"]), getattr(F, spec["fn"] + "_backward")
    x, dy = d["x"], d["dy"]
    y, dx = np.empty_like(x), np.empty_like(x)

    def f():
        fwd(x, out=y, backend=be)
        bwd(dy, y, out=dx, backend=be)
    return f


def _sce(spec, d, be):
    import fastdl.functional as F

    return lambda: F.softmax_cross_entropy(d["x"], d["labels"], backend=be)


def _loss_pair(spec, d, be):
    import fastdl.functional as F

    fwd, bwd = getattr(F, spec["fn"]), getattr(F, spec["fn"] + "_backward")
    p, t = d["p"], (d["t"] if spec["fn"] == "mse" else d["yb"])
    return lambda: (fwd(p, t, backend=be), bwd(p, t, backend=be))


def _dense_forward(spec, d, be):
    import fastdl.functional as F

    x, W, b = d["x"], d["W"], d["b"]
    y = np.empty((x.shape[0], W.shape[1]), np.float32)
    return lambda: F.dense_forward(x, W, b, "relu", out=y, backend=be)


def _dense_backward(spec, d, be):
    import fastdl.functional as F

    x, W, dy = d["x"], d["W"], d["dy"]
    bufs = (np.empty(x.shape, np.float32), np.empty(W.shape, np.float32),
            np.empty(W.shape[1], np.float32))
    return lambda: F.dense_backward(dy, x, W, out=bufs, backend=be)


def _adam(spec, d, be):
    import fastdl.functional as F

    w, m, v = d["w0"].copy(), np.zeros_like(d["w0"]), np.zeros_like(d["w0"])
    return lambda: F.adam_update_(w, d["g"], m, v, 1, lr=1e-3, backend=be)


def _sgd(spec, d, be):
    import fastdl.functional as F

    w, vel = d["w0"].copy(), np.zeros_like(d["w0"])
    return lambda: F.sgd_update_(w, d["g"], 0.01, momentum=0.9, velocity=vel, backend=be)


def _maxout(spec, d, be):
    import fastdl.functional as F

    def f():
        _, am = F.maxout(d["z"], 4, backend=be)
        F.maxout_backward(d["dy"], am, 4, backend=be)
    return f


def _dropout(spec, d, be):
    import fastdl.functional as F

    gen = np.random.default_rng(1)  # the mask's random bits are part of the operation

    def f():
        _, mask = F.dropout(d["x"], 0.5, gen, backend=be)
        F.dropout_backward(d["dy"], mask, 0.5, backend=be)
    return f


def _bce(spec, d, be):
    import fastdl.functional as F

    return lambda: (F.binary_cross_entropy(d["p"], d["yb"], backend=be),
                    F.binary_cross_entropy_backward(d["p"], d["yb"], backend=be))


def _cross_entropy(spec, d, be):
    import fastdl.functional as F

    return lambda: F.cross_entropy(d["p"], d["labels"], backend=be)


def _kl(spec, d, be):
    import fastdl.functional as F

    return lambda: F.kl_divergence(d["p"], d["q"], backend=be)


def _clip_norm(spec, d, be):
    import fastdl

    g = d["g"].copy()  # the norm stays at max_norm after the first call: every call scales
    return lambda: fastdl.clip_grad_norm_(g, 1.0, backend=be)


def _clip_value(spec, d, be):
    import fastdl

    g = d["g"].copy()
    return lambda: fastdl.clip_grad_value_(g, 0.5, backend=be)


def _confusion(spec, d, be):
    from fastdl import metrics

    return lambda: metrics.confusion_matrix(d["yt"], d["yp"], 10, backend=be)


def _augment(spec, d, be):
    from fastdl import augment

    images = d["images"]
    out, gen = np.empty_like(images), np.random.default_rng(2)
    call = {"random_flip": lambda: augment.random_flip(images, gen, out=out, backend=be),
            "random_shift": lambda: augment.random_shift(images, 2, gen, out=out, backend=be),
            "random_crop": lambda: augment.random_crop(images, 2, gen, out=out, backend=be),
            "gaussian_noise": lambda: augment.gaussian_noise(images, 0.1, gen, clip=(0.0, 1.0),
                                                             out=out, backend=be)}
    return call[spec["fn"]]


def _conv_fwd(spec, d, be):
    import fastdl.functional as F

    return lambda: F.conv2d_forward(d["x"], d["W"], d["b"], 1, 1, "relu", backend=be)


def _conv_bwd(spec, d, be):
    import fastdl.functional as F

    return lambda: F.conv2d_backward(d["dy"], d["x"], d["W"], 1, 1, backend=be)


def _max_pool(spec, d, be):
    import fastdl.functional as F

    def f():
        _, am = F.max_pool2d(d["x"], 2, backend=be)
        F.max_pool2d_backward(d["dy"], am, d["x"].shape, backend=be)
    return f


def _avg_pool(spec, d, be):
    import fastdl.functional as F

    def f():
        F.avg_pool2d(d["x"], 2, backend=be)
        F.avg_pool2d_backward(d["dy"], d["x"].shape, 2, backend=be)
    return f


_BUILD = {"activation": _activation, "softmax": _softmax_pair, "log_softmax": _softmax_pair,
          "softmax_cross_entropy": _sce, "mse": _loss_pair,
          "binary_cross_entropy_with_logits": _loss_pair, "dense_forward": _dense_forward,
          "dense_backward": _dense_backward, "adam": _adam, "sgd": _sgd, "maxout": _maxout,
          "dropout": _dropout, "bce": _bce, "cross_entropy": _cross_entropy,
          "kl_divergence": _kl, "clip_norm": _clip_norm, "clip_value": _clip_value,
          "confusion": _confusion, "random_flip": _augment, "random_shift": _augment,
          "random_crop": _augment, "gaussian_noise": _augment, "conv_fwd": _conv_fwd,
          "conv_bwd": _conv_bwd, "max_pool": _max_pool, "avg_pool": _avg_pool}


def threading_competitors() -> dict:
    """The threading row: a 2-thread GEMM, a parallel Numba kernel (above the parallel
    threshold), and both interleaved, which should take about the sum."""
    import fastdl.functional as F

    d = threading_data()
    a, W, big = d["a"], d["W"], d["big"]
    h, big_out = np.empty((a.shape[0], W.shape[1]), np.float32), np.empty_like(big)

    def gemm_only():
        np.matmul(a, W, out=h)

    def numba_only():
        F.relu(big, out=big_out, backend="numba")

    def interleaved():
        gemm_only()
        numba_only()
    return {"gemm only": gemm_only, "numba only": numba_only, "interleaved": interleaved}
