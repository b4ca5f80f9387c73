"""``out=`` that overlaps an input: the result is the same as with a separate buffer.

Compiled kernels write their result while they still read their inputs, so an input
that overlaps ``out`` (the same array, or a shifted view of the same memory) used to
be read after parts of it had been overwritten: the Cython dense kernels (BLAS with an
output aliasing an operand), the row kernels of the softmax family, and the shifted
cases of the elementwise maps gave silently wrong results.  The public functions now
copy such an input first (elementwise kernels keep an exact alias: they read each
element before writing it).  The losses refuse any overlap instead (tests/test_losses.py).
"""
import numpy as np
import pytest

import fastdl.functional as F
from fastdl import augment, metrics
from fastdl._config import PARALLEL_THRESHOLD

BACKENDS = ("numpy", "numba", "cython")
N = PARALLEL_THRESHOLD + 4465  # the parallel paths of the elementwise kernels


def _f32(r, *shape):
    return r.standard_normal(shape).astype(np.float32)


# name -> (inputs from a generator, keyword arguments, indices of the inputs out may overlap)
CASES = {
    "relu_backward": (lambda r: [_f32(r, N), _f32(r, N)], {}, (0, 1)),
    "gelu": (lambda r: [_f32(r, N)], {}, (0,)),
    "softmax": (lambda r: [_f32(r, 301, 257)], {}, (0,)),
    "log_softmax": (lambda r: [_f32(r, 301, 257)], {}, (0,)),
    "softmax_backward": (lambda r: [_f32(r, 301, 257), np.abs(_f32(r, 301, 257))], {}, (0, 1)),
    "log_softmax_backward": (lambda r: [_f32(r, 301, 257), -np.abs(_f32(r, 301, 257))], {},
                             (0, 1)),
    "dense_forward": (lambda r: [_f32(r, 96, 96), _f32(r, 96, 96), _f32(r, 96 * 96)[:96]],
                      {"activation": "relu"}, (0, 1)),
    "dropout_backward": (lambda r: [_f32(r, N), r.random(N) < 0.5, 0.5], {}, (0,)),
}


def _overlapping(a, mode):
    """(the input, out): out is the input itself, or a view of the same memory shifted
    by 8 elements, and the input then a view of the same buffer with the same values"""
    if mode == "exact":
        return a, a
    big = np.empty(a.size + 8, a.dtype)
    big[:a.size] = a.ravel()
    return big[:a.size].reshape(a.shape), big[8:].reshape(a.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["exact", "shifted"])
@pytest.mark.parametrize("name, index", [(n, i) for n, c in CASES.items() for i in c[2]])
def test_out_overlapping_an_input_gives_the_separate_result(name, index, mode, backend):
    build, kw, _ = CASES[name]
    args = build(np.random.default_rng(index))
    fn = getattr(F, name)
    want = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args], backend=backend,
              **kw)
    args[index], out = _overlapping(args[index], mode)
    got = fn(*args, out=out, backend=backend, **kw)
    assert got is out
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["exact", "shifted"])
@pytest.mark.parametrize("slot", [0, 1], ids=["dx", "dW"])
@pytest.mark.parametrize("index", [0, 1, 2], ids=["dy", "x", "W"])
def test_dense_backward_results_overlapping_the_inputs(index, slot, mode, backend):
    r = np.random.default_rng(3)
    args = [_f32(r, 80, 80), _f32(r, 80, 80), _f32(r, 80, 80)]  # one shape: any pair aliases
    want = F.dense_backward(*[a.copy() for a in args], backend=backend)
    args[index], view = _overlapping(args[index], mode)
    out = [np.empty((80, 80), np.float32), np.empty((80, 80), np.float32),
           np.empty(80, np.float32)]
    out[slot] = view
    got = F.dense_backward(*args, out=tuple(out), backend=backend)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_backward_results_sharing_memory_are_refused(backend):
    r = np.random.default_rng(4)
    dy, x, W = _f32(r, 8, 8), _f32(r, 8, 8), _f32(r, 8, 8)
    buf = np.empty(8 * 8, np.float32)
    with pytest.raises(ValueError, match=r"out\[0\] and out\[1\]"):
        F.dense_backward(dy, x, W, out=(buf.reshape(8, 8), buf.reshape(8, 8), None),
                         backend=backend)
    with pytest.raises(ValueError, match=r"out\[1\] and out\[2\]"):
        F.dense_backward(dy, x, W, out=(None, buf.reshape(8, 8), buf[:8]), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxout_backward_out_overlapping_dy(backend):
    r = np.random.default_rng(5)
    n, m, pieces = 300, 257, 2
    dy, am = _f32(r, n, m), r.integers(0, pieces, (n, m))
    want = F.maxout_backward(dy.copy(), am, pieces, backend=backend)
    big = np.zeros(n * m * pieces, np.float32)
    big[:n * m] = dy.ravel()
    got = F.maxout_backward(big[:n * m].reshape(n, m), am, pieces,
                            out=big.reshape(n, m * pieces), backend=backend)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["exact", "shifted"])
def test_gaussian_noise_out_overlapping_the_images(mode, backend):
    images = np.random.default_rng(6).random((300, 28, 28)).astype(np.float32)
    want = augment.gaussian_noise(images.copy(), 0.1, np.random.default_rng(7), backend=backend)
    x, out = _overlapping(images, mode)
    got = augment.gaussian_noise(x, 0.1, np.random.default_rng(7), out=out, backend=backend)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_confusion_matrix_out_overlapping_the_labels(backend):
    buf = np.zeros(16, np.int64)
    y_true = buf[:16]
    y_true[:] = np.arange(16) % 4
    y_pred = (np.arange(16) * 3) % 4
    want = metrics.confusion_matrix(y_true.copy(), y_pred, 4, backend=backend)
    got = metrics.confusion_matrix(y_true, y_pred, 4, out=buf.reshape(4, 4), backend=backend)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_mask_on_the_bytes_of_out_is_copied(backend):
    # the same start as out but 1-byte items: not an exact alias, as the kernel writes
    # out[i] (bytes 4i..4i+3) over mask bytes it has not read yet
    buf = np.zeros(N, np.float32)
    mask = buf.view(np.bool_)[:N]
    mask[:] = np.random.default_rng(8).random(N) < 0.5
    dy = np.random.default_rng(9).standard_normal(N).astype(np.float32)
    want = F.dropout_backward(dy, mask.copy(), 0.5, backend=backend)
    got = F.dropout_backward(dy, mask, 0.5, out=buf, backend=backend)
    np.testing.assert_array_equal(got, want)
