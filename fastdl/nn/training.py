"""The training loop of ``Sequential.fit`` (documented there).

``fit`` checks its arguments (``fastdl.nn.fit_args``) and builds a ``_Run``;
``_Run.epoch`` is the hot loop, ``_Run.logs`` and ``_Run.validate`` make an epoch's logs.  ``fit(distributed=True)``
extends them through the hooks of ``_Run`` (filled by
``fastdl.distributed.data_parallel``), which cost one ``is None`` test a step when
unused.
"""
from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from fastdl import _validate as V
from fastdl._registry import kernel
from fastdl.nn.base import walk_layers
from fastdl.nn.history import History
from fastdl.nn.layers import Dropout
from fastdl.nn.fit_args import checked, class_weight_array
from fastdl.nn.losses import correct, loss_grad, total_weight
from fastdl.optim.clipping import sum_squares

__all__ = ["fit", "GradientWarning", "DivergenceWarning", "class_weight_array", "epoch_rng"]

VANISH, EXPLODE = 1e-7, 1e3


class GradientWarning(UserWarning):
    """A layer's gradient norm at an epoch's last step vanished (< 1e-7; exactly 0: no
    gradient reaches the layer, e.g. dead ReLUs) or exploded (> 1e3); once per layer."""


class DivergenceWarning(UserWarning):
    """Training diverges: an epoch's loss rose to 10 times the first batch's (training
    goes on), or a loss, gradient or parameter became inf or nan (``fit`` stopped; the
    model's parameters are not usable)."""


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch ``epoch``'s shuffle, dropout masks and augmentation."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, epoch)))


def _split_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))


def _interactive():
    """Whether a progress bar can redraw itself: stderr is a terminal, or a notebook
    (tqdm.auto draws a widget there).  Elsewhere, a log file, its carriage-return
    updates would pile up, so ``verbose=1`` prints one line per epoch instead."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return "ipykernel" in sys.modules


def _resolve_seed(model, seed):
    if seed is None:
        if model._seed is None:
            model._seed = int(np.random.SeedSequence().entropy)
        return model._seed
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**63))
    else:
        seed = V.check_int("seed", seed, 0, V.MAX_SEED)
    model._seed = seed
    return seed


def fit(model, X, y, *, loss, optimizer, epochs, batch_size, validation_data,
        validation_split, schedule, callbacks, class_weight, augment, shuffle, seed, verbose,
        initial_epoch, distributed=False):
    """``Sequential.fit`` (documented there)."""
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed: expected a bool, got {type(distributed).__name__}")
    dp = None
    if distributed:
        from fastdl.distributed import data_parallel as dp

        dp.start()  # ImportError naming pip install "fastdl[mpi]" without MPI
    try:
        a = checked(model, X, y, loss, optimizer, epochs, batch_size, validation_data,
                     validation_split, schedule, callbacks, class_weight, augment, shuffle,
                     seed, verbose, initial_epoch)
    except (TypeError, ValueError) as e:
        if dp is not None:  # every rank raises, none waits for this one
            dp.raise_together(e, "fit's arguments")
        raise
    if dp is not None:
        dp.raise_together(None, "fit's arguments")
    X, y, loss, opt, weight, validation, callbacks, first, verbose = (
        a.X, a.y, a.loss, a.opt, a.weight, a.validation, a.callbacks, a.first, a.verbose)
    epochs, batch_size, validation_split = a.epochs, a.batch_size, a.validation_split

    # everything is checked: from here on the model changes, but a fit that stops before
    # its first step (an augment returning the wrong shape, a callback's on_train_begin
    # raising, Ctrl-C) leaves it as it found it
    before = (model.optimizer, model.loss, model.history, model._seed, model._distributed)
    lr_before = opt.lr  # a schedule sets it before the first batch
    run = bar = None
    try:
        if dp is not None:
            seed = dp.prepare(model, opt, seed, X=X, y=y, validation=validation, loss=loss,
                              weight=weight, epochs=epochs, batch_size=batch_size,
                              shuffle=shuffle, validation_split=validation_split,
                              initial_epoch=first, schedule=schedule, augment=augment)
            model._seed = seed
            parallel = dp.DataParallel(model._params)
            if parallel.rank != 0:
                verbose = 0  # rank 0 reports for all
        else:
            seed = _resolve_seed(model, seed)
        model._distributed = distributed
        if validation is None and validation_split > 0:
            n = X.shape[0]
            n_val = int(round(n * validation_split))
            perm = _split_rng(seed).permutation(n)
            vi, ti = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            validation, X, y = (X[vi], y[vi]), X[ti], y[ti]
        model.optimizer, model.loss = opt, loss
        run = _Run(model, X, y, loss, weight, opt, batch_size, augment, shuffle)
        if dp is not None:
            parallel.attach(run)
        history = History()
        model.history = history
        for cb in callbacks:
            cb.on_train_begin(model)
        lines = verbose >= 2 or (verbose == 1 and not _interactive())
        for epoch in range(first, first + epochs):
            if schedule is not None:
                # a learning rate, named as the schedule's (float() said "could not
                # convert string to float")
                opt.lr = V.check_finite(f"schedule({epoch})", schedule(epoch), lo=0.0)
            if verbose and not lines:
                from tqdm.auto import tqdm
                bar = tqdm(total=run.n, desc=f"epoch {epoch + 1}/{first + epochs}",
                           unit="row", leave=True, mininterval=0.2)
            sums, norms = run.epoch(epoch_rng(seed, epoch), bar)
            model.epochs_trained = epoch + 1
            logs = run.logs(sums, norms)
            if validation is not None:
                logs.update(run.validate(*validation))
            diverged = _non_finite(model, logs, norms)
            if diverged is None and not _rising(run, logs, epoch, opt) and \
                    not run.weightless_last:
                _diagnose(model, run.names, norms)
            history.append(epoch, logs)
            shown = {k: f"{v:.4g}" for k, v in logs.items()
                     if k in ("loss", "accuracy", "val_loss", "val_accuracy")}
            if bar is not None:
                bar.set_postfix(shown)
                bar.close()
                bar = None
            elif lines:
                print(f"epoch {epoch + 1}/{first + epochs}: "
                      + ", ".join(f"{k} {v}" for k, v in shown.items()), file=sys.stderr,
                      flush=True)
            stop = False
            for cb in callbacks:
                stop = bool(cb.on_epoch_end(epoch, logs)) or stop
            if schedule is not None and hasattr(schedule, "update"):
                schedule.update(logs)
            if dp is not None:
                stop = parallel.end_epoch(stop)
            if diverged is not None:
                warnings.warn(f"training diverged in epoch {epoch}: {diverged}; fit stopped and "
                              "the model's parameters are not usable (lower the learning rate, "
                              f"now {opt.lr:g}, clip gradients with clip_norm=, or scale X)",
                              DivergenceWarning, stacklevel=3)
                break
            if stop:
                break
    except BaseException as e:
        if run is None or run.steps == 0:
            (model.optimizer, model.loss, model.history, model._seed,
             model._distributed) = before
            opt.lr = lr_before
        if dp is not None and isinstance(e, SystemExit):
            dp.abort_on_exit(e)
        raise
    finally:
        if bar is not None:
            bar.close()
    for cb in callbacks:
        cb.on_train_end(model)
    if dp is not None:
        parallel.end_training()
    return history


class _Run:
    """One ``fit``'s prepared state: the data, the batch buffers, the layers trained
    through; ``epoch`` runs the steps of one epoch, ``logs`` and ``validate`` make its
    logs.

    The hooks (class attributes, None here) are for a data-parallel fit
    (``fastdl.distributed.data_parallel`` fills them), each run where the comment in
    ``epoch`` says: ``share(m) -> slice`` picks this process's rows of a global batch
    of ``m`` rows (an empty share zeroes the gradient); ``reduce_grad(grad, w, W)``
    gets the gradient buffer holding this process's share's mean-loss gradient, before
    the step, with the share's weight ``w`` and the global batch's ``W`` (rows, or
    total class weight where the mean loss divides by it); ``reduce_sums(values) ->
    sums over every process`` runs before an epoch's logs; ``rank_rng(seed) ->
    Generator``, this process's stream for dropout and augmentation."""

    share = None
    reduce_grad = None
    reduce_sums = None
    rank_rng = None
    weightless_last = False  # the last step's batch weighed 0 (see epoch)
    steps = 0  # optimizer steps taken

    def __init__(self, model, X, y, loss, weight, opt, batch_size, augment, shuffle):
        self.model, self.X, self.y, self.loss, self.weight = model, X, y, loss, weight
        self.opt, self.augment, self.shuffle = opt, augment, shuffle
        self.n = X.shape[0]
        self.bs = self.n if batch_size is None else min(batch_size, self.n)
        self.layers = model._layers_for(loss)
        self.names = model.layer_names()
        self.player = list(model.param_layers())
        self.dropouts = [l for l in walk_layers(model._full) if isinstance(l, Dropout)]
        self.norm = _normalizer(loss, weight, y)
        self.first_loss = None  # the first batch's mean loss, before any step
        # a rise to less than this is no divergence, whatever the ratio (from 4e-7 to
        # 4e-4 nats was one): 0.01 nats, or 1% of the targets' mean square
        self.rise_floor = 0.01 if loss != "mse" else \
            0.01 * float(np.mean(np.square(y, dtype=np.float64))) if y.size else 0.0
        self._first = None      # this process's part of it, until logs() has it
        self.warned_rising = False
        self.xbuf = np.empty((self.bs,) + X.shape[1:], dtype=model.dtype)
        self.ybuf = np.empty((self.bs,) + y.shape[1:], dtype=y.dtype)

    def epoch(self, rng, bar):
        """Run one epoch; returns ((loss sum, correct count, rows, weighted loss sum,
        weight sum), last gradient norms).  With class weights the epoch's loss is the
        weighted mean over all its rows, as val_loss and evaluate take it (a mean of the
        batches' weighted means, by rows, was 2e-2 off them in float32)."""
        model, X, y, n, bs = self.model, self.X, self.y, self.n, self.bs
        layers, loss, weight, opt = self.layers, self.loss, self.weight, self.opt
        augment, share, reduce_grad = self.augment, self.share, self.reduce_grad
        norm = self.norm if share is not None else None
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        # data parallel: the permutation is every process's, masks and augmentation
        # each process's own, seeded from the shared stream
        own = rng if self.rank_rng is None else self.rank_rng(int(rng.integers(2**63)))
        for layer in self.dropouts:
            layer.rng = np.random.default_rng(own.integers(2**63))
        model._set_mode(True)
        total, n_correct, rows, norms = 0.0, 0, 0, None
        wloss, wsum = 0.0, 0.0
        for start in range(0, n, bs):
            batch = order[start:start + bs]
            m = batch.shape[0]
            # data parallel: this process's rows of the global batch
            idx = batch if share is None else batch[share(m)]
            k = idx.shape[0]
            w, W = (k, m) if norm is None else (norm(idx), norm(batch))
            rows += k
            part = 0.0
            if k:
                xb = self.xbuf[:k]
                yb = self.ybuf[:k]
                # mode="clip": idx is a permutation of range(n), so never out of
                # range, and the default mode="raise" copies through a buffer
                # when out= is given (2.3x slower at 1024 x 784, measured)
                np.take(X, idx, axis=0, out=xb, mode="clip")
                np.take(y, idx, axis=0, out=yb, mode="clip")
                if augment is not None:
                    xb = _augmented(augment, xb, own, model.dtype)
                out = model._forward(xb, layers)
                lv, g = loss_grad(model, out, yb, loss, weight)
                # the share's part of the global batch's mean loss times m: a share
                # whose class weights sum to 0 has a 0/0 mean, and no part
                part = lv if norm is None else 0.0 if w == 0 else lv / k * (w / W) * m
                total += part
                if self.norm is not None:
                    wk = w if norm is not None else self.norm(idx)
                    wloss += 0.0 if wk == 0 else lv / k * wk
                    wsum += wk
                n_correct += correct(out, yb, loss)
                model._backward(g, False, layers)
            else:
                model._params.grad.fill(0)
            # the first batch that weighs anything: a weightless one's loss of 0 made
            # every later loss look like a rise (a false DivergenceWarning)
            if self.first_loss is None and self._first is None and \
                    (self.norm is None or self.norm(batch) > 0):
                self._first = part / m
            # parameters().grad holds the gradient of this batch's (share's) mean loss:
            # a data-parallel fit averages it over the processes here, before the step
            if reduce_grad is not None:
                reduce_grad(model._params.grad, w, W)
            if start + bs >= n:
                norms = _grad_norms(model, self.player)
                # a last batch whose rows all weigh 0 (class_weight) has a zero gradient
                # by design: nothing to diagnose (it read as dead units)
                self.weightless_last = self.norm is not None and self.norm(batch) == 0
            opt.step()
            self.steps += 1
            if bar is not None:
                bar.update(m)
        return (total, n_correct, rows, wloss, wsum), norms

    def logs(self, sums, norms):
        """The epoch's logs from its sums and the last step's gradient norms."""
        values = tuple(sums) + (() if self._first is None else (self._first,))
        if self.reduce_sums is not None:
            values = self.reduce_sums(values)
        total, n_correct, n, wloss, wsum = values[:5]
        if len(values) > 5:  # the first epoch: the first batch's mean loss
            self.first_loss, self._first = values[5], None
        if self.norm is None:
            mean = total / n
        else:
            mean = wloss / wsum if wsum > 0 else 0.0  # (all rows weightless: 0)
        logs = {"loss": mean, "lr": float(self.opt.lr)}
        if self.loss != "mse":
            logs["accuracy"] = n_correct / n
        for name, v in zip(self.names, norms):
            logs[f"grad_norm/{name}"] = v
        return logs

    def validate(self, Xv, yv):
        """``val_loss`` (and ``val_accuracy``) on the validation rows, in inference mode;
        a data-parallel fit evaluates this process's share and sums over processes."""
        model, loss, weight = self.model, self.loss, self.weight
        if self.share is None:
            ev = model._evaluate(Xv, yv, loss, weight)
            return {f"val_{k}": v for k, v in ev.items()}
        n = Xv.shape[0]
        s = self.share(n)
        k = s.stop - s.start
        part, n_correct = 0.0, 0
        if k:
            ev = model._evaluate(Xv[s], yv[s], loss, weight)  # the share's mean loss
            norm = _normalizer(loss, weight, yv)
            if norm is None:
                part = ev["loss"] * (k / n)
            else:
                w, W = norm(s), norm(slice(None))
                # rows that all weigh 0 add 0, as in one process (_evaluate)
                part = 0.0 if w == 0 else ev["loss"] * (w / W)
            n_correct = round(ev.get("accuracy", 0.0) * k)
        part, n_correct = self.reduce_sums((part, n_correct))
        logs = {"val_loss": part}
        if loss != "mse":
            logs["val_accuracy"] = n_correct / n
        return logs


def _normalizer(loss, weight, y):
    """``norm(rows) -> float``: what the mean loss of the targets ``y[rows]`` divides by
    when that is their total class weight (``loss_grad``'s convention, with class
    weights); None when it divides by the row count."""
    if weight is None or loss == "mse":
        return None
    if loss == "cross_entropy":
        return lambda rows: total_weight(y[rows], weight)
    w1 = weight[1]
    return lambda rows: float(np.sum(w1[(y[rows].reshape(-1) > 0.5).astype(np.intp)],
                                     dtype=np.float64))


def _augmented(augment, xb, rng, dtype):
    shape = xb.shape
    xb = augment(xb, rng)
    if not isinstance(xb, np.ndarray) or xb.shape != shape:
        raise ValueError(f"augment: returned {getattr(xb, 'shape', type(xb).__name__)}, "
                         f"expected an array of shape {shape}")
    return np.ascontiguousarray(xb, dtype=dtype)


def _rising(run, logs, epoch, opt):
    """Warn (once a fit) when an epoch's loss is 10 times the first batch's, and more than
    ``rise_floor`` above it: a step too large throws the weights where the loss is huge,
    and where ReLUs often die (their layers' gradients are then exactly 0, which is no
    vanishing gradient)."""
    if run.warned_rising:
        return True  # the per-layer diagnosis would blame the layers for the step size
    if run.first_loss is None or \
            not logs["loss"] > 10 * run.first_loss + max(run.rise_floor, 1e-12):
        return False
    run.warned_rising = True
    warnings.warn(f"training is diverging in epoch {epoch}: the loss rose from "
                  f"{run.first_loss:.4g} (first batch, before any step) to {logs['loss']:.4g}; "
                  f"lower the learning rate (now {opt.lr:g}) or clip gradients (clip_norm=)",
                  DivergenceWarning, stacklevel=4)
    return True


def _non_finite(model, logs, norms):
    """What is not finite after an epoch (None when everything is)."""
    if not math.isfinite(logs["loss"]):
        return f"the training loss is {logs['loss']}"
    bad = [name for name, v in zip(model.layer_names(), norms) if not math.isfinite(v)]
    if bad:
        return f"the gradient of {', '.join(bad)} is not finite"
    data = model._params.data
    if not math.isfinite(kernel("sum_squares", model.backend)(data)) and \
            not np.isfinite(data).all():
        return "the parameters are not finite"
    return None


def _grad_norms(model, player):
    g = []
    for _, layer in player:
        sq = 0.0
        for name in layer.param_shapes():
            # in float64: a float32 dot logged finite gradients of 7e19 as inf (and fit
            # stopped as diverged) and ones of 4e-26 as 0 (a "zero gradient" warning)
            sq += sum_squares(model._params.grad_of(layer._prefix + name), model.backend)
        g.append(math.sqrt(sq))
    return g


def _diagnose(model, names, norms):
    for name, v in zip(names, norms):
        if name in model._warned:
            continue
        if v > EXPLODE:
            model._warned.add(name)
            warnings.warn(f"exploding gradient in layer {name}: norm {v:.3g} (> {EXPLODE:g});"
                          " lower the learning rate, clip gradients (clip_norm=) or check the "
                          "initialisation", GradientWarning, stacklevel=4)
        elif v == 0:
            model._warned.add(name)
            warnings.warn(f"zero gradient in layer {name} at the epoch's last step: no "
                          "gradient reaches it (every unit after it inactive, e.g. dead "
                          "ReLUs, or zero weights)", GradientWarning, stacklevel=4)
        elif v < VANISH:
            model._warned.add(name)
            warnings.warn(f"vanishing gradient in layer {name}: norm {v:.3g} (< {VANISH:g});"
                          " consider ReLU-family activations, He initialisation or skip "
                          "connections", GradientWarning, stacklevel=4)
