"""The Cython build is the one setup.py describes.

A module whose ``# distutils:`` lines define FASTDL_LIBMVEC must be compiled with it
and linked to libm, so that gcc calls glibc's vector functions (``_ZGV...``) in its
float64 exp/log loops.  setup.py once kept only the sources of cythonize's extensions
and dropped those lines: every such loop ran scalar libm, and the float64 losses were
several times slower, while every result stayed right.  Only the built file shows it.
"""
import importlib
import pathlib
import platform
import re
import sys

import pytest

import fastdl

CYTHON_DIR = pathlib.Path(fastdl.__file__).parent / "_kernels" / "cython"
DISTUTILS = re.compile(r"^# distutils: define_macros = (.*)$", re.M)


def libmvec_modules():
    out = []
    for pyx in sorted(CYTHON_DIR.glob("*.pyx")):
        m = DISTUTILS.search(pyx.read_text())
        if m and "FASTDL_LIBMVEC=1" in m.group(1).split():
            out.append(pyx.stem)
    return out


def glibc_with_libmvec():
    lib, version = platform.libc_ver()
    if lib != "glibc" or not version:
        return False
    return tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)


def test_some_modules_ask_for_libmvec():
    assert {"activations", "losses", "softmax"} <= set(libmvec_modules())


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"
                         and glibc_with_libmvec()),
                    reason="glibc's libmvec on x86-64 only")
@pytest.mark.parametrize("stem", libmvec_modules())
def test_libmvec_modules_call_vector_libm(stem):
    module = importlib.import_module(f"fastdl._kernels.cython.{stem}")
    assert b"_ZGV" in pathlib.Path(module.__file__).read_bytes(), (
        f"{stem} was built without FASTDL_LIBMVEC: its libm loops are scalar")
