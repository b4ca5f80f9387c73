"""Constants of the Numba scalar math (``_math.py``): the reduction constants, the
ranges where each function saturates, and the polynomial coefficients.

Coefficients: weighted minimax polynomials (Remez exchange in mpmath at 60
digits), each fitted to the part of the result it computes, with the error
weighted by its effect on the relative error of the final result; the max
weighted error of each fit is noted in eps of its type.  They are then rounded
to the type.
"""
import math

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
