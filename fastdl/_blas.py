"""The OpenBLAS libraries loaded in this process, found without loading anything: their
files, builds and thread counts (for ``fastdl.info()``), the functions that get and
set their thread counts (for ``Scoped``, fastdl/_threads.py), and the GEMM that the
compiled kernels call (``gemm``).  Not threadpoolctl: importing it sets
KMP_DUPLICATE_LIB_OK in the environment, and its way of listing the loaded libraries
can deadlock beside an import (``loaded_libraries``)."""
from __future__ import annotations

import os
from typing import NamedTuple


def loaded_libraries() -> list[str]:
    """Paths of the shared objects loaded in this process, as their executable
    mappings in ``/proc/self/maps`` name them (the files themselves, links resolved);
    empty where there is no such file.

    Not ``dl_iterate_phdr`` (threadpoolctl's way): glibc runs its callback holding the
    loader lock, and a Python callback gives the GIL up every few milliseconds; a
    thread that takes it then and loads an extension module waits for the loader lock
    with the GIL held, and the callback for the GIL: a deadlock (two threads' first
    fastdl calls, one of them importing Numba, hung 3 runs in 6)."""
    paths: dict[str, None] = {}
    try:
        with open("/proc/self/maps", "rb") as f:
            for line in f:
                # address perms offset device inode [path]; a path may hold spaces
                fields = line.rstrip(b"\n").split(None, 5)
                if len(fields) == 6 and b"x" in fields[1] and fields[5].startswith(b"/"):
                    paths[os.fsdecode(fields[5])] = None
    except OSError:
        return []
    return list(paths)


def openblas_libraries() -> list[str]:
    """The loaded libraries whose file name says OpenBLAS (MKL and BLIS are left
    alone); the names are the files' own, links resolved (``loaded_libraries``)."""
    return [p for p in loaded_libraries() if "openblas" in os.path.basename(p).lower()]


def _openblas_symbols(path: str):
    # (library, prefix, suffix) of the OpenBLAS at ``path``, already loaded, under the
    # names its builds export (NumPy's and SciPy's wheels prefix them with ``scipy_``,
    # 64-bit-integer builds suffix ``64_``), or None
    import ctypes

    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            if hasattr(lib, f"{prefix}openblas_get_num_threads{suffix}"):
                return lib, prefix, suffix
    return None


def _openblas_call(sym, name, restype):
    lib, prefix, suffix = sym
    fn = getattr(lib, f"{prefix}{name}{suffix}", None)
    if fn is None:
        return None
    fn.restype, fn.argtypes = restype, []
    return fn()


def blas_info() -> list[dict]:
    """Each OpenBLAS loaded: its file, configuration (version and build), kernels
    (``architecture``), threading layer and thread count."""
    import ctypes

    out = []
    for path in openblas_libraries():
        sym = _openblas_symbols(path)
        if sym is None:
            continue
        config = _openblas_call(sym, "openblas_get_config", ctypes.c_char_p)
        core = _openblas_call(sym, "openblas_get_corename", ctypes.c_char_p)
        parallel = _openblas_call(sym, "openblas_get_parallel", ctypes.c_int)
        out.append({"internal_api": "openblas", "filepath": os.path.realpath(path),
                    "config": config.decode() if config else None,
                    "architecture": core.decode() if core else None,
                    "threading_layer": {0: "disabled", 1: "pthreads", 2: "openmp"}.get(parallel),
                    "num_threads": _openblas_call(sym, "openblas_get_num_threads",
                                                  ctypes.c_int)})
    return out


def openblas_counters(path: str):
    """The ``get_num_threads`` and ``set_num_threads`` functions (ctypes) of the OpenBLAS
    at ``path``, already loaded; None where it has none, or where it threads with
    OpenMP (it then follows OpenMP's count, which ``Scoped`` sets anyway)."""
    import ctypes

    sym = _openblas_symbols(path)
    if sym is None or _openblas_call(sym, "openblas_get_parallel", ctypes.c_int) == 2:
        return None
    lib, prefix, suffix = sym
    get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
    put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
    if put is None:
        return None
    get.restype, get.argtypes = ctypes.c_int, []
    put.restype, put.argtypes = None, [ctypes.c_int]
    return get, put


class Gemm(NamedTuple):
    """A BLAS's ``sgemm``/``dgemm`` (Fortran interface): its library ("numpy" or
    "scipy"), file, the functions' addresses (0 for SciPy's, which the kernels reach
    through ``scipy.linalg.cython_blas``) and its integer size in bytes (8 in a
    64-bit-integer build)."""
    library: str
    file: str | None
    sgemm: int
    dgemm: int
    int_bytes: int


SCIPY_GEMM = Gemm("scipy", None, 0, 0, 4)
_gemm: Gemm | None = None


def numpy_gemm() -> Gemm | None:
    """NumPy's OpenBLAS ``?gemm``: the one among the OpenBLAS libraries loaded whose
    ``sgemm`` and ``dgemm`` NumPy's own module resolves to, if ``Scoped`` can set its
    thread count (a pthreads build); else None (NumPy built on MKL, Accelerate, or a
    BLAS whose file does not say OpenBLAS)."""
    import ctypes

    import numpy as np

    try:
        core = __import__("numpy._core._multiarray_umath", fromlist=["_"])  # NumPy 2
    except ImportError:
        core = np.core._multiarray_umath
    try:
        numpys = ctypes.CDLL(core.__file__, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except (OSError, AttributeError):
        return None

    def address(lib, name):
        fn = getattr(lib, name, None)  # dlsym: NumPy's handle searches its dependencies
        return None if fn is None else ctypes.cast(fn, ctypes.c_void_p).value

    for path in openblas_libraries():
        sym = _openblas_symbols(path)
        if sym is None or openblas_counters(path) is None:
            continue
        lib, prefix, suffix = sym
        names = [f"{prefix}{kind}gemm_{suffix}" for kind in "sd"]
        ours = [address(lib, n) for n in names]
        if None in ours or ours != [address(numpys, n) for n in names]:
            continue
        config = (_openblas_call(sym, "openblas_get_config", ctypes.c_char_p) or b"").split()
        return Gemm("numpy", os.path.realpath(path), ours[0], ours[1],
                    8 if b"USE64BITINT" in config else 4)
    return None


def gemm() -> Gemm:
    """The ``?gemm`` every Cython and Numba kernel calls: NumPy's OpenBLAS where
    ``numpy_gemm`` finds it, else SciPy's.  Why NumPy's: it is the BLAS of
    ``np.matmul``, of the NumPy backend and of the benchmarks' floors, and NumPy's
    wheels ship a newer OpenBLAS than SciPy's.  Measured 2026-12-07 (AVX2 Zen 3, one
    thread, float32, NumPy 2.4.6's OpenBLAS 0.3.31 against SciPy 1.17.1's 0.3.30): the
    products of a dense layer 32x784x512 took 372 (forward) and 410 us (input
    gradient) against 569 and 588 us; SciPy's time over NumPy's for the three products
    (forward, weight and input gradients) was 1.27, 0.98 and 0.92 at 256 rows, 1.01,
    1.21 and 1.05 at 1,024."""
    global _gemm
    if _gemm is None:
        _gemm = numpy_gemm() or SCIPY_GEMM
    return _gemm


def use_gemm(library: str) -> str:
    """Make the kernels call ``library``'s ``?gemm`` ("numpy" or "scipy"; for the tests,
    which run both; not thread-safe against running kernels); returns the previous
    library.  ValueError where NumPy's cannot be used."""
    global _gemm
    import sys

    previous = gemm().library
    if library == "numpy":
        found = numpy_gemm()
        if found is None:
            raise ValueError("library: NumPy's BLAS is not an OpenBLAS that fastdl can use")
    elif library == "scipy":
        found = SCIPY_GEMM
    else:
        raise ValueError(f"library: expected 'numpy' or 'scipy', got {library!r}")
    _gemm = found
    cython_gemm = sys.modules.get("fastdl._kernels.cython._gemm")
    if cython_gemm is not None:
        cython_gemm.use(found.sgemm, found.dgemm, found.int_bytes)
    return previous
