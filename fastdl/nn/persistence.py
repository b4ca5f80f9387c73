"""Saving and loading models: ``model.save(path)`` and ``fastdl.load(path)``.

The file is an uncompressed zip of ``.npy`` entries, as ``np.savez`` writes it:
``meta`` (UTF-8 JSON as uint8), ``params`` (the flat parameter buffer) and
``optimizer/<key>`` (the optimizer's state arrays).  ``load`` reads it as untrusted
input: every entry's size is checked against the archive's directory and the file's
size before anything is allocated, every metadata field against its type and range,
and the parameter count against the architecture before the model is built, so a
damaged or crafted file raises ``ValueError`` quickly and costs no more memory than
its own size.
"""
from __future__ import annotations

import inspect
import json
import os
import stat
import warnings
import zipfile
import zlib

import numpy as np

from fastdl import _atomic, _config, _validate as V
from fastdl._config import BACKENDS_ALL
from fastdl.nn.base import LAYER_TYPES, MAX_DEPTH, walk_layers
from fastdl.nn.losses import LOSSES, check_loss, check_output

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastdl-model"
FORMAT_VERSION = 1
MAX_META_BYTES = 4 << 20   # an architecture of thousands of layers takes well under 1 MiB
MAX_LAYERS = 10_000
_OPTIMIZERS = ("SGD", "Adam")  # what load restores: fastdl's classes of these names


def _optimizer_class(name):
    from fastdl import optim

    return {"SGD": optim.SGD, "Adam": optim.Adam}[name]


# ---------------------------------------------------------------------------- save
def save(model, path):
    """``Sequential.save`` (documented there)."""
    if getattr(model, "_distributed", False) and not _writes_here():
        return os.fspath(path)
    _check_rebuildable(model)
    data = model._params.data
    meta = {"format": FORMAT, "version": FORMAT_VERSION,
            "architecture": model.get_config(), "loss": model.loss,
            "num_params": int(data.size),
            "crc32": zlib.crc32(np.ascontiguousarray(data).view(np.uint8)) & 0xFFFFFFFF,
            "epochs_trained": int(model.epochs_trained), "seed": model._seed}
    if model.backend is not None:  # absent for the default, as files before it
        meta["backend"] = model.backend
    arrays = {"params": data}
    if model.optimizer is not None and _restorable(model.optimizer):
        state, opt_arrays = {}, {}
        for k, v in model.optimizer.state_dict().items():
            if isinstance(v, np.ndarray):
                opt_arrays[f"optimizer/{k}"] = v
                state[k] = {"__array__": k}
            else:
                state[k] = v.item() if isinstance(v, np.generic) else v
        meta["optimizer"] = {"type": type(model.optimizer).__name__, "state": state}
        if model.optimizer.backend != model.backend:
            # absent: the model's (as fit makes them, and as files before it were read)
            meta["optimizer"]["backend"] = model.optimizer.backend
        arrays.update(opt_arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    # the whole new file or the old one (fastdl/_atomic.py); a device or FIFO refused
    return _atomic.write_atomic(path, lambda fh: np.savez(fh, **arrays), name="path")


def _check_rebuildable(model):
    """ValueError before anything is written for a layer ``load`` could not rebuild (a
    class of the user's: load knows fastdl's layer types only), rather than a file that
    saves and then does not load."""
    for layer in walk_layers(model.layers):
        name = type(layer).__name__
        if LAYER_TYPES.get(name) is not type(layer):
            raise ValueError(f"model: its {name} layer is not one of fastdl's layer types, "
                             f"which fastdl.load could not rebuild; pickle the model instead")


def _restorable(opt):
    """Whether ``load`` can restore ``opt`` (fastdl's SGD and Adam exactly); a warning and
    no optimizer state in the file otherwise: the model itself is still saved."""
    if type(opt) in map(_optimizer_class, _OPTIMIZERS):
        return True
    warnings.warn(f"the optimizer ({type(opt).__name__}) is not saved: fastdl.load restores "
                  f"fastdl's SGD and Adam only; the model's weights are", RuntimeWarning,
                  stacklevel=4)
    return False


def _writes_here():
    """Rank 0 of a data-parallel job (or no job): the ranks hold the same model, and
    one file written by several processes at once would be torn."""
    from fastdl.distributed import _runtime

    return not _runtime.is_initialized() or _runtime.rank() == 0


# ---------------------------------------------------------------------------- load
class _Bad(ValueError):
    pass


def load(path):
    """Read a model saved by ``model.save``: the architecture, parameters, loss,
    optimizer state (as ``model.optimizer``) and training position, so that ``fit``
    goes on exactly as the saved model would.

    A missing or unreadable file raises ``OSError``; anything else that is not an
    intact fastdl model file (another format, a truncated or damaged file, metadata
    of the wrong type or range, parameters that do not match the architecture)
    raises ``ValueError`` saying what is wrong, before allocating more than the
    file's size."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    st = os.stat(path)  # OSError as open's, for a missing or unreadable file
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        # a FIFO blocked open() for ever; /dev/zero read gigabytes into a MemoryError
        raise ValueError(f"{path}: not a regular file (a device, FIFO or socket)")
    with open(path, "rb") as fh:
        try:
            return _load(fh, os.fstat(fh.fileno()).st_size)
        except _Bad as e:
            # a crafted file's values can be megabytes: the message stays readable
            msg = str(e) if len(str(e)) <= 1000 else str(e)[:1000] + "... (cut)"
            raise ValueError(f"{path}: {msg}") from None


def _load(fh, file_size):
    from fastdl.nn.model import Sequential
    from fastdl.optim import Parameters

    archive = _Archive(fh, file_size)
    meta_bytes = archive.array("meta", ("|u1",), max_count=MAX_META_BYTES).tobytes()
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _Bad(f"damaged model metadata: {type(e).__name__}: {e}") from None
    meta = _check_meta(meta)
    arch = meta["architecture"]
    counter = [0]
    layers = [_build_layer(c, f"architecture.layers[{i}]", 0, counter)
              for i, c in enumerate(arch["layers"])]
    dtype = np.dtype(arch["dtype"])
    shapes = [(str(i), s) for i, s in enumerate(
        s for l in layers for s in l.param_shapes().values())]
    size = Parameters.buffer_size(shapes, dtype)
    if meta["num_params"] != size:
        raise _Bad(f"the metadata declares {meta['num_params']} parameters, the architecture "
                   f"needs {size}")
    params = archive.open_array("params", _orders(dtype))
    if params.count != size:
        raise _Bad(f"parameters of shape ({params.count},) and dtype {params.dtype} do not "
                   f"match the architecture, which needs ({size},) {dtype}")
    try:
        model = Sequential.__new__(Sequential)
        # no random initialisation (the file has them), and no output-activation warning
        # (said when the model was built)
        model._build(layers, dtype, None, warn=False)
    except (TypeError, ValueError) as e:
        raise _Bad(f"the architecture cannot be rebuilt: {e}") from None
    data = model._params.data
    params.read_into(data)
    if zlib.crc32(data.view(np.uint8)) & 0xFFFFFFFF != meta["crc32"]:
        raise _Bad("parameter checksum mismatch (the file is damaged)")
    try:
        if meta["loss"] is not None:
            model.loss = check_loss("loss", meta["loss"], model.output_activation)
            if model.output_shape is not None:
                check_output("loss", model.loss, model.output_shape)
    except ValueError as e:
        raise _Bad(f"metadata: {e}") from None
    model.epochs_trained = meta.get("epochs_trained", 0)
    model._seed = meta.get("seed")
    model.backend = _config.restored_backend(meta.get("backend"))
    if "optimizer" in meta:
        o = meta["optimizer"]
        backend = _config.restored_backend(o["backend"], "its optimizer") if "backend" in o \
            else model.backend
        model.optimizer = _load_optimizer(archive, o, model._params, dtype, backend)
    archive.check_all_read()
    return model


def _load_optimizer(archive, o, params, dtype, backend):
    state = {}
    for k, v in o["state"].items():
        if isinstance(v, dict):
            state[k] = archive.array(f"optimizer/{v['__array__']}", _orders(dtype),
                                     count=params.data.size)
        else:
            state[k] = v
    cls = _optimizer_class(o["type"])
    try:
        # its own backend: resumed training takes the steps the uninterrupted run would
        return cls.from_state_dict(params, state, backend=backend)
    except (TypeError, ValueError) as e:
        raise _Bad(f"the optimizer state does not load: {e}") from None


class _Npy:
    """An open ``.npy`` entry whose header was read and checked against the entry size."""

    def __init__(self, stream, name, dtype, count):
        self.stream, self.name, self.dtype, self.count = stream, name, dtype, count

    def read_into(self, out):
        """Read the ``count`` values into ``out`` (1-D, native order) and check the
        entry's CRC (the zip reader checks it at the end of the entry)."""
        try:
            raw = out.view(np.uint8)
            if not self.dtype.isnative:  # a file written on a machine of the other order
                raw = np.empty(out.nbytes, np.uint8)
            view, got = memoryview(raw), 0
            while got < raw.size:
                k = self.stream.readinto(view[got:])
                if not k:
                    raise _Bad(f"entry {self.name!r} is truncated")
                got += k
            if self.stream.read(1):
                raise _Bad(f"entry {self.name!r} is longer than its header says")
            if raw is not out.view(np.uint8):
                out[...] = raw.view(self.dtype)
        except _Bad:
            raise
        except Exception as e:  # the zip reader's errors on damaged data
            raise _Bad(f"entry {self.name!r} is damaged: {type(e).__name__}: {e}") from None
        finally:
            self.stream.close()
        return out


class _Archive:
    """The zip directory, checked: unique names of the expected forms, stored (not
    compressed) entries whose sizes fit in the file."""

    def __init__(self, fh, file_size):
        try:
            self.zf = zipfile.ZipFile(fh)
            infos = self.zf.infolist()
        except Exception as e:  # zipfile raises a dozen types on a damaged directory
            raise _Bad(f"not a readable fastdl model file (damaged, truncated or another "
                       f"format): {type(e).__name__}: {e}") from None
        self.infos = {}
        total = 0
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.infos:
                raise _Bad(f"not a fastdl model file (entry {name!r})")
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or \
                    info.compress_size != info.file_size:
                raise _Bad(f"entry {name!r} is compressed or encrypted (fastdl writes stored "
                           "entries)")
            total += info.compress_size
            self.infos[name[:-4]] = info
        if total > file_size:
            raise _Bad(f"the zip directory declares {total} bytes of entries in a file of "
                       f"{file_size} bytes")
        if "meta" not in self.infos or "params" not in self.infos:
            raise _Bad(f"not a fastdl model file (no 'meta'/'params' entries; found "
                       f"{sorted(self.infos)})")
        self._read = set()

    def open_array(self, name, dtypes, max_count=None):
        """The entry ``name`` opened after its ``.npy`` header: a 1-D array of one of
        ``dtypes`` (dtype strings, e.g. ``'<f4'``) whose data fills the rest of the entry."""
        info = self.infos.get(name)
        if info is None:
            raise _Bad(f"entry {name!r} is missing")
        self._read.add(name)
        stream = None
        try:
            stream = self.zf.open(info)
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise _Bad(f"entry {name!r}: .npy version {version} is not supported")
            header = stream.tell()
        except _Bad:
            if stream is not None:
                stream.close()
            raise
        except Exception as e:
            if stream is not None:
                stream.close()
            raise _Bad(f"entry {name!r} is not a readable .npy array: {type(e).__name__}: "
                       f"{e}") from None
        try:
            if dtype.str not in dtypes or dtype.hasobject:
                raise _Bad(f"entry {name!r} has dtype {dtype}, expected "
                           f"{' or '.join(np.dtype(d).name for d in dtypes)}")
            if len(shape) != 1:
                raise _Bad(f"entry {name!r} has shape {shape}, expected a 1-D array")
            count = shape[0]
            if count * dtype.itemsize != info.file_size - header:
                raise _Bad(f"entry {name!r} declares {count} values of {dtype.itemsize} bytes "
                           f"in {info.file_size - header} bytes of data")
            if max_count is not None and count > max_count:
                raise _Bad(f"entry {name!r} is larger than {max_count} values")
        except _Bad:
            stream.close()
            raise
        return _Npy(stream, name, dtype, count)

    def array(self, name, dtypes, max_count=None, count=None):
        """The entry ``name`` read (see ``open_array``), of ``count`` values if given."""
        npy = self.open_array(name, dtypes, max_count)
        if count is not None and npy.count != count:
            npy.stream.close()
            raise _Bad(f"entry {name!r} holds {npy.count} values, expected {count}")
        return npy.read_into(np.empty(npy.count, npy.dtype.newbyteorder("=")))

    def check_all_read(self):
        unused = sorted(set(self.infos) - self._read)
        if unused:
            raise _Bad(f"unexpected entries {unused}")


# ------------------------------------------------------------------- metadata
_REQUIRED = {"format", "version", "architecture", "loss", "num_params", "crc32"}
_OPTIONAL = {"optimizer", "epochs_trained", "seed", "backend"}


def _orders(dtype):
    return (dtype.newbyteorder("<").str, dtype.newbyteorder(">").str)


def _is_int(v):
    return type(v) is int


def _check_meta(meta):
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _Bad("not a fastdl model file (no fastdl-model format tag)")
    if meta.get("version") != FORMAT_VERSION or not _is_int(meta["version"]):
        raise _Bad(f"model format version {meta.get('version')!r} is not supported (this "
                   f"fastdl reads version {FORMAT_VERSION})")
    keys = set(meta)
    if _REQUIRED - keys or keys - _REQUIRED - _OPTIONAL:
        raise _Bad(f"metadata: missing keys {sorted(_REQUIRED - keys)}, unknown keys "
                   f"{sorted(keys - _REQUIRED - _OPTIONAL)}")
    arch = meta["architecture"]
    if not isinstance(arch, dict) or set(arch) != {"layers", "dtype"}:
        raise _Bad("metadata: architecture must be {'layers': [...], 'dtype': ...}")
    if arch["dtype"] not in ("float32", "float64"):
        raise _Bad(f"metadata: architecture.dtype must be 'float32' or 'float64', got "
                   f"{arch['dtype']!r}")
    if not isinstance(arch["layers"], list) or not arch["layers"]:
        raise _Bad("metadata: architecture.layers must be a non-empty list")
    if meta["loss"] is not None and meta["loss"] not in LOSSES:
        raise _Bad(f"metadata: loss must be null or one of {LOSSES}, got {_short(meta['loss'])}")
    if not _is_int(meta["num_params"]) or meta["num_params"] < 0:
        raise _Bad(f"metadata: num_params must be an int >= 0, got {_short(meta['num_params'])}")
    if not _is_int(meta["crc32"]) or not 0 <= meta["crc32"] < 2**32:
        raise _Bad(f"metadata: crc32 must be an int in [0, 2**32), got {_short(meta['crc32'])}")
    e = meta.get("epochs_trained", 0)
    if not _is_int(e) or not 0 <= e < 2**62:
        raise _Bad(f"metadata: epochs_trained must be an int in [0, 2**62), got {_short(e)}")
    s = meta.get("seed")
    if s is not None and (not _is_int(s) or not 0 <= s <= V.MAX_SEED):
        raise _Bad(f"metadata: seed must be null or an int in [0, 2**128), got {_short(s)}")
    b = meta.get("backend")
    if b is not None and b not in BACKENDS_ALL:
        raise _Bad(f"metadata: backend must be null or one of {BACKENDS_ALL}, got {_short(b)}")
    if "optimizer" in meta:
        _check_optimizer_meta(meta["optimizer"])
    return meta


def _check_optimizer_meta(o):
    if not isinstance(o, dict) or not {"type", "state"} <= set(o) <= {"type", "state",
                                                                     "backend"}:
        raise _Bad("metadata: optimizer must be {'type': ..., 'state': {...}}")
    b = o.get("backend")
    if b is not None and b not in BACKENDS_ALL:
        raise _Bad(f"metadata: optimizer.backend must be null or one of {BACKENDS_ALL}, "
                   f"got {_short(b)}")
    if o["type"] not in _OPTIMIZERS:
        raise _Bad(f"metadata: unknown optimizer type {o['type']!r}")
    if not isinstance(o["state"], dict):
        raise _Bad("metadata: optimizer.state must be a dict")
    for k, v in o["state"].items():
        if isinstance(v, dict):
            if set(v) != {"__array__"} or v["__array__"] != k:
                raise _Bad(f"metadata: optimizer.state[{k!r}] must be a number, a string or "
                           f"{{'__array__': {k!r}}}")
        elif not _is_scalar(v):
            raise _Bad(f"metadata: optimizer.state[{k!r}] must be a number, a string or an "
                       f"array reference, got {type(v).__name__}")


def _is_scalar(v):
    return v is None or type(v) in (bool, int, float, str)


def _build_layer(entry, where, depth, counter):
    """A layer from its saved entry, every field checked before the constructor runs
    (which checks the values)."""
    from fastdl.nn.layers import Residual

    counter[0] += 1
    if counter[0] > MAX_LAYERS:
        raise _Bad(f"metadata: more than {MAX_LAYERS} layers")
    if not isinstance(entry, dict) or "type" not in entry or set(entry) - {"type", "config"}:
        raise _Bad(f"{where}: expected {{'type': ..., 'config': {{...}}}}, got "
                   f"{_short(entry)}")
    cls = LAYER_TYPES.get(entry["type"]) if isinstance(entry["type"], str) else None
    if cls is None:
        raise _Bad(f"the architecture cannot be rebuilt: {where}: unknown layer type "
                   f"{_short(entry['type'])}")
    cfg = entry.get("config", {})
    if not isinstance(cfg, dict):
        raise _Bad(f"{where}.config: expected a dict, got {type(cfg).__name__}")
    if cls is Residual:
        if set(cfg) != {"layers"} or not isinstance(cfg["layers"], list):
            raise _Bad(f"{where}.config: expected {{'layers': [...]}}")
        if depth + 1 > MAX_DEPTH:
            raise _Bad(f"{where}: Residual blocks nested more than {MAX_DEPTH} deep")
        subs = [_build_layer(c, f"{where}.layers[{j}]", depth + 1, counter)
                for j, c in enumerate(cfg["layers"])]
        args, kwargs = subs, {}
    else:
        sig = inspect.signature(cls.__init__).parameters
        allowed = {k for k, p in sig.items() if k != "self" and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(set(cfg) - allowed, key=str)
        if unknown:
            raise _Bad(f"{where}.config: unknown keys {unknown} for {cls.__name__}")
        for k, v in cfg.items():
            if not (_is_scalar(v) or (isinstance(v, list) and len(v) <= 8
                                      and all(_is_scalar(x) for x in v))):
                raise _Bad(f"{where}.config[{k!r}]: expected a number, string, bool, null or "
                           f"a short list of them, got {_short(v)}")
        args, kwargs = [], cfg
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as e:
        raise _Bad(f"the architecture cannot be rebuilt: {where}: {e}") from None


def _short(v, n=60):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."

