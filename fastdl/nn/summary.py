"""The text of ``Sequential.summary()``: one row per layer (nested layers indented under
their container) with its type, output shape and parameter count, then the total."""
import math

from fastdl.nn.base import fmt_shape


def summary_table(model, shape):
    """The summary of ``model`` for one sample of shape ``shape`` (None: as the model
    expects; a ``?`` where that is not known)."""
    rows = [("layer", "type", "output shape", "parameters")]

    def add(name, layer, shape, depth):
        if shape is None:
            shape = layer.expected_input_shape()
        out = None if shape is None else tuple(layer.compute_output_shape(shape))
        kind = type(layer).__name__
        if getattr(layer, "activation", None):
            kind += f"({layer.activation})"
        count = sum(math.prod(s) for s in layer.param_shapes().values())
        rows.append(("  " * depth + name, kind,
                     "?" if out is None else fmt_shape(out, batch=True), f"{count:,}"))
        inner = shape
        for sub, sublayer in zip(getattr(layer, "_names", ()), getattr(layer, "layers", ())):
            inner = add(f"{name}.{sub}", sublayer, inner, depth + 1)
        return out

    shown = shape
    for name, layer in zip(model._names, model.layers):
        shape = add(name, layer, shape, 0)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"Sequential: {len(model.layers)} layers, {model.dtype.name}, input "
             + ("of any shape" if shown is None else fmt_shape(shown, batch=True))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    lines.append(f"total parameters: {model._params.num_parameters:,}")
    return "\n".join(lines)
