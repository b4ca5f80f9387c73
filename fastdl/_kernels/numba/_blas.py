"""BLAS's GEMM for the Numba kernels, one block of a product per thread.

The Numba dense and convolution kernels call the ``sgemm``/``dgemm`` that
fastdl/_blas.py chose (``gemm``: NumPy's OpenBLAS where it found it, else SciPy's
``scipy.linalg.cython_blas``; the functions the Cython kernels call) by address, from
inside a prange region: each thread computes one block of the output on one BLAS
thread (the registry's ``SERIAL_BLAS``: ``Scoped`` sets BLAS's count to 1 for the
call).  With ``np.matmul`` the product ran on NumPy's OpenBLAS threads, whose idle
threads spin for about 0.1 s after a call, so every later kernel of a training step
(the loss, Adam) ran on one thread (fastdl/_threads.py); now one OpenMP pool runs them
all, as in the Cython backend.

The split is the Cython twin's (``split`` in fastdl/_kernels/cython/dense.pyx): along
the longer side of the column-major output, one block a thread, block starts a
multiple of ``SPLIT_ALIGN`` elements, at most one block per ``MIN_BLOCK`` of that side,
and one thread for a product under ``GEMM_PARALLEL_FLOPS``.

The BLAS function is an argument of the kernels, ``f``: an int64 array of its address
and its integer size in bytes (8 in NumPy's 64-bit-integer OpenBLAS, 4 in SciPy's),
called through ``_call13``: Numba does not cache a kernel that holds a ctypes function
in its globals (its address changes from process to process), and a ctypes function
as an argument cost 10 us a call in Numba's dispatcher, which types it anew each time.
Callers keep every size at most ``BLAS_INT_MAX`` (2**31 - 1) whichever library runs.
"""
import numpy as np
from llvmlite import ir
# loaded with this module, so that the registry finds SciPy's OpenBLAS when it imports
# the module that needs it and sets its thread count (as fastdl/_kernels/numba/conv.py)
import scipy.linalg.cython_blas  # noqa: F401
from numba import prange, types
from numba.extending import get_cython_function_address, intrinsic

from fastdl import _blas
from fastdl._kernels.numba._jit import jit, jit_pair

BLAS_INT_MAX = 2**31 - 1
GEMM_PARALLEL_FLOPS = 2e6  # a product of fewer flops (2 r c k) runs on one thread
SPLIT_ALIGN = 16           # block starts stay 64-byte aligned in float32
MIN_BLOCK = 64             # at most one block per 64 rows or columns

_N = ord("N")  # BLAS's "no transpose", as the kernels pass it

_functions = {}  # (library, dtype) -> the kernels' ``f``


def gemm_function(dtype):
    """The ?gemm for ``dtype`` (float32: sgemm, float64: dgemm) of the library
    ``fastdl._blas.gemm()`` chose, as the kernels below take it: int64 [address,
    integer size in bytes]."""
    dtype = np.dtype(dtype)
    chosen = _blas.gemm()
    f = _functions.get((chosen, dtype))
    if f is None:
        name = "sgemm" if dtype == np.float32 else "dgemm"
        address = getattr(chosen, name)
        if chosen.library == "scipy":
            address = get_cython_function_address("scipy.linalg.cython_blas", name)
        f = _functions[(chosen, dtype)] = np.array([address, chosen.int_bytes], np.int64)
    return f


@intrinsic
def _call13(typingctx, addr, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12):
    """Call the C function ``void f(void *, ...)`` of 13 pointer arguments at ``addr``;
    every argument is an address as an int."""
    sig = types.void(addr, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12)

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [ptr] * 13)
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [builder.inttoptr(a, ptr) for a in args[1:]])
        return context.get_dummy_value()
    return sig, codegen


def set_gemm_parallel_flops(value):
    """Set the smallest product split over threads (tests only; 2e6 by default);
    returns the previous value."""
    global GEMM_PARALLEL_FLOPS
    if not value >= 0:
        raise ValueError(f"value: expected a number >= 0, got {value}")
    old, GEMM_PARALLEL_FLOPS = GEMM_PARALLEL_FLOPS, float(value)
    return old


def set_blas_int_max(value):
    """Set the largest size passed to BLAS (tests only; 2**31 - 1 by default); returns
    the previous value."""
    global BLAS_INT_MAX
    if not 1 <= value <= 2**31 - 1:
        raise ValueError(f"value: expected an int in [1, {2**31 - 1}], got {value}")
    old, BLAS_INT_MAX = BLAS_INT_MAX, int(value)
    return old


def split_plan(r, c, k, want):
    """(blocks, by_rows, step): how a column-major product C (r, c) = A (r, k) B (k, c)
    is cut into blocks of ``step`` rows (by_rows) or columns, at most ``want``."""
    by_rows = r >= c
    d = r if by_rows else c
    flops = 2.0 * r * c * k
    if GEMM_PARALLEL_FLOPS > 0 and want > 2 * flops / GEMM_PARALLEL_FLOPS:
        want = int(2 * flops / GEMM_PARALLEL_FLOPS)  # blocks of half of it or more
    want = min(want, d // MIN_BLOCK)
    if want <= 1:
        return 1, by_rows, d
    step = -(-d // want)
    step = -(-step // SPLIT_ALIGN) * SPLIT_ALIGN
    return -(-d // step), by_rows, step


@jit
def gemm(f, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Column-major C (m, n) = op(A) op(B) + beta C through the ?gemm ``f``
    (``gemm_function``); ``a``, ``b``, ``c`` are arrays, ``*_off`` the element offsets
    of the blocks' first elements, ``ta``/``tb`` ``ord("N")`` or ``ord("T")``."""
    # BLAS takes every argument by address, its ints 4 or 8 bytes wide
    w = f[1]
    ints = np.empty(6, np.int64)
    if w == 8:
        ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = m, n, k, lda, ldb, ldc
    else:
        i4 = ints.view(np.int32)
        i4[0], i4[1], i4[2], i4[3], i4[4], i4[5] = m, n, k, lda, ldb, ldc
    chars = np.empty(2, np.uint8)
    chars[0], chars[1] = ta, tb
    scal = np.empty(2, c.dtype)
    scal[0], scal[1] = 1, beta
    p, s, it = ints.ctypes.data, scal.ctypes.data, c.itemsize
    _call13(f[0], chars.ctypes.data, chars.ctypes.data + 1, p, p + w, p + 2 * w, s,
            a.ctypes.data + a_off * it, p + 3 * w, b.ctypes.data + b_off * it, p + 4 * w,
            s + it, c.ctypes.data + c_off * it, p + 5 * w)
    # used after the call, so that they are not freed before BLAS reads them
    return ints[0] + chars[0] + scal[0]


@jit
def gemm_block(f, t, by_rows, step, ta, tb, r, c, k, a, lda, b, ldb, beta, cc, ldc):
    """Block ``t`` of C (r, c) = op(A) op(B) + beta C: rows [lo, hi) of C take the same
    rows of op(A), columns the same columns of op(B)."""
    lo = t * step
    hi = min(lo + step, r if by_rows else c)
    if hi <= lo:
        return
    if by_rows:
        gemm(f, ta, tb, hi - lo, c, k, a, lo if ta == _N else lo * lda, lda, b, 0, ldb, beta,
             cc, lo, ldc)
    else:
        gemm(f, ta, tb, r, hi - lo, k, a, 0, lda, b, lo * ldb if tb == _N else lo, ldb, beta,
             cc, lo * ldc, ldc)


def _par_gemm(f, nt, by_rows, step, ta, tb, r, c, k, a, lda, b, ldb, beta, cc, ldc):
    for t in prange(nt):
        gemm_block(f, t, by_rows, step, ta, tb, r, c, k, a, lda, b, ldb, beta, cc, ldc)


_par_gemm_k = jit_pair(_par_gemm)


def par_gemm(want, ta, tb, r, c, k, a, lda, b, ldb, beta, cc, ldc):
    """C = op(A) op(B) + beta C (column-major, as ``gemm``), split over ``want`` threads;
    ``ta``/``tb`` are "N" or "T"."""
    nt, by_rows, step = split_plan(r, c, k, want)
    _par_gemm_k[nt > 1](gemm_function(cc.dtype), nt, by_rows, step, ord(ta), ord(tb), r, c, k,
                        a, lda, b, ldb, cc.dtype.type(beta), cc, ldc)
