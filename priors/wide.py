"""Wide tables: pad a dataset's informative columns with redundant and irrelevant ones.

Real wide tables (sensor panels, questionnaires, spectra) have many more columns than the
target depends on: noisy copies and linear mixes of informative columns, and columns that
carry nothing. Any prior's features can be widened this way, so the model learns to pick the
few useful columns out of up to ``max_features`` whatever family the signal comes from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # only for annotations: postprocess imports this module
    from priors.postprocess import PostprocessConfig

MAX_SOURCES = 3  # informative columns mixed into one redundant column


def widen(
    x: torch.Tensor, num_features: torch.Tensor, categorical: torch.Tensor, n_columns: int,
    cfg: PostprocessConfig, g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """With probability ``p_wide`` per dataset, add columns up to a width from ``wide_features``.

    x: (batch, rows, d) with the first ``num_features`` columns used; categorical: (batch, d)
    columns already holding integer codes. An added column is redundant (with probability
    ``redundant_fraction``, drawn per dataset): a random mix of 1..3 used columns plus noise of
    random size; or irrelevant: independent noise, or uniform codes (a categorical column) with
    the probability that an existing column is categorical. Columns of a widened dataset are
    then shuffled so informative ones have no fixed place. Returns x, num_features, categorical
    with width ``num_features.max()`` (at most ``n_columns``).
    """
    b, r, d = x.shape
    wide = torch.rand(b, generator=g) < cfg.p_wide
    target = cfg.wide_features.sample_int(b, g).clamp(max=n_columns)
    new_nf = torch.where(wide, torch.maximum(num_features, target), num_features)
    w = int(new_nf.max())
    if w <= d and not bool((new_nf > num_features).any()):
        return x, num_features, categorical
    w = max(w, d)
    col = torch.arange(w).view(1, w)
    added = (col >= num_features.view(b, 1)) & (col < new_nf.view(b, 1))  # (b, w)
    nf = num_features.view(b, 1).float()

    # Standardised sources, categorical codes included, so mixes have comparable scales.
    xs = x - x.mean(1, keepdim=True)
    xs = xs / xs.std(1, keepdim=True).clamp_min(1e-6) if r > 1 else xs
    src = (torch.rand(b, w, MAX_SOURCES, generator=g) * nf.unsqueeze(-1)).long()
    src = src.clamp(max=d - 1)
    n_src = torch.randint(1, MAX_SOURCES + 1, (b, w, 1), generator=g)
    coef = torch.randn(b, w, MAX_SOURCES, generator=g)
    coef = coef * (torch.arange(MAX_SOURCES).view(1, 1, -1) < n_src)
    coef = coef / coef.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    # (b, r, w): sum over sources of coef * source column, one gather per source slot.
    mix = sum(xs.gather(2, src[:, :, s].unsqueeze(1).expand(b, r, w)) * coef[:, :, s].unsqueeze(1)
              for s in range(MAX_SOURCES))
    mix = mix / mix.std(1, keepdim=True).clamp_min(1e-6)  # sources may partly cancel
    noise_size = torch.exp(torch.empty(b, 1, w).uniform_(-3.0, 0.5, generator=g))
    noise = torch.randn(b, r, w, generator=g)  # a column is redundant or noise, never both

    frac = cfg.redundant_fraction.sample(b, g).view(b, 1)
    is_red = torch.rand(b, w, generator=g) < frac
    cat_share = (categorical.float().sum(1, keepdim=True) / nf).clamp(0, 1)
    is_cat = ~is_red & (torch.rand(b, w, generator=g) < cat_share) & added
    fresh = torch.where(is_red.unsqueeze(1), mix + noise_size * noise, noise)
    if bool(is_cat.any()):
        levels = torch.randint(2, cfg.max_levels + 1, (b, 1, w), generator=g)
        codes = (torch.rand(b, r, w, generator=g) * levels).floor()
        fresh = torch.where(is_cat.unsqueeze(1), codes, fresh)
    x = torch.nn.functional.pad(x, (0, w - d)) if w > d else x
    cat = torch.nn.functional.pad(categorical, (0, w - d), value=False) if w > d else categorical
    x = torch.where(added.unsqueeze(1), fresh, x)
    cat = torch.where(added, is_cat, cat)

    # Shuffle the used columns of widened datasets (others keep their order).
    keys = torch.rand(b, w, generator=g) + (col >= new_nf.view(b, 1)).float() * 2.0
    keys = torch.where(wide.view(b, 1), keys, col.float().expand(b, w))
    perm = keys.argsort(1)
    x = x.gather(2, perm.unsqueeze(1).expand(b, r, w))
    return x, new_nf, cat.gather(1, perm)
