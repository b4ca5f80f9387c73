"""Callbacks for ``model.fit``: hooks called at the start and end of training and at
the end of each epoch with that epoch's logs (``loss``, ``val_loss``, ``accuracy``...)."""
from __future__ import annotations

import math

import numpy as np

from fastdl import _validate as V

__all__ = ["Callback", "EarlyStopping"]


class Callback:
    """Base class: override the hooks you need.  ``on_epoch_end`` returns True to stop."""

    def on_train_begin(self, model) -> None:
        """Called by ``fit`` before the first epoch, with the model being trained."""
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        """Called after each epoch with its number (counted across ``fit`` calls) and
        its logs (``loss``, ``lr``, ``accuracy``, ``val_loss``, ``grad_norm/<layer>``,
        ...: the values ``History`` records); return True to stop training."""
        return False

    def on_train_end(self, model) -> None:
        """Called by ``fit`` after the last epoch (also after an early stop)."""
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves on the best so far when ``value < best - min_delta`` (mode
    ``"min"``) or ``value > best + min_delta`` (mode ``"max"``).  With
    ``restore_best_weights`` the model's parameters are set back to those of the best
    epoch when training ends (whether it stopped early or ran out of epochs), and so is
    the state of ``model.optimizer`` (its ``state_dict()``: step count, Adam's moments,
    SGD's velocity, learning rate), so that model and optimizer are again the state of
    that epoch: after a divergence the next ``fit`` goes on from finite moments and
    ``model.save`` writes them.  The callback keeps one snapshot (parameters and
    optimizer state of the best epoch so far); an optimizer without ``state_dict``/
    ``load_state_dict`` gets its parameters back only.
    ``stopped_epoch`` is the epoch at which training stopped (None if it did not);
    ``best_epoch`` and ``best`` record the best epoch and value.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="min",
                 restore_best_weights=True):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a str, got {type(monitor).__name__}")
        self.monitor = monitor
        self.patience = V.check_int("patience", patience, 1)
        self.min_delta = V.check_real("min_delta", min_delta, lo=0.0)
        self.mode = V.check_choice("mode", mode, ("min", "max"))
        if not isinstance(restore_best_weights, bool):
            raise TypeError("restore_best_weights: expected a bool, got "
                            f"{type(restore_best_weights).__name__}")
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, model):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.stopped_epoch = None
        self._best_weights = None
        self._best_state = None
        self._model = model
        # fit has made it model.optimizer by now: the one whose state goes with the weights
        opt = getattr(model, "optimizer", None)
        self._optimizer = opt if hasattr(opt, "state_dict") and \
            hasattr(opt, "load_state_dict") else None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"monitor: {self.monitor!r} is not in the epoch's logs "
                             f"(available: {sorted(logs)})")
        value = float(logs[self.monitor])
        if self.best_epoch is None and not np.isfinite(value):
            self.wait += 1
        elif self.best_epoch is None or self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._snapshot()
            return False
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def _snapshot(self):
        """Keep the parameters and the optimizer state of this (best so far) epoch."""
        data = self._model.parameters().data
        if self._best_weights is None:
            self._best_weights = np.empty_like(data)
        np.copyto(self._best_weights, data)
        if self._optimizer is not None:
            # the weights alone are half a state: the moments (or velocity) at the end
            # of a diverged run are inf/NaN and would NaN the restored weights at the
            # next step, and Adam's bias correction needs the step count that goes
            # with them.  state_dict() copies; drop the previous copy first so that
            # one snapshot is held at a time
            self._best_state = None
            self._best_state = self._optimizer.state_dict()

    def on_train_end(self, model):
        if self.restore_best_weights and self._best_weights is not None:
            np.copyto(model.parameters().data, self._best_weights)
            if self._best_state is not None:
                self._optimizer.load_state_dict(self._best_state)
