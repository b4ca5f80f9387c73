"""MLP epochs (784-512-256-10, Adam, 8,192 rows), fastdl against PyTorch, each library in
its own fresh processes, alternated (fastdl, torch, fastdl, ...); fastdl's process also
times its Cython and Numba backends and the epoch's bare matrix products (the floor).
Prints the medians and the ratios, one line a batch size.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/mlp_processes.py \
        --batches 32,256,1024 --rounds 3

docs/threads.md quotes its results; ``fastdl bench`` has the published rows.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import fastdl.benchmarks

WORKER = os.path.join(os.path.dirname(fastdl.benchmarks.__file__), "worker_mlp.py")


def run(library, batch, epochs, threads):
    cmd = [sys.executable, WORKER, "--library", library, "--batch", str(batch),
           "--epochs", str(epochs), "--threads", str(threads)]
    if library == "fastdl":
        cmd += ["--backends", "cython,numba", "--floor"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["results"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="32,256,1024")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: each library's default")
    a = ap.parse_args(argv)
    for batch in (int(b) for b in a.batches.split(",")):
        samples = {}
        for _ in range(a.rounds):
            for library in ("fastdl", "torch"):
                for name, r in run(library, batch, a.epochs, a.threads).items():
                    samples.setdefault(name, []).extend(r["samples"])
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"batch {batch}: " + "  ".join(
            f"{k} {v * 1e3:.0f} ms ({v / med['torch']:.2f}x torch, {v / med['floor']:.2f}x floor)"
            for k, v in med.items()), flush=True)


if __name__ == "__main__":
    main()
