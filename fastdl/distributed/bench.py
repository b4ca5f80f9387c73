"""Time the gradient allreduce: ``mpirun -n K python -m fastdl.distributed.bench``.

Prints, on rank 0, the time of one in-place sum-allreduce of a gradient buffer of
the sizes of the models in ``docs/distributed.md`` (the 64-256-128-10 and
784-512-256-10 MLPs, a small CNN), as the training step makes it
(``allreduce_(grad, "sum", check=False)``), with the argument check, and in
``GradientBuckets`` of one bucket per layer.  ``time_allreduce`` is the function a
benchmark row calls under ``mpirun``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fastdl.distributed import _runtime as R
from fastdl.distributed.collectives import allreduce_
from fastdl.distributed.training import GradientBuckets

# parameters per layer (weights + bias), input layer first
MODELS = {
    "MLP 64-256-128-10": [64 * 256 + 256, 256 * 128 + 128, 128 * 10 + 10],
    "MLP 784-512-256-10": [784 * 512 + 512, 512 * 256 + 256, 256 * 10 + 10],
    # conv 1->32 3x3, conv 32->64 3x3, max-pool 2, dense 9216->128, dense 128->10
    "CNN 32c3-64c3-128-10": [32 * 9 + 32, 64 * 32 * 9 + 64, 9216 * 128 + 128, 128 * 10 + 10],
}


def time_allreduce(layers, dtype=np.float32, repeats=50, mode="allreduce") -> dict:
    """Seconds per gradient allreduce, measured on every rank, reported by rank 0.

    Parameters
    ----------
    layers : list of int, elements per layer's gradient (one flat buffer in total)
    dtype : float32 or float64
    repeats : int, timed calls (after 5 warm-up calls); each starts after a barrier,
        so it times the collective, not the ranks' skew
    mode : "allreduce" (one call, no check: the training step's),
        "checked" (``allreduce_`` with its argument check) or
        "buckets" (``GradientBuckets``, one bucket per layer, started last first)

    Returns
    -------
    dict: ``median``, ``min``, ``p90`` (seconds, over the calls, each the slowest
    rank's time), ``bytes``, ``ranks``
    """
    comm = R._state.comm if R._state.comm is not None else R.comm()
    n = int(sum(layers))
    grad = np.ones(n, dtype=dtype)
    if mode == "buckets":
        edges = np.cumsum([0] + list(layers))
        buckets = GradientBuckets(grad, list(zip(edges[:-1], edges[1:])))

        def call():
            for i in reversed(range(len(layers))):
                buckets.start(i)
                buckets.progress()
            buckets.wait()
    elif mode in ("allreduce", "checked"):
        check = mode == "checked"

        def call():
            allreduce_(grad, "sum", check=check)
    else:
        raise ValueError(f"mode: expected 'allreduce', 'checked' or 'buckets', got {mode!r}")
    for _ in range(5):
        call()
    times = np.empty(repeats)
    for i in range(repeats):
        comm.Barrier()
        t = time.perf_counter()
        call()
        times[i] = time.perf_counter() - t
    MPI = R._state.MPI
    slowest = np.empty_like(times)
    comm.Allreduce(times, slowest, op=MPI.MAX)
    return {"median": float(np.median(slowest)), "min": float(slowest.min()),
            "p90": float(np.percentile(slowest, 90)), "bytes": grad.nbytes,
            "ranks": R._state.size}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = ap.parse_args(argv)
    R.init()
    rows = []
    for name, layers in MODELS.items():
        for mode in ("allreduce", "checked", "buckets"):
            res = time_allreduce(layers, np.dtype(args.dtype), args.repeats, mode)
            rows.append((name, mode, res))
    if R.rank() == 0:
        print(f"{R.world_size()} ranks, {args.dtype}, {args.repeats} calls each "
              "(the slowest rank's time per call)")
        print(f"{'model':24s} {'mode':10s} {'MiB':>7s} {'median ms':>10s} {'min ms':>8s} "
              f"{'p90 ms':>8s} {'GB/s (min)':>10s}")
        for name, mode, r in rows:
            print(f"{name:24s} {mode:10s} {r['bytes'] / 2**20:7.2f} {r['median'] * 1e3:10.3f} "
                  f"{r['min'] * 1e3:8.3f} {r['p90'] * 1e3:8.3f} "
                  f"{r['bytes'] / r['min'] / 1e9:10.2f}")


if __name__ == "__main__":
    main()
