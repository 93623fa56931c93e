"""Fixtures shared across test modules."""

from onnx_cases import tiny  # noqa: F401  (session-scoped: the tiny model is exported once)
