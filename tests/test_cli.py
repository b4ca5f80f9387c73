"""``fastdl`` and ``fastdl train`` as a user meets them: bad values are usage errors
(exit 2, one line naming the option, no traceback), output paths are checked before
training, every option states its default, and a run leaves files only where it says."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastdl
from fastdl import _train_plot, cli, nn

ROOT = Path(__file__).resolve().parents[1]
FASTDL = Path(sys.executable).parent / "fastdl"  # the console script of this install


def run(argv, capsys):
    """(exit status, stdout, stderr) of ``fastdl argv`` in this process."""
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse's usage errors, --help, --version
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_usage_error(status, out, err, *names):
    assert status == 2, (status, err)
    assert "Traceback" not in err and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line
    for name in names:
        assert name in err, err


@pytest.fixture
def no_training(monkeypatch):
    """Refused commands must stop before any training starts."""
    def fit(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(nn.Sequential, "fit", fit)


BAD = [("--epochs", "0"), ("--epochs", "1.5"), ("--epochs", "ten"), ("--lr", "-1"),
       ("--lr", "0"), ("--lr", "nan"), ("--lr", "inf"), ("--hidden", "abc"), ("--hidden", "0"),
       ("--hidden", "64,,32"), ("--hidden", "-5"), ("--threads", "-2"), ("--threads", "0"),
       ("--threads", "100000"), ("--hidden", "99999999999999999999"),
       ("--batch-size", "0"), ("--dropout", "-0.5"), ("--dropout", "1"), ("--patience", "0"),
       ("--momentum", "1.5"), ("--momentum", "-0.1"), ("--weight-decay", "-1"),
       ("--seed", "-1"), ("--seed", "x"), ("--optimizer", "rmsprop"), ("--schedule", "linear"),
       ("--backend", "tpu"), ("--model", "resnet"),
       # beyond float's range: OverflowError tracebacks (exit 1)
       ("--epochs", "1" + "0" * 320), ("--batch-size", "9" * 400), ("--patience", "1" * 330),
       # a seed fit took but a saved model could not hold (the model would not load)
       ("--seed", str(2**130))]


@pytest.mark.parametrize("option,value", BAD, ids=[f"{o}={v}" for o, v in BAD])
def test_bad_value_is_a_usage_error(option, value, capsys, no_training):
    status, out, err = run(["train", option, value], capsys)
    assert_usage_error(status, out, err, option, repr(value) if len(value) <= 40 else "...")


def test_epochs_zero_with_exponential_schedule(capsys, no_training):
    # was ZeroDivisionError (the decay rate is 3 / epochs)
    status, out, err = run(["train", "--epochs", "0", "--schedule", "exponential"], capsys)
    assert_usage_error(status, out, err, "--epochs")


@pytest.mark.parametrize("argv", [[], ["nope"], ["--nope"]])
def test_bad_command_is_a_usage_error(argv, capsys):
    status, out, err = run(argv, capsys)
    assert_usage_error(status, out, err, "fastdl: error:")


def test_unavailable_backend(monkeypatch, capsys, no_training):
    monkeypatch.setattr(fastdl, "backends", lambda: ("numpy",))
    status, out, err = run(["train", "--backend", "cython"], capsys)
    assert_usage_error(status, out, err, "--backend", "not available")


def test_version(capsys):
    status, out, err = run(["--version"], capsys)
    assert status == 0 and out == f"fastdl {fastdl.__version__}\n"


def test_every_train_option_has_help_with_its_default(capsys):
    sub = next(a for a in cli._parser()._actions if a.dest == "cmd")
    train = sub.choices["train"]
    options = [a for a in train._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 18
    for a in options:
        assert a.help and "(default:" in a.help, a.option_strings
    status, out, _ = run(["train", "--help"], capsys)
    assert status == 0
    text = " ".join(out.split())  # help lines are wrapped
    for shown in ("(default: 60)", "(default: 256,128)", "(default: 0.002)",
                  "(default: cosine)", "(default: runs/"):
        assert shown in text


def test_top_level_help_lists_commands(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    assert all(c in out for c in ("info", "train", "bench", "--version"))


def _read_only(folder):
    try:
        with tempfile.TemporaryFile(dir=folder):
            return False
    except OSError:
        return os.path.isdir(folder)


@pytest.mark.parametrize("case", ["missing folder", "folder", "read-only", "same file",
                                  "format", "trailing separator", "empty", "fifo", "pgf",
                                  "long name", "long plot name"])
def test_output_paths_checked_before_training(case, tmp_path, capsys, no_training):
    missing = str(tmp_path / "missing" / "m.npz")
    argv = {"missing folder": ["--output", missing],
            "folder": ["--output", str(tmp_path)],
            "read-only": ["--plot", "/sys/curves.png", "--output", str(tmp_path / "m.npz")],
            "same file": ["--output", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "m.npz")],
            "format": ["--output", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "c.xyz")],
            # these trained, then failed (a trailing separator; a listed format that
            # needs LaTeX) or replaced a FIFO (/dev/null as root) with the model
            "trailing separator": ["--output", str(tmp_path / "new") + os.sep],
            "empty": ["--output", ""],
            "fifo": ["--output", str(tmp_path / "fifo")],
            "pgf": ["--output", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "c.pgf")],
            "long name": ["--output", str(tmp_path / ("a" * 300 + ".npz"))],
            "long plot name": ["--output", str(tmp_path / "m.npz"),
                               "--plot", str(tmp_path / ("a" * 300 + ".png"))],
            }[case]
    if case == "fifo":
        os.mkfifo(tmp_path / "fifo")
    if case == "pgf" and (shutil.which("xelatex") or shutil.which("lualatex")):
        pytest.skip("LaTeX is installed: .pgf can be written")
    if case == "read-only" and not _read_only("/sys"):
        pytest.skip("/sys is not a read-only folder here")
    if case in ("read-only", "same file", "format", "pgf"):
        pytest.importorskip("matplotlib")
    status, out, err = run(["train", *argv], capsys)
    assert status == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("fastdl train: error: argument --")
    path = argv[-1] if case != "read-only" else "/sys/curves.png"
    assert repr(path) in err or path.endswith((".xyz", ".pgf"))
    assert sorted(os.listdir(tmp_path)) == (["fifo"] if case == "fifo" else [])


def test_default_folder_not_left_behind_when_refused(tmp_path, monkeypatch, capsys,
                                                     no_training):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(["train", "--plot", str(tmp_path / "nowhere" / "c.png")], capsys)
    assert status == 2 and "--plot" in err
    assert os.listdir(tmp_path) == []


def test_a_refused_run_leaves_runs_to_a_run_beside_it(tmp_path, monkeypatch, capsys,
                                                     no_training):
    # a refused run removed the runs/ folder it had made while another run was using
    # it: that run's model was lost (or, with a file in it already, a traceback)
    monkeypatch.chdir(tmp_path)
    refuse = cli._check_outputs

    def other_run_writes_first(output, plot):
        (tmp_path / "runs" / "other.npz").write_bytes(b"x")  # the run beside this one
        refuse(output, plot)

    monkeypatch.setattr(cli, "_check_outputs", other_run_writes_first)
    status, _, err = run(["train", "--plot", str(tmp_path / "nowhere" / "c.png")], capsys)
    assert status == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert os.listdir(tmp_path / "runs") == ["other.npz"]


def test_the_default_folder_is_made_again_before_saving(tmp_path, monkeypatch, capsys):
    # the folder a refused run beside this one removed while this one trained
    monkeypatch.chdir(tmp_path)
    fit = nn.Sequential.fit

    def fit_then_folder_gone(self, *args, **kwargs):
        h = fit(self, *args, **kwargs)
        os.rmdir(tmp_path / "runs")
        return h

    monkeypatch.setattr(nn.Sequential, "fit", fit_then_folder_gone)
    status, out, err = run(["train", "--epochs", "1", "--quiet"], capsys)
    assert status == 0, err
    assert (tmp_path / "runs" / "digits-mlp.npz").exists()


def test_save_failure_names_the_users_path(tmp_path, monkeypatch, capsys):
    def save(self, path):
        raise OSError(28, "No space left on device", str(tmp_path / ".fastdl-x1.tmp"))
    monkeypatch.setattr(nn.Sequential, "save", save)
    out_path = tmp_path / "m.npz"
    status, out, err = run(["train", "--epochs", "1", "--quiet", "--backend", "numpy",
                            "--output", str(out_path)], capsys)
    assert status == 1
    assert "held-out test accuracy" in out  # the results were printed before the save
    assert err == (f"fastdl train: error: cannot write the model to {str(out_path)!r}: "
                   "No space left on device\n")


def test_diverged_training_is_a_failure_and_saves_nothing(tmp_path, capsys):
    # it printed accuracy 0.10 with loss nan, saved the NaN model and exited 0
    out_path = tmp_path / "m.npz"
    status, out, err = run(["train", "--epochs", "2", "--quiet", "--lr", "1e6",
                            "--output", str(out_path)], capsys)
    assert status == 1 and "Traceback" not in err
    assert "diverged" in err and "--lr" in err
    assert not out_path.exists() and "accuracy" not in out


def test_divergence_before_any_best_epoch_is_reported(tmp_path, capsys):
    # with --patience 1 the stopper stopped with no best epoch: a TypeError traceback
    for argv in (["--lr", "1e20"], ["--weight-decay", "1e308"]):
        out_path = tmp_path / "m.npz"
        status, out, err = run(["train", "--epochs", "3", "--patience", "1", "--quiet",
                                "--output", str(out_path), *argv], capsys)
        assert status == 1 and "Traceback" not in err, err
        assert "error: training diverged" in err and argv[0] in err
        assert not out_path.exists()


def test_progress_one_line_per_epoch_when_not_a_terminal(tmp_path, capsys):
    status, out, err = run(["train", "--epochs", "3", "--patience", "5", "--backend", "numpy",
                            "--output", str(tmp_path / "m.npz")], capsys)
    assert status == 0
    assert "\r" not in err
    lines = err.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val_loss" in ln for ln in lines)
    status, out, err = run(["train", "--epochs", "1", "--quiet", "--backend", "numpy",
                            "--output", str(tmp_path / "m.npz")], capsys)
    assert status == 0 and err == ""


def test_plot_beside_the_model_with_integer_epochs_and_caption(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    model_path = tmp_path / "m.npz"
    status, out, err = run(["train", "--epochs", "2", "--quiet", "--backend", "numpy",
                            "--output", str(model_path), "--plot"], capsys)
    assert status == 0, err
    png = tmp_path / "m.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot saved to {png}" in out

    hist = type("H", (), {"epoch": [0, 1, 2],
                          "history": {"loss": [1.0, 0.5, 0.4], "val_loss": [0.9, 0.4, 0.3],
                                      "accuracy": [0.5, 0.8, 0.9],
                                      "val_accuracy": [0.6, 0.85, 0.95]}})()
    args = cli._parser().parse_args(["train"])
    caption = cli._conditions(args)
    assert "dropout p=0.1" in caption and "augmentation" in caption
    assert "training loss can sit above" in caption
    fig = _train_plot.figure(hist, np.eye(10, dtype=np.int64), "title", caption, best=1)
    try:
        for ax in fig.axes[:2]:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert caption.split()[0] in " ".join(t.get_text() for t in fig.texts)
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    plain = cli._conditions(cli._parser().parse_args(["train", "--no-augment",
                                                      "--dropout", "0"]))
    assert "dropout" not in plain and "augmentation" not in plain


def test_entry_point_usage_error():
    r = subprocess.run([str(FASTDL), "train", "--epochs", "0"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "--epochs" in r.stderr, r.stderr


def test_train_writes_only_under_runs(tmp_path):
    # a real run of the console script in a fresh folder, output not a terminal: the
    # model goes to runs/ (which .gitignore covers), progress is one line per epoch
    r = subprocess.run([str(FASTDL), "train", "--epochs", "2", "--threads", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "held-out test accuracy" in r.stdout
    assert "model saved to runs/digits-mlp.npz" in r.stdout
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert files == ["runs", os.path.join("runs", "digits-mlp.npz")]
    assert "\r" not in r.stderr and r.stderr.count("\n") == 2, r.stderr
    assert fastdl.load(tmp_path / "runs" / "digits-mlp.npz").predict(
        np.zeros((1, 64), np.float32)).shape == (1,)


def test_gitignore_covers_the_default_output():
    ignored = [ln.strip() for ln in (ROOT / ".gitignore").read_text().splitlines()]
    assert "/runs/" in ignored


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["bench", "--quick"]])
def test_a_broken_matplotlib_setting_is_a_usage_error(command, tmp_path):
    # MPLBACKEND=foo: matplotlib's import raised ValueError, a traceback
    pytest.importorskip("matplotlib")
    r = subprocess.run([sys.executable, "-m", "fastdl.cli", *command, "--plot",
                        str(tmp_path / "p.png")], capture_output=True, text=True,
                       env=dict(os.environ, MPLBACKEND="foo"), cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "argument --plot: matplotlib does not start" in r.stderr
    assert os.listdir(tmp_path) == []


def test_a_ctrl_c_while_the_parser_is_built_is_interrupted(monkeypatch, capsys):
    # building the parser imports fastdl (0.4 s): a Ctrl-C then was a traceback
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)
    assert cli.main(["info"]) == 130
    assert capsys.readouterr().err == "fastdl: interrupted\n"


@pytest.mark.parametrize("stdout", ["full", "closed", "pipe"])
def test_stdout_that_fails_is_one_line_not_a_traceback(stdout):
    # a full disk under stdout, or no stdout at all, was a traceback (a closed pipe was
    # already handled)
    if stdout == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    cmd = [sys.executable, "-m", "fastdl.cli", "info"]
    if stdout == "pipe":
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.read(1)
        p.stdout.close()  # the reader goes away
        err, rc = p.stderr.read().decode(), p.wait(timeout=300)
    else:
        with open("/dev/full" if stdout == "full" else os.devnull, "w") as out:
            r = subprocess.run(cmd, stdout=out if stdout == "full" else subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=300,
                               close_fds=True,
                               preexec_fn=(lambda: os.close(1)) if stdout == "closed"
                               else None)
        err, rc = r.stderr, r.returncode
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if stdout == "full":
        assert rc == 1 and err == "fastdl info: error: No space left on device\n", err
