"""In-process timing: competitors of one process interleaved round by round.

Each round runs every function untimed for ``pre`` seconds (BLAS threads still
spinning from the previous block must not bill this one: OpenBLAS's spin for about
0.1 s after a call), then times a block of calls lasting about ``sample`` seconds;
the order rotates from round to round.  JIT compilation and first-touch happen in a
call before any timing.  Pure Python and NumPy: the other libraries' workers import
this file by path.
"""
from __future__ import annotations

import statistics
import time


def time_block(fn, loops: int) -> float:
    """Seconds per call of ``fn`` over ``loops`` calls."""
    t = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - t) / loops


def run_for(fn, seconds: float) -> int:
    """Call ``fn`` for about ``seconds`` (at least once); the number of calls."""
    end = time.perf_counter() + seconds
    n = 0
    while True:
        fn()
        n += 1
        if time.perf_counter() >= end:
            return n


def measure(fns: dict, rounds: int, sample: float, pre: float, pair=None,
            cool: float = 0.0) -> dict:
    """Seconds per call of each function, interleaved over ``rounds`` rounds:
    ``{key: {"samples": [...], "loops": n}}``, and with ``pair`` (the key of a
    baseline) ``"paired"``: each block of the others is followed by a block of the
    baseline (after its own ``pre``), and the per-round time ratios are kept, so that
    drift of the machine between rounds cancels out of them.

    ``cool``: seconds of sleep before each block, for competitors calling different
    BLAS libraries (fastdl's compiled backends SciPy's OpenBLAS where NumPy's is
    not one, ``np.matmul`` NumPy's): each library's idle threads spin about 0.1 s after a call, and a block
    started then shares a CPU with them, which no program using one of them alone
    sees."""
    loops = {}
    for k, fn in fns.items():
        fn()  # compile / first-touch outside every figure
        loops[k] = max(1, int(sample / max(time_block(fn, 1), 1e-7)))
    out = {k: {"samples": [], "loops": loops[k]} for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            time.sleep(cool)
            if pre > 0:
                run_for(fns[k], pre)
            t = time_block(fns[k], loops[k])
            out[k]["samples"].append(t)
            if pair is not None and k != pair:
                time.sleep(cool)
                if pre > 0:
                    run_for(fns[pair], pre)
                out[k].setdefault("paired", []).append(t / time_block(fns[pair], loops[pair]))
    return out


def median(values):
    return statistics.median(values) if values else None
