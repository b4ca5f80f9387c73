"""allreduce_, broadcast_, reduce_sums, check_consistent, shared_seed, rank_rng under MPI.

Each check asserts on every rank; the values that must agree between ranks go into
the record, which the test compares across ranks."""
import numpy as np

import fastdl.distributed as dist
from _common import bits, expect

DTYPES = (np.float32, np.float64)


def rank_values(shape, dtype, r):
    """Rank r's input: distinct per rank and exactly representable in float32."""
    n = int(np.prod(shape))
    return np.array(np.arange(n, dtype=np.float64).reshape(shape) * 0.5 + 8 * r - 3,
                    dtype=dtype)  # an array also for shape () (arithmetic gives a scalar)


def check_allreduce(p, r, record):
    for dtype in DTYPES:
        for shape in [(7,), (3, 5), (), (0,), (1000,)]:
            inputs = [rank_values(shape, dtype, q) for q in range(p)]
            for op, ref in [("sum", np.sum), ("mean", np.mean), ("max", np.max),
                            ("min", np.min)]:
                a = inputs[r].copy()
                res = dist.allreduce_(a, op)
                assert res is a and a.dtype == dtype and a.shape == shape
                want = ref(np.stack(inputs), axis=0).astype(dtype)
                # sums of these values are exact in float32, so any order gives them
                np.testing.assert_array_equal(a, want, err_msg=f"{op} {dtype} {shape}")
            # the default op is the mean
            a = inputs[r].copy()
            np.testing.assert_array_equal(dist.allreduce_(a), np.mean(inputs, axis=0))
        a = rank_values((5,), dtype, r)
        dist.allreduce_(a, "sum", check=False)
        np.testing.assert_array_equal(a, sum(rank_values((5,), dtype, q) for q in range(p)))
    # NaN propagates through max and min too, wherever it stands (MPI's MAX dropped a
    # NaN that came second), and only where it stands
    for op in ("max", "min"):
        a = np.array([0.0, 1.0, np.nan if r == p - 1 else 2.0, -1.0])
        if r == 0:
            a[3] = np.nan
        dist.allreduce_(a, op)
        assert np.isnan(a[2]) and np.isnan(a[3]), (op, a)
        assert a[0] == 0.0 and a[1] == 1.0, (op, a)
    # every rank holds the same bits after a sum of values that round differently
    a = np.random.default_rng(r).standard_normal(4097).astype(np.float32)
    dist.allreduce_(a, "sum")
    record["allreduce_rounded_sum"] = bits(a)


def check_broadcast(p, r, record):
    for dtype in DTYPES:
        for root in sorted({0, p - 1}):
            a = rank_values((4, 3), dtype, r)
            assert dist.broadcast_(a, root=root) is a
            np.testing.assert_array_equal(a, rank_values((4, 3), dtype, root))
    a = rank_values((6,), np.float64, r)
    dist.broadcast_(a)  # root defaults to 0
    np.testing.assert_array_equal(a, rank_values((6,), np.float64, 0))


def check_errors(p, r, record):
    """Bad arguments raise on every rank (no hang), and the next call still works."""
    f64 = np.zeros(4)
    # refused on every rank: each raises its own error
    expect(TypeError, "array: expected a float32 or float64 array, got int64",
           dist.allreduce_, np.zeros(4, dtype=np.int64))
    expect(TypeError, "array: expected a NumPy array, got list", dist.allreduce_, [1.0])
    expect(ValueError, "array: expected a C-contiguous array", dist.allreduce_,
           np.zeros((4, 4))[:, 1])
    ro = np.zeros(4)
    ro.flags.writeable = False
    expect(ValueError, "array: array is read-only", dist.allreduce_, ro)
    expect(ValueError, "op: expected one of ('mean', 'sum', 'max', 'min'), got 'avg'",
           dist.allreduce_, f64, "avg")
    expect(ValueError, "array: array is read-only", dist.broadcast_, ro)
    expect(ValueError, f"root: expected a rank in [0, {p}), got {p}", dist.broadcast_,
           f64, p)
    expect(ValueError, "root: expected an int >= 0, got -1", dist.broadcast_, f64, -1)
    expect(TypeError, "root: expected an int, got float", dist.broadcast_, f64, 0.0)
    # refused on one rank only: that rank raises its error, the others name it
    bad = np.zeros(4, dtype=np.int32) if r == p - 1 else f64
    if r == p - 1:
        expect(TypeError, "array: expected a float32 or float64 array, got int32",
               dist.allreduce_, bad)
    else:
        expect(RuntimeError, f"allreduce_ refused its arguments on rank {p - 1}",
               dist.allreduce_, bad)
    # average_gradients_ too (it raised on the refusing rank only; the others waited)
    if r == p - 1:
        expect(ValueError, "weight: expected at most total", dist.average_gradients_,
               np.zeros(3), 3, 2)
    else:
        expect(ValueError, f"average_gradients_'s arguments refused on rank {p - 1}",
               dist.average_gradients_, np.zeros(3), 1, 2)
    # ... and a total that differs (it averaged with the wrong weights)
    expect(ValueError, "total: value differs between ranks (rank 0: 2.0, rank 1: 3.0",
           dist.average_gradients_, np.zeros(3), 1, 2 + min(r, 1))
    # arguments that differ between ranks
    expect(ValueError, "array: size differs between ranks (rank 0: 4 elements, rank 1: "
           "5 elements", dist.allreduce_, np.zeros(4 + min(r, 1)))
    expect(TypeError, "array: dtype differs between ranks (rank 0: float64, rank 1: float32",
           dist.allreduce_, np.zeros(4, dtype=np.float64 if r == 0 else np.float32))
    expect(ValueError, "op: differs between ranks (rank 0: sum, rank 1: max",
           dist.allreduce_, f64, "sum" if r == 0 else "max")
    expect(ValueError, "root: differs between ranks (rank 0: 0, rank 1: 1",
           dist.broadcast_, f64, min(r, 1))
    call = dist.allreduce_ if r == 0 else dist.broadcast_
    expect(RuntimeError, "the ranks made different collective calls (rank 0: allreduce_, "
           "rank 1: broadcast_", call, f64)
    # everything is still in step
    a = np.full(3, float(r))
    dist.allreduce_(a, "sum")
    np.testing.assert_array_equal(a, np.full(3, p * (p - 1) / 2))


def check_reduce_sums(p, r, record):
    x = 0.1 * (r + 1)  # sums that round: rank 0's bits reach every rank
    sums = dist.reduce_sums([x, r, 1, 2.5e-17 * r])
    assert len(sums) == 4 and all(isinstance(v, float) for v in sums)
    assert sums[1] == p * (p - 1) / 2 and sums[2] == p
    np.testing.assert_allclose(sums[0], 0.1 * p * (p + 1) / 2, rtol=1e-15)
    record["reduce_sums"] = [bits(v) for v in sums]
    assert dist.reduce_sums([]) == ()
    expect(ValueError, "values: size differs between ranks", dist.reduce_sums, [1.0] * (r + 1))
    expect(TypeError, "values: expected a sequence of numbers", dist.reduce_sums, ["a"])


def check_consistency(p, r, record):
    X = np.arange(20.0).reshape(10, 2)
    dist.check_consistent(X=X, y=np.arange(10), batch_size=4, loss="mse")
    msg = expect(ValueError, "X: shape differs between ranks (rank 0: (10, 2), rank 1: (9, 2)",
                 dist.check_consistent, "same data", X=X[: 10 - min(r, 1)])
    assert msg.endswith("); same data"), msg
    expect(ValueError, "X: dtype differs between ranks (rank 0: float64, rank 1: float32",
           dist.check_consistent, X=X.astype(np.float64 if r == 0 else np.float32))
    Xr = X.copy()
    Xr[3, 1] += r  # same shape and dtype, other contents
    expect(ValueError, "X: contents differ between ranks", dist.check_consistent, X=Xr)
    big = np.zeros((5000, 3), dtype=np.float32)
    big[-1] = r  # the last row is always among the sampled rows
    expect(ValueError, "big: contents differ", dist.check_consistent, big=big)
    expect(ValueError, "batch_size: value differs between ranks (rank 0: 32, rank 1: 33",
           dist.check_consistent, batch_size=32 + min(r, 1))
    dist.check_consistent(lr=float("nan"), X=np.full(3, np.nan))  # NaN is the same value
    expect(ValueError, "lr: value differs between ranks (rank 0: nan, rank 1: 1.0",
           dist.check_consistent, lr=float("nan") if r == 0 else 1.0)
    expect(ValueError, "the ranks compared different names", dist.check_consistent,
           **({"a": 1} if r == 0 else {"b": 1}))
    # an array on some ranks, None on others: named, with the hint (it listed every
    # field of every rank as "different names")
    msg = expect(ValueError, "v: an array of shape (3,) on rank 0, the value None on rank 1",
                 dist.check_consistent, "same data", v=np.zeros(3) if r == 0 else None)
    assert msg.endswith("; same data"), msg


def check_seeds(p, r, record):
    s = dist.shared_seed(None)
    assert isinstance(s, int) and s >= 0
    record["shared_seed_none"] = s
    assert dist.shared_seed(7) == 7
    g = np.random.default_rng(5)
    record["shared_seed_generator"] = dist.shared_seed(g)
    assert record["shared_seed_generator"] == int(np.random.default_rng(5).integers(2**63))
    msg = expect(ValueError, "seed: value differs between ranks (rank 0: 3, rank 1: 4",
                 dist.shared_seed, 3 + min(r, 1))
    assert msg.endswith("); every rank must pass the same seed"), msg
    expect(ValueError, "seed: value differs between ranks (rank 0: 3, rank 1: None",
           dist.shared_seed, None if r else 3)
    # refused on one rank only (a negative seed): every rank raises, and still in step
    expect(ValueError, "seed: expected an int >= 0", dist.shared_seed, -1 if r == 1 else 0)
    expect(TypeError, "seed: expected None", dist.shared_seed, "x" if r == 0 else 0)
    assert dist.shared_seed(8) == 8
    draws = dist.rank_rng(11).random(4)
    want = np.random.default_rng(np.random.SeedSequence(11).spawn(p)[r]).random(4)
    np.testing.assert_array_equal(draws, want)
    record["rank_rng"] = bits(draws)


def run(record):
    p, r = dist.world_size(), dist.rank()
    for check in (check_allreduce, check_broadcast, check_errors, check_reduce_sums,
                  check_consistency, check_seeds):
        check(p, r, record)
        record.setdefault("passed", []).append(check.__name__)
