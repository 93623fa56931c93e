"""The engine protocol, and the choice of engine for the estimators.

An engine runs the network on arrays that :mod:`pfn.preprocessing` already prepared (one
dataset per ensemble member, batched on the first axis) and returns numpy arrays, so the
estimators never see torch or ONNX Runtime:

- attributes ``max_features``, ``max_classes``, ``n_buckets``;
- ``fit(x_train (B, N, F) float32, y_train (B, N) float32, task) -> context``: everything
  about the training rows, computed once;
- ``predict(context, x_test (B, T, F) float32) -> dict``: ``{"probs": (B, T, max_classes)}``
  for classification, ``{"logits": (B, T, K), "borders": (B, K + 1)}`` for regression
  (borders in the units of ``y_train``);
- ``weights_fingerprint``: which weights it runs (the content SHA-256 of the weights file,
  :func:`pfn.checkpoint.weights_fingerprint`), so a fitted estimator can refuse other ones;
- ``save_context(context) -> dict of arrays`` and ``load_context(arrays, task) -> context``:
  the cache in one portable format, named as the ONNX fit graph's outputs (``x_mean``,
  ``x_std``, ``k0``, ``v0``, ..., ``num_classes`` or ``borders``), which both engines read.

Two engines implement it: :class:`pfn.engines.onnx_engine.OnnxEngine` (ONNX Runtime, the
default, torch-free) and :class:`pfn.engines.torch_engine.TorchEngine` (PyTorch, needs the
``train`` extra). Each module is imported only when its engine is asked for.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pfn.artifacts import (
    TASKS,
    graph_path,
    graph_suffix,
    graph_weights,
    read_graph_metadata,
    shipped_prefix,
    weights_path,
)

ENGINES = ("auto", "torch", "onnx")


class Engine(Protocol):
    max_features: int
    max_classes: int
    n_buckets: int
    n_heads: int  # attention heads: what attention-score memory scales with
    weights_fingerprint: str | None

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, task: str) -> Any: ...

    def predict(self, context: Any, x_test: np.ndarray) -> dict[str, np.ndarray]: ...

    def save_context(self, context: Any) -> dict[str, np.ndarray]: ...

    def load_context(self, arrays: dict[str, np.ndarray], task: str) -> Any: ...


def check_context_arrays(arrays: dict[str, np.ndarray], names: list[str]) -> None:
    """Refuse a saved context that lacks one of ``names`` (a cache of another model)."""
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"the saved context lacks {missing} (it has {sorted(arrays)}): not "
                         "a cache of this model")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def onnx_available() -> bool:
    """Whether the shipped graphs and onnxruntime are there (then "auto" means "onnx")."""
    return _importable("onnxruntime") and all(graph_path(shipped_prefix(task), task).is_file()
                                              for task in TASKS)


def shipped_model(task: str, engine_name: str, fingerprint: str | None = None) -> Path:
    """What an estimator of ``task`` passes as ``model_path`` when the user gave none: the
    shipped model of that task (:data:`pfn.artifacts.SHIPPED_PREFIXES`), as the weights
    file for "torch" and as the graphs' prefix for "onnx".

    ``fingerprint``: a fitted estimator's. If the package still ships the weights it was
    fitted with under another prefix (the general model ``default`` stays when a task gets
    a specialist), that prefix: an estimator saved before its task's shipped model changed
    keeps predicting as it did, instead of being refused.
    """
    prefix = shipped_prefix(task)
    if fingerprint is not None and _shipped_fingerprint(prefix, task) != fingerprint:
        for other in sorted(prefix.parent.glob(f"*{graph_suffix(task)}")):
            candidate = other.with_name(other.name.removesuffix(graph_suffix(task)))
            if _shipped_fingerprint(candidate, task) == fingerprint:
                prefix = candidate
                break
    return weights_path(prefix) if engine_name == "torch" else prefix


@functools.lru_cache(maxsize=16)
def _shipped_fingerprint(prefix: Path, task: str) -> str | None:
    """The weights fingerprint of a shipped prefix's ``task`` graph (None without one)."""
    path = graph_path(prefix, task)
    return graph_weights(read_graph_metadata(path)) if path.is_file() else None


def resolve_engine_name(name: str, model_path: str | os.PathLike | None = None,
                        device: str = "cpu") -> str:
    """"auto" -> "onnx" (ONNX Runtime with the shipped graphs) where they can run, else "torch".

    ONNX Runtime is the default because the shipped graphs are the artifact a deployment
    runs, so notebooks and deployments compute the same numbers, and prediction then needs
    no torch at all. Both engines encode the training rows once in ``fit``; their relative
    speed is measured by ``benchmarks/engine_latency.py``. With a ``model_path``: "onnx" for
    a ``.onnx`` graph (or an ONNX prefix), "torch" for ``.safetensors``. A device other than
    "cpu" (e.g. "cuda") asks for torch.
    """
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")
    if name != "auto":
        return name
    if str(device) != "cpu":
        return "torch"
    if model_path is not None:
        return "torch" if str(model_path).endswith(".safetensors") else "onnx"
    return "onnx" if onnx_available() or not _importable("torch") else "torch"


def get_engine(name: str = "auto", model_path: str | os.PathLike | None = None,
               device: str = "cpu", threads: int | None = None) -> Engine:
    """A new engine: "torch", "onnx" or "auto" (see :func:`resolve_engine_name`).

    ``threads``: threads per call of either engine (None: all cores).

    Without torch, "torch" (and so any device other than "cpu") raises
    :class:`pfn.extras.MissingDependencyError` naming the extra to install.
    """
    name = resolve_engine_name(name, model_path, device)
    if name == "torch":
        from pfn.engines.torch_engine import TorchEngine

        return TorchEngine(model_path, device=device, threads=threads)
    from pfn.engines.onnx_engine import OnnxEngine

    return OnnxEngine(model_path, intra_op_threads=threads)


_SHARED: dict[tuple, Engine] = {}  # the 4 used last, oldest first
_SHARED_LOCK = threading.Lock()


def shared_engine(name: str, model_path: str | None, device: str,
                  n_jobs: int | None = None) -> Engine:
    """The engine of these settings, shared by every estimator that asks for it. Engines
    are stateless between calls (contexts live in the estimators), so one per (name,
    model_path, device, n_jobs) serves all, created once even when threads ask at once."""
    key = (name, model_path, device, n_jobs)
    with _SHARED_LOCK:
        engine = _SHARED.pop(key, None)
        if engine is None:
            engine = get_engine(name, model_path, device, n_jobs)  # threads: n_jobs
        _SHARED[key] = engine
        while len(_SHARED) > 4:
            del _SHARED[next(iter(_SHARED))]
        return engine
