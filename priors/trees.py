"""Random axis-aligned piecewise-constant node functions (random oblivious decision trees).

Real tables are full of thresholds and interactions that smooth random MLPs rarely produce;
tree-structured SCM edges put them into the prior (cf. the tree-based SCMs of TabPFN v2).
An oblivious tree of depth D tests D (feature, threshold) pairs; the D bits index one of
2**D random leaf values, so each output is a piecewise-constant function with interactions.
"""

from __future__ import annotations

import torch


def random_tree_layer(
    h: torch.Tensor, width: torch.Tensor, depth: torch.Tensor, n_out: int, g: torch.Generator
) -> torch.Tensor:
    """Evaluate ``n_out`` random oblivious trees per dataset on parent units ``h``.

    h: (batch, rows, units) parent values; width: (batch,) used parent units per dataset;
    depth: (batch,) tree depth per dataset (>= 1). Returns (batch, rows, n_out) leaf values
    drawn from N(0, 1).
    """
    b, r, _ = h.shape
    d_max = int(depth.max())
    # Split features among each dataset's used units; thresholds at the value of a random row,
    # so every split actually separates the data.
    feat = (torch.rand(b, n_out, d_max, generator=g) * width.view(b, 1, 1)).long()
    row = torch.randint(0, r, (b, n_out, d_max), generator=g)
    flat = feat.view(b, 1, n_out * d_max).expand(b, r, n_out * d_max)
    vals = h.gather(2, flat).view(b, r, n_out, d_max)  # (b, r, n_out, D)
    thr = vals.gather(1, row.view(b, 1, n_out, d_max)).squeeze(1)  # (b, n_out, D)
    bits = (vals > thr.unsqueeze(1)).long()
    level_on = torch.arange(d_max).view(1, 1, 1, d_max) < depth.view(b, 1, 1, 1)
    weights = (2 ** torch.arange(d_max)).view(1, 1, 1, d_max)
    leaf_idx = (bits * weights * level_on).sum(-1)  # (b, r, n_out)
    leaves = torch.randn(b, n_out, 2**d_max, generator=g)
    return leaves.gather(2, leaf_idx.transpose(1, 2)).transpose(1, 2)
