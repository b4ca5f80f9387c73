"""The process runner: every workload runs in a fresh process, each library in its own,
at its own defaults, the competitors alternated round by round (A, B, A, B, ...), and
the medians taken over all rounds.  One process holding two libraries measures their
interference, not their speed (PyTorch's epoch was 1.4-3x slower beside an import of
fastdl that set OMP_WAIT_POLICY); such rows are labelled.

``ProcessRow`` is the unit: a name and, for each competitor, the command that runs it
and prints one JSON line.  Adding a row that runs a workload in a subprocess (a CNN,
an ``mpirun`` job) is a ``ProcessRow`` with its commands and, where its output is not
``{"results": {competitor: {"samples": [...]}}}``, a ``read`` function.

Children get the environment of ``fastdl bench`` without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE, which force NumPy's OpenBLAS onto other kernels (-32% to +16% on
its GEMMs here) and which PyTorch's BLAS ignores: unset in the children only,
recorded in the report (``--keep-openblas-env`` keeps them).
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def script(name: str) -> str:
    """The path of a worker script of this folder (run by path, never with ``-m``)."""
    return os.path.join(HERE, name)


def child_env(keep_openblas: bool = False) -> dict:
    return {k: v for k, v in os.environ.items() if keep_openblas or k not in UNSET}


def run_json(argv, env=None, timeout=None) -> dict:
    """Run ``argv``; the JSON object on the last line of its output."""
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{os.path.basename(argv[1]) if len(argv) > 1 else argv[0]} failed "
                           f"({out.returncode}): {out.stderr.strip()[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_results(out: dict, label: str) -> dict:
    """The standard output of a job: ``{competitor: {"samples": [...], ...}}``."""
    return out["results"]


def read_as_label(out: dict, label: str) -> dict:
    """A job reporting one competitor, filed under the job's label."""
    return {label: next(iter(out["results"].values()))}


@dataclass
class ProcessRow:
    """A row whose competitors each run in a process of their own, ``rounds`` times.

    ``jobs``: label -> argv; a job may report several competitors (fastdl's backends
    and a floor, say), so results are keyed by what ``read(out, label)`` returns for a
    job's JSON ``out``: {competitor: {metric: value or [values]}}; the seconds are
    ``"samples"``."""
    name: str
    group: str
    jobs: dict
    read: Callable = read_results
    note: str = ""
    work: float = 0.0           # flops of one sample (for GFLOP/s), 0 if not meaningful
    results: dict = field(default_factory=dict)   # competitor -> metric -> [values]
    info: list = field(default_factory=list)      # every job's JSON, less its results


def run_rows(rows, rounds: int, env=None, timeout=None, progress=None) -> None:
    """Run every row's jobs ``rounds`` times, alternating the competitors and rotating
    their order round by round; fill each row's ``results``."""
    for row in rows:
        labels = list(row.jobs)
        for r in range(rounds):
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                if progress:
                    progress(f"{row.name}: {label} (round {r + 1}/{rounds})")
                out = run_json(row.jobs[label], env=env, timeout=timeout)
                for comp, metrics in row.read(out, label).items():
                    dest = row.results.setdefault(comp, {})
                    for k, v in metrics.items():
                        dest.setdefault(k, []).extend(v if isinstance(v, list) else [v])
                row.info.append({k: v for k, v in out.items() if k not in ("results", "rows")})


def medians(row: ProcessRow) -> dict:
    """{competitor: {metric: median}} of a row that has run."""
    return {c: {k: statistics.median(v) for k, v in m.items() if v}
            for c, m in row.results.items()}


@contextlib.contextmanager
def busy(n: int):
    """``n`` busy processes (``python -c "while True: pass"``) for the duration."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        time.sleep(0.2 if n else 0.0)  # started and spinning
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def others_busy(seconds: float = 1.0):
    """CPUs that other processes kept busy over the next ``seconds`` (None where
    /proc/stat is unreadable): a run on a busy machine says so in its report."""
    from fastdl._cpu import CpuLoad, allowed_cpus

    load = CpuLoad(allowed_cpus())
    time.sleep(seconds)
    return load.sample()


def loadavg():
    """The 1, 5 and 15-minute load averages (None where unknown)."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def machine(keep_openblas: bool = False) -> dict:
    """What a figure depends on: the CPU (model, count, flags), versions, the thread
    and OpenBLAS environment variables (as set for ``fastdl bench`` and as given to
    its children), the BLAS libraries and the one the compiled kernels' GEMMs call, and
    the load."""
    import fastdl
    from fastdl import _config

    info = fastdl.info()
    env = {k: os.environ.get(k) for k in _config.THREAD_ENV}
    return {"cpu": _config.cpu_info(all_flags=True), "versions": info["versions"],
            "backends": list(info["backends"]), "threads": info["threads"],
            "environment": env,
            "environment_of_children": {k: (v if keep_openblas or k not in UNSET else None)
                                        for k, v in env.items()},
            "blas": info["blas"], "gemm": info["gemm"], "loadavg": loadavg(),
            "others_busy_cpus": others_busy()}
