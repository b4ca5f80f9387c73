"""A CNN training epoch, fastdl against PyTorch, each library in its own process.

The workload: conv5x5(16)-ReLU-maxpool2-conv5x5(32)-ReLU-maxpool2-
dense(128)-ReLU-dense(10) on 8,000 28x28 one-channel images, batch 64, Adam(lr=1e-3),
softmax cross-entropy, float32, shuffled every epoch.  The images are MNIST-like and
made here, the same in both processes, from scikit-learn's 8x8 digits (no download):
each is a digit upscaled to 20x20 (bilinear), put at a random place in a 28x28 frame,
plus Gaussian noise (std 0.05), clipped to [0, 1]; the 2,000 test images come from
digits that no training image was made from.

    python fastdl/benchmarks/worker_cnn.py --library fastdl [--epochs 3] [--threads 1] [--backend B]
    python fastdl/benchmarks/worker_cnn.py --library torch  [--epochs 3] [--threads 1]

prints one JSON line: ``epoch_seconds`` (the median over the epochs; the kernels were
compiled and warmed on a throwaway model first), ``epochs_seconds`` (each), ``accuracy``
(on the test images after the epochs), and the library, threads and versions.

    python fastdl/benchmarks/worker_cnn.py --compare [--rounds 3] [--epochs 3] [--threads 1]

runs fresh processes, alternated (fastdl, torch, fastdl, ...), and prints the medians,
the ratio fastdl / torch and the load average before and after.  The PyTorch process
never imports fastdl.  ``run(library, ...)`` is the same measurement as a function,
``measure(library, ...)`` one fresh process, for a ``fastdl bench`` row.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

N_TRAIN, N_TEST, SIDE, BATCH, EPOCHS = 8000, 2000, 28, 64, 3


def make_data(n_train=N_TRAIN, n_test=N_TEST, seed=0):
    """((X_train, y_train), (X_test, y_test)): float32 (N, 1, 28, 28) in [0, 1], int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    digits = (d.data.reshape(-1, 8, 8) / 16.0).astype(np.float64)
    labels = d.target.astype(np.int64)
    r = np.random.default_rng(seed)
    order = r.permutation(len(labels))
    pools = order[:1400], order[1400:]  # test images from digits never trained on
    # bilinear upscaling 8 -> 20 as a matrix: big = M small M^T
    pos = (np.arange(20) + 0.5) * 8 / 20 - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, 7)
    hi = np.clip(lo + 1, 0, 7)
    t = np.clip(pos - lo, 0, 1)
    M = np.zeros((20, 8))
    M[np.arange(20), lo] += 1 - t
    M[np.arange(20), hi] += t

    def images(pool, n):
        pick = r.choice(pool, n)
        big = np.einsum("ij,njk,lk->nil", M, digits[pick], M)
        X = np.zeros((n, SIDE, SIDE))
        off = r.integers(0, SIDE - 20 + 1, (n, 2))
        for i in range(n):
            X[i, off[i, 0]:off[i, 0] + 20, off[i, 1]:off[i, 1] + 20] = big[i]
        X += r.normal(0, 0.05, X.shape)
        return np.clip(X, 0, 1).astype(np.float32)[:, None], labels[pick]

    return images(pools[0], n_train), images(pools[1], n_test)


def _fastdl(train, test, epochs, threads, backend):
    import fastdl
    from fastdl import callbacks, nn, optim

    if threads:  # 0: fastdl's default count
        fastdl.set_num_threads(threads)

    def build(seed):
        return nn.Sequential(
            nn.Conv2D(1, 16, 5, activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(16, 32, 5, activation="relu"), nn.MaxPool2D(2), nn.Flatten(),
            nn.Dense(32 * 4 * 4, 128, activation="relu"), nn.Dense(128, 10),
            seed=seed, backend=backend)

    class Clock(callbacks.Callback):
        def on_train_begin(self, model):
            self.marks = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs):
            self.marks.append(time.perf_counter())
            return False

    X, y = train
    warm = build(1)  # compiles and warms every kernel, outside the timed model
    warm.fit(X[:4 * BATCH], y[:4 * BATCH], optimizer=optim.Adam(warm.parameters()),
             epochs=1, batch_size=BATCH, verbose=0)
    model = build(0)
    clock = Clock()
    model.fit(X, y, optimizer=optim.Adam(model.parameters(), lr=1e-3), epochs=epochs,
              batch_size=BATCH, seed=0, verbose=0, callbacks=[clock])
    acc = float(np.mean(model.predict(test[0]) == test[1]))
    info = {"fastdl": fastdl.__version__, "backend": backend or fastdl.get_backend()}
    return np.diff(clock.marks).tolist(), acc, info


def _torch(train, test, epochs, threads):
    import torch
    from torch import nn

    if threads:  # 0: PyTorch's default count
        torch.set_num_threads(threads)

    def build(seed):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10))
        # fastdl's initialisation (He normal, zero biases), so that the accuracies
        # compare the training, not two starting points (PyTorch's default starts
        # smaller: 0.913 against fastdl's 0.934 after 3 epochs)
        for layer in model:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        return model

    X, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    loss_fn = nn.CrossEntropyLoss()

    def epoch(model, opt, gen, rows):
        model.train()
        perm = torch.randperm(rows, generator=gen)
        for s in range(0, rows, BATCH):
            idx = perm[s:s + BATCH]
            loss = loss_fn(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    warm = build(1)
    epoch(warm, torch.optim.Adam(warm.parameters()), torch.Generator().manual_seed(1),
          4 * BATCH)
    model = build(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch(model, opt, gen, X.shape[0])
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(test[0])).argmax(1).numpy()
    return times, float(np.mean(pred == test[1])), {"torch": torch.__version__}


def run(library, epochs=EPOCHS, threads=1, backend=None):
    """{epoch_seconds, epochs_seconds, accuracy, ...} of ``library`` ("fastdl" or
    "torch") in this process."""
    train, test = make_data()
    if library == "fastdl":
        times, acc, info = _fastdl(train, test, epochs, threads, backend)
    elif library == "torch":
        times, acc, info = _torch(train, test, epochs, threads)
    else:
        raise ValueError(f"library: expected 'fastdl' or 'torch', got {library!r}")
    return {"library": library, "epoch_seconds": float(np.median(times)),
            "epochs_seconds": times, "accuracy": acc, "threads": threads,
            "workload": "conv5x5(16)-pool-conv5x5(32)-pool-dense(128)-dense(10), 8000 "
                        "28x28 images, batch 64, Adam", **info}


def measure(library, epochs=EPOCHS, threads=1, backend=None, timeout=900):
    """``run`` in a fresh process (the PyTorch one never imports fastdl)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--library", library,
           "--epochs", str(epochs), "--threads", str(threads)]
    if backend:
        cmd += ["--backend", backend]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(rounds, epochs, threads, backend=None):
    load0 = os.getloadavg()
    res = {"fastdl": [], "torch": []}
    for _ in range(rounds):
        for lib in ("fastdl", "torch"):
            res[lib].append(measure(lib, epochs, threads, backend))
    med = {lib: float(np.median([r["epoch_seconds"] for r in rs])) for lib, rs in res.items()}
    acc = {lib: float(np.median([r["accuracy"] for r in rs])) for lib, rs in res.items()}
    return {"epoch_seconds": med, "accuracy": acc, "ratio": med["fastdl"] / med["torch"],
            "rounds": rounds, "epochs": epochs, "threads": threads,
            "loadavg_before": load0, "loadavg_after": os.getloadavg(), "runs": res}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--library", choices=("fastdl", "torch"))
    p.add_argument("--compare", action="store_true")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--threads", type=int, default=1, help="0: each library's default")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default=None)
    a = p.parse_args(argv)
    if a.compare:
        out = compare(a.rounds, a.epochs, a.threads, a.backend)
    elif a.library:
        out = run(a.library, a.epochs, a.threads, a.backend)
    else:
        p.error("give --library or --compare")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
