"""Scalar math for the Numba kernels: exp, log, log1p, expm1, tanh, erf, for
x <= 0 the cheaper exp_nonpos and expm1_nonpos, gauss (e^(-x^2/2)) and ndtr (the
standard normal CDF, accurate in its left tail), and gelu and its derivative.

Every kernel calls these instead of ``math.*``, so that one file decides how they
are computed.  pip's llvmlite has no SVML: ``math.exp`` and friends are scalar
libm calls (3-20x slower) that LLVM's loop vectoriser cannot widen.  These are
polynomial implementations with no call and no data-dependent branch (the edges
are selects), so a loop ``out[i] = exp(x[i])`` vectorises (ymm FMAs here).

Type generic: float32 is computed in float32 arithmetic with float32 coefficients
(no double anywhere in a float32 loop), float64 in float64 with polynomials of
higher degree; integers go through float64, as with ``math.*``.

Accuracy, max error in ulp of the result (tests/test_numba_math.py checks <= 2):
             exp   log   log1p  expm1  tanh  erf
  float32    1.02  0.84  0.84   1.44   1.33  1.08   (all 2^32 inputs)
  float64    1.01  0.79  0.80   1.15   1.45  1.09   (4e6-point sweeps; erf 2e5 vs mpmath)
exp_nonpos (x <= 0) returns exp's bits (checked over every float32 x <= 0);
expm1_nonpos (x <= 0): 1.01 ulp in float32 (every x <= 0).
gauss: 1.46 ulp in float32 (1e8 samples).  ndtr: 6.61 ulp in float32 (every x in
[-16, 6]), 8.36 ulp in float64 (2e5 points), from the rounding of its rational's Horner
steps (the tests bound it at 7.5 and 10 ulp).  gelu (float32, one pass, not through
gauss and ndtr): 6.9 ulp where the result is normal; gelu' 15.7 ulp outside +-0.1 of its
zero at -0.752, where Phi + x phi cancels (every x in [-16, 16], with FMA: the Cython
backend's figures in a native build).
Edges, as IEEE and ``math.*``: exp(+inf) = inf, exp(-inf) = 0, overflow to inf
and gradual underflow through the subnormals (rounded once) to 0 at the type's
limits; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, log of subnormals
accurate; log1p(-1) = -inf, log1p(x < -1) = NaN; expm1(-inf) = -1; tanh and erf
are exactly odd and reach exactly +-1; tanh(x) = x, expm1(x) = log1p(x) = x and
erf(x) = 2x/sqrt(pi) for tiny x (no cancellation anywhere); NaN in, NaN out.
The sign of a zero result is not guaranteed (the house flags include ``nsz``).

How they are compiled: ``_intrinsics.py``; their coefficients and ranges, and how those
were fitted: ``_polynomials.py``.
"""
import math

import numpy as np

from fastdl._kernels.numba._intrinsics import (
    _dispatch, _fma, _frexp_k, _frexp_m, _horner, _pow2, _typed)
from fastdl._kernels.numba._jit import inline, jit
from fastdl._kernels.numba._polynomials import (
    _ERF_AB, _ERF_LARGE, _ERF_SMALL, _EXPM1_P, _EXPM1_RANGE, _EXPM1_T, _EXP_NONPOS_K,
    _EXP_P, _EXP_RANGE, _GAUSS_HI, _GELU32_A, _GELU32_K, _GELU32_R, _LN2, _LOG2E,
    _LOG_P, _LOG_SUB, _NDTR_B, _NDTR_R, _SQRT1_2, _TANH32_P, _TANH32_T, _TANH_HI)


# --- implementations ----------------------------------------------------------------
# Each factory returns the implementation for one float width; its constants are
# closure variables already of that type (so float32 stays float32).

@jit
def _exp_poly(r, P, one):
    """e^r = 1 + r + r^2 P(r) for |r| <= ln2/2."""
    return one + (r + r * r * _horner(r, P))


@jit
def _exp_reduced(x, P, K):
    """(n, e^r) for x = n ln2 + r, |r| <= ln2/2 (Cody-Waite: n * LN2_HI is exact), with
    e^r = 1 + r + r^2 P(r); n is a float holding an integer.  K = (log2 e, LN2_HI,
    LN2_LO, 1).  e^x is then e^r 2^n, scaled as each caller's range needs."""
    log2e, ln2_hi, ln2_lo, one = K
    n = np.rint(x * log2e)
    r = (x - n * ln2_hi) - n * ln2_lo
    return n, _exp_poly(r, P, one)


def _exp_consts(bits):
    # (P, K) of _exp_reduced for the float width ``bits``
    return _typed(bits, _EXP_P[bits]), _typed(bits, (_LOG2E,) + _LN2[bits] + (1.0,))


def _exp_factory(bits):
    P, K = _exp_consts(bits)
    LO, HI = _typed(bits, _EXP_RANGE[bits])
    HALF = _typed(bits, (0.5,))[0]

    def impl(x):
        # NaN passes both clamps (comparisons with NaN are false)
        xc = HI if x > HI else x
        xc = LO if xc < LO else xc
        n, p = _exp_reduced(xc, P, K)
        # 2^n as two factors: n runs from -150 to 128 (float32), -1076 to 1024 (float64),
        # beyond one normal power of two; a subnormal result is rounded once, by the last product.
        h = np.rint(n * HALF)
        y = p * _pow2(h) * _pow2(n - h)
        return y if xc == xc else x  # for NaN, n (and y) is meaningless
    return impl


def _exp_nonpos_factory(bits):
    # exp for x <= 0 (and NaN), as the activations need it (e^-|x|, e^min(x, 0),
    # e^(-x^2/2)): one clamp instead of two and one scaling product more instead of
    # the two-factor 2^n, 18% faster than _exp; the results are the same bits.
    P, K = _exp_consts(bits)
    LO = _typed(bits, _EXP_RANGE[bits][:1])[0]
    EK, SK = _typed(bits, (_EXP_NONPOS_K[bits], 2.0 ** -_EXP_NONPOS_K[bits]))

    def impl(x):
        xc = LO if x < LO else x
        n, p = _exp_reduced(xc, P, K)
        # p 2^(n + EK) is exact; a subnormal result is rounded once, by the last product
        y = p * _pow2(n + EK) * SK
        return y if xc == xc else x
    return impl


def _expm1_factory(bits):
    P = _typed(bits, _EXPM1_P[bits])
    LO, HI = _typed(bits, _EXPM1_RANGE[bits])
    LN2_HI, LN2_LO = _typed(bits, _LN2[bits])
    LOG2E, T, ZERO, ONE, TWO, NMAX = _typed(bits, (_LOG2E, _EXPM1_T, 0.0, 1.0, 2.0, 60.0))

    def impl(x):
        xc = HI if x > HI else x
        xc = LO if xc < LO else xc
        n = np.rint(xc * LOG2E)
        n = n if abs(xc) > T else ZERO  # NaN takes n = 0
        r = (xc - n * LN2_HI) - n * LN2_LO
        q = r + r * r * _horner(r, P)  # e^r - 1
        # e^x - 1 = 2^n (q + 1 - 2^-n): no cancellation in q + (1 - 2^-n) for |x| > T, and
        # 1 - 2^-n is exact while it matters (n <= 24 or 53). 2^(n-1) * 2 reaches n = 128
        # (1024) without overflowing the power itself; for n = 0 it is (q * 2) / 2 = q exactly.
        t = _pow2(-(n if n < NMAX else NMAX))
        s = q + (ONE - t)
        return s * TWO * _pow2(n - ONE)
    return impl


def _expm1_nonpos_factory(bits):
    # expm1 for x <= 0 (and NaN), for elu: with n <= 0, 2^n - 1 is exact (n >= -24 / -53;
    # below, the result rounds to -1 anyway), so e^x - 1 = 2^n q + (2^n - 1) is one FMA,
    # without the upper clamp and the two scale factors of _expm1 (~35% fewer operations).
    P = _typed(bits, _EXPM1_P[bits])
    LO = _typed(bits, _EXPM1_RANGE[bits][:1])[0]
    LN2_HI, LN2_LO = _typed(bits, _LN2[bits])
    LOG2E, MT, ZERO, ONE = _typed(bits, (_LOG2E, -_EXPM1_T, 0.0, 1.0))

    def impl(x):
        xc = LO if x < LO else x
        n = np.rint(xc * LOG2E)
        n = n if xc < MT else ZERO  # no reduction near 0 (see _EXPM1_T); NaN takes n = 0
        r = (xc - n * LN2_HI) - n * LN2_LO
        q = r + r * r * _horner(r, P)  # e^r - 1
        s = _pow2(n)
        return _fma(s, q, s - ONE)
    return impl


@jit
def _log_reduced(k, f, c, P, K):
    """k ln2 + log(1 + f) + c for f in [sqrt(1/2) - 1, sqrt 2 - 1] and a small correction c.

    fdlibm's form: log(1 + f) = f - f^2/2 + s (f^2/2 + z P(z)), s = f / (2 + f), z = s^2,
    summed small terms first, k * LN2_HI (exact) last.  K = (1/2, 2, LN2_HI, LN2_LO)."""
    half, two, ln2_hi, ln2_lo = K
    s = f / (two + f)
    z = s * s
    hfsq = half * f * f
    R = z * _horner(z, P)
    return k * ln2_hi - ((hfsq - (s * (hfsq + R) + (k * ln2_lo + c))) - f)


def _log_factory(bits):
    P = _typed(bits, _LOG_P[bits])
    K = _typed(bits, (0.5, 2.0) + _LN2[bits])
    TINY, SCALE, KSUB = _typed(bits, _LOG_SUB[bits])
    ZERO, ONE, INF, NINF, NAN = _typed(bits, (0.0, 1.0, math.inf, -math.inf, math.nan))

    def impl(x):
        sub = x < TINY  # subnormal: scale into the normal range first (exact)
        xs = x * SCALE if sub else x
        k = _frexp_k(xs) - (KSUB if sub else ZERO)
        f = _frexp_m(xs) - ONE  # exact (Sterbenz)
        y = _log_reduced(k, f, ZERO, P, K)
        y = y if x < INF else x  # +inf, and NaN
        return y if x > ZERO else (NINF if x == ZERO else NAN)
    return impl


def _log1p_factory(bits):
    P = _typed(bits, _LOG_P[bits])
    K = _typed(bits, (0.5, 2.0) + _LN2[bits])
    ZERO, ONE, MONE, INF, NINF, NAN = _typed(bits, (0.0, 1.0, -1.0, math.inf, -math.inf,
                                                    math.nan))

    def impl(x):
        u = ONE + x  # normal for every x > -1
        k = _frexp_k(u)
        # k = 0 (u in [sqrt(1/2), sqrt 2)): f = x itself, exact, nothing lost to rounding u.
        # Otherwise f = m - 1 (exact) and c = log(1 + x) - log(u) ~ ((1 + x) - u) / u, the
        # rounding error of u, exact while u - 1 is (u < 2^24 / 2^53; beyond it is negligible).
        f = x if k == ZERO else _frexp_m(u) - ONE
        c = ZERO if k == ZERO else (x - (u - ONE)) / u
        y = _log_reduced(k, f, c, P, K)
        y = y if x < INF else x  # +inf, and NaN
        return y if x > MONE else (NINF if x == MONE else NAN)
    return impl


def _tanh32_impl():
    P = _typed(32, _TANH32_P)
    EP, EK = _exp_consts(32)
    T, HI, ONE, TWO = _typed(32, (_TANH32_T, _TANH_HI[32], 1.0, 2.0))

    def impl(x):
        # max error 1.33 ulp over every float32 (exhaustive), 25% faster than the
        # expm1 form below; both branches computed and one selected
        a = abs(x)
        z = a * a
        small = a + a * z * _horner(z, P)
        # e^2a for 2a in [1.25, 20]: clamped where tanh rounds to 1, and NaN takes HI so
        # that the exponent's integer conversion stays defined (NaN returns via small)
        ac = a if a < HI else HI
        n, p = _exp_reduced(ac + ac, EP, EK)
        e = p * _pow2(n)  # 2^n normal: n in [2, 29]
        large = ONE - TWO / (e + ONE)
        return math.copysign(large if a >= T else small, x)
    return impl


def _tanh_factory(bits):
    if bits == 32:
        return _tanh32_impl()
    HI, ONE, TWO = _typed(bits, (_TANH_HI[bits], 1.0, 2.0))

    def impl(x):
        # tanh|x| = t / (t + 2), t = e^{2|x|} - 1: no cancellation anywhere, tanh x = x for
        # tiny x; clamped where it rounds to 1 (keeps t finite); odd by construction.
        a = abs(x)
        a = HI if a > HI else a
        t = _expm1(a + a)
        d = t + TWO
        e = (TWO - d) + t if t < TWO else (t - d) + TWO  # d's rounding error, exactly
        r = ONE / d
        y = t * r
        # One correction step from the exact remainder t - y d (FMA) and d's error: the
        # quotient is then about as accurate as t (t / (t + 2) straight: 2.3 ulp).
        y = _fma(_fma(-y, d, t) - y * e, r, y)
        return math.copysign(y, x)
    return impl


def _erf_factory(bits):
    PS = _typed(bits, _ERF_SMALL[bits])
    PL = _typed(bits, _ERF_LARGE[bits])
    A, B, ONE = _typed(bits, _ERF_AB[bits] + (1.0,))

    def impl(x):
        # both branches are computed and one selected: no branch in a vector loop
        a = abs(x)
        small = a + a * _horner(a * a, PS)
        v = (B if a > B else a) - A  # exact for a >= A; clamped where erf rounds to 1
        large = ONE - _exp_nonpos(_horner(v, PL))  # log erfc < 0: exp's bits, cheaper
        return math.copysign(small if a < A else large, x)
    return impl


def _gauss_factory(bits):
    HI, HALF = _typed(bits, (_GAUSS_HI[bits], 0.5))

    def impl(x):
        a = abs(x)
        a = HI if a > HI else a  # NaN passes
        xx = a * a
        h = HALF * xx
        l = HALF * _fma(a, a, -xx)  # x^2 / 2 = h + l exactly
        e = _exp_nonpos(-h)
        return _fma(-e, l, e)  # e^-h e^-l, e^-l = 1 - l to the last bit (|l| < 2^-20 h)
    return impl


def _ndtr_factory(bits):
    P, Q = (_typed(bits, c) for c in _NDTR_R[bits])
    B, ONE, HALF, S12 = _typed(bits, (_NDTR_B[bits], 1.0, 0.5, _SQRT1_2))

    def impl(x):
        a = abs(x) * S12
        a = B if a > B else a  # NaN passes (and gauss returns it)
        c = HALF * (_gauss(x) * (_horner(a, P) / _horner(a, Q)))  # erfc(a) / 2
        return ONE - c if x >= 0 else c
    return impl


@jit
def _gelu32_core(x, C, EP, R):
    """(p, a, s, r) for gelu and gelu' (float32, see _GELU32_A): a = min(|x|, A),
    e^(-a^2/2) = p s 2^-64 with s = 2^(n + 64), and Phi(-a) = p s r.  a^2/2 = h + l
    exactly (FMA); l goes into the reduced argument.  C = (A, -log2(e)/2, -1/2, LN2_HI,
    LN2_LO, 64, 1), EP the exp polynomial, R = (numerator, denominator) of r."""
    hi, k2, mhalf, ln2_hi, ln2_lo, ek, one = C
    a = abs(x)
    a = hi if a > hi else a  # NaN passes
    xx = a * a
    n = np.rint(xx * k2)
    q = _fma(xx, mhalf, -(n * ln2_hi)) - _fma(n, ln2_lo, mhalf * _fma(-a, a, xx))
    return _exp_poly(q, EP, one), a, _pow2(n + ek), _horner(a, R[0]) / _horner(a, R[1])


def _gelu32_consts():
    C = _typed(32, (_GELU32_A, -0.5 * _LOG2E, -0.5) + _LN2[32] + (64.0, 1.0))
    return C, _typed(32, _EXP_P[32]), tuple(_typed(32, c) for c in _GELU32_R)


def _gelu_factory(bits):
    ZERO = _typed(bits, (0.0,))[0]
    if bits == 64:
        def impl64(x):
            c = _ndtr(x)
            return ZERO if c == ZERO else x * c  # the limit 0 at x = -inf
        return impl64
    C, EP, R = _gelu32_consts()

    def impl(x):
        p, a, s, r = _gelu32_core(x, C, EP, R)
        return (ZERO if x < ZERO else x) - (p * (a * s)) * r  # NaN passes through x
    return impl


def _gelu_d_factory(bits):
    ZERO, ONE = _typed(bits, (0.0, 1.0))
    if bits == 64:
        K = _typed(bits, (1.0 / math.sqrt(2 * math.pi),))[0]

        def impl64(x):
            g = K * _gauss(x)
            return _ndtr(x) + (ZERO if g == ZERO else x * g)  # x phi -> 0 at +-inf
        return impl64
    C, EP, R = _gelu32_consts()
    K = _typed(32, (_GELU32_K,))[0]

    def impl(x):
        p, a, s, r = _gelu32_core(x, C, EP, R)
        w = (p * s) * (r - a * K)  # NaN passes through a
        return ONE - w if x >= ZERO else w
    return impl


_exp = _dispatch(_exp_factory)
_exp_nonpos = _dispatch(_exp_nonpos_factory)
_expm1 = _dispatch(_expm1_factory)
_expm1_nonpos = _dispatch(_expm1_nonpos_factory)
_log = _dispatch(_log_factory)
_log1p = _dispatch(_log1p_factory)
_tanh = _dispatch(_tanh_factory)
_erf = _dispatch(_erf_factory)
_gauss = _dispatch(_gauss_factory)
_ndtr = _dispatch(_ndtr_factory)
_gelu = _dispatch(_gelu_factory)
_gelu_d = _dispatch(_gelu_d_factory)


# --- the functions the kernels call ----------------------------------------------------

@inline
def exp(x):
    """e^x."""
    return _exp(x)


@inline
def exp_nonpos(x):
    """e^x for x <= 0 (or NaN): the same result as ``exp``, cheaper (wrong for x > 43)."""
    return _exp_nonpos(x)


@inline
def log(x):
    """Natural logarithm."""
    return _log(x)


@inline
def log1p(x):
    """log(1 + x), accurate for small |x|."""
    return _log1p(x)


@inline
def expm1(x):
    """e^x - 1, accurate for small |x|."""
    return _expm1(x)


@inline
def expm1_nonpos(x):
    """e^x - 1 for x <= 0 (or NaN), cheaper than ``expm1`` (wrong for x > 0)."""
    return _expm1_nonpos(x)


@inline
def tanh(x):
    """Hyperbolic tangent."""
    return _tanh(x)


@inline
def erf(x):
    """Error function."""
    return _erf(x)


@inline
def gauss(x):
    """e^(-x^2/2) (the unnormalised standard normal density), accurate in the tails."""
    return _gauss(x)


@inline
def ndtr(x):
    """Phi(x), the standard normal CDF, to a few ulp also in its left tail (x < 0)."""
    return _ndtr(x)


@inline
def gelu(x):
    """x Phi(x), with relative precision in the left tail; gelu(-inf) = 0."""
    return _gelu(x)


@inline
def gelu_d(x):
    """gelu'(x) = Phi(x) + x phi(x); 1 at +inf, 0 at -inf."""
    return _gelu_d(x)
