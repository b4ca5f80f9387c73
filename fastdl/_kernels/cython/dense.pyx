# cython: language_level=3
# distutils: define_macros = FASTDL_LIBMVEC=1 NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION
# distutils: libraries = m
"""Dense layer, Cython backend: GEMM through scipy.linalg.cython_blas, then one
fused pass for the bias and the activation (prange over rows above a size).

x is (N, K), W is (K, M), b is (M,), y is (N, M):  y = act(x @ W + b).

Row-major arrays are column-major transposes, so y = x @ W is computed as the
column-major product y^T = W^T x^T: gemm(c'N', c'N', M, N, K, W, x, y).
"""
from cython cimport floating
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

from fastdl._kernels.cython._helpers cimport (
    fexp_nonpos, flog, ftanh, relu_s, leaky_relu_s, elu_s, sigmoid_s, gelu_s, silu_s,
    ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_SILU,
    ACT_SOFTMAX, PARALLEL_THRESHOLD)

cdef Py_ssize_t DENSE_PARALLEL_THRESHOLD = 1 << 22

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
    cdef int n = <int>x.shape[0], k = <int>x.shape[1], m = <int>W.shape[1]
    cdef Py_ssize_t i, j
    cdef bint has_bias = b != NULL
    if n == 0 or m == 0:
        return
    if k == 0:
        for i in range(n):
            for j in range(m):
                y[i, j] = 0
    else:
        gemm(c'N', c'N', m, n, k, 1, <floating *>&W[0, 0], m, <floating *>&x[0, 0], k, 0, &y[0, 0], m)
    if act == 0 and not has_bias:
        return
    # The fused pass runs right after a multi-threaded GEMM whose BLAS threads are
    # still spinning on the other core: waking OpenMP threads against them cost more
    # than the pass itself (15% of the layer at 256x512, measured), so the pass is
    # serial unless the output is large enough to be worth a parallel region.
    if <Py_ssize_t>n * m >= DENSE_PARALLEL_THRESHOLD:
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
    cdef int n = <int>dy.shape[0], m = <int>dy.shape[1], k = <int>x.shape[1]
    cdef floating[:, ::1] dxv
    cdef Py_ssize_t i, j
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
            if dx is not None:
                # dx^T (K, N) = W_cm^T (K, M) dy^T (M, N)
                gemm(c'T', c'N', k, n, m, 1, <floating *>&W[0, 0], m, <floating *>&dy[0, 0], m, 0,
                         &dxv[0, 0], k)
            # dW^T (M, K) = dy^T (M, N) x (N, K)
            gemm(c'N', c'T', m, k, n, 1, <floating *>&dy[0, 0], m, <floating *>&x[0, 0], k, 0,
                     &dW[0, 0], m)
        _col_sum(dy, db)
