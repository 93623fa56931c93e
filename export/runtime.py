"""Deprecated: the ONNX Runtime engine moved to :mod:`pfn.engines.onnx_engine`.

``from export.runtime import OnnxEngine`` keeps working (with a DeprecationWarning) for code
written before the move; new code imports ``pfn.engines.onnx_engine.OnnxEngine``.
"""

from __future__ import annotations

import warnings

from pfn.engines import onnx_engine


def __getattr__(name: str):
    if name in ("OnnxEngine", "OnnxContext"):
        warnings.warn(f"export.runtime.{name} moved to pfn.engines.onnx_engine.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(onnx_engine, name)
    raise AttributeError(f"module 'export.runtime' has no attribute {name!r}")
