"""A worker process of ``fastdl bench``: times kernel rows for one library and prints
one JSON line, ``{"library", "rows": {name: {competitor: {"samples": [...], ...}}},
"threads", "preimport"}``.

Run by path (``python .../worker_kernels.py --library torch ...``), never with ``-m``:
PyTorch's worker then imports only NumPy, PyTorch and this folder's pure modules
(specs.py, timing.py, torch_rows.py), never fastdl.  fastdl's worker times every
backend, the NumPy reference, the baseline and the floor of a row interleaved in its
one process (timing.py).
"""
import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    del sys.path[0]  # this folder's module names must not shadow anyone's imports


COOL = 0.25  # seconds for OpenBLAS's idle threads to stop spinning (about 0.1 s)


def sibling(name):
    """This folder's module ``name``, loaded by path (never through the fastdl package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", required=True, choices=("fastdl", "torch"))
    ap.add_argument("--size", default="quick", choices=("tiny", "quick", "full"))
    ap.add_argument("--rows", required=True, help="JSON list of row names")
    ap.add_argument("--conv", action="store_true", help="the size's convolution rows exist")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sample", type=float, default=0.01)
    ap.add_argument("--pre", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=0, help="0: the library's default")
    ap.add_argument("--preimport", default="numpy", choices=("numpy", "torch", "fastdl"),
                    help="imported first, as a user's program would")
    a = ap.parse_args(argv)
    __import__(a.preimport)
    specs, timing = sibling("specs"), sibling("timing")

    names = json.loads(a.rows)
    chosen = [s for s in specs.kernel_specs(a.size, a.conv) + [specs.threading_spec()]
              if s["name"] in names]
    out = {}
    if a.library == "fastdl":
        import fastdl
        from fastdl.benchmarks import rows

        if a.threads:
            fastdl.set_num_threads(a.threads)
        backends = fastdl.backends()
        for spec in chosen:
            if spec["group"] == "threading":
                if "numba" in backends:
                    fns = rows.threading_competitors()
                    out[spec["name"]] = timing.measure(fns, a.rounds, a.sample, a.pre)
                continue
            fns = rows.competitors(spec, backends)
            # dense rows: a 2-thread GEMM drifts more than the few percent a fused pass
            # costs, so each competitor is also timed against the bare matmul, paired;
            # their competitors call two BLAS libraries: each block starts with both idle
            pair = rows.BASELINE if spec["baseline"] == "matmul" else None
            cool = COOL if spec["kind"] == "gemm" else 0.0
            out[spec["name"]] = timing.measure(fns, a.rounds, a.sample, a.pre, pair, cool)
        threads = fastdl.info()["threads"]
    else:
        import torch

        torch_rows = sibling("torch_rows")

        if a.threads:
            torch.set_num_threads(a.threads)
        for spec in chosen:
            fn = torch_rows.competitor(torch, spec)
            if fn is not None:
                out[spec["name"]] = timing.measure({"torch": fn}, a.rounds, a.sample, a.pre)
        threads = {"torch": torch.get_num_threads()}
    print(json.dumps({"library": a.library, "rows": out, "threads": threads,
                      "preimport": a.preimport,
                      "fastdl_imported": any(m.split(".")[0] == "fastdl" for m in sys.modules)}))


if __name__ == "__main__":
    main()
