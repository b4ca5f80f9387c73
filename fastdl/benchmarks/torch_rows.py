"""PyTorch's side of the kernel rows: the same operation on the same arrays (specs.py),
into preallocated outputs where fastdl's row writes into them (the activations, softmax
and log_softmax through ATen's out= forms, dense, the optimizers), else forward and
backward through autograd, as fastdl's row allocates its results too.  Imported by
path in PyTorch's own worker process (worker_kernels.py), which never imports fastdl."""
from __future__ import annotations

import numpy as np

if __package__:
    from . import specs
else:  # imported by path in a worker
    import specs


def competitor(torch, spec):
    """A zero-argument callable doing the row's work with PyTorch, or None."""
    if not spec["torch"]:
        return None
    d = specs.make_data(spec)
    key = spec["fn"] if "fn" in spec else spec["group"]
    return _BUILD[key](torch, spec, d)


def fwd_bwd(torch, fn, x, dy=None):
    """``fn(x)`` then its backward (from ``dy``, or from a scalar loss when ``dy`` is
    None), into a fresh gradient each call."""
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    dyt = None if dy is None else torch.from_numpy(dy)

    def f():
        xt.grad = None
        fn(xt).backward(dyt)
    return f


def _activation(torch, spec, d):
    # into preallocated outputs through ATen's out= forms (as fastdl's row): through
    # autograd, fresh 40 MB tensors page-faulted at every call and took 3-5x as long
    A = torch.ops.aten
    x, dy = torch.from_numpy(d["x"]), torch.from_numpy(d["dy"])
    y, dx = torch.empty_like(x), torch.empty_like(x)
    fwd, bwd = {
        "sigmoid": (lambda: torch.sigmoid(x, out=y),
                    lambda: A.sigmoid_backward.grad_input(dy, y, grad_input=dx)),
        "tanh": (lambda: torch.tanh(x, out=y),
                 lambda: A.tanh_backward.grad_input(dy, y, grad_input=dx)),
        "relu": (lambda: torch.clamp_min(x, 0, out=y),
                 lambda: A.threshold_backward.grad_input(dy, y, 0, grad_input=dx)),
        "leaky_relu": (lambda: A.leaky_relu.out(x, 0.1, out=y),
                       lambda: A.leaky_relu_backward.grad_input(dy, x, 0.1, False,
                                                                grad_input=dx)),
        "elu": (lambda: A.elu.out(x, 1.0, 1, 1, out=y),
                lambda: A.elu_backward.grad_input(dy, 1.0, 1, 1, True, y, grad_input=dx)),
        "gelu": (lambda: A.gelu.out(x, approximate="none", out=y),
                 lambda: A.gelu_backward.grad_input(dy, x, approximate="none",
                                                    grad_input=dx)),
        "silu": (lambda: A.silu.out(x, out=y),
                 lambda: A.silu_backward.grad_input(dy, x, grad_input=dx)),
    }[spec["act"]]

    def f():
        fwd()
        bwd()
    f.outputs = (y, dx)  # for a check against fastdl's reference
    return f


def _softmax_pair(torch, spec, d):
    # preallocated, as fastdl's row (see _activation)
    A = torch.ops.aten
    x, dy = torch.from_numpy(d["x"]), torch.from_numpy(d["dy"])
    y, dx = torch.empty_like(x), torch.empty_like(x)
    if spec["fn"] == "softmax":
        fwd, bwd, kw = A._softmax.out, A._softmax_backward_data.out, {"grad_input": dx}
    else:  # the same op, its out argument named otherwise
        fwd, bwd, kw = A._log_softmax.out, A._log_softmax_backward_data.out, {"out": dx}

    def f():
        fwd(x, -1, False, out=y)
        bwd(dy, y, -1, torch.float32, **kw)
    f.outputs = (y, dx)
    return f


def _sce(torch, spec, d):
    lt = torch.from_numpy(d["labels"])
    return fwd_bwd(torch, lambda t: torch.nn.functional.cross_entropy(t, lt), d["x"])


def _loss_pair(torch, spec, d):
    tf = torch.nn.functional
    target = torch.from_numpy(d["t"] if spec["fn"] == "mse" else d["yb"])
    lf = tf.mse_loss if spec["fn"] == "mse" else tf.binary_cross_entropy_with_logits
    return fwd_bwd(torch, lambda v: lf(v, target), d["p"])


def _dense_forward(torch, spec, d):
    xt, Wt, bt = (torch.from_numpy(d[k]) for k in ("x", "W", "b"))
    yt = torch.empty(xt.shape[0], Wt.shape[1])

    def f():
        torch.addmm(bt, xt, Wt, out=yt)
        torch.relu_(yt)
    return f


def _dense_backward(torch, spec, d):
    xt, Wt, dyt = (torch.from_numpy(d[k]) for k in ("x", "W", "dy"))
    dxt, dWt, dbt = torch.empty(xt.shape), torch.empty(Wt.shape), torch.empty(Wt.shape[1])

    def f():
        torch.mm(dyt, Wt.t(), out=dxt)
        torch.mm(xt.t(), dyt, out=dWt)
        torch.sum(dyt, 0, out=dbt)
    return f


def _optimizer(torch, spec, d):
    p = torch.nn.Parameter(torch.from_numpy(d["w0"].copy()))
    p.grad = torch.from_numpy(d["g"].copy())
    if spec["fn"] == "adam":
        return torch.optim.Adam([p], lr=1e-3, fused=True).step
    return torch.optim.SGD([p], lr=0.01, momentum=0.9, foreach=True).step


def _maxout(torch, spec, d):
    m = d["z"].shape[0]
    return fwd_bwd(torch, lambda v: v.view(m, 256, 4).amax(-1), d["z"], d["dy"])


def _dropout(torch, spec, d):
    return fwd_bwd(torch, lambda v: torch.nn.functional.dropout(v, 0.5, training=True),
                   d["x"], d["dy"])


def _bce(torch, spec, d):
    by = torch.from_numpy(d["yb"])
    return fwd_bwd(torch, lambda v: torch.nn.functional.binary_cross_entropy(v, by), d["p"])


def _cross_entropy(torch, spec, d):
    pt, lt = torch.from_numpy(d["p"]), torch.from_numpy(d["labels"])
    eps = float(np.finfo(np.float32).eps)
    # integer labels: only each row's labelled probability is read (as fastdl)
    return lambda: pt.gather(1, lt[:, None]).clamp(eps, 1 - eps).log().mean().neg()


def _kl(torch, spec, d):
    pt, qt = torch.from_numpy(d["p"]), torch.from_numpy(d["q"])
    return lambda: torch.nn.functional.kl_div(torch.log(qt), pt, reduction="batchmean")


def _clip(torch, spec, d):
    pg = torch.nn.Parameter(torch.zeros(d["g"].shape[0]))
    pg.grad = torch.from_numpy(d["g"].copy())
    if spec["fn"] == "clip_norm":
        return lambda: torch.nn.utils.clip_grad_norm_([pg], 1.0)
    return lambda: torch.nn.utils.clip_grad_value_([pg], 0.5)


def _confusion(torch, spec, d):
    ytt, ypt = torch.from_numpy(d["yt"]), torch.from_numpy(d["yp"])
    return lambda: torch.bincount(ytt * 10 + ypt, minlength=100).view(10, 10)


def _conv_fwd(torch, spec, d):
    xt, Wt, bt = (torch.from_numpy(d[k]) for k in ("x", "W", "b"))
    return lambda: torch.relu_(torch.nn.functional.conv2d(xt, Wt, bt, 1, 1))


def _conv_bwd(torch, spec, d):
    # dx and dW (and db) of the same convolution, as fastdl's conv2d_backward
    xt = torch.from_numpy(d["x"].copy()).requires_grad_(True)
    Wt = torch.from_numpy(d["W"].copy()).requires_grad_(True)
    bt = torch.from_numpy(d["b"].copy()).requires_grad_(True)
    dyt = torch.from_numpy(d["dy"])

    def f():
        xt.grad = Wt.grad = bt.grad = None
        torch.nn.functional.conv2d(xt, Wt, bt, 1, 1).backward(dyt)
    return f


def _max_pool(torch, spec, d):
    return fwd_bwd(torch, lambda v: torch.nn.functional.max_pool2d(v, 2), d["x"], d["dy"])


def _avg_pool(torch, spec, d):
    return fwd_bwd(torch, lambda v: torch.nn.functional.avg_pool2d(v, 2), d["x"], d["dy"])


_BUILD = {"activation": _activation, "softmax": _softmax_pair, "log_softmax": _softmax_pair,
          "softmax_cross_entropy": _sce, "mse": _loss_pair,
          "binary_cross_entropy_with_logits": _loss_pair, "dense_forward": _dense_forward,
          "dense_backward": _dense_backward, "adam": _optimizer, "sgd": _optimizer,
          "maxout": _maxout, "dropout": _dropout, "bce": _bce, "cross_entropy": _cross_entropy,
          "kl_divergence": _kl, "clip_norm": _clip, "clip_value": _clip,
          "confusion": _confusion, "conv_fwd": _conv_fwd, "conv_bwd": _conv_bwd,
          "max_pool": _max_pool, "avg_pool": _avg_pool}
