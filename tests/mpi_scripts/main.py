"""Every semantic check in one mpirun (start-up costs about a second):
``mpirun -n K python tests/mpi_scripts/main.py OUTDIR`` writes OUTDIR/rank<r>.json."""
import os
import re
import sys
from pathlib import Path

import fastdl.distributed as dist
import collectives_checks
import fit_checks
import training_checks
from _common import bits, dump

DOC = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


def run_doc_example(record):
    """The training loop of docs/distributed.md runs, and leaves the ranks in step."""
    blocks = re.findall(r"```python\n(# example.+?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, f"expected one example block in {DOC}, found {len(blocks)}"
    ns = {"__name__": "doc_example"}
    exec(compile(blocks[0], str(DOC), "exec"), ns)
    assert dist.in_sync(ns["w"])
    record["doc_example_params"] = bits(ns["w"])


def run_bench_smoke(record):
    """fastdl.distributed.bench's timer runs in each mode (the timings are not tested)."""
    from fastdl.distributed.bench import time_allreduce

    for mode in ("allreduce", "checked", "buckets"):
        res = time_allreduce([300, 17, 5], repeats=3, mode=mode)
        assert 0 < res["min"] <= res["median"] and res["bytes"] == 322 * 4, res
        assert res["ranks"] == dist.world_size()
    from fastdl.distributed.bench import time_fit

    res = time_fit(True, epochs=2, rows=64, batch_size=16)
    assert res["ranks"] == dist.world_size() and len(res["epochs"]) == 2, res
    assert 0 < res["allreduce"] < res["epoch"] and 0 < res["allreduce_share"] < 1, res
    record["bench_smoke"] = True


def main(outdir):
    assert not dist.is_initialized()
    dist.init()
    dist.init(timeout=60)  # idempotent; a later timeout replaces the limit
    record = {"rank": dist.rank(), "world": dist.world_size(), "outdir": outdir,
              "launcher_size": os.environ.get("OMPI_COMM_WORLD_SIZE"),
              "initialized": dist.is_initialized(), "local_size": dist.local_size(),
              "threads_per_rank_env": dist.threads_per_rank()}
    del os.environ["OMP_NUM_THREADS"]  # the test sets it to 1
    record["threads_per_rank"] = dist.threads_per_rank()
    collectives_checks.run(record)
    training_checks.run(record)
    fit_checks.run(record, outdir)
    run_doc_example(record)
    run_bench_smoke(record)
    dump(outdir, record)


if __name__ == "__main__":
    main(sys.argv[1])
