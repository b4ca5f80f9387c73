"""The OpenBLAS libraries loaded in this process, found without loading anything: their
files, builds and thread counts (for ``fastdl.info()``), and the functions that get and
set their thread counts (for ``Scoped``, fastdl/_threads.py).  threadpoolctl finds
them the same way, but importing it sets KMP_DUPLICATE_LIB_OK in the environment."""
from __future__ import annotations

import os


def loaded_libraries() -> list[str]:
    """Paths of the shared objects loaded in this process (``dl_iterate_phdr``; empty
    where the C library has none).  threadpoolctl finds them the same way, but
    importing it sets KMP_DUPLICATE_LIB_OK in the environment."""
    import ctypes

    class Info(ctypes.Structure):
        _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p)]

    paths = []

    def seen(info, size, data):
        if info.contents.name:
            paths.append(os.fsdecode(info.contents.name))
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Info), ctypes.c_size_t,
                                ctypes.c_void_p)(seen)
    try:
        ctypes.CDLL(None).dl_iterate_phdr(callback, None)
    except (AttributeError, OSError):
        return []
    return paths


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
    import ctypes

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
    for path in loaded_libraries():
        if "openblas" not in os.path.basename(path).lower():
            continue
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
