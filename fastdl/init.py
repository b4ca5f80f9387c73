"""Weight initialisers, seeded through ``numpy.random.Generator``.

Weights are ``(fan_in, fan_out)`` (``y = x @ W``).  The fan-based initialisers take
``(fan_in, fan_out)`` or one weight shape: ``he_normal(784, 512)`` and
``he_normal((784, 512))`` are the same; a shape of 3 or more axes is a convolution
kernel ``(out_channels, in_channels, kh, kw)`` whose fans count the kernel window
(``fan_in = in_channels kh kw``, ``fan_out = out_channels kh kw``, as PyTorch).
The course's scales:

| initialiser      | distribution | scale                                  |
| ---------------- | ------------ | -------------------------------------- |
| ``xavier_normal``  | N(0, std^2)  | std = sqrt(2 / (fan_in + fan_out))     |
| ``xavier_uniform`` | U(-a, a)     | a = sqrt(6 / (fan_in + fan_out))       |
| ``he_normal``      | N(0, std^2)  | std = sqrt(2 / fan_in)                 |
| ``he_uniform``     | U(-a, a)     | a = sqrt(6 / fan_in)                   |

(each uniform bound gives the same variance as its normal form: a^2 / 3 = std^2).

Every function takes ``rng`` (a ``numpy.random.Generator``, an int seed, or None
for fresh entropy), ``dtype`` (float32 by default; float32 samples are drawn in
float32 directly) and ``out=`` (an existing float array to fill in place, for
example a view into ``Parameters``; its dtype is used, and the result is
``out``).  The same seed gives the same numbers for a given dtype.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastdl import _validate as V
from fastdl.functional.optim import check_hyper

__all__ = ["normal", "uniform", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform",
           "as_generator"]


def as_generator(rng) -> np.random.Generator:
    """A Generator from a Generator, an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: expected a non-negative int seed, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected a numpy.random.Generator, an int seed or None, "
                    f"got {type(rng).__name__}")


def _shape(shape) -> tuple:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or any(
            isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in shape):
        raise TypeError(f"shape: expected an int or a tuple of ints, got {shape!r}")
    if any(d < 0 for d in shape):
        raise ValueError(f"shape: expected non-negative sizes, got {tuple(shape)}")
    return tuple(int(d) for d in shape)


def _target(shape, dtype, out):
    """(dtype, out or None) after checking ``out`` against shape and dtype."""
    if out is None:
        dt = np.dtype(np.float32 if dtype is None else dtype)
        if dt not in V.FLOATS:
            raise TypeError(f"dtype: expected float32 or float64, got {dt}")
        if math.prod(shape) > np.iinfo(np.intp).max // dt.itemsize:
            # NumPy's "array is too big" named nothing
            raise ValueError(f"shape: {shape} has {math.prod(shape)} elements, more than "
                             f"one {dt} array can hold")
        return dt, None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a NumPy array, got {type(out).__name__}")
    if out.dtype not in V.FLOATS:
        raise TypeError(f"out: expected a float32 or float64 array, got {out.dtype}")
    if dtype is not None and np.dtype(dtype) != out.dtype:
        raise TypeError(f"out: expected dtype {np.dtype(dtype)} (as dtype=), got {out.dtype}")
    V.check_shape("out", out, shape)
    if not out.flags.writeable:
        raise ValueError("out: array is read-only")
    return out.dtype, out


def _fan(name: str, value) -> int:
    return V.check_int(name, value, lo=1)


def _fans(fan_in, fan_out, rng):
    """``(fan_in, fan_out, weight shape, rng)`` from ``(fan_in, fan_out)`` or from a weight
    shape given as ``fan_in`` (then ``fan_out`` may hold ``rng``, passed by position).

    A 2-D shape is ``(fan_in, fan_out)``; a shape of 3 or more axes is a convolution
    kernel ``(out_channels, in_channels, *kernel)``: ``fan_in = in_channels * prod(kernel)``,
    ``fan_out = out_channels * prod(kernel)``, as PyTorch."""
    if not isinstance(fan_in, (tuple, list)):
        fan_in, fan_out = _fan("fan_in", fan_in), _fan("fan_out", fan_out)
        return fan_in, fan_out, (fan_in, fan_out), rng
    shape = _shape(fan_in)
    if fan_out is not None:
        if rng is None and isinstance(fan_out, np.random.Generator):
            rng = fan_out  # he_normal((784, 512), rng): the generator by position
        else:
            raise TypeError(f"fan_out: give fan_in and fan_out, or one weight shape tuple "
                            f"(got shape {shape} and fan_out={fan_out!r}; a seed goes in rng=)")
    if len(shape) < 2:
        raise ValueError(f"shape: expected (fan_in, fan_out) or (out, in, *kernel), got {shape}")
    if any(d < 1 for d in shape):
        raise ValueError(f"shape: expected sizes >= 1, got {shape}")
    if len(shape) == 2:
        return shape[0], shape[1], shape, rng
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field, shape, rng


def _normal(shape, std, gen, dt, out):
    # draw N(0, 1) in the target dtype (float32 directly: no float64 temporary),
    # into ``out`` when it is contiguous, then scale in place
    if out is not None and out.flags.c_contiguous:
        gen.standard_normal(out=out, dtype=dt)
        res = out
    else:
        res = gen.standard_normal(shape, dtype=dt)
    res *= std
    if out is not None and res is not out:
        out[...] = res
        res = out
    return res


def _uniform(shape, a, gen, dt, out):
    # U(0, 1) in the target dtype, mapped to U(-a, a) in place
    if out is not None and out.flags.c_contiguous:
        gen.random(out=out, dtype=dt)
        res = out
    else:
        res = gen.random(shape, dtype=dt)
    # (r - 0.5) 2 a, in this order: 2 a overflowed for an a that fits (inf, or NaN)
    res -= 0.5
    res *= 2
    res *= a
    if out is not None and res is not out:
        out[...] = res
        res = out
    return res


def normal(shape, std=1.0, rng=None, *, dtype=None, out=None) -> np.ndarray:
    """Samples of N(0, std^2) with the given shape (float32 unless ``dtype``/``out`` say)."""
    shape = _shape(shape)
    std = check_hyper("std", std, lo=0.0)
    dt, out = _target(shape, dtype, out)
    V.check_fits("std", std, dt)  # 1e300 in float32 drew +-inf
    return _normal(shape, std, as_generator(rng), dt, out)


def uniform(shape, a, rng=None, *, dtype=None, out=None) -> np.ndarray:
    """Samples of U(-a, a) with the given shape."""
    shape = _shape(shape)
    a = check_hyper("a", a, lo=0.0)
    dt, out = _target(shape, dtype, out)
    V.check_fits("a", a, dt)
    return _uniform(shape, a, as_generator(rng), dt, out)


def xavier_normal(fan_in, fan_out=None, rng=None, *, dtype=None, out=None) -> np.ndarray:
    """(fan_in, fan_out) weights from N(0, 2 / (fan_in + fan_out)) (Glorot)."""
    fan_in, fan_out, shape, rng = _fans(fan_in, fan_out, rng)
    dt, out = _target(shape, dtype, out)
    return _normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), as_generator(rng), dt, out)


def xavier_uniform(fan_in, fan_out=None, rng=None, *, dtype=None, out=None) -> np.ndarray:
    """(fan_in, fan_out) weights from U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot)."""
    fan_in, fan_out, shape, rng = _fans(fan_in, fan_out, rng)
    dt, out = _target(shape, dtype, out)
    return _uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), as_generator(rng), dt, out)


def he_normal(fan_in, fan_out=None, rng=None, *, dtype=None, out=None) -> np.ndarray:
    """(fan_in, fan_out) weights from N(0, 2 / fan_in) (He / Kaiming, for ReLU)."""
    fan_in, fan_out, shape, rng = _fans(fan_in, fan_out, rng)
    dt, out = _target(shape, dtype, out)
    return _normal(shape, math.sqrt(2.0 / fan_in), as_generator(rng), dt, out)


def he_uniform(fan_in, fan_out=None, rng=None, *, dtype=None, out=None) -> np.ndarray:
    """(fan_in, fan_out) weights from U(-a, a), a = sqrt(6 / fan_in) (He / Kaiming)."""
    fan_in, fan_out, shape, rng = _fans(fan_in, fan_out, rng)
    dt, out = _target(shape, dtype, out)
    return _uniform(shape, math.sqrt(6.0 / fan_in), as_generator(rng), dt, out)