"""The report of a ``fastdl bench`` run: the rows' figures from their samples, the
targets checked against them, a table for the terminal and a Markdown page.

``python -m fastdl.benchmarks.report out.json > docs/benchmarks.md`` writes the page
from the JSON of a run (``fastdl bench --json out.json``), so that the page cannot
drift from a run.
"""
from __future__ import annotations

import json
import statistics
import sys

from fastdl import _atomic

BASELINE, FLOOR = "__baseline__", "__floor__"
COMPILED = ("numba", "cython")


def _med(values):
    return statistics.median(values) if values else None


# ------------------------------------------------------------------ row figures
def kernel_row(spec, results, backends) -> dict:
    """A kernel row's figures from its samples (``{(row, competitor): metrics}``)."""
    res = {c: m for (r, c), m in results.items() if r == spec["name"]}
    med = {c: _med(m["samples"]) for c, m in res.items() if c not in (BASELINE, FLOOR)}
    d = {"name": spec["name"], "group": spec["group"], "kind": spec["kind"],
         "note": spec["note"], "median_s": med,
         "rounds": {c: len(m["samples"]) for c, m in res.items()}}
    compiled = [b for b in COMPILED if b in med]
    if compiled:
        d["best"] = best = min(compiled, key=lambda b: med[b])
        if "numpy" in med:
            d["best_vs_reference"] = med[best] / med["numpy"]
        if "torch" in med:
            d["best_vs_torch"] = med[best] / med["torch"]
    work = spec["work"]
    if BASELINE in res:
        base = _med(res[BASELINE]["samples"])
        d["baseline"] = {"kind": spec["baseline"], "median_s": base}
        unit = "gbps" if spec["kind"] == "memory" else "gflops"
        if work:
            d[unit] = {k: work / v / 1e9 for k, v in med.items()}
            d["baseline"][unit] = work / base / 1e9
        paired = {c: _med(m["paired"]) for c, m in res.items() if m.get("paired")}
        if paired:
            d["paired_vs_baseline"] = paired
    elif spec["kind"] == "gemm" and work:
        d["gflops"] = {k: work / v / 1e9 for k, v in med.items()}
    if FLOOR in res:
        fl = _med(res[FLOOR]["samples"])
        d["floor"] = {"median_s": fl, "gbps": work / fl / 1e9}
        if "torch" in med:
            d["floor"]["vs_torch"] = fl / med["torch"]
        if compiled:
            d["floor"]["best_vs_floor"] = med[d["best"]] / fl
    return d


def training_row(row, batch) -> dict:
    """An MLP epoch row (a ProcessRow that has run)."""
    med = {c: _med(m["samples"]) for c, m in row.results.items()}
    floor = med.pop("floor", None)
    d = {"name": row.name, "group": "training", "batch": batch, "median_s": med,
         "rounds": {c: len(m["samples"]) for c, m in row.results.items()},
         "processes": "each library in its own fresh process, alternated",
         "threads": [i.get("threads") for i in row.info]}
    if row.work:
        d["gflops"] = {c: row.work / v / 1e9 for c, v in med.items()}
    compiled = [b for b in COMPILED if b in med]
    if compiled:
        d["best"] = best = min(compiled, key=lambda b: med[b])
        if "torch" in med:
            d["best_vs_torch"] = med[best] / med["torch"]
        if "numpy" in med:
            d["best_vs_reference"] = med[best] / med["numpy"]
        if floor:
            d["floor"] = {"median_s": floor, "best_vs_floor": med[best] / floor}
    return d


# ---------------------------------------------------------------------- targets
def targets(report) -> list[dict]:
    """The project's speed targets, each with this run's value and whether it is met."""
    out = []

    def add(what, value, limit, bound=None, bound_is=""):
        # bound: this run's estimate of the least value this machine allows, where one
        # is known (a target below it cannot be met here, whatever fastdl does)
        if value is not None:
            t = {"target": what, "value": value, "limit": limit, "met": value <= limit}
            if bound is not None:
                t["bound"], t["bound_is"] = bound, bound_is
            out.append(t)

    for d in report.get("training", []):
        limit = 0.85 if d["batch"] >= 1024 else 0.5
        floor, torch = d.get("floor", {}).get("median_s"), d["median_s"].get("torch")
        add(f"{d['name']}: fastdl / PyTorch", d.get("best_vs_torch"), limit,
            floor / torch if floor and torch else None, "the bare matrix products alone")
        add(f"{d['name']}: fastdl / its bare matrix products",
            d.get("floor", {}).get("best_vs_floor"), 1.25)
    for d in report.get("rows", []):
        if d["name"].startswith("dense_forward+relu") and "best" in d:
            add(f"{d['name']}: fastdl / bare np.matmul (paired)",
                d.get("paired_vs_baseline", {}).get(d["best"]), 1.05)
    for d in report.get("cnn", []):
        add(f"{d['name']}: fastdl / PyTorch", d.get("vs_torch", {}).get("fastdl"), 0.8)
    for d in report.get("sklearn", []):
        add(f"{d['name']}: fastdl / scikit-learn", d.get("fastdl_vs_sklearn"), 0.25)
    for d in report.get("distributed", []):
        add(f"{d['name']}: 2 ranks x 1 thread / 1 process x 2 threads",
            d.get("vs_1 process x 2 threads", {}).get("2 ranks x 1 thread"), 1.25)
    order = report.get("import_order")
    if order:
        for o, v in order["dense_paired_vs_matmul"].items():
            add(f"{order['dense_row']}, {o} imported first: fastdl / bare np.matmul (paired)",
                v, 1.05)
        for o, v in order["mlp_vs_best"].items():
            add(f"{order['mlp_row']}, {o} imported first: fastdl / its best import order",
                v, 1.15)
    sc = report.get("scenarios")
    if sc:
        quiet = sc["rows"][0]["median_s"]
        cpus = report.get("machine", {}).get("cpu", {}).get("count")
        for d in sc["rows"]:
            if d["busy_processes"]:
                # fastdl on one thread, which gets a whole CPU while the busy processes
                # leave one free and a 1/(busy + 1) share of each of them after that
                one = None
                if "fastdl 1 thread" in quiet and "fastdl" in quiet and cpus:
                    one = (quiet["fastdl 1 thread"] / quiet["fastdl"]
                           * max(1.0, (d["busy_processes"] + 1) / cpus))
                add(f"{d['scenario']}: fastdl / its quiet time", d["vs_quiet"].get("fastdl"),
                    1.0 + d["busy_processes"], one, "one thread at its CPU share")
                add(f"{d['scenario']}: fastdl / fastdl on 1 thread", d.get("fastdl_vs_1_thread"),
                    1.2)
        if "together" in sc:
            add("PyTorch training beside fastdl in one process / PyTorch alone",
                sc["together"]["vs_alone"].get("torch"), 1.15)
    return out


# ------------------------------------------------------------------------ text
def fmt_time(s):
    if s is None:
        return "-"
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.3f} s"


def _rate(d, k):
    if k in d.get("gbps", {}):
        base = d.get("baseline", {}).get("gbps")
        return f"{d['gbps'][k]:.1f} GB/s" + (f" ({d['gbps'][k] / base:.0%} of copy)"
                                            if base else "")
    if k in d.get("gflops", {}):
        notes = []
        base = d.get("baseline", {}).get("gflops")
        if base:
            notes.append(f"{d['gflops'][k] / base:.0%} of matmul")
        paired = d.get("paired_vs_baseline", {}).get(k)
        if paired is not None:
            notes.append(f"paired {paired:.2f}x its time")
        return f"{d['gflops'][k]:.1f} GFLOP/s" + (f" ({'; '.join(notes)})" if notes else "")
    return ""


def _kernel_lines(d, fmt_row):
    med, ref, tor = d["median_s"], d["median_s"].get("numpy"), d["median_s"].get("torch")
    lines, first = [], True
    for k, t in med.items():
        lines.append(fmt_row(d["name"] if first else "", k + (" *" if d.get("best") == k else ""),
                             fmt_time(t), f"{t / ref:.2f}x" if ref else "",
                             f"{t / tor:.2f}x" if tor else "", _rate(d, k)))
        first = False
    if "baseline" in d:
        b = d["baseline"]
        lines.append(fmt_row("", f"({b['kind']})", fmt_time(b["median_s"]), "", "", ""))
    if "floor" in d and d["group"] != "training":
        f = d["floor"]
        lines.append(fmt_row("", "(floor)", fmt_time(f["median_s"]), "",
                             f"{f['vs_torch']:.2f}x" if "vs_torch" in f else "",
                             f"{f['gbps']:.1f} GB/s" if "gbps" in f else ""))
    return lines


def _loads(x):
    return "unknown" if x is None else " ".join(f"{v:.2f}" for v in x)


def _cpus(x):
    return "unknown" if x is None else f"{x:.2f}"


def _gemm(machine):
    gemm = machine.get("gemm")
    if gemm is None:
        return "not recorded"
    blas = [b for b in machine.get("blas", []) if b.get("filepath") == gemm.get("file")]
    config = (blas[0].get("config") or "").split() if blas else []
    version = " ".join(config[:2]) if config else "OpenBLAS"
    return f"{'NumPy' if gemm['library'] == 'numpy' else 'SciPy'}'s ({version})"


def _header(report):
    m = report["machine"]
    v = m["versions"]
    threads = report["threads"] or "each library's default"
    lines = [f"fastdl bench ({report['command']}), {report['date']}; threads: {threads}; "
             "float32; medians over rounds",
             f"CPU: {m['cpu']['model']}, {m['cpu']['count']} logical CPUs, "
             f"{', '.join(f for f in m['cpu']['features'] if f.startswith('avx'))}",
             "versions: " + ", ".join(f"{k} {x}" for k, x in v.items()),
             "GEMM of fastdl's compiled kernels: " + _gemm(m),
             "children's OpenBLAS variables: " + ", ".join(
                 f"{k}={m['environment_of_children'].get(k)}" for k in
                 ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                  "OMP_NUM_THREADS", "OMP_WAIT_POLICY")),
             f"load average before: {_loads(m.get('loadavg'))}, after: "
             f"{_loads(report.get('loadavg_after'))}; CPUs other processes kept busy before: "
             f"{_cpus(m.get('others_busy_cpus'))}, after: "
             f"{_cpus(report.get('others_busy_cpus_after'))}"]
    busy = max(x for x in (m.get("others_busy_cpus"), report.get("others_busy_cpus_after"), 0)
               if x is not None)
    if busy > 0.2:
        lines.append(f"WARNING: other processes kept {busy:.1f} CPUs busy: these are not "
                     "quiet-machine figures (fastdl adapts its thread count to that load; "
                     "the floor and the other libraries do not)")
    if report.get("torch_note"):
        lines.append(report["torch_note"])
    return lines


def format_table(report) -> str:
    """The report as text for the terminal."""
    lines = _header(report) + [""]
    w = 46

    def fmt_row(name, comp, t, vs_ref, vs_torch, rate):
        return f"{name:<{w}} {comp:<16} {t:>11} {vs_ref:>8} {vs_torch:>9}  {rate}"

    hdr = fmt_row("row", "competitor", "median", "vs ref", "vs torch", "rate")
    lines += [hdr, "-" * (len(hdr) + 24)]
    for d in report.get("rows", []) + report.get("training", []):
        lines += _kernel_lines(d, fmt_row)
        if d.get("group") == "training" and "floor" in d:
            lines.append(fmt_row("", "(floor)", fmt_time(d["floor"]["median_s"]), "", "",
                                 f"the epoch's matrix products alone; best "
                                 f"{d['floor']['best_vs_floor']:.2f}x it"))
    lines += ["", "* the fastest compiled backend of the row; 'vs ref' and 'vs torch' are time "
              "ratios (below 1 is faster); PyTorch ran in its own processes",
              "(floor): the same bytes moved by a bare parallel loop, or an epoch's matrix "
              "products alone: no kernel or epoch doing that work beats it",
              "paired: median over rounds of the time over the bare matmul's, timed in "
              "adjacent blocks (drift cancels)"]
    lines += _extra_text(report)
    return "\n".join(lines)


def _extra_text(report):
    lines = []
    for d in report.get("sklearn", []):
        lines += ["", d["name"] + " (" + d["note"] + "):"]
        for c, t in d["median_s"].items():
            lines.append(f"  {c:<14} {fmt_time(t):>10}  accuracy {d['accuracy'][c]:.3f}")
    for key, base in (("cnn", "torch"), ("distributed", "1 process x 2 threads")):
        for d in report.get(key, []):
            lines += ["", d["name"] + " (" + d["note"] + "):"]
            for c, t in d["median_s"].items():
                ex = ", ".join(f"{k} {v:.3g}" for k, v in d["extra"].get(c, {}).items())
                vs = d.get("vs_" + base, {}).get(c)
                lines.append(f"  {c:<22} {fmt_time(t):>10}"
                             + (f"  {vs:.2f}x {base}" if vs is not None and c != base else "")
                             + (f"  ({ex})" if ex else ""))
    o = report.get("import_order")
    if o:
        lines += ["", "import order (fastdl's own process; first import named):"]
        for k, v in o["dense_paired_vs_matmul"].items():
            lines.append(f"  {o['dense_row']}, {k} first: {v:.3f}x a bare matmul (paired)")
        for k, v in o["mlp_median_s"].items():
            lines.append(f"  {o['mlp_row']}, {k} first: {fmt_time(v)} "
                         f"({o['mlp_vs_best'][k]:.2f}x the best order)")
    sc = report.get("scenarios")
    if sc:
        lines += ["", f"under load: {sc['workload']}"]
        for d in sc["rows"]:
            parts = [f"{c} {fmt_time(t)} ({d['vs_quiet'].get(c, float('nan')):.2f}x quiet)"
                     for c, t in d["median_s"].items()]
            lines.append(f"  {d['scenario']:<17} " + "; ".join(parts))
        if "together" in sc:
            t = sc["together"]
            lines.append(f"  {t['label']}: " + "; ".join(
                f"{c} {fmt_time(v)} ({t['vs_alone'].get(c, float('nan')):.2f}x alone)"
                for c, v in t["median_s"].items()))
    if report.get("targets"):
        lines += ["", "targets:"]
        lines += [f"  {'met ' if t['met'] else 'MISS'} {t['value']:.3f} (at most {t['limit']}"
                  + (f"; {t['bound_is']}: {t['bound']:.3f}" if "bound" in t else "")
                  + f") {t['target']}" for t in report["targets"]]
    if "startup" in report:
        lines += [""] + [f"{k:<66} {x:8.3f}" for k, x in report["startup"].items()]
    return lines


# --------------------------------------------------------------------- Markdown
def markdown(report) -> str:
    """The benchmarks page, from a run's report."""
    m = report["machine"]
    out = ["# Benchmarks", "",
           f"Generated by `python -m fastdl.benchmarks.report` from the JSON of "
           f"`{report['command']} --json` run on {report['date']}; do not edit by hand.", ""]
    out += ["## Machine", ""] + [f"- {line}" for line in _header(report)[1:]] + [""]
    out += ["## Kernels", "", "Each library in its own process; fastdl's backends, its NumPy "
            "reference, the bare NumPy baseline and the floor interleaved in one.", "",
            "| row | competitor | median | vs reference | vs PyTorch | rate |",
            "| --- | --- | ---: | ---: | ---: | --- |"]

    def fmt_row(name, comp, t, vs_ref, vs_torch, rate):
        return f"| {name} | {comp} | {t} | {vs_ref} | {vs_torch} | {rate} |"

    for d in report.get("rows", []):
        out += _kernel_lines(d, fmt_row)
    out += ["", "## Training", ""]
    out += ["| row | competitor | epoch | vs PyTorch | rate |", "| --- | --- | ---: | ---: | --- |"]
    for d in report.get("training", []):
        tor = d["median_s"].get("torch")
        first = True
        for c, t in d["median_s"].items():
            out.append(f"| {d['name'] if first else ''} | {c}{' *' if d.get('best') == c else ''}"
                       f" | {fmt_time(t)} | {f'{t / tor:.2f}x' if tor else ''} | "
                       f"{_rate(d, c)} |")
            first = False
        if "floor" in d:
            out.append(f"| | (floor: the matrix products alone) | {fmt_time(d['floor']['median_s'])}"
                       f" | | {d['floor']['best_vs_floor']:.2f}x for the best |")
    extra = _extra_text({k: v for k, v in report.items() if k != "startup"})
    if extra:
        out += ["", "## Comparisons, import order, load", "", "```"] + extra[1:] + ["```"]
    if "startup" in report:
        out += ["", "## Start-up", "", "| what | seconds |", "| --- | ---: |"]
        out += [f"| {k} | {x:.3f} |" for k, x in report["startup"].items()]
    return "\n".join(out) + "\n"


def plot(report, path):
    """A bar chart of the best fastdl / reference and fastdl / PyTorch ratios (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [d for d in report.get("rows", []) + report.get("training", [])
            if "best_vs_reference" in d or "best_vs_torch" in d]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.5))
    ax.barh(y - 0.2, [d.get("best_vs_reference", np.nan) for d in rows], 0.4,
            label="best fastdl / NumPy reference")
    ax.barh(y + 0.2, [d.get("best_vs_torch", np.nan) for d in rows], 0.4,
            label="best fastdl / PyTorch (own process)")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y, [d["name"] for d in rows], fontsize=7)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("time ratio (below 1: fastdl is faster)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:  # the whole new image or the old one
        _atomic.save_figure(fig, path, name="--plot", dpi=110)
    finally:
        plt.close(fig)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m fastdl.benchmarks.report RUN.json > docs/benchmarks.md",
              file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        sys.stdout.write(markdown(json.load(fh)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
