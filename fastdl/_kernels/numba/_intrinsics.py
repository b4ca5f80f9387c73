"""LLVM building blocks of the Numba scalar math (``_math.py``): bit tricks
(``_pow2``, ``_frexp_k``, ``_frexp_m``), ``_horner`` and ``_fma`` as direct LLVM
intrinsic calls, and ``_dispatch``, which turns an implementation factory into the
function kernels call.

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
"""
import functools

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import compiler, cpu
from numba.extending import intrinsic

from fastdl._kernels.numba._jit import FASTMATH


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
