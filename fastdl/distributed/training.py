"""Building blocks of data-parallel training: shares, gradient averaging, seeds.

The scheme (``docs/distributed.md``): every rank holds the whole data set and the
whole model; all ranks draw the same permutation, so they agree on each global batch
of ``m`` rows; rank ``r`` runs forward and backward on its contiguous share
``shard(m, r, p)`` of it; the gradients are averaged with weights share/m, so the
update equals the one-process update on the global batch.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastdl import _validate as V
from fastdl.distributed import _runtime as R
from fastdl.distributed._runtime import bounded, comm
from fastdl.distributed.collectives import (
    allreduce_, as_buffer, check_consistent, raise_together)


def shard(m, rank=None, world=None) -> slice:
    """The contiguous share of rank ``rank`` of a global batch of ``m`` rows.

    The shares of ranks 0 .. world-1 partition ``range(m)`` in order; their sizes
    differ by at most one (the first ``m % world`` ranks take one row more), and a
    share is empty when ``m < world`` (a small last batch): that rank still takes
    part in the gradient average, with weight 0.

    Parameters
    ----------
    m : int >= 0, rows in the global batch
    rank, world : int, default this process's rank and ``world_size()``;
        ``0 <= rank < world``

    Returns
    -------
    slice(start, stop) with ``0 <= start <= stop <= m``
    """
    m = V.check_int("m", m, 0)
    if world is None:
        world = R.world_size()
    world = V.check_int("world", world, 1)
    if rank is None:
        rank = R.rank()
    rank = V.check_int("rank", rank, 0)
    if rank >= world:
        raise ValueError(f"rank: expected a rank in [0, {world}), got {rank}")
    q, extra = divmod(m, world)
    start = rank * q + min(rank, extra)
    return slice(start, start + q + (rank < extra))


def average_gradients_(grad, weight, total, *, check=True):
    """Average the ranks' gradients in place, weighted: ``sum_r (w_r / W) g_r``.

    Rank r's ``grad`` holds the gradient of its share's mean loss, ``g_r``; ``weight``
    is its share's size ``m_r`` and ``total`` the global batch's ``m``.  Since
    ``g_r = (1/m_r) sum_{i in share r} dl_i``, the result is
    ``(1/m) sum_i dl_i``: the gradient of the global batch's mean loss, on every
    rank (the same bits on every rank, as the allreduce gives them).  With class
    weights the mean loss divides by the batch's total weight instead: pass the
    share's and the global batch's total class weights.

    Parameters
    ----------
    grad : ndarray, float32 or float64, C-contiguous, writeable (``Parameters.grad``)
    weight : real >= 0, this rank's share (rows, or total class weight).  At 0 the
        rank has run no backward pass; its buffer is zeroed (it may hold the last
        step's gradient) and it still takes part.
    total : real > 0, the global batch's (the same on every rank)
    check : bool, as in ``allreduce_``: compare size, dtype and ``total`` across ranks
        first, and refuse bad arguments on one rank with an error on every rank

    Returns
    -------
    grad (the same object)

    Notes
    -----
    Scaling the loss gradient ``dy`` by ``w_r / W`` before the backward pass gives
    the same result without a pass over the buffer here (and lets buckets start
    during the backward pass, see ``GradientBuckets``); then call
    ``allreduce_(grad, "sum")``.
    """
    error = None
    try:
        a = as_buffer("grad", grad)
        # finite: an infinite total zeroed every gradient, silently
        weight = V.check_finite("weight", weight, lo=0.0)
        total = V.check_finite("total", total, lo=0.0, lo_open=True)
        if weight > total * (1 + 1e-12):
            raise ValueError(f"weight: expected at most total ({total}), got {weight}")
    except (TypeError, ValueError) as e:
        if not check:
            raise
        error = e
    if check:
        # a refusal on one rank would leave the others in the allreduce until the time
        # limit; a total that differs would average with wrong weights
        raise_together(error, "average_gradients_'s arguments")
        check_consistent("total is the global batch's, the same on every rank",
                         total=total)
    if weight == 0:
        a.fill(0)
    elif weight != total:
        np.multiply(a, weight / total, out=a)
    return allreduce_(a, "sum", check=check)


def shared_seed(seed=None) -> int:
    """One seed for every rank, for the shuffle that must be the same everywhere.

    Parameters
    ----------
    seed : None, int >= 0, or numpy.random.Generator
        An int must be the same on every rank (else ValueError on every rank).  None:
        rank 0 draws fresh entropy and sends it to the others.  A Generator: every
        rank draws one int from its own (so that they advance alike) and rank 0's
        is used.

    Returns
    -------
    int >= 0, the same on every rank
    """
    mine = error = None
    try:
        if isinstance(seed, np.random.Generator):
            mine = int(seed.integers(2**63))
        elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            mine = V.check_int("seed", seed, 0, V.MAX_SEED)
        elif seed is not None:
            raise TypeError("seed: expected None, an int or a numpy Generator, got "
                            f"{type(seed).__name__}")
    except (TypeError, ValueError) as e:
        error = e
    # a seed refused on one rank left the others in the next collective (a truncated
    # message, then the time limit): every rank raises
    raise_together(error, "shared_seed's seed")
    check_consistent(hint="every rank must pass the same seed",
                     seed="a Generator" if isinstance(seed, np.random.Generator) else mine)
    if mine is None and R.rank() == 0:
        mine = int(np.random.SeedSequence().entropy)
    c = comm()
    with bounded("shared_seed"):
        return int(c.bcast(mine, root=0))


def rank_rng(seed, rank=None) -> np.random.Generator:
    """A random stream of this rank's own, derived from ``seed``.

    For dropout masks and augmentation, which must differ between ranks (each rank
    sees other rows): ``SeedSequence(seed, spawn_key=(rank,))``, the stream that
    ``SeedSequence(seed).spawn(world)[rank]`` gives, independent of the others.

    Parameters
    ----------
    seed : int >= 0 (e.g. drawn from the shared shuffle generator)
    rank : int >= 0, default this process's rank
    """
    seed = V.check_int("seed", seed, 0)
    rank = R.rank() if rank is None else V.check_int("rank", rank, 0)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(rank,)))


class GradientBuckets:
    """The gradient allreduce in buckets, started during the backward pass.

    The flat gradient buffer is cut into buckets of consecutive layers.  Backward
    runs from the last layer to the first; as soon as it has written a bucket,
    ``start(i)`` launches a nonblocking sum-allreduce (``MPI_Iallreduce``,
    ``MPI_IN_PLACE``) of it, which runs while backward computes the layers before;
    ``wait()`` completes them all before ``opt.step()``.  As PyTorch DDP and
    Horovod do; whether it pays depends on the link (measured in ``fastdl bench``).

    Open MPI progresses a nonblocking collective only inside MPI calls (there is
    no progress thread by default): ``progress()`` between layers lets it advance.
    The loss gradient must be scaled by ``w_r / W`` before backward (see
    ``average_gradients_``), because a bucket leaves as soon as it is written.

    Every rank must start the same buckets in the same order (MPI's rule for
    nonblocking collectives), also a rank with an empty share (after zeroing
    the buffer).

    Parameters
    ----------
    grad : ndarray, float32/float64, C-contiguous, writeable, 1-D (``Parameters.grad``)
    bounds : sequence of (start, stop) element ranges of ``grad``, non-empty,
        non-overlapping; the same on every rank (checked here, a collective).
    """

    def __init__(self, grad, bounds):
        error = None
        try:
            self.grad = as_buffer("grad", grad)
            V.check_ndim("grad", self.grad, 1)
            b = [(V.check_int("bounds start", s, 0), V.check_int("bounds stop", e, 0))
                 for s, e in bounds]
            for s, e in b:
                if not s < e <= self.grad.size:
                    raise ValueError(f"bounds: ({s}, {e}) is not a non-empty range of "
                                     f"[0, {self.grad.size})")
            ordered = sorted(b)
            for (s0, e0), (s1, e1) in zip(ordered, ordered[1:]):
                if s1 < e0:
                    raise ValueError(f"bounds: ({s0}, {e0}) and ({s1}, {e1}) overlap")
        except (TypeError, ValueError) as e:
            error = e
        # refused on one rank only, the others went on into the comparison below with a
        # message that did not fit (MPI_ERR_TRUNCATE), then waited out the time limit
        raise_together(error, "GradientBuckets' arguments")
        check_consistent(hint="every rank must cut the same buckets", bounds=tuple(b),
                         grad_size=self.grad.size, grad_dtype=str(self.grad.dtype))
        self.bounds = b
        self._views = [self.grad[s:e] for s, e in b]
        self._requests = [None] * len(b)

    def start(self, i):
        """Launch bucket ``i``'s sum-allreduce (its gradients must be final)."""
        i = V.check_int("i", i, 0)
        if i >= len(self._requests):
            raise ValueError(f"i: expected a bucket in [0, {len(self._requests)}), got {i}")
        if self._requests[i] is not None:
            raise RuntimeError(f"GradientBuckets: bucket {i} started twice before wait()")
        MPI = R._state.MPI
        self._requests[i] = comm().Iallreduce(MPI.IN_PLACE, self._views[i], op=MPI.SUM)

    def progress(self):
        """Let the started allreduces advance (returns at once)."""
        MPI = R._state.MPI
        active = [q for q in self._requests if q is not None]
        if active:
            MPI.Request.Testall(active)

    def wait(self):
        """Complete every bucket; each bucket must have been started."""
        missing = [i for i, q in enumerate(self._requests) if q is None]
        if missing:
            raise RuntimeError(f"GradientBuckets: buckets {missing} were not started "
                               "(every rank must start every bucket)")
        MPI = R._state.MPI
        with bounded(f"GradientBuckets.wait ({len(self._requests)} buckets)"):
            MPI.Request.Waitall(self._requests)
        self._requests = [None] * len(self._requests)
