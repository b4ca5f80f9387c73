# cython: language_level=3
# distutils: define_macros = FASTDL_LIBMVEC=1 NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION
# distutils: libraries = m
"""2-D convolution, Cython backend: im2col + GEMM (``gemm`` of _gemm.pxd) over chunks
of output positions.

x is (N, C, H, W), W is (O, C, kh, kw), b is (O,), y and dy are (N, O, Ho, Wo);
K = C kh kw, P = Ho Wo.  The N P output positions, flattened as (n, r, s), are taken
in chunks of q: unfold writes the chunk's columns cols (K, q) into the workspace, one
GEMM makes tmp (O, q) = W (O, K) @ cols, and one pass scatters tmp into y with the bias
and the activation.  The workspace ``ws`` holds O K + (K + O) q elements (the first
O K are the Numba backend's, unused here); its length sets q, so that it stays the
size the caller chose (in cache) whatever the batch.  The backward pass rebuilds each
chunk's columns:

    dW (O, K) += dy_chunk (O, q) @ cols.T,   dcols (K, q) = W.T @ dy_chunk,
    dx += col2im(dcols)

Threads (``set_parallel_chunks``, on by default): each OpenMP thread takes whole chunks (``prange``, dynamic: a thread slowed
by another process leaves its chunks to the others) in a slice of ``ws`` of its own,
and calls BLAS single-threaded (the registry's ``SERIAL_BLAS``: a chunk's GEMM is too
small for a multi-threaded BLAS call to pay, and on two threads it ran slower than on
one).  ``ws`` holds one slice a thread (fastdl/functional/conv.py sizes it); a
shorter one means fewer threads or smaller chunks, never a wrong result.  The
backward pass sums dW and db per thread, then adds the threads' sums (so on several
threads their rounding depends on which thread took which chunk); dx is written one
image at a time by the thread holding it, so it runs parallel only over chunks of
whole images.

Row-major arrays are column-major transposes; each GEMM below says which product it
computes.  K, O and q reach BLAS as its 32-bit int: the public layer refuses a K or O
beyond it, and q is at most the workspace's length.
"""
from cython cimport floating
from cython.parallel cimport prange
cimport openmp
from libc.string cimport memcpy, memset
from fastdl._kernels.cython._gemm cimport gemm

from fastdl._kernels.cython._helpers cimport (
    fexp_nonpos, flog, ftanh, relu_s, leaky_relu_s, elu_s, sigmoid_s, gelu_s, silu_s,
    ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_SILU,
    ACT_SOFTMAX)

# kernels that run their own threads over single-threaded BLAS calls (fastdl/_registry.py)
SERIAL_BLAS = ("conv2d_forward", "conv2d_backward")

# On by default.  Measured 2026-12-07 on 2 vCPUs, quiet: LeNet conv1 forward + backward
# (N = 64) 0.94 ms on two threads against 1.72 ms on one, conv2 2.89 against 5.43 ms;
# the CNN epoch of fastdl/benchmarks/worker_cnn.py 0.58-0.61 s against 1.09 s.  With
# a count fixed at 2 beside a busy process it was 2-10x slower than one thread (each
# region waits for a thread the scheduler has not run yet); fastdl's default count
# drops to one thread then (fastdl/_threads.py): beside two busy processes the epoch
# took 1.5-1.9 s at the default, 1.7-2.0 s on one thread.  Off, a call runs its chunks
# on the calling thread with BLAS on one thread.
cdef bint _parallel_chunks = True


def set_parallel_chunks(bint on):
    """Split the chunks over OpenMP's threads (True, the default) or run them on the
    calling thread (False); returns the previous setting."""
    global _parallel_chunks
    prev = _parallel_chunks
    _parallel_chunks = on
    return prev

ACT_CODES = {None: 0, "relu": 1, "leaky_relu": 2, "elu": 3, "sigmoid": 4, "tanh": 5,
             "gelu": 6, "silu": 7, "softmax": 8, "log_softmax": 9}


cdef void unfold(floating *x, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, floating *cols,
                 Py_ssize_t g0, Py_ssize_t q, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                 Py_ssize_t pw, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t ho, Py_ssize_t wo,
                 bint fold) noexcept nogil:
    # fold False (im2col): cols[(c kh + i) kw + j, t] = xpad[n, c, r sh + i, s sw + j] for
    # the output position g0 + t = (n Ho + r) Wo + s, zeros where the window hangs over
    # the padding.  fold True (col2im, its transpose): x[n, c, r sh + i - ph, s sw + j - pw]
    # += cols[(c, i, j), t] for the positions inside the image (x is then dx).
    # Rows (c, i, j) outer; in each, the chunk's output rows are walked as segments of s,
    # each one copy with its padded ends cut off outside the loop.
    cdef Py_ssize_t p_img = ho * wo, cc, i, j, jlo, jhi, n, r, s0, t, seg, ih, lo, hi, u, a
    cdef floating *row
    for cc in range(c):
        for i in range(kh):
            for j in range(kw):
                # the output columns [jlo, jhi) whose tap j reads inside the row:
                # 0 <= s sw - pw + j < w
                if sw == 1:
                    jlo = pw - j
                    jhi = w + pw - j
                else:
                    jlo = (pw - j + sw - 1) // sw if pw > j else 0
                    jhi = (w - 1 + pw - j) // sw + 1 if w - 1 + pw >= j else 0
                jlo = min(max(jlo, 0), wo)
                jhi = max(min(jhi, wo), jlo)
                row = cols + ((cc * kh + i) * kw + j) * q
                n = g0 // p_img
                r = (g0 % p_img) // wo
                s0 = g0 % wo
                t = 0
                while t < q:
                    seg = min(wo - s0, q - t)
                    ih = r * sh - ph + i
                    if 0 <= ih < h:
                        lo = min(max(jlo, s0), s0 + seg)
                        hi = max(min(jhi, s0 + seg), lo)
                        # x[a + s sw] is x[n, c, ih, s sw + j - pw]; row[t - s0 + s] is column s
                        a = ((n * c + cc) * h + ih) * w + j - pw
                        if fold:
                            if sw == 1:  # a separate loop: gcc vectorises only unit strides
                                for u in range(lo, hi):
                                    x[a + u] += row[t - s0 + u]
                            else:
                                for u in range(lo, hi):
                                    x[a + u * sw] += row[t - s0 + u]
                        else:
                            # memcpy and memset: glibc picks AVX2 or AVX-512 copies at
                            # run time, and the runs are short (a loop of gcc's, built
                            # for plain x86-64, took 1.1-1.5x the time, measured)
                            if lo > s0:
                                memset(row + t, 0, (lo - s0) * sizeof(floating))
                            if sw == 1:
                                memcpy(row + t - s0 + lo, x + a + lo, (hi - lo) * sizeof(floating))
                            else:
                                for u in range(lo, hi):
                                    row[t - s0 + u] = x[a + u * sw]
                            if s0 + seg > hi:
                                memset(row + t - s0 + hi, 0, (s0 + seg - hi) * sizeof(floating))
                    elif not fold:
                        memset(row + t, 0, seg * sizeof(floating))
                    t += seg
                    s0 = 0
                    r += 1
                    if r == ho:
                        r = 0
                        n += 1


cdef inline void taps(Py_ssize_t i, Py_ssize_t j, Py_ssize_t h, Py_ssize_t w, Py_ssize_t sh,
                      Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ho, Py_ssize_t wo,
                      Py_ssize_t *rlo, Py_ssize_t *rhi, Py_ssize_t *jlo,
                      Py_ssize_t *jhi) noexcept nogil:
    # the output rows [rlo, rhi) and columns [jlo, jhi) whose tap (i, j) reads inside the
    # image: 0 <= r sh - ph + i < h and 0 <= s sw - pw + j < w
    rlo[0] = min((ph - i + sh - 1) // sh if ph > i else 0, ho)
    rhi[0] = max(min((h - 1 + ph - i) // sh + 1 if h - 1 + ph >= i else 0, ho), rlo[0])
    jlo[0] = min((pw - j + sw - 1) // sw if pw > j else 0, wo)
    jhi[0] = max(min((w - 1 + pw - j) // sw + 1 if w - 1 + pw >= j else 0, wo), jlo[0])


cdef void unfold_images(const floating *x, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                        floating *cols, Py_ssize_t n0, Py_ssize_t m, Py_ssize_t sh,
                        Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t kh,
                        Py_ssize_t kw, Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    # im2col of the m whole images n0 .. n0 + m - 1 (q = m P columns):
    # cols[(c kh + i) kw + j, mi P + r Wo + s] = xpad[n0 + mi, c, r sh + i, s sw + j].
    # Tap row i of output row r reads the input row that tap row i - sh of output row
    # r + 1 reads: for i >= sh, row (c, i, j) is row (c, i - sh, j) moved up by one
    # output row, one long copy an image, and only its last output row is read from x.
    # Only the first sh tap rows are gathered from x run by run (a run is Wo values at
    # most: 8 at LeNet's conv2, where the runs from x were 4.4 ns apiece, measured).
    cdef Py_ssize_t p_img = ho * wo, q = m * p_img, cc, i, j, mi, r, r0, u, a
    cdef Py_ssize_t rlo, rhi, jlo, jhi
    cdef floating *row
    cdef floating *dst
    cdef floating *d
    for cc in range(c):
        for i in range(kh):
            for j in range(kw):
                taps(i, j, h, w, sh, sw, ph, pw, ho, wo, &rlo, &rhi, &jlo, &jhi)
                row = cols + ((cc * kh + i) * kw + j) * q
                for mi in range(m):
                    dst = row + mi * p_img
                    r0 = 0
                    if i >= sh:
                        memcpy(dst, dst - sh * kw * q + wo, (p_img - wo) * sizeof(floating))
                        r0 = ho - 1
                    # x[a + r sh W + s sw] is xpad[n, c, r sh + i, s sw + j]
                    a = ((n0 + mi) * c + cc) * h * w + (i - ph) * w + j - pw
                    for r in range(r0, ho):
                        d = dst + r * wo
                        if r < rlo or r >= rhi:
                            for u in range(wo):
                                d[u] = 0
                            continue
                        for u in range(jlo):
                            d[u] = 0
                        if sw == 1:
                            for u in range(jlo, jhi):
                                d[u] = x[a + r * sh * w + u]
                        else:
                            for u in range(jlo, jhi):
                                d[u] = x[a + r * sh * w + u * sw]
                        for u in range(jhi, wo):
                            d[u] = 0


cdef void fold_images(floating *dx, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                      const floating *cols, Py_ssize_t n0, Py_ssize_t m, Py_ssize_t sh,
                      Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t kh,
                      Py_ssize_t kw, Py_ssize_t ho, Py_ssize_t wo,
                      floating *acc) noexcept nogil:
    # col2im of m whole images, the transpose of unfold_images:
    # dx[n0 + mi, c, r sh + i - ph, s sw + j - pw] += cols[(c, i, j), mi P + r Wo + s].
    # Stride 1 in rows: for each (c, j) the kh tap rows are first summed where they
    # land, acc[(r + i) Wo + s] (acc: (Ho + kh - 1) Wo values, one padded input row
    # per Wo), long contiguous adds; then acc goes into dx one input row at a time
    # (Ho + kh - 1 short runs instead of kh Ho).
    cdef Py_ssize_t p_img = ho * wo, q = m * p_img, cc, i, j, mi, r, u, a, ih
    cdef Py_ssize_t rlo, rhi, jlo, jhi
    cdef const floating *src
    cdef floating *ac
    for cc in range(c):
        for j in range(kw):
            taps(0, j, h, w, sh, sw, ph, pw, ho, wo, &rlo, &rhi, &jlo, &jhi)
            for mi in range(m):
                a = ((n0 + mi) * c + cc) * h * w + j - pw  # dx[a + ih W + s sw]
                if sh == 1:
                    src = cols + (cc * kh * kw + j) * q + mi * p_img
                    memcpy(acc, src, p_img * sizeof(floating))
                    memset(acc + p_img, 0, (kh - 1) * wo * sizeof(floating))
                    for i in range(1, kh):
                        src = cols + ((cc * kh + i) * kw + j) * q + mi * p_img
                        ac = acc + i * wo
                        for u in range(p_img):
                            ac[u] += src[u]
                    for r in range(max(ph, 0), min(ho + kh - 1, h + ph)):
                        ih = r - ph
                        ac = acc + r * wo
                        if sw == 1:
                            for u in range(jlo, jhi):
                                dx[a + ih * w + u] += ac[u]
                        else:
                            for u in range(jlo, jhi):
                                dx[a + ih * w + u * sw] += ac[u]
                    continue
                for i in range(kh):
                    taps(i, j, h, w, sh, sw, ph, pw, ho, wo, &rlo, &rhi, &jlo, &jhi)
                    src = cols + ((cc * kh + i) * kw + j) * q + mi * p_img
                    for r in range(rlo, rhi):
                        ih = r * sh - ph + i
                        for u in range(jlo, jhi):
                            dx[a + ih * w + u * sw] += src[r * wo + u]


cdef inline void act_run(floating *dst, const floating *src, floating bias, Py_ssize_t m,
                         int act, floating alpha) noexcept nogil:
    # dst = act(src + bias) over one run; one loop per activation, chosen outside the
    # loop, so that each is a straight vectorisable body (as dense's output pass)
    cdef Py_ssize_t u
    if act == ACT_RELU:
        for u in range(m):
            dst[u] = relu_s(src[u] + bias)
    elif act == ACT_LEAKY_RELU:
        for u in range(m):
            dst[u] = leaky_relu_s(src[u] + bias, alpha)
    elif act == ACT_ELU:
        for u in range(m):
            dst[u] = elu_s(src[u] + bias, alpha)
    elif act == ACT_SIGMOID:
        for u in range(m):
            dst[u] = sigmoid_s(src[u] + bias)
    elif act == ACT_TANH:
        for u in range(m):
            dst[u] = ftanh(src[u] + bias)
    elif act == ACT_GELU:
        for u in range(m):
            dst[u] = gelu_s(src[u] + bias)
    elif act == ACT_SILU:
        for u in range(m):
            dst[u] = silu_s(src[u] + bias)
    else:
        for u in range(m):
            dst[u] = src[u] + bias


cdef void softmax_channels(floating *z, Py_ssize_t o, Py_ssize_t p_img, Py_ssize_t p0,
                           Py_ssize_t seg, int act) noexcept nogil:
    # softmax or log_softmax over the channels of one image z (O, P) at the pixels
    # p0 .. p0 + seg - 1, in place, the max subtracted first so that no exp overflows
    cdef Py_ssize_t p, oo
    cdef floating mx, s, inv, lse
    for p in range(p0, p0 + seg):
        mx = z[p]
        for oo in range(1, o):
            if z[oo * p_img + p] > mx:
                mx = z[oo * p_img + p]
        s = 0
        if act == ACT_SOFTMAX:
            for oo in range(o):
                z[oo * p_img + p] = fexp_nonpos(z[oo * p_img + p] - mx)
                s += z[oo * p_img + p]
            inv = <floating>1 / s
            for oo in range(o):
                z[oo * p_img + p] = z[oo * p_img + p] * inv
        else:
            for oo in range(o):
                s += fexp_nonpos(z[oo * p_img + p] - mx)
            lse = flog(s)
            for oo in range(o):
                z[oo * p_img + p] = (z[oo * p_img + p] - mx) - lse


cdef void scatter(const floating *tmp, const floating *b, floating *y, Py_ssize_t o,
                  Py_ssize_t p_img, Py_ssize_t g0, Py_ssize_t q, int act,
                  floating alpha) noexcept nogil:
    # y[n, o, p] = act(tmp[o, t] + b[o]) for g0 + t = n P + p: per image, one contiguous
    # run of p for each channel
    cdef Py_ssize_t t = 0, g = g0, n, p0, seg, oo
    while t < q:
        n = g // p_img
        p0 = g % p_img
        seg = min(p_img - p0, q - t)
        for oo in range(o):
            act_run(y + (n * o + oo) * p_img + p0, tmp + oo * q + t,
                    b[oo] if b != NULL else 0, seg, act, alpha)
        if act >= ACT_SOFTMAX:
            softmax_channels(y + n * o * p_img, o, p_img, p0, seg, act)
        t += seg
        g += seg


cdef void gather(const floating *dy, floating *dyt, floating *db, Py_ssize_t o,
                 Py_ssize_t p_img, Py_ssize_t g0, Py_ssize_t q) noexcept nogil:
    # dyt[o, t] = dy[n, o, p] for g0 + t = n P + p, and db[o] += their sum
    cdef Py_ssize_t t = 0, g = g0, n, p0, seg, oo, u
    cdef const floating *src
    cdef floating *dst
    cdef floating s
    while t < q:
        n = g // p_img
        p0 = g % p_img
        seg = min(p_img - p0, q - t)
        for oo in range(o):
            src = dy + (n * o + oo) * p_img + p0
            dst = dyt + oo * q + t
            s = 0
            for u in range(seg):
                dst[u] = src[u]
                s += src[u]
            db[oo] += s
        t += seg
        g += seg


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] W, b,
                   floating[:, :, :, ::1] out, floating[::1] ws, Py_ssize_t sh, Py_ssize_t sw,
                   Py_ssize_t ph, Py_ssize_t pw, activation, double alpha):
    """out = act(conv(x, W) + b).   x (N, C, H, W), W (O, C, kh, kw), b (O,) or None,
    out (N, O, Ho, Wo), ws (at least K + O elements)."""
    cdef int act = ACT_CODES[activation]
    cdef const floating[::1] bv
    cdef const floating *bp = NULL
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = W.shape[0], kh = W.shape[2], kw = W.shape[3]
    cdef Py_ssize_t ho = out.shape[2], wo = out.shape[3]
    cdef Py_ssize_t k = c * kh * kw, p_img = ho * wo, total = n * p_img, chunk, g0, q, ci
    cdef Py_ssize_t slc
    cdef int nthr
    cdef floating *cols
    cdef floating *tmp
    cdef floating *wsp
    cdef floating *xp
    cdef const floating *Wp
    cdef floating *outp
    if total == 0 or o == 0:
        return
    if b is not None:
        bv = b
        bp = &bv[0]
    nthr = openmp.omp_get_max_threads() if _parallel_chunks else 1
    chunk = plan(ws.shape[0], 0, k + o, p_img, total, &nthr, False)
    slc = ws.shape[0] // nthr
    wsp, xp, Wp, outp = &ws[0], <floating *>&x[0, 0, 0, 0], &W[0, 0, 0, 0], &out[0, 0, 0, 0]
    with nogil:
        for ci in prange((total + chunk - 1) // chunk, num_threads=nthr, schedule="dynamic"):
            g0 = ci * chunk
            q = min(chunk, total - g0)
            cols = wsp + openmp.omp_get_thread_num() * slc
            tmp = cols + k * q
            if chunk % p_img == 0:
                unfold_images(xp, c, h, w, cols, g0 // p_img, q // p_img, sh, sw, ph, pw, kh,
                              kw, ho, wo)
            else:
                unfold(xp, c, h, w, cols, g0, q, sh, sw, ph, pw, kh, kw, ho, wo, False)
            # tmp (O, q) = W (O, K) @ cols (K, q); column-major: tmp^T = cols^T W^T
            gemm(c'N', c'N', <int>q, <int>o, <int>k, 1, cols, <int>q, Wp, <int>k, 0, tmp,
                 <int>q)
            scatter(tmp, bp, outp, o, p_img, g0, q, act, <floating>alpha)


cdef Py_ssize_t plan(Py_ssize_t size, Py_ssize_t extra, Py_ssize_t per, Py_ssize_t p_img,
                     Py_ssize_t total, int *nthr, bint whole) noexcept nogil:
    # positions a chunk when each of nthr[0] threads takes a slice size // nthr of the
    # workspace, extra + per q elements for a chunk of q; fewer threads (nthr[0] is
    # updated) while there are fewer chunks than threads, or, with ``whole``, while a
    # slice holds no whole image (col2im's positions of one image go to one thread)
    cdef int t = nthr[0] if nthr[0] > 1 else 1
    cdef Py_ssize_t chunk = 0
    while t >= 1:
        chunk = whole_images(min(total, (size // t - extra) // per), p_img)
        if t == 1:
            break
        if chunk >= 1 and (chunk >= p_img or not whole) and (total + chunk - 1) // chunk >= t:
            break
        t -= 1
    nthr[0] = t
    return chunk


cdef void backward_chunk(const floating *dy, floating *x, const floating *W, floating *dx,
                         floating *dwt, floating *dbt, floating *cols, floating *acc,
                         Py_ssize_t g0, Py_ssize_t q, bint whole, Py_ssize_t c, Py_ssize_t h,
                         Py_ssize_t w, Py_ssize_t o, Py_ssize_t kh, Py_ssize_t kw,
                         Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t ph, Py_ssize_t pw) noexcept nogil:
    # one chunk of q positions from g0: dwt (K, O) and dbt (O,) added to, dx (if any)
    # added to; cols holds (K + O) q (cols, then dyt), acc (Ho + kh - 1) Wo.  dW is
    # summed transposed because that GEMM's orientation ran faster in SciPy's OpenBLAS
    # (88 against 68 GFLOP/s at LeNet's 16->32 5x5, one thread, measured)
    cdef Py_ssize_t k = c * kh * kw, p_img = ho * wo
    cdef floating *dyt = cols + k * q
    if whole:
        unfold_images(x, c, h, w, cols, g0 // p_img, q // p_img, sh, sw, ph, pw, kh, kw,
                      ho, wo)
    else:
        unfold(x, c, h, w, cols, g0, q, sh, sw, ph, pw, kh, kw, ho, wo, False)
    gather(dy, dyt, dbt, o, p_img, g0, q)
    # dWt (K, O) += cols (K, q) @ dyt.T; column-major: dWt^T (O, K) = dyt (O, q) cols^T,
    # dyt and cols being column-major (q, O) and (q, K)
    gemm(c'T', c'N', <int>o, <int>k, <int>q, 1, dyt, <int>q, cols, <int>q, 1, dwt, <int>o)
    if dx != NULL:
        # dcols (K, q) = W.T (K, O) @ dyt (O, q), into cols (spent);
        # column-major: dcols^T (q, K) = dyt^T (q, O) W (O, K)
        gemm(c'N', c'T', <int>q, <int>k, <int>o, 1, dyt, <int>q, W, <int>k, 0, cols, <int>q)
        if whole:
            fold_images(dx, c, h, w, cols, g0 // p_img, q // p_img, sh, sw, ph, pw, kh, kw,
                        ho, wo, acc)
        else:
            unfold(dx, c, h, w, cols, g0, q, sh, sw, ph, pw, kh, kw, ho, wo, True)


def conv2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] W, dx, floating[:, :, :, ::1] dW,
                    floating[::1] db, floating[::1] ws, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw):
    """dx (skipped when None), dW, db from dy, the gradient at the pre-activation output.
    dy (N, O, Ho, Wo), x (N, C, H, W), W (O, C, kh, kw), dx like x, dW like W, db (O,),
    ws (at least O K + O + (Ho + kh - 1) Wo + K + O elements)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = W.shape[0], kh = W.shape[2], kw = W.shape[3]
    cdef Py_ssize_t ho = dy.shape[2], wo = dy.shape[3]
    cdef Py_ssize_t k = c * kh * kw, p_img = ho * wo, total = n * p_img, extra, chunk
    cdef Py_ssize_t slc, ci, g0, i, j, t
    cdef int nthr
    cdef floating[:, :, :, ::1] dxv
    cdef floating *dxp = NULL
    cdef floating *wsp
    cdef floating *part
    cdef floating *dWp
    cdef const floating *dyp
    cdef floating *xp
    cdef const floating *Wp
    if need_zero_only(dy.size, W.size):
        dW[...] = 0
        db[...] = 0
        if dx is not None:
            dx.fill(0)
        return
    if dx is not None:
        dxv = dx
        dxp = &dxv[0, 0, 0, 0]
    # a thread's slice: dWt (K, O), dbt (O,), then the chunk's cols (K, q) and dyt (O, q),
    # then fold_images' acc ((Ho + kh - 1) Wo)
    extra = o * k + o + (ho + kh - 1) * wo
    nthr = openmp.omp_get_max_threads() if _parallel_chunks else 1
    chunk = plan(ws.shape[0], extra, k + o, p_img, total, &nthr, dx is not None)
    slc = ws.shape[0] // nthr
    wsp, dyp, xp, Wp = &ws[0], &dy[0, 0, 0, 0], <floating *>&x[0, 0, 0, 0], &W[0, 0, 0, 0]
    dWp = &dW[0, 0, 0, 0]
    with nogil:
        memset(wsp, 0, (o * k + o) * sizeof(floating))
        for t in range(1, nthr):
            memset(wsp + t * slc, 0, (o * k + o) * sizeof(floating))
        if dxp != NULL:
            memset(dxp, 0, n * c * h * w * sizeof(floating))
        for ci in prange((total + chunk - 1) // chunk, num_threads=nthr, schedule="dynamic"):
            g0 = ci * chunk
            part = wsp + openmp.omp_get_thread_num() * slc
            backward_chunk(dyp, xp, Wp, dxp, part, part + o * k, part + o * k + o,
                           part + o * k + o + (k + o) * chunk, g0, min(chunk, total - g0),
                           chunk % p_img == 0, c, h, w, o, kh, kw, ho, wo, sh, sw, ph, pw)
        # the threads' sums, dW transposed back
        for t in range(1, nthr):
            for i in range(o * k + o):
                wsp[i] += wsp[t * slc + i]
        for i in range(o):
            db[i] = wsp[o * k + i]
            for j in range(k):
                dWp[i * k + j] = wsp[j * o + i]


cdef inline Py_ssize_t whole_images(Py_ssize_t chunk, Py_ssize_t p_img) noexcept nogil:
    # a chunk of whole images when one fits (unfold_images' copies, the faster ones),
    # else of positions
    return chunk - chunk % p_img if chunk >= p_img else chunk


cdef inline bint need_zero_only(Py_ssize_t dy_size, Py_ssize_t w_size):
    # nothing to multiply (no positions or no filters): the results are zeros
    return dy_size == 0 or w_size == 0
