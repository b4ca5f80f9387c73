"""Every registered kernel, per (op, backend, size), with pytest-benchmark.

Each case is warmed up (JIT compiled, buffers touched) before timing; the bytes
moved or the flops done per call go into ``extra_info`` with the GB/s or GFLOP/s
reached, so a figure can be held against the machine's limits.
For side-by-side ratios with PyTorch in one process, use ``fastdl bench``."""
import numpy as np
import pytest

import fastdl
import fastdl.functional as F
from fastdl import augment, metrics
from fastdl._registry import OPS

SIZES = {"small": 4096, "large": 4_000_000}
R = np.random.default_rng(0)
ALPHA = {"leaky_relu": (0.1,), "elu": (1.0,)}
ACTS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu")


def _rows(n, c=1000):
    return max(1, n // c), c


def case(op, n):
    """(callable taking a backend, bytes or flops, 'bytes' | 'flops')."""
    f32 = np.float32
    x = R.standard_normal(n).astype(f32)
    dy = R.standard_normal(n).astype(f32)
    out = np.empty_like(x)
    if op in ACTS:
        a = ALPHA.get(op, ())
        return (lambda be: getattr(F, op)(x, *a, out=out, backend=be)), 8 * n, "bytes"
    if op.endswith("_backward") and op[:-9] in ACTS:
        a = ALPHA.get(op[:-9], ())
        return (lambda be: getattr(F, op)(dy, x, *a, out=out, backend=be)), 12 * n, "bytes"
    if op in ("softmax", "log_softmax"):
        X = x.reshape(_rows(n))
        return (lambda be: getattr(F, op)(X, out=out.reshape(X.shape), backend=be)), 8 * n, \
            "bytes"
    if op in ("softmax_backward", "log_softmax_backward"):
        X, D = x.reshape(_rows(n)), dy.reshape(_rows(n))
        Y = getattr(F, op[:-9])(X)
        return (lambda be: getattr(F, op)(D, Y, out=out.reshape(X.shape), backend=be)), \
            12 * n, "bytes"
    if op == "maxout":
        Z = x.reshape(-1, 4)
        return (lambda be: F.maxout(Z, 2, backend=be)), 4 * n + 6 * n // 2, "bytes"
    if op == "maxout_backward":
        Z = x.reshape(-1, 4)
        _, am = F.maxout(Z, 2)
        D = dy[: n // 2].reshape(-1, 2)
        return (lambda be: F.maxout_backward(D, am, 2, backend=be)), 8 * n, "bytes"
    if op == "dropout":
        return (lambda be: F.dropout(x, 0.5, 0, backend=be)), 9 * n, "bytes"
    if op == "dropout_backward":
        _, mask = F.dropout(x, 0.5, 0)
        return (lambda be: F.dropout_backward(dy, mask, 0.5, out=out, backend=be)), 9 * n, \
            "bytes"
    if op in ("mse", "mse_backward", "binary_cross_entropy_with_logits",
              "binary_cross_entropy_with_logits_backward"):
        t = (R.random(n) < 0.5).astype(f32)
        return (lambda be: getattr(F, op)(x, t, backend=be)), 8 * n, "bytes"
    if op in ("binary_cross_entropy", "binary_cross_entropy_backward"):
        p = R.random(n).astype(f32)
        t = (R.random(n) < 0.5).astype(f32)
        return (lambda be: getattr(F, op)(p, t, backend=be)), 8 * n, "bytes"
    if op == "softmax_cross_entropy":
        X = x.reshape(_rows(n))
        lab = R.integers(0, X.shape[1], X.shape[0])
        return (lambda be: F.softmax_cross_entropy(X, lab, backend=be)), 8 * n, "bytes"
    if op in ("cross_entropy", "kl_divergence"):
        X = x.reshape(_rows(n))
        P = F.softmax(X)
        Q = F.softmax(X[::-1].copy())
        lab = R.integers(0, X.shape[1], X.shape[0])
        if op == "cross_entropy":
            return (lambda be: F.cross_entropy(P, lab, backend=be)), 4 * n, "bytes"
        return (lambda be: F.kl_divergence(P, Q, backend=be)), 8 * n, "bytes"
    if op in ("dense_forward", "dense_backward"):
        m = 512
        k = 784
        rows = max(1, n // (k * 16))
        X = R.standard_normal((rows, k)).astype(f32)
        W = R.standard_normal((k, m)).astype(f32)
        b = R.standard_normal(m).astype(f32)
        if op == "dense_forward":
            Y = np.empty((rows, m), f32)
            return (lambda be: F.dense_forward(X, W, b, "relu", out=Y, backend=be)), \
                2.0 * rows * k * m, "flops"
        D = R.standard_normal((rows, m)).astype(f32)
        return (lambda be: F.dense_backward(D, X, W, backend=be)), 4.0 * rows * k * m, "flops"
    if op == "adam_update":
        w, m_, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
        return (lambda be: F.adam_update_(w, dy, m_, v, 1, backend=be)), 28 * n, "bytes"
    if op == "sgd_update":
        w, vel = x.copy(), np.zeros_like(x)
        return (lambda be: F.sgd_update_(w, dy, 0.01, momentum=0.9, velocity=vel,
                                         backend=be)), 20 * n, "bytes"
    if op in ("sum_squares", "scale"):
        g = dy.copy()
        return (lambda be: fastdl.clip_grad_norm_(g, 1e9, backend=be)), 4 * n, "bytes"
    if op == "clip_value":
        g = dy.copy()
        return (lambda be: fastdl.clip_grad_value_(g, 0.5, backend=be)), 8 * n, "bytes"
    if op == "confusion_matrix":
        yt, yp = R.integers(0, 10, n), R.integers(0, 10, n)
        return (lambda be: metrics.confusion_matrix(yt, yp, 10, backend=be)), 16 * n, "bytes"
    if op in ("conv2d_forward", "conv2d_backward"):
        b = max(1, n // (16 * 28 * 28))
        X = R.standard_normal((b, 16, 28, 28)).astype(f32)
        W = (R.standard_normal((32, 16, 3, 3)) * 0.1).astype(f32)
        flops = 2.0 * b * 32 * 28 * 28 * 16 * 9
        if op == "conv2d_forward":
            return (lambda be: F.conv2d_forward(X, W, None, 1, 1, "relu", backend=be)), \
                flops, "flops"
        D = R.standard_normal((b, 32, 28, 28)).astype(f32)
        return (lambda be: F.conv2d_backward(D, X, W, 1, 1, backend=be)), 2 * flops, "flops"
    if op in ("max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"):
        X = x[: (n // 64) * 64].reshape(-1, 1, 8, 8)
        D = dy[: X.size // 4].reshape(X.shape[0], 1, 4, 4)
        _, am = F.max_pool2d(X, 2)
        call = {"max_pool2d": lambda be: F.max_pool2d(X, 2, backend=be),
                "max_pool2d_backward": lambda be: F.max_pool2d_backward(D, am, X.shape,
                                                                         backend=be),
                "avg_pool2d": lambda be: F.avg_pool2d(X, 2, backend=be),
                "avg_pool2d_backward": lambda be: F.avg_pool2d_backward(D, X.shape, 2,
                                                                         backend=be)}[op]
        return call, 5 * X.size, "bytes"
    imgs = R.random((max(1, n // 64), 8, 8)).astype(f32)
    fn = {"shift_images": augment.random_shift, "flip_images": augment.random_flip,
          "crop_images": augment.random_crop,
          "noise_images": lambda im, rng, backend: augment.gaussian_noise(im, 0.1, rng,
                                                                          backend=backend)}[op]
    return (lambda be: fn(imgs, rng=0, backend=be)), 8 * imgs.size, "bytes"


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
@pytest.mark.parametrize("op", list(OPS))
def test_kernel(benchmark, op, backend, size):
    fn, work, unit = case(op, SIZES[size])
    for _ in range(3):
        fn(backend)  # compile and first-touch outside the timing
    benchmark.group = f"{op}-{size}"
    benchmark.extra_info.update({"op": op, "backend": backend, "size": SIZES[size], unit: work})
    benchmark(fn, backend)
    if benchmark.stats is None:  # --benchmark-disable
        return
    med = benchmark.stats.stats.median
    key = "GB/s" if unit == "bytes" else "GFLOP/s"
    benchmark.extra_info[key] = work / med / 1e9
