"""Checks at the public boundary.  Compiled kernels run with bounds checks off and
trust their inputs, so every array is checked here first: dtype, rank, shape,
label range, hyper-parameters.  Messages name the argument and say what was
expected and what was given.

Alignment: every array a compiled kernel receives from here is aligned to its item
size.  NumPy arrays need not be (``np.frombuffer(buf, offset=1)``, views of byte
buffers; ``np.ascontiguousarray`` keeps them as they are), and the kernels' streaming
stores fault on them, so a misaligned input is copied (``as_float``, ``aligned``) and a
misaligned ``out=`` is swapped for an aligned temporary and copied back
(``aligned_out``); ``make_out`` refuses one that reaches it.  Likewise the kernels get
plain ndarrays: an ``out=`` of an ndarray subclass (np.matrix, masked, memmap) is
written through a base-class view of its memory, and an input of a subclass is checked
as that view (``as_ndarray``): a masked array's min and max skip its masked entries,
which the kernels would read, so an index checked that way wrote outside its output.
Masked inputs are refused.

The common case (a C-contiguous array of the right dtype and rank, a float
hyper-parameter, labels in range) takes a short first path of identity and
attribute tests (labels: one reduction, not two).  The checks run between kernels
that have just flushed the interpreter's data from the caches, where they cost
several times what a warm micro-benchmark shows (about 10 us there), calls
alternated with their unchecked kernel: F.dense_forward 256x784x512 took 3.8-4.5%
longer than its kernel with the full checks only, 1.8-2.9% with the short path;
F.softmax_cross_entropy 256x1000 20-26%, then 14-21% (with the losses' own trims)."""
from __future__ import annotations

import functools
import inspect
import numbers

import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = FLOATS  # NumPy's native-order float dtypes are singletons: ``is`` tests them


def as_ndarray(name: str, x) -> np.ndarray:
    """``x`` as a base-class ndarray, so that the checks see what the kernels will read:
    array-likes converted, subclasses (np.matrix, np.memmap) viewed without a copy.  A
    masked array is refused (TypeError naming ``name``): its mask would be dropped."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name}: masked arrays are not supported (the masked entries "
                        f"would be read as data); pass {name}.filled(value)")
    try:
        return np.asarray(x)
    except ValueError as e:  # a ragged list: NumPy's message named nothing
        raise ValueError(f"{name}: not an array ({e})") from None


def _dtype_name(x) -> str:
    return str(getattr(x, "dtype", type(x).__name__))


def as_float(name: str, x, ndim=None, dtype=None) -> np.ndarray:
    """``x`` as an aligned C-contiguous float32/float64 array (copied only if strided or
    misaligned; a byte-swapped float array is refused: the result would not have its
    dtype).

    ``ndim`` is an int or a tuple of allowed ranks; ``dtype`` (if given) is the
    dtype ``x`` must have (for arrays that must match another argument)."""
    if type(x) is np.ndarray and (x.ndim == ndim or ndim is None) and x.ndim:
        f = x.flags
        if f.c_contiguous and f.aligned:
            dt = x.dtype
            if dt is dtype if dtype is not None else (dt is _F32 or dt is _F64):
                return x
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple, numbers.Number)):
            x = as_ndarray(name, x)
            if x.dtype.kind == "f" and x.dtype not in FLOATS:
                x = x.astype(np.float64)
            elif x.dtype.kind in "iub" and dtype is not None:
                raise TypeError(f"{name}: expected a float32 or float64 array, got {x.dtype}")
        else:
            raise TypeError(f"{name}: expected a NumPy array, got {type(x).__name__}")
    elif type(x) is not np.ndarray:
        x = as_ndarray(name, x)
    if x.dtype not in FLOATS:
        raise TypeError(f"{name}: expected a float32 or float64 array, got {_dtype_name(x)}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)} (as the other arrays), "
                        f"got {x.dtype}")
    check_ndim(name, x, ndim)
    if x.ndim == 0:
        return x.copy()  # np.ascontiguousarray would make it 1-D
    return aligned(np.ascontiguousarray(x))


def aligned(a):
    """``a`` as a plain aligned ndarray: itself, a base-class view of an ndarray subclass
    (``np.matrix`` reshapes to 2-D, a masked array is no Numba type), or a C-contiguous
    copy when it is not aligned to its item size (``np.ascontiguousarray`` keeps a
    misaligned array as it is); None stays None."""
    if a is None:
        return None
    if type(a) is not np.ndarray:
        a = a.view(np.ndarray)
    return a if a.flags.aligned else a.copy()


def check_ndim(name: str, x: np.ndarray, ndim) -> None:
    if ndim is None:
        return
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name}: expected a {want} array, got shape {x.shape}")


def same_dtype(**arrays) -> np.dtype:
    """The common float dtype of the named arrays; TypeError naming the odd one out."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    first_name, first = items[0]
    for k, v in items[1:]:
        if v.dtype != first.dtype:
            raise TypeError(f"{k}: expected dtype {first.dtype} (as {first_name}), got {v.dtype}")
    return first.dtype


def check_shape(name: str, x: np.ndarray, shape: tuple) -> None:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def make_out(out, shape: tuple, dtype, name: str = "out") -> np.ndarray:
    """An aligned C-contiguous result buffer: ``out`` checked, or a new empty array.

    A misaligned ``out`` is refused here (ValueError); public functions decorated with
    ``aligned_out`` never pass one, they compute into an aligned temporary instead."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if type(out) is np.ndarray and out.dtype is dtype and out.shape == shape:
        f = out.flags
        if f.c_contiguous and f.writeable and f.aligned:
            return out
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {out.dtype}")
    check_shape(name, out, shape)
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    if not out.flags.writeable:
        raise ValueError(f"{name}: array is read-only")
    if not out.flags.aligned:
        raise ValueError(f"{name}: expected an array aligned to its item size "
                         f"({out.dtype.itemsize} bytes), got one at an odd address")
    return out


def _stand_in(a):
    """What the kernels write for the caller's ``out`` array ``a``: ``a`` itself, a
    base-class view of an ndarray subclass (np.matrix, a masked array or a memmap: the
    same memory), or an aligned temporary for a misaligned ``a`` that make_out would
    otherwise accept (anything else is left to make_out's checks and errors)."""
    if not isinstance(a, np.ndarray):
        return a
    b = a if type(a) is np.ndarray else a.view(np.ndarray)
    f = b.flags
    if not f.aligned and f.c_contiguous and f.writeable:
        return np.empty(b.shape, b.dtype)
    return b


def aligned_out(fn):
    """Decorator for a public function with an ``out=`` keyword (an array, or a tuple
    of arrays and None): each ``out`` array that is misaligned, or of an ndarray
    subclass, is replaced by its stand-in (see ``_stand_in``); the caller's array is
    returned in place of each stand-in the function returns, a temporary copied into
    it first.  A temporary the function does not return (``dense_backward``'s ``dx``
    when ``need_dx`` is False) is not copied, and an error leaves the caller's arrays
    untouched.

    The wrapper is compiled with ``fn``'s own signature: a generic ``(*args, **kwargs)``
    wrapper cost 0.4-0.5 us a call here (packing and unpacking the keywords), this one
    about 0.05 us when ``out`` is None or a plain aligned array."""
    params, call, names = [], [], {"_fn": fn, "_nd": np.ndarray, "_slow": _through_stand_ins}
    for i, p in enumerate(inspect.signature(fn).parameters.values()):
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(f"aligned_out: {fn.__name__} has a {p.kind.description} "
                            f"parameter")
        if p.kind is p.KEYWORD_ONLY and "*" not in params:
            params.append("*")
        if p.default is p.empty:
            params.append(p.name)
        else:
            names[f"_d{i}"] = p.default
            params.append(f"{p.name}=_d{i}")
        call.append(p.name if p.kind is p.POSITIONAL_OR_KEYWORD else f"{p.name}={p.name}")
    if "out=out" not in call:
        raise TypeError(f"aligned_out: {fn.__name__} has no keyword-only out")
    stand_call = ", ".join("out=o" if c == "out=out" else c for c in call)
    src = (f"def {fn.__name__}({', '.join(params)}):\n"
           f"    if out is None or (type(out) is _nd and out.flags.aligned):\n"
           f"        return _fn({', '.join(call)})\n"
           f"    return _slow(out, lambda o: _fn({stand_call}))\n")
    exec(src, names)
    return functools.update_wrapper(names[fn.__name__], fn)


def _through_stand_ins(out, call):
    """``call(stand_in)`` (see ``aligned_out``), the caller's arrays put back in the result."""
    if isinstance(out, tuple):
        stand = tuple(_stand_in(a) for a in out)
        # a temporary standing in for a caller's array overlaps nothing, so the
        # function's own check that the results share no memory passes, and the copy-back
        # overwrote a sibling result, silently: checked here on the caller's arrays
        for i, (t, a) in enumerate(zip(stand, out)):
            if isinstance(a, np.ndarray) and t.base is None and t is not a:
                for j, b in enumerate(out):
                    if j != i and isinstance(b, np.ndarray) and np.may_share_memory(a, b):
                        i0, j0 = min(i, j), max(i, j)
                        raise ValueError(f"out[{i0}] and out[{j0}]: the results must not "
                                         f"share memory")
        pairs = [(t, a) for t, a in zip(stand, out) if t is not a]
    else:
        stand = _stand_in(out)
        pairs = [(stand, out)] if stand is not out else []
    if not pairs:
        return call(out)
    res = call(stand)
    got = res if isinstance(res, tuple) else (res,)
    for t, a in pairs:
        if t.base is None and any(r is t for r in got):  # a temporary, not a view
            np.copyto(a, t)
    got = tuple(next((a for t, a in pairs if r is t), r) for r in got)
    return got if isinstance(res, tuple) else got[0]


def copy_overlapping(res: np.ndarray, inputs, exact_ok: bool = False) -> list:
    """``inputs`` with each one that shares memory with the result ``res`` copied.

    Compiled kernels write ``res`` while they still read their inputs: an input that
    overlaps it would be read after parts of it were overwritten (a silently wrong
    result), and BLAS's behaviour with an output that aliases an operand is undefined.
    ``exact_ok``: an elementwise kernel reads each element before it writes it, so an
    input that is exactly ``res`` (same start, shape and dtype; both C-contiguous) needs
    no copy (a mask whose bytes are ``res``'s would be overwritten ahead of its reads).
    ``np.may_share_memory`` only compares bounds: two disjoint views of one buffer are
    copied too, which costs a copy, never a wrong result."""
    safe = []
    for a in inputs:
        if a is not None and (a is res or np.may_share_memory(a, res)) and not (
                exact_ok and a.dtype == res.dtype and a.shape == res.shape
                and a.__array_interface__["data"][0] == res.__array_interface__["data"][0]):
            a = a.copy()
        safe.append(a)
    return safe


def as_labels(name: str, y, n: int, num_classes: int) -> np.ndarray:
    """Integer class labels ``(n,)`` in ``[0, num_classes)`` as C-contiguous int64."""
    y = as_ndarray(name, y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer label array, got {y.dtype}")
    check_ndim(name, y, 1)
    if y.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per row), got {y.shape[0]}")
    if n:
        if y.dtype.kind == "i" and y.dtype.isnative:
            # one reduction for both bounds: read as unsigned, a negative label is huge
            ok = int(y.view(f"u{y.itemsize}").max()) < num_classes
        else:
            ok = y.dtype.kind == "u" and y.dtype.isnative and int(y.max()) < num_classes
        if not ok:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= num_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{name}: labels must be in [0, {num_classes}), got {bad}")
    return aligned(np.ascontiguousarray(y, dtype=np.int64))


def check_real(name: str, value, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """A real hyper-parameter in the given interval (None: unbounded)."""
    if type(value) is not float and (isinstance(value, bool)
                                     or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond the float range (2**1024 and up)
        raise ValueError(f"{name}: expected a number in the float range, got "
                         f"{show_int(int(value))}") from None
    if v != v:
        raise ValueError(f"{name}: expected a number, got nan")
    bad = (lo is not None and (v < lo or (lo_open and v == lo))) or \
          (hi is not None and (v > hi or (hi_open and v == hi)))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise ValueError(f"{name}: expected a value in {left}{lo_s}, {hi_s}{right}, got {value}")
    return v


# fit's seeds are saved with the model: the largest one a model file holds
MAX_SEED = 2**128 - 1


def check_int(name: str, value, lo=None, hi=None) -> int:
    """An integer hyper-parameter (bools refused), at least ``lo`` and at most ``hi``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    v = int(value)
    if lo is not None and v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name}: expected an int <= {hi}, got {show_int(v)}")
    return v


def show_int(v: int) -> str:
    """``v`` for a message: its digits, or its size when it has more than 64 bits."""
    return str(v) if v.bit_length() <= 64 else f"an int of {v.bit_length()} bits"


def check_bool(name: str, value) -> bool:
    """A bool (or NumPy bool); anything else, even a truthy string such as "no", is a
    TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def check_finite(name: str, value, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """A finite real hyper-parameter in the interval (``check_real`` without the
    infinities)."""
    v = check_real(name, value, lo, hi, lo_open, hi_open)
    if v in (float("inf"), float("-inf")):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return v


def check_fits(name: str, value: float, dtype, nonzero=False, below_one=False) -> float:
    """``value``, a checked finite float, as the kernels see it in ``dtype``: refused
    where the cast overflows to +-inf (elu's ``alpha e^0 - alpha`` was then NaN in the
    compiled kernels), where ``nonzero`` and a value > 0 rounds to 0, and where
    ``below_one`` and ``1 - value`` rounds to 1 (a clip to [eps, 1 - eps] that keeps 1)."""
    info = np.finfo(dtype)
    if abs(value) > float(info.max):
        raise ValueError(f"{name}: {value} overflows {info.dtype}, expected at most "
                         f"{float(info.max):.6g} in magnitude")
    if nonzero and value > 0 and info.dtype.type(value) == 0:
        raise ValueError(f"{name}: {value} rounds to 0 in {info.dtype}, expected at least "
                         f"{float(info.smallest_subnormal):.6g}")
    if below_one and info.dtype.type(1) - info.dtype.type(value) == 1:
        raise ValueError(f"{name}: 1 - {value} rounds to 1 in {info.dtype}, expected at "
                         f"least {float(info.epsneg):.6g}")
    return value


def check_choice(name: str, value, choices) -> str:
    try:
        known = value in choices
    except TypeError:  # unhashable (a list, an array) against a dict's keys
        known = False
    if not known:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value
