"""A rank that fails while the others wait in a collective: the job must end.

``mpirun -n 2 python faults.py MODE``; rank 1 fails after a first allreduce, rank 0
then waits in a second one, which only ends when the job is torn down.  MODE:
``raise`` (an uncaught exception), ``kill`` (SIGKILL), ``exit`` (sys.exit(0): leaves
early; bounded by the time limit, 2 s).  Rank 0 printing "returned" is a failure.
``fit-raise``, ``fit-kill`` and ``fit-exit``: rank 1 raises, is killed, or calls
sys.exit(3) in the middle of ``fit(distributed=True)`` (in its augmentation of the third
batch), while rank 0 waits in the step's allreduce.  ``fit-restore``: rank 1's callback
changes its parameters in ``on_train_end``, after the last epoch's check."""
import os
import signal
import sys

import numpy as np

import fastdl.distributed as dist


def fit_fails(mode):
    from fastdl import callbacks, nn

    g = np.random.default_rng(0)
    X, y = g.standard_normal((200, 4)), g.integers(0, 2, 200)
    calls = []

    def augment(xb, rng):
        calls.append(1)
        if dist.rank() == 1 and len(calls) == 3:
            print(f"rank 1: failing ({mode})", flush=True)
            if mode == "fit-raise":
                raise ValueError("rank 1 fails on purpose")
            if mode == "fit-exit":
                sys.exit(3)
            os.kill(os.getpid(), signal.SIGKILL)
        return xb

    class Restore(callbacks.Callback):
        def on_train_end(self, model):
            print("rank 1: failing (fit-restore)", flush=True)
            model.parameters().data[0] += 1.0

    restore = mode == "fit-restore"
    model = nn.Sequential(nn.Dense(4, 8, "relu"), nn.Dense(8, 2), seed=0)
    model.fit(X, y, epochs=3, batch_size=20, augment=None if restore else augment, seed=0,
              verbose=0, distributed=True,
              callbacks=[Restore()] if restore and dist.rank() == 1 else [])
    print(f"rank {dist.rank()}: returned from fit", flush=True)


def main(mode):
    dist.init()
    if mode.startswith("fit-"):
        dist.init(timeout=60)  # the fault, not the time limit, must end the job
        return fit_fails(mode)
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
