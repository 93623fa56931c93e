"""Rows to tokens with capacity that grows with the number of features.

A single linear map squeezes up to ``max_features`` values into one ``d_model`` vector and
leaves every non-linear use of a feature (a threshold on a price, a category's own effect)
to the in-context transformer. Two encoders spend more on each feature:

- :class:`FeatureSumEncoder` (``arch="feature"``): every cell passes through a non-linear
  basis whose slopes and offsets are the feature's own; the row token is the scaled sum
  over features (an additive, GAM-like embedding). Cost per cell is a few elementwise ops.
- :class:`CellRowEncoder` (``arch="cell"``): every cell is a token and a small transformer
attends across the features of each row (TabICL's row-wise interaction, Qu et al., 2025);
``cell_cls`` learned [CLS] tokens collect the row, and their outputs, concatenated and
projected, form the row token that the in-context transformer sees.

Features are exchangeable, so attention alone could not tell two columns with equal values
apart. Each feature therefore adds a fixed random identity vector (as in TabPFN v2,
Hollmann et al., 2025): during pretraining each dataset draws its own random assignment of
identities to columns, so no identity means anything by itself and the model learns only
that different columns differ; at prediction the first F identities are used, and ensemble
members that permute columns see other assignments.

Shapes: B datasets, R rows, F features, C = cell_cls, D = cell_dim, E = d_model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from pfn.layers import Block

if TYPE_CHECKING:
    from pfn.model import ModelConfig

IDENTITY_SEED = 20251125  # fixed: the identities are part of the architecture, not learned


def feature_identities(bank: torch.Tensor, b: int, f: int, training: bool) -> torch.Tensor:
    """Identities (B, F, D) for F columns from a fixed bank (max_features, D): a random
    assignment per dataset while training, the first F rows (as (1, F, D)) otherwise."""
    if training:
        order = torch.rand(b, bank.shape[0], device=bank.device).argsort(1)[:, :f]
        return bank[order]
    return bank[:f].unsqueeze(0)


def _identity_bank(cfg: ModelConfig, d: int) -> torch.Tensor:
    return torch.randn(cfg.max_features, d, generator=torch.Generator().manual_seed(
        IDENTITY_SEED))


def _used(num_features: torch.Tensor | None, b: int, f: int, device) -> torch.Tensor | None:
    """(B, F) bool of used columns, or None without ``num_features`` (all used). No
    data-dependent shortcut for an all-True mask: the exported graphs pass num_features."""
    if num_features is None:
        return None
    return torch.arange(f, device=device).unsqueeze(0) < num_features.view(-1, 1)


class FeatureSumEncoder(nn.Module):
    """(z, missing) (B, R, F) -> row tokens (B, R, E) as a sum of per-feature embeddings.

    Cell (i, j) becomes ``gelu(z_ij * s_j + o_j)`` (missing cells: a learned vector of the
    feature's own), where the slope and offset vectors s_j, o_j (width ``cell_ff``) are
    linear in the feature's random identity; the row is ``W * sum_j(...) / sqrt(F)``. Each
    unit of the basis is a smooth step at its own, feature-specific threshold, so sharp
    thresholds on single columns are cheap to express.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h, d = cfg.cell_ff, cfg.cell_dim
        self.register_buffer("identities", _identity_bank(cfg, d))
        self.slope = nn.Linear(d, h)
        self.offset = nn.Linear(d, h)
        self.missing = nn.Linear(d, h)
        nn.init.normal_(self.slope.weight, std=1.0 / d**0.5)
        nn.init.normal_(self.offset.weight, std=1.0 / d**0.5)
        self.out = nn.Linear(h, cfg.d_model)

    def forward(self, z: torch.Tensor, missing: torch.Tensor,
                num_features: torch.Tensor | None = None) -> torch.Tensor:
        b, r, f = z.shape
        ids = feature_identities(self.identities, b, f, self.training)  # (B|1, F, D)
        s, o, m = (lin(ids).unsqueeze(1) for lin in (self.slope, self.offset, self.missing))
        cell = torch.nn.functional.gelu(z.unsqueeze(-1) * s + o)  # (B, R, F, H)
        miss = missing.unsqueeze(-1)
        cell = cell * (1 - miss) + m * miss
        used = _used(num_features, b, f, z.device)
        if used is None:
            count = torch.ones_like(z[:, :1, :1]) * f
        else:
            cell = cell * used.view(b, 1, f, 1).to(cell.dtype)
            count = num_features.clamp_min(1).to(z.dtype).view(b, 1, 1)
        return self.out(cell.sum(2) / count.sqrt())


class CellRowEncoder(nn.Module):
    """(z, missing) (B, R, F) -> row tokens (B, R, E)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.cell_dim
        self.n_cls = cfg.cell_cls
        self.value = nn.Sequential(nn.Linear(2, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.register_buffer("identities", _identity_bank(cfg, d))
        self.identity_proj = nn.Linear(d, d, bias=False)
        self.cls = nn.Parameter(0.02 * torch.randn(cfg.cell_cls, d))
        self.blocks = nn.ModuleList(Block(d, cfg.cell_heads, cfg.cell_ff, cfg.dropout)
                                    for _ in range(cfg.cell_layers))
        self.out = nn.Sequential(nn.LayerNorm(cfg.cell_cls * d),
                                 nn.Linear(cfg.cell_cls * d, cfg.d_model))

    def forward(self, z: torch.Tensor, missing: torch.Tensor,
                num_features: torch.Tensor | None = None) -> torch.Tensor:
        """z, missing: (B, R, F) standardised values and 0/1 flags. num_features: (B,) used
        columns of zero-padded pretraining batches (padding is masked out of attention);
        None when every column is used (prediction)."""
        b, r, f = z.shape
        tok = self.value(torch.stack([z, missing], dim=-1))  # (B, R, F, D)
        ids = feature_identities(self.identities, b, f, self.training)
        tok = tok + self.identity_proj(ids).unsqueeze(1)
        d = tok.shape[-1]
        tok = tok.reshape(b * r, f, d)
        h = torch.cat([self.cls.unsqueeze(0).expand(b * r, -1, -1), tok], dim=1)  # (BR, C+F, D)
        mask = None
        used = _used(num_features, b, f, z.device)
        if used is not None:
            keep = torch.cat([used.new_ones(b, self.n_cls), used], dim=1)  # (B, C+F)
            mask = keep.unsqueeze(1).expand(-1, r, -1).reshape(b * r, 1, 1, keep.shape[1])
        for block in self.blocks:
            k, v = block.keys_values(h)
            h = block.attend(h, k, v, mask)
        return self.out(h[:, : self.n_cls].reshape(b, r, self.n_cls * d))
