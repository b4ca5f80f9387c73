"""The command line: ``fastdl info``, ``fastdl train``, ``fastdl bench`` (not timed here:
these tests check that the commands run and report what they promise: every part of a
run, each other library in processes that never import fastdl, the load scenarios'
arithmetic, the usage errors)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import benchmarks, cli
from fastdl.benchmarks import floors, report, runner, specs, suite

TORCH = importlib.util.find_spec("torch") is not None


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


# ------------------------------------------------------------------ a real run
ONLY = "relu fwd+bwd,adam_update_,dense_forward+relu,batch 32"


@pytest.fixture(scope="module")
def tiny_report():
    return benchmarks.run(tiny=True, only=ONLY, rounds=1, process_rounds=1, sample=0.001,
                          pre=0.0, epochs=1, startup=False, scenarios=False, sklearn=False,
                          progress=False)


def test_bench_report_has_every_part(tiny_report, tmp_path):
    r = tiny_report
    names = [d["name"] for d in r["rows"]]
    assert names == [n for n in suite.kernel_names("tiny", fastdl.backends(), ONLY)]
    for d in r["rows"]:
        assert set(d["median_s"]) >= {"numpy", "numba", "cython"}
        assert d["best"] in ("numba", "cython") and d["best_vs_reference"] > 0
        assert ("torch" in d["median_s"]) == TORCH
        assert "gbps" in d or "gflops" in d
        if d["group"] == "dense":  # each competitor timed against the bare matmul, paired
            assert set(d["paired_vs_baseline"]) == set(d["median_s"]) - {"torch"}
        if d["group"] in ("activation", "optimizer"):
            assert d["floor"]["median_s"] > 0 and d["floor"]["best_vs_floor"] > 0
    (t,) = r["training"]
    assert t["batch"] == 32 and set(t["median_s"]) >= {"numba", "cython"}
    assert t["floor"]["best_vs_floor"] > 0 and ("best_vs_torch" in t) == TORCH
    m = r["machine"]
    assert m["cpu"]["model"] and m["cpu"]["flags"] and m["versions"]["fastdl"]
    assert m["environment_of_children"]["OPENBLAS_CORETYPE"] is None
    assert {t["target"].split(":")[0] for t in r["targets"]} >= {t["name"]}
    text = benchmarks.format_table(r)
    assert "vs ref" in text and "(floor)" in text and "paired" in text and "targets:" in text
    if TORCH:  # beside the vs-PyTorch target, the least ratio the products alone allow
        (vs,) = [x for x in r["targets"] if x["target"] == f"{t['name']}: fastdl / PyTorch"]
        assert vs["bound"] == pytest.approx(t["floor"]["median_s"] / t["median_s"]["torch"])
        assert f"the bare matrix products alone: {vs['bound']:.3f}" in text
    path = tmp_path / "b.json"
    path.write_text(json.dumps(r, default=float))
    page = subprocess.run([sys.executable, "-m", "fastdl.benchmarks.report", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert page.returncode == 0, page.stderr
    for part in ("# Benchmarks", "## Machine", "## Kernels", "## Training", names[0], t["name"]):
        assert part in page.stdout


@pytest.mark.skipif(not TORCH, reason="PyTorch is not installed")
def test_other_libraries_run_in_processes_without_fastdl():
    name = suite.kernel_names("tiny", ["numpy"], "relu fwd+bwd")[0]
    jobs = suite._kernel_jobs([name], "tiny", False, None, 1, 0.001, 0.0, True)
    assert runner.run_json(jobs["torch"])["fastdl_imported"] is False
    assert runner.run_json(jobs["fastdl"])["fastdl_imported"] is True
    out = runner.run_json(suite._mlp("torch", 32, 64, 1))
    assert out["fastdl_imported"] is False and out["results"]["torch"]["samples"][0] > 0


def test_bench_runs_without_torch(monkeypatch):
    monkeypatch.setattr(suite, "torch_available", lambda: False)
    r = benchmarks.run(tiny=True, only="sigmoid fwd+bwd", rounds=1, process_rounds=1,
                       sample=0.001, pre=0.0, startup=False, scenarios=False, sklearn=False,
                       progress=False)
    assert r["torch"] is None and "not installed" in r["torch_note"]
    assert r["rows"] and all("torch" not in d["median_s"] for d in r["rows"])
    assert "not installed" in benchmarks.format_table(r)


# ----------------------------------------------- scenarios, from made-up processes
def _fake_job(argv):
    """What a worker would print, from its command line: fastdl's epoch takes 1 s quiet,
    2.5 s beside a busy process (its count adapted to 1), 1 thread 2.4 s; PyTorch 2 s
    quiet, 6 s busy."""
    arg = dict(zip(argv[2::2], argv[3::2]))
    busy = _fake_job.busy
    if "worker_kernels.py" in argv[1]:
        row = json.loads(arg["--rows"])[0]
        return {"rows": {row: {"cython": {"samples": [1.0], "paired": [1.02]}}},
                "preimport": arg["--preimport"], "threads": {}}
    lib = arg["--library"]
    if lib == "both":
        return {"results": {"fastdl": {"samples": [1.1]}, "torch": {"samples": [2.2]}},
                "threads": {}}
    if lib == "torch":
        return {"results": {"torch": {"samples": [2.0 if not busy else 6.0]}}, "threads": {}}
    one = arg["--threads"] == "1"
    t = (1.6 if one else 1.0) if not busy else (2.4 if one else 2.5)
    if arg["--preimport"] == "fastdl":
        t *= 1.1
    return {"results": {"cython": {"samples": [t]}},
            "threads": {"fastdl": {"requested": 1 if one else 2, "adaptive": not one,
                                   "effective": 1 if one or busy else 2}},
            "preimport": arg["--preimport"]}


def test_scenarios_report_ratios_to_the_quiet_run(monkeypatch):
    import contextlib

    @contextlib.contextmanager
    def busy(n):
        _fake_job.busy = n
        yield []
        _fake_job.busy = 0
    _fake_job.busy = 0
    monkeypatch.setattr(runner, "run_json", lambda argv, env=None, timeout=None: _fake_job(argv))
    monkeypatch.setattr(runner, "busy", busy)
    sc = suite.load_scenarios(64, 1, 2, None, None, torch_ok=True)
    rows = {d["scenario"]: d for d in sc["rows"]}
    assert list(rows) == ["quiet", "1 busy process", "2 busy processes"]
    assert rows["quiet"]["vs_quiet"] == {"fastdl": 1.0, "fastdl 1 thread": 1.0, "torch": 1.0}
    one = rows["1 busy process"]
    assert one["vs_quiet"]["fastdl"] == 2.5 and one["vs_quiet"]["torch"] == 3.0
    assert one["fastdl_vs_1_thread"] == pytest.approx(2.5 / 2.4)
    assert one["fastdl_threads_at_the_end"] == [1, 1]
    assert sc["together"]["vs_alone"] == {"fastdl": 1.1, "torch": 1.1}
    order = suite.import_orders("tiny", False, None, 1, 0.001, 0.0, 64, 1, 1, None, None)
    assert order["mlp_vs_best"]["fastdl"] == pytest.approx(1.1)
    assert order["dense_paired_vs_matmul"]["numpy"] == 1.02
    got = {t["target"]: t for t in report.targets({"scenarios": sc, "import_order": order,
                                                    "machine": {"cpu": {"count": 2}}})}
    met = {k: t["met"] for k, t in got.items()}
    assert met["1 busy process: fastdl / its quiet time"] is False   # 2.5 > 2.0
    # the estimate beside each load target: one thread at its share of 2 CPUs
    q = rows["quiet"]["median_s"]
    assert got["1 busy process: fastdl / its quiet time"]["bound"] == \
        pytest.approx(q["fastdl 1 thread"] / q["fastdl"])
    assert got["2 busy processes: fastdl / its quiet time"]["bound"] == \
        pytest.approx(1.5 * q["fastdl 1 thread"] / q["fastdl"])
    assert met["2 busy processes: fastdl / its quiet time"] is True  # 2.5 <= 3.0
    assert met["1 busy process: fastdl / fastdl on 1 thread"] is True


def test_busy_processes_start_and_stop():
    with runner.busy(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)


def test_children_get_no_openblas_kernel_variables(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    assert "OPENBLAS_CORETYPE" not in runner.child_env()
    assert "OPENBLAS_L2_SIZE" not in runner.child_env()
    assert runner.child_env(keep_openblas=True)["OPENBLAS_CORETYPE"] == "Haswell"


def test_sklearn_row_runs_each_library_in_its_own_process():
    row = suite.sklearn_row(quick=True, threads=None)
    if row is None:
        pytest.skip("fastdl.sklearn does not import")
    assert set(row.jobs) == {"scikit-learn", "fastdl"}
    assert all(argv[1].endswith(".py") for argv in row.jobs.values())  # by path, not -m
    out = {"fit_seconds": 1.5, "accuracy": 0.9}
    assert row.read(out, "fastdl") == {"fastdl": {"samples": [1.5], "accuracy": [0.9]}}


# ------------------------------------------------------------------ the rows
def test_every_registry_op_has_a_bench_row():
    from fastdl._registry import OPS

    conv = "conv2d_forward" in OPS
    for size in ("tiny", "quick", "full"):
        covered = {op for s in specs.kernel_specs(size, conv) for op in s["ops"]}
        assert covered == set(OPS), sorted(set(OPS) ^ covered)


def test_both_sides_of_a_row_get_the_same_arrays():
    for s in specs.kernel_specs("tiny"):
        a, b = specs.make_data(s), specs.make_data(s)
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_torch_preallocated_rows_compute_what_fastdl_does():
    # PyTorch's activation and softmax rows go through ATen's out= forms: each must
    # compute the operation of fastdl's row (an argument in the wrong slot would not)
    torch = pytest.importorskip("torch")
    import fastdl.functional as F
    from fastdl.benchmarks import torch_rows
    from fastdl.benchmarks.rows import ACT_PARAMS

    checked = 0
    for spec in specs.kernel_specs("tiny"):
        if spec["group"] not in ("activation", "softmax"):
            continue
        d = specs.make_data(spec)
        x, dy = d["x"], d["dy"]
        if spec["group"] == "activation":
            name, kw = spec["act"], ACT_PARAMS.get(spec["act"], {})
            y = getattr(F, name)(x, backend="numpy", **kw)
            dx = getattr(F, name + "_backward")(dy, x, backend="numpy", **kw)
        else:
            name = spec["fn"]
            y = getattr(F, name)(x, backend="numpy")
            dx = getattr(F, name + "_backward")(dy, y, backend="numpy")
        f = torch_rows.competitor(torch, spec)
        f()
        for got, want in zip(f.outputs, (y, dx)):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5,
                                       err_msg=spec["name"])
        checked += 1
    assert checked == 9


def test_floor_kernels_move_what_they_claim():
    # the floors must touch every byte they are credited with (else a floor is a lie)
    k = floors.kernels()
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
    k = floors.kernels()
    x = np.arange(n + offset, dtype=np.float32)[offset:]
    y = np.full(n + offset, -1, np.float32)[offset:]
    k["map1_nt"](x, y, np.float32(1))
    np.testing.assert_array_equal(y, x + 1)
    z = np.full(n + offset, -1, np.float32)[offset:]
    k["map2_nt"](x, y, z)
    np.testing.assert_array_equal(z, 2 * x + 1)


def test_activation_floor_streams_where_the_activations_do(monkeypatch):
    calls = []
    monkeypatch.setattr(floors, "kernels", lambda: {
        name: (lambda *a, name=name: calls.append(name))
        for name in ("map1", "map2", "map1_nt", "map2_nt")})
    from fastdl._kernels.numba._stream import STREAM_MIN_BYTES, STREAMS
    floors.activation(1000)()
    assert calls == ["map1", "map2"]
    calls.clear()
    floors.activation(STREAM_MIN_BYTES // 4)()
    assert calls == (["map1_nt", "map2_nt"] if STREAMS else ["map1", "map2"])


@pytest.mark.parametrize("name, arrays", [("adam", 4), ("sgd", 3)])
def test_update_floor_reads_real_memory(name, arrays):
    # an array that is only read and never written (the gradient) must not be calloc's
    # zero page: that page reads from cache, so the Adam floor came out at 0.88x the
    # real one and a target below the real floor could look reachable
    f = floors.update(name, 1000, arrays)
    bufs = [c.cell_contents for c in f.__closure__ if isinstance(c.cell_contents, list)][0]
    assert len(bufs) == arrays
    assert all(np.all(b != 0) for b in bufs)


# ------------------------------------------------------------------ the command
@pytest.mark.parametrize("argv, option", [
    (["--rounds", "0"], "--rounds"), (["--rounds", "-1"], "--rounds"),
    (["--process-rounds", "0"], "--process-rounds"), (["--threads", "x"], "--threads"),
    # more than fastdl allows: a worker's traceback after minutes of the run
    (["--threads", "100000"], "--threads"), (["--rounds", "9" * 400], "--rounds"),
])
def test_bench_option_values_are_usage_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", *argv])
    assert e.value.code == 2 and option in capsys.readouterr().err


@pytest.mark.parametrize("argv, option", [
    (["--only", "nomatch"], "--only"),
    (["--json", "/nonexistent-folder/b.json"], "--json"),
    (["--plot", "/nonexistent-folder/b.png"], "--plot"),
    # a format matplotlib does not write, and a folder where no file can be created (os.access
    # said yes for /proc as root): both failed only after the whole run
    (["--plot", "b.bogus"], "--plot"),
    (["--json", "/proc/b.json"], "--json"),
    # these ran the whole benchmark, then wrote nothing and exited 0 (''), wrote the plot
    # over the JSON (one path), failed with a traceback (a trailing separator), or
    # would replace a device
    (["--json", ""], "--json"), (["--plot", ""], "--plot"),
    (["--json", "same.png", "--plot", "same.png"], "--plot"),
    (["--json", "new/"], "--json"), (["--json", "/dev/null"], "--json"),
    # a name longer than the file system takes; an --only that names no row at all
    (["--json", "a" * 300 + ".json"], "--json"), (["--only", ""], "--only"),
    (["--only", " , "], "--only"),
])
def test_bench_usage_errors_come_before_any_benchmark(argv, option, capsys, monkeypatch,
                                                      tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(benchmarks, "run", lambda **kw: pytest.fail("benchmarked"))
    if "--plot" in argv:
        pytest.importorskip("matplotlib")
    assert cli.main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert option in err and "error" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_bench_results_are_written_whole_or_not_at_all(capsys, monkeypatch, tmp_path):
    # json.dump into the open file left 4 KiB of broken JSON over the old results on a
    # full disk, and a traceback
    monkeypatch.setattr(benchmarks, "run", lambda **kw: {"rows": [], "machine": {}})
    monkeypatch.setattr(benchmarks, "format_table", lambda report: "table")
    path = tmp_path / "b.json"
    path.write_text('{"old": 1}')

    def full(fd):  # the disk fills as the bytes go out
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert cli.main(["bench", "--json", str(path)]) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err == (f"fastdl bench: error: cannot write the results to {str(path)!r}: "
                   "No space left on device\n")
    assert json.loads(path.read_text()) == {"old": 1} and os.listdir(tmp_path) == ["b.json"]


def test_bench_cli_subprocess_json(tmp_path):
    path = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "fastdl.cli", "bench", "--quick", "--only",
                        "sigmoid", "--rounds", "1", "--no-startup", "--no-torch",
                        "--no-sklearn", "--json", str(path)],
                       capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "sigmoid fwd+bwd" in r.stdout
    d = json.loads(path.read_text())
    assert d["rows"][0]["best_vs_reference"] > 0 and d["machine"]["cpu"]["flags"]
    assert d["command"].startswith("fastdl bench") and "--quick" in d["command"]
