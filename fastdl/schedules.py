"""Learning-rate schedules: callables ``s(epoch) -> lr``, epochs counted from 0.

The course's three (``StepDecay``, ``ExponentialDecay``, ``CosineAnnealing``)
follow its formulas exactly.  ``LinearWarmup`` wraps any schedule (or a
constant) with a linear ramp; ``ReduceLROnPlateau`` lowers the rate when a
monitored metric stops improving.

How ``fit`` uses them: ``lr = schedule(epoch)`` at the start of each epoch;
for a schedule with an ``update`` method (``ReduceLROnPlateau``), also
``schedule.update(logs)`` at the end of each epoch with that epoch's logs dict
(``{"loss": ..., "val_loss": ..., ...}``).  Hyper-parameters are checked at
construction.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastdl import _validate as V
from fastdl.functional.optim import check_hyper

__all__ = ["StepDecay", "ExponentialDecay", "CosineAnnealing", "LinearWarmup",
           "ReduceLROnPlateau"]


def _epoch(epoch) -> int:
    return V.check_int("epoch", epoch, lo=0)


def _real(n: int) -> float:
    # an int count as a float, inf beyond float's range (10**400 raised OverflowError
    # in the formulas, where their limits are the answer)
    return float(n) if n < 2**1000 else math.inf


def _metric(name: str, value) -> float:
    # a monitored value may be NaN (a diverged run): it then never improves
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    return float(value)


class Schedule:
    """Base class: a callable ``s(epoch) -> lr`` (``epoch`` an int >= 0)."""

    def __call__(self, epoch) -> float:
        return self.lr_at(_epoch(epoch))

    def lr_at(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class StepDecay(Schedule):
    """``lr0 * drop_rate ** floor(epoch / epochs_drop)``.

    Parameters
    ----------
    lr0 : float >= 0
    drop_rate : float in (0, 1], the factor applied every ``epochs_drop`` epochs
    epochs_drop : int >= 1
    """

    def __init__(self, lr0, drop_rate, epochs_drop):
        self.lr0 = check_hyper("lr0", lr0, lo=0.0)
        self.drop_rate = check_hyper("drop_rate", drop_rate, lo=0.0, hi=1.0, lo_open=True)
        self.epochs_drop = V.check_int("epochs_drop", epochs_drop, lo=1)

    def lr_at(self, epoch: int) -> float:
        return self.lr0 * self.drop_rate ** _real(epoch // self.epochs_drop)


class ExponentialDecay(Schedule):
    """``lr0 * exp(-decay_rate * epoch)``.

    Parameters
    ----------
    lr0 : float >= 0
    decay_rate : float >= 0
    """

    def __init__(self, lr0, decay_rate):
        self.lr0 = check_hyper("lr0", lr0, lo=0.0)
        self.decay_rate = check_hyper("decay_rate", decay_rate, lo=0.0)

    def lr_at(self, epoch: int) -> float:
        if self.decay_rate == 0:
            return self.lr0  # (0 * inf is NaN)
        return self.lr0 * math.exp(-self.decay_rate * _real(epoch))


class CosineAnnealing(Schedule):
    """``lr_min + 0.5 (lr_max - lr_min)(1 + cos(pi * epoch / epochs))`` for epoch <= epochs.

    Parameters
    ----------
    lr_max : float >= lr_min, the rate at epoch 0
    lr_min : float >= 0, the rate at epoch ``epochs``
    epochs : int >= 1, the length of the anneal

    After ``epochs`` the rate stays at ``lr_min`` (the formula would climb back up).
    """

    def __init__(self, lr_max, lr_min, epochs):
        self.lr_max = check_hyper("lr_max", lr_max, lo=0.0)
        self.lr_min = check_hyper("lr_min", lr_min, lo=0.0, hi=self.lr_max)
        self.epochs = V.check_int("epochs", epochs, lo=1)

    def lr_at(self, epoch: int) -> float:
        if epoch >= self.epochs:
            return self.lr_min
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (
            1 + math.cos(math.pi * epoch / self.epochs))


class LinearWarmup(Schedule):
    """A linear ramp over the first ``warmup_epochs`` epochs, then ``schedule``.

    Parameters
    ----------
    schedule : a schedule (callable ``epoch -> lr``) or a float >= 0 (a constant rate)
    warmup_epochs : int >= 1
    start_factor : float in (0, 1], default 0.1
        The fraction of the target rate at epoch 0.

    Notes
    -----
    ``lr(e) = schedule(0) * (start_factor + (1 - start_factor) * e / warmup_epochs)``
    for ``e < warmup_epochs``, then ``schedule(e - warmup_epochs)``: the wrapped
    schedule starts when the warm-up ends (so a cosine anneal runs its full
    length after it).  A ``ReduceLROnPlateau`` inside is fed through ``update``.
    """

    def __init__(self, schedule, warmup_epochs, start_factor=0.1):
        if not callable(schedule):
            schedule = check_hyper("schedule", schedule, lo=0.0)
        self.schedule = schedule
        self.warmup_epochs = V.check_int("warmup_epochs", warmup_epochs, lo=1)
        self.start_factor = check_hyper("start_factor", start_factor, lo=0.0, hi=1.0,
                                        lo_open=True)

    def _inner(self, epoch: int) -> float:
        return self.schedule(epoch) if callable(self.schedule) else self.schedule

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            frac = self.start_factor + (1 - self.start_factor) * epoch / self.warmup_epochs
            return self._inner(0) * frac
        return self._inner(epoch - self.warmup_epochs)

    def update(self, metrics) -> None:
        """Pass the epoch's logs on to the wrapped schedule, if it takes them."""
        inner = getattr(self.schedule, "update", None)
        if inner is not None:
            inner(metrics)


class ReduceLROnPlateau(Schedule):
    """Multiply the rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    lr0 : float >= 0, the starting rate
    monitor : str, the key of the logs dict to watch (default ``"val_loss"``)
    factor : float in (0, 1), default 0.1
    patience : int >= 1, epochs without improvement before a reduction (default 10)
    min_lr : float >= 0, the rate never goes below it (default 0)
    mode : ``"min"`` (default; lower is better) or ``"max"``
    min_delta : float >= 0 (default 1e-4), the smallest change that counts as an
        improvement (absolute, as Keras)
    cooldown : int >= 0, epochs to wait after a reduction before counting again

    Use
    ---
    ``s(epoch)`` returns the current rate (the epoch is only checked).  At the end
    of each epoch call ``s.update(logs)`` with that epoch's logs dict, or
    ``s.step(value)`` with the monitored value; both return the rate for the next
    epoch.  As Keras: the first value is an improvement; after ``patience``
    consecutive epochs without one the rate becomes ``max(lr * factor, min_lr)``
    if that is lower (a ``min_lr`` above the rate leaves it, as PyTorch) and the count
    restarts.  NaN never improves.  A logs dict without the
    monitored key raises ValueError.
    """

    def __init__(self, lr0, monitor="val_loss", factor=0.1, patience=10, min_lr=0.0,
                 mode="min", min_delta=1e-4, cooldown=0):
        self.lr0 = check_hyper("lr0", lr0, lo=0.0)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a str, got {type(monitor).__name__}")
        self.monitor = monitor
        self.factor = check_hyper("factor", factor, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        self.patience = V.check_int("patience", patience, lo=1)
        self.min_lr = check_hyper("min_lr", min_lr, lo=0.0)
        self.mode = V.check_choice("mode", mode, ("min", "max"))
        self.min_delta = check_hyper("min_delta", min_delta, lo=0.0)
        self.cooldown = V.check_int("cooldown", cooldown, lo=0)
        self.reset()

    def reset(self) -> None:
        """Back to the starting rate, with no history."""
        self.lr = self.lr0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def lr_at(self, epoch: int) -> float:
        return self.lr

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value) -> float:
        """Record one epoch's monitored value; return the rate for the next epoch."""
        value = _metric(self.monitor, value)
        if self._improved(value):
            self.best = value
            self.wait = 0
        else:
            self.wait += 1
        if self.cooldown_counter > 0:
            # the ``cooldown`` epochs after a reduction are not counted (as PyTorch; the
            # Keras order, decrementing first, skipped one epoch fewer: cooldown=1 was 0)
            self.cooldown_counter -= 1
            self.wait = 0
        if self.wait >= self.patience:
            # never raised: with min_lr above lr0 the "reduction" multiplied the rate by 10
            self.lr = min(self.lr, max(self.lr * self.factor, self.min_lr))
            self.cooldown_counter = self.cooldown
            self.wait = 0
        return self.lr

    def update(self, metrics) -> float:
        """Record one epoch's logs dict (``fit`` calls this at each epoch's end)."""
        if self.monitor not in metrics:
            raise ValueError(f"monitor: {self.monitor!r} is not in the epoch's logs "
                             f"(keys: {sorted(metrics)})")
        return self.step(metrics[self.monitor])

    def state_dict(self) -> dict:
        """The mutable state (numbers), for resuming a run."""
        return {"lr": self.lr, "best": self.best, "wait": self.wait,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, d) -> None:
        """Restore the state ``state_dict()`` returned (checked before anything changes)."""
        lr = check_hyper("lr", float(d["lr"]), lo=0.0)
        best = float(d["best"])
        wait = V.check_int("wait", int(d["wait"]), lo=0)
        cc = V.check_int("cooldown_counter", int(d["cooldown_counter"]), lo=0)
        self.lr, self.best, self.wait, self.cooldown_counter = lr, best, wait, cc
