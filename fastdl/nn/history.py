"""``History``: what ``fit`` returns, the per-epoch logs of a training run."""
from __future__ import annotations

__all__ = ["History"]


class History:
    """``history`` maps each logged name to its per-epoch list; ``epoch`` lists the epochs."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"
