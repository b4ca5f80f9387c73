"""``Sequential.fit(..., distributed=True)``: the data-parallel parts of the training loop.

``fastdl.nn.training.fit`` calls these at fixed points, every rank in the same order
(each is collective):

1. ``start()`` before anything else: starts MPI, or raises ImportError saying
   ``pip install "fastdl[mpi]"``.
2. ``raise_together(error)`` once the arguments are checked: a rank that refused its
   own arguments raises its error, every other rank one naming it, so that no rank
   waits for the others in a later collective.
3. ``prepare(...)`` before the model changes: one seed for all ranks, the same data,
   model and arguments on every rank (else the same ValueError on every rank), rank
   0's parameters and optimizer state broadcast to all.
4. ``DataParallel(...).attach(run)`` fills the hooks of the training loop
   (``fastdl.nn.training._Run``): this rank's share of each global batch, the
   weighted gradient average before each step, sums over ranks for the logs and
   validation, per-rank streams for dropout and augmentation.
5. ``end_epoch(stop)`` after each epoch's callbacks: the parameters must still be
   bitwise equal on every rank (RuntimeError otherwise), and the ranks must agree
   whether to stop.
"""
from __future__ import annotations

import time
import zlib

import numpy as np

from fastdl.distributed import _runtime as R
from fastdl.distributed._runtime import abort_on_exit, bounded, comm  # noqa: F401 (fit)
from fastdl.distributed.collectives import (broadcast_, check_consistent, raise_together,
                                            reduce_sums)
from fastdl.distributed.training import average_gradients_, rank_rng, shard, shared_seed

__all__ = ["start", "raise_together", "prepare", "DataParallel"]

HINT = "with distributed=True every rank passes the same data and arguments to fit"


def start() -> None:
    """Start MPI (ImportError naming ``pip install "fastdl[mpi]"`` without it)."""
    R.init()


def _optimizer_arrays(opt):
    """The optimizer's state arrays (Adam's moments, SGD's velocity): broadcast with the
    parameters, so that a resumed fit also starts from rank 0's state."""
    names = getattr(opt, "_state_array_names", None)
    if names is None:  # an optimizer of the user's own: its state is its own affair
        return []
    return [a for a in (getattr(opt, "_" + k, None) for k in names())
            if isinstance(a, np.ndarray)]


def _optimizer_scalars(opt):
    state = getattr(opt, "state_dict", None)
    if state is None:
        return type(opt).__name__
    return repr(sorted((k, v) for k, v in state().items() if not isinstance(v, np.ndarray)))


def prepare(model, opt, seed, *, X, y, validation, loss, weight, epochs, batch_size,
            shuffle, validation_split, initial_epoch, schedule, augment) -> int:
    """The shared seed, after checking that every rank trains the same way; then rank
    0's parameters and optimizer state on every rank.  Collective.

    ``seed`` is fit's (None: the model's seed, else rank 0 draws one)."""
    seed = shared_seed(model._seed if seed is None else seed)
    Xv, yv = validation if validation is not None else (None, None)
    if isinstance(weight, tuple):  # ("binary", w)
        weight = weight[1]
    check_consistent(
        hint=HINT, X=X, y=y, validation_X=Xv, validation_y=yv,
        dtype=str(model.dtype), layers=repr(model.get_config()),
        num_parameters=model._params.num_parameters, loss=loss, class_weight=weight,
        optimizer=_optimizer_scalars(opt), epochs=epochs, batch_size=batch_size,
        shuffle=shuffle, validation_split=validation_split, initial_epoch=initial_epoch,
        schedule=schedule is not None, augment=augment is not None)
    broadcast_(model._params.data, check=False)
    for a in _optimizer_arrays(opt):
        broadcast_(a, check=False)
    return seed


class DataParallel:
    """This rank's side of one data-parallel fit: the hooks of ``_Run``.

    ``seconds`` accumulates the time spent in the gradient allreduce (waiting for
    the slowest rank included), ``steps`` the steps: ``fastdl.distributed.bench``
    reports the allreduce's share of a step from them (``DataParallel.last`` is the
    latest fit's)."""

    last = None

    def __init__(self, params):
        self.params = params
        self.rank, self.world = R.rank(), R.world_size()
        self.seconds = 0.0
        self.steps = 0
        DataParallel.last = self

    def attach(self, run):
        run.share = self.share
        run.reduce_grad = self.reduce_grad
        run.reduce_sums = reduce_sums
        run.rank_rng = self.rank_rng
        return self

    def share(self, m):
        return shard(m, self.rank, self.world)

    def rank_rng(self, seed):
        return rank_rng(seed, self.rank)

    def reduce_grad(self, grad, weight, total):
        """``grad`` (this share's mean-loss gradient) becomes the global batch's:
        ``sum_r (w_r / W) g_r``, the same bits on every rank."""
        if total == 0:
            # class weights summing to 0 over the whole batch: its rows add 0 and a zero
            # gradient, as in one process (nn.losses); every rank knows it (W is
            # computed from the global batch on each), so none makes the allreduce
            grad.fill(0)
            return
        t = time.perf_counter()
        average_gradients_(grad, weight, total, check=False)
        self.seconds += time.perf_counter() - t
        self.steps += 1

    def end_training(self):
        """After the callbacks' ``on_train_end`` (EarlyStopping restores the best
        weights there): the parameters must still be the same on every rank."""
        self._check_params(False, "the callbacks' on_train_end")

    def _check_params(self, stop, when):
        """Allgather of (CRC-32 of the parameters, stop) per rank; RuntimeError on every
        rank when the parameters differ.  Returns the table."""
        data = self.params.data
        mine = np.array([zlib.crc32(data.reshape(-1).view(np.uint8)), bool(stop)],
                        dtype=np.int64)
        table = np.empty((self.world, 2), dtype=np.int64)
        with bounded(f"fit (after {when})"):
            comm().Allgather(mine, table)
        if np.any(table[:, 0] != table[0, 0]):
            raise RuntimeError(
                f"fit(distributed=True): the parameters differ between ranks after {when} "
                "(CRC-32 per rank: " + ", ".join(f"{int(c):#010x}" for c in table[:, 0])
                + "); MPI gave the ranks different sums, or a callback changed them on "
                "some ranks only")
        return table

    def end_epoch(self, stop) -> bool:
        """Whether to stop: the parameters are checked to be bitwise the same on every
        rank (RuntimeError on every rank otherwise), and every rank must take the same
        decision (callbacks that decide differently per rank: RuntimeError)."""
        table = self._check_params(stop, "an epoch")
        if np.any(table[:, 1] != table[0, 1]):
            raise RuntimeError(
                "fit(distributed=True): the callbacks decided to stop on ranks "
                + ", ".join(str(r) for r in np.flatnonzero(table[:, 1]))
                + " only; callbacks must decide from the logs, which are the same "
                "on every rank")
        return bool(table[0, 1])
