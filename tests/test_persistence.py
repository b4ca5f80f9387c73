"""model.save / fastdl.load: every optimizer's state round-trips, a loaded model goes on
training exactly as the original, and anything malformed raises ValueError, quickly and
without allocating more than the file holds."""
import io
import json
import os
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdl
from fastdl import nn, optim, schedules
from conftest import rng


def blobs(n=160, d=6, c=3, seed=0, dtype=np.float64):
    r = rng(seed)
    y = r.integers(0, c, n)
    X = r.standard_normal((c, d))[y] * 3 + r.standard_normal((n, d))
    return X.astype(dtype), y


def small_model(dtype=np.float64, seed=0):
    return nn.Sequential(nn.Dense(6, 16, "relu"), nn.Dropout(0.2),
                         nn.Residual(nn.Dense(16, 16, "tanh")), nn.Dense(16, 3),
                         dtype=dtype, seed=seed)


OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.05),
    "sgd-all": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, l1=1e-4, l2=1e-3,
                                   clip_norm=1.0, clip_value=0.5),
    "adam": lambda p: optim.Adam(p),
    "adamw-all": lambda p: optim.Adam(p, lr=2e-3, betas=(0.8, 0.99), eps=1e-6,
                                      weight_decay=1e-2, l1=1e-5, l2=1e-4, clip_norm=0.5,
                                      clip_value=2.0),
    "string-sgd": lambda p: "sgd",
}


@pytest.fixture
def one_thread():
    fastdl.set_num_threads(1)
    yield
    fastdl.set_num_threads(os.cpu_count())


def _assert_states_equal(s1, s2):
    assert s1.keys() == s2.keys()
    for k in s1:
        if isinstance(s1[k], np.ndarray):
            np.testing.assert_array_equal(s1[k], s2[k])
        else:
            assert s1[k] == s2[k] and type(s1[k]) is type(s2[k]), k


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_after_load_is_the_uninterrupted_run(tmp_path, name, one_thread):
    # an SGD model could not be loaded at all (SGD(params) without lr: TypeError), and a
    # second fit restarted the shuffles, dropout masks and schedule from epoch 0
    X, y = blobs()
    sched = schedules.CosineAnnealing(0.05, 0.001, 5) if name.startswith("sgd") else None
    kw = dict(batch_size=16, validation_split=0.2, schedule=sched, verbose=0)
    a = small_model()
    ha = a.fit(X, y, optimizer=OPTIMIZERS[name](a.parameters()), epochs=5, seed=7, **kw)
    b = small_model()
    b.fit(X, y, optimizer=OPTIMIZERS[name](b.parameters()), epochs=2, seed=7, **kw)
    b.save(tmp_path / "m.npz")
    c = fastdl.load(tmp_path / "m.npz")
    assert c.epochs_trained == 2 and c.loss == "cross_entropy"
    assert type(c.optimizer) is type(b.optimizer)
    _assert_states_equal(c.optimizer.state_dict(), b.optimizer.state_dict())
    hc = c.fit(X, y, epochs=3, **kw)  # the loaded optimizer and seed go on
    assert hc.epoch == [2, 3, 4]
    np.testing.assert_array_equal(c.parameters().data, a.parameters().data)
    for k in ha.history:
        assert hc.history[k] == ha.history[k][2:], k
    _assert_states_equal(c.optimizer.state_dict(), a.optimizer.state_dict())


def test_every_hyper_parameter_and_the_step_count_round_trip(tmp_path):
    for name, make in OPTIMIZERS.items():
        m = small_model(np.float32)
        opt = make(m.parameters())
        m.fit(*blobs(dtype=np.float32), optimizer=opt, epochs=1, verbose=0)
        m.optimizer.lr = 0.0123
        m.save(tmp_path / f"{name}.npz")
        m2 = fastdl.load(tmp_path / f"{name}.npz")
        s1, s2 = m.optimizer.state_dict(), m2.optimizer.state_dict()
        _assert_states_equal(s1, s2)
        assert s2["step"] == m.optimizer.steps > 0 and s2["lr"] == 0.0123


def test_the_backend_round_trips(tmp_path, monkeypatch):
    # a model on a chosen backend goes on with the same kernels after a load; one on the
    # default backend writes no backend (older readers refuse unknown keys)
    from fastdl import _config

    X, y = np.random.default_rng(0).random((20, 4)).astype(np.float32), np.arange(20) % 2
    for backend in (None, "numpy"):
        m = nn.Sequential(nn.Dense(4, 2), seed=0, backend=backend)
        m.fit(X, y, epochs=1, verbose=0, seed=0)
        m.save(tmp_path / "m.npz")
        loaded = fastdl.load(tmp_path / "m.npz")
        # the optimizer too: it came back on the default backend, and resumed training
        # took other steps than the uninterrupted run
        assert loaded.backend == backend and loaded.optimizer.backend == backend
        assert ("backend" in json.loads(np.load(tmp_path / "m.npz")["meta"].tobytes())) \
            == (backend is not None)
    # saved on a backend this installation lacks: the default, with a warning
    monkeypatch.setattr(_config, "backends", lambda: ["cython"])
    with pytest.warns(RuntimeWarning, match="backend 'numpy'"):
        assert fastdl.load(tmp_path / "m.npz").backend is None


def test_from_state_dict():
    p = nn.Sequential(nn.Dense(3, 2), seed=0).parameters()
    a = optim.SGD(p, lr=0.1, momentum=0.5, clip_value=1.0)
    p.grad[...] = 1.0
    a.step()
    b = optim.SGD.from_state_dict(p, a.state_dict())
    _assert_states_equal(a.state_dict(), b.state_dict())
    with pytest.raises(ValueError, match="optimizer"):
        optim.Adam.from_state_dict(p, a.state_dict())


def test_file_mode_follows_the_umask_and_no_temporary_is_left(tmp_path):
    m = small_model(np.float32)
    old = os.umask(0o027)
    try:
        m.save(tmp_path / "a.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.npz").st_mode & 0o777 == 0o640  # mkstemp gave 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_stale_temporaries_are_removed(tmp_path):
    # a save killed between writing and renaming leaves its temporary behind
    hour_ago = time.time() - 3600
    stale, fresh = tmp_path / ".fastdl-k3j_x9a2.tmp", tmp_path / ".fastdl-0123456789abcdef.tmp"
    others = [tmp_path / ".fastdl-notes.txt", tmp_path / "fastdl-ab12cd34.tmp",
              tmp_path / ".fastdl-ab.tmp"]
    for p in (stale, fresh, *others):
        p.write_bytes(b"x")
        if p != fresh:
            os.utime(p, (hour_ago, hour_ago))
    (tmp_path / ".fastdl-dir12345.tmp").mkdir()
    os.utime(tmp_path / ".fastdl-dir12345.tmp", (hour_ago, hour_ago))
    small_model().save(tmp_path / "m.npz")
    left = {p.name for p in tmp_path.iterdir()}
    assert stale.name not in left
    assert {fresh.name, ".fastdl-dir12345.tmp", "m.npz"} | {p.name for p in others} == left


def test_files_without_the_training_position_load(tmp_path):
    m = small_model()
    m.save(tmp_path / "m.npz")
    files = _entries(tmp_path / "m.npz")
    meta = json.loads(files["meta"].tobytes())
    del meta["epochs_trained"], meta["seed"]  # as fastdl wrote them before
    _write(tmp_path / "old.npz", files, meta)
    m2 = fastdl.load(tmp_path / "old.npz")
    assert m2.epochs_trained == 0 and m2._seed is None
    np.testing.assert_array_equal(m2.parameters().data, m.parameters().data)


# ---------------------------------------------------------------- malformed files
def _entries(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _write(path, files, meta=None, **replace):
    files = dict(files, **replace)
    if meta is not None:
        files["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **files)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small model with its Adam state, saved: (path, entries, metadata)."""
    path = tmp_path_factory.mktemp("saved") / "m.npz"
    m = nn.Sequential(nn.Dense(4, 5, "relu"), nn.Residual(nn.Dense(5, 5)), nn.Dense(5, 2),
                      seed=0)
    m.fit(rng(0).random((20, 4), dtype=np.float32), np.arange(20) % 2, epochs=1, verbose=0)
    m.save(path)
    files = _entries(path)
    return path, files, json.loads(files["meta"].tobytes())


def _refused(path, match=None):
    with pytest.raises(ValueError, match=match):
        fastdl.load(path)


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastdl.load(tmp_path / "missing.npz")
    with pytest.raises(OSError):
        fastdl.load(tmp_path)


def test_other_formats_are_refused(tmp_path, saved):
    np.save(tmp_path / "a.npy", np.arange(3))
    _refused(tmp_path / "a.npy", "not a readable fastdl model")  # TypeError before
    (tmp_path / "empty.npz").write_bytes(b"")
    _refused(tmp_path / "empty.npz")
    np.savez_compressed(tmp_path / "c.npz", **saved[1])
    _refused(tmp_path / "c.npz", "compressed")
    np.savez(tmp_path / "f.npz", a=np.arange(3))
    _refused(tmp_path / "f.npz", "not a fastdl model")


def test_every_byte_of_the_zip_directory(tmp_path, saved):
    # one flipped byte in the central directory raised NotImplementedError
    raw = saved[0].read_bytes()
    start = raw.find(b"PK\x01\x02")  # the central directory, then its end record
    want = fastdl.load(saved[0]).parameters().data
    for i in range(start, len(raw)):
        for bit in (0x01, 0x80):
            bad = bytearray(raw)
            bad[i] ^= bit
            p = tmp_path / "d.npz"
            p.write_bytes(bytes(bad))
            try:
                m = fastdl.load(p)
            except ValueError:
                continue
            # a byte the reader does not use (a timestamp, say): the model is intact
            np.testing.assert_array_equal(m.parameters().data, want)


def _npy(header_shape, dtype, data):
    """A .npy entry whose header declares ``header_shape`` whatever the data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": header_shape})
    return buf.getvalue() + data


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(name + ".npy", data)
    return path


def test_a_header_declaring_a_huge_array(tmp_path, saved):
    files = saved[1]
    raw = {k: _npy(v.shape, v.dtype, v.tobytes()) for k, v in files.items()}
    for name in ("meta", "params"):
        v = files[name]
        for shape in ((10**12,), (2**62,), (3, 10**9), ()):
            entries = dict(raw, **{name: _npy(shape, v.dtype, v.tobytes())})
            t = time.perf_counter()
            _refused(_zip(tmp_path / "h.npz", entries))  # MemoryError before
            assert time.perf_counter() - t < 1.0
    for descr in ("<i8", "|O", ">f8", "<c8"):
        _refused(_zip(tmp_path / "d.npz", dict(raw, params=_npy(files["params"].shape, descr,
                                                                 files["params"].tobytes()))))


def test_a_tiny_file_declaring_a_huge_model(tmp_path, saved):
    # 853 bytes declaring Dense(20000, 20000) took 11 s and 3.1 GB: the model was built
    # and initialised before its parameters were compared with the file's
    files, meta = saved[1], json.loads(json.dumps(saved[2]))
    meta["architecture"]["layers"] = [{"type": "Dense", "config": {
        "in_features": 20000, "out_features": 20000}}]
    meta.pop("optimizer")
    files = {k: v for k, v in files.items() if not k.startswith("optimizer/")}
    for num in (meta["num_params"], 20000 * 20000 + 20000 + 16):
        meta["num_params"] = num
        path = _write(tmp_path / "big.npz", files, meta)
        tracemalloc.start()
        t = time.perf_counter()
        try:
            _refused(path, "parameters")
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert time.perf_counter() - t < 1.0
        assert peak < 4 << 20, peak


def _mutated(meta, path, value):
    meta = json.loads(json.dumps(meta))
    d = meta
    for k in path[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return meta


_DELETE = object()
_L0 = ("architecture", "layers", 0)
CRAFTED = [
    (("format",), "other"), (("version",), 2), (("version",), True), (("version",), _DELETE),
    (("architecture",), []), (("architecture",), {"layers": []}),
    (("architecture", "layers"), 5), (("architecture", "layers"), []),
    (("architecture", "dtype"), "float16"), (("architecture", "dtype"), ["float32"]),
    (_L0, "Dense"), (_L0, {"config": {}}), (_L0 + ("type",), "Conv9D"),
    (_L0 + ("type",), "Sequential"), (_L0 + ("type",), ["Dense"]), (_L0 + ("type",), "Layer"),
    (_L0 + ("config",), []), (_L0 + ("config", "in_features"), "4"),
    (_L0 + ("config", "in_features"), 4.0), (_L0 + ("config", "in_features"), 10**400),
    (_L0 + ("config", "in_features"), -4), (_L0 + ("config", "in_features"), {"a": 1}),
    (_L0 + ("config", "activation"), "swish"), (_L0 + ("config", "activation"), ["relu"]),
    (_L0 + ("config", "alpha"), 1e999), (_L0 + ("config", "init"), {}),
    (_L0 + ("config", "bias"), 1), (_L0 + ("config", "extra"), 1),
    (("architecture", "layers", 1, "config", "layers"), "x"),
    (("architecture", "layers", 1, "config", "layers"), []),
    (("architecture", "layers", 1, "config", "layers", 0), None),
    (("loss",), "hinge"), (("loss",), 3), (("loss",), "binary_cross_entropy"),
    (("num_params",), -1), (("num_params",), 1.5), (("num_params",), 10**30),
    (("crc32",), -1), (("crc32",), 2**32), (("crc32",), "0"), (("crc32",), 0),
    (("epochs_trained",), -1), (("epochs_trained",), 2**70), (("seed",), -1),
    (("seed",), 2**200), (("seed",), "7"), (("extra",), 1),
    (("backend",), "tpu"), (("backend",), 1), (("backend",), ["numpy"]),
    (("optimizer",), None), (("optimizer",), {"type": "Adam"}),
    (("optimizer", "type"), "RMSprop"), (("optimizer", "type"), "SGD"),
    (("optimizer", "state"), []), (("optimizer", "state", "lr"), "x"),
    (("optimizer", "state", "lr"), -1.0), (("optimizer", "state", "lr"), _DELETE),
    (("optimizer", "state", "step"), 1e300), (("optimizer", "state", "step"), 2**80),
    (("optimizer", "state", "beta1"), 1.0), (("optimizer", "state", "m"), {"__array__": "v"}),
    (("optimizer", "state", "m"), {"__array__": "m", "x": 1}),
    (("optimizer", "state", "m"), [1.0, 2.0]), (("optimizer", "state", "q"), 1),
    (("optimizer", "state", "optimizer"), "SGD"),
]


@pytest.mark.parametrize("path, value", CRAFTED, ids=[".".join(map(str, p)) + "=" + repr(v)[:20]
                                                      for p, v in CRAFTED])
def test_crafted_metadata(tmp_path, saved, path, value):
    # gave AttributeError, KeyError or TypeError before
    _refused(_write(tmp_path / "c.npz", saved[1], _mutated(saved[2], path, value)))


def test_deeply_nested_metadata(tmp_path, saved):
    # RecursionError before
    files = saved[1]
    meta = json.loads(json.dumps(saved[2]))
    layer = {"type": "Dense", "config": {"in_features": 5, "out_features": 5}}
    for _ in range(200):
        layer = {"type": "Residual", "config": {"layers": [layer]}}
    meta["architecture"]["layers"][1] = layer
    _refused(_write(tmp_path / "n.npz", files, meta), "nested")
    deep = np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8)
    _refused(_write(tmp_path / "j.npz", dict(files, meta=deep)), "metadata")
    for junk in (b"\xff\xfe", b"{", b"null", b"[1, 2]", b'{"format": "fastdl-model"}'):
        _refused(_write(tmp_path / "k.npz", dict(files, meta=np.frombuffer(junk, np.uint8))))


def test_missing_and_extra_entries(tmp_path, saved):
    files = saved[1]
    for drop in ("meta", "params", "optimizer/m"):
        _refused(_write(tmp_path / "e.npz", {k: v for k, v in files.items() if k != drop}))
    _refused(_write(tmp_path / "x.npz", files, extra=np.zeros(3)), "unexpected entries")
    _refused(_write(tmp_path / "w.npz", files, **{"optimizer/m": files["optimizer/m"][:-1]}))
    _refused(_write(tmp_path / "t.npz", files,
                    **{"optimizer/m": files["optimizer/m"].astype(np.float64)}))


def test_optimizer_state_no_run_writes_is_refused(tmp_path, saved):
    # a negative Adam second moment loaded, and the first step made every parameter NaN
    files = saved[1]
    v = files["optimizer/v"].copy()
    v[1] = -1.0
    _refused(_write(tmp_path / "v.npz", files, **{"optimizer/v": v}), "never negative")
    # what a run can write loads: NaN and inf moments (a NaN or overflowing gradient)
    m = files["optimizer/m"].copy()
    m[0], v[1], v[2] = np.nan, np.nan, np.inf
    loaded = fastdl.load(_write(tmp_path / "n.npz", files,
                                **{"optimizer/m": m, "optimizer/v": v}))
    np.testing.assert_array_equal(loaded.optimizer.v, v)


# ---------------------------------------------------------------------- fuzzing
def _load_or_refuse(raw, tmp_path):
    p = tmp_path / "fuzz.npz"
    p.write_bytes(raw)
    try:
        m = fastdl.load(p)
    except ValueError:
        return None
    return m


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzz_bit_flips_and_truncation(tmp_path, saved, data):
    raw = bytearray(saved[0].read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    m = _load_or_refuse(bytes(raw), tmp_path)
    if m is not None:  # an unused byte: the parameters passed their checksum
        np.testing.assert_array_equal(m.parameters().data,
                                      fastdl.load(saved[0]).parameters().data)


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                     | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@FUZZ
@given(data=st.data())
def test_fuzz_crafted_metadata(tmp_path, saved, data):
    meta = saved[2]
    paths = [p for p in _paths(meta) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        value = data.draw(_json | st.sampled_from(
            [_DELETE, "Dense", "Residual", "Dropout", "Adam", "SGD", 0, 1, 5, 2**31, -1]))
        try:
            meta = _mutated(meta, path, value)
        except (KeyError, IndexError, TypeError):
            continue
    _load_or_refuse(_write(tmp_path / "j.npz", saved[1], meta).read_bytes(), tmp_path)


def test_fuzz_catches_a_wrong_exception_type(tmp_path, saved, monkeypatch):
    # the fuzz tests' check is real: an error other than ValueError escapes it
    from fastdl.nn import persistence

    def boom(meta):
        raise KeyError("x")
    monkeypatch.setattr(persistence, "_check_meta", boom)
    with pytest.raises(KeyError):
        _load_or_refuse(saved[0].read_bytes(), tmp_path)


def test_struct_of_the_file_is_a_stored_zip(saved):
    # load relies on this: entries stored, so no entry is larger than the file
    with zipfile.ZipFile(saved[0]) as z:
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
    assert struct.unpack("<I", saved[0].read_bytes()[:4])[0] == 0x04034B50


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_trains_as_the_original(how, one_thread):
    # the copies' layers held weight arrays of their own, not views of the copied
    # buffer: the optimizer updated the buffer and the layers never saw it
    import copy
    import pickle

    X, y = blobs()
    a = small_model()
    a.fit(X, y, epochs=1, seed=0, verbose=0, optimizer=optim.SGD(a.parameters(), 0.05, 0.9))
    b = copy.deepcopy(a) if how == "deepcopy" else pickle.loads(pickle.dumps(a))
    assert b.buffer_nbytes() == 0
    ha, hb = (m.fit(X, y, epochs=2, verbose=0) for m in (a, b))
    assert ha.history == hb.history
    np.testing.assert_array_equal(a.parameters().data, b.parameters().data)
    assert b.optimizer.params is b.parameters()


def test_save_into_a_missing_folder_names_the_path(tmp_path):
    path = tmp_path / "missing" / "m.npz"
    # the user's path, not the temporary file's name
    with pytest.raises(FileNotFoundError, match="No such file or directory: .*missing/m.npz"):
        small_model().save(path)


def test_an_optimizer_on_another_backend_than_its_model_round_trips(tmp_path):
    # the file did not say, and load gave it the model's: resumed training took other
    # steps (7e-9 apart) than the uninterrupted run
    X, y = blobs()
    m = nn.Sequential(nn.Dense(X.shape[1], 3), seed=0, backend="numpy")
    m.fit(X, y, optimizer=optim.Adam(m.parameters()), epochs=1, verbose=0, seed=0)
    assert m.optimizer.backend is None
    m.save(tmp_path / "m.npz")
    loaded = fastdl.load(tmp_path / "m.npz")
    assert loaded.backend == "numpy" and loaded.optimizer.backend is None


def test_save_refuses_what_load_could_not_rebuild(tmp_path):
    # each saved, and then load refused the file (the trained model lost)
    class Scale(nn.Layer):
        def forward(self, x):
            return x

        def backward(self, dy, need_dx=True):
            return dy

    m = nn.Sequential(nn.Dense(4, 3), Scale(), seed=0)
    with pytest.raises(ValueError, match="Scale layer is not one of fastdl's"):
        m.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    def nested(depth):
        block = nn.Maxout(2, 2, 2)  # its inner Dense is no nesting (it was counted)
        for _ in range(depth):
            block = nn.Residual(block)
        return block

    nn.Sequential(nested(32), seed=0).save(tmp_path / "deep.npz")  # as deep as load takes
    fastdl.load(tmp_path / "deep.npz")
    with pytest.raises(ValueError, match="nested more than 32 deep"):
        nn.Sequential(nested(33), seed=0)


def test_an_optimizer_load_cannot_restore_is_left_out_with_a_warning(tmp_path):
    class MySGD(optim.SGD):
        pass

    X, y = blobs()
    m = small_model()
    m.fit(X, y, optimizer=MySGD(m.parameters(), lr=0.1), epochs=1, verbose=0, seed=0)
    with pytest.warns(RuntimeWarning, match="MySGD"):
        m.save(tmp_path / "m.npz")
    loaded = fastdl.load(tmp_path / "m.npz")
    assert loaded.optimizer is None
    np.testing.assert_array_equal(loaded.parameters().data, m.parameters().data)

    class NoRate:
        def step(self):
            pass
    with pytest.raises(TypeError, match="optimizer"):
        small_model().fit(X, y, optimizer=NoRate(), epochs=1, verbose=0)
