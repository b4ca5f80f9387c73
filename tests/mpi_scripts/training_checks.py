"""The training loop's building blocks under MPI, against one process, on a toy model.

The toy model is linear regression, ``P = X W + b`` with the weighted mean squared
error ``L = sum_i s_i ||P_i - Y_i||^2 / (2 sum_i s_i)`` (``s_i = 1``: the plain mean;
other ``s_i`` stand for class weights), its parameters in one flat float64 buffer.
Every rank computes the one-process reference itself, and asserts against it."""
import numpy as np

import fastdl.distributed as dist
from _common import bits, expect
from fastdl.optim import clip_grad_norm_

N, D, K = 37, 5, 3
SIZE = D * K + K
RTOL = dict(rtol=1e-12, atol=1e-14)


def data():
    g = np.random.default_rng(1234)  # the same on every rank
    X = g.standard_normal((N, D))
    Y = X @ g.standard_normal((D, K)) + 0.3 * g.standard_normal((N, K))
    s = g.uniform(0.2, 3.0, N)
    return X, Y, s


def loss_grad(w, X, Y, s, out):
    """(sum_i s_i l_i, gradient of the s-weighted mean loss written into ``out``)."""
    W, b = w[: D * K].reshape(D, K), w[D * K:]
    R = X @ W + b - Y
    total = s.sum()
    dR = s[:, None] * R / total
    out[: D * K] = (X.T @ dR).ravel()
    out[D * K:] = dR.sum(axis=0)
    return 0.5 * float(np.sum(s[:, None] * R * R)), R


def check_gradients(p, r, record):
    """One global batch: the weighted average of the shares' gradients is its gradient."""
    X, Y, s = data()
    w = np.random.default_rng(5).standard_normal(SIZE)
    g = np.random.default_rng(6)
    sums = []
    for m in sorted({1, p - 1, p, p + 1, 7, N}):
        if m == 0:
            continue
        idx = g.choice(N, m, replace=False)
        for weights in (np.ones(N), s):
            want = np.empty(SIZE)
            loss_grad(w, X[idx], Y[idx], weights[idx], want)
            mine = idx[dist.shard(m)]
            grad = np.full(SIZE, np.nan)  # a rank with no rows must not add stale values
            wr = weights[mine].sum()
            if mine.size:
                loss_grad(w, X[mine], Y[mine], weights[mine], grad)
            dist.average_gradients_(grad, wr, weights[idx].sum())
            np.testing.assert_allclose(grad, want, **RTOL, err_msg=f"m={m}")
            sums.append(bits(grad))
    record["averaged_gradients"] = sums
    expect(ValueError, "weight: expected at most total", dist.average_gradients_,
           np.zeros(SIZE), 3, 2)
    # an infinite total zeroed the gradient on every rank, without a word
    expect(ValueError, "total: expected a finite number", dist.average_gradients_,
           np.ones(SIZE), 1.0, float("inf"))


def train(batch_size, epochs, seed, distributed, clip=None, lr=0.05):
    """Plain SGD; returns (parameters, per-epoch logs, clip norms)."""
    X, Y, s = data()
    if distributed:
        w = np.random.default_rng(100 + dist.rank()).standard_normal(SIZE)
        dist.broadcast_(w)  # every rank starts from rank 0's parameters
        rng = np.random.default_rng(dist.shared_seed(seed))
    else:
        w = np.random.default_rng(100).standard_normal(SIZE)
        rng = np.random.default_rng(seed)
    grad = np.empty(SIZE)
    logs, norms = [], []
    for _ in range(epochs):
        order = rng.permutation(N)
        loss_sum, close, rows = 0.0, 0, 0
        for start in range(0, N, batch_size):
            idx = order[start:start + batch_size]
            m = idx.size
            mine = idx[dist.shard(m)] if distributed else idx
            if mine.size:
                lv, R = loss_grad(w, X[mine], Y[mine], np.ones(mine.size), grad)
                loss_sum += lv
                close += int(np.count_nonzero(np.abs(R).max(axis=1) < 1.0))
                rows += mine.size
            if distributed:
                dist.average_gradients_(grad, mine.size, m, check=False)
            if clip is not None:
                norms.append(clip_grad_norm_(grad, clip, backend="numpy"))
            w -= lr * grad
        epoch = (loss_sum, close, rows)
        logs.append(dist.reduce_sums(epoch) if distributed else epoch)
        if distributed:
            assert dist.in_sync(w), "parameters drifted apart between ranks"
    return w, logs, norms


def check_training(p, r, record):
    """Whole runs: parameters, logs and clip norms equal one process's."""
    for batch_size, clip in ((8, None), (1, None), (N, None), (6, 0.5)):
        wd, logs_d, norms_d = train(batch_size, 3, 42, True, clip)
        ws, logs_s, norms_s = train(batch_size, 3, 42, False, clip)
        np.testing.assert_allclose(wd, ws, rtol=1e-10, atol=1e-12,
                                   err_msg=f"batch_size {batch_size}")
        np.testing.assert_allclose(np.array(logs_d), np.array(logs_s), **RTOL)
        assert [row[1:] for row in logs_d] == [row[1:] for row in logs_s]  # counts exact
        np.testing.assert_allclose(norms_d, norms_s, **RTOL)
        if clip is not None:
            assert min(norms_d) > clip, "the clipping case must clip"
        key = f"train_b{batch_size}"
        record[key + "_params"] = bits(wd)
        record[key + "_logs"] = [[bits(float(v)) for v in row] for row in logs_d]
        record[key + "_norms"] = [bits(float(v)) for v in norms_d]


def check_buckets(p, r, record):
    """GradientBuckets: shares scaled by m_r/m, buckets started last layer first."""
    X, Y, s = data()
    w = np.random.default_rng(8).standard_normal(SIZE)
    want = np.empty(SIZE)
    loss_grad(w, X, Y, np.ones(N), want)
    grad = np.zeros(SIZE)
    buckets = dist.GradientBuckets(grad, [(0, D * K), (D * K, SIZE)])
    for _ in range(2):  # reusable step after step
        mine = np.arange(N)[dist.shard(N)]
        loss_grad(w, X[mine], Y[mine], np.ones(mine.size), grad)
        grad *= mine.size / N
        buckets.start(1)  # the bias of the last layer is written first
        buckets.progress()
        buckets.start(0)
        buckets.wait()
        np.testing.assert_allclose(grad, want, **RTOL)
    buckets.start(1)
    expect(RuntimeError, "bucket 1 started twice", buckets.start, 1)
    buckets.start(0)
    buckets.wait()
    expect(RuntimeError, "buckets [0, 1] were not started", buckets.wait)
    expect(ValueError, "i: expected a bucket in [0, 2), got 2", buckets.start, 2)
    expect(ValueError, "i: expected an int >= 0, got -1", buckets.start, -1)
    expect(ValueError, "bounds: (0, 10) and (5, 18) overlap", dist.GradientBuckets, grad,
           [(0, 10), (5, 18)])
    expect(ValueError, "bounds: (3, 3) is not a non-empty range", dist.GradientBuckets,
           grad, [(3, 3)])
    expect(ValueError, "bounds: value differs between ranks", dist.GradientBuckets, grad,
           [(0, 10 + min(r, 1))])
    # refused on one rank only: every rank raises, and the ranks stay in step (the others
    # got a truncated message, then waited out the time limit)
    expect(ValueError, "bounds", dist.GradientBuckets, grad,
           [(0, grad.size + 1)] if r == 1 else [(0, 10)])
    dist.GradientBuckets(grad, [(0, 10)])


def run(record):
    p, r = dist.world_size(), dist.rank()
    for check in (check_gradients, check_training, check_buckets):
        check(p, r, record)
        record.setdefault("passed", []).append(check.__name__)
