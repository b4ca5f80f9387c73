"""Collective calls over fastdl's communicator: buffer-based, never pickling an array.

Every call here is collective: all ranks make it, in the same order.  A public call
first exchanges a small header (one ``Allgather`` of four int64 per rank: which call,
size, dtype, op or root, and whether the rank refused its own arguments) so that a
mismatch, or bad arguments on one rank only, raises the same error on every rank
instead of a hang or a silently wrong result (Open MPI given two sizes: measured here,
``MPI_ERR_TRUNCATE`` on one rank, a partly summed array on the other, then a hang).
The header costs one small collective; the training step's own allreduce passes
``check=False`` after ``check_consistent`` has compared the model and the data once.
"""
from __future__ import annotations

import numbers
import zlib

import numpy as np

from fastdl import _validate as V
from fastdl.distributed import _runtime as R
from fastdl.distributed._runtime import bounded, comm

OPS = ("mean", "sum", "max", "min")
_KINDS = {1: "allreduce_", 2: "broadcast_", 3: "reduce_sums"}
_DTYPES = {np.dtype(np.float32).num: "float32", np.dtype(np.float64).num: "float64"}
_REFUSED = -1


def _mpi_op(op):
    MPI = R._state.MPI
    return {"mean": MPI.SUM, "sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]


def as_buffer(name: str, array) -> np.ndarray:
    """``array`` if it can be reduced in place through its buffer, else a clear error."""
    if type(array) is np.ndarray and array.flags.c_contiguous and array.flags.writeable \
            and (array.dtype is V.FLOATS[0] or array.dtype is V.FLOATS[1]):
        return array
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array, got {type(array).__name__}")
    if array.dtype not in V.FLOATS:
        raise TypeError(f"{name}: expected a float32 or float64 array, got {array.dtype}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array (it is changed in place "
                         "through its buffer), got a strided one; reduce "
                         "np.ascontiguousarray(...) and copy the result back")
    if not array.flags.writeable:
        raise ValueError(f"{name}: array is read-only (it is changed in place)")
    return array


def _differs(v, ref):
    # NaN is the same value on every rank (it compares unequal to itself)
    return v != ref and not (v != v and ref != ref)


def _ranks_list(values, ref=None, limit=8):
    """'rank 0: a, rank 1: b, ...' for the ranks whose value differs from ``ref``."""
    items = [f"rank {i}: {v}" for i, v in enumerate(values)
             if ref is None or _differs(v, ref)]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def agree(kind: int, name: str, a, param: int, error=None, param_name="op",
          param_names=None) -> None:
    """Exchange the header; every rank raises the same kind of error on a mismatch.

    ``a`` is this rank's checked array or None when ``error`` (this rank's own
    TypeError/ValueError) refused the arguments: that rank raises its error, the
    others a RuntimeError naming it, so that none of them waits for a collective the
    refusing rank will never make."""
    c = comm()
    MPI = R._state.MPI
    mine = np.array([kind, -1 if a is None else a.size,
                     -1 if a is None else a.dtype.num,
                     _REFUSED if error is not None else param], dtype=np.int64)
    table = np.empty((R._state.size, 4), dtype=np.int64)
    with bounded(f"{_KINDS[kind]} (checking the ranks' arguments)"):
        c.Allgather(mine, table)
    kinds, sizes, dtypes, params = table.T
    if np.any(kinds != kind):
        raise RuntimeError(
            "fastdl.distributed: the ranks made different collective calls ("
            + _ranks_list([_KINDS.get(int(k), f"call {k}") for k in kinds])
            + "); every rank must make the same calls in the same order")
    refused = np.flatnonzero(params == _REFUSED)
    if refused.size:
        if error is not None:
            raise error
        raise RuntimeError(f"fastdl.distributed: {_KINDS[kind]} refused its arguments on "
                           f"rank {', '.join(map(str, refused))} (see the error there)")
    if np.any(dtypes != dtypes[0]):
        raise TypeError(f"{name}: dtype differs between ranks ("
                        + _ranks_list([_DTYPES.get(int(d), str(d)) for d in dtypes]) + ")")
    if np.any(sizes != sizes[0]):
        raise ValueError(f"{name}: size differs between ranks ("
                         + _ranks_list([f"{int(s)} elements" for s in sizes]) + ")")
    if np.any(params != params[0]):
        shown = [param_names[int(p)] if param_names else int(p) for p in params]
        raise ValueError(f"{param_name}: differs between ranks (" + _ranks_list(shown) + ")")


def allreduce_(array, op="mean", *, check=True):
    """Reduce ``array`` over all ranks, in place: afterwards every rank holds the result.

    Parameters
    ----------
    array : ndarray, float32 or float64, C-contiguous, writeable; any shape
        The same size and dtype on every rank.
    op : "mean" (the sum divided by ``world_size()``), "sum", "max" or "min"
    check : bool
        Compare size, dtype and ``op`` across the ranks first (one small collective),
        so a mismatch raises on every rank.  ``False`` skips it (the training loop's
        hot path, after ``check_consistent``); a mismatch then hangs until the
        timeout or returns a wrong result.

    Returns
    -------
    array (the same object)

    Notes
    -----
    One buffer-based ``MPI_Allreduce`` with ``MPI_IN_PLACE`` (no copy, no pickling).
    The sum is formed in the array's dtype, in an order MPI chooses.  A NaN on any
    rank is NaN in the result for every op (``max`` and ``min`` as ``np.maximum``
    and ``np.minimum``: they make a second, small collective for it).
    """
    c = comm()
    error = None
    try:
        a = as_buffer("array", array)
        V.check_choice("op", op, OPS)
    except (TypeError, ValueError) as e:
        if not check:
            raise
        a, error = None, e
    if check:
        agree(1, "array", a, 0 if error else OPS.index(op), error, param_names=OPS)
    p = R._state.size
    if p > 1:
        MPI = R._state.MPI
        nan = None
        if op in ("max", "min"):
            # MPI's MAX and MIN drop a NaN when it comes second (a > b false): NaN
            # propagates as in the sum and as in np.maximum, at the cost of a second
            # collective (of one flag; of the NaN mask when a rank holds a NaN)
            nan = np.isnan(a)
            flag = np.array([nan.any()], dtype=np.int8)
            with bounded("allreduce_ (whether a rank holds NaN)"):
                c.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
            if not flag[0]:
                nan = None
        with bounded(f"allreduce_ ({op} of {a.size} {a.dtype})"):
            c.Allreduce(MPI.IN_PLACE, a, op=_mpi_op(op))
            if nan is not None:
                mask = nan.astype(np.int8).reshape(-1)
                c.Allreduce(MPI.IN_PLACE, mask, op=MPI.MAX)
                a.reshape(-1)[mask.view(bool)] = np.nan
        if op == "mean":
            np.divide(a, p, out=a)
    return array


def broadcast_(array, root=0, *, check=True):
    """Overwrite ``array`` on every rank with rank ``root``'s values, in place.

    Parameters
    ----------
    array : ndarray, float32 or float64, C-contiguous, writeable (also on ``root``,
        so that a refusal is the same on every rank); the same size and dtype on
        every rank
    root : int in ``[0, world_size())``, the same on every rank
    check : bool, as in ``allreduce_``

    Returns
    -------
    array (the same object)
    """
    c = comm()
    error = None
    try:
        a = as_buffer("array", array)
        root = V.check_int("root", root, 0)
        if root >= R._state.size:
            raise ValueError(f"root: expected a rank in [0, {R._state.size}), got {root}")
    except (TypeError, ValueError) as e:
        if not check:
            raise
        a, error = None, e
    if check:
        agree(2, "array", a, 0 if error else root, error, param_name="root")
    if R._state.size > 1:
        with bounded(f"broadcast_ ({a.size} {a.dtype} from rank {root})"):
            c.Bcast(a, root=root)
    return array


def reduce_sums(values) -> tuple:
    """Sums over ranks of a few numbers, bitwise the same on every rank.

    For epoch logs: loss sums, counts of correct predictions, row counts.  Summed in
    float64 (integers up to 2**53 stay exact); reduced to rank 0 and broadcast from
    it, so every rank gets rank 0's bits whatever order MPI sums in, and takes the
    same early-stopping and schedule decisions.

    Parameters
    ----------
    values : sequence of real numbers (the same length on every rank)

    Returns
    -------
    tuple of float, one sum per value
    """
    error = None
    try:
        v = np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        v, error = None, TypeError(f"values: expected a sequence of numbers ({e})")
    c = comm()
    agree(3, "values", v, 0, error)
    if R._state.size == 1:
        return tuple(float(x) for x in v)
    MPI = R._state.MPI
    out = np.empty_like(v)
    with bounded(f"reduce_sums ({v.size} values)"):
        c.Reduce(v, out, op=MPI.SUM, root=0)
        c.Bcast(out, root=0)
    return tuple(float(x) for x in out)


def raise_together(error=None, what="the arguments") -> None:
    """Collective: when any rank has an error, every rank raises one.

    For checks a rank makes alone (its own arguments) before the ranks communicate
    again: without it, a rank that raised would leave the others waiting in their
    next collective until the time limit.  The rank with an error raises it; the
    others raise the same type (TypeError, ValueError, ImportError; RuntimeError
    for any other) naming the first such rank and its message.  One ``allgather``
    of a few small objects.

    Parameters
    ----------
    error : BaseException or None, this rank's refusal
    what : str, what was refused, for the others' message
    """
    mine = None if error is None else (type(error).__name__, str(error))
    with bounded(f"checking {what}"):
        everyone = comm().allgather(mine)
    failed = [(r, e) for r, e in enumerate(everyone) if e is not None]
    if not failed:
        return
    if error is not None:
        raise error
    r, (kind, message) = failed[0]
    others = f" (and on rank {', '.join(str(q) for q, _ in failed[1:])})" \
        if len(failed) > 1 else ""
    cls = {"TypeError": TypeError, "ValueError": ValueError,
           "ImportError": ImportError}.get(kind, RuntimeError)
    raise cls(f"{what} refused on rank {r}{others}: {kind}: {message}")


def in_sync(array) -> bool:
    """True on every rank when ``array`` has the same bytes on every rank (CRC-32).

    A cheap guard against ranks drifting apart (one ``Allgather`` of two int64):
    after each epoch the parameters must be bitwise equal on all ranks."""
    a = np.ascontiguousarray(array)
    mine = np.array([zlib.crc32(a.reshape(-1).view(np.uint8)), a.nbytes], dtype=np.int64)
    c = comm()
    table = np.empty((R._state.size, 2), dtype=np.int64)
    with bounded("in_sync"):
        c.Allgather(mine, table)
    return bool(np.all(table == table[0]))


def _fingerprint(a: np.ndarray, rows=1024) -> int:
    """CRC-32 of up to ``rows`` evenly spaced rows (all of them when fewer)."""
    if a.dtype.hasobject:
        return 0  # pointers differ between processes; shape and dtype still compared
    if a.ndim and a.shape[0] > rows:
        a = a[np.linspace(0, a.shape[0] - 1, rows).astype(np.intp)]
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _describe(value):
    """Comparable fields of one named value: shape, dtype and a checksum of an array."""
    if isinstance(value, np.ndarray):
        return (("shape", tuple(value.shape)), ("dtype", str(value.dtype)),
                ("contents", _fingerprint(value)))
    if isinstance(value, (bool, np.bool_)):
        return (("value", bool(value)),)
    if isinstance(value, numbers.Integral):
        return (("value", int(value)),)
    if isinstance(value, numbers.Real):
        return (("value", float(value)),)
    return (("value", repr(value)),)


def _kinds(entries):
    """name -> what kind of value a rank described: an array (shape, dtype) or a value."""
    out = {}
    for name, field, v in entries:
        out.setdefault(name, {})[field] = v
    return {k: (f"an array of shape {f['shape']}" if "contents" in f else
                f"the value {f['value']}") for k, f in out.items()}


def check_consistent(hint="", **named) -> None:
    """Raise the same ValueError on every rank if the named values differ between ranks.

    Arrays are compared by shape, dtype and a CRC-32 of up to 1024 evenly spaced rows
    (data loaded differently on two ranks almost surely differs there); anything else
    by value (numbers as int/float, other objects by ``repr``).  One ``allgather`` of
    these small descriptions (pickled tuples, never the arrays).

    Parameters
    ----------
    hint : str
        Appended to the message, e.g. what the caller needs to be the same.
    **named : the values to compare, by the names the message shall use

    Examples
    --------
    ``check_consistent(X=X, y=y, num_parameters=p.num_parameters, batch_size=256)``
    """
    mine = [(name, field, v) for name, value in named.items()
            for field, v in _describe(value)]
    c = comm()
    with bounded("check_consistent"):
        everyone = c.allgather(mine)
    ref = everyone[0]
    for r, theirs in enumerate(everyone[1:], 1):
        if [t[:2] for t in theirs] != [t[:2] for t in ref]:
            ours, other = _kinds(ref), _kinds(theirs)
            if list(ours) == list(other):
                # the same names, one an array on some ranks only (validation_data given
                # on rank 0 alone): the message named every field and no difference
                name = next(k for k in ours if ours[k] != other[k])
                msg = (f"{name}: {ours[name]} on rank 0, {other[name]} on rank {r}"
                       f"{f'; {hint}' if hint else ''}")
                raise ValueError(msg)
            raise ValueError("check_consistent: the ranks compared different names ("
                             + _ranks_list([[t[0] for t in e] for e in everyone]) + ")")
    for i, (name, field, v0) in enumerate(ref):
        vals = [e[i][2] for e in everyone]
        if any(_differs(v, v0) for v in vals):
            what = ("contents differ between ranks (CRC-32 of up to 1024 sampled rows: "
                    if field == "contents" else f"{field} differs between ranks (")
            msg = f"{name}: {what}rank 0: {v0}, " + _ranks_list(vals, ref=v0) + ")"
            raise ValueError(msg + (f"; {hint}" if hint else ""))
