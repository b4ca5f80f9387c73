"""Build the Cython kernels (fastdl/_kernels/cython/*.pyx) with OpenMP.

Flags: -O3 -fopenmp, and -fno-math-errno so that gcc may vectorise expf/exp
through glibc's libmvec (with errno handling on, every call must stay scalar).
No -march=native by default, so a built wheel runs on any x86-64; set
FASTDL_NATIVE=1 to build for the instruction set of the machine that builds.
"""
import glob
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
native = os.environ.get("FASTDL_NATIVE", "") not in ("", "0")
# losses.pyx picks its instruction set at load time (gcc target_clones on its row
# functions); measured here, adding -march=native to it made the softmax
# cross-entropy row pass 5x slower, so it keeps the generic flags.
NATIVE_SKIP = {"losses"}
link_args = ["-fopenmp"]


def _flags(name):
    return compile_args + (["-march=native"] if native and name not in NATIVE_SKIP else [])


# FASTDL_ONLY=name1,name2 builds only those modules (for in-place rebuilds while
# developing one kernel family: ``FASTDL_ONLY=losses python setup.py build_ext --inplace``).
only = {n for n in os.environ.get("FASTDL_ONLY", "").split(",") if n}

extensions = [
    Extension(
        "fastdl._kernels.cython." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=_flags(os.path.splitext(os.path.basename(path))[0]),
        extra_link_args=link_args,
    )
    for path in sorted(glob.glob(os.path.join("fastdl", "_kernels", "cython", "*.pyx")))
    if not only or os.path.splitext(os.path.basename(path))[0] in only
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        nthreads=int(os.environ.get("FASTDL_BUILD_JOBS", "0")) or None,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "nonecheck": False,
        },
    ),
)
