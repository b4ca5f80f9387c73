"""fastdl: compiled CPU kernels for deep learning, with a NumPy reference,
a Numba backend and a Cython backend behind one API (``fastdl.functional``)."""
from fastdl._config import (backends, get_backend, get_num_threads, info, set_backend,
                            set_num_threads, use_backend)

__version__ = "0.1.0"

# Submodules and the heavier public names load on first use, so that ``import fastdl``
# stays fast and compiles nothing; ``dir(fastdl)`` lists them (``__all__`` the names).
_LAZY = {"clip_grad_norm_": "fastdl.optim", "clip_grad_value_": "fastdl.optim",
         "Parameters": "fastdl.optim", "load": "fastdl.nn"}

__all__ = ["__version__", "backends", "get_backend", "set_backend", "use_backend",
           "set_num_threads", "get_num_threads", "info", *_LAZY]


def _submodules():
    """The public submodules and subpackages (``nn``, ``optim``, ...), from the package
    folder, so that one added later is listed without touching this file."""
    import pkgutil

    return {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def __getattr__(name):
    import importlib

    if name in _submodules():
        return importlib.import_module(f"fastdl.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastdl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | _submodules())
