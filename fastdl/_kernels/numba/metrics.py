"""Confusion matrix, Numba backend: one serial pass over the labels.

y_true, y_pred are (N,) int64 in [0, C) (checked by fastdl.metrics); out is (C, C) int64.

Serial on purpose: the pass is a histogram (scattered increments into a C x C
table that stays in L1); threads would need private tables and a merge to avoid
racing on one cell, for at most 2x on this machine's two cores on a pass that
already runs at memory speed.
"""
from fastdl._kernels.numba._jit import jit


@jit
def _confusion(y_true, y_pred, out):
    c = out.shape[0]
    for i in range(c):
        for j in range(c):
            out[i, j] = 0
    for k in range(y_true.shape[0]):
        out[y_true[k], y_pred[k]] += 1


def confusion_matrix(y_true, y_pred, out):
    _confusion(y_true, y_pred, out)
