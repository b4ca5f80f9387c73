"""fastdl.datasets.load_digits: scikit-learn's 8x8 digits as float32 in [0, 1]."""
import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from fastdl import datasets


def test_load_digits_rows():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.unique(y), np.arange(10))
    assert np.bincount(y).min() >= 170  # about 180 of each digit
    sk = sk_load_digits()
    np.testing.assert_array_equal(X, (sk.data / 16).astype(np.float32))
    np.testing.assert_array_equal(y, sk.target)
    np.testing.assert_array_equal(X * 16, np.round(X * 16))  # k / 16 exactly


def test_load_digits_images():
    X, y = datasets.load_digits()
    images, y2 = datasets.load_digits(images=True)
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert images.flags.c_contiguous
    np.testing.assert_array_equal(images.reshape(1797, 64), X)
    np.testing.assert_array_equal(images, sk_load_digits().images / 16)
    np.testing.assert_array_equal(y, y2)


def test_load_digits_returns_fresh_copies():
    X, y = datasets.load_digits()
    X[:] = -1
    y[:] = -1
    X2, y2 = datasets.load_digits()
    assert X2.min() == 0.0 and y2.min() == 0
    assert X2.flags.writeable and y2.flags.writeable


def test_load_digits_bad_argument():
    with pytest.raises(TypeError, match="images"):
        datasets.load_digits(images="yes")
