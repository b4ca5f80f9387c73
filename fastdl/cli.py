"""The ``fastdl`` command: ``fastdl info``, ``fastdl train``, ``fastdl bench``.

Exit status: 0 done; 2 a usage error (a bad option value, or an output file that
cannot be written, both found before any work starts); 1 an expected failure while
working (a file that could not be written after all), printed as one line.  Any
other exception is a bug and keeps its traceback."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings

from fastdl import _threads, _train_plot, _validate as V, callbacks
from fastdl import _train_setup as _setup
from fastdl._cli_checks import (CommandError, check_plot_format, check_writable,
                                layer_sizes, number, write_failed)

RUNS = "runs"  # default output folder, in the current folder; .gitignore covers it


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line: the option and what is wrong with it (the usage block of `train`
        # is a dozen lines that would bury it)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---- fastdl info ----------------------------------------------------------

def _info(args):
    import fastdl

    print(json.dumps(fastdl.info(), indent=2, default=str))
    return 0


# ---- fastdl train ---------------------------------------------------------

def _augmentation(args, data, images):
    if args.no_augment:
        return None
    from functools import partial

    from fastdl import augment

    # one-pixel shifts and light noise; no flips (a mirrored digit is another digit)
    return augment.Compose([partial(augment.random_shift, max_shift=1, fill=0.0),
                            partial(augment.gaussian_noise, std=0.02, clip=(0.0, 1.0))],
                           image_shape=None if images else data.image_shape,
                           layout="NCHW")  # a CNN's batches: (B, 1, 8, 8)


def _conditions(args):
    """What differs between the training and the validation curves, for the plot."""
    on = []
    if args.dropout > 0:
        on.append(f"dropout p={args.dropout:g}")
    if not args.no_augment:
        on.append("augmentation (random 1-pixel shifts, noise std 0.02)")
    if not on:
        return ("Train: the mean over each epoch's batches while the weights change. "
                "Validation: after each epoch.")
    return (f"Train: the mean over each epoch's batches while the weights change, with "
            f"{' and '.join(on)} on. Validation: after each epoch, without "
            f"{'them' if len(on) > 1 else 'it'}; so the training loss can sit above the "
            "validation loss.")


def _output_paths(args):
    """The model and plot paths, checked before training (``--plot`` alone: beside the
    model); the default folder is created."""
    output = args.output if args.output is not None else \
        os.path.join(RUNS, f"digits-{args.model}.npz")
    plot = args.plot
    if plot == "":
        plot = os.path.splitext(output)[0] + ".png"
    made = args.output is None and not os.path.isdir(RUNS)
    if made:
        try:
            os.makedirs(RUNS, exist_ok=True)  # another run may create it meanwhile
        except OSError as e:
            raise CommandError(f"argument --output: cannot create the folder {RUNS!r} for "
                               f"the default {output!r}: {e.strerror or e}", 2) from None
    try:
        _check_outputs(output, plot)
    except CommandError:
        if made:
            # a refused command leaves nothing behind, but what another run put there
            # (rmdir refuses a folder that is not empty); a run that found the folder
            # and saw it go makes it again before it saves (_save)
            with contextlib.suppress(OSError):
                os.rmdir(RUNS)
        raise
    return output, plot


def _check_outputs(output, plot):
    check_writable("--output", output)
    if plot is not None:
        if os.path.abspath(plot) == os.path.abspath(output):
            raise CommandError(f"argument --plot: {plot!r} is also the --output file", 2)
        check_writable("--plot", plot)
        check_plot_format(plot)


class _EpochLines(callbacks.Callback):
    """One line per epoch on ``stream``: the progress report when stderr is not a
    terminal, where tqdm's carriage-return updates would fill a log file."""

    def __init__(self, epochs, stream):
        self.epochs, self.stream = epochs, stream

    def on_train_begin(self, model):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        shown = ", ".join(f"{k} {logs[k]:.4f}" for k in
                          ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs)
        print(f"epoch {epoch + 1}/{self.epochs}: {shown} "
              f"({time.perf_counter() - self.t0:.1f} s)", file=self.stream, flush=True)
        return False


def _start_ranks(args):
    """``--distributed`` (under ``mpirun``): start MPI, threads per rank, one seed for
    all ranks; True on rank 0, which alone prints, plots and saves."""
    import fastdl
    import fastdl.distributed as dist

    try:
        dist.init()
    except ImportError as e:
        raise CommandError(f"argument --distributed: {e}", 2) from None
    if not args.threads:
        fastdl.set_num_threads(dist.threads_per_rank())
    args.seed = dist.shared_seed(args.seed)
    args.quiet = args.quiet or dist.rank() != 0
    return dist.rank() == 0


def _rank0_output_paths(args, leader):
    """The output paths, checked (and the folder made) by rank 0 alone; if it refuses
    them, the other ranks end too, with the same status and without a message."""
    from fastdl.distributed.collectives import raise_together

    error, paths = None, (None, None)
    if leader:
        try:
            paths = _output_paths(args)
        except CommandError as e:
            error = e
    try:
        raise_together(error, "the output paths")
    except RuntimeError:
        raise SystemExit(2) from None
    return paths


def _train(args):
    import numpy as np

    import fastdl

    if args.backend is not None and args.backend not in fastdl.backends():
        raise CommandError(f"argument --backend: {args.backend!r} is not available here "
                           f"(available: {', '.join(fastdl.backends())})", 2)
    leader = _start_ranks(args) if args.distributed else True
    output, plot = (_rank0_output_paths(args, leader) if args.distributed
                    else _output_paths(args))
    if args.threads:
        fastdl.set_num_threads(args.threads)
    backend = args.backend or fastdl.get_backend()
    spec = _setup.MODELS[args.model]
    with fastdl.use_backend(backend), contextlib.ExitStack() as quiet:
        if not leader:  # rank 0 reports for all, its warnings too
            quiet.enter_context(contextlib.redirect_stdout(
                quiet.enter_context(open(os.devnull, "w"))))
            quiet.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
        data = _setup.digits(spec.images, args.seed)
        try:
            model, description = spec.build(args, data, backend)
        except MemoryError:
            raise CommandError("argument --hidden: a model this wide does not fit in "
                               "memory", 2) from None
        print(f"fastdl {fastdl.__version__}: {description} "
              f"({model.parameters().num_parameters:,} parameters) on the 8x8 digits: "
              f"{len(data.train[1])} train, {len(data.val[1])} validation, "
              f"{len(data.test[1])} test images; backend {backend}, "
              f"{fastdl.get_num_threads()} threads")
        hist, best = _fit(args, model, data, spec.images)
        if not np.isfinite(model.parameters().data).all():
            # nothing to evaluate or save: a NaN model scored 0.10 and was saved
            raise CommandError(f"training diverged: the parameters are not finite after "
                               f"{len(hist.epoch)} epochs (loss {hist.history['loss'][-1]}); "
                               f"try a smaller --lr (it is {args.lr})"
                               + (f" or --weight-decay (it is {args.weight_decay})"
                                  if args.weight_decay >= 1 else ""), shown=leader)
        acc, cm = _evaluate(model, data)
    if leader:
        _save(args, model, hist, best, output, plot,
              f"{description} on the 8x8 digits, test accuracy {acc:.4f}", cm)
    return 0


def _fit(args, model, data, images):
    """Train with early stopping on the validation loss; (History, best epoch or None)."""
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                      restore_best_weights=True)
    cbs = [stopper]
    verbose = 0
    if not args.quiet:
        if sys.stderr.isatty():
            verbose = 1  # fit's tqdm bar
        else:
            cbs.append(_EpochLines(args.epochs, sys.stderr))
    t0 = time.perf_counter()
    hist = model.fit(*data.train, optimizer=_setup.optimizer(args, model.parameters()),
                     epochs=args.epochs, batch_size=args.batch_size, validation_data=data.val,
                     schedule=_setup.schedule(args), callbacks=cbs,
                     augment=_augmentation(args, data, images), seed=args.seed,
                     verbose=verbose, distributed=args.distributed)
    elapsed = time.perf_counter() - t0
    best = stopper.best_epoch  # None when no epoch's val_loss was finite (diverged)
    restored = "" if best is None else \
        f" (early stop; best epoch {best + 1} restored)" if stopper.stopped_epoch is not None \
        else f" (best epoch {best + 1} restored)"
    print(f"trained {len(hist.epoch)} epochs in {elapsed:.1f} s{restored}")
    return hist, best


def _evaluate(model, data):
    """Print the held-out metrics; (accuracy, confusion matrix)."""
    from fastdl import metrics

    X_test, y_test = data.test
    pred = model.predict(X_test)
    acc = metrics.accuracy(y_test, pred)
    ev = model.evaluate(X_test, y_test)
    print(f"\nheld-out test accuracy: {acc:.4f}  (loss {ev['loss']:.4f}, {len(y_test)} images)")
    k = data.num_classes
    cm = metrics.confusion_matrix(y_test, pred, num_classes=k)
    print("\nconfusion matrix (rows: actual digit, columns: predicted):")
    print("      " + " ".join(f"{j:4d}" for j in range(k)))
    for i in range(k):
        print(f"  {i:2d}  " + " ".join(f"{v:4d}" for v in cm[i]))
    print("\nper-class metrics:")
    print(metrics.classification_report(y_test, pred, num_classes=k))
    return acc, cm


def _save(args, model, hist, best, output, plot, title, cm):
    try:
        if args.output is None:  # a refused run beside this one may have removed it
            os.makedirs(RUNS, exist_ok=True)
        model.save(output)
    except OSError as e:
        raise write_failed("model", output, e) from None
    print(f"model saved to {output} (fastdl.load reads it)")
    if plot is not None:
        try:
            _train_plot.plot_training(hist, cm, plot, "fastdl train: " + title,
                                      _conditions(args), best)
        except OSError as e:
            raise write_failed("plot", plot, e) from None
        print(f"plot saved to {plot}")


# ---- fastdl bench ---------------------------------------------------------

def _bench(args):
    from fastdl import benchmarks

    return benchmarks.main(args)


# ---- the parser -----------------------------------------------------------

def _add_train_arguments(t):
    positive = number(int, lo=1)
    add = t.add_argument
    add("--model", choices=sorted(_setup.MODELS), default="mlp",
        help="the network to train (default: %(default)s)")
    add("--hidden", type=layer_sizes, default=[256, 128], metavar="N,N,...",
        help="MLP hidden layer widths, comma-separated; '' for none (default: 256,128)")
    add("--dropout", type=number(float, 0.0, 1.0, hi_open=True), default=0.1, metavar="P",
        help="dropout probability after each hidden layer, in [0, 1) (default: %(default)s)")
    add("--epochs", type=positive, default=60, metavar="N",
        help="most epochs to train; early stopping may end sooner (default: %(default)s)")
    add("--batch-size", type=positive, default=32, metavar="N",
        help="rows per mini-batch (default: %(default)s)")
    add("--optimizer", choices=("adam", "sgd"), default="adam",
        help="adam (with --weight-decay) or sgd (with --momentum) (default: %(default)s)")
    add("--lr", type=number(float, lo=0.0, lo_open=True), default=2e-3,
        help="learning rate, the schedule's starting value (default: %(default)s)")
    add("--momentum", type=number(float, 0.0, 1.0, hi_open=True), default=0.9,
        help="SGD momentum, in [0, 1); ignored by adam (default: %(default)s)")
    add("--weight-decay", type=number(float, lo=0.0), default=1e-4, metavar="WD",
        help="Adam's decoupled weight decay (AdamW), >= 0; ignored by sgd "
             "(default: %(default)s)")
    add("--schedule", choices=("cosine", "step", "exponential", "none"), default="cosine",
        help="learning-rate schedule over the epochs: cosine to lr/100, step (halve every "
             "quarter), exponential (to lr/e^3), none (default: %(default)s)")
    add("--patience", type=positive, default=10, metavar="N",
        help="stop after this many epochs without a better validation loss, and keep "
             "the best epoch's weights (default: %(default)s)")
    add("--no-augment", action="store_true",
        help="train on the images as they are (default: random 1-pixel shifts and "
             "light noise)")
    add("--seed", type=number(int, lo=0, hi=V.MAX_SEED), default=0, metavar="N",
        help="seed of the data split, initialisation, shuffling, dropout and "
             "augmentation (default: %(default)s)")
    add("--backend", choices=("numpy", "numba", "cython"), default=None,
        help="kernels to train with (default: the fastest available, cython when built)")
    add("--threads", type=number(int, lo=1, hi=_threads.max_threads()), default=None,
        metavar="N",
        help="threads for the kernels and BLAS (default: OMP_NUM_THREADS if set, else "
             "the cores this process may use, fewer while other processes keep them busy)")
    add("--output", default=None, metavar="PATH",
        help=f"where to save the trained model (default: {RUNS}/digits-MODEL.npz, "
             "the folder created if missing)")
    add("--plot", nargs="?", const="", default=None, metavar="PATH",
        help="write loss and accuracy curves and the test confusion matrix to PATH "
             "(.png, .pdf, .svg; needs matplotlib); without PATH, beside the model as "
             ".png (default: no plot)")
    add("--quiet", action="store_true",
        help="no progress report (default: a bar per epoch on a terminal, else one line "
             "per epoch, on stderr)")
    add("--distributed", action="store_true",
        help="data-parallel over MPI, under 'mpirun -n K fastdl train --distributed' "
             "(needs pip install 'fastdl[mpi]'): --batch-size is the global batch; "
             "threads per rank unless --threads; rank 0 alone prints, plots and saves "
             "(default: one process)")


def _parser():
    import fastdl

    p = _Parser(prog="fastdl", description="fastdl: compiled CPU kernels for deep "
                "learning (NumPy reference, Numba and Cython backends).",
                epilog="'fastdl COMMAND --help' lists the options of a command.")
    p.add_argument("--version", action="version", version=f"fastdl {fastdl.__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("info", help="versions, backends, threads, BLAS, CPU features (JSON)",
                   description="Print versions, backends, threads, BLAS and CPU features "
                               "as JSON.")
    t = sub.add_parser("train", help="train a network on the 8x8 digits and report test "
                                     "metrics",
                       description="Train a network on the 8x8 handwritten digits (64% "
                                   "train, 16% validation, 20% test), print the held-out "
                                   "accuracy, confusion matrix and per-class metrics, and "
                                   "save the model.")
    _add_train_arguments(t)
    b = sub.add_parser("bench", help="time every kernel and backend against the reference "
                       "(and PyTorch when installed)")
    from fastdl import benchmarks
    benchmarks.add_arguments(b)
    return p


def main(argv=None):
    try:
        # building the parser imports fastdl (about 0.4 s): a Ctrl-C then was a traceback
        p = _parser()
        args = p.parse_args(argv)
    except KeyboardInterrupt:
        print("fastdl: interrupted", file=sys.stderr)
        return 130
    handler = {"info": _info, "train": _train, "bench": _bench}[args.cmd]
    try:
        status = handler(args)
        if sys.stdout is not None:  # None: started with stdout closed
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return status
    except CommandError as e:
        if e.shown:  # every rank of a distributed run fails alike: rank 0 says it
            print(f"fastdl {args.cmd}: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"fastdl {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``fastdl train | head``): nothing more to say
        _stdout_to_devnull()
        return 1
    except OSError as e:
        # stdout on a full disk (or another failing write the command did not name):
        # one line, not a traceback
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
        except OSError:
            _stdout_to_devnull()
        print(f"fastdl {args.cmd}: error: {e.strerror or e}", file=sys.stderr)
        return 1


def _stdout_to_devnull():
    # so that the interpreter's final flush of what stdout could not take does not fail
    # again (with a traceback of its own)
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor, or no stdout at all
        pass


if __name__ == "__main__":
    sys.exit(main())
