"""The PyTorch engine: :class:`pfn.model.PFN` with its key/value cache (fit once, predict many).

Needs the ``train`` extra (torch); the protocol is in :mod:`pfn.engines.base`. The model is
read with :func:`pfn.checkpoint.load_model`, which refuses damaged weights files, and the
engine keeps the file's fingerprint (``weights_fingerprint``). Inference holds no state
between calls (the cache lives in the context), so threads may share an engine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from pfn.artifacts import DEFAULT_WEIGHTS, check_task
from pfn.engines.base import check_context_arrays
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
        self.weights_fingerprint: str = self.model.weights_fingerprint
        cfg = self.model.cfg
        self.max_features, self.max_classes, self.n_buckets, self.n_heads = (
            cfg.max_features, cfg.max_classes, cfg.n_buckets, cfg.n_heads)

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

    def save_context(self, context: dict) -> dict[str, np.ndarray]:
        """The cache as numpy arrays named like the ONNX fit graph's outputs (the portable
        format: ``x_mean``, ``x_std``, ``k0``, ``v0``, ..., ``num_classes`` | ``borders``)."""
        out = {"x_mean": context["mean"], "x_std": context["std"]}
        for i, (k, v) in enumerate(context["kv"]):
            out[f"k{i}"], out[f"v{i}"] = k, v
        if context["task"] == "classification":
            out["num_classes"] = context["num_classes"]
        arrays = {name: t.detach().cpu().numpy() for name, t in out.items()}
        if context["task"] == "regression":
            arrays["borders"] = context["borders_np"]
        return arrays

    def load_context(self, arrays: dict[str, np.ndarray], task: str) -> dict:
        """A context from :meth:`save_context`'s arrays (of this engine or the ONNX one)."""
        import torch

        check_task(task)
        n_layers = len(self.model.blocks)
        need = ["x_mean", "x_std", *(f"{kind}{i}" for i in range(n_layers) for kind in "kv"),
                "num_classes" if task == "classification" else "borders"]
        check_context_arrays(arrays, need)

        def tensor(name: str, dtype=np.float32):
            return torch.as_tensor(np.array(arrays[name], dtype=dtype), device=self.device)

        ctx = {"kv": [(tensor(f"k{i}"), tensor(f"v{i}")) for i in range(n_layers)],
               "mean": tensor("x_mean"), "std": tensor("x_std"), "task": task,
               "n_features": arrays["x_mean"].shape[-1], "num_classes": None}
        if task == "classification":
            ctx["num_classes"] = tensor("num_classes", np.int64)
        else:
            ctx["borders_np"] = np.asarray(arrays["borders"], dtype=np.float64)
        return ctx
