"""A/B of fastdl's threading rule, in one process: MLP epochs (784-512-256-10, Adam) with
the elementwise kernels serial while OpenBLAS's idle threads spin ("rule"), with them
parallel right after the GEMMs ("norule"), and the epoch's bare matrix products
("floor"), alternated epoch by epoch, each epoch after a pause that lets every idle
thread fall asleep.  Prints the medians and the CPUs other processes kept busy.

    python bench/threads_ab.py --batch 32 --threads 2
    OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=14 python bench/threads_ab.py \
        --variants norule,floor          # the design before 2026-12-07

docs/threads.md quotes its results.
"""
import argparse
import json
import statistics
import time

import numpy as np

import fastdl
from fastdl import _threads
from fastdl.benchmarks import floors
from fastdl.benchmarks.worker_mlp import COOL, data, fastdl_epoch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="cython")
    ap.add_argument("--variants", default="rule,norule,floor")
    a = ap.parse_args(argv)
    fastdl.set_num_threads(a.threads)
    X, y = data(a.rows)
    epoch, floor = fastdl_epoch(X, y, a.batch, a.backend), floors.bare_products(X, a.batch)
    epoch()
    floor()
    omp, spin = _threads._omp(), _threads.blas_spin_seconds()
    load = _threads.CpuLoad(_threads.allowed_cpus())
    times = {v: [] for v in a.variants.split(",")}
    for _ in range(a.epochs):
        for v in times:
            if omp is not None:
                omp.set_blas_spin(0.0 if v == "norule" else spin)
            time.sleep(COOL)
            t = time.perf_counter()
            (floor if v == "floor" else epoch)()
            times[v].append(time.perf_counter() - t)
    print(json.dumps({"batch": a.batch, "threads": a.threads,
                      "median_s": {v: round(statistics.median(t), 4) for v, t in times.items()},
                      "others_busy_cpus": round(load.sample() or np.nan, 2)}))


if __name__ == "__main__":
    main()
