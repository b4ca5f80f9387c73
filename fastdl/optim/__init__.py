"""Optimizers over one flat parameter buffer, and gradient clipping.

``Parameters`` holds every parameter of a model in one contiguous array
(``.data``) and every gradient in a second one (``.grad``); each named parameter
is a view into them.  ``SGD`` and ``Adam`` are thin shells over the in-place
kernels of ``fastdl.functional`` (``sgd_update_``, ``adam_update_``): one
``step()`` is one fused kernel call over the whole buffer, whatever the number
of layers, with gradient clipping folded into the same pass.

    p = Parameters({"0.W": (64, 32), "0.b": (32,)}, dtype=np.float32)
    opt = Adam(p, lr=1e-3, clip_norm=1.0)
    ...  # write gradients into p.grad (or p.grad_of(name))
    opt.step(); opt.zero_grad()
"""
from fastdl.optim.clipping import clip_grad_norm_, clip_grad_value_
from fastdl.optim.optimizers import SGD, Adam
from fastdl.optim.parameters import Parameters

__all__ = ["Parameters", "SGD", "Adam", "clip_grad_norm_", "clip_grad_value_"]

# the public path, for pickles, reprs and the API page (the classes live in the parts)
for _obj in (Parameters, SGD, Adam, clip_grad_norm_, clip_grad_value_):
    _obj.__module__ = __name__
del _obj
