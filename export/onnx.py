"""Checkpoint -> ONNX: one graph per task, taking raw float features and training labels.

The graphs contain everything that depends on the training rows (standardisation, NaN
handling, outlier squashing, feature-count scaling, target scaling), because all of it lives
inside :meth:`pfn.model.PFN.forward`. What stays outside is listed in ``export/FORMAT.md``.

Shapes: B datasets, N training rows, T test rows, F used features (1 <= F <= max_features),
K regression buckets, C = max_classes.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from pfn.checkpoint import load_model
from pfn.model import PFN

EXPORT_VERSION = "1"
OPSET = 18
TASKS = ("classification", "regression")


def _num_features(x: torch.Tensor) -> torch.Tensor:
    """(B, R, F) -> (B,) float tensor filled with F.

    Passed to the model as ``num_features`` so that the sqrt(max_features / F) scaling is
    computed from tensors; the default path computes it with Python's ``math.sqrt`` on the
    symbolic F, which the exporter cannot translate. Same value (float32 rounding aside).
    """
    return torch.ones_like(x[:, 0, :]).sum(-1)


class ClassificationGraph(nn.Module):
    """(x_train (B,N,F), y_train (B,N), x_test (B,T,F)) -> probs (B,T,C)."""

    def __init__(self, model: PFN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor
                ) -> torch.Tensor:
        x = torch.cat([x_train, x_test], dim=1)  # (B, N+T, F)
        return self.model(x, y_train, "classification",
                          num_features=_num_features(x)).softmax(-1)


class RegressionGraph(nn.Module):
    """(x_train, y_train, x_test) -> logits (B,T,K) over borders (B,K+1) in y's units."""

    def __init__(self, model: PFN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([x_train, x_test], dim=1)
        logits = self.model(x, y_train, "regression", num_features=_num_features(x))
        return logits, self.model.scaled_borders(y_train)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _example_inputs(model: PFN) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Sizes distinct from each other (and from 1) so the exporter cannot confuse the axes.
    g = torch.Generator().manual_seed(0)
    f = min(7, model.cfg.max_features)
    x_train = torch.randn(2, 11, f, generator=g)
    x_test = torch.randn(2, 5, f, generator=g)
    y_train = torch.randint(0, 2, (2, 11), generator=g).float()
    return x_train, y_train, x_test


def export_task(model: PFN, task: str, path: str | Path, metadata: dict[str, str]) -> Path:
    """Write the ``task`` graph of ``model`` to ``path`` and return it."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    wrapper = ClassificationGraph(model) if task == "classification" else RegressionGraph(model)
    outputs = ["probs"] if task == "classification" else ["logits", "borders"]
    b = torch.export.Dim("batch")
    n = torch.export.Dim("n_train", min=2)
    t = torch.export.Dim("n_test")
    f = torch.export.Dim("n_features", min=1, max=model.cfg.max_features)
    shapes = {"x_train": {0: b, 1: n, 2: f}, "y_train": {0: b, 1: n},
              "x_test": {0: b, 1: t, 2: f}}
    # The exporter logs a warning per optional torchvision op it cannot register; not ours.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(wrapper, _example_inputs(model), dynamo=True,
                                 input_names=["x_train", "y_train", "x_test"],
                                 output_names=outputs, dynamic_shapes=shapes,
                                 opset_version=OPSET, optimize=True, verbose=False)
    proto = prog.model_proto
    # Readable symbolic dimension names for tools that show them.
    names = {"x_train": ["B", "N", "F"], "y_train": ["B", "N"], "x_test": ["B", "T", "F"],
             "probs": ["B", "T", "C"], "logits": ["B", "T", "K"], "borders": ["B", "K1"]}
    for v in list(proto.graph.input) + list(proto.graph.output):
        for dim, name in zip(v.type.tensor_type.shape.dim, names[v.name], strict=True):
            if not dim.HasField("dim_value"):
                dim.dim_param = name
    meta = {**metadata, "task": task}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(path)
    return path


def export_onnx(checkpoint: str | Path, out_prefix: str | Path,
                tasks: tuple[str, ...] = TASKS) -> dict[str, Path]:
    """Export a model file to ``<out_prefix>.<task>.onnx`` for each task; return the paths.

    checkpoint: a model file written by :func:`pfn.checkpoint.save_model`.
    """
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    cfg = model.cfg
    metadata = {"config": cfg.to_json(), "max_classes": str(cfg.max_classes),
                "max_features": str(cfg.max_features), "n_buckets": str(cfg.n_buckets),
                "export_version": EXPORT_VERSION, "source_sha256": file_sha256(checkpoint),
                "source_file": checkpoint.name, "torch_version": torch.__version__}
    out_prefix = str(out_prefix)
    return {task: export_task(model, task, f"{out_prefix}.{task}.onnx", metadata)
            for task in tasks}


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation of one exported graph (a smaller, optional variant).

    Weights of the MatMul/Gemm nodes are stored as int8 with per-tensor scales; activations
    are quantised on the fly at run time, so no calibration data is needed. Everything else
    (standardisation, attention softmax, the bar-distribution borders) stays float32. The
    metadata is kept and marked with ``quantization=int8-dynamic``; the accuracy cost is
    measured by ``benchmarks/real_data.py --models ours,ours_int8`` (see the model card).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    root = logging.getLogger()  # quantize_dynamic warns about pre-processing on the root
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        root.setLevel(level)
    proto = onnx.load(str(tmp))
    meta = {**read_metadata(src), "quantization": "int8-dynamic"}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(tmp))
    tmp.replace(dst)
    return dst


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict (config stays a JSON string)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


__all__ = ["export_onnx", "export_task", "quantize_int8", "read_metadata", "file_sha256",
           "EXPORT_VERSION"]
