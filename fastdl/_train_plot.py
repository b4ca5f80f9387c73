"""The figure ``fastdl train --plot`` saves: loss and accuracy per epoch (train and
validation) and the test confusion matrix."""
from __future__ import annotations

import textwrap


def plot_training(hist, cm, path, title, caption, best=None):
    import matplotlib.pyplot as plt

    from fastdl import _atomic

    fig = figure(hist, cm, title, caption, best)
    try:
        _atomic.save_figure(fig, path, name="--plot", dpi=110)
    finally:
        plt.close(fig)


def figure(hist, cm, title, caption, best=None):
    """Loss and accuracy per epoch (train and validation) and the test confusion matrix."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h = hist.history
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.8))
    ep = [e + 1 for e in hist.epoch]
    for a, key in ((ax[0], "loss"), (ax[1], "accuracy")):
        a.plot(ep, h[key], label="train")
        if "val_" + key in h:
            a.plot(ep, h["val_" + key], label="validation")
        if best is not None:
            a.axvline(best + 1, color="grey", linestyle=":", label="best epoch (kept)")
        a.set(title=key, xlabel="epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        a.legend()
    im = ax[2].imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax[2].text(j, i, str(cm[i, j]), ha="center", va="center",
                       color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    ax[2].set(title="confusion matrix (test)", xlabel="predicted", ylabel="actual",
              xticks=range(cm.shape[1]), yticks=range(cm.shape[0]))
    fig.colorbar(im, ax=ax[2])
    fig.suptitle(title)
    fig.text(0.5, 0.015, textwrap.fill(caption, 150), ha="center", va="bottom", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
