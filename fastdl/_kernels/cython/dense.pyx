# cython: language_level=3
# distutils: define_macros = FASTDL_LIBMVEC=1 NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION
# distutils: libraries = m
"""Dense layer, Cython backend: GEMM through scipy.linalg.cython_blas, then one
fused pass for the bias and the activation (prange over rows above a size).

x is (N, K), W is (K, M), b is (M,), y is (N, M):  y = act(x @ W + b).

Row-major arrays are column-major transposes, so y = x @ W is computed as the
column-major product y^T = W^T x^T: gemm(c'N', c'N', M, N, K, W, x, y).

Sizes: BLAS (scipy.linalg.cython_blas) takes 32-bit ints.  N never reaches it whole:
the products run over blocks of at most BLAS_INT_MAX rows (one block in practice), so
any N works; K and M are leading dimensions and must fit, or the kernels raise
ValueError (a size cast to int used to wrap, and the output was never written).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.limits cimport INT_MAX
from scipy.linalg.cython_blas cimport sgemm, dgemm

from fastdl._kernels.cython._helpers cimport (
    fexp_nonpos, flog, ftanh, relu_s, leaky_relu_s, elu_s, sigmoid_s, gelu_s, silu_s,
    ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_SILU,
    ACT_SOFTMAX, PARALLEL_THRESHOLD)

cdef Py_ssize_t DENSE_PARALLEL_THRESHOLD = 1 << 22

# The largest size BLAS's int takes; a module variable so that the tests can lower it
# (set_blas_int_max) and run the blocked path on small arrays.
cdef Py_ssize_t BLAS_INT_MAX = INT_MAX


def set_blas_int_max(Py_ssize_t value):
    """Set the largest size passed to BLAS (tests only; INT_MAX by default); returns the
    previous value."""
    global BLAS_INT_MAX
    if not 1 <= value <= INT_MAX:
        raise ValueError(f"value: expected an int in [1, {INT_MAX}], got {value}")
    old = BLAS_INT_MAX
    BLAS_INT_MAX = value
    return old


cdef check_blas_dims(Py_ssize_t k, Py_ssize_t m):
    # K and M are BLAS leading dimensions (row lengths): they cannot be split
    if k > BLAS_INT_MAX:
        raise ValueError(f"x: K = {k} columns is more than BLAS's 32-bit sizes take "
                         f"({BLAS_INT_MAX}); the numba and numpy backends have no such limit")
    if m > BLAS_INT_MAX:
        raise ValueError(f"W: M = {m} columns is more than BLAS's 32-bit sizes take "
                         f"({BLAS_INT_MAX}); the numba and numpy backends have no such limit")

ACT_CODES = {None: 0, "relu": 1, "leaky_relu": 2, "elu": 3, "sigmoid": 4, "tanh": 5,
             "gelu": 6, "silu": 7, "softmax": 8, "log_softmax": 9}


cdef inline void gemm(char ta, char tb, int m, int n, int k, floating alpha,
                      floating *a, int lda, floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    # column-major C (m, n) = alpha op(A) op(B) + beta C
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)


cdef inline void bias_act_row(floating *row, const floating *b, bint has_bias, Py_ssize_t m,
                              int act, floating alpha) noexcept nogil:
    # row is one output row (M,), in L1 after the GEMM: add the bias, then apply the
    # activation.  One loop per activation, chosen outside the loop, so that each
    # loop is a straight vectorisable body (a switch inside the loop is not).
    cdef Py_ssize_t j
    cdef floating mx, s, inv, lse
    if has_bias:
        for j in range(m):
            row[j] += b[j]
    if act == ACT_RELU:
        for j in range(m):
            row[j] = relu_s(row[j])
        return
    elif act == ACT_LEAKY_RELU:
        for j in range(m):
            row[j] = leaky_relu_s(row[j], alpha)
        return
    elif act == ACT_ELU:
        for j in range(m):
            row[j] = elu_s(row[j], alpha)
        return
    elif act == ACT_SIGMOID:
        for j in range(m):
            row[j] = sigmoid_s(row[j])
        return
    elif act == ACT_TANH:
        for j in range(m):
            row[j] = ftanh(row[j])
        return
    elif act == ACT_GELU:
        for j in range(m):
            row[j] = gelu_s(row[j])
        return
    elif act == ACT_SILU:
        for j in range(m):
            row[j] = silu_s(row[j])
        return
    elif act < ACT_SOFTMAX:
        return
    # subtract the row max before exp so that no term overflows
    mx = row[0]
    for j in range(1, m):
        if row[j] > mx:
            mx = row[j]
    s = 0
    if act == ACT_SOFTMAX:
        for j in range(m):
            row[j] = fexp_nonpos(row[j] - mx)
            s += row[j]
        inv = <floating>1 / s
        for j in range(m):
            row[j] = row[j] * inv
    else:
        for j in range(m):
            s += fexp_nonpos(row[j] - mx)
        lse = flog(s)
        # (x - max) - log(s), not x - (max + log s): the latter loses the low bits
        # of x - max when |max| is large (about 1e-3 near 1e4 in float32)
        for j in range(m):
            row[j] = (row[j] - mx) - lse


cdef void _dense_forward(const floating[:, ::1] x, const floating[:, ::1] W, const floating *b,
                         floating[:, ::1] y, int act, floating alpha) noexcept nogil:
    # K, M <= BLAS_INT_MAX (check_blas_dims); N any, in row blocks
    cdef Py_ssize_t n = x.shape[0], k = x.shape[1], m = W.shape[1]
    cdef Py_ssize_t i, j, r0, nb
    cdef bint has_bias = b != NULL
    if n == 0 or m == 0:
        return
    if k == 0:
        for i in range(n):
            for j in range(m):
                y[i, j] = 0
    else:
        r0 = 0
        while r0 < n:
            nb = min(n - r0, BLAS_INT_MAX)
            gemm(c'N', c'N', <int>m, <int>nb, <int>k, 1, <floating *>&W[0, 0], <int>m,
                 <floating *>&x[r0, 0], <int>k, 0, &y[r0, 0], <int>m)
            r0 += nb
    if act == 0 and not has_bias:
        return
    # The fused pass runs right after a multi-threaded GEMM whose BLAS threads are
    # still spinning on the other core: waking OpenMP threads against them cost more
    # than the pass itself (15% of the layer at 256x512, measured), so the pass is
    # serial unless the output is large enough to be worth a parallel region.
    if n * m >= DENSE_PARALLEL_THRESHOLD:
        for i in prange(n, schedule="static"):
            bias_act_row(&y[i, 0], b, has_bias, m, act, alpha)
    else:
        for i in range(n):
            bias_act_row(&y[i, 0], b, has_bias, m, act, alpha)


def dense_forward(const floating[:, ::1] x, const floating[:, ::1] W, b, floating[:, ::1] out,
                  activation, double alpha):
    """out = act(x @ W + b)   x (N, K), W (K, M), b (M,) or None, out (N, M)."""
    cdef int act = ACT_CODES[activation]
    cdef const floating[::1] bv
    cdef const floating *bp = NULL
    check_blas_dims(x.shape[1], W.shape[1])
    if b is not None:
        bv = b
        if bv.shape[0]:
            bp = &bv[0]
    with nogil:
        _dense_forward(x, W, bp, out, act, <floating>alpha)


cdef void _col_sum(const floating[:, ::1] dy, floating[::1] db) noexcept nogil:
    # db[j] = sum_n dy[n, j], walking rows so that loads stay contiguous
    cdef Py_ssize_t i, j, n = dy.shape[0], m = dy.shape[1]
    for j in range(m):
        db[j] = 0
    for i in range(n):
        for j in range(m):
            db[j] += dy[i, j]


def dense_backward(const floating[:, ::1] dy, const floating[:, ::1] x,
                   const floating[:, ::1] W, dx,
                   floating[:, ::1] dW, floating[::1] db):
    """dx = dy @ W.T (skipped when dx is None), dW = x.T @ dy, db = column sums of dy.

    dy (N, M), x (N, K), W (K, M), dx (N, K), dW (K, M), db (M,)."""
    cdef Py_ssize_t n = dy.shape[0], m = dy.shape[1], k = x.shape[1]
    cdef floating[:, ::1] dxv
    cdef Py_ssize_t i, j, r0, nb
    check_blas_dims(k, m)
    if dx is not None:
        dxv = dx
    with nogil:
        if n == 0 or k == 0 or m == 0:
            # BLAS refuses empty leading dimensions: fill the results directly
            for i in range(dW.shape[0]):
                for j in range(dW.shape[1]):
                    dW[i, j] = 0
            if dx is not None:
                for i in range(dxv.shape[0]):
                    for j in range(dxv.shape[1]):
                        dxv[i, j] = 0
        else:
            # over blocks of at most BLAS_INT_MAX rows of dy and x (one block in practice)
            r0 = 0
            while r0 < n:
                nb = min(n - r0, BLAS_INT_MAX)
                if dx is not None:
                    # dx^T (K, nb) = W_cm^T (K, M) dy^T (M, nb)
                    gemm(c'T', c'N', <int>k, <int>nb, <int>m, 1, <floating *>&W[0, 0], <int>m,
                         <floating *>&dy[r0, 0], <int>m, 0, &dxv[r0, 0], <int>k)
                # dW^T (M, K) (+)= dy^T (M, nb) x (nb, K): the first block overwrites
                gemm(c'N', c'T', <int>m, <int>k, <int>nb, 1, <floating *>&dy[r0, 0], <int>m,
                     <floating *>&x[r0, 0], <int>k, 0 if r0 == 0 else 1, &dW[0, 0], <int>m)
                r0 += nb
        _col_sum(dy, db)
