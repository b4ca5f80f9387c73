"""Data-parallel training over MPI (``pip install "fastdl[mpi]"``: mpi4py and Open MPI).

Launch every rank with MPI: ``mpirun -n K python script.py``.  Outside ``mpirun``
MPI starts a world of one process.  mpi4py is imported on first use: fastdl imports
and runs without it; then ``is_available()`` is False and every other function here
raises ImportError saying ``pip install "fastdl[mpi]"``.

Public API: ``init``, ``rank``, ``world_size``, ``is_available``, ``allreduce_``,
``broadcast_``; ``is_initialized``, ``local_size`` and ``threads_per_rank`` for
launchers.  The building blocks of ``fit(distributed=True)``: ``shard``,
``average_gradients_``, ``check_consistent``, ``raise_together``, ``reduce_sums``,
``shared_seed``, ``rank_rng``, ``in_sync``, ``GradientBuckets``.  Every function that communicates is
collective: all ranks call it, in the same order.  See ``docs/distributed.md``.
"""
from fastdl.distributed._runtime import (MISSING, init, is_available, is_initialized,
                                         local_size, rank, threads_per_rank, world_size)
from fastdl.distributed.collectives import (allreduce_, broadcast_, check_consistent,
                                            in_sync, raise_together, reduce_sums)
from fastdl.distributed.training import (GradientBuckets, average_gradients_, rank_rng,
                                         shard, shared_seed)

__all__ = ["init", "rank", "world_size", "is_available", "allreduce_", "broadcast_",
           "is_initialized", "local_size", "threads_per_rank",
           "shard", "average_gradients_", "check_consistent", "raise_together",
           "reduce_sums", "shared_seed",
           "rank_rng", "in_sync", "GradientBuckets", "MISSING"]
