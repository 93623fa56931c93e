"""Export to ONNX (``export.onnx``, needs torch) and run it anywhere (``export.runtime``,
numpy + onnxruntime only). Names are imported lazily so ``import export.runtime`` never
pulls in torch."""

from __future__ import annotations

__all__ = ["export_onnx", "OnnxEngine"]


def __getattr__(name: str):
    if name == "export_onnx":
        from export.onnx import export_onnx

        return export_onnx
    if name == "OnnxEngine":
        from export.runtime import OnnxEngine

        return OnnxEngine
    raise AttributeError(f"module 'export' has no attribute {name!r}")
