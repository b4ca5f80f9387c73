"""The one registry: each op names its family, and so its reference and backend kernels.

An op ``name`` of family ``fam`` is implemented three times, under the same stem:

    fastdl/reference/<fam>.py          def name(...)      NumPy, the oracle
    fastdl/_kernels/numba/<fam>.py     def name(...)      Numba
    fastdl/_kernels/cython/<fam>.pyx   def name(...)      Cython

All three take the same arguments: validated, C-contiguous arrays of one float
dtype, inputs first, then the output buffers they write, then scalars.  They
allocate nothing that outlives the call and return None or a Python scalar.
Public functions in ``fastdl.functional`` validate, allocate and call
``kernel(name, backend)``; tests and benchmarks iterate over ``OPS``.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from fastdl import _config, _threads

_PACKAGES = {
    "numpy": "fastdl.reference",
    "numba": "fastdl._kernels.numba",
    "cython": "fastdl._kernels.cython",
}


@dataclass(frozen=True)
class Op:
    name: str      # kernel stem, the same in every backend
    family: str    # module stem: reference/<family>.py, numba/<family>.py, cython/<family>.pyx
    kind: str      # "gemm", "elementwise", "rowwise", "reduction", "update", "other"


OPS: dict[str, Op] = {}


def _ops(family: str, kind: str, *names: str) -> None:
    for name in names:
        OPS[name] = Op(name, family, kind)


_ops("dense", "gemm", "dense_forward", "dense_backward")
_ops("activations", "elementwise",
     "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "relu", "relu_backward",
     "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
     "gelu", "gelu_backward", "silu", "silu_backward")
_ops("softmax", "rowwise", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward")
_ops("maxout", "rowwise", "maxout", "maxout_backward")
_ops("dropout", "elementwise", "dropout", "dropout_backward")
_ops("losses", "reduction",
     "mse", "mse_backward", "binary_cross_entropy", "binary_cross_entropy_backward",
     "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
     "softmax_cross_entropy", "cross_entropy", "kl_divergence")
_ops("optim", "update", "sgd_update", "adam_update", "sum_squares", "scale", "clip_value")
_ops("metrics", "other", "confusion_matrix")
_ops("augment", "other", "shift_images", "flip_images", "crop_images", "noise_images")
_ops("conv", "gemm", "conv2d_forward", "conv2d_backward")
_ops("pool", "other", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward")

_cache: dict[tuple[str, str], object] = {}
_local, _tstate, _bstate = _threads._local, _threads._state, _config._state
_block_backend = _config._block_backend.get


def kernel(name: str, backend: str | None = None):
    """The kernel ``name`` of ``backend`` (None: the default backend), wrapped so that
    it runs with fastdl's thread count and leaves the caller's settings as they were
    (fastdl/_threads.py)."""
    if getattr(_local, "generation", -1) != _tstate["generation"]:
        _threads.apply_threads()  # a new thread, or a new count (Numba's is per thread)
    if backend is None:
        backend = _block_backend() or _bstate["backend"] or _config.get_backend()
    if type(backend) is str:
        fn = _cache.get((name, backend))
        if fn is not None:  # the hot path: the generation check above and one dict lookup
            return fn
    backend = _config.check_backend(backend)
    key = (name, backend)
    fn = _cache.get(key)
    if fn is None:
        op = OPS[name]
        if backend == "numba":
            _config.numba_module()  # threading layer before the first Numba kernel loads
        modname = f"{_PACKAGES[backend]}.{op.family}"
        fresh = modname not in sys.modules
        module = importlib.import_module(modname)
        if fresh or not _cache:
            _threads.find_blas()  # the module may have loaded a BLAS (SciPy's, for Cython)
        # SERIAL_BLAS: the module's kernels that run their own threads over
        # single-threaded BLAS calls (Scoped in fastdl/_kernels/cython/_threads.pyx)
        fn = _threads.scoped(getattr(module, name), blas=op.kind == "gemm",
                             serial_blas=name in getattr(module, "SERIAL_BLAS", ()))
        _cache[key] = fn
    return fn


def ops(family: str | None = None, kind: str | None = None) -> list[Op]:
    """Registered ops, optionally of one family or kind, in registration order."""
    return [op for op in OPS.values()
            if (family is None or op.family == family) and (kind is None or op.kind == kind)]
