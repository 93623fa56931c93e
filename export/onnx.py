"""Checkpoint -> ONNX: per task a full graph and a fit/predict pair (see export.graphs).

The graphs take raw float features and training labels and contain everything that depends
on the training rows (standardisation, NaN handling, outlier squashing, feature-count
scaling, target scaling), because all of it lives inside :class:`pfn.model.PFN`. What stays
outside is listed in ``export/FORMAT.md``.

Shapes: B datasets, N training rows, T test rows, F used features (1 <= F <= max_features),
K regression buckets, C = max_classes.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export.graphs import dynamic_shapes, graph_spec
from pfn.artifacts import (
    CONTENT_KEY,
    KINDS,
    TASKS,
    WEIGHTS_KEY,
    check_task,
    graph_content_sha256,
    graph_path,
)
from pfn.checkpoint import load_model
from pfn.model import PFN

EXPORT_VERSION = "3"  # 2: fit/predict graphs, float16-stored exact weights; 3: sealed
OPSET = 18


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _store_exact_fp16(proto: onnx.ModelProto, min_size: int = 1024) -> int:
    """Store float32 weights that are exactly float16 values as float16 + a Cast node.

    Weights shipped in float16 (``pfn ship``) are such values, so this halves the file at
    no cost in exactness: the Cast restores the very same float32 numbers, and ONNX Runtime
    folds it into a constant when the session is created (no run-time cost). Weights that
    are not exactly representable (a float32 checkpoint) stay float32. Returns the count.
    """
    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.data_location != 0:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_size or not np.array_equal(arr.astype(np.float16).astype(np.float32),
                                                     arr):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), name + "__fp16"))
        casts.append(onnx.helper.make_node("Cast", [name + "__fp16"], [name],
                                           to=onnx.TensorProto.FLOAT, name=name + "__cast"))
    for node in reversed(casts):
        graph.node.insert(0, node)
    return len(casts)


def _expand_fp16(proto: onnx.ModelProto) -> None:
    """Undo :func:`_store_exact_fp16` in place (float32 initializers, no Cast nodes).

    The int8 quantiser only quantises MatMul weights that are initializers.
    """
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    keep = []
    for node in graph.node:
        src = node.input[0] if node.op_type == "Cast" and node.input else ""
        if src.endswith("__fp16") and src in inits and node.output[0] + "__fp16" == src:
            arr = numpy_helper.to_array(inits[src]).astype(np.float32)
            inits[src].CopyFrom(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def export_graph(model: PFN, task: str, kind: str, path: str | Path,
                 metadata: dict[str, str]) -> Path:
    """Write one graph (``kind`` "full", "fit" or "predict") of ``model`` to ``path``."""
    check_task(task)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = graph_spec(model.eval(), task, kind)
    shapes = dynamic_shapes(spec, model.cfg.max_features)
    # The exporter logs a warning per optional torchvision op it cannot register; not ours.
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(spec.module, spec.inputs, dynamo=True,
                                     input_names=spec.input_names,
                                     output_names=spec.output_names,
                                     dynamic_shapes=shapes,
                                     opset_version=OPSET, optimize=True, verbose=False)
    finally:
        onnx_logger.setLevel(level)
    proto = prog.model_proto
    # Readable symbolic dimension names for tools that show them.
    for v in list(proto.graph.input) + list(proto.graph.output):
        for dim, name in zip(v.type.tensor_type.shape.dim, spec.axes[v.name], strict=True):
            if not dim.HasField("dim_value"):
                dim.dim_param = name
    _strip_debug_info(proto)
    _store_exact_fp16(proto)
    _set_metadata(proto, {**metadata, "task": task, "graph": kind})
    onnx.checker.check_model(proto, full_check=True)
    _save_atomic(proto, path)
    return path


def _strip_debug_info(proto: onnx.ModelProto) -> None:
    """Drop the exporter's debugging annotations, in place, so an export is reproducible.

    The dynamo exporter annotates every node, value and the graph with doc strings and
    metadata: Python stack traces with the absolute paths of the exporting checkout, FX
    node text, module hierarchies. None of it affects computation, but it made two exports
    of the same weights from two checkouts differ in bytes.
    """
    def strip(graph) -> None:  # a GraphProto or FunctionProto, and their subgraphs
        graph.doc_string = ""
        del graph.metadata_props[:]
        for node in graph.node:
            node.doc_string = ""
            del node.metadata_props[:]
            for attr in node.attribute:
                for sub in (attr.g, *attr.graphs) if attr.HasField("g") else attr.graphs:
                    strip(sub)
        for value in (*getattr(graph, "input", ()), *getattr(graph, "output", ()),
                      *getattr(graph, "value_info", ()), *getattr(graph, "initializer", ())):
            if not isinstance(value, str):  # a FunctionProto's inputs are names
                value.doc_string = ""
                del value.metadata_props[:]

    for graph in (proto.graph, *proto.functions):
        strip(graph)
    proto.doc_string = ""


def _set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Replace the model's metadata_props by ``meta``, keys sorted (stable bytes)."""
    del proto.metadata_props[:]
    for key in sorted(meta):
        proto.metadata_props.add(key=key, value=meta[key])


def _seal(proto: onnx.ModelProto) -> bytes:
    """The serialised model with ``content_sha256`` in its metadata: the SHA-256 of the
    model serialised without that entry, which readers recompute by cutting the entry out
    of the file (:func:`pfn.artifacts.read_graph`)."""
    keep = [p for p in proto.metadata_props if p.key != CONTENT_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    digest = hashlib.sha256(proto.SerializeToString()).hexdigest()
    proto.metadata_props.add(key=CONTENT_KEY, value=digest)
    data = proto.SerializeToString()
    if graph_content_sha256(data) != digest:  # the reader's definition, checked once here
        raise RuntimeError("sealing the graph: the serialisation is not canonical")
    return data


def _save_atomic(proto: onnx.ModelProto, path: Path) -> None:
    """Seal ``proto`` and write it to ``path`` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(_seal(proto))
    tmp.replace(path)


def export_onnx(checkpoint: str | Path, out_prefix: str | Path,
                tasks: tuple[str, ...] = TASKS, kinds: tuple[str, ...] = KINDS
                ) -> dict[str, Path]:
    """Export a model file to ``<out_prefix>.<task>[.<kind>].onnx``; return the paths.

    checkpoint: a model file written by :func:`pfn.checkpoint.save_model`. Keys of the
    result: ``"classification"`` (full graph), ``"classification.fit"``, and so on. The
    metadata names the weights by content (``weights_sha256``, the weights fingerprint, and
    ``source_sha256``, the file's hash), not by file name or time, so exporting the same
    weights again gives the same bytes; every graph is sealed (``content_sha256``).
    """
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    cfg = model.cfg
    metadata = {"config": cfg.to_json(), "max_classes": str(cfg.max_classes),
                "max_features": str(cfg.max_features), "n_buckets": str(cfg.n_buckets),
                "export_version": EXPORT_VERSION, "source_sha256": file_sha256(checkpoint),
                WEIGHTS_KEY: model.weights_fingerprint, "torch_version": torch.__version__}
    return {task if kind == "full" else f"{task}.{kind}":
            export_graph(model, task, kind, graph_path(out_prefix, task, kind), metadata)
            for task in tasks for kind in kinds}


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation of one exported graph (a smaller, optional variant).

    Weights of the MatMul/Gemm nodes are stored as int8 with per-tensor scales; activations
    are quantised on the fly at run time, so no calibration data is needed. Everything else
    (standardisation, attention softmax, the bar-distribution borders) stays float32. The
    metadata is kept and marked with ``quantization=int8-dynamic``, and the file sealed
    anew; the accuracy cost is measured by ``benchmarks/real_data.py --models
    ours,ours_int8`` (see the model card).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    expanded = dst.with_name(dst.name + ".fp32.tmp")
    proto = onnx.load(str(src))
    _expand_fp16(proto)
    onnx.save_model(proto, str(expanded))
    root = logging.getLogger()  # quantize_dynamic warns about pre-processing on the root
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(expanded), str(tmp), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        root.setLevel(level)
        expanded.unlink(missing_ok=True)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    _strip_debug_info(proto)
    _set_metadata(proto, {**read_metadata(src), "quantization": "int8-dynamic"})
    onnx.checker.check_model(proto)
    _save_atomic(proto, dst)
    return dst


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict (config stays a JSON string)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


__all__ = ["export_onnx", "export_graph", "quantize_int8", "read_metadata",
           "file_sha256", "EXPORT_VERSION"]
