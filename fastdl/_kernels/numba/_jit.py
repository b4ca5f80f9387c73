"""The house decorator for every Numba kernel, and the serial/parallel pick.

* ``cache=True``: compiled once per (kernel, signature), later loads take ms;
  no signatures are given, so nothing compiles at import, only at first call.
* ``error_model="numpy"``: the default ("python") puts a zero check on every
  division and blocks vectorisation.
* fastmath without ``nnan``/``ninf`` (NaN and Inf must propagate as IEEE says)
  and without ``reassoc`` (reassociation would fold rounding tricks such as
  ``(x + M) - M``); reductions that need reassociation to vectorise use
  ``FASTMATH_REDUCE``.
* Parallel variants are built from the same undecorated source as the serial
  ones (``prange`` is ``range`` in a serial compile), so they cannot drift apart.
"""
from __future__ import annotations

import os
import types

import numba

from fastdl import _config

def _drop_stale_cache(here, cache):
    """Numba checks only a kernel's own source file when it decides whether a cached
    kernel is stale, so a change to a shared helper (every ``_*.py`` here: the scalar
    math, ``_blas.py``'s GEMM calls, this file) would leave the cached kernels that
    inline it on the old code, after an upgrade too (pip removes no cache file).  A
    stamp of those files beside the cache (``cache``, where Numba keeps this folder's
    kernels) clears it when one of them changes."""
    import hashlib

    h = hashlib.sha1()
    for name in sorted(f for f in os.listdir(here) if f.startswith("_") and f.endswith(".py")):
        h.update(name.encode() + b"\0")
        with open(os.path.join(here, name), "rb") as fh:
            h.update(fh.read())
    stamp = os.path.join(cache, "fastdl-numba-maths.stamp")
    try:
        with open(stamp) as fh:
            if fh.read() == h.hexdigest():
                return
    except OSError:
        pass
    try:
        os.makedirs(cache, exist_ok=True)
        for f in os.listdir(cache):
            if f.endswith((".nbi", ".nbc")):
                os.unlink(os.path.join(cache, f))
        with open(stamp, "w") as fh:
            fh.write(h.hexdigest())
    except OSError:
        pass  # a read-only install: Numba then keeps its cache elsewhere or none


def _cache_dir(here):
    """Where Numba caches the kernels of this folder: ``__pycache__`` beside them, or
    under ``NUMBA_CACHE_DIR``, or the user's cache folder when the install is read-only
    (Numba's own choice, asked of its locator; its API is internal, hence the fallback)."""
    try:
        from numba.core.caching import FunctionCache

        return FunctionCache(_cache_dir)._cache_path
    except Exception:  # noqa: BLE001 - a Numba without that internal API
        return os.path.join(here, "__pycache__")


_HERE = os.path.dirname(os.path.abspath(__file__))
_drop_stale_cache(_HERE, _cache_dir(_HERE))

FASTMATH = {"nsz", "arcp", "contract", "afn"}
FASTMATH_REDUCE = FASTMATH | {"reassoc"}


def jit(fn=None, *, parallel=False, fastmath=None, inline="never"):
    """``numba.njit`` with the house options."""
    def wrap(f):
        return numba.njit(f, cache=True, error_model="numpy", nogil=True, parallel=parallel,
                          fastmath=FASTMATH if fastmath is None else fastmath, inline=inline)
    return wrap if fn is None else wrap(fn)


def _twin(f, suffix):
    """A copy of ``f`` under another name.  Numba's cache keys a kernel by the
    function's qualified name and line, not by its options, so a serial and a
    parallel compile of the same function would load each other from the cache."""
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + suffix, f.__defaults__,
                           f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return g


def jit_pair(fn=None, *, fastmath=None):
    """(serial, parallel) compiled from one source; call ``pick(pair, n)`` to choose."""
    def wrap(f):
        return (jit(f, fastmath=fastmath),
                jit(_twin(f, "_parallel"), parallel=True, fastmath=fastmath))
    return wrap if fn is None else wrap(fn)


def pick(pair, n: int, threshold: int = _config.PARALLEL_THRESHOLD):
    """The serial kernel below ``threshold`` elements, on one thread, or where this thread
    may not launch parallel kernels (``_config.numba_parallel_here``, which says no on one
    thread), else the parallel one."""
    if n < threshold or not _config.numba_parallel_here():
        return pair[0]
    return pair[1]


def inline(fn):
    """A scalar helper inlined into the kernels that call it."""
    return numba.njit(fn, cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
