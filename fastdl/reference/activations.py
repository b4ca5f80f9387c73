"""Activations, NumPy reference (placeholder: the activations work fills this in)."""
import numpy as np


def relu(x, out):
    np.maximum(x, 0, out=out)
