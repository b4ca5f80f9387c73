"""The ``fastdl`` command: ``fastdl info``, ``fastdl train``, ``fastdl bench``."""
from __future__ import annotations

import argparse
import json
import sys
import time


def _info(args):
    import fastdl

    print(json.dumps(fastdl.info(), indent=2, default=str))
    return 0


def _build_mlp(hidden, n_in, n_out, dropout, seed, backend):
    from fastdl import nn

    layers = []
    f = n_in
    for h in hidden:
        layers.append(nn.Dense(f, h, activation="relu"))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        f = h
    layers.append(nn.Dense(f, n_out, init="xavier"))
    return nn.Sequential(*layers, seed=seed, backend=backend)


def _train(args):
    import fastdl

    if args.threads:
        fastdl.set_num_threads(args.threads)
    backend = args.backend or fastdl.get_backend()
    with fastdl.use_backend(backend):
        return _train_with(args, backend)


def _train_with(args, backend):
    import fastdl
    from fastdl import augment, callbacks, data, datasets, metrics, optim, schedules

    X, y = datasets.load_digits()
    X_tmp, X_test, y_tmp, y_test = data.split(X, y, test_size=0.2, seed=args.seed)
    X_train, X_val, y_train, y_val = data.split(X_tmp, y_tmp, test_size=0.2, seed=args.seed + 1)
    hidden = [int(h) for h in args.hidden.split(",") if h]
    model = _build_mlp(hidden, X.shape[1], 10, args.dropout, args.seed, backend)
    params = model.parameters()
    if args.optimizer == "adam":
        opt = optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = optim.SGD(params, lr=args.lr, momentum=args.momentum)
    if args.schedule == "cosine":
        sched = schedules.CosineAnnealing(args.lr, args.lr * 0.01, args.epochs)
    elif args.schedule == "step":
        sched = schedules.StepDecay(args.lr, 0.5, max(1, args.epochs // 4))
    elif args.schedule == "exponential":
        sched = schedules.ExponentialDecay(args.lr, 3.0 / args.epochs)
    else:
        sched = None
    aug = None
    if not args.no_augment:
        from functools import partial

        # one-pixel shifts and light noise; no flips (a mirrored digit is another digit)
        aug = augment.Compose([partial(augment.random_shift, max_shift=1, fill=0.0),
                               partial(augment.gaussian_noise, std=0.02, clip=(0.0, 1.0))],
                              image_shape=(8, 8))
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                      restore_best_weights=True)
    n_params = params.num_parameters
    print(f"fastdl {fastdl.__version__}: MLP 64-{'-'.join(map(str, hidden))}-10 "
          f"({n_params:,} parameters) on the 8x8 digits: {len(y_train)} train, "
          f"{len(y_val)} validation, {len(y_test)} test images; backend {backend}, "
          f"{fastdl.get_num_threads()} threads")
    t0 = time.perf_counter()
    hist = model.fit(X_train, y_train, optimizer=opt, epochs=args.epochs,
                     batch_size=args.batch_size, validation_data=(X_val, y_val),
                     schedule=sched, callbacks=[stopper], augment=aug, seed=args.seed,
                     verbose=0 if args.quiet else 1)
    elapsed = time.perf_counter() - t0
    ran = len(hist.epoch)
    best = stopper.best_epoch
    print(f"trained {ran} epochs in {elapsed:.1f} s"
          + (f" (early stop; best epoch {best + 1} restored)" if stopper.stopped_epoch is not None
             else f" (best epoch {best + 1} restored)" if best is not None else ""))
    pred = model.predict(X_test)
    acc = metrics.accuracy(y_test, pred)
    ev = model.evaluate(X_test, y_test)
    print(f"\nheld-out test accuracy: {acc:.4f}  (loss {ev['loss']:.4f}, {len(y_test)} images)")
    cm = metrics.confusion_matrix(y_test, pred, num_classes=10)
    print("\nconfusion matrix (rows: actual digit, columns: predicted):")
    print("      " + " ".join(f"{j:4d}" for j in range(10)))
    for i in range(10):
        print(f"  {i:2d}  " + " ".join(f"{v:4d}" for v in cm[i]))
    print("\nper-class metrics:")
    print(metrics.classification_report(y_test, pred, num_classes=10))
    path = model.save(args.output)
    print(f"model saved to {path}")
    if args.plot:
        _plot_training(hist, cm, args.plot)
        print(f"plot saved to {args.plot}")
    return 0


def _plot_training(hist, cm, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fastdl[plot]'") from None
    h = hist.history
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    ep = [e + 1 for e in hist.epoch]
    ax[0].plot(ep, h["loss"], label="train")
    if "val_loss" in h:
        ax[0].plot(ep, h["val_loss"], label="validation")
    ax[0].set(title="loss", xlabel="epoch")
    ax[0].legend()
    ax[1].plot(ep, h["accuracy"], label="train")
    if "val_accuracy" in h:
        ax[1].plot(ep, h["val_accuracy"], label="validation")
    ax[1].set(title="accuracy", xlabel="epoch")
    ax[1].legend()
    im = ax[2].imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax[2].text(j, i, str(cm[i, j]), ha="center", va="center",
                       color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    ax[2].set(title="confusion matrix (test)", xlabel="predicted", ylabel="actual",
              xticks=range(cm.shape[1]), yticks=range(cm.shape[0]))
    fig.colorbar(im, ax=ax[2])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bench(args):
    from fastdl import benchmarks

    return benchmarks.main(args)


def main(argv=None):
    p = argparse.ArgumentParser(prog="fastdl", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions, backends, threads, BLAS, CPU features")

    t = sub.add_parser("train", help="train an MLP on the 8x8 digits and report test metrics")
    t.add_argument("--backend", choices=("numpy", "numba", "cython"), default=None)
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--schedule", choices=("cosine", "step", "exponential", "none"),
                   default="cosine")
    t.add_argument("--hidden", default="256,128", help="hidden layer sizes, e.g. 256,128")
    t.add_argument("--dropout", type=float, default=0.1)
    t.add_argument("--patience", type=int, default=10)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--output", default="fastdl-digits.npz", help="where to save the model")
    t.add_argument("--plot", default=None, help="write loss/accuracy curves and the "
                   "confusion matrix to this PNG (needs matplotlib)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    b = sub.add_parser("bench", help="time every kernel and backend against the reference "
                       "(and PyTorch when installed)")
    from fastdl import benchmarks
    benchmarks.add_arguments(b)

    args = p.parse_args(argv)
    handler = {"info": _info, "train": _train, "bench": _bench}[args.cmd]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
