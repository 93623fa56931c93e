"""Names of the shipped artifacts, defined once: the weights folder, tasks and graph files.

The exporter (``export/``) writes graphs under these names and the ONNX Runtime engine
(:mod:`pfn.engines.onnx_engine`) reads them, so both import them from here. A model on disk
is a *prefix*: ``PREFIX.safetensors`` holds the weights, ``PREFIX.TASK.onnx`` the full graph
of a task and ``PREFIX.TASK.fit.onnx`` / ``PREFIX.TASK.predict.onnx`` its fit/predict pair
(``export/FORMAT.md``).

Graphs are *sealed*: their metadata records ``content_sha256``, the SHA-256 of the file
with that one metadata entry cut out (equivalently: of the model serialised without it), and
``weights_sha256``, the fingerprint of the weights they were exported from
(:func:`pfn.checkpoint.weights_fingerprint`). :func:`read_graph` checks the seal with a few
lines of protobuf wire-format reading, so neither ``onnx`` nor torch is needed to verify.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_PREFIX = WEIGHTS_DIR / "default"  # the general model: one network, both heads
CLASSIFIER_PREFIX = WEIGHTS_DIR / "classifier"  # a network trained further on classification
REGRESSOR_PREFIX = WEIGHTS_DIR / "regressor"  # a network trained further on regression
TASKS = ("classification", "regression")
KINDS = ("full", "fit", "predict")  # graphs per task (export/graphs.py builds them)

# The model each estimator loads by default. A task gets a specialist where one was trained
# for it and measured better on real data for that task than the general model
# (MODEL_CARD.md); TabPFN v2 likewise ships a classifier and a regressor checkpoint. The
# general model keeps its graphs of both tasks, so ``OnnxEngine()`` and the Node.js example
# run one model for either.
SHIPPED_PREFIXES = {"classification": CLASSIFIER_PREFIX, "regression": REGRESSOR_PREFIX}


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`, else a ValueError naming it."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task


def shipped_prefix(task: str) -> Path:
    """The prefix of the model the estimators of ``task`` load by default."""
    return SHIPPED_PREFIXES[check_task(task)]


def weights_path(prefix: str | os.PathLike) -> Path:
    """``PREFIX.safetensors``: the weights of a model prefix."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + ".safetensors")


DEFAULT_WEIGHTS = weights_path(DEFAULT_PREFIX)


def graph_suffix(task: str, kind: str = "full") -> str:
    """``.TASK.onnx`` for the full graph, ``.TASK.KIND.onnx`` for "fit" and "predict"."""
    check_task(task)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f".{task}.onnx" if kind == "full" else f".{task}.{kind}.onnx"


def graph_path(prefix: str | os.PathLike, task: str, kind: str = "full") -> Path:
    """``PREFIX.TASK.onnx`` (the full graph) or ``PREFIX.TASK.KIND.onnx`` (fit, predict)."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + graph_suffix(task, kind))


def onnx_prefix(path: str | os.PathLike) -> Path:
    """The prefix of a graph path (``x.classification.fit.onnx`` -> ``x``); a prefix as is."""
    path = Path(path)
    for task in TASKS:
        for kind in KINDS:
            suffix = graph_suffix(task, kind)
            if path.name.endswith(suffix):
                return path.with_name(path.name[: -len(suffix)])
    return path


def in_weights_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in the package's weights folder (only ``pfn ship`` writes there)."""
    return Path(path).resolve().parent.is_relative_to(WEIGHTS_DIR)


# ----- sealed graphs ------------------------------------------------------------------------
CONTENT_KEY = "content_sha256"  # metadata: SHA-256 of the graph file without this entry
WEIGHTS_KEY = "weights_sha256"  # metadata: fingerprint of the weights the graph came from
UNSEALED_VERSIONS = ("1", "2")  # export versions written before seals: load unverified
_METADATA_FIELD = 14  # ModelProto.metadata_props (StringStringEntryProto: 1 key, 2 value)


def _varint(data, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError(f"bad varint at byte {pos}")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _fields(data, start: int, end: int):
    """Yield (field number, start of the field, start of its payload, end) of a message."""
    pos = start
    while pos < end:
        tag, body = _varint(data, pos)
        wire = tag & 7
        if wire == 0:
            stop = _varint(data, body)[1]
        elif wire == 2:
            size, body = _varint(data, body)
            stop = body + size
        elif wire in (1, 5):
            stop = body + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {pos}")
        if stop > end:
            raise ValueError(f"field at byte {pos} runs past the end ({stop} > {end})")
        yield tag >> 3, pos, body, stop
        pos = stop


def _metadata(data) -> tuple[dict[str, str], tuple[int, int] | None]:
    """A ModelProto's metadata_props, and the byte span of its content-hash entry."""
    meta: dict[str, str] = {}
    span = None
    for number, start, body, stop in _fields(data, 0, len(data)):
        if number != _METADATA_FIELD:
            continue
        entry = {n: bytes(data[b:e]).decode() for n, _, b, e in _fields(data, body, stop)}
        key, value = entry.get(1, ""), entry.get(2, "")
        if key in meta:
            raise ValueError(f"metadata key {key!r} appears twice")
        meta[key] = value
        if key == CONTENT_KEY:
            span = (start, stop)
    return meta, span


def graph_content_sha256(data: bytes) -> str:
    """SHA-256 of a graph file's bytes without its ``content_sha256`` metadata entry."""
    span = _metadata(data)[1]
    if span is None:
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256(memoryview(data)[:span[0]])
    h.update(memoryview(data)[span[1]:])
    return h.hexdigest()


def read_graph_metadata(path: str | os.PathLike) -> dict[str, str]:
    """A graph file's metadata (unverified), reading only the bytes around it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _metadata(mm)[0]
    except (ValueError, UnicodeDecodeError) as err:  # mmap of an empty file: ValueError too
        raise ValueError(f"cannot read ONNX model {path}: not a valid graph file ({err})"
                         ) from err


@dataclass(frozen=True)
class GraphFile:
    """A graph file read by :func:`read_graph`: its bytes (what a runtime should load)."""

    path: Path
    data: bytes
    metadata: dict[str, str]
    verified: bool  # False for graphs exported before seals (no content_sha256)


def read_graph(path: str | os.PathLike) -> GraphFile:
    """Read a graph file and check its seal; a ValueError names a damaged file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    data = path.read_bytes()
    try:
        meta, _ = _metadata(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read ONNX model {path}: not a valid graph file ({err})"
                         ) from err
    if CONTENT_KEY not in meta and meta.get("export_version") not in UNSEALED_VERSIONS:
        raise ValueError(f"ONNX model {path} (export_version {meta.get('export_version')!r}) "
                         f"records no {CONTENT_KEY}: the file is damaged (re-export it)")
    if CONTENT_KEY in meta:
        digest = graph_content_sha256(data)
        if digest != meta[CONTENT_KEY]:
            raise ValueError(f"ONNX model {path}: content SHA-256 {digest[:16]}... differs "
                             f"from the recorded {meta[CONTENT_KEY][:16]}...: the file is "
                             "damaged (re-export it)")
    return GraphFile(path, data, meta, CONTENT_KEY in meta)


def graph_weights(meta: dict[str, str]) -> str | None:
    """The weights a graph computes with, from its metadata: ``weights_sha256`` (plus the
    quantisation, which changes the numbers), else ``file-sha256:`` + the exported file's
    hash (graphs exported before ``weights_sha256``), else None."""
    if WEIGHTS_KEY in meta:
        q = meta.get("quantization")
        return meta[WEIGHTS_KEY] + (f"+{q}" if q else "")
    return f"file-sha256:{meta['source_sha256']}" if "source_sha256" in meta else None


__all__ = ["WEIGHTS_DIR", "DEFAULT_PREFIX", "DEFAULT_WEIGHTS", "CLASSIFIER_PREFIX",
           "REGRESSOR_PREFIX", "SHIPPED_PREFIXES", "TASKS", "KINDS", "check_task",
           "shipped_prefix", "weights_path", "graph_suffix", "graph_path", "onnx_prefix",
           "in_weights_dir", "CONTENT_KEY", "WEIGHTS_KEY", "GraphFile", "read_graph",
           "read_graph_metadata", "graph_content_sha256", "graph_weights"]
