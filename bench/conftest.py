"""pytest-benchmark suite: ``python -m pytest bench/ --benchmark-only`` (not part of the
default test run: ``testpaths`` is ``tests``).  fastdl against itself only (backends,
the NumPy reference, baselines, floors): comparisons with other libraries run each
library in its own process, through ``fastdl bench``.  Threads are pinned."""
import os

import pytest

import fastdl

THREADS = int(os.environ.get("FASTDL_BENCH_THREADS", "2"))


@pytest.fixture(scope="session", autouse=True)
def pinned_threads():
    fastdl.set_num_threads(THREADS)
    yield
