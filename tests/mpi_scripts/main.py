"""Every semantic check in one mpirun (start-up costs about a second):
``mpirun -n K python tests/mpi_scripts/main.py OUTDIR`` writes OUTDIR/rank<r>.json."""
import os
import sys

import fastdl.distributed as dist
import collectives_checks
import training_checks
from _common import dump


def main(outdir):
    dist.init()
    dist.init(timeout=60)  # idempotent; a later timeout replaces the limit
    record = {"rank": dist.rank(), "world": dist.world_size(),
              "launcher_size": os.environ.get("OMPI_COMM_WORLD_SIZE")}
    collectives_checks.run(record)
    training_checks.run(record)
    dump(outdir, record)


if __name__ == "__main__":
    main(sys.argv[1])
