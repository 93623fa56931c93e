"""The PyTorch engine: :class:`pfn.model.PFN` with its key/value cache (fit once, predict many).

Needs the ``train`` extra (torch); the protocol is in :mod:`pfn.engines.base`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from pfn.artifacts import DEFAULT_WEIGHTS, check_task
from pfn.extras import require


class TorchEngine:
    """Runs the weights of a ``.safetensors`` file (default: the shipped model) in PyTorch."""

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu",
                 threads: int | None = None) -> None:
        what = "engine='torch'" if str(device) == "cpu" else f"device={device!r}"
        require("torch", what=what)
        from pfn.checkpoint import load_model

        self.model_path = Path(model_path) if model_path is not None else DEFAULT_WEIGHTS
        self.device = device
        self.threads = threads  # torch's threads during fit/predict; None: leave as set
        self.model = load_model(self.model_path, device=device)
        cfg = self.model.cfg
        self.max_features, self.max_classes, self.n_buckets = (
            cfg.max_features, cfg.max_classes, cfg.n_buckets)

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, task: str) -> dict:
        import torch

        check_task(task)
        x = torch.as_tensor(np.ascontiguousarray(x_train, dtype=np.float32), device=self.device)
        y = torch.as_tensor(np.ascontiguousarray(y_train, dtype=np.float32), device=self.device)
        with self._threads():
            ctx = self.model.fit_context(x, y, task)
        if task == "regression":
            with torch.no_grad():
                ctx["borders_np"] = self.model.scaled_borders(y).double().cpu().numpy()
        return ctx

    @contextlib.contextmanager
    def _threads(self):
        """torch's intra-op threads set to ``self.threads`` for one call, then restored."""
        import torch

        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def predict(self, context: dict, x_test: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = torch.as_tensor(np.ascontiguousarray(x_test, dtype=np.float32), device=self.device)
        with self._threads():
            logits = self.model.predict_context(context, x)
        if context["task"] == "classification":
            return {"probs": torch.softmax(logits.double(), -1).cpu().numpy()}
        return {"logits": logits.float().cpu().numpy(), "borders": context["borders_np"]}
