"""Losses, NumPy reference: the oracle the compiled kernels are tested against.

Kernel conventions of this family (the same in all three backends):

* Elementwise losses (mse, binary_cross_entropy, binary_cross_entropy_with_logits)
  take flat (n,) arrays.  With ``out`` None they return the sum of the
  elementwise losses as a Python float, accumulated in float64 (each term is
  computed in the input's dtype first); with an ``out`` buffer (n,) they write
  the elementwise losses there and return None.
* Their ``_backward`` twins write ``out`` = ``scale`` * d(loss_i)/d(input_i):
  ``scale`` is 1/n for a mean and 1 for a sum.
* Row losses (softmax_cross_entropy, cross_entropy, kl_divergence) take
  (N, C) arrays and write the per-row losses to ``loss`` (N,); the public layer
  reduces them (O(N)).  softmax_cross_entropy also writes ``dlogits`` (N, C),
  already multiplied by ``grad_scale``.
* A coefficient that is exactly zero contributes nothing, even against a log
  of zero: 0 log 0 = 0 (as scipy's xlogy and rel_entr).
"""
import numpy as np


def mse(pred, target, out):
    """(pred - target)^2 elementwise; pred, target, out are (n,)."""
    d = pred - target
    sq = d * d
    if out is not None:
        out[...] = sq
        return None
    return float(np.sum(sq, dtype=np.float64))


def mse_backward(pred, target, out, scale):
    """out = 2 scale (pred - target)."""
    np.subtract(pred, target, out=out)
    out *= out.dtype.type(2.0 * scale)


def _clip_bounds(dtype, eps):
    # computed in float64 and rounded once to the dtype, identically in every backend
    return dtype.type(eps), dtype.type(1.0 - eps)


def binary_cross_entropy(p, y, out, eps):
    """-(y log pc + (1 - y) log(1 - pc)) with pc = clip(p, eps, 1 - eps); p, y, out (n,)."""
    lo, hi = _clip_bounds(p.dtype, eps)
    pc = np.clip(p, lo, hi)
    one = p.dtype.type(1.0)
    terms = -(y * np.log(pc) + (one - y) * np.log1p(-pc))
    if out is not None:
        out[...] = terms
        return None
    return float(np.sum(terms, dtype=np.float64))


def binary_cross_entropy_backward(p, y, out, eps, scale):
    """out = scale (pc - y) / (pc (1 - pc)) where eps <= p <= 1 - eps, else 0.

    The gradient of the clipped loss: outside the clipping interval the loss
    does not depend on p."""
    lo, hi = _clip_bounds(p.dtype, eps)
    one = p.dtype.type(1.0)
    pc = np.clip(p, lo, hi)
    g = (pc - y) / (pc * (one - pc))
    g *= p.dtype.type(scale)
    out[...] = np.where((p < lo) | (p > hi), p.dtype.type(0.0), g)


def binary_cross_entropy_with_logits(z, y, out):
    """max(z, 0) - z y + log1p(exp(-|z|)), finite for every finite z; z, y, out (n,)."""
    terms = np.maximum(z, z.dtype.type(0.0)) - z * y + np.log1p(np.exp(-np.abs(z)))
    if out is not None:
        out[...] = terms
        return None
    return float(np.sum(terms, dtype=np.float64))


def binary_cross_entropy_with_logits_backward(z, y, out, scale):
    """out = scale (sigmoid(z) - y), as (1 - y) - sigmoid(-z) where z >= 0: for y = 1 the
    subtraction that cancels is then exact, and a confident right prediction keeps its
    gradient -sigmoid(-z) (sigmoid(z) - 1 is 0 in float32 from z = 17)."""
    one = z.dtype.type(1.0)
    e = np.exp(-np.abs(z))  # never overflows
    s = e / (one + e)       # sigmoid(-|z|)
    np.copyto(out, np.where(z >= 0, (one - y) - s, s - y))
    out *= out.dtype.type(scale)


def _xlogy_rows(a, logv):
    # sum_c a[n, c] log v[n, c] with 0 log 0 = 0
    return (a * np.where(a != 0, logv, 0)).sum(axis=1)


def softmax_cross_entropy(logits, target, weight, loss, dlogits, label_smoothing, grad_scale):
    """Per-row softmax cross-entropy and its gradient.

    logits (N, C); target (N,) int64 labels or (N, C) probabilities; weight (C,);
    loss (N,) and dlogits (N, C) are written.  Row n's loss is
    ``-sum_c a[n, c] log softmax(logits[n])[c]`` with the coefficients

        labels:        a[n, c] = (1 - eps) w[y_n] [c == y_n] + (eps / C) w[c]
        probabilities: a[n, c] = w[c] ((1 - eps) t[n, c] + eps / C)

    (eps = label_smoothing), and ``dlogits[n] = grad_scale (p[n] sum_c a[n, c] - a[n])``.
    """
    n, c = logits.shape
    dt = logits.dtype.type
    eps = dt(label_smoothing)
    one = dt(1.0)
    with np.errstate(invalid="ignore"):  # a row holding +inf or only -inf gives nan, as IEEE
        shifted = logits - logits.max(axis=1, keepdims=True)  # no exp overflows
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    logp = shifted - np.log(s)
    if target.ndim == 1:
        a = np.zeros_like(logits)
        if eps != 0:
            a += (eps / dt(c)) * weight
        a[np.arange(n), target] += (one - eps) * weight[target]
    else:
        a = weight * ((one - eps) * target + eps / dt(c))
    # 0 log 0 = 0 for a zero coefficient on p = 0 only: a row of NaN log p (NaN or +inf
    # logits, or all -inf) is NaN whatever its coefficients, as its gradient is
    with np.errstate(invalid="ignore"):
        terms = np.where((a == 0) & (logp == -np.inf), dt(0.0), a * logp)
    loss[...] = -terms.sum(axis=1)
    np.multiply(e / s, a.sum(axis=1, keepdims=True), out=dlogits)
    dlogits -= a
    dlogits *= dt(grad_scale)


def cross_entropy(probs, target, loss, eps):
    """-sum_c t[n, c] log clip(probs[n, c], eps, 1 - eps) per row (0 log 0 = 0).

    probs (N, C); target (N,) int64 labels (t one-hot) or (N, C); loss (N,)."""
    lo, hi = _clip_bounds(probs.dtype, eps)
    logp = np.log(np.clip(probs, lo, hi))
    if target.ndim == 1:
        loss[...] = -logp[np.arange(probs.shape[0]), target]
    else:
        loss[...] = -_xlogy_rows(target, logp)


def kl_divergence(p, q, loss):
    """sum_c p log(p / q) per row with 0 log(0 / q) = 0; p, q (N, C), loss (N,)."""
    zero = p.dtype.type(0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, zero, p * (np.log(p) - np.log(q)))
    loss[...] = terms.sum(axis=1)
