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

How they are compiled (``_dispatch``): each function is an intrinsic that, for
the argument's float type, compiles its implementation once per process as a
Numba subroutine with the house FASTMATH flags, whatever the calling kernel's
flags are, and emits an ``alwaysinline`` call to it; LLVM then inlines it into
the kernel's loop and vectorises it.  LLVM keeps the callee's per-instruction
flags when it inlines, so ``reassoc`` (FASTMATH_REDUCE kernels) or ``nnan`` in a
caller never reaches the rounding steps (Cody-Waite reduction, the corrections
of log1p, expm1 and tanh, the two-factor 2^n) or the NaN/Inf selects.  Numba's
own ``inline="always"`` would instead re-type the whole body at every call site
(measured several times slower to compile), and so would a ``const(x, c)`` per
literal: the constants here are closure variables already of the right type.
The public names stay ``@inline`` one-liners, so kernels call them as before.

Coefficients: weighted minimax polynomials (Remez exchange in mpmath at 60
digits), each fitted to the part of the result it computes, with the error
weighted by its effect on the relative error of the final result; the max
weighted error of each fit is noted in eps of its type.  They are then rounded
to the type.
"""
import functools
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import compiler, cpu
from numba.extending import intrinsic

from fastdl._kernels.numba._jit import FASTMATH, inline, jit

_LOG2E = 1.4426950408889634

# ln 2 = HI + LO with HI short enough that k * HI is exact for every exponent k
# that occurs (|k| < 2^9 in float32, < 2^12 in float64).
_LN2 = {32: (0.693145751953125, 1.4286068202862268e-06),
        64: (0.6931471803691238, 1.9082149292705877e-10)}

# exp: e^r = 1 + r + r^2 P(r) on |r| <= ln2/2 (+0.1%); weight r^2 e^-r.
# float32: 0.026 eps; float64: 0.017 eps.
_EXP_P = {
    32: (0.49999994, 0.1666652, 0.041668393, 0.008368781, 0.0013814467),
    64: (0.5000000000000011, 0.1666666666666641, 0.04166666666652919, 0.008333333333495627,
         0.00138888889439228, 0.00019841269504759272, 2.48014927626237e-05,
         2.7557587347901153e-06, 2.7630378682561003e-07, 2.4999963473198113e-08),
}
# Clamp: beyond these e^x is 0 (below half the smallest subnormal) or inf in the type.
_EXP_RANGE = {32: (-104.0, 89.0), 64: (-746.0, 710.0)}

# expm1: e^r - 1 = r + r^2 P(r) on |r| <= _EXPM1_T (+0.05%); weight r^2 / |e^r - 1|.
# float32: 0.011 eps; float64: 0.0027 eps.
_EXPM1_P = {
    32: (0.5, 0.16666672, 0.04166662, 0.008332629, 0.0013890427, 0.00020095808, 2.4781153e-05),
    64: (0.5, 0.1666666666666666, 0.041666666666666824, 0.008333333333336431,
         0.0013888888888862491, 0.00019841269837067094, 2.4801587319912148e-05,
         2.7557321841290683e-06, 2.7557313426167596e-07, 2.5051285512800157e-08,
         2.087749982886081e-09, 1.6186109167083144e-10, 1.1468732025312964e-11),
}
# Below _EXPM1_T (just above ln 2) no reduction: with n = +-1 and r of the opposite
# sign, 2^n (e^r - 1) + 2^n - 1 would cancel.
_EXPM1_T = 0.6932
# Clamp: below LO, e^x - 1 rounds to -1; above HI it is inf.
_EXPM1_RANGE = {32: (-18.0, 89.0), 64: (-40.0, 710.0)}

# log (fdlibm's form): log(1 + f) = f - f^2/2 + s (f^2/2 + z P(z)), s = f / (2 + f),
# z = s^2 <= ((sqrt2 - 1) / (sqrt2 + 1))^2; P fits (2 atanh(s)/s - 2) / z with weight z/2.
# float32: 0.0068 eps; float64: 0.0056 eps.
_LOG_P = {
    32: (0.66666776, 0.39977497, 0.29873073),
    64: (0.6666666666666735, 0.3999999999941109, 0.2857142874326281, 0.22222198475976956,
         0.1818356974014938, 0.15313903240375, 0.14797507754920158),
}
# Subnormal input: below the smallest normal, scale by 2^K first (exact).
_LOG_SUB = {32: (1.1754943508222875e-38, 33554432.0, 25.0),
            64: (2.2250738585072014e-308, 18014398509481984.0, 54.0)}

# exp of x <= 0: 2^n (n down to -150 / -1076) as 2^(n + K) 2^-K, both factors normal.
_EXP_NONPOS_K = {32: 64.0, 64: 512.0}

# tanh(a) rounds to 1 in the type for a >= HI (9.01 in float32, 19.06 in float64).
_TANH_HI = {32: 10.0, 64: 20.0}
# float32 tanh: below T, tanh(a) = a + a^3 P(a^2), P fits (tanh(a) - a) / a^3 on [0, T^2]
# with weight a^3 / tanh(a) (Lawson-iterated least squares; 0.037 eps); from T on,
# 1 - 2 / (e^2a + 1), which cannot cancel there (tanh T = 0.55).
_TANH32_T = 0.625
_TANH32_P = (-0.3333328068256378, 0.13331441581249237, -0.05373971164226532,
             0.020639074966311455, -0.005704972892999649)

# erf: |x| < A: erf(x) = x + x P(x^2), P fits erf(x)/x - 1 with weight x / erf(x).
# |x| >= A: erf(x) = 1 - exp(Q(x - A)), Q fits log(erfc(x)) on [A, B] with weight
# erfc/erf + LAM (the error of Q scaled by erfc/erf is the relative error of erf;
# LAM = 4e-7 (float32), 1e-15 (float64) keeps Q within 0.01 near B, so that erf(B)
# rounds to 1).  x - A is exact (A = 1 and x >= A): no rescaling of x, whose rounding
# would cost accuracy.  A = 1 also keeps the alternating series x P(x^2) from cancelling
# (A = 1.5 gave 2.3 ulp in float64).
# float32: small 0.010 eps, large 0.013 eps; float64: small 0.033 eps, large 0.031 eps.
_ERF_AB = {32: (1.0, 4.0), 64: (1.0, 6.0)}
_ERF_SMALL = {
    32: (0.12837917, -0.37612626, 0.11283585, -0.026853807, 0.005188318, -0.0008010101,
         7.853529e-05),
    64: (0.12837916709551256, -0.3761263890318352, 0.11283791670944174, -0.026866170643109717,
         0.005223977606103691, -0.000854832592858752, 0.00012055293554669321,
         -1.492471186640788e-05, 1.644712609995671e-06, -1.6206271169252106e-07,
         1.3710793387792574e-08, -7.779114473337801e-10),
}
_ERF_LARGE = {
    32: (-1.8496056, -2.6389666, -0.8431215, -0.041484755, 0.009858547, -0.0017982776,
         0.00017717721),
    64: (-1.8496055099332482, -2.6389675142347775, -0.8431072563593304, -0.041561098026682126,
         0.010033825195153834, -0.0019779013109321023, 0.00023731679879534592,
         2.6295379305208917e-05, -2.7197234708941383e-05, 9.669079977336338e-06,
         -2.1297234435779206e-06, 2.0324337369910753e-07, 5.882254730133344e-08,
         -3.3693185459927725e-08, 8.597396812345194e-09, -1.3326632515207257e-09,
         1.2071464046661846e-10, -4.9288404011678026e-12),
}

# gauss(x) = e^(-x^2/2) with x^2/2 split exactly into h + l (FMA): e^-h (1 - l), so the
# rounding of x^2 (up to 2^-24 * 110 in float32) never reaches the exponent.  Beyond
# GAUSS_HI the result is 0 in the type; the clamp keeps x^2 finite.
_GAUSS_HI = {32: 16.0, 64: 40.0}

# ndtr(x) = Phi(x), the standard normal CDF: with a = |x| / sqrt 2 and c = erfc(a),
# Phi = c / 2 for x < 0 and 1 - c / 2 for x >= 0 (no cancellation on either side, where
# 1/2 (1 + erf(x / sqrt 2)) loses everything in the left tail).  c = gauss(x) R(a), with
# R(a) = e^(a^2) erfc(a) a rational P/Q on [0, B] (positive coefficients: no cancellation
# in Horner), fitted to R's relative error (Lawson-weighted linearised least squares
# against mpmath: degrees 4/5 in float64 arithmetic for float32, 0.10 eps of float32;
# degrees 10/11 in 50-digit arithmetic for float64, 0.008 eps of float64).  Beyond B,
# gauss(x) is 0 in the type.
_NDTR_B = {32: 10.5, 64: 27.5}
_NDTR_R = {
    32: ((1.0000000061819752, 1.2416531416232355, 0.7350062791714945, 0.23084263740371014,
          0.03313813771360047),
         (1.0, 2.3700329287975697, 2.4092921053626077, 1.3317202089180191, 0.409182774096549,
          0.05873517484760754)),
    64: ((1.0, 2.34165144237619, 2.7182784199647285, 2.021280242469855, 1.0562560698550623,
          0.40348183760716566, 0.11394796702777082, 0.023521660155455388,
          0.0034095717060282737, 0.00031561400966502906, 1.434330664824689e-05),
         (1.0, 3.470030609471703, 5.633788668876327, 5.660552176840954, 3.920056717520816,
          1.9701589783482008, 0.7357187621113542, 0.20497645568422426, 0.04197076275892702,
          0.006056019924767974, 0.000559411266831473, 2.542284910339803e-05)),
}
_SQRT1_2 = 0.7071067811865476

# gelu and gelu' in float32 in one pass over a = min(|x|, GELU32_A) (the Cython backend's
# _fastmath.h, same constants): gelu(x) = relu(x) - a Phi(-a) and gelu'(x) = 1 - w (x >= 0)
# or w, w = gelu'(-a) = Phi(-a) - a phi(a), with Phi(-a) = e^(-a^2/2) R(a) / 2 as in ndtr.
# e^(-a^2/2) = p 2^(n + 64) 2^-64 with the 2^-64 (and the 1/2) folded into R's numerator
# (rescaled to a: coefficient k times 2^(-k/2)) and into 1/sqrt(2 pi): one product fewer
# each, and a subnormal result still rounds once.  From GELU32_A (x = -14.6) on, Phi(-a)
# and gelu'(-a) round to 0, the values beyond.  float64 keeps gauss and ndtr.
_GELU32_A = 14.6
_GELU32_R = (tuple(c * _SQRT1_2 ** k * 2.0 ** -65 for k, c in enumerate(_NDTR_R[32][0])),
             tuple(c * _SQRT1_2 ** k for k, c in enumerate(_NDTR_R[32][1])))
_GELU32_K = 2.0 ** -64 / math.sqrt(2 * math.pi)


# --- building blocks --------------------------------------------------------------

def _is_float(t):
    return isinstance(t, types.Float) and t.bitwidth in (32, 64)


def _typed(bits, values):
    """Python floats as constants of the float type of width ``bits``."""
    ftype = np.float32 if bits == 32 else np.float64
    return tuple(ftype(v) for v in values)


def _bits(t):
    """(int type, mantissa bits, exponent bias) of float type ``t``."""
    return (ir.IntType(32), 23, 127) if t.bitwidth == 32 else (ir.IntType(64), 52, 1023)


@intrinsic
def _pow2(typingctx, n):
    """2^n for a float n that holds an integer in the normal exponent range."""
    if not _is_float(n):
        return None

    def codegen(context, builder, sig, args):
        ity, mant, bias = _bits(n)
        i = builder.add(builder.fptosi(args[0], ity), ity(bias))
        return builder.bitcast(builder.shl(i, ity(mant)), context.get_value_type(n))
    return n(n), codegen


def _reduce_bits(builder, x, t):
    # x = m 2^k with m in [sqrt(1/2), sqrt 2) for a positive normal x (musl's logf
    # trick): offset the bits so that the exponent field rolls over at sqrt(1/2).
    ity, mant, bias = _bits(t)
    sqrt_half = 0x3F3504F3 if t.bitwidth == 32 else 0x3FE6A09E667F3BCD
    ix = builder.add(builder.bitcast(x, ity), ity((bias << mant) - sqrt_half))
    k = builder.sub(builder.ashr(ix, ity(mant)), ity(bias))
    m = builder.add(builder.and_(ix, ity((1 << mant) - 1)), ity(sqrt_half))
    return k, m


@intrinsic
def _frexp_k(typingctx, x):
    """k (as a float) of x = m 2^k, m in [sqrt(1/2), sqrt 2), for positive normal x."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        k, _ = _reduce_bits(builder, args[0], x)
        return builder.sitofp(k, context.get_value_type(x))
    return x(x), codegen


@intrinsic
def _frexp_m(typingctx, x):
    """m of x = m 2^k, m in [sqrt(1/2), sqrt 2), for positive normal x."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        _, m = _reduce_bits(builder, args[0], x)
        return builder.bitcast(m, context.get_value_type(x))
    return x(x), codegen


@intrinsic
def _horner(typingctx, x, coeffs):
    """sum_i coeffs[i] x^i for a tuple of constants of x's type, as a chain of
    llvm.fmuladd (one FMA per coefficient; emitted directly, nothing to compile)."""
    if not (_is_float(x) and isinstance(coeffs, types.UniTuple) and coeffs.dtype == x):
        return None

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(x)
        fmuladd = builder.module.declare_intrinsic("llvm.fmuladd", [ty],
                                                   ir.FunctionType(ty, [ty, ty, ty]))
        c = [builder.extract_value(args[1], i) for i in range(coeffs.count)]
        p = c[-1]
        for ci in reversed(c[:-1]):
            p = builder.call(fmuladd, [p, args[0], ci])
        return p
    return x(x, coeffs), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma): exact remainders, e.g. t - y * d."""
    if not (_is_float(a) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(a)
        fma = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(fma, args)
    return a(a, b, c), codegen


@functools.lru_cache(maxsize=None)
def _implementation(factory, bits):
    # one implementation object per (function, width): Numba's subroutine cache is keyed on it
    return factory(bits)


def _subroutine_flags():
    flags = compiler.Flags()
    flags.fastmath = cpu.FastMathOptions(FASTMATH)
    flags.error_model = "numpy"
    return flags


def _dispatch(factory):
    """The compiled-code function of one scalar whose implementation for float32 or
    float64 is ``factory(bits)`` (integers go through float64): compiled once per
    type and process as a subroutine with the house FASTMATH flags, called with
    ``alwaysinline`` (see the module docstring)."""
    @intrinsic
    def call(typingctx, x):
        if _is_float(x):
            ftype = x
        elif isinstance(x, types.Integer):
            ftype = types.float64
        else:
            return None

        def codegen(context, builder, sig, args):
            impl = _implementation(factory, ftype.bitwidth)
            fsig = ftype(ftype)
            arg = context.cast(builder, args[0], x, ftype)
            cres = context.compile_subroutine(builder, impl, fsig, flags=_subroutine_flags())
            fn = context.declare_function(builder.module, cres.fndesc)
            # the implementation raises nothing: its status is always ok
            _, res = context.call_conv.call_function(builder, fn, ftype, fsig.args, (arg,))
            for inst in builder.block.instructions:
                if isinstance(inst, ir.CallInstr) and inst.callee is fn:
                    inst.attributes.add("alwaysinline")
            return res
        return ftype(x), codegen

    call.__name__ = call.__qualname__ = factory.__name__.replace("_factory", "")
    return call


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
