"""The kernel rows of ``fastdl bench``: what each row times, at which size, on which
data.  Shared by both sides of a comparison: fastdl's worker (rows.py) and the other
libraries' (torch_rows.py) build their callables from the same spec and the same
arrays.  NumPy only: the other libraries' workers import this file by path, so that
fastdl itself is never imported in their processes.

A spec is a dict: ``name`` (shown), ``group``, ``kind`` ("memory": ``work`` is bytes
moved; "gemm": ``work`` is flops), ``ops`` (the registry ops it covers: every op has a
row), ``data`` (a function of this module and its arguments, giving the arrays),
``baseline`` ("copy" or "matmul": a bare NumPy call timed beside it), ``floor``
("activation", "adam", "sgd": floors.py), ``torch`` (PyTorch has the same operation)
and ``note``.
"""
from __future__ import annotations

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu")
ACT_PARAMS = {"leaky_relu": {"alpha": 0.1}, "elu": {"alpha": 1.0}}

# element counts of the memory-bound rows, shapes of the others, by size class
SIZES = {
    "tiny": dict(act=[4096], softmax=[(16, 100)], loss=[4096], dense=[(16, 784, 512)],
                 optim=[4096], more=[4096], conv=[(2, 3, 8, 4)]),
    "quick": dict(act=[1_000_000], softmax=[(256, 1000)], loss=[1_000_000],
                  dense=[(256, 784, 512)], optim=[1_000_000], more=[250_000],
                  conv=[(32, 16, 28, 32)]),
    "full": dict(act=[10_000_000], softmax=[(256, 1000), (64, 32000)], loss=[10_000_000],
                 dense=[(32, 784, 512), (256, 784, 512), (1024, 784, 512)],
                 optim=[1_000_000, 10_000_000], more=[10_000_000],
                 conv=[(64, 32, 28, 64)]),
}


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else \
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------------------ data
def activation_data(n):
    r = _rng()
    return {"x": r.standard_normal(n, dtype=np.float32),
            "dy": r.standard_normal(n, dtype=np.float32)}


def softmax_data(n, c):
    r = _rng()
    return {"x": (r.standard_normal((n, c)) * 3).astype(np.float32),
            "dy": r.standard_normal((n, c)).astype(np.float32),
            "labels": r.integers(0, c, n)}


def loss_data(n):
    r = _rng()
    return {"p": r.standard_normal((n, 1)).astype(np.float32),
            "t": r.standard_normal((n, 1)).astype(np.float32),
            "yb": (r.random((n, 1)) < 0.5).astype(np.float32)}


def dense_data(n, k, m):
    r = _rng()
    return {"x": r.standard_normal((n, k), dtype=np.float32),
            "W": r.standard_normal((k, m), dtype=np.float32) * np.float32(0.05),
            "b": r.standard_normal(m, dtype=np.float32),
            "dy": r.standard_normal((n, m), dtype=np.float32)}


def optim_data(n):
    r = _rng()
    return {"w0": r.standard_normal(n, dtype=np.float32),
            "g": r.standard_normal(n, dtype=np.float32) * np.float32(1e-3)}


def maxout_data(n):
    m = max(1, n // 1024)
    r = _rng()
    return {"z": r.standard_normal((m, 1024), dtype=np.float32),
            "dy": r.standard_normal((m, 256), dtype=np.float32)}


def dropout_data(n):
    return activation_data(n)


def bce_data(n):
    r = _rng()
    return {"p": r.uniform(0.01, 0.99, n).astype(np.float32),
            "yb": (r.random(n) < 0.5).astype(np.float32)}


def _softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(z.dtype)


def probs_data(n, c=1000):
    rn = max(1, n // c)
    r = _rng()
    logits = r.standard_normal((rn, c), dtype=np.float32)
    return {"p": _softmax_rows(logits), "q": _softmax_rows(logits[::-1].copy()),
            "labels": r.integers(0, c, rn)}


def clip_data(n):
    return {"g": _rng().standard_normal(n, dtype=np.float32)}


def confusion_data(n):
    r = _rng()
    return {"yt": r.integers(0, 10, n), "yp": r.integers(0, 10, n)}


def images_data(n):
    k = max(1, n // 784)
    return {"images": _rng().random((k, 28, 28), dtype=np.float32)}


def conv_data(n, c, h, o, k=3):
    r = _rng()
    return {"x": r.standard_normal((n, c, h, h), dtype=np.float32),
            "W": r.standard_normal((o, c, k, k), dtype=np.float32) * np.float32(0.1),
            "b": r.standard_normal(o, dtype=np.float32),
            "dy": r.standard_normal((n, o, h, h), dtype=np.float32)}


def pool_data(n, c, h):
    r = _rng()
    return {"x": r.standard_normal((n, c, h, h), dtype=np.float32),
            "dy": r.standard_normal((n, c, h // 2, h // 2), dtype=np.float32)}


def threading_data():
    r = _rng()
    return {"a": r.standard_normal((256, 512), dtype=np.float32),
            "W": r.standard_normal((512, 512), dtype=np.float32),
            "big": r.standard_normal(1 << 18, dtype=np.float32)}


def make_data(spec) -> dict:
    """The arrays of a spec's row (the same on every side: fixed seeds)."""
    return globals()[spec["data"][0]](*spec["data"][1:])


# ------------------------------------------------------------------------ specs
def _spec(name, group, kind, work, ops, data, baseline="copy", floor=None, torch=True,
          note="", **params):
    return {"name": name, "group": group, "kind": kind, "work": float(work), "ops": list(ops),
            "data": list(data), "baseline": baseline, "floor": floor, "torch": torch,
            "note": note, **params}


def kernel_specs(size: str = "full", conv: bool = True) -> list[dict]:
    """Every kernel row of a size class ("tiny", "quick" or "full"); ``conv``: with the
    convolution and pooling rows."""
    s = SIZES[size]
    out = []
    for n in s["act"]:
        for act in ACTIVATIONS:
            out.append(_spec(f"{act} fwd+bwd {size_label(n)}", "activation", "memory", 20 * n,
                             (act, act + "_backward"), ("activation_data", n),
                             floor="activation", act=act))
    for n, c in s["softmax"]:
        for name in ("softmax", "log_softmax"):
            out.append(_spec(f"{name} fwd+bwd {n}x{c}", "softmax", "memory", 20 * n * c,
                             (name, name + "_backward"), ("softmax_data", n, c), fn=name))
        out.append(_spec(f"softmax_cross_entropy fwd+bwd {n}x{c}", "loss", "memory", 8 * n * c,
                         ("softmax_cross_entropy",), ("softmax_data", n, c),
                         fn="softmax_cross_entropy"))
    for n in s["loss"]:
        for name in ("mse", "binary_cross_entropy_with_logits"):
            out.append(_spec(f"{name} fwd+bwd {size_label(n)}", "loss", "memory", 12 * n,
                             (name, name + "_backward"), ("loss_data", n), fn=name))
    for n, k, m in s["dense"]:
        out.append(_spec(f"dense_forward+relu {n}x{k}x{m}", "dense", "gemm", 2 * n * k * m,
                         ("dense_forward",), ("dense_data", n, k, m), baseline="matmul",
                         fn="dense_forward"))
        out.append(_spec(f"dense_backward {n}x{k}x{m}", "dense", "gemm", 4 * n * k * m,
                         ("dense_backward",), ("dense_data", n, k, m), baseline="matmul",
                         fn="dense_backward"))
    for n in s["optim"]:
        out.append(_spec(f"adam_update_ {size_label(n)}", "optimizer", "memory", 28 * n,
                         ("adam_update",), ("optim_data", n), floor="adam", fn="adam"))
        out.append(_spec(f"sgd_update_ momentum {size_label(n)}", "optimizer", "memory",
                         20 * n, ("sgd_update",), ("optim_data", n), floor="sgd", fn="sgd"))
    out += _more_specs(s["more"][0])
    if conv:
        out += _conv_specs(*s["conv"][0])
    return out


def _more_specs(n):
    """The rest of the registry, so that every op has a row."""
    m, rn, k = max(1, n // 1024), max(1, n // 1000), max(1, n // 784)
    out = [
        _spec(f"maxout fwd+bwd {m}x1024 pieces 4", "layer", "memory", 12 * m * 1024,
              ("maxout", "maxout_backward"), ("maxout_data", n), fn="maxout"),
        _spec(f"dropout fwd+bwd p=0.5 {size_label(n)}", "layer", "memory", 18 * n,
              ("dropout", "dropout_backward"), ("dropout_data", n), fn="dropout"),
        _spec(f"binary_cross_entropy fwd+bwd {size_label(n)}", "loss", "memory", 20 * n,
              ("binary_cross_entropy", "binary_cross_entropy_backward"), ("bce_data", n),
              fn="bce"),
        # one probability and one int64 label a row are read
        _spec(f"cross_entropy probs+labels {rn}x1000", "loss", "memory", 12 * rn,
              ("cross_entropy",), ("probs_data", n), fn="cross_entropy"),
        _spec(f"kl_divergence {rn}x1000", "loss", "memory", 8 * rn * 1000,
              ("kl_divergence",), ("probs_data", n), fn="kl_divergence"),
        _spec(f"clip_grad_norm_ {size_label(n)}", "optimizer", "memory", 12 * n,
              ("sum_squares", "scale"), ("clip_data", n), fn="clip_norm"),
        _spec(f"clip_grad_value_ {size_label(n)}", "optimizer", "memory", 8 * n,
              ("clip_value",), ("clip_data", n), fn="clip_value"),
        _spec(f"confusion_matrix {size_label(n)} labels, 10 classes", "metric", "memory",
              16 * n, ("confusion_matrix",), ("confusion_data", n), fn="confusion"),
    ]
    # no PyTorch row: torchvision is not a dependency, and torch has no random shift/crop
    for name, op in (("random_flip", "flip_images"), ("random_shift", "shift_images"),
                     ("random_crop", "crop_images"), ("gaussian_noise", "noise_images")):
        out.append(_spec(f"{name} {k}x28x28", "augment", "memory", 8 * k * 784, (op,),
                         ("images_data", n), torch=False, note="no PyTorch equivalent",
                         fn=name))
    return out


def _conv_specs(n, c, h, o):
    # 3x3, stride 1, padding 1: the output has the input's size
    flops = 2 * n * o * h * h * c * 9
    return [
        _spec(f"conv2d fwd+relu {n}x{c}x{h}x{h} -> {o} 3x3", "conv", "gemm", flops,
              ("conv2d_forward",), ("conv_data", n, c, h, o), baseline=None, fn="conv_fwd"),
        _spec(f"conv2d bwd {n}x{c}x{h}x{h} -> {o} 3x3", "conv", "gemm", 2 * flops,
              ("conv2d_backward",), ("conv_data", n, c, h, o), baseline=None, fn="conv_bwd"),
        _spec(f"max_pool2d 2x2 fwd+bwd {n}x{c}x{h}x{h}", "conv", "memory",
              12 * n * c * h * h, ("max_pool2d", "max_pool2d_backward"),
              ("pool_data", n, c, h), fn="max_pool"),
        _spec(f"avg_pool2d 2x2 fwd+bwd {n}x{c}x{h}x{h}", "conv", "memory",
              10 * n * c * h * h, ("avg_pool2d", "avg_pool2d_backward"),
              ("pool_data", n, c, h), fn="avg_pool"),
    ]


def threading_spec():
    """A parallel Numba kernel interleaved with multi-threaded BLAS calls: the pattern
    that made a training step 50x slower with Numba's spinning OpenMP layer."""
    return _spec("BLAS GEMM + parallel Numba kernel, interleaved", "threading", "step", 0,
                 (), ("threading_data",), baseline=None, torch=False,
                 note="interleaved should be about gemm only + numba only")
