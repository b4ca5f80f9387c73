"""Start-up figures of fastdl, each in a fresh process: the import, Numba's cold compile
and its load from the cache, the first training step."""
import os
import statistics
import subprocess
import sys


def startup_figures(quick):
    """Import time, Numba cold compile and cache load, first training step: each in a
    fresh process."""
    import tempfile

    py = sys.executable
    out = {}
    code_import = "import time; t=time.perf_counter(); import fastdl; print(time.perf_counter()-t)"
    vals = [float(subprocess.check_output([py, "-c", code_import], text=True))
            for _ in range(1 if quick else 5)]
    out["import fastdl (s)"] = statistics.median(vals)
    code_jit = ("import time, numpy as np, fastdl.functional as F; "
                "x=np.ones(1000,np.float32); t=time.perf_counter(); "
                "F.relu(x, backend='numba'); F.relu_backward(x, x, backend='numba'); "
                "print(time.perf_counter()-t)")
    if quick:
        # the cold compile alone takes 10-15 s here: only the full run measures it
        subprocess.check_output([py, "-c", code_jit], text=True)  # warm the cache
        out["numba relu fwd+bwd, load from cache (s)"] = float(
            subprocess.check_output([py, "-c", code_jit], text=True))
    else:
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, NUMBA_CACHE_DIR=d)
            out["numba relu fwd+bwd, cold compile (s)"] = float(
                subprocess.check_output([py, "-c", code_jit], text=True, env=env))
            out["numba relu fwd+bwd, load from cache (s)"] = float(
                subprocess.check_output([py, "-c", code_jit], text=True, env=env))
    code_step = ("import time; t=time.perf_counter(); import numpy as np, fastdl; "
                 "from fastdl import nn; "
                 "m=nn.Sequential(nn.Dense(784,512,'relu'),nn.Dense(512,256,'relu'),"
                 "nn.Dense(256,10),seed=0); X=np.random.rand(32,784).astype(np.float32); "
                 "y=np.arange(32)%10; m.fit(X,y,epochs=1,batch_size=32,verbose=0); "
                 "print(time.perf_counter()-t)")
    for be in ("cython",) if quick else ("cython", "numba"):
        c = code_step.replace("seed=0)", f"seed=0, backend='{be}')")
        subprocess.check_output([py, "-c", c], text=True)  # warm the cache
        out[f"first training step in a fresh process, {be}, warm cache (s)"] = float(
            subprocess.check_output([py, "-c", c], text=True))
    return out
