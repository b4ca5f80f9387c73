"""``Sequential.fit(distributed=True)`` under MPI, against ``fit`` in one process.

Every rank runs the one-process fit itself (no communication) and asserts against it;
what must be the same bits on every rank goes into the record; what must differ
between ranks (their streams) goes under keys starting with ``own_``."""
import contextlib
import io
import os

import numpy as np

import fastdl
import fastdl.distributed as dist
from _common import bits, expect
from fastdl import callbacks, nn, optim, schedules

PARAMS = dict(rtol=1e-10, atol=1e-12)
LOGS = dict(rtol=1e-9, atol=1e-12)


def data(n=103, d=6, c=3, seed=0):
    """Blobs with 20% wrong labels (validation loss then rises and stops training);
    column 0 holds the row number, so a batch tells which rows it holds."""
    g = np.random.default_rng(seed)
    y = g.integers(0, c, n)
    X = g.standard_normal((c, d))[y] * 1.5 + g.standard_normal((n, d))
    flip = g.random(n) < 0.2
    y[flip] = g.integers(0, c, flip.sum())
    X[:, 0] = np.arange(n) / n
    return X, y


def mlp(d=6, out=3, seed=0, dropout=0.0):
    layers = [nn.Dense(d, 16, "relu")] + ([nn.Dropout(dropout)] if dropout else []) \
        + [nn.Dense(16, out)]
    return nn.Sequential(*layers, seed=seed, dtype=np.float64)


def both(build, X, y, make_kwargs, start_seed=None):
    """(distributed model and History, one-process model and History).  The distributed
    model starts from other parameters on every rank but rank 0 (broadcast)."""
    out = []
    for distributed in (True, False):
        seed = dist.rank() if distributed and start_seed is None else 0
        model = build(seed=seed)
        hist = model.fit(X, y, **make_kwargs(model), verbose=0, distributed=distributed)
        out += [model, hist]
    return out


def compare(name, record, md, hd, ms, hs):
    np.testing.assert_allclose(md.parameters().data, ms.parameters().data, **PARAMS,
                               err_msg=name)
    assert hd.epoch == hs.epoch, (name, hd.epoch, hs.epoch)
    assert sorted(hd.history) == sorted(hs.history), name
    for k in hd.history:
        np.testing.assert_allclose(hd.history[k], hs.history[k], **LOGS,
                                   err_msg=f"{name}: {k}")
    record[f"fit_{name}_params"] = bits(md.parameters().data)
    record[f"fit_{name}_logs"] = {k: [bits(float(v)) for v in vs]
                                  for k, vs in hd.history.items()}


def check_fit_equivalence(p, r, record):
    X, y = data()
    # class weights, clipping (global norm), a schedule that reads the logs, early
    # stopping restoring the best weights, a validation split, an uneven last batch
    clip = 0.05

    def case_a(model):
        return dict(optimizer=optim.Adam(model.parameters(), lr=0.05, clip_norm=clip),
                    epochs=15, batch_size=16, validation_split=0.25,
                    class_weight="balanced", seed=3,
                    schedule=schedules.ReduceLROnPlateau(0.05, patience=1, factor=0.5),
                    callbacks=[callbacks.EarlyStopping(patience=2)])
    md, hd, ms, hs = both(mlp, X, y, case_a)
    compare("weighted", record, md, hd, ms, hs)
    assert len(hs.epoch) < 15, "early stopping must stop this case"
    assert len(set(hs.history["lr"])) > 1, "the schedule must change the rate"
    assert min(hs.history["grad_norm/dense_0"]) > clip, "this case must clip"
    record["fit_weighted_clip_norm"] = bits(md.optimizer.last_grad_norm)
    np.testing.assert_allclose(md.optimizer.last_grad_norm, ms.optimizer.last_grad_norm,
                               **LOGS)

    # a batch smaller than the ranks (empty shares), SGD with momentum, no shuffle,
    # validation data whose shares are uneven
    def case_b(model):
        return dict(optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                    epochs=2, batch_size=2, shuffle=False,
                    validation_data=(X[:11], y[:11]), seed=4)
    compare("tiny_batches", record, *both(mlp, X[11:], y[11:], case_b))

    # binary cross-entropy with class weights (the mean divides by the batch's weight)
    yb = (y == 1).astype(np.float64)

    def case_c(model):
        return dict(loss="binary_cross_entropy", class_weight={0: 0.3, 1: 2.0},
                    epochs=3, batch_size=7, validation_split=0.2, seed=5)
    compare("binary", record, *both(lambda seed: mlp(out=1, seed=seed), X, yb, case_c))

    # class probabilities with class weights (the mean is over rows), full batch
    onehot = np.eye(3)[y]

    def case_d(model):
        return dict(class_weight=[1.0, 2.0, 0.5], epochs=3, batch_size=None, seed=6)
    compare("onehot_full_batch", record, *both(mlp, X, onehot, case_d))

    # regression
    t = X[:, 1:3] * 2 - X[:, 3:4]

    def case_e(model):
        return dict(loss="mse", optimizer="sgd", epochs=2, batch_size=10, seed=7,
                    validation_split=0.1)
    compare("mse", record, *both(lambda seed: mlp(out=2, seed=seed), X, t, case_e))

    # global batches whose rows all weigh 0 add 0 and a zero gradient, as in one process
    # (a NaN gradient made every parameter NaN), and validation rows that all weigh 0
    # a val_loss of 0 (NaN); binary cross-entropy too
    order = np.argsort(y != 0, kind="stable")
    Xz, yz = X[order], y[order]

    def case_f(model):
        return dict(optimizer="sgd", class_weight={0: 0.0, 1: 1.0, 2: 1.0}, epochs=2,
                    batch_size=8, shuffle=False, validation_data=(Xz[:5], yz[:5]), seed=8)
    compare("weightless_batches", record, *both(mlp, Xz, yz, case_f))
    ybz = (yz != 0).astype(np.float64)

    def case_g(model):
        return dict(loss="binary_cross_entropy", optimizer="sgd", class_weight={0: 0, 1: 2},
                    epochs=2, batch_size=8, shuffle=False,
                    validation_data=(Xz[:5], ybz[:5]), seed=8)
    compare("weightless_binary", record,
            *both(lambda seed: mlp(out=1, seed=seed), Xz, ybz, case_g))

    # seed=None: rank 0's seed for all (then kept as the model's seed)
    m = mlp()
    h = m.fit(X, y, epochs=1, batch_size=32, verbose=0, distributed=True)
    record["fit_seed_none_params"] = bits(m.parameters().data)
    record["fit_seed_none_logs"] = [bits(v) for v in h.history["loss"]]
    record["fit_seed_none_seed"] = m._seed


def check_fit_streams(p, r, record):
    """Dropout and augmentation draw per-rank streams; the shuffle stays one process's."""
    X, y = data()
    seen = {True: [], False: []}

    def augmenter(distributed):
        def augment(xb, rng):
            seen[distributed].append((np.rint(xb[:, 0] * len(X)).astype(int).tolist(),
                                      float(rng.random())))
            return xb + 0.01 * rng.standard_normal(xb.shape)
        return augment

    runs = []
    for distributed in (True, False, True):
        model = mlp(dropout=0.3)
        seen[distributed].clear()
        hist = model.fit(X, y, epochs=2, batch_size=16, seed=9, verbose=0,
                         augment=augmenter(distributed), distributed=distributed)
        runs.append((model, hist))
    model, hist = runs[2]
    # the same seed, the same run (each rank's streams derive from it)
    np.testing.assert_array_equal(model.parameters().data, runs[0][0].parameters().data)
    record["fit_streams_params"] = bits(model.parameters().data)
    record["fit_streams_logs"] = [bits(v) for v in hist.history["loss"]]
    # this rank's rows of every batch, and its augmentation stream's first draws
    record["own_fit_streams_rows"] = [rows for rows, _ in seen[True]]
    record["own_fit_streams_draws"] = [d for _, d in seen[True]]
    record["own_fit_streams_dropout"] = bits(model.layers[1].rng.random(4))
    record["fit_streams_single_rows"] = [rows for rows, _ in seen[False]]


def check_fit_refusals(p, r, record):
    """Bad use raises on every rank, and the ranks stay in step."""
    X, y = data()
    last = p - 1
    expect(ValueError, "X: shape differs between ranks (rank 0: (103, 6), rank 1: (102, 6)",
           mlp().fit, X[:103 - min(r, 1)], y[:103 - min(r, 1)], epochs=1, verbose=0,
           seed=0, distributed=True)
    Xr = X.copy()
    Xr[50, 2] += r
    msg = expect(ValueError, "X: contents differ between ranks", mlp().fit, Xr, y, epochs=1,
                 verbose=0, seed=0, distributed=True)
    assert "every rank passes the same data and arguments" in msg, msg
    expect(ValueError, "batch_size: value differs between ranks (rank 0: 16, rank 1: 17",
           mlp().fit, X, y, batch_size=16 + min(r, 1), epochs=1, verbose=0, seed=0,
           distributed=True)
    expect(ValueError, "seed: value differs between ranks", mlp().fit, X, y, epochs=1,
           verbose=0, seed=r, distributed=True)
    Xn = X.copy()
    if r == last:
        Xn[7, 1] = np.nan
        expect(ValueError, "X: expected finite values", mlp().fit, Xn, y, verbose=0,
               distributed=True)
    else:
        expect(ValueError, f"fit's arguments refused on rank {last}: ValueError: X: "
               "expected finite values", mlp().fit, Xn, y, verbose=0, distributed=True)
    expect(TypeError, "distributed: expected a bool, got str", mlp().fit, X, y,
           distributed="yes")
    # still in step: a fit after the refusals trains on every rank alike
    m = mlp()
    m.fit(X, y, epochs=1, batch_size=50, seed=1, verbose=0, distributed=True)
    record["fit_after_refusals"] = bits(m.parameters().data)


def check_fit_thread_counts(p, r, record):
    """Ranks on different thread counts (nodes of different sizes): clipping by the
    global norm sums over more than one kernel chunk (65,536 values), and each rank's
    norm, the History's grad_norm and the parameters are the same bits (the norm was a
    sum of one partial a thread: the ranks' parameters parted after one epoch)."""
    X, y = data(n=64, d=300)
    saved = fastdl.get_num_threads()
    fastdl.set_num_threads(1 + r % 2)
    try:
        for backend in fastdl.backends():
            m = nn.Sequential(nn.Dense(300, 256, "relu"), nn.Dense(256, 3), seed=0,
                              backend=backend)
            opt = optim.Adam(m.parameters(), lr=1e-3, clip_norm=0.01)
            h = m.fit(X, y, optimizer=opt, epochs=2, batch_size=32, seed=0, verbose=0,
                      distributed=True)
            record[f"fit_threads_{backend}_params"] = bits(m.parameters().data)
            record[f"fit_threads_{backend}_logs"] = {k: [bits(float(v)) for v in vs]
                                                     for k, vs in h.history.items()}
    finally:
        fastdl.set_num_threads(saved)


def check_fit_save(p, r, record, outdir):
    X, y = data()
    m = mlp()
    m.fit(X, y, epochs=1, batch_size=32, seed=2, verbose=0, distributed=True)
    assert m.save(os.path.join(outdir, "dist.npz")) == os.path.join(outdir, "dist.npz")
    m.save(os.path.join(outdir, f"dist_rank{r}.npz"))  # written by rank 0 only
    plain = mlp()
    plain.fit(X, y, epochs=1, batch_size=32, seed=2, verbose=0)
    plain.save(os.path.join(outdir, f"plain_rank{r}.npz"))  # no distributed fit: every rank
    dist.reduce_sums([0.0])  # rank 0 has written its files
    loaded = fastdl.load(os.path.join(outdir, "dist.npz"))
    np.testing.assert_array_equal(loaded.parameters().data, m.parameters().data)


def check_cli(p, r, record, outdir):
    """``mpirun -n K fastdl train --distributed``: rank 0 alone prints, plots, saves."""
    from fastdl import cli

    out, err = io.StringIO(), io.StringIO()
    argv = ["train", "--distributed", "--epochs", "1", "--batch-size", "128", "--hidden",
            "16", "--no-augment", "--output", os.path.join(outdir, "cli.npz"), "--plot"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    assert status == 0, (status, err.getvalue())
    assert (out.getvalue() != "") == (r == 0), out.getvalue()
    assert (err.getvalue() != "") == (r == 0), err.getvalue()  # one line per epoch
    record["cli_threads"] = fastdl.get_num_threads()
    # an output path rank 0 refuses: every rank ends with status 2, rank 0 says why
    bad = ["train", "--distributed", "--epochs", "1", "--output",
           os.path.join(outdir, "missing", "m.npz")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(bad)
        except SystemExit as e:
            status = e.code
    assert status == 2, status
    assert ("the folder of" in err.getvalue()) == (r == 0), err.getvalue()
    # a diverged run fails on every rank (status 1); rank 0 alone says so (every rank did)
    diverge = ["train", "--distributed", "--epochs", "1", "--quiet", "--lr", "1e6",
               "--hidden", "16", "--no-augment", "--output", os.path.join(outdir, "nan.npz")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(diverge)
    assert status == 1, status
    assert (err.getvalue() != "") == (r == 0), err.getvalue()
    assert "error: training diverged" in err.getvalue() or r != 0, err.getvalue()
    assert not os.path.exists(os.path.join(outdir, "nan.npz"))


def run(record, outdir):
    p, r = dist.world_size(), dist.rank()
    for check in (check_fit_equivalence, check_fit_streams, check_fit_refusals,
                  check_fit_thread_counts):
        check(p, r, record)
        record.setdefault("passed", []).append(check.__name__)
    check_fit_save(p, r, record, outdir)
    record["passed"].append("check_fit_save")
    if p == 2:  # the command's imports cost seconds: one world size is enough
        check_cli(p, r, record, outdir)
        record["passed"].append("check_cli")
