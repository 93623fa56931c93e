"""Inference engines: what runs the network for the estimators (protocol in ``base``).

``onnx_engine`` (ONNX Runtime, torch-free, the default) and ``torch_engine`` (PyTorch) are
imported only when asked for, so importing this package loads neither runtime.
"""

from pfn.engines.base import (
    ENGINES,
    Engine,
    get_engine,
    onnx_available,
    resolve_engine_name,
    shared_engine,
    shipped_model,
)

__all__ = ["ENGINES", "Engine", "get_engine", "onnx_available", "resolve_engine_name",
           "shared_engine", "shipped_model"]
