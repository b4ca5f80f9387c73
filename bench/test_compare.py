"""The rows of ``fastdl bench`` (each competitor, PyTorch included when installed)
as pytest-benchmark cases, grouped by row so that the comparison table lines up."""
import pytest

import fastdl
from fastdl import benchmarks

_torch = benchmarks._torch()
ROWS = benchmarks.build_rows(quick=False, backends=fastdl.backends(), torch=_torch)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_row(benchmark, row):
    # one benchmark per row: the competitors run one after another in the same test
    # would break pytest-benchmark's one-function model, so time the row's best
    # compiled backend and record every competitor's median from an interleaved run
    res = benchmarks.measure(row.fns, rounds=5, sample=0.02, pre=0.05)
    benchmark.group = row.group
    benchmark.extra_info.update({k: v["median"] for k, v in res.items()})
    best = min((k for k in res if k in ("numba", "cython")), key=lambda k: res[k]["median"],
               default=next(iter(res)))
    benchmark(row.fns[best])
