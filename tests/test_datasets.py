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


def test_load_digits_leaves_the_environment_alone():
    # it imported scikit-learn, whose threadpoolctl set KMP_DUPLICATE_LIB_OK and
    # KMP_INIT_AT_FORK for the whole process (the README's own example, fastdl train)
    import subprocess
    import sys

    code = ("import os, sys; before = dict(os.environ)\n"
            "from fastdl import datasets; datasets.load_digits()\n"
            "print(sorted(k for k in set(os.environ) | set(before)"
            " if os.environ.get(k) != before.get(k)), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "[] False", out.stderr[-2000:]


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


def test_load_digits_channel_axis():
    X, y = datasets.load_digits(images=True)
    X4, y4 = datasets.load_digits(images=True, channel_axis=True)
    assert X4.shape == (1797, 1, 8, 8) and X4.dtype == np.float32 and X4.flags.c_contiguous
    np.testing.assert_array_equal(X4[:, 0], X)
    np.testing.assert_array_equal(y4, y)
    with pytest.raises(ValueError, match="channel_axis"):
        datasets.load_digits(channel_axis=True)
    with pytest.raises(TypeError, match="channel_axis"):
        datasets.load_digits(images=True, channel_axis=1)


def test_load_digits_feeds_the_conv_kernels():
    import fastdl.functional as F

    X, _ = datasets.load_digits(images=True, channel_axis=True)
    W = np.ones((2, 1, 3, 3), np.float32)
    y = F.conv2d_forward(X[:5], W, padding=1, backend="numpy")
    assert y.shape == (5, 2, 8, 8)
    np.testing.assert_allclose(y[:, 0, 1:-1, 1:-1],
                               sum(X[:5, 0, i:i + 6, j:j + 6] for i in range(3) for j in range(3)),
                               rtol=1e-6)


# ---- IDX files ------------------------------------------------------------------

def idx_bytes(values, magic=None):
    """An IDX file of unsigned bytes holding ``values`` (uint8 array)."""
    values = np.asarray(values, np.uint8)
    magic = 0x0800 | values.ndim if magic is None else magic
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in values.shape)
    return head + values.tobytes()


def write(path, data, gz=False):
    import gzip

    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def mnist_like():
    r = np.random.default_rng(0)
    return r.integers(0, 256, (7, 5, 4), dtype=np.uint8), r.integers(0, 10, 7, dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_idx(tmp_path, mnist_like, gz):
    images, labels = mnist_like
    ip = write(tmp_path / "images-idx3-ubyte", idx_bytes(images), gz)
    lp = write(tmp_path / "labels-idx1-ubyte", idx_bytes(labels), gz)
    X, y = datasets.load_idx(ip, str(lp))
    assert X.shape == (7, 5, 4) and X.dtype == np.float32 and X.flags.c_contiguous
    assert X.flags.writeable and y.flags.writeable
    np.testing.assert_array_equal(X, (images / 255).astype(np.float32))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    X4, _ = datasets.load_idx(ip, lp, channel_axis=True)
    assert X4.shape == (7, 1, 5, 4)
    np.testing.assert_array_equal(X4[:, 0], X)


def test_load_idx_empty(tmp_path):
    ip = write(tmp_path / "i", idx_bytes(np.zeros((0, 28, 28))))
    lp = write(tmp_path / "l", idx_bytes(np.zeros(0)))
    X, y = datasets.load_idx(ip, lp)
    assert X.shape == (0, 28, 28) and y.shape == (0,)


def test_load_idx_malformed(tmp_path, mnist_like):
    images, labels = mnist_like
    good_i, good_l = idx_bytes(images), idx_bytes(labels)
    lp = write(tmp_path / "l", good_l)
    ip = write(tmp_path / "i", good_i)
    cases = [
        ("images_path", good_i[:-1], good_l, "truncated"),
        ("images_path", good_i[:10], good_l, "truncated in its header"),
        ("images_path", good_i[:2], good_l, "too short"),
        ("images_path", good_i + b"\0", good_l, "more data"),
        ("images_path", idx_bytes(images, magic=0x0803 | 0x0100), good_l, "magic"),  # 0x0903
        ("images_path", good_l, good_l, "magic"),  # a labels file given as images
        ("labels_path", good_i, good_i, "magic"),
        ("labels_path", good_i, idx_bytes(labels[:6]), "6 labels for 7 images"),
        ("labels_path", good_i, good_l[:-3], "truncated"),
    ]
    for name, img, lab, match in cases:
        a = write(tmp_path / "a", img)
        b = write(tmp_path / "b", lab)
        with pytest.raises(ValueError, match=name) as e:
            datasets.load_idx(a, b)
        assert match in str(e.value), (match, str(e.value))
    # a broken gzip stream (the gzip magic, then garbage)
    bad = write(tmp_path / "g", b"\x1f\x8b" + b"\x08\x00garbage" * 3)
    with pytest.raises(ValueError, match="images_path.*gzip"):
        datasets.load_idx(bad, lp)
    # a gzip stream cut short
    import gzip
    cut = write(tmp_path / "c", gzip.compress(good_i)[:-12])
    with pytest.raises(ValueError, match="images_path"):
        datasets.load_idx(cut, lp)
    with pytest.raises(FileNotFoundError):
        datasets.load_idx(tmp_path / "missing", lp)
    with pytest.raises(TypeError, match="channel_axis"):
        datasets.load_idx(ip, lp, channel_axis="yes")


def idx_head(magic, dims):
    """The header of an IDX file: ``magic``, then ``dims`` as 32-bit big-endian counts."""
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def gzip_bomb(path, head, n):
    """A gzipped IDX file: ``head`` then ``n`` zero bytes, about n / 1000 bytes of file."""
    import gzip

    with gzip.open(path, "wb") as fh:
        fh.write(head)
        block = bytes(1 << 20)
        for i in range(0, n, len(block)):
            fh.write(block[:n - i])
    return path


def refused(call):
    """(the ValueError ``call()`` raises, the seconds it took, the peak memory it
    allocated in bytes, as tracemalloc sees it)."""
    import time
    import tracemalloc

    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(ValueError) as e:
            call()
    finally:
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(e.value), seconds, peak


MB = 1 << 20
BOMB = 32 * MB  # what the bombs below decompress to (their files are ~32 KB)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_idx_huge_declared_sizes_are_refused_quickly(tmp_path, gz):
    # a header declaring 2**32 - 1 images of 65535 x 65535 pixels over 100 real bytes:
    # refused from the header alone, the declared size is past the limit
    ip = write(tmp_path / "i", idx_head(0x803, (2**32 - 1, 65535, 65535)) + bytes(100), gz)
    lp = write(tmp_path / "l", idx_bytes(np.zeros(3)))
    msg, seconds, peak = refused(lambda: datasets.load_idx(ip, lp))
    assert msg.startswith("images_path") and "limit" in msg and "_IDX_MAX_BYTES" in msg
    assert seconds < 0.5 and peak < MB
    # under the limit, 60000 28 x 28 images (47 MB) declared over 100 real bytes: refused
    # as truncated, without allocating the declared size
    ip = write(tmp_path / "i", idx_head(0x803, (60000, 28, 28)) + bytes(100), gz)
    lp = write(tmp_path / "l", idx_bytes(np.zeros(60000)))
    msg, seconds, peak = refused(lambda: datasets.load_idx(ip, lp))
    assert msg.startswith("images_path") and "truncated" in msg
    assert seconds < 0.5 and peak < 4 * MB


def test_load_idx_gzip_bomb_is_refused_before_reading(tmp_path):
    # the audit's case, scaled down: a small gzip stream whose header declares 2**32 - 1
    # images and that decompresses to far more than its size; the labels file declares
    # 1 label.  It used to be read (decompressed) whole before any check.
    ip = gzip_bomb(tmp_path / "i", idx_head(0x803, (2**32 - 1, 28, 28)), BOMB)
    lp = write(tmp_path / "l", idx_bytes(np.zeros(1)))
    msg, seconds, peak = refused(lambda: datasets.load_idx(ip, lp))
    assert seconds < 0.5 and peak < 4 * MB
    assert msg.startswith("images_path") and "limit" in msg
    # a labels file that is the bomb, with headers that agree (images of 0 x 0 pixels,
    # 0 bytes of payload): the labels' declared size is past the limit too
    ip = write(tmp_path / "i0", idx_head(0x803, (2**32 - 1, 0, 0)))
    lp = gzip_bomb(tmp_path / "l0", idx_head(0x801, (2**32 - 1,)), BOMB)
    msg, seconds, peak = refused(lambda: datasets.load_idx(ip, lp))
    assert seconds < 0.5 and peak < 4 * MB
    assert msg.startswith("labels_path") and "limit" in msg


def test_load_idx_size_limit(tmp_path, monkeypatch, mnist_like):
    images, labels = mnist_like  # 7 x 5 x 4 = 140 values
    ip = write(tmp_path / "i", idx_bytes(images), gz=True)
    lp = write(tmp_path / "l", idx_bytes(labels), gz=True)
    monkeypatch.setattr(datasets, "_IDX_MAX_BYTES", 140)
    X, y = datasets.load_idx(ip, lp)  # at the limit: read
    np.testing.assert_array_equal(X, (images / 255).astype(np.float32))
    monkeypatch.setattr(datasets, "_IDX_MAX_BYTES", 139)
    with pytest.raises(ValueError, match=r"images_path: .* \(7, 5, 4\), 140 values: more "
                                         r"than the limit of 139 values per file"):
        datasets.load_idx(ip, lp)
    monkeypatch.setattr(datasets, "_IDX_MAX_BYTES", 6)
    with pytest.raises(ValueError, match=r"labels_path: .* \(7,\), 7 values: more than"):
        datasets.load_idx(write(tmp_path / "i0", idx_bytes(np.zeros((7, 0, 0)))), lp)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_idx_headers_are_checked_before_the_payloads(tmp_path, gz):
    # images whose 32 MB of values are all there, and a labels file one label short:
    # refused from the two headers, nothing of the images' payload read
    n = BOMB // 784
    head = idx_head(0x803, (n, 28, 28))
    ip = gzip_bomb(tmp_path / "i", head, n * 784) if gz else \
        write(tmp_path / "i", head + bytes(n * 784))
    lp = write(tmp_path / "l", idx_bytes(np.zeros(n - 1)), gz)
    msg, seconds, peak = refused(lambda: datasets.load_idx(ip, lp))
    assert msg == f"labels_path: {n - 1} labels for {n} images"
    assert seconds < 0.5 and peak < 4 * MB
    # a truncated images payload and a count mismatch: the mismatch (in the headers) is
    # what is reported; so is a labels file that is not one, before the images' payload
    ip = write(tmp_path / "t", head + bytes(100), gz)
    with pytest.raises(ValueError, match=f"labels_path: {n - 1} labels for {n} images"):
        datasets.load_idx(ip, lp)
    with pytest.raises(ValueError, match="labels_path: .* magic number"):
        datasets.load_idx(ip, ip)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_idx_exact_payload(tmp_path, mnist_like, gz):
    # the values must be exactly what the headers declare: one short or one more is
    # refused, in either file, plain or gzipped
    images, labels = mnist_like
    good_i, good_l = idx_bytes(images), idx_bytes(labels)
    cases = [
        ("images_path", good_i[:-1], good_l, "is truncated: its header declares (7, 5, 4), "
                                             "140 values, and it holds 139"),
        ("images_path", good_i + b"\0", good_l, "holds more data than its header"),
        ("labels_path", good_i, good_l[:-1], "is truncated: its header declares (7,), "
                                             "7 values, and it holds 6"),
        ("labels_path", good_i, good_l + b"\0" * 5, "holds more data than its header"),
    ]
    for name, img, lab, match in cases:
        a = write(tmp_path / "a", img, gz)
        b = write(tmp_path / "b", lab, gz)
        with pytest.raises(ValueError, match=name) as e:
            datasets.load_idx(a, b)
        assert match in str(e.value), (match, str(e.value))


def test_load_idx_plain_file_of_wrong_length_is_refused_before_reading(tmp_path):
    # a plain file's length gives away a truncated payload or trailing bytes: refused
    # without reading the 32 MB that are there
    n = BOMB // 784
    head = idx_head(0x803, (n, 28, 28))
    lp = write(tmp_path / "l", idx_bytes(np.zeros(n)))
    for extra, match in ((-1, "truncated"), (1, "more data")):
        ip = write(tmp_path / "i", head + bytes(n * 784 + extra))
        msg, seconds, peak = refused(lambda: datasets.load_idx(ip, lp))
        assert msg.startswith("images_path") and match in msg
        assert seconds < 0.5 and peak < 4 * MB
