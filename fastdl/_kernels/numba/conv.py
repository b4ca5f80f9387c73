"""2-D convolution, Numba backend: im2col + GEMM over chunks of output positions.

x is (N, C, H, W), W is (O, C, kh, kw), b is (O,), y and dy are (N, O, Ho, Wo);
K = C kh kw, P = Ho Wo.  The N P output positions, flattened as (n, r, s), are taken
in chunks of q: im2col writes the chunk's columns cols (K, q) into the workspace,
one GEMM makes tmp (O, q) = W (O, K) @ cols, and one pass scatters tmp into y with
the bias (and relu or leaky_relu).  The workspace ``ws`` (1-D, the dtype of x) holds
cols and tmp, plus O K elements for the backward pass; its length sets q, so that
it stays the size the caller chose (in cache) whatever the batch.  The backward pass
rebuilds each chunk's columns:

    dW.T (K, O) += cols @ dy_chunk.T,   dcols (K, q) = W.T @ dy_chunk,
    dx += col2im(dcols)

When an image's positions fit in a chunk, chunks are whole images and are unfolded
image by image (``_unfold_images``, ``_fold_images``: the Cython backend's scheme,
described there and in docs/conv.md; LeNet's conv2 forward 0.48x and backward 0.39x
the time of the run-by-run copies, one thread, measured on a loaded machine).

Threads, as in the Cython backend: each thread takes every nthr-th chunk (a prange
over the threads) in a slice of ``ws`` of its own (fastdl/functional/conv.py sizes
it, one slice a thread), and calls ``sgemm``/``dgemm`` (fastdl/_blas.py's choice) by address on one BLAS
thread (``_blas.gemm``; the registry's ``SERIAL_BLAS``).  With ``np.dot`` inside a
serial driver, OpenBLAS's own threads ran the GEMMs, and Scoped's spin rule then put
every other kernel of a training step on one thread.  The backward pass sums dW and
db per thread, then adds the threads' sums; dx is written one image at a time by
the thread holding it, so it runs parallel only over chunks of whole images
(``_plan``).  The passes are inlined into the drivers (``inline``): as separate
kernels, each driver's first call compiled them again into itself (Numba
re-optimises the code it links in), 9 s of CPU per dtype for forward and backward,
6 s inlined.
"""
import numpy as np
from numba import prange, uint64

from fastdl import _config
from fastdl._kernels.numba._blas import gemm, gemm_function
from fastdl._kernels.numba._jit import FASTMATH_REDUCE, inline, jit, jit_pair
from fastdl._kernels.numba import activations
from fastdl._kernels.numba._math import exp_nonpos, log
from fastdl._kernels.numba._scalar import (ACT_LEAKY_RELU, ACT_RELU, ACT_SOFTMAX, const,
                                           leaky_relu_s, relu_s)
from fastdl._kernels.numba.dense import ACT_CODES, _zeros
from fastdl._threads import effective_threads

# kernels that run their own threads over single-threaded BLAS calls (fastdl/_registry.py)
SERIAL_BLAS = ("conv2d_forward", "conv2d_backward")
_N, _T = ord("N"), ord("T")  # BLAS's transpose flags

# the activations fused into the output pass; the others run as a second pass over y
# (the activation kernels, or _softmax_channels).  Each activation's loop fused here
# would be compiled into the driver too: with all nine, the forward kernel's first call
# compiled for 9-10 s of CPU per dtype (measured), against 3-4 s with these two, which
# are the two that nn's layers fuse (the others keep the pre-activation for backward).
_FUSED = (None, "relu", "leaky_relu")


@inline
def _unfold(x, cols, g0, q, sh, sw, ph, pw, kh, kw, ho, wo, fold):
    # fold False (im2col): cols[(c kh + i) kw + j, t] = xpad[n, c, r sh + i, s sw + j] for
    # the output position g0 + t = (n Ho + r) Wo + s, zeros where the window hangs over
    # the padding.  fold True (col2im, its transpose): x[n, c, r sh + i - ph, s sw + j - pw]
    # += cols[(c, i, j), t] for the positions inside the image (x is then dx).
    # Rows (c, i, j) outer; in each, the chunk's output rows are walked as segments of s,
    # each one copy with its padded ends cut off outside the loop.  Indices are flat and
    # unsigned: Numba puts a negative-index select on every signed index it cannot prove
    # >= 0, which kept these copies scalar (unsigned: 2-3x faster here, measured).
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    p_img = ho * wo
    ssw = uint64(sw)
    for cc in range(c):
        for i in range(kh):
            for j in range(kw):
                # the output columns [jlo, jhi) whose tap j reads inside the row:
                # 0 <= s sw - pw + j < w (stride 1, the common case, without a division)
                if sw == 1:
                    jlo = pw - j
                    jhi = w + pw - j
                else:
                    jlo = -((j - pw) // sw)
                    jhi = (w - 1 + pw - j) // sw + 1
                jlo = min(max(jlo, 0), wo)
                jhi = max(min(jhi, wo), jlo)
                rowbase = ((cc * kh + i) * kw + j) * q
                n = g0 // p_img
                r = (g0 % p_img) // wo
                s0 = g0 % wo
                t = 0
                while t < q:
                    seg = min(wo - s0, q - t)
                    ih = r * sh - ph + i
                    d = uint64(rowbase + t - s0)  # cols index of output column s: d + s
                    if 0 <= ih < h:
                        lo = min(max(jlo, s0), s0 + seg)
                        hi = max(min(jhi, s0 + seg), lo)
                        dd = d + uint64(lo)
                        aa = uint64(((n * c + cc) * h + ih) * w + j - pw + lo * sw)
                        if fold:
                            for u in range(uint64(hi - lo)):
                                xf[aa + u * ssw] += cf[dd + u]
                        else:
                            for s in range(uint64(s0), uint64(lo)):
                                cf[d + s] = 0
                            if sw == 1:
                                for u in range(uint64(hi - lo)):
                                    cf[dd + u] = xf[aa + u]
                            else:
                                for u in range(uint64(hi - lo)):
                                    cf[dd + u] = xf[aa + u * ssw]
                            for s in range(uint64(hi), uint64(s0 + seg)):
                                cf[d + s] = 0
                    elif not fold:
                        for s in range(uint64(s0), uint64(s0 + seg)):
                            cf[d + s] = 0
                    t += seg
                    s0 = 0
                    r += 1
                    if r == ho:
                        r = 0
                        n += 1


@inline
def _span(i, h, sh, ph, ho):
    # the output rows [lo, hi) whose tap i reads inside the image: 0 <= r sh - ph + i < h
    lo = -((i - ph) // sh) if ph > i else 0
    hi = (h - 1 + ph - i) // sh + 1 if h - 1 + ph >= i else 0
    lo = min(lo, ho)
    return lo, max(min(hi, ho), lo)


@inline
def _unfold_images(x, cols, n0, m, sh, sw, ph, pw, kh, kw, ho, wo):
    # im2col of the m whole images n0 .. n0 + m - 1 (q = m P columns), as the Cython
    # backend's unfold_images: tap rows i >= sh are the row i - sh moved up one output
    # row (one long copy an image, the last output row from x); only the first sh tap
    # rows are gathered from x run by run.  Flat unsigned indices (see _unfold).
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    p_img = ho * wo
    q = m * p_img
    ssw = uint64(sw)
    for cc in range(c):
        for i in range(kh):
            rlo, rhi = _span(i, h, sh, ph, ho)
            for j in range(kw):
                jlo, jhi = _span(j, w, sw, pw, wo)
                row = ((cc * kh + i) * kw + j) * q
                for mi in range(m):
                    dst = uint64(row + mi * p_img)
                    r0 = 0
                    if i >= sh:
                        src = dst - uint64(sh * kw * q - wo)
                        for u in range(uint64(p_img - wo)):
                            cf[dst + u] = cf[src + u]
                        r0 = ho - 1
                    a = ((n0 + mi) * c + cc) * h * w + (i - ph) * w + j - pw
                    for r in range(r0, ho):
                        d = dst + uint64(r * wo)
                        if r < rlo or r >= rhi:
                            for u in range(uint64(wo)):
                                cf[d + u] = 0
                            continue
                        for u in range(uint64(jlo)):
                            cf[d + u] = 0
                        aa = uint64(a + r * sh * w + jlo * sw)
                        dd = d + uint64(jlo)
                        if sw == 1:
                            for u in range(uint64(jhi - jlo)):
                                cf[dd + u] = xf[aa + u]
                        else:
                            for u in range(uint64(jhi - jlo)):
                                cf[dd + u] = xf[aa + u * ssw]
                        for u in range(uint64(jhi), uint64(wo)):
                            cf[d + u] = 0


@inline
def _fold_images(dx, cols, n0, m, sh, sw, ph, pw, kh, kw, ho, wo, acc):
    # col2im of m whole images (dx += ...), as the Cython backend's fold_images: with
    # stride 1 in rows the kh tap rows of each (channel, column tap) are first summed
    # where they land (acc, (Ho + kh - 1) Wo), then added into dx row by row
    c, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    xf = dx.reshape(-1)
    cf = cols.reshape(-1)
    p_img = ho * wo
    q = m * p_img
    ssw = uint64(sw)
    for cc in range(c):
        for j in range(kw):
            jlo, jhi = _span(j, w, sw, pw, wo)
            for mi in range(m):
                a = ((n0 + mi) * c + cc) * h * w + j - pw  # dx[a + ih W + s sw]
                if sh == 1:
                    src = uint64((cc * kh * kw + j) * q + mi * p_img)
                    for u in range(uint64(p_img)):
                        acc[u] = cf[src + u]
                    for u in range(uint64(p_img), uint64((ho + kh - 1) * wo)):
                        acc[u] = 0
                    for i in range(1, kh):
                        src = uint64(((cc * kh + i) * kw + j) * q + mi * p_img)
                        off = uint64(i * wo)
                        for u in range(uint64(p_img)):
                            acc[off + u] += cf[src + u]
                    for r in range(ph, min(ho + kh - 1, h + ph)):
                        aa = uint64(a + (r - ph) * w + jlo * sw)
                        off = uint64(r * wo + jlo)
                        for u in range(uint64(jhi - jlo)):
                            xf[aa + u * ssw] += acc[off + u]
                    continue
                for i in range(kh):
                    rlo, rhi = _span(i, h, sh, ph, ho)
                    src = ((cc * kh + i) * kw + j) * q + mi * p_img
                    for r in range(rlo, rhi):
                        aa = uint64(a + (r * sh - ph + i) * w + jlo * sw)
                        off = uint64(src + r * wo + jlo)
                        for u in range(uint64(jhi - jlo)):
                            xf[aa + u * ssw] += cf[off + u]


@inline
def _scatter(tmp, b, y, g0, q, act, alpha):
    # y[n, o, p] = tmp[o, t] + b[o] for g0 + t = n P + p, with relu or leaky_relu
    # applied on the way: per image, one contiguous run of p for each channel
    o = tmp.shape[0]
    p_img = y.shape[2] * y.shape[3]
    yf = y.reshape((y.shape[0], o, p_img))
    t = 0
    g = g0
    while t < q:
        n = g // p_img
        p0 = g % p_img
        seg = min(p_img - p0, q - t)
        for oo in range(o):
            src = tmp[oo, t:t + seg]
            dst = yf[n, oo, p0:p0 + seg]
            bo = b[oo]
            if act == ACT_RELU:
                for u in range(seg):
                    dst[u] = relu_s(src[u] + bo)
            elif act == ACT_LEAKY_RELU:
                for u in range(seg):
                    dst[u] = leaky_relu_s(src[u] + bo, alpha)
            else:
                for u in range(seg):
                    dst[u] = src[u] + bo
        t += seg
        g += seg


@jit
def _softmax_channels(y, act):
    # softmax or log_softmax over the channels of y (N, O, Ho, Wo) at each pixel, in
    # place, with the max subtracted first so that no exp overflows
    n, o = y.shape[0], y.shape[1]
    p_img = y.shape[2] * y.shape[3]
    z3 = y.reshape((n, o, p_img))
    for i in range(n):
        z = z3[i]
        for p in range(p_img):
            mx = z[0, p]
            for oo in range(1, o):
                mx = max(mx, z[oo, p])
            s = const(mx, 0.0)
            if act == ACT_SOFTMAX:
                for oo in range(o):
                    e = exp_nonpos(z[oo, p] - mx)
                    z[oo, p] = e
                    s += e
                inv = const(mx, 1.0) / s
                for oo in range(o):
                    z[oo, p] = z[oo, p] * inv
            else:
                for oo in range(o):
                    s += exp_nonpos(z[oo, p] - mx)
                lse = log(s)
                # (x - max) - log(s), not x - (max + log s), which loses the low bits
                for oo in range(o):
                    z[oo, p] = (z[oo, p] - mx) - lse


@inline
def _gather(dy, dyt, db, g0, q):
    # dyt[o, t] = dy[n, o, p] for g0 + t = n P + p, and db[o] += their sum
    o = dyt.shape[0]
    p_img = dy.shape[2] * dy.shape[3]
    dyf = dy.reshape((dy.shape[0], o, p_img))
    t = 0
    g = g0
    while t < q:
        n = g // p_img
        p0 = g % p_img
        seg = min(p_img - p0, q - t)
        for oo in range(o):
            src = dyf[n, oo, p0:p0 + seg]
            dst = dyt[oo, t:t + seg]
            s = const(db[oo], 0.0)
            for u in range(seg):
                v = src[u]
                dst[u] = v
                s += v
            db[oo] += s
        t += seg
        g += seg


@inline
def _whole_images(chunk, p_img):
    # a chunk of whole images when one fits (_unfold_images' copies), else of positions
    return chunk - chunk % p_img if chunk >= p_img else chunk


@inline
def _columns(x, ws, at, o, g0, q, chunk, sh, sw, ph, pw, kh, kw, ho, wo):
    # the chunk's columns cols (K, q), unfolded from x into ws[at:], and the (O, q)
    # block after them: (cols, block)
    k = x.shape[1] * kh * kw
    cols = ws[at:at + k * q].reshape((k, q))
    p_img = ho * wo
    if chunk % p_img == 0:
        _unfold_images(x, cols, g0 // p_img, q // p_img, sh, sw, ph, pw, kh, kw, ho, wo)
    else:
        _unfold(x, cols, g0, q, sh, sw, ph, pw, kh, kw, ho, wo, False)
    return cols, ws[at + k * q:at + (k + o) * q].reshape((o, q))


def _plan(size, extra, per, p_img, total, nthr, whole):
    # (threads, chunk): positions a chunk when each of ``nthr`` threads takes a slice
    # size // nthr of the workspace, extra + per q elements for a chunk of q; fewer
    # threads while there are fewer chunks than threads, or, with ``whole``, while a
    # slice holds no whole image (col2im's positions of one image go to one thread).
    # The Cython backend's plan, in Python
    t = max(nthr, 1)
    while True:
        chunk = _whole_images(min(total, (size // t - extra) // per), p_img)
        if t == 1:
            return 1, chunk
        if chunk >= 1 and (chunk >= p_img or not whole) and -(-total // chunk) >= t:
            return t, chunk
        t -= 1


def _forward_chunks(f, x, W, b, y, ws, sh, sw, ph, pw, act, alpha, nthr, chunk):
    # thread t takes the chunks t, t + nthr, ... in its slice of ws: cols (K, q), then
    # tmp (O, q) = W (O, K) @ cols, scattered into y with the bias and the activation
    n = x.shape[0]
    o, c, kh, kw = W.shape
    ho, wo = y.shape[2], y.shape[3]
    k = c * kh * kw
    p_img = ho * wo
    total = n * p_img
    nchunks = (total + chunk - 1) // chunk
    slc = ws.shape[0] // nthr
    for t in prange(nthr):
        base = t * slc
        for ci in range(t, nchunks, nthr):
            g0 = ci * chunk
            q = min(chunk, total - g0)
            cols, tmp = _columns(x, ws, base, o, g0, q, chunk, sh, sw, ph, pw, kh, kw, ho, wo)
            # tmp (O, q) = W (O, K) @ cols (K, q); column-major: tmp^T = cols^T W^T
            gemm(f, _N, _N, q, o, k, ws, base, q, W, 0, k, 0, ws, base + k * q, q)
            _scatter(tmp, b, y, g0, q, act, alpha)


_forward_k = jit_pair(_forward_chunks)


def _backward_chunks(f, dy, x, W, dx, ws, sh, sw, ph, pw, need_dx, nthr, chunk, extra):
    # thread t takes the chunks t, t + nthr, ... in its slice of ws: its sums dWt (K, O)
    # and dbt (O,), then the chunk's cols (K, q) and dyt (O, q), then _fold_images' acc
    # ((Ho + kh - 1) Wo).  dW is summed transposed because that GEMM's orientation ran
    # faster in SciPy's OpenBLAS (88 against 68 GFLOP/s at LeNet's 16->32 5x5, one
    # thread, measured).  dx is written one image at a time by the thread holding it
    # (_plan gives one thread unless chunks are whole images)
    n = x.shape[0]
    o, c, kh, kw = W.shape
    ho, wo = dy.shape[2], dy.shape[3]
    k = c * kh * kw
    p_img = ho * wo
    total = n * p_img
    nchunks = (total + chunk - 1) // chunk
    slc = ws.shape[0] // nthr
    for t in prange(nthr):
        base = t * slc
        part = ws[base:base + o * k + o]
        part[:] = 0
        dbt = part[o * k:]
        cb = base + o * k + o
        acc = ws[cb + (k + o) * chunk:base + extra + (k + o) * chunk]
        for ci in range(t, nchunks, nthr):
            g0 = ci * chunk
            q = min(chunk, total - g0)
            cols, dyt = _columns(x, ws, cb, o, g0, q, chunk, sh, sw, ph, pw, kh, kw, ho, wo)
            _gather(dy, dyt, dbt, g0, q)
            # dWt (K, O) += cols (K, q) @ dyt.T; column-major: dWt^T (O, K) = dyt (O, q)
            # cols^T, dyt and cols being column-major (q, O) and (q, K)
            gemm(f, _T, _N, o, k, q, ws, cb + k * q, q, ws, cb, q, 1, ws, base, o)
            if need_dx:
                # dcols (K, q) = W.T (K, O) @ dyt (O, q), into cols (spent);
                # column-major: dcols^T (q, K) = dyt^T (q, O) W (O, K)
                gemm(f, _N, _T, q, k, o, ws, cb + k * q, q, W, 0, k, 0, ws, cb, q)
                if chunk % p_img == 0:
                    _fold_images(dx, cols, g0 // p_img, q // p_img, sh, sw, ph, pw, kh, kw,
                                 ho, wo, acc)
                else:
                    _unfold(dx, cols, g0, q, sh, sw, ph, pw, kh, kw, ho, wo, True)


_backward_k = jit_pair(_backward_chunks, fastmath=FASTMATH_REDUCE)


@jit(fastmath=FASTMATH_REDUCE)
def _sum_parts(ws, nthr, slc, dW, db):
    # the threads' sums of dW (transposed back) and db
    o = db.shape[0]
    k = dW.size // o
    dw2 = dW.reshape((o, k))
    for t in range(1, nthr):
        for i in range(o * k + o):
            ws[i] += ws[t * slc + i]
    for i in range(o):
        db[i] = ws[o * k + i]
        for j in range(k):
            dw2[i, j] = ws[j * o + i]


def conv2d_forward(x, W, b, out, ws, sh, sw, ph, pw, activation, alpha):
    if out.size == 0:
        return
    if b is None:
        b = _zeros(W.shape[0], out.dtype)
    fused = activation in _FUSED
    o, c, kh, kw = W.shape
    p_img = out.shape[2] * out.shape[3]
    par = _config.numba_parallel_here()
    nthr, chunk = _plan(ws.shape[0], 0, c * kh * kw + o, p_img, out.shape[0] * p_img,
                        effective_threads() if par else 1, False)
    _forward_k[par](gemm_function(out.dtype), x, W, b, out, ws, sh, sw, ph, pw,
                    ACT_CODES[activation] if fused else 0, out.dtype.type(alpha), nthr, chunk)
    if fused:
        return
    if activation in ("softmax", "log_softmax"):
        _softmax_channels(out, ACT_CODES[activation])
    else:
        flat = out.reshape(-1)
        if activation == "elu":
            activations.elu(flat, flat, alpha)
        else:
            getattr(activations, activation)(flat, flat)


_NO_DX = {}


def conv2d_backward(dy, x, W, dx, dW, db, ws, sh, sw, ph, pw):
    if dy.size == 0 or W.size == 0:
        dW.fill(0)
        db.fill(0)
        if dx is not None:
            dx.fill(0)
        return
    need_dx = dx is not None
    if need_dx:
        dx.fill(0)
    else:
        # one compiled signature for both cases: a stand-in 4-D array of the dtype
        dx = _NO_DX.get(x.dtype)
        if dx is None:
            dx = _NO_DX[x.dtype] = np.zeros((0, 0, 0, 0), x.dtype)
    o, c, kh, kw = W.shape
    ho, wo = dy.shape[2], dy.shape[3]
    k = c * kh * kw
    extra = o * k + o + (ho + kh - 1) * wo
    par = _config.numba_parallel_here()
    nthr, chunk = _plan(ws.shape[0], extra, k + o, ho * wo, dy.shape[0] * ho * wo,
                        effective_threads() if par else 1, need_dx)
    _backward_k[par](gemm_function(dy.dtype), dy, x, W, dx, ws, sh, sw, ph, pw, need_dx, nthr,
                     chunk, extra)
    _sum_parts(ws, nthr, ws.shape[0] // nthr, dW, db)
