"""The documentation: docs/api.md is what docs/make_api.py writes from the docstrings and
names every public name of the contract; every relative link of README.md and docs/*.md
resolves (file and heading); every ```python block of them runs."""
import difflib
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

# pages whose Python blocks other tests run
RUN_ELSEWHERE = {
    "docs/api.md": "generated: its blocks are signatures",
    "docs/sklearn.md": "tests/test_sklearn.py runs its examples",
    "docs/distributed.md": "tests/mpi_scripts/main.py runs its example under mpirun",
}
NO_TEST = "<!-- no-test -->"  # on the line before a block that must not run here
TIMEOUT = 240  # seconds for all the blocks of one page


def _make_api():
    spec = importlib.util.spec_from_file_location("make_api", DOCS / "make_api.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rel(path):
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------ api.md
def test_api_page_is_up_to_date():
    want = _make_api().render()
    have = (DOCS / "api.md").read_text()
    if have != want:
        diff = "".join(list(difflib.unified_diff(
            have.splitlines(True), want.splitlines(True), "docs/api.md",
            "python docs/make_api.py"))[:60])
        pytest.fail("docs/api.md is out of date (a public signature or docstring changed): "
                    f"run  python docs/make_api.py  and commit docs/api.md\n{diff}")


# The public contract: every name programs outside the project may call (module-level
# names as fastdl.<module>.<name>, methods and attributes as <Class>.<name>).
CONTRACT = {
    "fastdl": ["__version__", "backends", "get_backend", "set_backend", "use_backend",
               "set_num_threads", "get_num_threads", "info", "clip_grad_norm_",
               "clip_grad_value_", "load"],
    "fastdl.functional": [
        "dense_forward", "dense_backward",
        *(f"{a}{s}" for a in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu",
                              "softmax", "log_softmax") for s in ("", "_backward")),
        "maxout", "maxout_backward", "dropout", "dropout_backward",
        "mse", "mse_backward", "binary_cross_entropy", "binary_cross_entropy_backward",
        "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
        "softmax_cross_entropy", "cross_entropy", "kl_divergence",
        "sgd_update_", "adam_update_",
        "conv2d_forward", "conv2d_backward", "max_pool2d", "max_pool2d_backward",
        "avg_pool2d", "avg_pool2d_backward"],
    "fastdl.nn": ["Dense", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU",
                  "Softmax", "Maxout", "Dropout", "Residual", "Sequential", "Conv2D",
                  "MaxPool2D", "AvgPool2D", "Flatten", "History", "load"],
    "fastdl.optim": ["SGD", "Adam", "Parameters", "clip_grad_norm_", "clip_grad_value_"],
    "fastdl.schedules": ["StepDecay", "ExponentialDecay", "CosineAnnealing"],
    "fastdl.callbacks": ["EarlyStopping"],
    "fastdl.init": ["normal", "uniform", "xavier_normal", "xavier_uniform", "he_normal",
                    "he_uniform"],
    "fastdl.data": ["batches", "class_weights", "oversample", "undersample", "kfold",
                    "cross_validate"],
    "fastdl.augment": ["random_flip", "random_shift", "gaussian_noise", "random_crop",
                       "Compose"],
    "fastdl.datasets": ["load_digits"],
    "fastdl.metrics": ["confusion_matrix", "accuracy", "precision", "recall", "specificity",
                       "npv", "f1", "fbeta", "classification_report"],
    "fastdl.sklearn": ["MLPClassifier", "MLPRegressor"],
    "fastdl.distributed": ["init", "rank", "world_size", "is_available", "allreduce_",
                           "broadcast_"],
    "Sequential": ["fit", "predict", "predict_proba", "evaluate", "save", "parameters",
                   "summary"],
    "History": ["plot"],
    **{opt: ["step", "zero_grad", "lr", "state_dict", "load_state_dict"]
       for opt in ("SGD", "Adam")},
    **{est: ["fit", "predict", "partial_fit"] for est in ("MLPClassifier", "MLPRegressor")},
}


def _headings(text):
    """The headings of a Markdown page, outside fenced blocks."""
    heads, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            heads.append(line.lstrip("#").strip())
    return heads


def test_api_page_documents_the_contract():
    heads = set(_headings((DOCS / "api.md").read_text()))
    missing = [f"{owner}.{name}" for owner, names in CONTRACT.items() for name in names
               if f"`{owner}.{name}`" not in heads]
    assert not missing, f"docs/api.md has no entry for {missing}"


def test_api_page_lists_each_module_s_public_names():
    # a name added to a module's __all__ gets an entry (make_api refuses it undocumented)
    heads = set(_headings((DOCS / "api.md").read_text()))
    make_api = _make_api()
    sections, _ = make_api._sections()
    names = [qual for _, _, _, parts in sections for _, _, items in parts for qual, _ in items]
    assert len(names) > 100
    assert [n for n in names if f"`{n}`" not in heads] == []


def test_docstring_rendering():
    render = _make_api().render_doc
    doc = ("Sum ``x * y`` over 2**31 rows <layer>::\n\n    a = b\n\nParameters\n----------\n"
           "x, y : (N,) float32\n    The ``rows``.\n\n* one\n* two\n\nReturns\n-------\n"
           "s : float\n\nA remark.")
    assert render(doc) == (
        "Sum `x * y` over 2\\*\\*31 rows \\<layer>:\n\n```text\na = b\n```\n\n"
        "**Parameters**\n\n- `x`, `y`: (N,) float32\n  The `rows`.\n\n* one\n* two\n\n"
        "**Returns**\n\n- `s`: float\n\nA remark.")


# ------------------------------------------------------------------------- links
def _slugs(text):
    """The anchors of a page's headings, as GitHub makes them (repeats get -1, -2, ...),
    and the ids of its HTML anchors."""
    slug = _make_api().slug
    seen: dict = {}
    out = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    for h in _headings(text):
        s = slug(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h))  # a link's text only
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def _links(text):
    """(line number, target) of every inline and reference link outside code."""
    found, fenced = [], False
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            found.append((no, target))
        m = re.match(r"\s*\[[^\]]+\]:\s*(\S+)", line)
        if m:
            found.append((no, m.group(1)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    text = page.read_text()
    bad = []
    for no, target in _links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{_rel(page)}:{no}: {target}"
        if not dest.exists():
            bad.append(f"{where} (no such file)")
        elif ROOT not in dest.parents and dest != ROOT:
            bad.append(f"{where} (outside the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in _slugs(dest.read_text()):
            bad.append(f"{where} (no such heading in {_rel(dest)})")
    assert not bad, "broken links:\n" + "\n".join(bad)


# ------------------------------------------------------------------- code blocks
def python_blocks(text):
    """(first line number, code) of each ```python block not marked ``<!-- no-test -->``."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            marked = any(lines[k].strip() == NO_TEST for k in range(max(i - 2, 0), i))
            if not marked:
                blocks.append((i + 2, "\n".join(lines[i + 1:j])))
            i = j
        i += 1
    return blocks


# Runs a page's blocks in order in one namespace; the line numbers of a traceback are the
# page's own.
RUNNER = """
import json, sys
name, blocks = json.loads(sys.argv[1])
ns = {"__name__": "__main__"}
for first, code in blocks:
    exec(compile("\\n" * (first - 1) + code, name, "exec"), ns)
"""


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_python_blocks_run(page, tmp_path):
    if _rel(page) in RUN_ELSEWHERE:
        pytest.skip(RUN_ELSEWHERE[_rel(page)])
    blocks = python_blocks(page.read_text())
    if not blocks:
        return
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    res = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([str(page), blocks])],
                         cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0, (f"a Python block of {_rel(page)} failed (mark a block that "
                                 f"cannot run here with {NO_TEST} on the line before it):\n"
                                 + res.stderr[-3000:])


def test_python_blocks_parser():
    text = "a\n```python\nx = 1\n```\n<!-- no-test -->\n```python\nimport torch\n```\n"
    assert python_blocks(text) == [(3, "x = 1")]


def test_link_parser_and_anchors():
    text = ("# A `b`: c\n## Dup\n## Dup\n[x](other.md#a-b-c) and `[no](code.md)`\n"
            "```\n[no](fenced.md)\n```\n[ref]: ref.md\n")
    assert _links(text) == [(4, "other.md#a-b-c"), (8, "ref.md")]
    assert _slugs(text) == {"a-b-c", "dup", "dup-1"}
