"""Optimizer kernels, NumPy reference: in-place updates over flat buffers.

Every array is 1-D and of one float dtype; ``grad`` is read, never written.
The gradient each update uses (``_effective_grad``) is

    g = clip(grad_scale * grad, -grad_clip, grad_clip) + l1 * sign(w) + 2 * l2 * w

where ``grad_scale`` is the global-norm clipping coefficient (1 when off) and
``grad_clip`` the value clip (inf when off): the gradient is clipped first, then
the penalties are added, as PyTorch clips ``.grad`` before ``step()`` adds its
weight decay.  Python-float scalars meet float32 arrays as float32 (NumPy's
NEP 50 rules), as they do in the compiled kernels.
"""
import math

import numpy as np


def _effective_grad(grad, param, l1, l2, grad_scale, grad_clip):
    g = grad * grad_scale if grad_scale != 1 else grad.copy()
    if grad_clip != math.inf:
        np.clip(g, -grad_clip, grad_clip, out=g)
    # penalties only when on: 0 * inf would turn an infinite weight into NaN
    if l1 != 0:
        g += l1 * np.sign(param)
    if l2 != 0:
        g += 2 * l2 * param
    return g


def _flush_subnormal(x):
    """x[|x| < the dtype's smallest normal number] = 0, in place: the optimizers store
    their moments so (a moment whose gradient stays 0 decays into the subnormals, whose
    arithmetic takes the CPU's slow path); NaN is kept."""
    x[np.abs(x) < np.finfo(x.dtype).tiny] = 0


def sgd_update(grad, param, velocity, lr, momentum, nesterov, l1, l2, grad_scale, grad_clip):
    """SGD step in place; ``velocity`` None means plain SGD.

    plain:     w -= lr g
    momentum:  v = momentum v + lr g;  w -= v
    Nesterov:  v = momentum v + lr g;  w -= momentum v + lr g   (v the new velocity)
    A velocity below the dtype's smallest normal number is stored as 0.
    """
    g = _effective_grad(grad, param, l1, l2, grad_scale, grad_clip)
    if velocity is None:
        param -= lr * g
        return
    velocity *= momentum
    velocity += lr * g
    _flush_subnormal(velocity)
    if nesterov:
        param -= momentum * velocity + lr * g
    else:
        param -= velocity


def adam_update(grad, param, m, v, step, lr, beta1, beta2, eps, weight_decay, l1, l2,
                grad_scale, grad_clip, done=None):
    """Adam / AdamW step ``step`` (counting from 1) in place; ``done`` (a (1,) uint8
    array, optional) is set to 1 once the update is complete (the compiled kernels set it
    in compiled code, so that a Ctrl-C cannot fall between the update and its mark).

    w *= 1 - lr * weight_decay                (decoupled, as torch.optim.AdamW)
    m = beta1 m + (1 - beta1) g
    v = beta2 v + (1 - beta2) g^2
    w -= lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1^step),
                                            v_hat = v / (1 - beta2^step)
    The penalties in g use the weights before the decay.  An m or v below the dtype's
    smallest normal number is stored (and used) as 0.
    """
    g = _effective_grad(grad, param, l1, l2, grad_scale, grad_clip)
    if weight_decay != 0:
        param *= 1 - lr * weight_decay
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    # ((1 - beta2) g) g, in the compiled kernels' order: g^2 first overflowed float32 to
    # inf where their product is finite (g = 1.8e19 with l1 = 2**64)
    g2 = (1 - beta2) * g
    g2 *= g
    v += g2
    _flush_subnormal(m)
    _flush_subnormal(v)
    # lr m_hat / (sqrt(v_hat) + eps) as (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps), the
    # compiled kernels' order: v / bc2 overflowed float32 where sqrt(v) / sqrt(bc2) is
    # finite (v = 1.8e36 at step 3), and the weight was left without its update
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    denom = np.sqrt(v)
    denom *= 1 / math.sqrt(bc2)
    denom += eps
    param -= (lr / bc1) * m / denom
    if done is not None:
        done[0] = 1


def sum_squares(x):
    """sum x^2 as a Python float, accumulated in float64 (NumPy's pairwise sum: not
    np.dot, whose BLAS splits the sum by its thread count)."""
    x64 = x.astype(np.float64)
    return float(np.add.reduce(x64 * x64))


def scale(x, alpha):
    """x *= alpha in place."""
    x *= alpha


def clip_value(x, clip):
    """x = clip(x, -clip, clip) in place (NaN stays NaN)."""
    np.clip(x, -clip, clip, out=x)
