"""Kernel-level hardening (issue 17: items 6 and 8, and what a fuzz pass of the public
kernels found): sizes beyond BLAS's 32-bit ints, hyper-parameters that are not finite,
too large for a float or of the wrong type, integer arrays in another byte order, bool
masks holding bytes other than 0 and 1, results too large for memory.  Each case is
either the reference's result in every backend or a ValueError/TypeError naming the
argument."""
import numpy as np
import pytest

import fastdl.functional as F
from fastdl import augment, metrics
from fastdl._kernels.cython import dense as cython_dense
from fastdl._kernels.numba import dense as numba_dense
from conftest import BACKENDS, assert_close, rng

HUGE = 2 ** 1024  # an int that float() refuses


# ---- item 6: 64-bit sizes in the Cython dense kernels -------------------------------

@pytest.fixture
def small_blas_int():
    """BLAS's largest int lowered to 7 in both compiled backends, so that N = 23 rows
    take the blocked path that N >= 2**31 takes (8 GB and more: not testable as such)."""
    old = cython_dense.set_blas_int_max(7), numba_dense.set_blas_int_max(7)
    yield 7
    cython_dense.set_blas_int_max(old[0])
    numba_dense.set_blas_int_max(old[1])


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("act", [None, "relu", "softmax"])
def test_compiled_dense_over_blocks_of_rows(small_blas_int, dtype, act, backend):
    r = rng(0)
    x, W, b = (r.standard_normal((23, 5)).astype(dtype), r.standard_normal((5, 6)).astype(dtype),
               r.standard_normal(6).astype(dtype))
    dy = r.standard_normal((23, 6)).astype(dtype)
    assert_close(F.dense_forward(x, W, b, act, backend=backend),
                 F.dense_forward(x, W, b, act, backend="numpy"), dtype, scale=10)
    # dW sums over the row blocks (beta = 1 after the first): 4 blocks here
    for got, ref in zip(F.dense_backward(dy, x, W, backend=backend),
                        F.dense_backward(dy, x, W, backend="numpy")):
        assert_close(got, ref, dtype, scale=10)


def test_cython_dense_refuses_what_blas_int_cannot_take(small_blas_int):
    x, W = np.ones((3, 8)), np.ones((8, 2))
    with pytest.raises(ValueError, match="x: K = 8 columns"):
        F.dense_forward(x, W, backend="cython")
    with pytest.raises(ValueError, match="W: M = 8 columns"):
        F.dense_forward(np.ones((3, 2)), np.ones((2, 8)), backend="cython")
    with pytest.raises(ValueError, match="x: K = 8 columns"):
        F.dense_backward(np.ones((3, 2)), x, W, backend="cython")
    # the backends without the limit (Numba's hands such products to NumPy's BLAS)
    for backend in ("numpy", "numba"):
        np.testing.assert_array_equal(F.dense_forward(x, W, backend=backend), x @ W)
        dy = np.ones((3, 2))
        for got, ref in zip(F.dense_backward(dy, x, W, backend=backend), (dy @ W.T, x.T @ dy)):
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("module", [cython_dense, numba_dense], ids=["cython", "numba"])
def test_set_blas_int_max_checks_its_value(module):
    with pytest.raises(ValueError, match="value"):
        module.set_blas_int_max(0)
    with pytest.raises(ValueError, match="value"):
        module.set_blas_int_max(2 ** 31)


# ---- item 8 ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "elu"])
@pytest.mark.parametrize("alpha", [np.inf, -np.inf, np.nan, HUGE])
def test_dense_forward_refuses_non_finite_alpha(backend, activation, alpha):
    # as the activation kernels do (inf was accepted for elu and leaky_relu)
    x, W = np.ones((2, 3)), np.ones((3, 4))
    with pytest.raises(ValueError, match="^alpha: "):
        F.dense_forward(x, W, activation=activation, alpha=alpha, backend=backend)


@pytest.mark.parametrize("need_dx", ["no", "", 1, 0, None, 1.0, np.array(True)])
def test_dense_backward_need_dx_must_be_a_bool(backend, need_dx):
    dy, x, W = np.ones((2, 4)), np.ones((2, 3)), np.ones((3, 4))
    with pytest.raises(TypeError, match="^need_dx: expected a bool"):
        F.dense_backward(dy, x, W, need_dx, backend=backend)
    assert F.dense_backward(dy, x, W, np.False_, backend=backend)[0] is None


@pytest.mark.parametrize("step", [2 ** 31, 2 ** 63, 2 ** 64, 2 ** 100, 2 ** 1023],
                         ids=["2**31", "2**63", "2**64", "2**100", "2**1023"])
def test_adam_any_int_step_in_every_backend(step, dtype):
    # Cython raised OverflowError from 2**63 (a long long); the bias corrections are 1
    # there in every backend
    r = rng(1)
    w0, g = r.standard_normal(50).astype(dtype), r.standard_normal(50).astype(dtype)
    results = []
    for backend in BACKENDS:
        w, m, v = w0.copy(), np.zeros(50, dtype), np.zeros(50, dtype)
        F.adam_update_(w, g, m, v, step, backend=backend)
        results.append(w)
    for w in results[1:]:
        assert_close(w, results[0], dtype)
    w, m, v = w0.copy(), np.zeros(50, dtype), np.zeros(50, dtype)
    F.adam_update_(w, g, m, v, 10 ** 6, backend="numpy")
    assert_close(results[0], w, dtype)  # beta ** step is already 0 at 10**6


@pytest.mark.parametrize("step, exc", [(HUGE, ValueError), (HUGE - 1, ValueError),
                                       (0, ValueError), (-1, ValueError),
                                       (True, TypeError), (2.0, TypeError)],
                         ids=["2**1024", "2**1024-1", "0", "-1", "True", "2.0"])
def test_adam_step_refused(backend, step, exc):
    w = np.ones(3)
    with pytest.raises(exc, match="^step: "):
        F.adam_update_(w, np.ones(3), np.zeros(3), np.zeros(3), step, backend=backend)
    assert (w == 1).all()


@pytest.mark.parametrize("order", [">i4", ">i8", ">u2", "<i2", "u1", ">i2"])
def test_maxout_backward_takes_argmax_in_any_byte_order(backend, order):
    r = rng(2)
    dy = r.standard_normal((7, 5))
    argmax = r.integers(0, 3, (7, 5))
    expected = F.maxout_backward(dy, argmax, 3, backend="numpy")
    got = F.maxout_backward(dy, argmax.astype(order), 3, backend=backend)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="argmax: expected values in"):
        F.maxout_backward(dy, np.full((7, 5), 3, order), 3, backend=backend)


def test_dropout_backward_bool_mask_with_other_bytes(backend):
    # np.frombuffer(..., bool) can hold any byte: every nonzero one keeps its unit (the
    # reference multiplied by the byte: 255 gave 255 / (1 - p))
    raw = np.array([0, 1, 2, 255, 3, 0, 128], np.uint8)
    mask = raw.view(bool)
    dy = np.arange(1.0, 8.0)
    expected = dy * (raw != 0) / 0.5
    np.testing.assert_array_equal(F.dropout_backward(dy, mask, 0.5, backend=backend), expected)
    np.testing.assert_array_equal(F.dropout_backward(dy, raw, 0.5, backend=backend), expected)


# ---- hyper-parameters: the float range and the types --------------------------------

X = np.ones((3, 4), np.float32)
P = np.full((3, 4), 0.5, np.float32)
IMAGES = np.ones((2, 4, 4), np.float32)

HYPER = [
    ("alpha", lambda v, b: F.leaky_relu(X, v, backend=b)),
    ("alpha", lambda v, b: F.elu_backward(X, X, v, backend=b)),
    ("p", lambda v, b: F.dropout(X, v, 0, backend=b)),
    ("p", lambda v, b: F.dropout_backward(X, X > 0, v, backend=b)),
    ("eps", lambda v, b: F.binary_cross_entropy(P, P, v, backend=b)),
    ("eps", lambda v, b: F.cross_entropy(P, np.zeros(3, int), v, backend=b)),
    ("label_smoothing", lambda v, b: F.softmax_cross_entropy(X, np.zeros(3, int), None, v,
                                                             backend=b)),
    ("lr", lambda v, b: F.sgd_update_(X.copy(), X, v, backend=b)),
    ("beta1", lambda v, b: F.adam_update_(X.copy(), X, 0 * X, 0 * X, 1, beta1=v, backend=b)),
    ("fill", lambda v, b: augment.random_shift(IMAGES, 1, 0, v, backend=b)),
    ("std", lambda v, b: augment.gaussian_noise(IMAGES, v, 0, backend=b)),
    ("p", lambda v, b: augment.random_flip(IMAGES, 0, v, backend=b)),
    ("beta", lambda v, b: metrics.fbeta([0, 1], [1, 1], v, average="macro", backend=b)),
    ("zero_division", lambda v, b: metrics.precision([0, 1], [1, 1], zero_division=v,
                                                     backend=b)),
]


@pytest.mark.parametrize("name, call", HYPER, ids=[f"{i}-{h[0]}" for i, h in enumerate(HYPER)])
@pytest.mark.parametrize("value", [HUGE, -HUGE], ids=["2**1024", "-2**1024"])
def test_int_beyond_the_float_range_is_a_value_error(backend, name, call, value):
    # float() raised OverflowError, which named nothing
    with pytest.raises(ValueError, match=f"^{name}: "):
        call(value, backend)


def test_gaussian_noise_std_must_be_finite(backend):
    with pytest.raises(ValueError, match="^std: expected a finite number"):
        augment.gaussian_noise(IMAGES, np.inf, 0, backend=backend)


@pytest.mark.parametrize("value", [[1], np.array(["relu"]), {}, 3.5])
def test_unhashable_or_unknown_choice_names_the_argument(value):
    with pytest.raises(ValueError, match="^activation: expected one of"):
        F.dense_forward(X, X.T.copy(), activation=value)


@pytest.mark.parametrize("name, value", [("max_shift", 2 ** 31), ("max_shift", 2 ** 63),
                                         ("max_shift", (1, 2 ** 64)), ("padding", 2 ** 31),
                                         ("padding", 2 ** 63)])
def test_augment_offsets_are_bounded(backend, name, value):
    # 2**63 gave NumPy's casting error (max_shift) or Cython's OverflowError (padding)
    fn = augment.random_shift if name == "max_shift" else augment.random_crop
    with pytest.raises(ValueError, match=f"^{name}: expected an int <= 2147483647"):
        fn(IMAGES, **{name: value}, backend=backend)


def test_random_crop_large_padding_matches_the_reference(backend):
    # the reference padded each image for real: padding 10**6 was a MemoryError
    r = rng(3)
    images = r.random((3, 4, 5, 2)).astype(np.float32)
    for padding, size in ((10 ** 6, None), (10 ** 6, (3, 3)), (2, (7, 2))):
        expected = augment.random_crop(images, padding, 5, size, fill=-1.0, backend="numpy")
        got = augment.random_crop(images, padding, 5, size, fill=-1.0, backend=backend)
        np.testing.assert_array_equal(got, expected)


# ---- results too large for memory, unchecked arguments of the metrics ----------------

@pytest.mark.parametrize("num_classes", [10 ** 6, 2 ** 40, 2 ** 63, HUGE])
def test_confusion_matrix_too_large_is_a_value_error(backend, num_classes):
    # MemoryError, or NumPy's "Maximum allowed dimension exceeded" naming nothing
    with pytest.raises(ValueError, match="^num_classes: a .* does not fit in memory"):
        metrics.confusion_matrix([0, 1], [1, 0], num_classes, backend=backend)
    with pytest.raises(ValueError, match="^num_classes: "):
        metrics.accuracy([0, 1], [1, 0], average="macro", num_classes=num_classes,
                         backend=backend)
    # classification_report made C names before the matrix: 2**1024 took 11 GB
    with pytest.raises(ValueError, match="^num_classes: "):
        metrics.classification_report([0, 1], [1, 0], num_classes, backend=backend)


def test_a_huge_label_names_the_labels(backend):
    with pytest.raises(ValueError, match="^y_true, y_pred: the largest label makes C"):
        metrics.confusion_matrix([0, 10 ** 7], [1, 0], backend=backend)


@pytest.mark.parametrize("kw, exc, match", [
    ({"target_names": 3}, TypeError, "^target_names: expected a sequence"),
    ({"target_names": "ab"}, TypeError, "^target_names: expected a sequence"),
    ({"target_names": np.array(0.5)}, TypeError, "^target_names: expected a sequence"),
    ({"target_names": ["a"]}, ValueError, "^target_names: expected 2 names"),
    ({"output_dict": "no"}, TypeError, "^output_dict: expected a bool"),
    ({"digits": 2 ** 63}, ValueError, "^digits: expected an int <= 100"),
    ({"zero_division": 2}, ValueError, "^zero_division: "),
])
def test_classification_report_checks_its_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        metrics.classification_report([0, 1, 1], [1, 1, 0], **kw)


# ---- the reference no longer overflows where the kernels do not ---------------------

@pytest.mark.parametrize("kw", [{"l1": 2.0 ** 64}, {"l2": 2.0 ** 63}, {"grad_scale": 2.0 ** 64}])
def test_adam_reference_follows_the_kernels_order(kw):
    # float32: the reference's v / bc2 and g^2 overflowed to inf (the weight kept its old
    # value) where the kernels' sqrt(v) / sqrt(bc2) and ((1 - beta2) g) g are finite
    r = rng(4)
    x, g = r.standard_normal(24).astype(np.float32), r.standard_normal(24).astype(np.float32)
    results = {}
    for backend in BACKENDS:
        w, m, v = x.copy(), np.zeros(24, np.float32), np.zeros(24, np.float32)
        with np.errstate(over="raise"):
            F.adam_update_(w, g, m, v, 3, **kw, backend=backend)
        results[backend] = (w, m, v)
        assert np.isfinite(v).all() and not np.array_equal(w, x)
    for backend in ("numba", "cython"):
        for a, b in zip(results[backend], results["numpy"]):
            assert_close(a, b, np.float32)


# ---- hyper-parameters that do not survive the cast to the arrays' dtype ---------------

X32 = np.array([[0.0, 1.0, -1.0, 2.0]], np.float32)


def _cast_cases():
    x, W = X32, np.eye(4, dtype=np.float32)
    img, filt = X32.reshape(1, 1, 2, 2), np.ones((1, 1, 1, 1), np.float32)
    w = np.ones(4, np.float32)
    p = np.array([1.0, 0.0, 0.5, 0.25], np.float32)
    probs = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    return [
        # elu's alpha e^0 - alpha was NaN at x = 0 in the compiled kernels (inf - inf)
        ("elu", lambda b: F.elu(x, alpha=1e39, backend=b), "alpha"),
        ("elu_backward", lambda b: F.elu_backward(x, x, alpha=1e39, backend=b), "alpha"),
        ("leaky_relu", lambda b: F.leaky_relu(x, alpha=-1e39, backend=b), "alpha"),
        ("dense elu", lambda b: F.dense_forward(x, W, activation="elu", alpha=1e39,
                                                backend=b), "alpha"),
        ("conv elu", lambda b: F.conv2d_forward(img, filt, activation="elu", alpha=1e39,
                                                backend=b), "alpha"),
        # an eps of 0 in float32: 0/0 where v and the gradient are 0
        ("adam eps", lambda b: F.adam_update_(w.copy(), w * 0, w * 0, w * 0, 1, eps=1e-46,
                                              backend=b), "eps"),
        # 1 - eps rounded to 1: log(1 - 1) for a perfect prediction, a NaN loss
        ("bce", lambda b: F.binary_cross_entropy(p, p, eps=1e-8, backend=b), "eps"),
        ("bce_backward", lambda b: F.binary_cross_entropy_backward(p, p, eps=1e-8,
                                                                   backend=b), "eps"),
        ("cross_entropy", lambda b: F.cross_entropy(probs, np.array([0, 1]), eps=1e-46,
                                                    backend=b), "eps"),
    ]


@pytest.mark.parametrize("name, call, match", _cast_cases(), ids=[c[0] for c in _cast_cases()])
def test_hyper_parameter_that_the_dtype_cannot_hold_is_refused(backend, name, call, match):
    with pytest.raises(ValueError, match=f"^{match}: "):
        call(backend)


def test_hyper_parameters_the_dtype_holds_are_taken(backend):
    # the limits themselves: float32's largest alpha, its smallest eps for the binary
    # losses (1 - 2**-24 is a float32), and an eps that 1 - eps rounds away only for
    # cross_entropy, which clips the loss's log(p), never log(1 - p)
    x = X32[0]
    big = float(np.finfo(np.float32).max)
    assert_close(F.elu(x, alpha=big, backend=backend), F.elu(x, alpha=big, backend="numpy"),
                 np.float32)
    p = np.array([1.0, 0.0, 0.5], np.float32)
    loss = F.binary_cross_entropy(p, p, eps=2.0 ** -24, backend=backend)
    assert np.isfinite(loss) and loss < 0.3
    probs = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    assert np.isfinite(F.cross_entropy(probs, np.array([0, 1]), eps=1e-8, backend=backend))
