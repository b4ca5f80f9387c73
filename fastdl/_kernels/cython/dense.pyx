# cython: language_level=3
# distutils: define_macros = FASTDL_LIBMVEC=1 NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION
# distutils: libraries = m
"""Dense layer, Cython backend: GEMM (``gemm`` of _gemm.pxd: OpenBLAS), then one
fused pass for the bias and the activation.

x is (N, K), W is (K, M), b is (M,), y is (N, M):  y = act(x @ W + b).

Row-major arrays are column-major transposes, so y = x @ W is computed as the
column-major product y^T = W^T x^T: gemm(c'N', c'N', M, N, K, W, x, y).

Threads: fastdl's threads are OpenMP's.  A product large enough (``GEMM_PARALLEL_FLOPS``)
is split into one block of the output a thread (``split``), each computed by a
single-threaded BLAS call (the registry's ``SERIAL_BLAS``) and, in the forward pass,
finished by the same thread with the bias and an elementwise activation while the
block is in its cache.  OpenBLAS's own thread pool never runs: its idle threads spun
for about 0.1 s after each multi-threaded call, and every OpenMP region started in
that window (the activation, the loss, Adam) shared a CPU with one of them; fastdl
then ran those kernels on one thread (fastdl/_threads.py).  OpenMP's idle threads
spin for a few milliseconds too, but they are the threads the next region needs.

Sizes: fastdl passes BLAS 32-bit ints (SciPy's takes no more).  N never reaches it whole:
the products run over blocks of at most BLAS_INT_MAX rows (one block in practice), so
any N works; K and M are leading dimensions and must fit, or the kernels raise
ValueError (a size cast to int used to wrap, and the output was never written).
"""
from cython cimport floating
cimport openmp
from cython.parallel cimport prange
from libc.limits cimport INT_MAX
from libc.stdlib cimport calloc, free
from fastdl._kernels.cython._gemm cimport gemm

from fastdl._kernels.cython._helpers cimport (
    fexp_nonpos, flog, ftanh, relu_s, leaky_relu_s, elu_s, sigmoid_s, gelu_s, silu_s,
    ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_SILU,
    ACT_SOFTMAX)

# Kernels that run their threads over single-threaded BLAS calls (fastdl/_registry.py)
SERIAL_BLAS = ("dense_forward", "dense_backward")

# A product of fewer flops (2 r c k) runs on one thread: a parallel region costs a few
# microseconds.  A module variable so that the tests can force the split on small arrays.
cdef double GEMM_PARALLEL_FLOPS = 2e6
cdef Py_ssize_t SPLIT_ALIGN = 16   # block starts stay 64-byte aligned in float32
# At most one block per MIN_BLOCK rows or columns: on many threads a 1-D split of a
# 512-wide layer would otherwise hand BLAS 16-column blocks, which it runs at a
# fraction of its rate (a guard: only 2 threads were measured here)
cdef Py_ssize_t MIN_BLOCK = 64


def set_gemm_parallel_flops(double value):
    """Set the smallest product split over threads (tests only; 2e6 by default);
    returns the previous value."""
    global GEMM_PARALLEL_FLOPS
    if not value >= 0:
        raise ValueError(f"value: expected a number >= 0, got {value}")
    old = GEMM_PARALLEL_FLOPS
    GEMM_PARALLEL_FLOPS = value
    return old

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


cdef struct Split:
    # the output of a column-major product C (r, c) cut into nt blocks of ``step`` rows
    # (by_rows) or columns; block t starts at t * step
    int nt
    bint by_rows
    Py_ssize_t step


cdef inline Split split(Py_ssize_t r, Py_ssize_t c, Py_ssize_t k, int want) noexcept nogil:
    # along the longer side, blocks a multiple of SPLIT_ALIGN, at most ``want`` of them,
    # one per MIN_BLOCK of that side, and none of fewer than GEMM_PARALLEL_FLOPS / 2
    # (many threads on a small product wait for each other longer than they compute)
    cdef Split sp
    cdef Py_ssize_t d
    cdef double flops
    sp.by_rows = r >= c
    d = r if sp.by_rows else c
    sp.nt = 1
    sp.step = d
    flops = 2.0 * r * c * k
    if GEMM_PARALLEL_FLOPS > 0 and want > 2 * flops / GEMM_PARALLEL_FLOPS:
        want = <int>(2 * flops / GEMM_PARALLEL_FLOPS)  # blocks of half of it or more
    if want > d // MIN_BLOCK:
        want = <int>(d // MIN_BLOCK)
    if want > 1:
        sp.step = (d + want - 1) // want
        sp.step = (sp.step + SPLIT_ALIGN - 1) // SPLIT_ALIGN * SPLIT_ALIGN
        sp.nt = <int>((d + sp.step - 1) // sp.step)
    return sp


def split_plan(Py_ssize_t r, Py_ssize_t c, Py_ssize_t k, int want):
    """(blocks, by_rows, step): how a column-major product C (r, c) = A (r, k) B (k, c)
    is split on ``want`` threads (tests)."""
    cdef Split sp = split(r, c, k, want)
    return sp.nt, bool(sp.by_rows), sp.step


cdef inline Py_ssize_t block_end(Split sp, int t, Py_ssize_t r, Py_ssize_t c) noexcept nogil:
    # block t of C (r, c) covers [t * step, block_end) of its split side
    return min((t + 1) * sp.step, r if sp.by_rows else c)


cdef inline void gemm_block(Split sp, int t, char ta, char tb, Py_ssize_t r, Py_ssize_t c,
                            Py_ssize_t k, floating *a, Py_ssize_t lda, floating *b,
                            Py_ssize_t ldb, floating beta, floating *cc,
                            Py_ssize_t ldc) noexcept nogil:
    # block t of C = op(A) op(B) + beta C: rows [lo, hi) of C take the same rows of
    # op(A), columns the same columns of op(B)
    cdef Py_ssize_t lo = t * sp.step
    cdef Py_ssize_t hi = block_end(sp, t, r, c)
    if hi <= lo:
        return
    if sp.by_rows:
        gemm(ta, tb, <int>(hi - lo), <int>c, <int>k, 1, a + (lo if ta == c'N' else lo * lda),
             <int>lda, b, <int>ldb, beta, cc + lo, <int>ldc)
    else:
        gemm(ta, tb, <int>r, <int>(hi - lo), <int>k, 1, a, <int>lda,
             b + (lo * ldb if tb == c'N' else lo), <int>ldb, beta, cc + lo * ldc, <int>ldc)


cdef void par_gemm(char ta, char tb, Py_ssize_t r, Py_ssize_t c, Py_ssize_t k, floating *a,
                   Py_ssize_t lda, floating *b, Py_ssize_t ldb, floating beta, floating *cc,
                   Py_ssize_t ldc) noexcept nogil:
    # C = op(A) op(B) + beta C, split over OpenMP's threads (one block each)
    cdef Split sp = split(r, c, k, openmp.omp_get_max_threads())
    cdef int t
    if sp.nt == 1:
        gemm_block(sp, 0, ta, tb, r, c, k, a, lda, b, ldb, beta, cc, ldc)
        return
    for t in prange(sp.nt, num_threads=sp.nt, schedule="static", chunksize=1):
        gemm_block(sp, t, ta, tb, r, c, k, a, lda, b, ldb, beta, cc, ldc)


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


cdef inline void forward_block(Split sp, int t, const floating *x, const floating *W,
                               const floating *b, floating *y, Py_ssize_t n, Py_ssize_t k,
                               Py_ssize_t m, int act, floating alpha) noexcept nogil:
    # block t of y (n, m) = x (n, k) @ W (k, m), then its bias and activation, unless
    # the activation needs whole rows that the block cuts (softmax over a column block)
    cdef Py_ssize_t i, lo = t * sp.step
    cdef Py_ssize_t hi = block_end(sp, t, m, n)
    cdef bint has_bias = b != NULL
    # y^T (M, n) = W_cm (M, K) x^T (K, n): rows of y^T are columns of y
    gemm_block(sp, t, c'N', c'N', m, n, k, <floating *>W, m, <floating *>x, k, 0, y, m)
    if hi <= lo or (act == 0 and not has_bias):
        return
    if not sp.by_rows:     # rows [lo, hi) of y
        for i in range(lo, hi):
            bias_act_row(y + i * m, b, has_bias, m, act, alpha)
    elif act < ACT_SOFTMAX:  # columns [lo, hi) of y
        for i in range(n):
            bias_act_row(y + i * m + lo, b + lo if has_bias else NULL, has_bias, hi - lo,
                         act, alpha)


cdef void _dense_forward(const floating[:, ::1] x, const floating[:, ::1] W, const floating *b,
                         floating[:, ::1] y, int act, floating alpha) noexcept nogil:
    # K, M <= BLAS_INT_MAX (check_blas_dims); N any, in row blocks of y
    cdef Py_ssize_t n = x.shape[0], k = x.shape[1], m = W.shape[1]
    cdef Py_ssize_t i, j, r0, nb
    cdef Split sp
    cdef int t
    if n == 0 or m == 0:
        return
    if k == 0:
        for i in range(n):
            for j in range(m):
                y[i, j] = 0
            bias_act_row(&y[i, 0], b, b != NULL, m, act, alpha)
        return
    r0 = 0
    while r0 < n:
        nb = min(n - r0, BLAS_INT_MAX)
        sp = split(m, nb, k, openmp.omp_get_max_threads())
        if sp.nt == 1:
            forward_block(sp, 0, &x[r0, 0], &W[0, 0], b, &y[r0, 0], nb, k, m, act, alpha)
        else:
            for t in prange(sp.nt, num_threads=sp.nt, schedule="static", chunksize=1):
                forward_block(sp, t, &x[r0, 0], &W[0, 0], b, &y[r0, 0], nb, k, m, act, alpha)
        if act >= ACT_SOFTMAX and sp.by_rows:  # the rows the column blocks cut
            for i in range(r0, r0 + nb):
                bias_act_row(&y[i, 0], b, b != NULL, m, act, alpha)
        r0 += nb


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


cdef void _col_sum(const floating[:, ::1] dy, floating[::1] db, double *acc) noexcept nogil:
    # db[j] = sum_n dy[n, j], walking rows so that loads stay contiguous; the totals acc
    # (M zeros) are float64, as a float32 running sum drifts with N (1.6e-5 relative at a
    # million rows)
    cdef Py_ssize_t i, j, n = dy.shape[0], m = dy.shape[1]
    for i in range(n):
        for j in range(m):
            acc[j] += dy[i, j]
    for j in range(m):
        db[j] = <floating>acc[j]


def dense_backward(const floating[:, ::1] dy, const floating[:, ::1] x,
                   const floating[:, ::1] W, dx,
                   floating[:, ::1] dW, floating[::1] db):
    """dx = dy @ W.T (skipped when dx is None), dW = x.T @ dy, db = column sums of dy.

    dy (N, M), x (N, K), W (K, M), dx (N, K), dW (K, M), db (M,)."""
    cdef Py_ssize_t n = dy.shape[0], m = dy.shape[1], k = x.shape[1]
    cdef floating[:, ::1] dxv
    cdef Py_ssize_t i, j, r0, nb
    cdef double *acc
    check_blas_dims(k, m)
    if dx is not None:
        dxv = dx
    acc = <double *>calloc(max(m, 1), sizeof(double))
    if acc == NULL:
        raise MemoryError()
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
                    par_gemm(c'T', c'N', k, nb, m, <floating *>&W[0, 0], m,
                             <floating *>&dy[r0, 0], m, 0, &dxv[r0, 0], k)
                # dW^T (M, K) (+)= dy^T (M, nb) x (nb, K): the first block overwrites
                par_gemm(c'N', c'T', m, k, nb, <floating *>&dy[r0, 0], m,
                         <floating *>&x[r0, 0], k, 0 if r0 == 0 else 1, &dW[0, 0], m)
                r0 += nb
        _col_sum(dy, db, acc)
        free(acc)
