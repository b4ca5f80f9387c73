"""Build the Cython kernels (fastdl/_kernels/cython/*.pyx) with OpenMP.

Flags: -O3 -fopenmp, and -fno-math-errno so that gcc may vectorise expf/exp
through glibc's libmvec (with errno handling on, every call must stay scalar).
No -march=native by default, so a built wheel runs on any x86-64; set
FASTDL_NATIVE=1 to build for the instruction set of the machine that builds.

Build time: Cython translates the modules in parallel processes and the C compiler
builds them in parallel threads (setuptools' ``build_ext --parallel``), one job per
CPU (FASTDL_BUILD_JOBS=N to choose).  An in-place build (``pip install -e .``,
``python setup.py build_ext --inplace``) keeps its compiled modules under build/, so
setuptools' own up-to-date check skips every module whose built file is newer than its
sources: a second ``pip install -e .`` compiles only what changed.
"""
import glob
import os
import sys
import sysconfig

import numpy as np
from Cython.Build import Dependencies, cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

compile_args = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
native = os.environ.get("FASTDL_NATIVE", "") not in ("", "0")
# pool.pyx keeps the generic flags: on Zen 4, -march=native's 512-bit vectors made max_pool2d 2x2 3.3x slower (LeNet's
# 64x16x24x24: 1.42 ms against 0.43 ms generic, one thread; its output rows of 12
# never fill a vector, and the rest runs scalar); the other pooling kernels ran the same.
NATIVE_SKIP = {"pool"}
link_args = ["-fopenmp"]
ROOT = os.path.dirname(os.path.abspath(__file__))
SETUP = os.path.join(ROOT, "setup.py")
CYTHON_DIR = os.path.join("fastdl", "_kernels", "cython")
# Cython's memoryview code, compiled once into this module and imported by the others
# (Cython's shared utility module): each module carried its own copy, and compiling
# those copies was more than half of the build's CPU time (12 modules, one job: 117 s
# of CPU, 53 s with the shared module); a kernel call costs about 5 ns more (relu on
# 16 floats, 115 vs 120 ns), below the noise of a public function call (3 us)
SHARED = "fastdl._kernels.cython._cyutility"
CYTHON_DIRECTIVES = {
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "nonecheck": False,
}


def _flags(name):
    return compile_args + (["-march=native"] if native and name not in NATIVE_SKIP else [])


def _jobs():
    jobs = int(os.environ.get("FASTDL_BUILD_JOBS", "0") or 0)
    if jobs > 0:
        return jobs
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use
    except AttributeError:
        return os.cpu_count() or 1


class _ProjectTimes(Dependencies.DependencyTree):
    """Cython's dependency tree, comparing the times of the project's own files only,
    setup.py (the directives) included.

    pip installs the build requirements afresh for every build (build isolation), so
    the .pxd files that the kernels cimport from Cython (libc, openmp) and SciPy
    (cython_blas) are always newer than the .c files, and cythonize translated every
    module again on every ``pip install`` (pypa/pip#6411, cython/cython#5306).  Their
    content changes with Cython's version, which cythonize checks by itself (a .c from
    another version is translated again), and SciPy keeps cython_blas a stable API."""

    def timestamp(self, filename):
        path = os.path.abspath(filename)
        return os.path.getmtime(path) if path.startswith(ROOT + os.sep) else 0.0

    def newest_dependency(self, filename):
        return max(super().newest_dependency(filename), (self.timestamp(SETUP), SETUP))


class BuildExt(build_ext):
    """setuptools' build_ext with the Cython step first and parallel jobs.

    pip builds an editable install in folders it deletes afterwards, so setuptools'
    check (skip an extension whose built file is newer than its sources and
    ``depends``) never finds a built file there and every ``pip install -e .`` compiled
    every module again.  An in-place build therefore builds in build/ (a folder per
    Python, platform and flag set, so that switching FASTDL_NATIVE rebuilds) and
    copies into the source tree as usual."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = _jobs()
        if self.inplace:  # also set by setuptools for an editable install
            tag = f"{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
            tag += "-native" if native else ""
            self.build_lib = os.path.join("build", "lib." + tag)
            self.build_temp = os.path.join("build", "temp." + tag)

    def run(self):
        tree = Dependencies.create_dependency_tree()  # the one cythonize will use
        if type(tree) is Dependencies.DependencyTree:
            Dependencies._dep_tree = _ProjectTimes(tree.context)
        # .pyx -> .c in parallel processes; cythonize skips a .c newer than its .pyx
        # and everything the .pyx cimports or includes
        translated = cythonize(self.extensions, language_level=3,
                               nthreads=self.parallel if self.parallel > 1 else 0,
                               compiler_directives=CYTHON_DIRECTIVES, force=self.force,
                               shared_utility_qualified_name=SHARED)
        by_name = {e.name: e for e in translated}
        # keep setuptools' objects (it set attributes on them), but take every setting
        # cythonize merged from the modules' "# distutils:" lines: copying only the
        # sources once dropped FASTDL_LIBMVEC and libm, and the exp/log loops ran scalar
        for ext in self.extensions:
            new = by_name[ext.name]
            for key in Dependencies.distutils_settings:
                if key != "name" and hasattr(new, key):
                    setattr(ext, key, getattr(new, key))
        # the largest first, so that the last job to finish is a short one
        self.extensions.sort(key=lambda e: -os.path.getsize(e.sources[0]))
        super().run()


# FASTDL_ONLY=name1,name2 builds only those modules (for in-place rebuilds while
# developing one kernel family: ``FASTDL_ONLY=losses python setup.py build_ext --inplace``).
only = {n for n in os.environ.get("FASTDL_ONLY", "").split(",") if n}


def _extension(name, source, flags):
    return Extension(
        name,
        [source],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=flags,
        extra_link_args=link_args,
        depends=["setup.py"],  # the flags live here: a changed setup.py rebuilds every module
    )


extensions = [_extension(SHARED, os.path.join(CYTHON_DIR, SHARED.rsplit(".", 1)[1] + ".c"),
                         compile_args)]
for path in sorted(glob.glob(os.path.join(CYTHON_DIR, "*.pyx"))):
    stem = os.path.splitext(os.path.basename(path))[0]
    if not only or stem in only:
        extensions.append(_extension("fastdl._kernels.cython." + stem, path, _flags(stem)))

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
