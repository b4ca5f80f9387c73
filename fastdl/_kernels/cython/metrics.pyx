# cython: language_level=3
"""Confusion matrix, Cython backend: one serial pass over the labels.

y_true, y_pred are (N,) int64 in [0, C) (checked by fastdl.metrics); out is (C, C) int64.
Serial on purpose: see fastdl/_kernels/numba/metrics.py (a histogram into an L1-sized
table; threads would need private tables for at most 2x here).
"""
from libc.stdint cimport int64_t


def confusion_matrix(const int64_t[::1] y_true,   # IN  (N,)
                     const int64_t[::1] y_pred,   # IN  (N,)
                     int64_t[:, ::1] out):        # OUT (C, C)
    """out[i, j] = #{n : y_true[n] == i and y_pred[n] == j}   (overwrites out)."""
    cdef Py_ssize_t i, j, n = y_true.shape[0], c = out.shape[0]
    with nogil:
        for i in range(c):
            for j in range(c):
                out[i, j] = 0
        for i in range(n):
            out[y_true[i], y_pred[i]] += 1
