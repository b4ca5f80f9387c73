"""fastdl.load of a model file written on a machine of the other byte order: the
parameters and the optimizer's state are byte-swapped into native arrays."""
import sys

import numpy as np
import pytest

import fastdl
from fastdl import nn
from conftest import DTYPES, rng

OTHER = ">" if sys.byteorder == "little" else "<"


def _entries(path):  # as in test_persistence.py
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_load_a_file_of_the_other_byte_order(tmp_path, dtype):
    m = nn.Sequential(nn.Dense(4, 5, "relu"), nn.Dense(5, 2), seed=0, dtype=dtype)
    m.fit(rng(0).random((20, 4)).astype(dtype), np.arange(20) % 2, epochs=1, verbose=0)
    m.save(tmp_path / "native.npz")
    files = _entries(tmp_path / "native.npz")
    swapped = [k for k in files if k == "params" or k.startswith("optimizer/")]
    assert sorted(swapped) == ["optimizer/m", "optimizer/v", "params"]
    for k in swapped:
        assert files[k].dtype == dtype
        files[k] = files[k].astype(files[k].dtype.newbyteorder(OTHER))  # same values
        assert not files[k].dtype.isnative
    np.savez(tmp_path / "other.npz", **files)

    b = fastdl.load(tmp_path / "other.npz")
    assert b.parameters().data.dtype == dtype and b.parameters().data.dtype.isnative
    np.testing.assert_array_equal(b.parameters().data, m.parameters().data)
    s1, s2 = m.optimizer.state_dict(), b.optimizer.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        if isinstance(s1[k], np.ndarray):
            assert s2[k].dtype == dtype and s2[k].dtype.isnative, k
            np.testing.assert_array_equal(s2[k], s1[k], err_msg=k)
        else:
            assert s2[k] == s1[k], k
