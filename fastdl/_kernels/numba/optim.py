"""Optimizer kernels, Numba backend: one fused pass over flat buffers.

grad, param and the state arrays are 1-D, of one dtype and length n.  Each
element is loaded once and stored once per step (Adam: read w, g, m, v; write
w, m, v: 28 bytes per float32 parameter), so the kernels run at memory speed.
Scalars (bias corrections, 1 - beta, 2 l2, ...) are computed once per call in
float64 here and passed in the array's dtype, so float32 stays float32.
"""
import math

import numpy as np
from numba import prange, types
from numba.extending import overload

from fastdl import _config
from fastdl._kernels.numba._jit import FASTMATH_REDUCE, inline, jit, jit_pair, pick
from fastdl._kernels.numba._scalar import const


@inline
def _sign(w):
    # sign(0) = w keeps the sign of zero and lets NaN through, as np.sign does
    return const(w, 1.0) if w > 0 else (const(w, -1.0) if w < 0 else w)


@inline
def _clip(g, scale, clip):
    # global-norm coefficient, then value clip; comparisons leave NaN as NaN
    g = g * scale
    return -clip if g < -clip else (clip if g > clip else g)


@inline
def _penalty(g, w, l1, l2x2):
    # each term only when on: 0 * inf would turn an infinite weight into NaN
    if l1 != 0:
        g += l1 * _sign(w)
    if l2x2 != 0:
        g += l2x2 * w
    return g


_NORMAL_MIN32 = np.float32(np.finfo(np.float32).tiny)
_NORMAL_MIN64 = np.float64(np.finfo(np.float64).tiny)


def _normal_min(x):
    """The smallest normal number of the type of ``x`` (Python fallback)."""
    return np.finfo(type(x)).tiny


@overload(_normal_min, inline="always")
def _normal_min_overload(x):
    # resolved at compile time, as const(): a float32 moment compares in float32
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _NORMAL_MIN32
    return lambda x: _NORMAL_MIN64


@inline
def _flushed(x):
    # a moment (Adam's m and v, the momentum velocity) below the smallest normal number
    # is stored as 0, as in the reference: a parameter whose gradient stays 0 decays its
    # moments geometrically into the subnormals, where each operation on them takes
    # microcode's slow path (Adam 1.6x slower, measured).  NaN compares false: kept.
    return const(x, 0.0) if abs(x) < _normal_min(x) else x


@inline
def _adam_s(gi, wi, mi, vi, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay):
    # w -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps), which is lr m_hat / (sqrt(v_hat) + eps)
    mi = _flushed(b1 * mi + c1 * gi)
    vi = _flushed(b2 * vi + c2 * gi * gi)
    return wi * decay - step_size * mi / (math.sqrt(vi) * inv_sqrt_bc2 + eps), mi, vi


# Each kernel holds one loop per case (penalties on or off, Nesterov or not),
# chosen once per call: LLVM does not unswitch the loop-invariant branches by
# itself here, and with them inside the float32 Adam loop ran at half speed.

def _sgd(g, w, lr, scale, clip, l1, l2x2):
    if l1 == 0 and l2x2 == 0:
        for i in prange(w.shape[0]):
            w[i] -= lr * _clip(g[i], scale, clip)
    else:
        for i in prange(w.shape[0]):
            w[i] -= lr * _penalty(_clip(g[i], scale, clip), w[i], l1, l2x2)


def _sgd_momentum(g, w, vel, lr, mom, nesterov, scale, clip, l1, l2x2):
    # step = lr g;  v = mom v + step;  w -= v  (Nesterov: w -= mom v + step)
    pen = l1 != 0 or l2x2 != 0
    if nesterov and pen:
        for i in prange(w.shape[0]):
            step = lr * _penalty(_clip(g[i], scale, clip), w[i], l1, l2x2)
            vi = _flushed(mom * vel[i] + step)
            vel[i] = vi
            w[i] -= mom * vi + step
    elif nesterov:
        for i in prange(w.shape[0]):
            step = lr * _clip(g[i], scale, clip)
            vi = _flushed(mom * vel[i] + step)
            vel[i] = vi
            w[i] -= mom * vi + step
    elif pen:
        for i in prange(w.shape[0]):
            vi = _flushed(mom * vel[i] + lr * _penalty(_clip(g[i], scale, clip), w[i], l1, l2x2))
            vel[i] = vi
            w[i] -= vi
    else:
        for i in prange(w.shape[0]):
            vi = _flushed(mom * vel[i] + lr * _clip(g[i], scale, clip))
            vel[i] = vi
            w[i] -= vi


def _adam(g, w, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay, scale, clip,
          l1, l2x2, done):
    if l1 == 0 and l2x2 == 0:
        for i in prange(w.shape[0]):
            gi = _clip(g[i], scale, clip)
            w[i], m[i], v[i] = _adam_s(gi, w[i], m[i], v[i], b1, c1, b2, c2, step_size,
                                       inv_sqrt_bc2, eps, decay)
    else:
        for i in prange(w.shape[0]):
            wi = w[i]
            gi = _penalty(_clip(g[i], scale, clip), wi, l1, l2x2)
            w[i], m[i], v[i] = _adam_s(gi, wi, m[i], v[i], b1, c1, b2, c2, step_size,
                                       inv_sqrt_bc2, eps, decay)
    done[0] = 1  # in compiled code: no Ctrl-C between the update and this mark


def _scale(x, alpha):
    for i in prange(x.shape[0]):
        x[i] *= alpha


def _clip_value(x, clip):
    for i in prange(x.shape[0]):
        xi = x[i]
        x[i] = -clip if xi < -clip else (clip if xi > clip else xi)


@jit(fastmath=FASTMATH_REDUCE)
def _sumsq_span(x):
    # reassoc lets the loop vectorise (several float64 lanes, which is also more
    # accurate than one running sum); a flat loop of its own: inside the chunk loop
    # below LLVM vectorised it without interleaving, at half the speed (measured)
    s = 0.0
    for i in range(x.shape[0]):
        xi = np.float64(x[i])
        s += xi * xi
    return s


def _sumsq_chunks(x, partial):
    # One float64 partial sum per chunk, summed in order by the caller: the result
    # does not depend on how threads are scheduled (a resumed run repeats it bit
    # for bit).
    n = x.shape[0]
    nc = partial.shape[0]
    chunk = (n + nc - 1) // nc
    for c in prange(nc):
        lo = min(n, c * chunk)
        partial[c] = _sumsq_span(x[lo:min(n, lo + chunk)])


_sgd_k = jit_pair(_sgd)
_sgd_momentum_k = jit_pair(_sgd_momentum)
_adam_k = jit_pair(_adam)
_scale_k = jit_pair(_scale)
_clip_value_k = jit_pair(_clip_value)
# a pair of twins (jit_pair): compiled from one function under one name, the serial
# kernel loaded the parallel one from Numba's cache, and a thread that may not launch
# parallel kernels (workqueue) aborted the process
_sumsq_k = jit_pair(_sumsq_chunks, fastmath=FASTMATH_REDUCE)


def sgd_update(grad, param, velocity, lr, momentum, nesterov, l1, l2, grad_scale, grad_clip):
    n = param.shape[0]
    if n == 0:
        return
    t = param.dtype.type
    if velocity is None:
        pick(_sgd_k, n)(grad, param, t(lr), t(grad_scale), t(grad_clip), t(l1), t(2.0 * l2))
    else:
        pick(_sgd_momentum_k, n)(grad, param, velocity, t(lr), t(momentum), bool(nesterov),
                                 t(grad_scale), t(grad_clip), t(l1), t(2.0 * l2))


_DONE_UNUSED = np.zeros(1, np.uint8)  # the mark when the caller wants none (only written)


def adam_update(grad, param, m, v, step, lr, beta1, beta2, eps, weight_decay, l1, l2,
                grad_scale, grad_clip, done=None):
    n = param.shape[0]
    if done is None:
        done = _DONE_UNUSED
    if n == 0:
        done[0] = 1
        return
    t = param.dtype.type
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    pick(_adam_k, n)(grad, param, m, v, t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
                     t(lr / bc1), t(1.0 / math.sqrt(bc2)), t(eps), t(1.0 - lr * weight_decay),
                     t(grad_scale), t(grad_clip), t(l1), t(2.0 * l2), done)


def sum_squares(x):
    n = x.shape[0]
    # chunks of PARALLEL_THRESHOLD elements (at most 256), set by n alone: the result is
    # the same on any thread count and on either path (ranks of a distributed fit on
    # different thread counts clipped by different norms, and their parameters parted)
    partial = np.zeros(min(256, max(1, -(-n // _config.PARALLEL_THRESHOLD))))
    # the parallel kernel only where this thread may launch one (pick: on the workqueue
    # layer, two threads launching at once aborted the process)
    pick(_sumsq_k, n)(x, partial)
    return float(math.fsum(partial))


def scale(x, alpha):
    if x.shape[0]:
        pick(_scale_k, x.shape[0])(x, x.dtype.type(alpha))


def clip_value(x, clip):
    if x.shape[0]:
        pick(_clip_value_k, x.shape[0])(x, x.dtype.type(clip))
