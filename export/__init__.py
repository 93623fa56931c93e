"""Checkpoint -> ONNX conversion (``export.onnx``, needs the ``train`` extra), int8 variants
and ``pfn ship``. Running the graphs is :mod:`pfn.engines.onnx_engine`'s job; this package
imports ``pfn``, never the reverse."""

from __future__ import annotations

__all__ = ["export_onnx"]


def __getattr__(name: str):
    if name == "export_onnx":
        from export.onnx import export_onnx

        return export_onnx
    raise AttributeError(f"module 'export' has no attribute {name!r}")
