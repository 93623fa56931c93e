"""Tabular prior-fitted network: model, pretraining job and scikit-learn estimators.

Importing ``pfn`` does not import torch: the estimators with ``engine="onnx"`` run where
torch is not installed. ``PFN`` and ``ModelConfig`` are loaded on first use.
"""

from __future__ import annotations

__all__ = ["PFN", "ModelConfig", "PFNClassifier", "PFNRegressor"]


def __getattr__(name: str):
    if name in ("PFN", "ModelConfig"):
        from pfn import model

        return getattr(model, name)
    if name in ("PFNClassifier", "PFNRegressor"):
        from pfn import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'pfn' has no attribute {name!r}")
