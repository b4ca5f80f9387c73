"""No float64 arithmetic in the float32 code of the Cython kernels.

Cython writes a bare literal as a double (``1 / (1 + e)`` becomes
``1.0 / (1.0 + e)``), and C then computes the whole float32 expression in double:
in the sigmoid family that was a double division on four lanes instead of a float
one on eight, plus the conversions: sigmoid forward + backward took 1.2-1.6x the time
at 10M on 2 threads and 1.8-2.0x in cache (fixed by writing ``<floating>1``).  The results stay within the tests' tolerances either way,
so only the generated C shows it: this test reads the float specialisation of every
fused function (``__pyx_fuse_0...``) in the C files that the build leaves beside the
.pyx sources, and fails on a bare double literal taking part in +, -, * or /.
Comparisons with 0.0 and assignments of constants are exact and stay allowed, and so
do explicit ``<double>`` casts (the float64 sums of squares are deliberate).
"""
import pathlib
import re

import pytest

import fastdl

CYTHON_DIR = pathlib.Path(fastdl.__file__).parent / "_kernels" / "cython"
C_FILES = sorted(p for p in CYTHON_DIR.glob("*.c") if p.with_suffix(".pyx").exists())

# a float specialisation: "static ... __pyx_fuse_0<name>(<args>) {" up to its closing brace
FLOAT_FUNCTION = re.compile(r"\n(static[^\n;{]*?(__pyx_fuse_0__pyx_f_\w+)\([^;{]*\)) \{\n(.*?)\n\}\n",
                            re.S)
LITERAL = r"(?<![\w.])-?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])"
FLOAT_CAST = re.compile(rf"\(float\)\s*{LITERAL}")  # <floating>0.5: a float constant
# a binary + - * / with a literal operand (a unary minus, as in "= -1.0", is exact)
DOUBLE_ARITHMETIC = re.compile(rf"[\w)\]]\s*[-+*/]\s*\(*\s*{LITERAL}|{LITERAL}\s*\)*\s*[-+*/]")


def _code_lines(body):
    # drop Cython's comment blocks (they quote the .pyx source, whose "1 - s" is not C)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return [FLOAT_CAST.sub("F", line.strip()) for line in body.splitlines() if line.strip()]


def double_arithmetic(c_source):
    """(function, line) for each float-specialisation line with double arithmetic."""
    found = []
    for m in FLOAT_FUNCTION.finditer(c_source):
        for line in _code_lines(m.group(3)):
            if DOUBLE_ARITHMETIC.search(line):
                found.append((m.group(2), line))
    return found


def test_the_checker_sees_a_promoted_expression():
    src = ("\nstatic CYTHON_INLINE float __pyx_fuse_0__pyx_f_k(float __pyx_v_e) {\n"
           "  float __pyx_v_r;\n"
           "  /* cdef floating r = 1 / (1 + e) */\n"
           "  __pyx_v_r = (1.0 / (1.0 + __pyx_v_e));\n"
           "  __pyx_v_r = (__pyx_v_r * 4.0);\n"
           "  return __pyx_v_r;\n}\n")
    assert [line for _, line in double_arithmetic(src)] == [
        "__pyx_v_r = (1.0 / (1.0 + __pyx_v_e));", "__pyx_v_r = (__pyx_v_r * 4.0);"]
    ok = src.replace("1.0", "((float)1)").replace("4.0", "((float)4)")
    assert double_arithmetic(ok) == []
    # comparisons and constant assignments are exact in float
    exact = ("\nstatic CYTHON_INLINE float __pyx_fuse_0__pyx_f_k(float __pyx_v_x) {\n"
             "  __pyx_t_2 = (__pyx_v_x >= 0.0);\n  __pyx_t_1 = 0.0;\n  __pyx_t_3 = -1.0;\n"
             "  return __pyx_t_1;\n}\n")
    assert double_arithmetic(exact) == []


@pytest.mark.skipif(not C_FILES, reason="the generated C files are not installed beside the "
                                        "sources (a wheel install); built in place they are")
@pytest.mark.parametrize("path", C_FILES, ids=lambda p: p.stem)
def test_float32_code_has_no_double_arithmetic(path):
    found = double_arithmetic(path.read_text())
    assert not found, "float64 arithmetic in float32 code (write <floating>1, not 1):\n" + \
        "\n".join(f"  {fn}: {line}" for fn, line in found[:20])
