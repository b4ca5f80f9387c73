"""conv2d forward + backward at LeNet and small-ResNet shapes: fastdl's backends with
pytest-benchmark (``python -m pytest bench/test_conv.py --benchmark-only``), and against
``torch.nn.functional.conv2d`` (+ autograd) with each library in its own process:

    python bench/test_conv.py [--threads 2] [--rounds 7] [--dtype float32]

prints, for each shape, the median time and GFLOP/s of each library, the ratio to
PyTorch, and the machine's GEMM rate (NumPy's float32 matmul at 1024^3) beside them.

Reusable pieces (for ``fastdl bench`` rows): ``SHAPES``, ``conv_case(library, shape)``
(a warm, allocation-free callable and its flops), ``median_time(fn)`` and
``run_isolated(library, shape)`` (one measurement in a fresh process).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

# name: (N, C, H, W, O, k, padding); stride 1
SHAPES = {
    "lenet-conv1": (64, 1, 28, 28, 16, 5, 0),
    "lenet-conv2": (64, 16, 12, 12, 32, 5, 0),
    "resnet-3x3": (32, 64, 32, 32, 64, 3, 1),
}


def flops(shape, passes=3):
    """Multiply-adds x 2 of the forward pass, times ``passes`` (3: forward, dx, dW)."""
    n, c, h, w, o, k, p = shape
    ho, wo = h + 2 * p - k + 1, w + 2 * p - k + 1
    return 2.0 * n * o * ho * wo * c * k * k * passes


def conv_case(library, shape, dtype="float32", need_dx=True):
    """(fn, flops): ``fn()`` runs one forward (bias, ReLU) and one backward pass of the
    shape; buffers are made here, so that the call allocates nothing on fastdl's side.
    ``library`` is ``"torch"`` or a fastdl backend (``"numba"``, ``"cython"``, ``"numpy"``)."""
    n, c, h, w, o, k, p = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = (rng.standard_normal((o, c, k, k)) * (2 / (c * k * k)) ** 0.5).astype(dtype)
    b = np.zeros(o, dtype)
    ho, wo = h + 2 * p - k + 1, w + 2 * p - k + 1
    dy = rng.standard_normal((n, o, ho, wo)).astype(dtype)
    passes = 3 if need_dx else 2
    if library == "torch":
        import torch

        xt = torch.from_numpy(x).requires_grad_(need_dx)
        Wt = torch.from_numpy(W).requires_grad_(True)
        bt = torch.from_numpy(b).requires_grad_(True)
        dyt = torch.from_numpy(dy)

        def fn():
            y = torch.relu(torch.nn.functional.conv2d(xt, Wt, bt, padding=p))
            y.backward(dyt)
        return fn, flops(shape, passes)
    import fastdl.functional as F

    y = np.empty((n, o, ho, wo), dtype)
    grads = (np.empty_like(x) if need_dx else None, np.empty_like(W), np.empty_like(b))
    dy_relu = np.empty_like(dy)

    def fn():
        F.conv2d_forward(x, W, b, 1, p, "relu", out=y, backend=library)
        # the ReLU's backward, as a layer would run it: dy where y > 0
        np.multiply(dy, y > 0, out=dy_relu)
        F.conv2d_backward(dy_relu, x, W, 1, p, need_dx, out=grads, backend=library)
    return fn, flops(shape, passes)


def median_time(fn, rounds=7, min_time=0.2, warm=0.15):
    """Median seconds of one call: ``fn`` warmed for ``warm`` s (JIT, caches, BLAS
    threads), then ``rounds`` rounds of at least ``min_time`` s each."""
    fn()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warm:
        fn()
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-6)
    reps = max(1, int(min_time / one))
    res = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        res.append((time.perf_counter() - t) / reps)
    return float(np.median(res))


def gemm_rate(dtype="float32", n=1024):
    """GFLOP/s of NumPy's matmul at n^3 (the machine's GEMM rate, as a ceiling)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    out = np.empty_like(a)
    return 2.0 * n ** 3 / median_time(lambda: np.matmul(a, a, out=out), rounds=5) / 1e9


def run_isolated(library, shape_name, threads=2, dtype="float32", rounds=7):
    """One measurement in a fresh process (NumPy first, then only that library), as
    a dict with ``median_s``, ``gflops`` and, for fastdl, ``gemm_gflops``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", library, shape_name,
           "--threads", str(threads), "--dtype", dtype, "--rounds", str(rounds)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _worker(library, shape_name, threads, dtype, rounds):
    shape = SHAPES[shape_name]
    if library == "torch":
        import torch
        torch.set_num_threads(threads)
    else:
        import fastdl
        fastdl.set_num_threads(threads)
    fn, fl = conv_case(library, shape, dtype)
    t = median_time(fn, rounds)
    res = {"library": library, "shape": shape_name, "median_s": t, "gflops": fl / t / 1e9}
    if library != "torch":
        res["gemm_gflops"] = gemm_rate(dtype)
    print(json.dumps(res))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("LIBRARY", "SHAPE"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--alternations", type=int, default=3,
                    help="fresh processes per library and shape, alternated")
    ap.add_argument("--libraries", default="numba,cython,torch")
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(*args.worker, args.threads, args.dtype, args.rounds)
    with open("/proc/loadavg") as fh:
        print(f"load average before: {fh.read().split()[:3]}")
    libs = args.libraries.split(",")
    for name in SHAPES:
        runs = {lib: [] for lib in libs}
        for _ in range(args.alternations):
            for lib in libs:  # A, B, C, A, B, C, ...
                try:
                    runs[lib].append(run_isolated(lib, name, args.threads, args.dtype,
                                                  args.rounds))
                except RuntimeError as e:
                    print(f"{lib} {name}: failed: {e}")
        torch_t = np.median([r["median_s"] for r in runs.get("torch", [])] or [np.nan])
        gemm = np.median([r["gemm_gflops"] for v in runs.values() for r in v
                          if "gemm_gflops" in r] or [np.nan])
        for lib, rs in runs.items():
            if not rs:
                continue
            t = float(np.median([r["median_s"] for r in rs]))
            g = flops(SHAPES[name]) / t / 1e9
            vs = f"{t / torch_t:5.2f}x torch's time" if torch_t == torch_t else ""
            print(f"{name:12s} {lib:7s} {t * 1e3:9.3f} ms {g:7.1f} GFLOP/s "
                  f"({g / gemm:.2f} of GEMM {gemm:.0f})  {vs}")
    with open("/proc/loadavg") as fh:
        print(f"load average after: {fh.read().split()[:3]}")


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_conv2d_fwd_bwd(benchmark, backend, shape):
    fn, fl = conv_case(backend, SHAPES[shape])
    median_time(fn, rounds=1, min_time=0.01)  # compile and first-touch outside the timing
    benchmark.group = f"conv2d-{shape}"
    benchmark(fn)
    benchmark.extra_info.update({"flops": fl,
                                 "GFLOP/s": fl / benchmark.stats.stats.median / 1e9})


if __name__ == "__main__":
    main()
