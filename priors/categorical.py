"""Categorical variables with their own per-level effects, for the SCM and rule priors.

Cutting a continuous value into codes (``postprocess.make_categorical``) only yields
categories whose effect is monotone in a hidden value. Real categories (a colour, a board
square's piece, a product line) act through an arbitrary effect per level; here a level is
drawn per row and looked up in a random vector per level. Nominal levels get independent
vectors, so code order means nothing; ordinal ones get vectors that move monotonically
along the codes.
"""

from __future__ import annotations

import torch

from priors.base import Range


def draw_codes(levels: torch.Tensor, n_rows: int, g: torch.Generator,
               skew: float = 1.0) -> torch.Tensor:
    """Integer codes (batch, rows, vars) with 0 <= code < levels, level frequencies random.

    levels: (batch, vars) int64 >= 1. Frequencies are a softmax of Gaussian logits scaled by
    a per-variable spread in [0, skew] (balanced to skewed).
    """
    b, v = levels.shape
    l_max = int(levels.max())
    active = torch.arange(l_max).view(1, 1, -1) < levels.unsqueeze(-1)  # (b, v, L)
    spread = skew * torch.rand(b, v, 1, generator=g)
    logits = spread * torch.randn(b, v, l_max, generator=g)
    probs = torch.softmax(logits.masked_fill(~active, -float("inf")), dim=-1)
    cum = probs.cumsum(-1)
    cum[..., -1] = 1.0 + 1e-6  # last bucket catches rounding
    u = torch.rand(b, v, n_rows, generator=g)
    codes = torch.searchsorted(cum.contiguous(), u.contiguous())  # (b, v, rows)
    return codes.clamp(max=(levels - 1).clamp_min(0).unsqueeze(-1)).transpose(1, 2)


def draw_discrete(used: torch.Tensor, n_rows: int, p_all: float, fraction: Range,
                  levels: Range, g: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which columns of a table are discrete, their level counts and codes.

    used: (batch, vars) bool, the columns each dataset has. With probability ``p_all`` a
    dataset is all discrete, else each column is with a per-dataset probability drawn from
    ``fraction``. Returns the mask (batch, vars), levels (batch, vars) drawn from ``levels``
    and codes (batch, rows, vars) for every column (the caller keeps those of the mask).
    """
    b, v = used.shape
    every = torch.rand(b, 1, generator=g) < p_all
    frac = fraction.sample(b, g).view(b, 1)
    discrete = ((torch.rand(b, v, generator=g) < frac) | every) & used
    n_levels = levels.sample_int(b * v, g).view(b, v)
    return discrete, n_levels, draw_codes(n_levels, n_rows, g)


def level_effects(levels: torch.Tensor, ordinal: torch.Tensor, dim: int,
                  g: torch.Generator) -> torch.Tensor:
    """Random effect vectors (batch, vars, L_max, dim), unit variance per unit.

    Nominal variables: i.i.d. N(0, 1) per level. Ordinal ones (``ordinal`` (batch, vars)
    bool): a random direction times a monotone, standardised position of each level.
    """
    b, v = levels.shape
    l_max = int(levels.max())
    nominal = torch.randn(b, v, l_max, dim, generator=g)
    steps = torch.rand(b, v, l_max, generator=g) + 0.1
    steps[..., 0] = 0.0
    pos = steps.cumsum(-1)
    active = torch.arange(l_max).view(1, 1, -1) < levels.unsqueeze(-1)
    n = levels.clamp_min(1).unsqueeze(-1).float()
    mean = (pos * active).sum(-1, keepdim=True) / n
    std = (((pos - mean) ** 2 * active).sum(-1, keepdim=True) / n).sqrt().clamp_min(1e-6)
    pos = (pos - mean) / std
    direction = torch.randn(b, v, 1, dim, generator=g)
    ordered = pos.unsqueeze(-1) * direction
    return torch.where(ordinal.view(b, v, 1, 1), ordered, nominal)


def embed_codes(codes: torch.Tensor, effects: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """Sum of the effect vectors of each row's levels: (batch, rows, dim).

    codes: (batch, rows, vars); effects: (batch, vars, L_max, dim); on: (batch, vars) bool,
    the variables that exist in each dataset.
    """
    b, r, v = codes.shape
    l_max, dim = effects.shape[2], effects.shape[3]
    flat = effects.reshape(b, v * l_max, dim)
    idx = codes + (torch.arange(v) * l_max).view(1, 1, v)  # (b, r, v) into v * L_max
    onehot = torch.zeros(b, r, v * l_max).scatter_(2, idx, on.unsqueeze(1).float().expand(b, r, v))
    return torch.bmm(onehot, flat)
