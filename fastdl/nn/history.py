"""``History``: what ``fit`` returns, the per-epoch logs of a training run."""
from __future__ import annotations

import os

__all__ = ["History"]

_PLOT_HINT = 'History.plot needs matplotlib: pip install "fastdl[plot]"'


class History:
    """``history`` maps each logged name to its per-epoch list; ``epoch`` lists the
    epochs (numbered from 0; a second ``fit`` goes on with the next numbers)."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"

    def plot(self, path=None, *, title=None):
        """Loss (and accuracy, for classification) per epoch, training and validation.

        Epochs are shown from 1, on integer ticks.  Returns the matplotlib ``Figure``,
        or, with ``path``, writes it there (the format from the extension, e.g. ``.png``)
        and returns ``path`` (written atomically, as ``Sequential.save``).  Needs matplotlib (``pip install "fastdl[plot]"``); it uses
        no pyplot state, so it works in scripts, servers and notebooks alike.

        Training loss is measured during each epoch with dropout and augmentation on,
        and validation loss after it without them, so the training curve can lie above
        the validation curve."""
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise ImportError(_PLOT_HINT) from None
        if not self.epoch:
            raise ValueError("History.plot: the history is empty (no epoch was trained)")
        if path is not None:
            path = os.fspath(path)
        h, ep = self.history, [e + 1 for e in self.epoch]
        panels = [("loss", "loss")] + ([("accuracy", "accuracy")] if "accuracy" in h else [])
        fig = Figure(figsize=(5.5 * len(panels), 4))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (key, label) in zip(axes, panels):
            ax.plot(ep, h[key], marker="o" if len(ep) < 30 else None, label="training")
            if f"val_{key}" in h:
                ax.plot(ep, h[f"val_{key}"], marker="o" if len(ep) < 30 else None,
                        label="validation")
            ax.set(xlabel="epoch", ylabel=label, title=label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        if title is not None:
            fig.suptitle(str(title))
        fig.tight_layout()
        if path is None:
            return fig
        from fastdl import _atomic

        return _atomic.save_figure(fig, path, dpi=110)  # the whole new image or the old one
