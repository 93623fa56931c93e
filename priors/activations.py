"""Elementwise nonlinearities for random networks, selectable per dataset in one batched call."""

from __future__ import annotations

import torch

ACTIVATIONS: dict[str, callable] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda h: h,
    "sigmoid": lambda h: 2.0 * torch.sigmoid(h) - 1.0,
    "sine": torch.sin,
    "abs": torch.abs,
    "step": lambda h: (h > 0).to(h.dtype),
    "square": lambda h: h * h,
    "leaky_relu": lambda h: torch.nn.functional.leaky_relu(h, 0.1),
}


def check_activations(names: tuple[str, ...] | list[str]) -> None:
    if not names:
        raise ValueError("activations must name at least one activation")
    unknown = [n for n in names if n not in ACTIVATIONS]
    if unknown:
        raise ValueError(f"activations: unknown {unknown}; allowed: {sorted(ACTIVATIONS)}")


def apply_activation(h: torch.Tensor, choice: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    """Apply activation ``names[choice[d]]`` to dataset d.

    h: (batch, rows, units); choice: (batch,) int64 indices into ``names``.
    Every candidate is computed on the whole batch and one is selected per dataset; with a
    handful of candidates this costs less than a Python loop over datasets.
    """
    out = torch.empty_like(h)
    for i, name in enumerate(names):
        sel = choice == i
        if bool(sel.any()):
            out[sel] = ACTIVATIONS[name](h[sel])
    return out
