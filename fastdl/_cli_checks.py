"""Checks of the command line's arguments, shared by ``fastdl train`` and ``fastdl
bench``: option values (numbers in a range, layer widths) as argparse types, and
output paths that must be writable (and of a format matplotlib writes) before any
work starts.  A refusal is a ``CommandError`` (exit status 2: usage)."""
from __future__ import annotations

import argparse
import errno
import math
import os
import tempfile

from fastdl import _atomic

# --hidden's widest layer: 2**31 - 1 units would need 6.4 TB of weights after the digits'
# 64 inputs; beyond 2**31 NumPy refused the shape with an error that named nothing
MAX_WIDTH = 2**31 - 1


class CommandError(Exception):
    """An expected failure, printed as ``fastdl <command>: error: <message>`` (no
    traceback) with exit status ``status``: 2 for bad usage, 1 for a failure while
    working."""

    def __init__(self, message, status=1, *, shown=True):
        super().__init__(message)
        self.status = status
        self.shown = shown  # False on the ranks other than 0 of a distributed run


# ---- option values --------------------------------------------------------

def number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse ``type=``: ``kind`` (int or float) in the given finite range."""
    word = "an integer" if kind is int else "a number"
    if lo is not None and hi is not None:
        want = f"{word} in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        want = f"{word} {'>' if lo_open else '>='} {lo:g}"
    else:
        want = word

    def parse(text):
        try:
            value = kind(text)
            finite = math.isfinite(value)  # OverflowError for an int beyond float's range
        except (ValueError, OverflowError):
            value, finite = None, False
        if not finite \
                or (lo is not None and (value <= lo if lo_open else value < lo)) \
                or (hi is not None and (value >= hi if hi_open else value > hi)):
            shown = text if len(text) <= 40 else text[:30] + f"... ({len(text)} characters)"
            raise argparse.ArgumentTypeError(f"expected {want}, got {shown!r}")
        return value

    return parse


def layer_sizes(text):
    """``--hidden``: comma-separated positive widths; an empty string is no hidden layer."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = None
    if sizes is None or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, such as 256,128, got {text!r}")
    if any(s > MAX_WIDTH for s in sizes):
        raise argparse.ArgumentTypeError(f"expected widths of at most {MAX_WIDTH:,}, got {text!r}")
    return sizes


# ---- output files ---------------------------------------------------------

def check_writable(option, path):
    """Refuse, before any work, an output path that could not be written at the end."""
    try:  # an empty name, a folder, a device or FIFO the final rename would replace
        shown = _atomic.check_target(f"argument {option}", path)
    except ValueError as e:
        raise CommandError(str(e), 2) from None
    folder = os.path.dirname(os.path.abspath(shown))
    if not os.path.isdir(folder):
        raise CommandError(f"argument {option}: the folder of {shown!r} does not exist", 2)
    try:
        # a name longer than the file system takes failed only at the final write,
        # after the whole training (or a 30-minute bench)
        try:
            name_max = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            name_max = 255
        if len(os.fsencode(os.path.basename(shown))) > name_max:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        with tempfile.TemporaryFile(dir=folder):
            pass
        if os.path.exists(shown) and not os.access(shown, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise CommandError(f"argument {option}: cannot write {shown!r}: "
                           f"{e.strerror or e}", 2) from None


def check_plot_format(path):
    """matplotlib starts, and writes ``path``'s format here (``fastdl train`` and
    ``fastdl bench``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError("argument --plot: needs matplotlib: "
                           "pip install 'fastdl[plot]'", 2) from None
    except ValueError as e:  # its settings refused, e.g. MPLBACKEND=foo
        raise CommandError(f"argument --plot: matplotlib does not start: {e}", 2) from None
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(path)[1].lower().lstrip(".")
    types = FigureCanvasBase.get_supported_filetypes()  # no extension: savefig writes PNG
    if ext and ext not in types:
        raise CommandError(f"argument --plot: matplotlib cannot write .{ext} files "
                           f"(it writes {', '.join('.' + t for t in sorted(types))})", 2)
    # a listed format may still need a program (.pgf: LaTeX): write a tiny figure in it
    # now, not after the training
    import io

    from matplotlib.figure import Figure

    try:
        fig = Figure(figsize=(1, 1))
        fig.text(0.5, 0.5, "0")  # text: what needs LaTeX in .pgf
        fig.savefig(io.BytesIO(), format=ext or None)
    except Exception as e:  # noqa: BLE001 - whatever the format's writer fails with
        raise CommandError(f"argument --plot: matplotlib cannot write .{ext or 'png'} "
                           f"files here: {e}", 2) from None


def write_failed(what, path, e):
    # e names the temporary file that save() writes first: say the user's path instead
    return CommandError(f"cannot write the {what} to {os.fspath(path)!r}: {e.strerror or e}")
