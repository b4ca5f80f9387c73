"""fastdl: compiled CPU kernels for deep learning, with a NumPy reference,
a Numba backend and a Cython backend behind one API (``fastdl.functional``)."""
from fastdl import _config  # sets OMP_WAIT_POLICY before any OpenMP runtime loads
from fastdl._config import (backends, get_backend, get_num_threads, info, set_backend,
                            set_num_threads, use_backend)

__version__ = "0.1.0"

__all__ = ["__version__", "backends", "get_backend", "set_backend", "use_backend",
           "set_num_threads", "get_num_threads", "info"]


def __getattr__(name):
    # Submodules and the heavier public names load on first use, so that
    # ``import fastdl`` stays fast and compiles nothing.
    import importlib

    if name in ("functional", "nn", "optim", "schedules", "callbacks", "init", "data",
                "augment", "datasets", "metrics", "cli"):
        return importlib.import_module(f"fastdl.{name}")
    if name in ("clip_grad_norm_", "clip_grad_value_", "Parameters"):
        return getattr(importlib.import_module("fastdl.optim"), name)
    if name == "load":
        return importlib.import_module("fastdl.nn").load
    raise AttributeError(f"module 'fastdl' has no attribute {name!r}")
