"""The torch modules that become ONNX graphs, with their input and output names and shapes.

Three graphs per task (the trunk differs by the label embedding, the head by the task):

- ``full``: (x_train, y_train, x_test) -> probs, or logits + borders. One call, one file:
  the portable artifact for a runtime that predicts once per training set.
- ``fit``: (x_train, y_train) -> the training rows' feature ``x_mean``/``x_std``, each layer's
  keys and values ``k0, v0, k1, v1, ...``, and ``num_classes`` (classification) or
  ``borders`` (regression). The same cache as :meth:`pfn.model.PFN.fit_context`.
- ``predict``: (x_test, and the fit graph's outputs by name) -> probs or logits. Test rows
  attend only to training rows, so this equals the full graph, and one fit serves any
  number of predict calls ("fit once, predict many").

Shapes: B datasets, N training rows, T test rows, F used features, H heads,
D = d_model / H, C = max_classes, K = n_buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pfn.artifacts import KINDS
from pfn.model import PFN


def _num_features(x: torch.Tensor) -> torch.Tensor:
    """(B, R, F) -> (B,) float tensor filled with F.

    Passed to the model as ``num_features`` so that the sqrt(max_features / F) scaling is
    computed from tensors; the default path computes it with Python's ``math.sqrt`` on the
    symbolic F, which the exporter cannot translate. Same value (float32 rounding aside).
    """
    return torch.ones_like(x[:, 0, :]).sum(-1)


def kv_names(n_layers: int) -> list[str]:
    """``["k0", "v0", "k1", "v1", ...]``: the cache tensors, in the order the graphs use."""
    return [f"{kind}{i}" for i in range(n_layers) for kind in "kv"]


class FullGraph(nn.Module):
    """(x_train (B,N,F), y_train (B,N), x_test (B,T,F)) -> probs (B,T,C) or
    (logits (B,T,K), borders (B,K+1) in y's units)."""

    def __init__(self, model: PFN, task: str) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor):
        x = torch.cat([x_train, x_test], dim=1)  # (B, N+T, F)
        out = self.model(x, y_train, self.task, num_features=_num_features(x))
        if self.task == "classification":
            return out.softmax(-1)
        return out, self.model.scaled_borders(y_train)


class FitGraph(nn.Module):
    """(x_train, y_train) -> (x_mean, x_std, k0, v0, ..., num_classes | borders)."""

    def __init__(self, model: PFN, task: str) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x_train: torch.Tensor, y_train: torch.Tensor):
        ctx = self.model.fit_context(x_train, y_train, self.task,
                                     num_features=_num_features(x_train))
        kv = [t for pair in ctx["kv"] for t in pair]
        last = ctx["num_classes"] if self.task == "classification" \
            else self.model.scaled_borders(y_train)
        return (ctx["mean"], ctx["std"], *kv, last)


class PredictGraph(nn.Module):
    """(x_test, x_mean, x_std, k0, v0, ..., [num_classes]) -> probs (B,T,C) or logits (B,T,K).

    The cache arrives as ``*rest`` so one module serves any number of layers.
    """

    def __init__(self, model: PFN, task: str) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x_test: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                *rest: torch.Tensor):
        n_kv = 2 * len(self.model.blocks)
        kv = rest[:n_kv]
        ctx = {"kv": list(zip(kv[0::2], kv[1::2], strict=True)), "mean": mean, "std": std,
               "task": self.task, "n_features": x_test.shape[-1],
               "num_classes": rest[n_kv] if self.task == "classification" else None}
        out = self.model.predict_context(ctx, x_test, num_features=_num_features(x_test))
        return out.softmax(-1) if self.task == "classification" else out


@dataclass(frozen=True)
class GraphSpec:
    """A graph's module, example inputs, names, and the symbolic names of every axis."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    axes: dict[str, list[str]]  # name -> one symbol per axis ("1" = fixed)


def graph_spec(model: PFN, task: str, kind: str) -> GraphSpec:
    """Everything :func:`export.onnx.export_graph` needs to export one graph."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cfg = model.cfg
    # Sizes distinct from each other (and from 1) so the exporter cannot confuse the axes.
    g = torch.Generator().manual_seed(0)
    f = min(7, cfg.max_features)
    x_train = torch.randn(2, 11, f, generator=g)
    x_test = torch.randn(2, 5, f, generator=g)
    y_train = torch.randint(0, 2, (2, 11), generator=g).float()
    names = kv_names(cfg.n_layers)
    fit_outputs = ["x_mean", "x_std", *names,
                   "num_classes" if task == "classification" else "borders"]
    head = ["probs"] if task == "classification" else ["logits"]
    axes = {"x_train": ["B", "N", "F"], "y_train": ["B", "N"], "x_test": ["B", "T", "F"],
            "x_mean": ["B", "1", "F"], "x_std": ["B", "1", "F"], "num_classes": ["B"],
            "probs": ["B", "T", "C"], "logits": ["B", "T", "K"], "borders": ["B", "K1"],
            **{name: ["B", "H", "N", "D"] for name in names}}
    if kind == "full":
        return GraphSpec(FullGraph(model, task), (x_train, y_train, x_test),
                         ["x_train", "y_train", "x_test"],
                         head + ([] if task == "classification" else ["borders"]), axes)
    if kind == "fit":
        return GraphSpec(FitGraph(model, task), (x_train, y_train), ["x_train", "y_train"],
                         fit_outputs, axes)
    # The predict graph takes the fit graph's outputs by name, all but the borders.
    with torch.no_grad():
        cache = dict(zip(fit_outputs, FitGraph(model, task)(x_train, y_train), strict=True))
    cache.pop("borders", None)
    return GraphSpec(PredictGraph(model, task), (x_test, *cache.values()),
                     ["x_test", *cache], head, axes)


def dynamic_shapes(spec: GraphSpec, max_features: int) -> tuple:
    """torch.export dynamic dimensions for the spec's inputs (one Dim per symbol), shaped
    like the module's ``forward`` signature (the predict graph's cache is one ``*rest``)."""
    dims = {"B": torch.export.Dim("batch"), "N": torch.export.Dim("n_train", min=2),
            "T": torch.export.Dim("n_test"),
            "F": torch.export.Dim("n_features", min=1, max=max_features)}
    shapes = tuple({i: dims[s] for i, s in enumerate(spec.axes[name]) if s in dims}
                   for name in spec.input_names)
    if isinstance(spec.module, PredictGraph):
        return (*shapes[:3], shapes[3:])
    return shapes


__all__ = ["FullGraph", "FitGraph", "PredictGraph", "GraphSpec", "graph_spec", "kv_names"]
