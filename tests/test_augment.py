"""fastdl.augment: every kernel in every backend against the NumPy reference (the same
random parameters), the public functions with one seed in every backend, the
references against closed forms and against each other, properties (flip twice,
shift 0, crop with padding 0, noise 0 are the identity; shapes, dtypes and inputs
kept), Compose and flattened rows, and bad input."""
import numpy as np
import pytest
from functools import partial
from hypothesis import given, settings, strategies as st

from fastdl import augment as A
from fastdl._registry import kernel, ops
from conftest import BACKENDS, COMPILED, DTYPES, assert_close, layouts, rng

# (N, H, W[, C]); the last two have more than PARALLEL_THRESHOLD = 65536 elements, so
# the parallel paths run
SHAPES = [(1, 1, 1), (1, 8, 8), (5, 7, 3), (4, 5, 6, 3), (33, 8, 8), (1100, 8, 8),
          (40, 13, 17, 10)]


def images(shape, dtype, seed=0):
    return rng(seed).standard_normal(shape).astype(dtype)


def as4(x):
    return x if x.ndim == 4 else x[..., None]


def test_registry_lists_the_augment_kernels():
    assert {op.name for op in ops("augment")} == {"flip_images", "shift_images",
                                                   "crop_images", "noise_images"}


# ------------------------------------------------------------------ kernels vs reference

def against_reference(name, x, params, out_shape, scalars=(), exact=True):
    """Kernel ``name`` of every compiled backend against the reference, on the same
    parameters (the reference runs once; the outputs start as NaN so that a pixel
    left unwritten shows)."""
    ref = np.full(out_shape, np.nan, x.dtype)
    kernel(name, "numpy")(x, *params, ref, *scalars)
    assert not np.isnan(ref).any()
    for be in COMPILED:
        got = np.full(out_shape, np.nan, x.dtype)
        kernel(name, be)(x, *params, got, *scalars)
        if exact:
            np.testing.assert_array_equal(got, ref, err_msg=be)
        else:
            assert_close(got, ref, x.dtype, err_msg=be)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_flip_kernel(dtype, shape):
    x = as4(images(shape, dtype))
    r = rng(1)
    fh = (r.random(len(x)) < 0.5).astype(np.uint8)
    fv = (r.random(len(x)) < 0.5).astype(np.uint8)
    against_reference("flip_images", x, (fh, fv), x.shape)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_shift_kernel(dtype, shape):
    x = as4(images(shape, dtype))
    n, h, w = x.shape[:3]
    # shifts up to beyond the image size, both signs
    shifts = np.stack([rng(2).integers(-h - 2, h + 3, n), rng(3).integers(-w - 2, w + 3, n)],
                      axis=1).astype(np.int64)
    against_reference("shift_images", x, (shifts,), x.shape, (-0.5,))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("padding, size", [(0, None), (1, None), (3, None), (2, (1, 1)),
                                           (1, "+2"), (9, (4, 20))], ids=str)
def test_crop_kernel(dtype, shape, padding, size):
    x = as4(images(shape, dtype))
    n, h, w, c = x.shape
    if size is None:
        size = (h, w)
    elif size == "+2":
        size = (h + 2, w + 2)
    size = (min(size[0], h + 2 * padding), min(size[1], w + 2 * padding))
    offsets = np.stack([rng(4).integers(0, h + 2 * padding - size[0] + 1, n),
                        rng(5).integers(0, w + 2 * padding - size[1] + 1, n)], axis=1)
    against_reference("crop_images", x, (offsets,), (n,) + size + (c,), (padding, 2.5))


@pytest.mark.parametrize("m", [1, 7, 64, 70001])
@pytest.mark.parametrize("lo, hi", [(-np.inf, np.inf), (-0.5, 0.5), (0.0, 0.0)], ids=str)
def test_noise_kernel(dtype, m, lo, hi):
    x = images((m,), dtype, seed=6)
    z = images((m,), dtype, seed=7)
    against_reference("noise_images", x, (z,), (m,), (0.3, lo, hi), exact=False)
    ref = np.empty_like(x)
    kernel("noise_images", "numpy")(x, z, ref, 0.3, lo, hi)
    for be in BACKENDS:  # the noise buffer may be the output itself
        got = z.copy()
        kernel("noise_images", be)(x, got, got, 0.3, lo, hi)
        assert_close(got, ref, dtype, err_msg=be)


def test_kernels_copy_nan_and_inf_exactly(backend, dtype):
    x = images((3, 4, 5), dtype)[..., None]
    x[0, 1, 2] = np.nan
    x[1, 0, 0] = np.inf
    x[2, 3, 4] = -np.inf
    ones = np.ones(3, np.uint8)
    for name, args in [("flip_images", (ones, ones)),
                       ("shift_images", (np.array([[1, -1], [0, 2], [-1, 0]]),)),
                       ("crop_images", (np.array([[0, 2], [1, 1], [2, 0]]),))]:
        ref = np.empty_like(x)
        got = np.empty_like(x)
        extra = (1, 0.0) if name == "crop_images" else ((0.0,) if name == "shift_images" else ())
        kernel(name, "numpy")(x, *args, ref, *extra)
        kernel(name, backend)(x, *args, got, *extra)
        np.testing.assert_array_equal(got, ref)
        assert np.isnan(got).sum() == np.isnan(ref).sum()
    z = np.zeros(x.size, dtype)
    out = np.empty_like(z)
    kernel("noise_images", backend)(x.reshape(-1), z, out, 1.0, 0.0, 1.0)
    flat = x.reshape(-1)
    assert np.isnan(out[np.isnan(flat)]).all()  # NaN passes the clip, as np.clip
    assert out[flat == np.inf][0] == 1 and out[flat == -np.inf][0] == 0


# ------------------------------------------------------------------ references: closed forms

def test_reference_closed_forms():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    out = np.empty_like(x)
    kernel("shift_images", "numpy")(x, np.array([[1, -1]]), out, -1.0)
    np.testing.assert_array_equal(out[0, ..., 0], [[-1, -1, -1], [1, 2, -1], [4, 5, -1]])
    kernel("flip_images", "numpy")(x, np.array([1], np.uint8), np.array([0], np.uint8), out)
    np.testing.assert_array_equal(out[0, ..., 0], [[2, 1, 0], [5, 4, 3], [8, 7, 6]])
    kernel("flip_images", "numpy")(x, np.array([0], np.uint8), np.array([1], np.uint8), out)
    np.testing.assert_array_equal(out[0, ..., 0], [[6, 7, 8], [3, 4, 5], [0, 1, 2]])
    small = np.empty((1, 2, 4, 1))
    kernel("crop_images", "numpy")(x, np.array([[0, 1]]), small, 1, 9.0)
    np.testing.assert_array_equal(small[0, ..., 0], [[9, 9, 9, 9], [0, 1, 2, 9]])
    z = np.array([1.0, -1.0, 3.0])
    o = np.empty(3)
    kernel("noise_images", "numpy")(np.array([0.5, 0.5, 0.5]), z, o, 0.25, 0.0, 1.0)
    np.testing.assert_array_equal(o, [0.75, 0.25, 1.0])


@pytest.mark.parametrize("padding", [0, 1, 2, 5])
def test_reference_crop_is_reference_shift(padding):
    # pad-then-crop at (oy, ox) is a shift by (padding - oy, padding - ox): the two
    # references are written differently (np.pad vs index arithmetic)
    x = as4(images((6, 5, 4, 2), np.float64))
    offsets = rng(1).integers(0, 2 * padding + 1, (6, 2))
    a = np.empty_like(x)
    b = np.empty_like(x)
    kernel("crop_images", "numpy")(x, offsets, a, padding, 0.25)
    kernel("shift_images", "numpy")(x, padding - offsets, b, 0.25)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ public functions

CASES = {
    "flip_h": lambda x, **k: A.random_flip(x, **k),
    "flip_both": lambda x, **k: A.random_flip(x, p=0.7, axis="both", **k),
    "flip_v": lambda x, **k: A.random_flip(x, axis="vertical", **k),
    "shift": lambda x, **k: A.random_shift(x, 2, fill=0.5, **k),
    "shift_pair": lambda x, **k: A.random_shift(x, (0, 3), **k),
    "crop": lambda x, **k: A.random_crop(x, 2, **k),
    "crop_size": lambda x, **k: A.random_crop(x, 1, size=(2, 3), fill=-1.0, **k),
    "noise": lambda x, **k: A.gaussian_noise(x, 0.2, **k),
    "noise_clip": lambda x, **k: A.gaussian_noise(x, 0.5, clip=(-1.0, 1.0), **k),
}
EXACT = {"noise": False, "noise_clip": False}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_public_same_seed_same_result_every_backend(dtype, shape, case):
    x = images(shape, dtype)
    ref = CASES[case](x, rng=11, backend="numpy")
    for be in BACKENDS:
        got = ref if be == "numpy" else CASES[case](x, rng=11, backend=be)
        assert got.dtype == dtype and got.flags.c_contiguous
        if case == "crop_size":
            assert got.shape == (shape[0], 2, 3) + shape[3:]
        else:
            assert got.shape == shape
        if EXACT.get(case, True):
            np.testing.assert_array_equal(got, ref, err_msg=be)
        else:
            assert_close(got, ref, dtype, err_msg=be)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("layout", ["F", "strided"])
def test_public_any_layout(backend, case, layout):
    x = images((6, 5, 7), np.float32)
    ref = CASES[case](x, rng=3, backend="numpy")
    got = CASES[case](layouts(x)[layout], rng=3, backend=backend)
    assert got.flags.c_contiguous
    assert_close(got, ref, np.float32)


@pytest.mark.parametrize("case", CASES)
def test_public_contract(backend, case):
    x = images((4, 6, 6, 2), np.float64)
    x.setflags(write=False)  # read-only input accepted and left unchanged
    copy = x.copy()
    a = CASES[case](x, rng=5, backend=backend)
    np.testing.assert_array_equal(x, copy)
    assert a is not x and not np.shares_memory(a, x)
    # an int seed and a Generator seeded alike give the same draws
    np.testing.assert_array_equal(CASES[case](x, rng=np.random.default_rng(5),
                                              backend=backend), a)
    # out=: filled and returned; out may even be the input itself
    out = np.empty_like(a)
    assert CASES[case](x, rng=5, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, a)
    if a.shape == x.shape:
        y = copy.copy()
        assert CASES[case](y, rng=5, out=y, backend=backend) is y
        np.testing.assert_array_equal(y, a)
    # different seeds give different results
    assert not np.array_equal(CASES[case](x, rng=6, backend=backend), a) or case == "flip_v"


# ------------------------------------------------------------------ channels first

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", [(5, 1, 6, 7), (4, 3, 5, 6), (3, 2, 4, 4)], ids=str)
def test_nchw_is_the_transposed_nhwc(backend, case, shape):
    """layout="NCHW": the same draws and pixels as the channels-last transpose (every
    channel of an image moved alike), for (N, C, H, W) batches as Conv2D takes them;
    the noise, elementwise, is the same as without the layout."""
    x = images(shape, np.float32)
    got = CASES[case](x, rng=8, layout="NCHW", backend=backend)
    assert got.flags.c_contiguous and got.dtype == np.float32
    if case.startswith("noise"):  # elementwise, drawn in memory order: layout-blind
        np.testing.assert_array_equal(got, CASES[case](x, rng=8, backend=backend))
    else:
        want = CASES[case](np.ascontiguousarray(x.transpose(0, 2, 3, 1)), rng=8,
                           backend=backend)
        assert got.shape == (shape[:2] + want.shape[1:3])
        np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))
    # out=, even the input itself
    out = np.empty_like(got)
    assert CASES[case](x, rng=8, layout="NCHW", out=out, backend=backend) is out
    np.testing.assert_array_equal(out, got)
    if got.shape == shape:
        y = x.copy()
        CASES[case](y, rng=8, layout="NCHW", out=y, backend=backend)
        np.testing.assert_array_equal(y, got)
    # a 3-D batch has no channel axis: the layout changes nothing
    x3 = x[:, 0]
    np.testing.assert_array_equal(CASES[case](x3, rng=8, layout="NCHW", backend=backend),
                                  CASES[case](x3, rng=8, backend=backend))


def test_nchw_one_channel_moves_the_image_not_a_row():
    """A (B, 1, H, W) batch read as channels last is B images 1 pixel high: the shift
    must move the 8x8 image, as it moves the (B, 8, 8) batch."""
    x = images((6, 1, 8, 8), np.float64)
    got = A.random_shift(x, 2, rng=1, layout="NCHW")
    np.testing.assert_array_equal(got[:, 0], A.random_shift(x[:, 0], 2, rng=1))
    aug = A.Compose([partial(A.random_shift, max_shift=2)], layout="NCHW")
    np.testing.assert_array_equal(aug(x, 1), got)


def test_compose_nchw(backend):
    x = images((6, 3, 5, 5), np.float32)
    steps = [partial(A.random_shift, max_shift=1, backend=backend),
             partial(A.random_crop, padding=1, size=(4, 3), backend=backend),
             partial(A.random_flip, axis="both", backend=backend)]
    got = A.Compose(steps, layout="NCHW")(x, 4)
    want = A.Compose(steps)(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), 4)
    assert got.shape == (6, 3, 4, 3) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))
    # the same through each function's own layout
    gen = np.random.default_rng(4)
    each = x
    for s in steps:
        each = s(each, rng=gen, layout="NCHW")
    np.testing.assert_array_equal(each, got)
    # flattened rows of (C, H, W) images
    rows = A.Compose(steps, image_shape=(3, 5, 5), layout="NCHW")(x.reshape(6, -1), 4)
    np.testing.assert_array_equal(rows, got.reshape(6, -1))
    empty = A.Compose([], layout="NCHW")(x)
    np.testing.assert_array_equal(empty, x)
    assert empty is not x and empty.flags.c_contiguous
    assert "layout='NCHW'" in repr(A.Compose(steps, layout="NCHW"))


def test_flip_twice_is_identity(backend):
    x = images((20, 5, 6, 3), np.float32)
    for axis in A.FLIP_AXES:
        once = A.random_flip(x, rng=9, axis=axis, backend=backend)
        twice = A.random_flip(once, rng=9, axis=axis, backend=backend)
        np.testing.assert_array_equal(twice, x)
        assert not np.array_equal(once, x)


def test_flip_probability_extremes(backend):
    x = images((10, 4, 5), np.float64)
    np.testing.assert_array_equal(A.random_flip(x, p=0.0, rng=0, backend=backend), x)
    np.testing.assert_array_equal(A.random_flip(x, p=1.0, rng=0, backend=backend),
                                  x[:, :, ::-1])
    np.testing.assert_array_equal(A.random_flip(x, p=1.0, axis="vertical", rng=0,
                                                backend=backend), x[:, ::-1])
    np.testing.assert_array_equal(A.random_flip(x, p=1.0, axis="both", rng=0,
                                                backend=backend), x[:, ::-1, ::-1])


def test_identities(backend, dtype):
    x = images((7, 8, 8), dtype)
    np.testing.assert_array_equal(A.random_shift(x, 0, rng=1, backend=backend), x)
    np.testing.assert_array_equal(A.random_crop(x, 0, rng=1, backend=backend), x)
    np.testing.assert_array_equal(A.random_crop(x, 3, size=(14, 14), rng=1, backend=backend),
                                  np.pad(x, ((0, 0), (3, 3), (3, 3))))
    np.testing.assert_array_equal(A.gaussian_noise(x, 0.0, rng=1, backend=backend), x)
    np.testing.assert_array_equal(A.gaussian_noise(x, 0.0, rng=1, clip=(-0.5, 0.5),
                                                   backend=backend), np.clip(x, -0.5, 0.5))


def test_shift_moves_a_pixel_within_max_shift(backend):
    n, m = 200, 2
    x = np.zeros((n, 9, 9))
    x[:, 4, 4] = 1.0  # one bright pixel in the middle: it moves by (dy, dx), |d| <= m
    out = A.random_shift(x, m, rng=0, backend=backend)
    pos = np.array([np.argwhere(o == 1.0)[0] for o in out]) - 4
    assert np.all(np.abs(pos) <= m) and np.all(out.sum(axis=(1, 2)) == 1)
    # every shift in [-m, m] occurs, roughly uniformly
    counts = np.bincount(pos[:, 0] + m, minlength=2 * m + 1)
    assert np.all(counts > n / (2 * m + 1) / 2)
    # the documented draws
    u = np.random.default_rng(0).random((n, 2))
    np.testing.assert_array_equal(pos, np.floor(u * (2 * m + 1)).astype(int) - m)


def test_crop_offsets_within_padding(backend):
    x = np.zeros((300, 6, 6))
    x[:, 0, 0] = 1.0
    out = A.random_crop(x, 2, rng=0, backend=backend)
    seen = set()
    for o in out:
        where = np.argwhere(o == 1.0)
        if len(where):
            seen.add(tuple(where[0]))
    assert seen == {(i, j) for i in range(3) for j in range(3)}


def test_noise_statistics():
    x = np.full((400, 16, 16), 0.5)
    d = A.gaussian_noise(x, 0.3, rng=0, backend="numpy") - 0.5
    assert abs(d.mean()) < 0.01 and abs(d.std() - 0.3) < 0.01
    c = A.gaussian_noise(x, 0.3, rng=0, clip=(0.0, 1.0), backend="numpy")
    assert c.min() >= 0.0 and c.max() <= 1.0 and (c == 1.0).any()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), h=st.integers(1, 9), w=st.integers(1, 9),
       c=st.sampled_from([None, 1, 3]), case=st.sampled_from(sorted(CASES)),
       be=st.sampled_from(BACKENDS), dt=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
def test_property_public_every_backend(n, h, w, c, case, be, dt, seed):
    shape = (n, h, w) if c is None else (n, h, w, c)
    x = images(shape, dt, seed % 1000)
    ref = CASES[case](x, rng=seed, backend="numpy")
    got = CASES[case](x, rng=seed, backend=be)
    assert_close(got, ref, dt)


# ------------------------------------------------------------------ Compose, flat rows

def test_compose_applies_in_turn_with_one_generator(backend):
    x = images((8, 6, 6), np.float32)
    steps = [partial(A.random_shift, max_shift=1, backend=backend),
             partial(A.random_flip, backend=backend),
             partial(A.gaussian_noise, std=0.1, clip=(0.0, 1.0), backend=backend)]
    got = A.Compose(steps)(x, 4)
    gen = np.random.default_rng(4)
    want = x
    for s in steps:
        want = s(want, rng=gen)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(A.Compose(steps)(x, rng=4), got)
    assert not np.array_equal(A.Compose(steps)(x, 5), got)
    empty = A.Compose([])(x)
    np.testing.assert_array_equal(empty, x)
    assert empty is not x
    assert "random_shift" in repr(A.Compose(steps, image_shape=(6, 6)))


def test_compose_on_flattened_rows():
    X = images((10, 64), np.float32)
    shift = partial(A.random_shift, max_shift=1)
    aug = A.Compose([shift], image_shape=(8, 8))
    got = aug(X, 7)
    assert got.shape == (10, 64) and got.dtype == np.float32
    np.testing.assert_array_equal(got, shift(X.reshape(10, 8, 8), rng=7).reshape(10, 64))
    np.testing.assert_array_equal(A.for_images(shift)(X, 7), got)
    # channels last: rows hold (H, W, C) images
    X3 = images((4, 2 * 3 * 3), np.float64)
    flip = partial(A.random_flip, p=1.0)
    np.testing.assert_array_equal(A.for_images(flip, (2, 3, 3))(X3),
                                  X3.reshape(4, 2, 3, 3)[:, :, ::-1].reshape(4, -1))
    crop = A.for_images(partial(A.random_crop, padding=1, size=4))
    assert crop(X, 0).shape == (10, 16)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: A.Compose(A.random_flip), TypeError, "transforms"),
    (lambda: A.Compose(5), TypeError, "transforms"),
    (lambda: A.Compose([A.random_flip, 3]), TypeError, "transforms"),
    (lambda: A.Compose([], image_shape=(8,)), ValueError, "image_shape"),
    (lambda: A.Compose([], image_shape=(8, 0)), ValueError, "image_shape"),
    (lambda: A.Compose([], image_shape=(8, 8))(np.zeros((2, 63))), ValueError, "images"),
    (lambda: A.Compose([], image_shape=(8, 8))(np.zeros((2, 8, 8))), ValueError, "images"),
    (lambda: A.Compose([])(np.zeros((2, 3, 3)), rng="seed"), TypeError, "rng"),
    (lambda: A.for_images(None), TypeError, "fn"),
    (lambda: A.Compose([], layout="NWHC"), ValueError, "layout"),
    (lambda: A.Compose([], image_shape=(8,), layout="NCHW"), ValueError, r"\(C, H, W\)"),
    (lambda: A.Compose([lambda x, rng: x[:, 0]], layout="NCHW")(np.zeros((2, 1, 3, 3))),
     ValueError, "transforms"),
])
def test_compose_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------ bad input

X3 = np.zeros((2, 4, 4), np.float32)


@pytest.mark.parametrize("call, exc, match", [
    (lambda b: A.random_flip(np.zeros((2, 4, 4), np.int32), backend=b), TypeError, "images"),
    (lambda b: A.random_flip(np.zeros((2, 4)), backend=b), ValueError, "images"),
    (lambda b: A.random_flip(np.zeros((2, 4, 4, 1, 1)), backend=b), ValueError, "images"),
    (lambda b: A.random_flip(np.zeros((2, 0, 4)), backend=b), ValueError, "images"),
    (lambda b: A.random_flip("abc", backend=b), TypeError, "images"),
    (lambda b: A.random_flip(X3, p=1.5, backend=b), ValueError, "p"),
    (lambda b: A.random_flip(X3, p=-0.1, backend=b), ValueError, "p"),
    (lambda b: A.random_flip(X3, axis="diagonal", backend=b), ValueError, "axis"),
    (lambda b: A.random_flip(X3, rng=1.5, backend=b), TypeError, "rng"),
    (lambda b: A.random_flip(X3, out=np.zeros((2, 4, 4)), backend=b), TypeError, "out"),
    (lambda b: A.random_flip(X3, out=np.zeros((2, 4, 5), np.float32), backend=b),
     ValueError, "out"),
    (lambda b: A.random_shift(X3, -1, backend=b), ValueError, "max_shift"),
    (lambda b: A.random_shift(X3, 1.5, backend=b), TypeError, "max_shift"),
    (lambda b: A.random_shift(X3, (1, 2, 3), backend=b), ValueError, "max_shift"),
    (lambda b: A.random_shift(X3, 1, fill="zero", backend=b), TypeError, "fill"),
    (lambda b: A.random_crop(X3, -1, backend=b), ValueError, "padding"),
    (lambda b: A.random_crop(X3, 1, size=7, backend=b), ValueError, "size"),
    (lambda b: A.random_crop(X3, 1, size=(0, 2), backend=b), ValueError, "size"),
    (lambda b: A.random_crop(X3, 1, size=(2, 2), out=np.zeros((2, 4, 4), np.float32),
                             backend=b), ValueError, "out"),
    (lambda b: A.gaussian_noise(X3, -0.1, backend=b), ValueError, "std"),
    (lambda b: A.gaussian_noise(X3, "0.1", backend=b), TypeError, "std"),
    # finite, but inf in float32: every pixel inf or nan
    (lambda b: A.gaussian_noise(X3, 1e39, backend=b), ValueError, "std"),
    (lambda b: A.random_shift(X3, 1, fill=1e39, backend=b), ValueError, "fill"),
    (lambda b: A.random_crop(X3, 1, fill=-1e39, backend=b), ValueError, "fill"),
    (lambda b: A.gaussian_noise(X3, 0.1, clip=(1.0, 0.0), backend=b), ValueError, "clip"),
    (lambda b: A.gaussian_noise(X3, 0.1, clip=1.0, backend=b), ValueError, "clip"),
    (lambda b: A.gaussian_noise(X3, 0.1, backend="torch"), ValueError, "backend"),
    (lambda b: A.random_shift(X3, 1, layout="CHW", backend=b), ValueError, "layout"),
    (lambda b: A.gaussian_noise(X3, 0.1, layout=None, backend=b), ValueError, "layout"),
    (lambda b: A.random_flip(np.zeros((2, 0, 4, 4)), layout="NCHW", backend=b), ValueError,
     r"\(N, C, H, W\)"),
    (lambda b: A.random_crop(np.zeros((2, 3, 4, 4), np.float32), 1, size=(2, 2), layout="NCHW",
                             out=np.zeros((2, 2, 2, 3), np.float32), backend=b),
     ValueError, "out"),
])
def test_bad_input(backend, call, exc, match):
    before = X3.copy()
    with pytest.raises(exc, match=match):
        call(backend)
    np.testing.assert_array_equal(X3, before)
