"""Writes that lose nothing (fastdl/_atomic.py): models, plots, benchmark JSON."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastdl
from fastdl import _atomic, nn


def small_model():
    return nn.Sequential(nn.Dense(3, 2), seed=0)


def test_a_write_replaces_the_old_file_at_once(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    assert _atomic.write_atomic(p, lambda fh: fh.write(b"new")) == str(p)
    assert p.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.bin"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named"])
def test_a_replaced_file_keeps_its_mode_and_links_are_written_through(tmp_path, monkeypatch,
                                                                      unnamed):
    # a private 0600 model saved over became 0644 (the umask's), and a symbolic link was
    # replaced by a file of its own
    if not unnamed:  # the fallbacks: a named temporary, and a named copy of an unnamed one
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    p = tmp_path / "private.npz"
    p.write_bytes(b"old")
    p.chmod(0o600)
    link = tmp_path / "link.npz"
    link.symlink_to(p.name)
    _atomic.write_atomic(p, lambda fh: fh.write(b"new"))
    assert p.read_bytes() == b"new" and (p.stat().st_mode & 0o777) == 0o600
    p.chmod(0o640)
    _atomic.write_atomic(link, lambda fh: fh.write(b"newer"))
    assert link.is_symlink() and os.readlink(link) == p.name
    assert p.read_bytes() == b"newer" and (p.stat().st_mode & 0o777) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "private.npz"]
    fresh = tmp_path / "fresh.bin"  # a new file: the umask decides, as open()
    _atomic.write_atomic(fresh, lambda fh: fh.write(b"x"))
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failing_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")

    def fails(fh):
        fh.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        _atomic.write_atomic(p, fails)
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_a_killed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    # a SIGKILL mid-write left a .fastdl-*.tmp behind every time (18 of 25 kills)
    p = tmp_path / "m.npz"
    small_model().save(p)
    before = p.read_bytes()
    code = textwrap.dedent(f"""
        import os, signal
        from fastdl import _atomic
        def write(fh):
            fh.write(b"x" * 100000)
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        _atomic.write_atomic({str(p)!r}, write)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # the temporary was unnamed (O_TMPFILE)
    fastdl.load(p)


@pytest.mark.parametrize("bad, match", [
    ("", "expected a file name, got ''"),
    ("sub/", "names a folder"),
    (".", "names a folder"),
])
def test_paths_that_name_no_file_are_refused(tmp_path, monkeypatch, bad, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=match):
        small_model().save(bad)
    assert sorted(os.listdir(tmp_path)) == ["sub"] and os.listdir(tmp_path / "sub") == []


def test_a_fifo_or_device_is_refused_not_replaced(tmp_path):
    # the final rename replaced them with a regular file (as root: /dev/null itself)
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    for target in (fifo, "/dev/null"):
        with pytest.raises(ValueError, match="not a regular file"):
            small_model().save(target)
    assert not os.path.isfile(fifo) and os.path.exists(fifo)
    assert not os.path.isfile("/dev/null")
    with pytest.raises(ValueError, match="is a folder"):
        small_model().save(tmp_path)


def test_bytes_paths_and_the_returned_path(tmp_path):
    p = os.fsencode(tmp_path / "m.npz")  # a TypeError from the temporaries' clean-up
    assert small_model().save(p) == os.fsdecode(p)
    fastdl.load(p)


def test_a_failed_write_names_the_users_path(tmp_path):
    target = tmp_path / "missing" / "m.npz"
    with pytest.raises(FileNotFoundError) as info:
        small_model().save(target)
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)


def test_history_plot_is_written_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    X = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    h = small_model().fit(X, np.arange(20) % 2, epochs=2, verbose=0, seed=0)
    p = tmp_path / "h.png"
    assert h.plot(p) == str(p) and p.read_bytes()[:4] == b"\x89PNG"
    os.mkfifo(tmp_path / "f.png")
    with pytest.raises(ValueError, match="not a regular file"):
        h.plot(tmp_path / "f.png")
    assert sorted(os.listdir(tmp_path)) == ["f.png", "h.png"]


def test_load_refuses_what_is_not_a_regular_file(tmp_path):
    # a FIFO blocked open() for ever; /dev/zero read gigabytes into a MemoryError
    os.mkfifo(tmp_path / "m.npz")
    for target in (tmp_path / "m.npz", "/dev/zero"):
        with pytest.raises(ValueError, match="not a regular file"):
            fastdl.load(target)


def test_load_messages_stay_short(tmp_path):
    # a 3 MB loss string in the metadata made a 3 MB message
    import json
    import zipfile

    p = tmp_path / "m.npz"
    small_model().save(p)
    with np.load(p) as f:
        entries = {k: f[k] for k in f.files}
    meta = json.loads(entries["meta"].tobytes())
    meta["loss"] = "x" * 3_000_000
    entries["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with zipfile.ZipFile(p, "w") as z:
        for k, v in entries.items():
            with z.open(k + ".npy", "w") as fh:
                np.lib.format.write_array(fh, v)
    with pytest.raises(ValueError, match="metadata: loss") as info:
        fastdl.load(p)
    assert len(str(info.value)) < 1200
