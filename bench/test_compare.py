"""The kernel rows of ``fastdl bench`` (fastdl's backends, the NumPy reference, the
baseline and the floor of each row) as pytest-benchmark cases, grouped by row so that
the comparison table lines up.  PyTorch's side runs in its own process: ``fastdl bench``."""
import pytest

import fastdl
from fastdl.benchmarks import rows, specs, timing

SPECS = specs.kernel_specs("full", conv="conv2d_forward" in __import__(
    "fastdl._registry", fromlist=["OPS"]).OPS)


@pytest.mark.parametrize("spec", SPECS, ids=[s["name"] for s in SPECS])
def test_row(benchmark, spec):
    # one benchmark per row: the competitors run one after another in the same test
    # would break pytest-benchmark's one-function model, so time the row's best
    # compiled backend and record every competitor's median from an interleaved run
    fns = rows.competitors(spec, fastdl.backends())
    res = timing.measure(fns, rounds=5, sample=0.02, pre=0.05)
    benchmark.group = spec["group"]
    med = {k: timing.median(v["samples"]) for k, v in res.items()}
    benchmark.extra_info.update(med)
    best = min((k for k in med if k in ("numba", "cython")), key=med.get,
               default=next(iter(med)))
    benchmark(fns[best])
