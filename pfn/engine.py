"""Inference engines: what runs the network for the estimators.

An engine takes arrays that :mod:`pfn.preprocessing` already prepared (one dataset per
ensemble member, batched on the first axis) and returns numpy arrays, so the estimators
never see torch or ONNX Runtime. The protocol:

- attributes ``max_features``, ``max_classes``, ``n_buckets``;
- ``fit(x_train (B, N, F) float32, y_train (B, N) float32, task) -> context``: everything
  about the training rows, computed once;
- ``predict(context, x_test (B, T, F) float32) -> dict``: ``{"probs": (B, T, max_classes)}``
  for classification, ``{"logits": (B, T, K), "borders": (B, K + 1)}`` for regression
  (borders in the units of ``y_train``).

``TorchEngine`` lives here; ``OnnxEngine`` in :mod:`export.runtime`, imported by name only
when asked for, so ``pfn`` never imports ``export`` (priors <- pfn <- export).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "default.safetensors"
DEFAULT_ONNX = {task: WEIGHTS_DIR / f"default.{task}.onnx"
                for task in ("classification", "regression")}
ENGINES = ("auto", "torch", "onnx")
TASKS = ("classification", "regression")


class Engine(Protocol):
    max_features: int
    max_classes: int
    n_buckets: int

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, task: str) -> Any: ...

    def predict(self, context: Any, x_test: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchEngine:
    """Runs :class:`pfn.model.PFN` with its key/value cache: fit once, predict many."""

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu") -> None:
        import torch  # noqa: F401  (imported here so pfn.estimators works without torch)

        from pfn.checkpoint import load_model

        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self.device = device
        self.model = load_model(self.model_path, device=device)
        cfg = self.model.cfg
        self.max_features, self.max_classes, self.n_buckets = (
            cfg.max_features, cfg.max_classes, cfg.n_buckets)

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, task: str) -> dict:
        import torch

        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        x = torch.as_tensor(np.ascontiguousarray(x_train, dtype=np.float32), device=self.device)
        y = torch.as_tensor(np.ascontiguousarray(y_train, dtype=np.float32), device=self.device)
        ctx = self.model.fit_context(x, y, task)
        if task == "regression":
            with torch.no_grad():
                ctx["borders_np"] = self.model.scaled_borders(y).double().cpu().numpy()
        return ctx

    def predict(self, context: dict, x_test: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = torch.as_tensor(np.ascontiguousarray(x_test, dtype=np.float32), device=self.device)
        logits = self.model.predict_context(context, x)
        if context["task"] == "classification":
            return {"probs": torch.softmax(logits.double(), -1).cpu().numpy()}
        return {"logits": logits.float().cpu().numpy(), "borders": context["borders_np"]}


def _onnx_available() -> bool:
    if not all(p.is_file() for p in DEFAULT_ONNX.values()):
        return False
    try:
        importlib.import_module("onnxruntime")
        importlib.import_module("export.runtime")
    except ImportError:
        return False
    return True


def _torch_available() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def resolve_engine_name(name: str, model_path: str | Path | None = None,
                        device: str = "cpu") -> str:
    """"auto" -> "onnx" (ONNX Runtime with the shipped graphs) where they can run, else "torch".

    ONNX Runtime is the default because the shipped graphs are the artifact a deployment
    runs, so notebooks and deployments compute the same numbers, and prediction then needs
    no torch at all. Both engines encode the training rows once in ``fit`` (ONNX Runtime
    through the fit/predict graph pair, torch through the model's key/value cache), and
    measured on 2 cores ONNX Runtime is as fast as torch or faster
    (``benchmarks/engine_latency.py``). With a ``model_path``:
    "onnx" for a ``.onnx`` graph (or an ONNX prefix), "torch" for ``.safetensors``. A
    device other than "cpu" (e.g. "cuda") asks for torch.
    """
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")
    if name != "auto":
        return name
    if str(device) != "cpu":
        return "torch"
    if model_path is not None:
        return "torch" if str(model_path).endswith(".safetensors") else "onnx"
    return "onnx" if _onnx_available() or not _torch_available() else "torch"


def get_engine(name: str = "auto", model_path: str | Path | None = None,
               device: str = "cpu") -> Engine:
    """A new engine: "torch", "onnx" (:class:`export.runtime.OnnxEngine`) or "auto"."""
    name = resolve_engine_name(name, model_path, device)
    if name == "torch":
        return TorchEngine(model_path, device=device)
    return importlib.import_module("export.runtime").OnnxEngine(model_path)
