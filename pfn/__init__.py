"""Tabular prior-fitted network: model, pretraining job and scikit-learn estimators.

Importing ``pfn`` does not import torch: the estimators with ``engine="onnx"`` run where
torch is not installed. ``PFN`` and ``ModelConfig`` (torch) are loaded on first use.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

__all__ = ["PFN", "ModelConfig", "PFNClassifier", "PFNRegressor", "BarDistribution",
           "__version__"]

DISTRIBUTION = "tabpfn-lite"


def pyproject() -> dict:
    """The checkout's ``pyproject.toml`` as a dict; {} for an installed wheel (none beside)."""
    path = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _version() -> str:
    """The installed distribution's version, else the checkout's pyproject version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return pyproject().get("project", {}).get("version", "unknown")


__version__ = _version()


def __getattr__(name: str):
    if name in ("PFN", "ModelConfig"):
        from pfn import model

        return getattr(model, name)
    if name in ("PFNClassifier", "PFNRegressor"):
        from pfn import estimators

        return getattr(estimators, name)
    if name == "BarDistribution":
        from pfn.bar_distribution import BarDistribution

        return BarDistribution
    raise AttributeError(f"module 'pfn' has no attribute {name!r}")
