"""The command line: ``fastdl info``, ``fastdl train``, ``fastdl bench`` (not timed here:
these tests check that the commands run and report what they promise)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import benchmarks, cli


def test_info_prints_json(capsys):
    assert cli.main(["info"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["backends"] == ["numpy", "numba", "cython"]


def test_train_runs_and_saves(tmp_path, capsys):
    out = tmp_path / "digits.npz"
    assert cli.main(["train", "--epochs", "4", "--quiet", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out test accuracy" in text
    assert "confusion matrix" in text and "precision" in text and "recall" in text
    acc = float(text.split("held-out test accuracy:")[1].split()[0])
    assert acc > 0.8
    model = fastdl.load(out)
    assert model.predict(np.zeros((2, 64), np.float32)).shape == (2,)


def test_train_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    cli.main(["train", "--epochs", "2", "--quiet", "--output", str(tmp_path / "m.npz"),
              "--plot", str(png), "--backend", "numba", "--optimizer", "sgd",
              "--schedule", "step"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _quick_report(**kw):
    return benchmarks.run(quick=True, rounds=1, startup=False, progress=False, sample=0.001,
                          pre=0.0, tiny=True, **kw)


def test_bench_quick_json_has_every_row_and_ratio(tmp_path):
    torch_present = benchmarks._torch() is not None
    report = _quick_report()
    names = [r.name for r in benchmarks.build_rows(True, fastdl.backends(), None, tiny=True)]
    # the tiny rows are the quick rows at other sizes: same groups, same competitors
    quick = benchmarks.build_rows(True, fastdl.backends(), None)
    assert [r.group for r in quick] == [r.group for r in benchmarks.build_rows(
        True, fastdl.backends(), None, tiny=True)]
    assert [d["name"] for d in report["rows"]] == names
    for d in report["rows"]:
        if d["group"] == "threading":
            assert set(d["median_s"]) == {"gemm only", "numba only", "interleaved"}
            continue
        assert set(d["median_s"]) >= {"numpy", "numba", "cython"}
        assert d["best"] in ("numba", "cython")
        assert d["best_vs_reference"] > 0
        assert ("best_vs_torch" in d) == (torch_present and d["group"] != "augment")
        assert "gbps" in d or "gflops" in d
        if d["group"] == "dense":  # each competitor timed against the bare matmul, paired
            assert set(d["paired_vs_baseline"]) == set(d["median_s"])
            assert all(v > 0 for v in d["paired_vs_baseline"].values())
        floored = d["group"] == "activation" or d["name"].startswith(("adam_", "sgd_"))
        assert ("floor" in d) == floored, d["name"]
        if floored:
            assert d["floor"]["median_s"] > 0 and d["floor"]["best_vs_floor"] > 0
            assert ("vs_torch" in d["floor"]) == torch_present
    text = benchmarks.format_table(report)
    assert "vs ref" in text and "(floor)" in text and "paired" in text
    path = tmp_path / "b.json"
    with open(path, "w") as fh:
        json.dump(report, fh, default=float)


def test_every_registry_op_has_a_bench_row():
    from fastdl._registry import OPS

    for kw in ({"tiny": True}, {}):  # the tiny (test) rows and the --quick ones
        rows = benchmarks.build_rows(True, fastdl.backends(), None, **kw)
        covered = {op for r in rows for op in r.ops}
        assert covered <= set(OPS), covered - set(OPS)
        assert covered == set(OPS), sorted(set(OPS) - covered)


def test_floor_kernels_move_what_they_claim():
    # the floors must touch every byte they are credited with (else a floor is a lie)
    k = benchmarks._floors()
    x = np.arange(100_001, dtype=np.float32)
    y = np.zeros_like(x)
    k["map1"](x, y, np.float32(1))
    np.testing.assert_array_equal(y, x + 1)
    k["map2"](x, y, y)
    np.testing.assert_array_equal(y, 2 * x + 1)
    p, g, m, v = x.copy(), np.ones_like(x), x.copy(), np.zeros_like(x)
    k["adam"](p, g, m, v)
    for a, want in ((p, x + 1), (m, x + 1), (v, np.ones_like(x))):
        np.testing.assert_array_equal(a, want)
    w, vel = x.copy(), np.ones_like(x)
    k["sgd"](w, g, vel)
    np.testing.assert_array_equal(vel, np.full_like(x, 2))
    np.testing.assert_array_equal(w, x + 2)


@pytest.mark.parametrize("n", [1, 63, 65, 100_001])
@pytest.mark.parametrize("offset", [0, 1, 5])
def test_streaming_floor_kernels_write_every_element(n, offset):
    # unaligned starts (a head before the first 32-byte boundary), partial blocks and
    # several chunks: every element written once, with the right value
    k = benchmarks._floors()
    x = np.arange(n + offset, dtype=np.float32)[offset:]
    y = np.full(n + offset, -1, np.float32)[offset:]
    k["map1_nt"](x, y, np.float32(1))
    np.testing.assert_array_equal(y, x + 1)
    z = np.full(n + offset, -1, np.float32)[offset:]
    k["map2_nt"](x, y, z)
    np.testing.assert_array_equal(z, 2 * x + 1)


def test_activation_floor_streams_where_the_activations_do(monkeypatch):
    calls = []
    monkeypatch.setattr(benchmarks, "_floors", lambda: {
        name: (lambda *a, name=name: calls.append(name))
        for name in ("map1", "map2", "map1_nt", "map2_nt")})
    from fastdl._kernels.numba._stream import STREAM_MIN_BYTES, STREAMS
    benchmarks._activation_floor(1000)()
    assert calls == ["map1", "map2"]
    calls.clear()
    benchmarks._activation_floor(STREAM_MIN_BYTES // 4)()
    assert calls == (["map1_nt", "map2_nt"] if STREAMS else ["map1", "map2"])


@pytest.mark.parametrize("name, arrays", [("adam", 4), ("sgd", 3)])
def test_update_floor_reads_real_memory(name, arrays):
    # an array that is only read and never written (the gradient) must not be calloc's
    # zero page: that page reads from cache, so the Adam floor came out at 0.88x the
    # real one and a target below the real floor could look reachable
    f = benchmarks._update_floor(name, 1000, arrays)
    bufs = [c.cell_contents for c in f.__closure__ if isinstance(c.cell_contents, list)][0]
    assert len(bufs) == arrays
    assert all(np.all(b != 0) for b in bufs)


def test_bench_runs_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    report = _quick_report(only="relu fwd+bwd,adam")
    assert report["torch"] is None and "not installed" in report["torch_note"]
    assert report["rows"] and all("torch" not in d["median_s"] for d in report["rows"])
    assert "not installed" in benchmarks.format_table(report)


def test_bench_cli_subprocess_json(tmp_path):
    path = tmp_path / "b.json"
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "fastdl.cli", "bench", "--quick", "--only",
                        "sigmoid", "--rounds", "1", "--no-startup", "--no-torch", "--json",
                        str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "sigmoid fwd+bwd" in r.stdout
    d = json.loads(path.read_text())
    assert d["rows"][0]["best_vs_reference"] > 0
