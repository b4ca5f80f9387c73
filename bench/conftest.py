"""pytest-benchmark suite: ``python -m pytest bench/ --benchmark-only`` (not part of the
default test run: ``testpaths`` is ``tests``).  Threads are pinned for every side."""
import os

import pytest

import fastdl

THREADS = int(os.environ.get("FASTDL_BENCH_THREADS", "2"))


@pytest.fixture(scope="session", autouse=True)
def pinned_threads():
    fastdl.set_num_threads(THREADS)
    try:
        import torch
        torch.set_num_threads(THREADS)
    except ImportError:
        pass
    yield
