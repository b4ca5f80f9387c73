"""Scalar math for the Numba kernels: exp, log, log1p, expm1, tanh, erf.

Every kernel calls these instead of ``math.*`` directly, so that one file decides
how they are computed.  Kept float32 for float32 input.  (pip's llvmlite has no
SVML: ``math.exp`` and friends are scalar libm calls that block vectorisation;
a polynomial implementation here can replace them without touching a kernel.)
"""
import math

from fastdl._kernels.numba._jit import inline


@inline
def exp(x):
    return math.exp(x)


@inline
def log(x):
    return math.log(x)


@inline
def log1p(x):
    return math.log1p(x)


@inline
def expm1(x):
    return math.expm1(x)


@inline
def tanh(x):
    return math.tanh(x)


@inline
def erf(x):
    return math.erf(x)
