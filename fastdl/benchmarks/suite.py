"""What one ``fastdl bench`` run measures, in which processes, and the report it makes.

* Kernel rows (specs.py): fastdl's backends, the NumPy reference, the bare NumPy
  baseline and the floor in one worker process; PyTorch's version of each row in
  another; the two alternated over ``process_rounds`` pairs of fresh processes.
* Training rows: MLP epochs at several batch sizes; fastdl's worker times its compiled
  backends and the epoch's bare matrix products (the floor), PyTorch's worker its
  epoch (fused Adam); alternated, fresh processes.
* scikit-learn: ``MLPClassifier.fit`` of scikit-learn and of ``fastdl.sklearn`` on the
  same data, architecture and epochs, with the held-out accuracy (when
  ``fastdl.sklearn`` imports).
* Import order: the dense row and an MLP epoch of fastdl with NumPy, PyTorch or
  fastdl imported first.
* Scenarios: an MLP epoch with 0, 1 and 2 busy processes beside it, for fastdl at its
  defaults, fastdl on one thread and PyTorch, each as a ratio to its quiet time; and
  both libraries training in one process (labelled as such).
"""
from __future__ import annotations

import importlib.util
import json
import sys
import time

from fastdl.benchmarks import runner, specs
from fastdl.benchmarks.report import kernel_row, targets, training_row
from fastdl.benchmarks.runner import ProcessRow, script

# batch sizes and rows of the training epochs, by size class
TRAINING = {"tiny": ([32, 256], 256), "quick": ([32, 256], 1024),
            "full": ([32, 256, 1024], 8192)}
SCENARIOS = (("quiet", 0), ("1 busy process", 1), ("2 busy processes", 2))


def fastdl_backends():
    import fastdl

    return fastdl.backends()


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def kernel_names(size, backends, only=None, conv=True) -> list[str]:
    names = [s["name"] for s in specs.kernel_specs(size, conv)]
    if "numba" in backends:
        names.append(specs.threading_spec()["name"])
    if only:
        keys = [k.strip() for k in only.split(",") if k.strip()]
        names = [n for n in names if any(k in n for k in keys)]
    return names


def training_names(size, only=None) -> list[str]:
    batches, n_rows = TRAINING[size]
    names = [training_name(bs, n_rows) for bs in batches]
    if only:
        keys = [k.strip() for k in only.split(",") if k.strip()]
        names = [n for n in names if any(k in n for k in keys)]
    return names


def training_name(bs, n_rows):
    return f"MLP epoch 784-512-256-10 batch {bs} ({-(-n_rows // bs)} steps)"


def _has_conv():
    from fastdl._registry import OPS

    return "conv2d_forward" in OPS and "max_pool2d" in OPS


def _kernel_jobs(names, size, conv, threads, rounds, sample, pre, use_torch, preimport="numpy"):
    base = ["--size", size, "--rows", json.dumps(names), "--rounds", str(rounds),
            "--sample", str(sample), "--pre", str(pre), "--threads", str(threads or 0),
            "--preimport", preimport] + (["--conv"] if conv else [])
    jobs = {"fastdl": [sys.executable, script("worker_kernels.py"), "--library", "fastdl"]
            + base}
    if use_torch:
        jobs["torch"] = [sys.executable, script("worker_kernels.py"), "--library", "torch"] + base
    return jobs


def _read_kernels(out, label):
    return {(row, comp): m for row, comps in out["rows"].items() for comp, m in comps.items()}


def _mlp(library, bs, n_rows, epochs, threads=0, backends=(), floor=False, preimport="numpy"):
    argv = [sys.executable, script("worker_mlp.py"), "--library", library, "--batch", str(bs),
            "--rows", str(n_rows), "--epochs", str(epochs), "--threads", str(threads or 0),
            "--preimport", preimport]
    if backends:
        argv += ["--backends", ",".join(backends)]
    return argv + (["--floor"] if floor else [])


def sklearn_row(quick, threads):
    """scikit-learn's MLPClassifier against fastdl.sklearn's, each in its own process
    (None where fastdl.sklearn does not import)."""
    try:
        from fastdl.sklearn import _bench
    except ImportError:
        return None
    kw = dict(recipe="digits", n_train=1000 if quick else 10000, n_test=500 if quick else 2000,
              epochs=2 if quick else 10, threads=threads)

    def read(out, label):
        return {label: {"samples": [out["fit_seconds"]], "accuracy": [out["accuracy"]]}}
    return ProcessRow(f"MLPClassifier fit, digits upsampled to 784 features, "
                      f"{kw['n_train']} rows, {kw['epochs']} epochs", "sklearn",
                      {"scikit-learn": _bench.command("sklearn", **kw),
                       "fastdl": _bench.command("fastdl", **kw)}, read=read,
                      note="fit time (s) and held-out accuracy, each library in its own process")


def cnn_row(quick, threads):
    """A CNN epoch (worker_cnn.py's workload), fastdl against PyTorch, each in its own
    process; None without PyTorch or the convolution layers."""
    if not (torch_available() and _has_conv()):
        return None
    epochs = 1 if quick else 3
    jobs = {lib: [sys.executable, script("worker_cnn.py"), "--library", lib, "--epochs",
                  str(epochs), "--threads", str(threads or 0)] for lib in ("fastdl", "torch")}

    def read(out, label):
        return {label: {"samples": out["epochs_seconds"], "accuracy": [out["accuracy"]]}}
    return ProcessRow("CNN epoch conv5x5(16)-pool-conv5x5(32)-pool-128-10, 8000 28x28 images, "
                      "batch 64, Adam", "cnn", jobs, read=read,
                      note=f"epoch time and test accuracy after {epochs} epochs, each library "
                           "in its own process at its default thread count")


def distributed_row(threads):
    """2 ranks x 1 thread under mpirun against one process of 2 threads (batch 256, the
    784-512-256-10 MLP); None without the mpi extra."""
    try:
        from fastdl.distributed import bench as dbench
        if not dbench.R.is_available() or dbench._mpirun() is None:
            return None
    except ImportError:
        return None
    jobs = {"2 ranks x 1 thread": dbench.fit_command(2, 1, epochs=3),
            "1 process x 2 threads": dbench.fit_command(0, 2, epochs=3)}
    return ProcessRow("MPI data-parallel MLP epoch 784-512-256-10, batch 256, 8192 rows",
                      "distributed", jobs, read=dbench.read_fit,
                      note="epoch time; allreduce share of the distributed epoch")


def _pair_json(row, base):
    med = runner.medians(row)
    d = {"name": row.name, "note": row.note,
         "median_s": {c: m["samples"] for c, m in med.items()},
         "extra": {c: {k: v for k, v in m.items() if k != "samples"} for c, m in med.items()}}
    if base in med:
        d["vs_" + base] = {c: m["samples"] / med[base]["samples"] for c, m in med.items()}
    return d


def run(quick=False, threads=None, use_torch=True, only=None, rounds=None, process_rounds=None,
        startup=True, scenarios=None, progress=True, tiny=False, sample=None, pre=None,
        epochs=None, keep_openblas=False, sklearn=True):
    """Run the benchmarks; the report (a JSON-able dict, see report.py)."""
    import fastdl

    size = "tiny" if tiny else "quick" if quick else "full"
    rounds = rounds or (5 if quick or tiny else 4)  # per process: 12 samples in 3 processes
    process_rounds = process_rounds or (1 if quick or tiny else 3)
    sample = sample if sample is not None else (0.01 if quick or tiny else 0.03)
    pre = pre if pre is not None else (0.01 if quick or tiny else 0.15)
    epochs = epochs or (2 if quick or tiny else 3)
    scenarios = (not quick and not tiny) if scenarios is None else scenarios
    torch_ok = use_torch and torch_available()
    backends = fastdl.backends()
    compiled = [b for b in backends if b != "numpy"]
    env = runner.child_env(keep_openblas)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else None
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "command": "fastdl bench" + (" --quick" if quick else ""), "size": size,
              "threads": threads, "rounds": rounds, "process_rounds": process_rounds,
              "machine": runner.machine(keep_openblas),
              "torch": _torch_version() if torch_ok else None,
              "torch_note": None if torch_ok else
              ("PyTorch left out (--no-torch)" if not use_torch else
               "PyTorch is not installed: rows without the torch column")}

    conv = _has_conv()
    names = kernel_names(size, backends, only, conv)
    if names:
        krow = ProcessRow("kernels", "kernels", _kernel_jobs(names, size, conv, threads, rounds,
                                                             sample, pre, torch_ok),
                          read=_read_kernels)
        runner.run_rows([krow], process_rounds, env, progress=say)
        all_specs = {s["name"]: s for s in specs.kernel_specs(size, conv)
                     + [specs.threading_spec()]}
        report["rows"] = [kernel_row(all_specs[n], krow.results, backends) for n in names
                          if any(r == n for r, _ in krow.results)]
    else:
        report["rows"] = []

    batches, n_rows = TRAINING[size]
    wanted = training_names(size, only)
    train_rows = []
    for bs in batches:
        if training_name(bs, n_rows) not in wanted:
            continue
        jobs = {"fastdl": _mlp("fastdl", bs, n_rows, epochs, threads,
                               compiled + (["numpy"] if size == "full" else []), floor=True)}
        if torch_ok:
            jobs["torch"] = _mlp("torch", bs, n_rows, epochs, threads)
        train_rows.append((ProcessRow(training_name(bs, n_rows), "training", jobs,
                                      work=_mlp_flops(n_rows)), bs))
    runner.run_rows([r for r, _ in train_rows], process_rounds, env, progress=say)
    report["training"] = [training_row(r, bs) for r, bs in train_rows]

    row = sklearn_row(quick or tiny, threads) if sklearn and not only else None
    if row is not None:
        runner.run_rows([row], process_rounds, env, progress=say)
        report["sklearn"] = [_sklearn_json(row)]

    if not only:
        row = cnn_row(quick or tiny, threads)
        if row is not None:
            runner.run_rows([row], process_rounds, env, progress=say)
            report["cnn"] = [_pair_json(row, "torch")]
        row = distributed_row(threads) if not (quick or tiny) else None
        if row is not None:
            runner.run_rows([row], process_rounds, env, progress=say)
            report["distributed"] = [_pair_json(row, "1 process x 2 threads")]

    if scenarios:
        report["import_order"] = import_orders(size, conv, threads, rounds, sample, pre, n_rows,
                                               epochs, process_rounds, env, say)
        report["scenarios"] = load_scenarios(n_rows, epochs, process_rounds, env, say, torch_ok)
    if startup:
        from fastdl.benchmarks.startup import startup_figures

        report["startup"] = startup_figures(quick or tiny)
    report["loadavg_after"] = runner.loadavg()
    report["others_busy_cpus_after"] = runner.others_busy()
    report["targets"] = targets(report)
    return report


def _torch_version():
    from importlib import metadata

    return metadata.version("torch")


def _mlp_flops(n_rows):
    # forward and dW products: 2 N P each; dx products for all but the first layer
    return 2.0 * n_rows * (3 * (784 * 512 + 512 * 256 + 256 * 10) - 784 * 512)


def _sklearn_json(row):
    med = runner.medians(row)
    d = {"name": row.name, "group": row.group, "note": row.note,
         "median_s": {c: m["samples"] for c, m in med.items()},
         "accuracy": {c: m["accuracy"] for c, m in med.items()}}
    if "fastdl" in med and "scikit-learn" in med:
        d["fastdl_vs_sklearn"] = med["fastdl"]["samples"] / med["scikit-learn"]["samples"]
    return d


def import_orders(size, conv, threads, rounds, sample, pre, n_rows, epochs, process_rounds,
                  env, say):
    """fastdl's dense row (paired against a bare matmul) and an MLP epoch with NumPy,
    fastdl or PyTorch imported first: each order's time over the best order's."""
    orders = ["numpy", "fastdl"] + (["torch"] if torch_available() else [])
    dense = [n for n in kernel_names(size, ["numpy"], "dense_forward+relu", conv)][-1:]
    kjobs = {o: _kernel_jobs(dense, size, conv, threads, rounds, sample, pre, False, o)["fastdl"]
             for o in orders}
    be = "cython" if "cython" in fastdl_backends() else "numba"
    krow = ProcessRow("import order, dense", "import order", kjobs,
                      read=lambda out, label: {label: out["rows"][dense[0]][be]})
    bs = 32
    mrow = ProcessRow("import order, MLP epoch", "import order",
                      {o: _mlp("fastdl", bs, n_rows, epochs, threads, preimport=o)
                       for o in orders},
                      read=runner.read_as_label)
    runner.run_rows([krow, mrow], process_rounds, env, progress=say)
    kmed, mmed = runner.medians(krow), runner.medians(mrow)
    best = min(m["samples"] for m in mmed.values())
    return {"dense_row": dense[0] if dense else None,
            "dense_paired_vs_matmul": {o: m.get("paired") for o, m in kmed.items()},
            "mlp_row": training_name(bs, n_rows),
            "mlp_median_s": {o: m["samples"] for o, m in mmed.items()},
            "mlp_vs_best": {o: m["samples"] / best for o, m in mmed.items()}}


def load_scenarios(n_rows, epochs, process_rounds, env, say, torch_ok, bs=32):
    """The MLP epoch beside 0, 1 and 2 busy processes, and both libraries in one
    process; ratios to each competitor's quiet time."""
    jobs = {"fastdl": _mlp("fastdl", bs, n_rows, epochs),
            "fastdl 1 thread": _mlp("fastdl", bs, n_rows, epochs, threads=1)}
    if torch_ok:
        jobs["torch"] = _mlp("torch", bs, n_rows, epochs)
    rows = []
    for label, n_busy in SCENARIOS:
        row = ProcessRow(label, "scenario", jobs, read=runner.read_as_label)
        with runner.busy(n_busy):
            runner.run_rows([row], process_rounds, env, progress=say)
        rows.append((label, n_busy, row))
    out = {"workload": training_name(bs, n_rows) + ", each library at its defaults "
           "(fastdl 1 thread: set_num_threads(1))", "rows": []}
    quiet = runner.medians(rows[0][2])
    for label, n_busy, row in rows:
        med = runner.medians(row)
        d = {"scenario": label, "busy_processes": n_busy,
             "median_s": {c: m["samples"] for c, m in med.items()},
             "vs_quiet": {c: m["samples"] / quiet[c]["samples"] for c, m in med.items()
                          if c in quiet},
             "fastdl_threads_at_the_end": [i["threads"]["fastdl"]["effective"] for i in row.info
                                           if "fastdl" in i.get("threads", {})
                                           and i["threads"]["fastdl"]["adaptive"]]}
        if "fastdl" in med and "fastdl 1 thread" in med:
            d["fastdl_vs_1_thread"] = med["fastdl"]["samples"] / med["fastdl 1 thread"]["samples"]
        if "fastdl" in med and "torch" in med:
            d["fastdl_vs_torch"] = med["fastdl"]["samples"] / med["torch"]["samples"]
        out["rows"].append(d)
    if torch_ok:
        both = ProcessRow("both libraries in one process", "scenario",
                          {"together": _mlp("both", bs, n_rows, epochs)})
        runner.run_rows([both], process_rounds, env, progress=say)
        med = runner.medians(both)
        out["together"] = {"label": "both libraries training in one process, alternated "
                           "epoch by epoch (measures their interference)",
                           "median_s": {c: m["samples"] for c, m in med.items()},
                           "vs_alone": {c: med[c]["samples"] / quiet[c]["samples"]
                                        for c in ("fastdl", "torch") if c in med and c in quiet}}
    return out
