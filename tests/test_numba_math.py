"""fastdl/_kernels/numba/_math.py: the vectorisable exp, log, log1p, expm1, tanh, erf,
exp_nonpos, expm1_nonpos (x <= 0), gauss (e^(-x^2/2)) and ndtr (the normal CDF).

Accuracy in ulp against references much more accurate than the type (float64 NumPy and
SciPy for float32; long double, or mpmath, for float64), over random bit patterns, the
working ranges, magnitudes down to the subnormals and the branch points; the IEEE edges;
monotonicity across every branch point; float32 kept float32; and that a loop over each
function vectorises with no call left in it.

The kernels here are compiled without Numba's cache on purpose: a cached kernel is only
invalidated by a change to its own source file, so it would go on testing an old
_math.py (the same holds for every cached kernel of fastdl: clear the cache after
changing _math.py)."""
import math
import os
import re

import mpmath
import numba
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st

from fastdl._kernels.numba import _math
from fastdl._kernels.numba._jit import FASTMATH, FASTMATH_REDUCE

NAMES = ("exp", "exp_nonpos", "log", "log1p", "expm1", "expm1_nonpos", "tanh", "erf", "gauss",
         "ndtr")
NONPOS = ("exp_nonpos", "expm1_nonpos")  # defined for x <= 0 only
DTYPES = (np.float32, np.float64)
# Measured maxima are 0.8-1.5 ulp; fastdl needs ~2 ulp in float32 and 1e-14 relative
# (~45 ulp) in float64, so one bound of 2 ulp serves both.
MAX_ULP = 2.0
# ndtr: 6.61 ulp at most over every float32 in [-16, 6], 8.36 ulp over 200,000 float64
# points of [-38.5, 9]: the rounding of the Horner steps of its rational R (the fits
# themselves are 0.10 and 0.008 ulp); about 8e-7 and 2e-15 relative, where
# 1 + erf(x / sqrt 2) loses everything.
_MAX_ULP_OF = {("ndtr", np.float32): 7.5, ("ndtr", np.float64): 10.0}
MP_ONLY = ("erf", "ndtr")  # no long double reference in NumPy: mpmath for float64


def bound(name, dtype):
    return _MAX_ULP_OF.get((name, dtype), MAX_ULP)


def _loop(f, fastmath=FASTMATH):
    def kernel(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return numba.njit(kernel, cache=False, error_model="numpy", nogil=True, fastmath=fastmath)


KERNELS = {name: _loop(getattr(_math, name)) for name in NAMES}
KERNELS_REDUCE = {name: _loop(getattr(_math, name), FASTMATH_REDUCE) for name in NAMES}


def run(name, x, kernels=KERNELS):
    x = np.ascontiguousarray(x)
    out = np.full_like(x, 12345.0)
    kernels[name](x, out)
    return out


# ---- references and ulp error -------------------------------------------------

_NP = {"exp": np.exp, "exp_nonpos": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
       "expm1_nonpos": np.expm1, "tanh": np.tanh, "erf": scipy.special.erf,
       "ndtr": scipy.special.ndtr, "gauss": lambda x: np.exp(-(x * x) / 2)}
_MP = {"exp": mpmath.exp, "exp_nonpos": mpmath.exp, "log": mpmath.log, "log1p": mpmath.log1p, "expm1": mpmath.expm1,
       "expm1_nonpos": mpmath.expm1,
       "tanh": mpmath.tanh, "erf": mpmath.erf,
       # mpmath's ncdf overflows for huge |v|; Phi is 0 or 1 to any precision beyond 50
       "ndtr": lambda v: v if mpmath.isnan(v) else (
           mpmath.ncdf(v) if abs(v) < 50 else mpmath.mpf(v > 0))}
_LONG_OK = np.finfo(np.longdouble).nmant >= 63  # x87 extended on x86-64 Linux


def _mp_ref(name, x):
    out = np.empty(x.size, np.longdouble)
    with mpmath.workdps(40):
        for i, v in enumerate(x.astype(np.float64)):
            r = _MP[name](mpmath.mpf(float(v)))
            if isinstance(r, mpmath.mpc) or mpmath.isnan(r):  # log of a negative number
                out[i] = np.nan
            elif mpmath.isinf(r):
                out[i] = np.inf if r > 0 else -np.inf
            else:
                out[i] = np.longdouble(mpmath.nstr(r, 25, min_fixed=0, max_fixed=0))
    return out


def reference(name, x):
    """The exact result, to far better than the ulp of x's type (as long double)."""
    with np.errstate(all="ignore"):
        if x.dtype == np.float32:
            x64 = x.astype(np.float64)
            r = _NP[name](x64)  # x64 * x64 is exact
            return r.astype(np.longdouble)
        if name not in MP_ONLY and _LONG_OK:
            return _NP[name](x.astype(np.longdouble))
        return _mp_ref(name, x)


def ulp_error(got, ref, dtype):
    """|got - ref| in units of the spacing of ``dtype`` at ref (the smallest subnormal
    at least); 0 where both are the same infinity or both NaN."""
    fi = np.finfo(dtype)
    with np.errstate(all="ignore"):
        r = ref.astype(dtype)
        spacing = np.maximum(np.spacing(np.abs(r)).astype(np.longdouble),
                             np.longdouble(fi.smallest_subnormal))
        err = np.abs(got.astype(np.longdouble) - ref) / spacing
    same = (np.isnan(got) & np.isnan(ref)) | (np.isinf(got) & (got == r))
    err[same] = 0
    return err


# ---- test points ----------------------------------------------------------------

RANGE = {  # (float32, float64) working ranges, a little beyond the saturation points
    "exp": ((-110, 95), (-750, 715)), "exp_nonpos": ((-110, 0), (-750, 0)),
    "log": ((0, 50), (0, 50)), "log1p": ((-1, 50), (-1, 50)),
    "expm1": ((-25, 95), (-45, 715)), "expm1_nonpos": ((-25, 0), (-45, 0)), "tanh": ((-12, 12), (-22, 22)), "erf": ((-5, 5), (-7, 7)),
    "gauss": ((-16, 16), (-40, 40)), "ndtr": ((-15, 7), (-40, 10)),
}
BRANCH_POINTS = {  # where an implementation switches formula, clamps or rescales
    "exp": [0.3466, -0.3466, 1.0397, 88.72, 88.0, -87.33, -103.28, -708.4, -745.1, 709.78],
    "exp_nonpos": [-0.3466, -1.0397, -87.33, -103.28, -708.4, -745.1],
    "log": [math.sqrt(0.5), math.sqrt(2), 1.0, 2.0, 1.1754944e-38, 2.2250738585072014e-308],
    "log1p": [math.sqrt(0.5) - 1, math.sqrt(2) - 1, 0.0, -0.5, 1.0, -1 + 1e-7],
    "expm1": [0.6932, -0.6932, 0.3466, -0.3466, 1.0397, -17.33, -37.4, 88.72, 709.78],
    "expm1_nonpos": [-0.6932, -0.3466, -1.0397, -17.33, -18.0, -37.4, -40.0],
    "tanh": [0.0, 0.5493, 0.625, 9.01, 10.0, 19.06, 20.0],
    "erf": [1.0, -1.0, 3.92, 4.0, 5.86, 6.0],
    "gauss": [-13.6, -14.4, -16.0],  # where e^-h turns subnormal, reaches 0, the clamp
    "ndtr": [-14.85, -38.89, 38.89],  # a = B (float32 10.5, float64 27.5)
}


def points(name, dtype, n=60_000, seed=0):
    r = np.random.default_rng(seed)
    lo, hi = RANGE[name][dtype == np.float64]
    ibits = np.uint32 if dtype == np.float32 else np.uint64
    raw = r.integers(0, np.iinfo(ibits).max, n, dtype=ibits, endpoint=True).view(dtype)
    raw = raw[np.isfinite(raw)]
    smallest = -44 if dtype == np.float32 else -322
    mags = 10.0 ** r.uniform(smallest, 1.5, n) * r.choice([-1.0, 1.0], n)
    near = [np.float64(b) + r.uniform(-1e-3, 1e-3, n // 20) * max(1.0, abs(b))
            for b in BRANCH_POINTS[name]]
    ulps_near = []
    for b in BRANCH_POINTS[name]:  # the floats right around each branch point
        c = np.array(b, dtype).view(ibits).astype(np.int64)
        ulps_near.append(np.arange(c - 300, c + 300).astype(ibits).view(dtype))
    x = np.concatenate([raw, r.uniform(lo, hi, n), mags, *near]).astype(dtype)
    x = np.concatenate([x, *ulps_near])
    return -np.abs(x) if name in NONPOS else x


# ---- accuracy ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_accuracy_in_ulp(name, dtype):
    x = points(name, dtype, n=60_000 if (dtype == np.float32 or name not in MP_ONLY) else 1_500)
    got = run(name, x)
    assert got.dtype == dtype
    err = ulp_error(got, reference(name, x), dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= bound(name, dtype), (
        f"{name}({x[worst]!r}) = {got[worst]!r}: {err[worst]:.2f} ulp")


def test_erf_float64_dense_against_scipy():
    # the mpmath reference above is slow; SciPy's float64 erf (< 1 ulp) covers a dense grid
    x = np.concatenate([np.linspace(-7, 7, 200_001), np.linspace(0.99, 1.01, 20_001)])
    err = ulp_error(run("erf", x), scipy.special.erf(x).astype(np.longdouble), np.float64)
    assert err.max() <= MAX_ULP + 1.0


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_scalar_remainder_path(name, dtype):
    # Arrays shorter than the vector width run the loop's scalar remainder, a separate
    # copy of the code: one element at a time it must be as accurate.
    x = points(name, dtype, n=400, seed=3)[::4]
    got = np.array([run(name, x[i:i + 1])[0] for i in range(x.size)], dtype)
    assert ulp_error(got, reference(name, x), dtype).max() <= bound(name, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_accuracy_inside_reduce_fastmath_kernels(name, dtype):
    # A kernel compiled with reassoc (FASTMATH_REDUCE) must not reassociate the rounding
    # tricks of the inlined implementations (Cody-Waite, log1p/expm1 corrections).
    x = points(name, dtype, n=5_000, seed=1)
    if dtype == np.float64 and name in MP_ONLY:
        x = x[::20]
    got = run(name, x, KERNELS_REDUCE)
    assert ulp_error(got, reference(name, x), dtype).max() <= bound(name, dtype)


# ---- edges ----------------------------------------------------------------------------

INF, NAN = math.inf, math.nan
EDGES = {  # x -> exact expected value, in every float type
    "exp": [(INF, INF), (-INF, 0.0), (NAN, NAN), (0.0, 1.0), (-0.0, 1.0), (1e4, INF),
            (-1e4, 0.0), (1e-30, 1.0)],
    "exp_nonpos": [(-INF, 0.0), (NAN, NAN), (0.0, 1.0), (-0.0, 1.0), (-1e4, 0.0),
                   (-1e-30, 1.0)],
    "log": [(0.0, -INF), (-0.0, -INF), (-1.0, NAN), (-INF, NAN), (INF, INF), (NAN, NAN),
            (1.0, 0.0), (-1e-30, NAN)],
    "log1p": [(-1.0, -INF), (-2.0, NAN), (-INF, NAN), (INF, INF), (NAN, NAN), (0.0, 0.0),
              (1e-30, 1e-30), (-1e-30, -1e-30)],
    "expm1": [(INF, INF), (-INF, -1.0), (NAN, NAN), (0.0, 0.0), (1e-30, 1e-30),
              (-1e-30, -1e-30), (-50.0, -1.0), (1e4, INF), (-1e4, -1.0)],
    "expm1_nonpos": [(-INF, -1.0), (NAN, NAN), (0.0, 0.0), (-1e-30, -1e-30), (-50.0, -1.0),
                     (-1e4, -1.0)],
    "tanh": [(INF, 1.0), (-INF, -1.0), (NAN, NAN), (0.0, 0.0), (1e-30, 1e-30),
             (-1e-30, -1e-30), (25.0, 1.0), (-25.0, -1.0), (1e30, 1.0), (-1e30, -1.0)],
    "erf": [(INF, 1.0), (-INF, -1.0), (NAN, NAN), (0.0, 0.0), (7.0, 1.0), (-7.0, -1.0),
            (1e30, 1.0), (-1e30, -1.0)],
    "gauss": [(INF, 0.0), (-INF, 0.0), (NAN, NAN), (0.0, 1.0), (-0.0, 1.0), (40.0, 0.0),
              (-1e30, 0.0)],
    "ndtr": [(INF, 1.0), (-INF, 0.0), (NAN, NAN), (0.0, 0.5), (-0.0, 0.5), (40.0, 1.0),
             (-40.0, 0.0), (1e30, 1.0), (-1e30, 0.0)],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_edges(name, dtype):
    x = np.array([e[0] for e in EDGES[name]], dtype)
    want = np.array([e[1] for e in EDGES[name]], dtype)
    np.testing.assert_array_equal(run(name, x), want, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["exp", "exp_nonpos"])
def test_exp_overflow_and_gradual_underflow(name, dtype):
    fi = np.finfo(dtype)
    if name == "exp":
        big = np.log(np.float64(fi.max))  # ln of the largest finite value
        x = np.array([big * (1 - 1e-7), big * (1 + 1e-6)], dtype)
        y = run(name, x)
        assert np.isfinite(y[0]) and y[0] > fi.max / 2 and y[1] == np.inf
    # results in the subnormal range are rounded once (within 1 ulp of the subnormal
    # spacing) and reach 0 below half the smallest subnormal
    lo = np.log(np.float64(fi.smallest_subnormal))
    x = np.linspace(np.log(np.float64(fi.tiny)) - 0.01, lo, 2001).astype(dtype)
    y = run(name, x)
    assert (y > 0).all() and (y < fi.tiny).all()
    assert ulp_error(y, np.exp(x.astype(np.longdouble)), dtype).max() <= 1.0
    assert run(name, np.array([lo - 1.0], dtype))[0] == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_exp_nonpos_is_exp(dtype):
    # the cheaper form for x <= 0 returns exp's very bits (every float32 x <= 0 was
    # checked once; here a dense sample down past the underflow)
    x = -np.abs(points("exp_nonpos", dtype, n=200_000, seed=3))
    np.testing.assert_array_equal(run("exp_nonpos", x), run("exp", x))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_log_of_subnormals_and_extremes(dtype):
    fi = np.finfo(dtype)
    x = np.array([fi.smallest_subnormal, fi.smallest_subnormal * 3, fi.tiny / 2, fi.tiny,
                  fi.max], dtype)
    assert ulp_error(run("log", x), reference("log", x), dtype).max() <= 1.0


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_small_arguments_have_no_cancellation(dtype):
    # expm1, log1p, tanh ~ x and erf ~ 2x/sqrt(pi) for tiny x: relative error stays at
    # the ulp level all the way down (a naive exp(x) - 1 or 1 - 2/(e^2x + 1) loses all)
    x = (10.0 ** -np.linspace(1, 30, 300)).astype(dtype)
    x = np.concatenate([x, -x])
    for name in ("expm1", "log1p", "tanh", "erf", "expm1_nonpos"):
        xs = -x[x > 0] if name == "expm1_nonpos" else x
        err = ulp_error(run(name, xs), reference(name, xs), dtype)
        assert err.max() <= MAX_ULP, name


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_odd_functions_are_exactly_odd(dtype):
    x = points("tanh", dtype, n=20_000, seed=2)
    for name in ("tanh", "erf"):
        y, ym = run(name, x), run(name, -x)
        np.testing.assert_array_equal(ym, -y, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_monotone_across_branch_points(name, dtype):
    # Every float within +-20000 ulp of each branch point, in order: a mismatch between two
    # formulas at the switch would show as a step backwards.
    ibits = np.uint32 if dtype == np.float32 else np.uint64
    for b in BRANCH_POINTS[name]:
        if b == 0.0:
            continue
        c = int(np.array(b, dtype).view(ibits))
        x = np.arange(c - 20_000, c + 20_000).astype(ibits).view(dtype)
        x = np.sort(x[np.isfinite(x)])
        y = run(name, x)
        y = y[~np.isnan(y)]  # log of the negatives next to a tiny branch point
        assert (y[1:] >= y[:-1]).all(), (name, b)


# ---- types and vectorisation ----------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_python_scalars_and_integers(name):
    # the compiled functions take any float or integer (integers as float64), like math.*
    f = getattr(_math, name)
    ref = {"erf": math.erf, "exp_nonpos": math.exp, "expm1_nonpos": math.expm1,
           "gauss": lambda v: math.exp(-v * v / 2),
           "ndtr": lambda v: math.erfc(-v / math.sqrt(2)) / 2}.get(name) or getattr(math, name)
    v = -0.75 if name in NONPOS else 0.75
    assert f(v) == pytest.approx(ref(v), rel=1e-15)
    assert f(np.float32(v)) == pytest.approx(ref(v), rel=2e-7)


def test_integer_argument_goes_through_float64():
    @numba.njit(cache=False)
    def k(n):
        return _math.exp(n), _math.log(n)
    assert k(3) == (pytest.approx(math.exp(3), rel=1e-15), pytest.approx(math.log(3), rel=1e-15))


_DEFINE = re.compile(r"^define [^@]*@\"?([\w.$]+)\"?\(.*?^}$", re.M | re.S)
_CALL = re.compile(r"call [^@]*@\"?([\w.$]+)")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_loop_vectorises_without_calls(name, dtype):
    kernel = KERNELS[name]
    run(name, np.ones(64, dtype))
    sig = next(s for s in kernel.signatures if s[0].dtype == numba.from_dtype(np.dtype(dtype)))
    llvm, asm = kernel.inspect_llvm(sig), kernel.inspect_asm(sig)
    bodies = [m.group(0) for m in _DEFINE.finditer(llvm)  # the kernel, not its wrappers
              if "kernel" in m.group(1) and not re.search("cpython|cfunc", m.group(1))]
    assert len(bodies) == 1, [m.group(1) for m in _DEFINE.finditer(llvm)]
    body = bodies[0]
    # only LLVM intrinsics and the runtime's refcounting: no libm, no call to the implementation
    calls = {c for c in _CALL.findall(body)
             if not c.startswith(("llvm.", "NRT_")) or re.match(r"llvm\.(exp|log|pow|tanh|erf)", c)}
    assert not calls, calls
    suffix = "ps" if dtype == np.float32 else "pd"
    assert re.search(rf"vfmadd\w*{suffix}\s+%[yz]mm", asm), "no packed FMA: loop not vectorised"
    if dtype == np.float32:
        # float32 arithmetic throughout: no double constant, no conversion to double
        assert "double" not in body and "fpext" not in body


def test_parallel_loop():
    @numba.njit(parallel=True, cache=False, error_model="numpy", fastmath=FASTMATH)
    def k(x, out):
        for i in numba.prange(x.size):
            out[0, i] = _math.tanh(x[i])
            out[1, i] = _math.exp(x[i])
    x = np.linspace(-5, 5, 100_001).astype(np.float32)
    out = np.empty((2, x.size), np.float32)
    k(x, out)
    assert ulp_error(out[0], reference("tanh", x), np.float32).max() <= MAX_ULP
    assert ulp_error(out[1], reference("exp", x), np.float32).max() <= MAX_ULP


# ---- property -------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(v=st.floats(allow_nan=True, allow_infinity=True), name=st.sampled_from(NAMES),
       single=st.booleans())
def test_any_float_within_bound(v, name, single):
    dtype = np.float32 if single else np.float64
    with np.errstate(over="ignore"):
        x = np.array([-abs(v) if name in NONPOS else v], dtype)
    got = run(name, x)
    ref = reference(name, x)
    assert ulp_error(got, ref, dtype)[0] <= bound(name, dtype), (name, x[0], got[0], ref[0])


def test_a_change_to_any_shared_helper_clears_the_kernel_cache(tmp_path):
    # Numba checks only a kernel's own file for staleness: a kernel inlining _blas.py's
    # GEMM call stayed on the old code after _blas.py changed (it was not stamped)
    from fastdl._kernels.numba._jit import _drop_stale_cache

    cache = tmp_path / "__pycache__"
    for name in ("_math.py", "_blas.py", "dense.py"):
        (tmp_path / name).write_text(f"# {name}\n")

    def cached():
        (cache / "dense.f-1.py311.nbi").write_bytes(b"index")
        (cache / "dense.f-1.py311.1.nbc").write_bytes(b"code")

    def kept():
        return sorted(p.name for p in cache.iterdir() if p.suffix in (".nbi", ".nbc"))

    _drop_stale_cache(str(tmp_path), str(cache))  # the first stamp
    cached()
    _drop_stale_cache(str(tmp_path), str(cache))
    assert len(kept()) == 2  # nothing changed: kept
    (tmp_path / "dense.py").write_text("# a kernel's own file: Numba's own check\n")
    _drop_stale_cache(str(tmp_path), str(cache))
    assert len(kept()) == 2
    for change in (lambda: (tmp_path / "_blas.py").write_text("# changed\n"),
                   lambda: (tmp_path / "_new_helper.py").write_text("\n"),
                   lambda: (tmp_path / "_math.py").rename(tmp_path / "_math2.py")):
        change()
        _drop_stale_cache(str(tmp_path), str(cache))
        assert kept() == []
        cached()
    (tmp_path / "__pycache__" / "other.pyc").write_bytes(b"")
    (tmp_path / "_blas.py").write_text("# again\n")
    _drop_stale_cache(str(tmp_path), str(cache))
    assert kept() == [] and (cache / "other.pyc").exists()  # only Numba's files go


def test_the_stamp_lives_where_numba_caches(tmp_path):
    import subprocess
    import sys

    code = ("from fastdl._kernels.numba import _jit; import os; "
            "print(_jit._cache_dir(_jit._HERE))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out.startswith(str(tmp_path))
    assert os.path.exists(os.path.join(out, "fastdl-numba-maths.stamp"))
