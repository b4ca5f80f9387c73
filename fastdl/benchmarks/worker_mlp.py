"""A worker process of ``fastdl bench``: training epochs of a 784-512-256-10 ReLU MLP
(softmax cross-entropy, Adam) on random data, for one library or, with ``--library
both``, for fastdl and PyTorch in the same process, alternated (a row that measures
their interference, labelled as such).  Prints one JSON line
``{"results": {competitor: {"samples": [seconds an epoch, ...]}}, "threads": ...}``.

Run by path, never with ``-m``: PyTorch's worker imports NumPy and PyTorch only.  The
first epoch of each competitor is a warm-up (compilation, first touch), untimed.
fastdl's worker times each backend asked for and, with ``--floor``, the epoch's
matrix products alone (floors.py), interleaved epoch by epoch.
"""
import argparse
import json
import os
import sys
import time

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # this folder's module names must not shadow anyone's imports


COOL = 0.25


def data(n_rows, seed=0):
    import numpy as np

    r = np.random.default_rng(seed)
    return r.random((n_rows, 784), dtype=np.float32), r.integers(0, 10, n_rows)


def fastdl_epoch(X, y, bs, backend):
    import warnings

    from fastdl import nn, optim

    model = nn.Sequential(nn.Dense(784, 512, "relu"), nn.Dense(512, 256, "relu"),
                          nn.Dense(256, 10), seed=0, backend=backend)
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def epoch():
        # retrained for many epochs on random labels, the model learns them and fit
        # warns of vanishing gradients; a step's cost does not depend on the values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y, optimizer=opt, epochs=1, batch_size=bs, verbose=0, seed=0)
    return epoch


def torch_epoch(torch, X, y, bs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n = X.shape[0]
    lossf = torch.nn.functional.cross_entropy

    def epoch():
        perm = torch.randperm(n)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            lossf(model(xb), yb).backward()
            opt.step()
    return epoch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", required=True, choices=("fastdl", "torch", "both"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs of each competitor")
    ap.add_argument("--threads", type=int, default=0, help="0: each library's default")
    ap.add_argument("--backends", default="", help="fastdl's backends, comma-separated "
                    "(default: its default backend)")
    ap.add_argument("--floor", action="store_true", help="time the bare matrix products too")
    ap.add_argument("--preimport", default="numpy", choices=("numpy", "torch", "fastdl"))
    a = ap.parse_args(argv)
    __import__(a.preimport)
    X, y = data(a.rows)
    fns, threads = {}, {}
    if a.library in ("fastdl", "both"):
        import fastdl

        if a.threads:
            fastdl.set_num_threads(a.threads)
        for be in [b for b in a.backends.split(",") if b] or [fastdl.get_backend()]:
            fns["fastdl" if a.library == "both" else be] = fastdl_epoch(X, y, a.batch, be)
        if a.floor:
            from fastdl.benchmarks.floors import bare_products

            fns["floor"] = bare_products(X, a.batch)
    if a.library in ("torch", "both"):
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        fns["torch"] = torch_epoch(torch, X, y, a.batch)
        threads["torch"] = torch.get_num_threads()
    for fn in fns.values():
        fn()  # warm-up
    samples = {k: [] for k in fns}
    for _ in range(a.epochs):
        for k, fn in fns.items():
            # the competitors run BLAS in different threads (the compiled backends
            # one thread per OpenMP thread, the floor OpenBLAS's own pool, PyTorch its
            # own library), whose idle threads spin about 0.1 s after a call: each epoch
            # starts with them asleep, as in a program using one library
            time.sleep(COOL)
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
    if a.library in ("fastdl", "both"):
        threads["fastdl"] = fastdl.info()["threads"]
    print(json.dumps({"results": {k: {"samples": v} for k, v in samples.items()},
                      "threads": threads, "preimport": a.preimport,
                      "fastdl_imported": any(m.split(".")[0] == "fastdl" for m in sys.modules)}))


if __name__ == "__main__":
    main()
