# The GEMM of the Cython kernels (_gemm.pyx): NumPy's OpenBLAS where fastdl found it,
# else SciPy's (fastdl/_blas.py, ``gemm``).  Sizes are BLAS's 32-bit ints whichever
# library runs, so that both take the same arguments.
from cython cimport floating

cdef void sgemm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc) noexcept nogil
cdef void dgemm(char ta, char tb, int m, int n, int k, double alpha, const double *a,
                int lda, const double *b, int ldb, double beta, double *c,
                int ldc) noexcept nogil


cdef inline void gemm(char ta, char tb, int m, int n, int k, floating alpha,
                      const floating *a, int lda, const floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    # column-major C (m, n) = alpha op(A) op(B) + beta C; ta, tb: 'N' or 'T'
    if floating is float:
        sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
