# cython: language_level=3
"""OpenMP thread count for the Cython kernels."""
cimport openmp


def set_num_threads(int n):
    openmp.omp_set_num_threads(n)


def get_num_threads():
    return openmp.omp_get_max_threads()
