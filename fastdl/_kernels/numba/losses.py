"""Losses, Numba backend (conventions: fastdl/reference/losses.py).

Elementwise losses are one pass; their sums are accumulated in float64.  The
softmax cross-entropy makes one fused pass per row while the row is in L1: the
row max, exp(z - max) stored straight into dlogits, their sum, the loss, then
dlogits rescaled in place.  Row loops go parallel (prange) above
PARALLEL_THRESHOLD elements.

Why the reductions live in small separate functions: they need ``reassoc`` to
vectorise, and ``reassoc`` must not reach the exp/log of ``_math`` (a polynomial
exp relies on rounding tricks such as ``(x + M) - M`` that reassociation folds).
Fast-math flags are per instruction in LLVM, so they survive LLVM's inlining.
"""
import numpy as np
from numba import prange

from fastdl._kernels.numba._jit import FASTMATH_REDUCE, jit, jit_pair, pick
from fastdl._kernels.numba._math import exp_nonpos, log, log1p
from fastdl._kernels.numba._rows import row_sum
from fastdl._kernels.numba._scalar import bce_logits_d, bce_logits_s, const


# ---------------------------------------------------------------- elementwise losses
# out is (n,) with write=True, or a dummy that is never touched with write=False
# (one compiled kernel for both, instead of a second one typed for None).

def _mse(pred, target, out, write):
    n = pred.shape[0]
    s = 0.0
    if write:
        for i in prange(n):
            d = pred[i] - target[i]
            out[i] = d * d
    else:
        for i in prange(n):
            d = pred[i] - target[i]
            s += d * d
    return s


_mse_k = jit_pair(_mse, fastmath=FASTMATH_REDUCE)  # no transcendental: reassoc is safe


def _mse_backward(pred, target, out, k):
    for i in prange(pred.shape[0]):
        out[i] = (pred[i] - target[i]) * k


_mse_backward_k = jit_pair(_mse_backward)


# Sums of terms with a log or exp in them: each CHUNK of terms is written to a
# buffer by a plain (vectorised) loop, then summed by _sum64 (reassoc, vectorised);
# a running "s += term(i)" would need reassoc in the loop that holds the exp/log.
# The partial sums are added in chunk order: the same bits on any thread count.
CHUNK = 16384


def _bce(p, y, out, lo, hi, write):
    n = p.shape[0]
    one = const(lo, 1.0)
    if write:
        for i in prange(n):
            # comparisons written so that nan falls through unclipped
            pc = lo if p[i] < lo else (hi if p[i] > hi else p[i])
            out[i] = -(y[i] * log(pc) + (one - y[i]) * log1p(-pc))
        return 0.0
    nch = (n + CHUNK - 1) // CHUNK
    part = np.empty(nch)
    for c in prange(nch):
        a = c * CHUNK
        t = np.empty(min(CHUNK, n - a), p.dtype)
        for i in range(t.shape[0]):
            pc = lo if p[a + i] < lo else (hi if p[a + i] > hi else p[a + i])
            t[i] = -(y[a + i] * log(pc) + (one - y[a + i]) * log1p(-pc))
        part[c] = _sum64(t)
    return _sum64(part)


_bce_k = jit_pair(_bce)


def _bce_backward(p, y, out, lo, hi, k):
    one = const(lo, 1.0)
    zero = const(lo, 0.0)
    for i in prange(p.shape[0]):
        pi = p[i]
        pc = lo if pi < lo else (hi if pi > hi else pi)
        g = (pc - y[i]) / (pc * (one - pc)) * k
        # the clipped loss is flat outside [lo, hi]
        out[i] = zero if (pi < lo or pi > hi) else g


_bce_backward_k = jit_pair(_bce_backward)


def _bce_logits(z, y, out, write):
    n = z.shape[0]
    if write:
        for i in prange(n):
            out[i] = bce_logits_s(z[i], y[i])
        return 0.0
    nch = (n + CHUNK - 1) // CHUNK
    part = np.empty(nch)
    for c in prange(nch):
        a = c * CHUNK
        t = np.empty(min(CHUNK, n - a), z.dtype)
        for i in range(t.shape[0]):
            t[i] = bce_logits_s(z[a + i], y[a + i])
        part[c] = _sum64(t)
    return _sum64(part)


_bce_logits_k = jit_pair(_bce_logits)


def _bce_logits_backward(z, y, out, k):
    for i in prange(z.shape[0]):
        out[i] = bce_logits_d(z[i], y[i]) * k


_bce_logits_backward_k = jit_pair(_bce_logits_backward)


def _dummy(x):
    return np.empty(0, dtype=x.dtype)


def mse(pred, target, out):
    if out is None:
        return pick(_mse_k, pred.size)(pred, target, _dummy(pred), False)
    pick(_mse_k, pred.size)(pred, target, out, True)
    return None


def mse_backward(pred, target, out, scale):
    pick(_mse_backward_k, pred.size)(pred, target, out, pred.dtype.type(2.0 * scale))


def binary_cross_entropy(p, y, out, eps):
    lo, hi = p.dtype.type(eps), p.dtype.type(1.0 - eps)
    if out is None:
        return pick(_bce_k, p.size)(p, y, _dummy(p), lo, hi, False)
    pick(_bce_k, p.size)(p, y, out, lo, hi, True)
    return None


def binary_cross_entropy_backward(p, y, out, eps, scale):
    lo, hi = p.dtype.type(eps), p.dtype.type(1.0 - eps)
    pick(_bce_backward_k, p.size)(p, y, out, lo, hi, p.dtype.type(scale))


def binary_cross_entropy_with_logits(z, y, out):
    if out is None:
        return pick(_bce_logits_k, z.size)(z, y, _dummy(z), False)
    pick(_bce_logits_k, z.size)(z, y, out, True)
    return None


def binary_cross_entropy_with_logits_backward(z, y, out, scale):
    pick(_bce_logits_backward_k, z.size)(z, y, out, z.dtype.type(scale))


# ---------------------------------------------------------------- row reductions

@jit(fastmath=FASTMATH_REDUCE)
def _row_max(z):
    # nan is skipped here but still reaches the row through exp(nan - max)
    m = z[0]
    for j in range(1, z.shape[0]):
        v = z[j]
        m = v if v > m else m
    return m


@jit(fastmath=FASTMATH_REDUCE)
def _sum64(e):
    # sum of e accumulated in float64 (float32 terms are widened one by one)
    s = 0.0
    for j in range(e.shape[0]):
        s += e[j]
    return s


@jit(fastmath=FASTMATH_REDUCE)
def _row_sum(e):
    return const(e[0], row_sum(e))


# the row dots below add up in float64 (their terms in the logits' dtype): a float32
# running sum drifted with the row's length (their select keeps them from vectorising,
# so blocks as in _rows.py would still add up 256 terms one by one)

@jit(fastmath=FASTMATH_REDUCE)
def _row_wdot(w, z, mx):
    # sum_c w[c] (z[c] - mx), a zero weight contributing 0 even against z = -inf
    zero = const(mx, 0.0)
    s = 0.0
    for j in range(z.shape[0]):
        s += w[j] * (z[j] - mx) if w[j] != zero else zero
    return const(mx, s)


@jit(fastmath=FASTMATH_REDUCE)
def _probs_dot(w, t, z, mx, om, ec):
    # a[c] = w[c] (om t[c] + ec): (sum_c a[c] (z[c] - mx), 0 where a[c] = 0;  sum_c a[c])
    zero = const(mx, 0.0)
    s = sa = 0.0
    for j in range(z.shape[0]):
        a = w[j] * (om * t[j] + ec)
        sa += a
        s += a * (z[j] - mx) if a != zero else zero
    return const(mx, s), const(mx, sa)


# ---------------------------------------------------------------- softmax cross-entropy
# logits (N, C), labels (N,) int64 or probs (N, C), w (C,), loss (N,), dlogits (N, C).
# eps = label smoothing, ec = eps / C, scale = 1 or 1/denominator (the "mean"),
# wsum = sum_c w[c]; all scalars of the logits' dtype.

def _sce_labels(logits, labels, w, loss, dlogits, eps, ec, scale, wsum):
    n, c = logits.shape
    one = const(eps, 1.0)
    zero = const(eps, 0.0)
    for i in prange(n):
        z = logits[i]
        d = dlogits[i]
        y = labels[i]
        mx = _row_max(z)
        for j in range(c):  # no reduction in this loop, so it vectorises with exp
            d[j] = exp_nonpos(z[j] - mx)
        s = _row_sum(d)
        wy = (one - eps) * w[y]
        a_sum = wy + ec * wsum  # sum_c a[c]
        dot = wy * (z[y] - mx) if wy != zero else zero  # sum_c a[c] (z[c] - mx)
        if eps != zero:
            dot += ec * _row_wdot(w, z, mx)
        loss[i] = a_sum * log(s) - dot
        k = scale * a_sum / s
        if eps != zero:
            ks = scale * ec
            for j in range(c):
                d[j] = d[j] * k - ks * w[j]
        else:
            for j in range(c):
                d[j] = d[j] * k
        d[y] -= scale * wy


_sce_labels_k = jit_pair(_sce_labels)


def _sce_probs(logits, t, w, loss, dlogits, eps, ec, scale, wsum):
    # wsum is unused here: the same signature as _sce_labels keeps one call site
    n, c = logits.shape
    one = const(eps, 1.0)
    for i in prange(n):
        z = logits[i]
        d = dlogits[i]
        ti = t[i]
        mx = _row_max(z)
        for j in range(c):
            d[j] = exp_nonpos(z[j] - mx)
        s = _row_sum(d)
        dot, a_sum = _probs_dot(w, ti, z, mx, one - eps, ec)
        loss[i] = a_sum * log(s) - dot
        k = scale * a_sum / s
        ks = scale * (one - eps)
        kc = scale * ec
        for j in range(c):
            d[j] = d[j] * k - w[j] * (ks * ti[j] + kc)


_sce_probs_k = jit_pair(_sce_probs)


def softmax_cross_entropy(logits, target, weight, loss, dlogits, label_smoothing, grad_scale):
    dt = logits.dtype.type
    eps = dt(label_smoothing)
    wsum = dt(np.sum(weight, dtype=np.float64))
    pair = _sce_labels_k if target.ndim == 1 else _sce_probs_k
    pick(pair, logits.size)(logits, target, weight, loss, dlogits, eps,
                            eps / dt(logits.shape[1]), dt(grad_scale), wsum)


# ---------------------------------------------------------------- cross-entropy, KL

def _ce_labels(probs, labels, loss, lo, hi):
    for i in prange(probs.shape[0]):
        v = probs[i, labels[i]]
        loss[i] = -log(lo if v < lo else (hi if v > hi else v))


_ce_labels_k = jit_pair(_ce_labels)


def _ce_probs(probs, t, loss, lo, hi):
    n, c = probs.shape
    zero = const(lo, 0.0)
    for i in prange(n):
        s = 0.0  # float64: a float32 running sum drifted with the row's length
        for j in range(c):
            tj = t[i, j]
            v = probs[i, j]
            if tj != zero:
                s += tj * log(lo if v < lo else (hi if v > hi else v))
        loss[i] = -s


_ce_probs_k = jit_pair(_ce_probs)


def cross_entropy(probs, target, loss, eps):
    lo, hi = probs.dtype.type(eps), probs.dtype.type(1.0 - eps)
    if target.ndim == 1:
        pick(_ce_labels_k, probs.size)(probs, target, loss, lo, hi)
    else:
        pick(_ce_probs_k, probs.size)(probs, target, loss, lo, hi)


def _kl(p, q, loss):
    n, c = p.shape
    rows = max(1, CHUNK // max(c, 1))  # rows per block: one terms buffer per block
    for blk in prange((n + rows - 1) // rows):
        t = np.empty(c, p.dtype)  # a row's terms (see CHUNK), summed in float64
        for i in range(blk * rows, min(n, (blk + 1) * rows)):
            for j in range(c):
                pj = p[i, j]
                # a select, not a branch, so that the loop vectorises; 0 log(0 / q) = 0
                t[j] = pj * (log(pj) - log(q[i, j])) if pj != const(pj, 0.0) else pj
            loss[i] = _sum64(t)


_kl_k = jit_pair(_kl)


def kl_divergence(p, q, loss):
    pick(_kl_k, p.size)(p, q, loss)
