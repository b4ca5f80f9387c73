"""Confusion matrix, NumPy reference.

y_true and y_pred are (N,) int64 labels in [0, C); out is (C, C) int64 with
out[i, j] = the number of samples of actual class i predicted as class j.
"""
import numpy as np


def confusion_matrix(y_true, y_pred, out):
    """out[i, j] = #{n : y_true[n] == i and y_pred[n] == j}   (overwrites out)."""
    c = out.shape[0]
    # each (actual, predicted) pair is one cell of the flattened (C, C) table
    counts = np.bincount(y_true * c + y_pred, minlength=c * c)
    out[...] = counts.reshape(c, c)
