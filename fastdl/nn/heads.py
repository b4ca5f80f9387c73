"""A model's output activation: which of its last layers applies the softmax or sigmoid
that the cross-entropy losses fuse with themselves (and ``predict_proba`` returns)."""
import warnings

from fastdl.nn.activations import Sigmoid, Softmax
from fastdl.nn.conv import Flatten
from fastdl.nn.layers import Dense, Dropout

_HEADS = {"softmax": Softmax, "sigmoid": Sigmoid}


class OutputActivationWarning(UserWarning):
    """A softmax or sigmoid before the model's last layers, which is not its output
    activation (said when the model is built; fastdl.load does not say it again)."""


def split_output_activation(layers, warn=True):
    """``(output_activation, body, full)``: ``body`` computes the logits, ``full`` the
    output.  A final Softmax/Sigmoid layer, or the softmax/sigmoid of a last Dense (which
    then computes the logits, the model applying its activation), is the output
    activation, so both spellings run the same kernels and train the same way.  Trailing
    Flatten layers are looked through where that is exact (a Dense's output is (N, M); a
    sigmoid is elementwise); a softmax or sigmoid before other trailing layers (an image
    layer's softmax before Flatten, any before Dropout) is not the output activation: a
    warning says so, as the losses would apply theirs again."""
    i = len(layers) - 1
    while i > 0 and isinstance(layers[i], (Flatten, Dropout)):
        i -= 1
    last, tail = layers[i], layers[i + 1:]
    exact = all(isinstance(t, Flatten) for t in tail)
    if exact and (isinstance(last, Sigmoid) or (isinstance(last, Softmax) and not tail)):
        return last.name, layers[:i] + layers[i + 1:], layers
    if exact and isinstance(last, Dense) and last.activation in _HEADS:
        last._act = None
        return last.activation, layers, layers + [_HEADS[last.activation]()]
    if warn and tail and getattr(last, "activation", getattr(last, "name", None)) in _HEADS:
        after = ", ".join(type(t).__name__ for t in tail)
        warnings.warn(f"layers[{i}] ({type(last).__name__}) applies its activation before "
                      f"{after}: that is not the model's output activation, and the "
                      f"cross-entropy losses apply theirs to the output again; end the "
                      f"model with the activation, or use loss='mse'",
                      OutputActivationWarning, stacklevel=4)
    return None, layers, layers
