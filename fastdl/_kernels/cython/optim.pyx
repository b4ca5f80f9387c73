# cython: language_level=3
"""Optimizer kernels, Cython backend: one fused pass over flat buffers.

grad, param and the state arrays are 1-D, of one dtype and length n.  Each
element is loaded once and stored once per step (Adam: read w, g, m, v; write
w, m, v: 28 bytes per float32 parameter).  Scalars are computed once per call
in double and cast to the array's type.

Parallel form: above PARALLEL_THRESHOLD the buffer is cut into one chunk per
thread (chunk starts on a 64-byte boundary, so no two threads write one cache
line) and each thread runs the same serial range function; the serial loop
stays a plain counted loop over pointers that gcc vectorises (a prange body
with its lastprivate bookkeeping does not always vectorise).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.float cimport DBL_MIN, FLT_MIN
from libc.math cimport sqrt, INFINITY
cimport openmp

from fastdl._kernels.cython._helpers cimport PARALLEL_THRESHOLD, fabs_, fsqrt

cdef enum:
    MAX_CHUNKS = 256

# Adam's and the momentum update run with the calling thread's MXCSR set to flush
# subnormal results to zero (FTZ), and restored before the range function
# returns (each thread its own: nothing outlives the call).  Storing the moments flushed
# (``flushed``) is not enough: while m decays from 1e-35 to 1e-38, lr m is subnormal at
# every step.  Over the 536k float32 parameters of the benchmark MLP, 256 steps with
# the gradients of a trained model (97% zeros) took 51 ms without, 31 ms with (29 ms with
# a constant gradient).  The difference to the reference: results below 1.2e-38
# (float32).  Not denormals-are-zero (DAZ), which reads subnormal operands as 0: a
# subnormal weight lost its L1 step (sign(w) read as 0), and a subnormal gradient
# under a grad_scale of 1e35 its whole update.
# gcc keeps the loops between the two MXCSR writes (ldmxcsr is a volatile builtin that
# memory accesses do not cross; checked in the disassembly).  With FTZ on, the moments
# come out flushed as computed (``moment``).
cdef extern from *:
    """
    #if defined(__x86_64__) || defined(__SSE__)
    #include <xmmintrin.h>
    #define FDL_HW_FTZ 1
    static inline unsigned fdl_ftz_begin(void) {
        unsigned csr = _mm_getcsr();
        _mm_setcsr(csr | 0x8000u);  /* flush-to-zero */
        return csr;
    }
    static inline void fdl_ftz_end(unsigned csr) { _mm_setcsr(csr); }
    #else
    #define FDL_HW_FTZ 0
    static inline unsigned fdl_ftz_begin(void) { return 0; }
    static inline void fdl_ftz_end(unsigned csr) { (void)csr; }
    #endif
    """
    unsigned fdl_ftz_begin() noexcept nogil
    void fdl_ftz_end(unsigned csr) noexcept nogil
    bint FDL_HW_FTZ


cdef inline floating sign_s(floating w) noexcept nogil:
    # sign(0) = w keeps the sign of zero and lets NaN through, as np.sign does
    return 1 if w > 0 else (-1 if w < 0 else w)


cdef inline floating clamp_s(floating g, floating clip) noexcept nogil:
    # comparisons are false for NaN, so NaN passes through
    return -clip if g < -clip else (clip if g > clip else g)


cdef inline floating grad_s(floating g, floating w, floating scale, floating clip,
                            floating l1, floating l2x2) noexcept nogil:
    # the gradient the update uses: clipped first, then the penalties (skipped
    # when off: 0 * inf would turn an infinite weight into NaN).  The penalty
    # tests are loop-invariant: gcc unswitches the loops that inline this.
    g = clamp_s(g * scale, clip)
    if l1 != 0:
        g = g + l1 * sign_s(w)
    if l2x2 != 0:
        g = g + l2x2 * w
    return g


cdef Py_ssize_t n_chunks(Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t nt
    if n < PARALLEL_THRESHOLD:
        return 1
    nt = openmp.omp_get_max_threads()
    if nt > MAX_CHUNKS:
        nt = MAX_CHUNKS
    return nt if nt > 1 else 1


cdef inline Py_ssize_t sum_chunks(Py_ssize_t n) noexcept nogil:
    # a reduction's chunks: PARALLEL_THRESHOLD elements each (at most MAX_CHUNKS), set by
    # n alone, so that its partial sums, and the result, are those of any thread count
    cdef Py_ssize_t nc = (n + PARALLEL_THRESHOLD - 1) // PARALLEL_THRESHOLD
    return 1 if nc < 1 else (MAX_CHUNKS if nc > MAX_CHUNKS else nc)


cdef inline Py_ssize_t chunk_size(Py_ssize_t n, Py_ssize_t nc) noexcept nogil:
    # rounded up to 16 elements: every chunk but the first starts on a 64-byte line
    return (((n + nc - 1) // nc) + 15) // 16 * 16


# ---- serial range functions: x[lo:hi] ----
# ``plain`` (no clipping, no penalty: the common case) takes a loop of its own,
# chosen outside it: without -march the build is SSE2, which has no blend, and
# the clamp's two selects made the float32 Adam loop 1.6x slower.  In the other
# loop gcc unswitches the loop-invariant penalty tests itself.

cdef inline floating flushed(floating x) noexcept nogil:
    # a moment (Adam's m and v, the momentum velocity) below the smallest normal number
    # is stored as 0, as in the reference: a parameter whose gradient stays 0 decays its
    # moments geometrically into the subnormals, where each operation on them takes
    # microcode's slow path (Adam 1.7x slower, measured).  NaN compares false: kept.
    if floating is float:
        return 0 if fabs_(x) < FLT_MIN else x
    else:
        return 0 if fabs_(x) < DBL_MIN else x


cdef inline floating moment(floating x) noexcept nogil:
    # ``flushed`` for a moment computed between fdl_ftz_begin and fdl_ftz_end: where
    # the hardware flushes subnormal results itself (FDL_HW_FTZ), the x as computed is
    # already flushed, and the two compares and selects of ``flushed`` cost the float32
    # Adam loop 20-30% (256 steps over 536k parameters, one thread, AVX2 Zen 3: 52-56 ms
    # without them, 64-71 ms with; C loops built as this module).  A constant: gcc
    # drops the branch not taken.
    if FDL_HW_FTZ:
        return x
    return flushed(x)


cdef inline void sgd_s(floating gi, floating *w, Py_ssize_t i, floating lr) noexcept nogil:
    w[i] = w[i] - lr * gi


cdef inline void momentum_s(floating gi, floating *w, floating *vel, Py_ssize_t i, floating lr,
                            floating mom, bint nesterov) noexcept nogil:
    # v = mom v + lr g;  w -= v  (Nesterov: w -= mom v + lr g, with the new v)
    cdef floating step = lr * gi
    cdef floating vi = moment(mom * vel[i] + step)
    vel[i] = vi
    if nesterov:
        w[i] = w[i] - (mom * vi + step)
    else:
        w[i] = w[i] - vi


cdef inline void adam_s(floating gi, floating wi, floating *w, floating *m, floating *v,
                        Py_ssize_t i, floating b1, floating c1, floating b2, floating c2,
                        floating step_size, floating inv_sqrt_bc2, floating eps,
                        floating decay) noexcept nogil:
    # w -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps), which is lr m_hat / (sqrt(v_hat) + eps)
    cdef floating mi = moment(b1 * m[i] + c1 * gi)
    cdef floating vi = moment(b2 * v[i] + c2 * gi * gi)
    m[i] = mi
    v[i] = vi
    w[i] = wi * decay - step_size * mi / (fsqrt(vi) * inv_sqrt_bc2 + eps)


cdef void sgd_range(const floating *g, floating *w, Py_ssize_t lo, Py_ssize_t hi, bint plain,
                    floating lr, floating scale, floating clip, floating l1,
                    floating l2x2) noexcept nogil:
    cdef Py_ssize_t i
    if plain:
        for i in range(lo, hi):
            sgd_s(g[i], w, i, lr)
    else:
        for i in range(lo, hi):
            sgd_s(grad_s(g[i], w[i], scale, clip, l1, l2x2), w, i, lr)


cdef void sgd_momentum_range(const floating *g, floating *w, floating *vel, Py_ssize_t lo,
                             Py_ssize_t hi, bint plain, floating lr, floating mom, bint nesterov,
                             floating scale, floating clip, floating l1,
                             floating l2x2) noexcept nogil:
    cdef Py_ssize_t i
    cdef unsigned csr = fdl_ftz_begin()  # see moment()
    if plain:
        for i in range(lo, hi):
            momentum_s(g[i], w, vel, i, lr, mom, nesterov)
    else:
        for i in range(lo, hi):
            momentum_s(grad_s(g[i], w[i], scale, clip, l1, l2x2), w, vel, i, lr, mom, nesterov)
    fdl_ftz_end(csr)


cdef void adam_range(const floating *g, floating *w, floating *m, floating *v, Py_ssize_t lo,
                     Py_ssize_t hi, bint plain, floating b1, floating c1, floating b2,
                     floating c2, floating step_size, floating inv_sqrt_bc2, floating eps,
                     floating decay, floating scale, floating clip, floating l1,
                     floating l2x2) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating wi
    cdef unsigned csr = fdl_ftz_begin()
    if plain:
        for i in range(lo, hi):
            adam_s(g[i], w[i], w, m, v, i, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay)
    else:
        for i in range(lo, hi):
            wi = w[i]
            adam_s(grad_s(g[i], wi, scale, clip, l1, l2x2), wi, w, m, v, i, b1, c1, b2, c2,
                   step_size, inv_sqrt_bc2, eps, decay)
    fdl_ftz_end(csr)


cdef void scale_range(floating *x, Py_ssize_t lo, Py_ssize_t hi, floating alpha) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        x[i] = x[i] * alpha


cdef void clip_range(floating *x, Py_ssize_t lo, Py_ssize_t hi, floating clip) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        x[i] = clamp_s(x[i], clip)


cdef double sumsq_range(const floating *x, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # eight float64 accumulators: independent chains (no add-latency bound) and
    # a shorter error growth than one running sum
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef double a
    cdef Py_ssize_t i = lo
    while i + 8 <= hi:
        s0 += <double>x[i] * <double>x[i]
        s1 += <double>x[i + 1] * <double>x[i + 1]
        s2 += <double>x[i + 2] * <double>x[i + 2]
        s3 += <double>x[i + 3] * <double>x[i + 3]
        s4 += <double>x[i + 4] * <double>x[i + 4]
        s5 += <double>x[i + 5] * <double>x[i + 5]
        s6 += <double>x[i + 6] * <double>x[i + 6]
        s7 += <double>x[i + 7] * <double>x[i + 7]
        i += 8
    while i < hi:
        a = <double>x[i]
        s0 += a * a
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


# ---- public kernels (same arguments as fastdl/reference/optim.py) ----

def sgd_update(const floating[::1] grad, floating[::1] param, velocity, double lr,
               double momentum, nesterov, double l1, double l2, double grad_scale,
               double grad_clip):
    """SGD / momentum / Nesterov step in place; grad, param, velocity (n,)."""
    cdef Py_ssize_t n = param.shape[0], nc, cs, c, lo, hi
    cdef floating[::1] vel
    cdef floating *vp = NULL
    cdef const floating *gp
    cdef floating *wp
    cdef bint nest = bool(nesterov)
    cdef bint plain = l1 == 0 and l2 == 0 and grad_scale == 1 and grad_clip == INFINITY
    cdef floating flr = <floating>lr, fmom = <floating>momentum, fscale = <floating>grad_scale
    cdef floating fclip = <floating>grad_clip, fl1 = <floating>l1, fl2x2 = <floating>(2.0 * l2)
    if n == 0:
        return
    if velocity is not None:
        vel = velocity
        vp = &vel[0]
    gp = &grad[0]
    wp = &param[0]
    nc = n_chunks(n)
    cs = chunk_size(n, nc)
    with nogil:
        if nc == 1:
            if vp == NULL:
                sgd_range(gp, wp, 0, n, plain, flr, fscale, fclip, fl1, fl2x2)
            else:
                sgd_momentum_range(gp, wp, vp, 0, n, plain, flr, fmom, nest, fscale, fclip, fl1,
                                   fl2x2)
        else:
            for c in prange(nc, schedule="static", num_threads=nc):
                lo = c * cs
                hi = min(lo + cs, n)
                if lo < hi:
                    if vp == NULL:
                        sgd_range(gp, wp, lo, hi, plain, flr, fscale, fclip, fl1, fl2x2)
                    else:
                        sgd_momentum_range(gp, wp, vp, lo, hi, plain, flr, fmom, nest, fscale,
                                           fclip, fl1, fl2x2)


def adam_update(const floating[::1] grad, floating[::1] param, floating[::1] m,
                floating[::1] v, double step, double lr, double beta1, double beta2,
                double eps, double weight_decay, double l1, double l2, double grad_scale,
                double grad_clip, unsigned char[::1] done=None):
    """Adam / AdamW step in place; grad, param, m, v (n,).  ``done`` ((1,) uint8, optional)
    is set to 1 in the compiled code that ends the update: no Ctrl-C falls between them."""
    cdef Py_ssize_t n = param.shape[0], nc, cs, c, lo, hi
    cdef double bc1, bc2
    cdef floating b1, c1, b2, c2, step_size, inv_sqrt_bc2, feps, decay, fscale, fclip, fl1, fl2x2
    cdef const floating *gp
    cdef floating *wp
    cdef floating *mp
    cdef floating *vp
    cdef bint plain = l1 == 0 and l2 == 0 and grad_scale == 1 and grad_clip == INFINITY
    cdef unsigned char unused = 0
    cdef unsigned char *dp = &unused if done is None else &done[0]
    if n == 0:
        dp[0] = 1
        return
    # bias corrections in double (libm pow, as Python's float power), then cast once;
    # step is taken as a double, as the other backends' beta ** step does (a long long
    # refused 2**63 with OverflowError; beta ** step is 0 long before that anyway)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    b1 = <floating>beta1
    c1 = <floating>(1.0 - beta1)
    b2 = <floating>beta2
    c2 = <floating>(1.0 - beta2)
    step_size = <floating>(lr / bc1)
    inv_sqrt_bc2 = <floating>(1.0 / sqrt(bc2))
    feps = <floating>eps
    decay = <floating>(1.0 - lr * weight_decay)
    fscale = <floating>grad_scale
    fclip = <floating>grad_clip
    fl1 = <floating>l1
    fl2x2 = <floating>(2.0 * l2)
    gp = &grad[0]
    wp = &param[0]
    mp = &m[0]
    vp = &v[0]
    nc = n_chunks(n)
    cs = chunk_size(n, nc)
    with nogil:
        if nc == 1:
            adam_range(gp, wp, mp, vp, 0, n, plain, b1, c1, b2, c2, step_size, inv_sqrt_bc2,
                       feps, decay, fscale, fclip, fl1, fl2x2)
        else:
            for c in prange(nc, schedule="static", num_threads=nc):
                lo = c * cs
                hi = min(lo + cs, n)
                if lo < hi:
                    adam_range(gp, wp, mp, vp, lo, hi, plain, b1, c1, b2, c2, step_size,
                               inv_sqrt_bc2, feps, decay, fscale, fclip, fl1, fl2x2)
        dp[0] = 1


def sum_squares(const floating[::1] x):
    """sum x^2 (x is (n,)) as a Python float, accumulated in float64.

    One partial sum per chunk, added in chunk order: the result does not depend
    on thread timing (unlike an OpenMP reduction clause), nor on the thread count: the
    chunks are cut by size alone (ranks of a distributed fit on different thread
    counts clipped by different norms, and their parameters parted)."""
    cdef Py_ssize_t n = x.shape[0], nc, nt, cs, c, lo, hi
    cdef double partial[MAX_CHUNKS]
    cdef double total = 0
    cdef const floating *xp
    if n == 0:
        return 0.0
    xp = &x[0]
    nc = sum_chunks(n)
    nt = min(n_chunks(n), nc)
    cs = chunk_size(n, nc)
    with nogil:
        if nc == 1:
            total = sumsq_range(xp, 0, n)
        else:
            for c in prange(nc, schedule="static", num_threads=nt):
                lo = c * cs
                hi = min(lo + cs, n)
                partial[c] = sumsq_range(xp, lo, hi) if lo < hi else 0.0
            for c in range(nc):
                total += partial[c]
    return total


def scale(floating[::1] x, double alpha):
    """x *= alpha in place, x (n,)."""
    cdef Py_ssize_t n = x.shape[0], nc, cs, c, lo, hi
    cdef floating a = <floating>alpha
    cdef floating *xp
    if n == 0:
        return
    xp = &x[0]
    nc = n_chunks(n)
    cs = chunk_size(n, nc)
    with nogil:
        if nc == 1:
            scale_range(xp, 0, n, a)
        else:
            for c in prange(nc, schedule="static", num_threads=nc):
                lo = c * cs
                hi = min(lo + cs, n)
                if lo < hi:
                    scale_range(xp, lo, hi, a)


def clip_value(floating[::1] x, double clip):
    """x = clip(x, -clip, clip) in place, x (n,); NaN stays NaN."""
    cdef Py_ssize_t n = x.shape[0], nc, cs, c, lo, hi
    cdef floating cl = <floating>clip
    cdef floating *xp
    if n == 0:
        return
    xp = &x[0]
    nc = n_chunks(n)
    cs = chunk_size(n, nc)
    with nogil:
        if nc == 1:
            clip_range(xp, 0, n, cl)
        else:
            for c in prange(nc, schedule="static", num_threads=nc):
                lo = c * cs
                hi = min(lo + cs, n)
                if lo < hi:
                    clip_range(xp, lo, hi, cl)
