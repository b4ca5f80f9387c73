"""Saving and loading models: ``model.save(path)`` and ``fastdl.load(path)``."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from fastdl.nn.layers import layer_from_config

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastdl-model"
FORMAT_VERSION = 1


def save(model, path):
    """Write the architecture, parameters and optimizer state to one ``.npz`` file.

    The file is written under a temporary name in the same folder, flushed to disk
    and renamed over ``path``, so a crash never leaves half a model behind."""
    data = model._params.data
    meta = {"format": FORMAT, "version": FORMAT_VERSION,
            "architecture": model.get_config(), "loss": model.loss,
            "num_params": int(data.size),
            "crc32": zlib.crc32(np.ascontiguousarray(data).view(np.uint8)) & 0xFFFFFFFF}
    arrays = {"params": data}
    if model.optimizer is not None:
        opt_meta, opt_arrays = _flatten_state(model.optimizer.state_dict())
        meta["optimizer"] = {"type": type(model.optimizer).__name__, "state": opt_meta}
        arrays.update({f"optimizer/{k}": v for k, v in opt_arrays.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastdl-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path



def _flatten_state(state, prefix=""):
    """Split a state dict into JSON metadata and arrays (keys joined with '/')."""
    meta, arrays = {}, {}
    for k, v in state.items():
        key = f"{prefix}{k}"
        if isinstance(v, np.ndarray):
            arrays[key] = v
            meta[k] = {"__array__": key}
        elif isinstance(v, dict):
            m, a = _flatten_state(v, key + "/")
            meta[k] = {"__dict__": m}
            arrays.update(a)
        elif isinstance(v, (np.floating, np.integer)):
            meta[k] = v.item()
        elif isinstance(v, tuple):
            meta[k] = {"__tuple__": list(v)}
        else:
            meta[k] = v
    return meta, arrays


def _unflatten_state(meta, arrays):
    out = {}
    for k, v in meta.items():
        if isinstance(v, dict) and "__array__" in v:
            out[k] = arrays[v["__array__"]]
        elif isinstance(v, dict) and "__dict__" in v:
            out[k] = _unflatten_state(v["__dict__"], arrays)
        elif isinstance(v, dict) and "__tuple__" in v:
            out[k] = tuple(v["__tuple__"])
        else:
            out[k] = v
    return out


def load(path):
    """Read a model saved by ``model.save``: the architecture, parameters and optimizer
    state (as ``model.optimizer``).  A missing file raises ``OSError``; a file that is
    not a fastdl model, is truncated or damaged, or whose parameters do not match its
    architecture raises ``ValueError`` saying what is wrong."""
    from fastdl import optim
    from fastdl.nn.model import Sequential

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            files = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, KeyError) as e:
        raise ValueError(f"{path}: not a readable fastdl model file (damaged, truncated or "
                         f"another format): {e}") from None
    if "meta" not in files or "params" not in files:
        raise ValueError(f"{path}: not a fastdl model file (no 'meta'/'params' entries; "
                         f"found {sorted(files)})")
    try:
        meta = json.loads(files["meta"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: damaged model metadata: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastdl model file (format {meta.get('format')!r})"
                         if isinstance(meta, dict) else f"{path}: not a fastdl model file")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model format version {meta.get('version')!r} is not "
                         f"supported (this fastdl reads version {FORMAT_VERSION})")
    arch = meta.get("architecture", {})
    try:
        model = Sequential(*[layer_from_config(c) for c in arch["layers"]],
                           dtype=arch.get("dtype", "float32"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: the architecture cannot be rebuilt: {e}") from None
    params = files["params"]
    data = model.parameters().data
    if params.shape != data.shape or params.dtype != data.dtype:
        raise ValueError(f"{path}: parameters of shape {params.shape} and dtype "
                         f"{params.dtype} do not match the architecture, which needs "
                         f"{data.shape} {data.dtype}")
    crc = zlib.crc32(np.ascontiguousarray(params).view(np.uint8)) & 0xFFFFFFFF
    if crc != meta.get("crc32"):
        raise ValueError(f"{path}: parameter checksum mismatch (the file is damaged)")
    np.copyto(data, params)
    model.loss = meta.get("loss")
    if "optimizer" in meta:
        o = meta["optimizer"]
        cls = {"SGD": optim.SGD, "Adam": optim.Adam}.get(o.get("type"))
        if cls is None:
            raise ValueError(f"{path}: unknown optimizer type {o.get('type')!r}")
        arrays = {k[len("optimizer/"):]: v for k, v in files.items()
                  if k.startswith("optimizer/")}
        state = _unflatten_state(o["state"], arrays)
        opt = cls(model.parameters())
        try:
            opt.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: the optimizer state does not load: {e}") from None
        model.optimizer = opt
    return model
