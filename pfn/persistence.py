"""A fitted estimator's state as one safetensors file: arrays as tensors, the rest as JSON.

No pickle, so loading runs no code from the file. :func:`write_state` walks the state (a
dict of attributes) and stores

- numeric and boolean numpy arrays as safetensors tensors, named by where they sit
  (``plan_.members[2].transform.center``);
- None, bool, int, float, str and lists as themselves in JSON; everything else as a JSON
  object tagged with its type ``"t"``: tuples, dicts (any keys), numpy scalars, text and
  object arrays (their items walked), paths, numpy random generators, and instances of the
  project's own classes listed in :data:`SAVABLE` (their ``__dict__`` walked).

:func:`read_state` rebuilds exactly that: it knows the tags, builds only the classes in
:data:`SAVABLE` (a file names a class, and the name is looked up there, never imported),
and refuses anything else. A new fitted attribute needs nothing unless it holds an instance
of a new class of the project's: then one line in :data:`SAVABLE`.

The safetensors metadata holds ``format``, ``state`` (the JSON) and ``sha256``: the SHA-256
of the JSON and of every tensor's name, dtype, shape and bytes, checked before anything is
decoded, so a truncated, bit-flipped or edited file is refused with a ValueError naming it.
The layout is specified in ``export/FORMAT.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from pfn.boosting import BoostedTrees
from pfn.categorical import CategoryEncoding
from pfn.contexts import LocalContexts
from pfn.preprocessing import EnsemblePlan, Member, TableEncoder
from pfn.routing import RowRouter
from pfn.target_transform import TargetTransform
from pfn.transforms import MemberTransform

FORMAT = "tabpfn-lite estimator/1"
# The project's classes a fitted estimator may hold: the only ones loading builds.
SAVABLE: dict[str, type] = {cls.__name__: cls for cls in (
    TableEncoder, EnsemblePlan, Member, MemberTransform, CategoryEncoding, LocalContexts,
    RowRouter, TargetTransform, BoostedTrees)}
_BIT_GENERATORS = {cls.__name__: cls for cls in (
    np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox,
    np.random.SFC64)}
_SCALAR_KINDS = "biufU"  # numpy scalars: bool, ints, floats, text
_TENSOR_KINDS = "biuf"


def _refuse_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def content_sha256(text: str, tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 of the JSON text, then per tensor in name order its name, dtype, shape and
    bytes (independent of the file layout)."""
    h = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, arr.dtype.str, list(arr.shape)]).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


# ----- writing ----------------------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] = {}

    def encode(self, value: Any, where: str) -> Any:
        """``value`` as JSON; numeric arrays go to ``self.tensors`` under the name ``where``."""
        if isinstance(value, np.generic):  # before float and str: np.float64 is a float
            if value.dtype.kind not in _SCALAR_KINDS:
                raise TypeError(f"cannot save {where}: numpy scalar of dtype {value.dtype}")
            return {"t": "scalar", "dtype": value.dtype.str,
                    "value": self.encode(value.item(), where)}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if np.isfinite(value) else {"t": "float", "value": repr(value)}
        if isinstance(value, np.ndarray):
            return self._array(value, where)
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"t": "tuple", "items": self.encode(list(value), where)}
        if isinstance(value, dict):
            return {"t": "dict", "items": [[self.encode(k, f"{where}.key{i}"),
                                            self.encode(v, f"{where}[{k!r}]")]
                                           for i, (k, v) in enumerate(value.items())]}
        if isinstance(value, PurePath):
            return {"t": "path", "value": str(value)}
        if isinstance(value, np.random.Generator):
            return {"t": "generator", "state": self.encode(value.bit_generator.state, where)}
        if isinstance(value, np.random.RandomState):
            return {"t": "random_state",
                    "state": self.encode(value.get_state(legacy=False), where)}
        name = type(value).__name__
        if SAVABLE.get(name) is type(value) and hasattr(value, "__dict__"):
            return {"t": "object", "class": name,
                    "attrs": {k: self.encode(v, f"{where}.{k}") for k, v in vars(value).items()}}
        raise TypeError(f"cannot save {where}: a {type(value).__qualname__} is none of the "
                        "types a saved estimator holds (a class of this project is added to "
                        "pfn.persistence.SAVABLE)")

    def _array(self, arr: np.ndarray, where: str) -> Any:
        kind = arr.dtype.kind
        if kind in _TENSOR_KINDS:
            self.tensors[where] = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
            return {"t": "tensor", "name": where}
        if kind not in "UO":
            raise TypeError(f"cannot save {where}: array of dtype {arr.dtype}")
        items = arr.ravel().tolist() if kind == "U" else \
            [self.encode(v, f"{where}[{i}]") for i, v in enumerate(arr.ravel())]
        return {"t": "array", "dtype": arr.dtype.str, "shape": list(arr.shape), "items": items}


def write_state(path: str | os.PathLike, class_name: str, state: dict[str, Any]) -> Path:
    """Write ``state`` (attribute name -> value) of a ``class_name`` to ``path``, atomically."""
    path = Path(path)
    writer = _Writer()
    encoded = {key: writer.encode(value, key) for key, value in state.items()}
    text = json.dumps({"format": FORMAT, "class": class_name, "state": encoded},
                      sort_keys=True, allow_nan=False)
    meta = {"format": FORMAT, "state": text, "sha256": content_sha256(text, writer.tensors)}
    data = safetensors.numpy.save(writer.tensors, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


# ----- reading ----------------------------------------------------------------------------
class _Reader:
    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.tensors = tensors

    def decode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        tag = value.get("t") if isinstance(value, dict) else None
        if tag == "scalar":
            dtype = np.dtype(value["dtype"])
            if dtype.kind not in _SCALAR_KINDS:
                raise ValueError(f"scalar of dtype {dtype}")
            return dtype.type(self.decode(value["value"]))
        if tag == "float":
            if value["value"] not in ("nan", "inf", "-inf"):
                raise ValueError(f"float {value['value']!r}")
            return float(value["value"])
        if tag == "tensor":
            return np.array(self.tensors[value["name"]])  # a writable copy
        if tag == "array":
            return self._array(value)
        if tag == "tuple":
            return tuple(self.decode(value["items"]))
        if tag == "dict":
            return {self.decode(k): self.decode(v) for k, v in value["items"]}
        if tag == "path":
            return Path(value["value"])
        if tag == "generator":
            state = self.decode(value["state"])
            bit_generator = _BIT_GENERATORS[state["bit_generator"]]()
            bit_generator.state = state
            return np.random.Generator(bit_generator)
        if tag == "random_state":
            rs = np.random.RandomState()
            rs.set_state(self.decode(value["state"]))
            return rs
        if tag == "object":
            cls = SAVABLE.get(value["class"])
            if cls is None:
                raise ValueError(f"class {value['class']!r} is not one a saved estimator "
                                 f"holds ({sorted(SAVABLE)})")
            obj = cls.__new__(cls)
            obj.__dict__.update({k: self.decode(v) for k, v in value["attrs"].items()})
            return obj
        raise ValueError(f"unknown entry {str(value)[:80]}")

    def _array(self, value: dict) -> np.ndarray:
        dtype, shape, items = np.dtype(value["dtype"]), tuple(value["shape"]), value["items"]
        if dtype.kind == "U":
            return np.array(items, dtype=dtype).reshape(shape)
        if dtype.kind != "O":
            raise ValueError(f"array of dtype {dtype}")
        arr = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            arr[i] = self.decode(item)
        return arr.reshape(shape)


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (8-byte length, then JSON)."""
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes: too short for a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ValueError(f"the header claims {size} bytes, the file has {len(data) - 8}")
    header = json.loads(data[8:8 + size], parse_constant=_refuse_constant)
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise ValueError("no metadata in the header")
    return meta


def saved_class(path: str | os.PathLike) -> str:
    """The class name a file of :func:`write_state` records (only read: :func:`read_state`
    checks the file)."""
    try:
        doc = json.loads(_metadata(Path(path).read_bytes())["state"],
                         parse_constant=_refuse_constant)
        return str(doc["class"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read saved estimator {path}: {err!r}") from err


def read_state(path: str | os.PathLike, class_name: str) -> dict[str, Any]:
    """The state that :func:`write_state` wrote for a ``class_name``; a ValueError naming
    the file if it is damaged, of another format or of another class."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"saved estimator not found: {path}")
    data = path.read_bytes()
    try:
        meta = _metadata(data)
        tensors = safetensors.numpy.load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read saved estimator {path}: {err}") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}; this version reads "
                         f"{FORMAT!r} (a file written by PFNClassifier.save or "
                         "PFNRegressor.save)")
    if "state" not in meta or "sha256" not in meta:
        raise ValueError(f"saved estimator {path} records no state or sha256: damaged")
    digest = content_sha256(meta["state"], tensors)
    if digest != meta["sha256"]:
        raise ValueError(f"saved estimator {path}: content SHA-256 {digest[:16]}... differs "
                         f"from the recorded {meta['sha256'][:16]}...: the file is damaged")
    try:
        doc = json.loads(meta["state"], parse_constant=_refuse_constant)
        found, encoded = doc["class"], doc["state"]
        if doc["format"] != FORMAT:
            raise ValueError(f"format {doc['format']!r} inside, {FORMAT!r} outside")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"saved estimator {path} is malformed: {err!r}") from err
    if found != class_name:
        raise ValueError(f"{path} holds a {found}, not a {class_name}: load it with "
                         f"{found}.load")
    try:
        reader = _Reader(tensors)
        return {key: reader.decode(value) for key, value in encoded.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"saved estimator {path} is malformed: {err!r}") from err


__all__ = ["FORMAT", "SAVABLE", "content_sha256", "write_state", "read_state", "saved_class"]
