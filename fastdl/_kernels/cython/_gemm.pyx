# cython: language_level=3
"""The GEMM every Cython kernel calls (``gemm`` in _gemm.pxd): the ``sgemm``/``dgemm``
that fastdl/_blas.py chose, NumPy's OpenBLAS where it found it (its 64-bit-integer
build takes int64 sizes), else SciPy's through ``scipy.linalg.cython_blas``.  The
choice is read when this module loads; ``use`` changes it (fastdl._blas.use_gemm, for
the tests)."""
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport sgemm as scipy_sgemm, dgemm as scipy_dgemm

ctypedef void (*sgemm32_t)(char *, char *, int *, int *, int *, float *, float *, int *,
                           float *, int *, float *, float *, int *) noexcept nogil
ctypedef void (*sgemm64_t)(char *, char *, int64_t *, int64_t *, int64_t *, float *,
                           float *, int64_t *, float *, int64_t *, float *, float *,
                           int64_t *) noexcept nogil
ctypedef void (*dgemm32_t)(char *, char *, int *, int *, int *, double *, double *, int *,
                           double *, int *, double *, double *, int *) noexcept nogil
ctypedef void (*dgemm64_t)(char *, char *, int64_t *, int64_t *, int64_t *, double *,
                           double *, int64_t *, double *, int64_t *, double *, double *,
                           int64_t *) noexcept nogil

# one of each pair is set (the other NULL): a library's 32-bit or 64-bit interface
cdef sgemm32_t _s32 = scipy_sgemm
cdef dgemm32_t _d32 = scipy_dgemm
cdef sgemm64_t _s64 = NULL
cdef dgemm64_t _d64 = NULL


cdef void sgemm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc) noexcept nogil:
    cdef int64_t m8 = m, n8 = n, k8 = k, lda8 = lda, ldb8 = ldb, ldc8 = ldc
    if _s64 != NULL:
        _s64(&ta, &tb, &m8, &n8, &k8, &alpha, <float *>a, &lda8, <float *>b, &ldb8, &beta, c,
             &ldc8)
    else:
        _s32(&ta, &tb, &m, &n, &k, &alpha, <float *>a, &lda, <float *>b, &ldb, &beta, c, &ldc)


cdef void dgemm(char ta, char tb, int m, int n, int k, double alpha, const double *a,
                int lda, const double *b, int ldb, double beta, double *c,
                int ldc) noexcept nogil:
    cdef int64_t m8 = m, n8 = n, k8 = k, lda8 = lda, ldb8 = ldb, ldc8 = ldc
    if _d64 != NULL:
        _d64(&ta, &tb, &m8, &n8, &k8, &alpha, <double *>a, &lda8, <double *>b, &ldb8, &beta,
             c, &ldc8)
    else:
        _d32(&ta, &tb, &m, &n, &k, &alpha, <double *>a, &lda, <double *>b, &ldb, &beta, c,
             &ldc)


def use(size_t sgemm_address, size_t dgemm_address, int int_bytes):
    """Call the ``sgemm``/``dgemm`` at these addresses, whose integers are ``int_bytes``
    (4 or 8) wide; addresses 0: SciPy's."""
    global _s32, _d32, _s64, _d64
    if int_bytes not in (4, 8):
        raise ValueError(f"int_bytes: expected 4 or 8, got {int_bytes}")
    if sgemm_address == 0 or dgemm_address == 0:
        _s64, _d64, _s32, _d32 = NULL, NULL, scipy_sgemm, scipy_dgemm
    elif int_bytes == 8:
        _s64, _d64 = <sgemm64_t>sgemm_address, <dgemm64_t>dgemm_address
    else:
        _s64, _d64 = NULL, NULL
        _s32, _d32 = <sgemm32_t>sgemm_address, <dgemm32_t>dgemm_address


def _load():
    from fastdl._blas import gemm
    chosen = gemm()
    use(chosen.sgemm, chosen.dgemm, chosen.int_bytes)


_load()
