"""A rank that fails while the others wait in a collective: the job must end.

``mpirun -n 2 python faults.py MODE``; rank 1 fails after a first allreduce, rank 0
then waits in a second one, which only ends when the job is torn down.  MODE:
``raise`` (an uncaught exception), ``kill`` (SIGKILL), ``exit`` (sys.exit(0): leaves
early; bounded by the time limit, 2 s).  Rank 0 printing "returned" is a failure."""
import os
import signal
import sys

import numpy as np

import fastdl.distributed as dist


def main(mode):
    dist.init()
    a = np.ones(1000)
    dist.allreduce_(a, "sum")  # with the default limit: the ranks may start seconds apart
    dist.init(timeout=2)
    if dist.rank() == 1:
        print(f"rank 1: failing ({mode})", flush=True)
        if mode == "raise":
            raise ValueError("rank 1 fails on purpose")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "exit":
            sys.exit(0)
        raise SystemExit(f"unknown mode {mode!r}")
    dist.allreduce_(a, "sum")
    print(f"rank {dist.rank()}: returned from the allreduce", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
