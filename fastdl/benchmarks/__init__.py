"""``fastdl bench``: fastdl's kernels and training against its NumPy reference, its
floors, PyTorch and scikit-learn, each other library in its own fresh process at its
own defaults.

The parts:
  specs.py       the kernel rows: what each times, at which size, on which data
  rows.py        fastdl's side of them (every backend, the reference, the baseline)
  torch_rows.py  PyTorch's side (imported by path in PyTorch's own process)
  floors.py      the least time a kernel or an epoch doing the same work can take
  timing.py      in-process timing: competitors interleaved round by round
  runner.py      the process runner: fresh processes, alternated, busy processes
  worker_*.py    the scripts those processes run
  suite.py       what a run measures, in which processes
  report.py      figures, targets, the terminal table and the Markdown page
  startup.py     import and compile times

``add_arguments(parser)`` and ``main(args)`` are the command's entry points
(fastdl/cli.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from fastdl import _atomic

from fastdl.benchmarks.report import format_table, markdown, targets  # noqa: F401
from fastdl.benchmarks.suite import run  # noqa: F401


def add_arguments(p):
    from fastdl import _threads
    from fastdl._cli_checks import number  # the train command's checks and messages

    positive = number(int, lo=1)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, one process per library, no load scenarios (< 1 min)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the figures, the machine and the targets as JSON "
                        "(python -m fastdl.benchmarks.report PATH makes the Markdown page)")
    p.add_argument("--plot", default=None, metavar="PATH", help="bar chart of the ratios (PNG)")
    # more threads than fastdl allows failed in a worker, after minutes of the run
    p.add_argument("--threads", type=number(int, lo=1, hi=_threads.max_threads()),
                   default=None,
                   help="threads on every side (default: each library's own default; "
                        "fastdl's adapts to the CPU other processes leave free)")
    p.add_argument("--only", default=None,
                   help="comma-separated substrings of row names (kernel and training rows)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--rounds", type=positive, default=None,
                   help="timed rounds per row within a process (default 4, --quick 5)")
    p.add_argument("--process-rounds", type=positive, default=None,
                   help="fresh processes per library, alternated (default 3, --quick 1)")
    p.add_argument("--scenarios", action=argparse.BooleanOptionalAction, default=None,
                   help="the import orders and the MLP epoch beside 0, 1 and 2 busy processes "
                        "and beside PyTorch in one process (default: on, off with --quick)")
    p.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn's row out")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="give the workers OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (unset in "
                        "them by default: they move NumPy's GEMM by -32%% to +16%%)")
    p.add_argument("--no-startup", action="store_true",
                   help="skip the start-up and compile-time measurements")


def _error(message, status=2):
    """Print the one-line error; the exit status (2: usage, 1: a failure while working)."""
    print(f"fastdl bench: error: {message}", file=sys.stderr)
    return status


def check(args):
    """The usage error of ``args`` found before any benchmark runs, or None."""
    import fastdl
    from fastdl import _cli_checks as checks
    from fastdl.benchmarks import suite

    # the train command's checks: a file created and removed in the folder (os.access
    # said yes for /proc as root, and the run then failed after 25 minutes), and a
    # format matplotlib writes
    try:
        for option, path in (("--json", args.json), ("--plot", args.plot)):
            if path is not None:
                checks.check_writable(option, path)
        if args.plot is not None:
            if args.json is not None and os.path.abspath(args.plot) == \
                    os.path.abspath(args.json):
                raise checks.CommandError(f"argument --plot: {args.plot!r} is also the --json "
                                       "file", 2)
            checks.check_plot_format(args.plot)
    except checks.CommandError as e:
        return str(e)
    if args.only is not None:
        if not any(k.strip() for k in args.only.split(",")):
            # no substring at all matched every row: the full 30-minute run
            return f"argument --only: expected row name substrings, got {args.only!r}"
        size = "quick" if args.quick else "full"
        names = suite.kernel_names(size, fastdl.backends(), args.only) \
            + suite.training_names(size, args.only)
        if not names:
            return (f"argument --only: no row matches {args.only!r} (rows are named like "
                    f"'relu fwd+bwd', 'dense_forward+relu', 'adam_update_', 'MLP epoch')")
    return None


def main(args):
    why = check(args)
    if why:
        return _error(why)
    report = run(quick=args.quick, threads=args.threads, use_torch=not args.no_torch,
                 only=args.only, rounds=args.rounds, process_rounds=args.process_rounds,
                 startup=not args.no_startup, scenarios=args.scenarios,
                 keep_openblas=args.keep_openblas_env, sklearn=not args.no_sklearn)
    report["command"] = "fastdl bench " + " ".join(_argv(args))
    print(format_table(report))
    # both written whole or not at all (the old file kept); a failure is one line
    if args.json is not None:
        text = json.dumps(report, indent=1, default=float).encode()
        try:
            _atomic.write_atomic(args.json, lambda fh: fh.write(text), name="--json")
        except OSError as e:
            return _error(f"cannot write the results to {args.json!r}: {e.strerror or e}", 1)
    if args.plot is not None:
        from fastdl.benchmarks.report import plot

        try:
            plot(report, args.plot)
        except OSError as e:
            return _error(f"cannot write the plot to {args.plot!r}: {e.strerror or e}", 1)
    return 0



def _argv(args):
    """The options of a run, as typed (for the report)."""
    out = []
    for k, v in sorted(vars(args).items()):
        flag = "--" + k.replace("_", "-")
        if k == "scenarios" and v is False:
            out.append("--no-scenarios")
        if k in ("cmd", "json", "plot") or v in (None, False) or callable(v):
            continue
        out += [flag] if v is True else [flag, str(v)]
    return out
