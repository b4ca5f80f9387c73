"""Write docs/api.md, the API reference, from the package's own signatures and docstrings.

    python docs/make_api.py             # (re)writes docs/api.md
    python docs/make_api.py --check     # exit status 1 when docs/api.md is out of date
    python docs/make_api.py --stdout    # print the page instead

The page is generated so that it cannot drift from the code: tests/test_docs.py renders
it again and compares.  After changing a public signature or docstring, run the first
command.  Every name a module lists in ``__all__`` gets an entry; a name without a
docstring (or a constant without a line in ``CONSTANTS``) stops the script with an
error, so nothing public goes undocumented.

Docstrings are numpydoc (``Parameters``/``Returns``/... sections) with RST inline
literals; ``render_doc`` turns them into Markdown.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import pathlib
import re
import sys

import numpy as np

PAGE = pathlib.Path(__file__).resolve().parent / "api.md"

# (module, title, how it is imported, the names: None for the module's __all__)
MODULES = [
    ("fastdl", "Top level", "import fastdl", None),
    ("fastdl.functional", "Kernels", "import fastdl.functional as F", None),
    ("fastdl.nn", "Layers and models", "from fastdl import nn", None),
    ("fastdl.optim", "Optimizers and gradient clipping", "from fastdl import optim", None),
    ("fastdl.schedules", "Learning-rate schedules", "from fastdl import schedules", None),
    ("fastdl.callbacks", "Callbacks", "from fastdl import callbacks", None),
    ("fastdl.init", "Weight initialisers", "from fastdl import init", None),
    ("fastdl.data", "Data: batches, class weights, splits, cross-validation",
     "from fastdl import data", None),
    ("fastdl.augment", "Image augmentation", "from fastdl import augment", None),
    ("fastdl.datasets", "Data sets", "from fastdl import datasets", None),
    ("fastdl.metrics", "Classification metrics", "from fastdl import metrics", None),
    ("fastdl.sklearn", "scikit-learn estimators", "from fastdl.sklearn import MLPClassifier",
     None),
    ("fastdl.distributed", "Data-parallel training over MPI",
     "import fastdl.distributed as dist", None),
]

# fastdl.functional re-exports its families' names: one subsection per family, in order
FAMILIES = [("dense", "Dense layer"), ("activations", "Activations"),
            ("softmax", "Softmax and log-softmax"), ("maxout", "Maxout"),
            ("dropout", "Dropout"), ("losses", "Losses"),
            ("optim", "In-place optimizer kernels"), ("conv", "Convolution"),
            ("pool", "Pooling")]

# module docstrings written for the package's developers, not shown on the page
HIDDEN_MODULE_DOCS = {"fastdl.functional.conv", "fastdl.nn"}

# the members shown under a class, in order (the constructor is always shown)
MEMBERS = {
    "fastdl.optim.Parameters": ["items", "grad_items", "grad_of", "keys", "zero_grad", "copy",
                                "from_arrays", "buffer_size"],
    "fastdl.optim.SGD": ["step", "zero_grad", "lr", "steps", "velocity", "state_dict",
                         "load_state_dict", "from_state_dict"],
    "fastdl.optim.Adam": ["step", "zero_grad", "lr", "steps", "m", "v", "state_dict",
                          "load_state_dict", "from_state_dict"],
    "fastdl.nn.Sequential": ["fit", "evaluate", "predict", "predict_proba", "__call__",
                             "summary", "save", "parameters", "layer_names", "param_layers",
                             "in_features", "out_features", "forward", "backward",
                             "buffer_nbytes"],
    "fastdl.nn.History": ["plot"],
    "fastdl.schedules.LinearWarmup": ["update"],
    "fastdl.schedules.ReduceLROnPlateau": ["step", "update", "reset", "state_dict",
                                           "load_state_dict"],
    "fastdl.callbacks.Callback": ["on_train_begin", "on_epoch_end", "on_train_end"],
    "fastdl.sklearn.MLPClassifier": ["fit", "partial_fit", "predict", "predict_proba",
                                     "predict_log_proba", "coefs_", "intercepts_"],
    "fastdl.sklearn.MLPRegressor": ["fit", "partial_fit", "predict", "coefs_", "intercepts_"],
    "fastdl.distributed.GradientBuckets": ["start", "progress", "wait"],
}

# a class documented together with another module's docstring (its protocol)
EXTRA_DOC = {"fastdl.nn.Layer": "fastdl.nn.base"}

# what the scikit-learn estimators inherit, checked to exist
SKLEARN_INHERITED = ("score", "get_params", "set_params")

# constants: what their value means (their value is printed below it)
CONSTANTS = {
    "fastdl.__version__": "The package's version string.",
    "fastdl.functional.ACTIVATIONS": "The activation names of `dense_forward`, "
        "`conv2d_forward`, `nn.Dense` and `nn.Conv2D`, each with its default `alpha` "
        "(None: the activation takes no `alpha`).",
    "fastdl.functional.REDUCTIONS": "The values the losses' `reduction` takes.",
    "fastdl.augment.FLIP_AXES": "The values of `random_flip`'s `axis`.",
    "fastdl.augment.LAYOUTS": "The values of `layout`: how a 4-D image batch is read.",
    "fastdl.metrics.AVERAGES": "The values of the metrics' `average`.",
    "fastdl.distributed.MISSING": "The message of the `ImportError` that every "
        "communicating function raises when mpi4py is not installed.",
}
_NO_VALUE = {"fastdl.__version__"}  # printed as its meaning only (the value changes)

INTRO = """\
# API reference

Every public name of fastdl, module by module, with its signature and docstring. This page
is generated from the code by `python docs/make_api.py` (a test checks that it is up to
date), so what it says is what the code does. For a guided tour, see [the guide](guide.md);
for how the package is built, [the design page](design.md).

## Conventions

These hold for every public function unless its entry says otherwise.

- **Arrays in, arrays out.** Inputs and results are NumPy arrays. Every float kernel takes
  float32 and float64, and its result has the input's dtype: nothing is silently upcast.
  Arrays of two float dtypes in one call, or an integer array where floats are needed,
  raise `TypeError` naming the argument. Labels are integer arrays (any integer dtype).
- **Layouts.** Batch first. Dense data are `(N, features)`; dense weights are
  `W: (in_features, out_features)` and `y = x @ W + b`. Images for the convolution and
  pooling kernels and for `nn.Conv2D` are `(N, C, H, W)` with `W: (O, C, kh, kw)`, as in
  PyTorch; `fastdl.augment` reads `(N, H, W)` or `(N, H, W, C)` unless given
  `layout="NCHW"`. Any strided input is accepted (it may be copied); results are
  C-contiguous.
- **Inputs are not modified**, except by the in-place functions, whose names end in `_`
  (`sgd_update_`, `adam_update_`, `clip_grad_norm_`, `clip_grad_value_`, `allreduce_`,
  `broadcast_`, `average_gradients_`). An in-place call that refuses its arguments leaves
  every array it was given unchanged.
- **`out=`** (keyword only) takes a preallocated result: a C-contiguous, writeable array
  of the result's shape and dtype (a wrong dtype is a `TypeError`, a wrong shape a
  `ValueError`); functions with several results take a tuple, whose entries may be None.
  The function writes into it and returns it. An `out` that overlaps an input is safe: the
  input is copied first (an elementwise kernel given `out=x` works in place), except in
  the losses, which refuse an `out` that shares memory with an input.
- **`backend=`** (keyword only): `None` is the current default (`fastdl.get_backend()`),
  else `"numpy"` (the reference), `"numba"` or `"cython"`. An unknown or unavailable
  backend is a `ValueError`. Every backend gives the reference's result to rounding.
- **Errors.** Bad input (a wrong rank or shape, mismatched sizes, labels outside
  `[0, C)`, unknown names, hyper-parameters out of range) raises `ValueError` or
  `TypeError` whose message starts with the argument's name and says what was expected and
  what was given, before any compiled code runs. A wrongly typed value (a string for a
  number, a float for an int, `"no"` for a bool) is a `TypeError`. NaN and Inf in data
  propagate as IEEE arithmetic says; they are errors only where an entry says so (`fit`
  refuses non-finite `X`).
- **Hyper-parameters are checked where they are given**: an optimizer or schedule at
  construction, a kernel at its call (`lr >= 0`; `momentum`, `beta1`, `beta2` in
  `[0, 1)`; `eps > 0`; `l1`, `l2`, `weight_decay >= 0`; dropout `p` in `[0, 1)`;
  `label_smoothing` in `[0, 1]`; sizes, epochs and patience positive ints).
- **Randomness** is explicit: `rng` or `seed` is None (fresh entropy), an int seed, or a
  `numpy.random.Generator` (used as is, so one Generator threaded through several calls
  is one reproducible stream). The draws never depend on the backend.

Signatures below are the code's own (`inspect.signature`); shapes use `N` for the batch,
`C` for classes or channels.
"""


# ----------------------------------------------------------------------- Markdown bits
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces as hyphens (repeats get ``-1``, ``-2``: the headings here are unique)."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


_CODE_SPAN = re.compile(r"(``.+?``|`[^`\n]+`)", re.S)
_BULLET = re.compile(r"(?m)^(\s*)\* ")


def _escape(text: str) -> str:
    """``*`` that could start or end emphasis (not between two spaces), and ``<`` that
    could start an HTML tag, escaped."""
    text = re.sub(r"(?<=\S)\*|\*(?=\S)", r"\\*", text)
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text)


def _inline(text: str) -> str:
    """RST inline literals (``x``, which may span lines) as Markdown code spans; outside
    them ``*`` and ``<`` escaped (``2**31`` is no emphasis, ``<layer>`` no HTML tag),
    except a ``* `` that starts a bullet."""
    parts = _CODE_SPAN.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span
            inner = part[2:-2] if part.startswith("``") else part[1:-1]
            inner = re.sub(r"\s*\n\s*", " ", inner)
            fence = "``" if "`" in inner else "`"
            pad = " " if inner.startswith("`") or inner.endswith("`") else ""
            out.append(f"{fence}{pad}{inner}{pad}{fence}")
            continue
        # bullets start a line: in the first part anywhere, later only after a newline
        head, nl, tail = part.partition("\n") if i else ("", "", part)
        pieces = []
        for k, seg in enumerate(_BULLET.split(tail)):
            if k % 2:
                pieces.append(seg + "\x00 ")  # a bullet's indentation; marker kept
            else:
                pieces.append(_escape(seg))
        tail = "".join(pieces).replace("\x00", "*")
        out.append(_escape(head) + nl + tail)
    return "".join(out)


_ITEM_SECTIONS = {"parameters", "other parameters", "returns", "yields", "attributes",
                  "raises", "warns", "receives"}
_NAMES = re.compile(r"^(\*{0,2}[A-Za-z_]\w*)(, \*{0,2}[A-Za-z_]\w*)*$")


def _is_rule(line: str) -> bool:
    return bool(re.fullmatch(r"-{3,}", line.strip()))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_entry(line: str) -> bool:
    """A numpydoc ``name : type`` line."""
    name, sep, _ = line.partition(" : ")
    return bool(sep) and not line.startswith(" ") and bool(_NAMES.match(name))


def _item(head: str, body: list[str]) -> str:
    """An entry (``name : type`` or a bare line) and its description as a list item,
    in RST (``_inline`` converts it with its paragraph)."""
    name, sep, rest = head.partition(" : ")
    if sep and _NAMES.match(name.strip()):
        names = ", ".join(f"``{n.strip()}``" for n in name.split(","))
        first = f"- {names}: {rest.strip()}"
    else:
        first = f"- {head.strip()}"
    body = ["  " + b.strip() if b.strip() else "" for b in body]
    while body and not body[-1]:
        body.pop()
    # the description continues the item's paragraph: numpydoc wraps long type
    # lines into it, so no line break can be put between them
    return "\n".join([first] + body)


def render_doc(doc: str) -> str:
    """A numpydoc docstring (already dedented) as Markdown."""
    lines = doc.splitlines()
    # in order: ("md", RST text to convert), ("raw", Markdown), or (language, code)
    blocks: list[tuple[str, str]] = []
    para: list[str] = []
    section = None

    def flush():
        if para:
            blocks.append(("md", "\n".join(para)))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and not line.startswith(" ") and _is_rule(nxt):
            flush()
            section = line.strip().lower()
            blocks.append(("raw", f"**{line.strip()}**"))
            i += 2
            continue
        if not line.strip():
            if para and para[-1].rstrip().endswith("::"):
                i += 1  # its literal block follows
                continue
            flush()
            # after a blank line, an unindented line that is no entry ends an item
            # section (a remark after the list)
            if section in _ITEM_SECTIONS and nxt.strip() and not nxt.startswith(" ") \
                    and not _is_entry(nxt):
                section = None
            i += 1
            continue
        literal = bool(para) and para[-1].rstrip().endswith("::")
        if _indent(line) >= 4 and (not para or literal):
            # a literal block: after a blank line, or after a paragraph ending in "::"
            if literal:
                head = para[-1].rstrip()[:-2].rstrip()
                para[-1] = head + ":" if head else ""
            flush()
            j = i
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) >= 4):
                j += 1
            while not lines[j - 1].strip():
                j -= 1
            block = lines[i:j]
            width = min(_indent(b) for b in block if b.strip())
            blocks.append(("text", "\n".join(b[width:] for b in block)))
            i = j
            continue
        if line.lstrip().startswith(">>>"):
            flush()
            j = i
            while j < len(lines) and lines[j].lstrip().startswith((">>>", "...")):
                j += 1
            blocks.append(("python", "\n".join(l.strip() for l in lines[i:j])))
            i = j
            continue
        if _indent(line) == 0 and (section in _ITEM_SECTIONS
                                   or (_indent(nxt) >= 4 and nxt.strip())):
            # an entry and its indented description (numpydoc), or a term and its
            # definition (``term``, then its text indented below it)
            body = []
            j = i + 1
            while j < len(lines) and (_indent(lines[j]) > 0 or (
                    not lines[j].strip() and j + 1 < len(lines)
                    and _indent(lines[j + 1]) > 0)):
                body.append(lines[j])
                j += 1
            if section in _ITEM_SECTIONS:
                para.append(_item(line, body))
            else:
                para.append("\n".join([f"- {line.strip()}"]
                                      + ["  " + b.strip() if b.strip() else "" for b in body]))
            i = j
            continue
        para.append(line)
        i += 1
    flush()
    out = []
    for kind, text in blocks:
        if kind == "md":
            out.append(_inline(text))
        elif kind == "raw":
            out.append(text)
        else:
            out.append(f"```{kind}\n{text}\n```")
    return "\n\n".join(out)



# ------------------------------------------------------------------------- signatures
def _default(v) -> str:
    if isinstance(v, type):
        return f"np.{v.__name__}" if issubclass(v, np.generic) else v.__name__
    if isinstance(v, np.generic):
        return repr(v.item())
    if isinstance(v, np.dtype):
        return f"np.{v.name}"
    r = repr(v)
    if " at 0x" in r:
        raise ValueError(f"a default without a stable repr: {r}")
    return r


def _params(sig: inspect.Signature, drop_first: bool) -> list[str]:
    params = list(sig.parameters.values())
    if drop_first and params:
        params = params[1:]
    out, star = [], False
    for k, p in enumerate(params):
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
            star = True
            continue
        if p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            out.append("*")
            star = True
        out.append(p.name if p.default is p.empty else f"{p.name}={_default(p.default)}")
        if p.kind is p.POSITIONAL_ONLY and (k + 1 == len(params)
                                            or params[k + 1].kind is not p.POSITIONAL_ONLY):
            out.append("/")
    return out


def _signature(head: str, params: list[str], width: int = 88) -> str:
    one = f"{head}({', '.join(params)})"
    if len(one) <= width:
        return one
    lines, cur = [f"{head}("], "   "
    for k, p in enumerate(params):
        piece = f" {p}" + ("," if k + 1 < len(params) else ")")
        if len(cur) + len(piece) > width:
            lines.append(cur)
            cur = "   "
        cur += piece
    lines.append(cur)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entries
def _own_doc(obj) -> str:
    doc = obj.fget.__doc__ if isinstance(obj, property) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if doc else ""


def _need(doc: str, where: str) -> str:
    if not doc.strip():
        raise SystemExit(f"make_api: {where} has no docstring; write one (numpydoc: "
                         "shapes, dtypes, the formula), then run python docs/make_api.py")
    return doc


def _member(cls, qual: str, name: str) -> list[str]:
    owner = next((c for c in cls.__mro__ if name in vars(c)), None)
    if owner is None:
        raise SystemExit(f"make_api: {qual} has no member {name!r} (MEMBERS in "
                         "docs/make_api.py)")
    raw = vars(owner)[name]
    title = f"{cls.__name__}.{name}"
    if isinstance(raw, property):
        sig = f"{title}  # property" + ("" if raw.fset is None else ", settable")
        doc = _own_doc(raw)
    else:
        fn = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
        drop = not isinstance(raw, staticmethod)
        head = f"{cls.__name__}" if name == "__call__" else title
        sig = _signature(head, _params(inspect.signature(fn), drop_first=drop))
        if isinstance(raw, classmethod):
            sig = f"@classmethod\n{sig}"
        doc = _own_doc(fn)
    _need(doc, f"{qual}.{name}")
    return [f"#### `{title}`", "", "```python", sig, "```", "", render_doc(doc), ""]


def _entry(qual: str, obj) -> list[str]:
    mod, _, name = qual.rpartition(".")
    if qual in CONSTANTS:
        lines = [f"### `{qual}`", "", CONSTANTS[qual], ""]
        if qual not in _NO_VALUE:
            lines += ["```python", f"{name} = {obj!r}", "```", ""]
        return lines
    if not callable(obj):
        raise SystemExit(f"make_api: {qual} is a constant without a line in CONSTANTS "
                         "(docs/make_api.py)")
    lines = [f"### `{qual}`", ""]
    if inspect.isclass(obj):
        try:
            sig = _signature(f"class {qual}", _params(inspect.signature(obj), False))
        except ValueError:  # no signature: an exception type
            sig = f"class {qual}({obj.__mro__[1].__name__})"
    else:
        sig = _signature(qual, _params(inspect.signature(obj), False))
    lines += ["```python", sig, "```", ""]
    lines += [render_doc(_need(_own_doc(obj), qual)), ""]
    if qual in EXTRA_DOC:  # its protocol, from its module's docstring
        lines += [f"From `{EXTRA_DOC[qual]}`:", "",
                  render_doc(_own_doc(importlib.import_module(EXTRA_DOC[qual]))), ""]
    if mod == "fastdl.sklearn":
        missing = [m for m in SKLEARN_INHERITED if not hasattr(obj, m)]
        if missing:
            raise SystemExit(f"make_api: {qual} lacks {missing}")
        lines += ["From scikit-learn's base classes: "
                  + ", ".join(f"`{m}`" for m in SKLEARN_INHERITED)
                  + " (with scikit-learn's meaning).", ""]
    for member in MEMBERS.get(qual, ()):
        lines += _member(obj, qual, member)
    return lines


def _module_names(modname: str) -> list[str]:
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    if names is None:
        raise SystemExit(f"make_api: {modname} has no __all__")
    return list(names)


def _sections():
    """(module, title, import line, [(subtitle, module doc, [(qualified name, obj)])])."""
    seen: dict[int, str] = {}
    result = []
    for modname, title, how, _ in MODULES:
        mod = importlib.import_module(modname)
        if modname == "fastdl.functional":
            parts = []
            for fam, sub in FAMILIES:
                fmod = importlib.import_module(f"{modname}.{fam}")
                parts.append((sub, f"{modname}.{fam}",
                              [(f"{modname}.{n}", getattr(mod, n)) for n in fmod.__all__]))
            listed = {q.rpartition(".")[2] for _, _, items in parts for q, _ in items}
            new = sorted(n for n, v in vars(mod).items() if not n.startswith("_")
                         and callable(v) and n not in listed
                         and getattr(v, "__module__", "").startswith(modname + "."))
            if new:
                raise SystemExit(f"make_api: fastdl.functional exports {new} from a family "
                                 "that FAMILIES in docs/make_api.py does not list")
        else:
            parts = [(None, modname, [(f"{modname}.{n}", getattr(mod, n))
                                      for n in _module_names(modname)])]
        result.append((modname, title, how, parts))
    # a name exported by two modules (fastdl.load is fastdl.nn.load) is documented
    # where it is defined, and referred to from the other
    for modname, _, _, parts in result:
        for _, _, items in parts:
            for qual, obj in items:
                defined = getattr(obj, "__module__", "") or ""
                if callable(obj) and (defined == modname or defined.startswith(modname + ".")):
                    best = seen.get(id(obj))
                    if best is None or len(qual) > len(best):  # the innermost module
                        seen[id(obj)] = qual
    return result, seen


def render() -> str:
    sections, home = _sections()
    out = [INTRO, "## Contents", ""]
    for modname, title, _, parts in sections:
        names = [q.rpartition(".")[2] for _, _, items in parts for q, _ in items]
        links = ", ".join(f"[{n}](#{slug(f'`{modname}.{n}`')})" for n in names)
        out.append(f"- [`{modname}`: {title}](#{slug(f'`{modname}`: {title}')}): {links}")
    out.append("")
    for modname, title, how, parts in sections:
        out += [f"## `{modname}`: {title}", "", "```python", how, "```", ""]
        mdoc = _own_doc(importlib.import_module(modname))
        if modname not in HIDDEN_MODULE_DOCS and mdoc:
            out += [render_doc(mdoc), ""]
        for sub, submod, items in parts:
            if sub is not None:
                out += [f"### {sub}", ""]
                sdoc = _own_doc(importlib.import_module(submod))
                if submod not in HIDDEN_MODULE_DOCS and "\n" in sdoc.strip():
                    # the first line names the family; the rest is its conventions
                    out += [render_doc(sdoc.split("\n", 1)[1].strip()), ""]
            for qual, obj in items:
                where = home.get(id(obj)) if callable(obj) else None
                if where is not None and where != qual:
                    out += [f"### `{qual}`", "",
                            f"The same object as [`{where}`](#{slug(f'`{where}`')}).", ""]
                    continue
                entry = _entry(qual, obj)
                if sub is not None:  # one level down inside a family
                    entry = [("#" + l) if l.startswith("### ") or l.startswith("#### ")
                             else l for l in entry]
                out += entry
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.rstrip("\n") + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write docs/api.md from the docstrings.")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    g.add_argument("--stdout", action="store_true", help="print the page")
    args = ap.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is out of date: run python docs/make_api.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
