"""Names of the shipped artifacts, defined once: the weights folder, tasks and graph files.

The exporter (``export/``) writes graphs under these names and the ONNX Runtime engine
(:mod:`pfn.engines.onnx_engine`) reads them, so both import them from here. A model on disk
is a *prefix*: ``PREFIX.safetensors`` holds the weights, ``PREFIX.TASK.onnx`` the full graph
of a task and ``PREFIX.TASK.fit.onnx`` / ``PREFIX.TASK.predict.onnx`` its fit/predict pair
(``export/FORMAT.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_PREFIX = WEIGHTS_DIR / "default"
DEFAULT_WEIGHTS = DEFAULT_PREFIX.with_name("default.safetensors")
TASKS = ("classification", "regression")
KINDS = ("full", "fit", "predict")  # graphs per task (export/graphs.py builds them)


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`, else a ValueError naming it."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task


def graph_suffix(task: str, kind: str = "full") -> str:
    """``.TASK.onnx`` for the full graph, ``.TASK.KIND.onnx`` for "fit" and "predict"."""
    check_task(task)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f".{task}.onnx" if kind == "full" else f".{task}.{kind}.onnx"


def graph_path(prefix: str | os.PathLike, task: str, kind: str = "full") -> Path:
    """``PREFIX.TASK.onnx`` (the full graph) or ``PREFIX.TASK.KIND.onnx`` (fit, predict)."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + graph_suffix(task, kind))


def onnx_prefix(path: str | os.PathLike) -> Path:
    """The prefix of a graph path (``x.classification.fit.onnx`` -> ``x``); a prefix as is."""
    path = Path(path)
    for task in TASKS:
        for kind in KINDS:
            suffix = graph_suffix(task, kind)
            if path.name.endswith(suffix):
                return path.with_name(path.name[: -len(suffix)])
    return path


def in_weights_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in the package's weights folder (only ``pfn ship`` writes there)."""
    return Path(path).resolve().parent.is_relative_to(WEIGHTS_DIR)


__all__ = ["WEIGHTS_DIR", "DEFAULT_PREFIX", "DEFAULT_WEIGHTS", "TASKS", "KINDS", "check_task",
           "graph_suffix", "graph_path", "onnx_prefix", "in_weights_dir"]
