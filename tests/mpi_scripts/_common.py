"""Helpers for the scripts that tests/test_distributed.py runs under mpirun."""
import hashlib
import json
import os

import numpy as np

import fastdl.distributed as dist


def expect(exc, fragment, fn, *args, **kwargs):
    """Call ``fn``; it must raise ``exc`` with ``fragment`` in its message."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        assert fragment in str(e), f"rank {dist.rank()}: {fragment!r} not in {str(e)!r}"
        return str(e)
    raise AssertionError(f"rank {dist.rank()}: {fn.__name__} did not raise {exc.__name__} "
                         f"({fragment!r})")


def bits(a):
    """Exact bits of a float or an array, comparable in JSON."""
    if isinstance(a, float):
        return a.hex()
    a = np.ascontiguousarray(a)
    if a.nbytes <= 64:
        return a.tobytes().hex()
    return f"{a.dtype}:{hashlib.sha256(a.tobytes()).hexdigest()}"


def dump(outdir, record):
    """Write this rank's record to ``outdir/rank<r>.json`` for the test to compare."""
    path = os.path.join(outdir, f"rank{dist.rank()}.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
