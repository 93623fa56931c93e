"""Random axis-aligned piecewise-constant node functions (random oblivious decision trees).

Real tables are full of thresholds and interactions that smooth random MLPs rarely produce;
tree-structured SCM edges put them into the prior (cf. the tree-based SCMs of TabPFN v2).
An oblivious tree of depth D tests D (feature, threshold) pairs; the D bits index one of
2**D random leaf values, so each output is a piecewise-constant function with interactions.
"""

from __future__ import annotations

import torch


def random_trees(
    h: torch.Tensor, width: torch.Tensor, depth: torch.Tensor, dataset: torch.Tensor,
    g: torch.Generator,
) -> torch.Tensor:
    """Evaluate one random oblivious tree per entry of ``dataset`` on that dataset's units.

    h: (batch, rows, units) parent values; width: (batch,) used parent units per dataset;
    depth: (batch,) tree depth per dataset (>= 1); dataset: (n,) int64, the dataset of each
    tree. Returns (n, rows) leaf values drawn from N(0, 1). Only the requested trees are
    built, so a caller that needs few of them pays for few.
    """
    n, r = dataset.numel(), h.shape[1]
    depth = depth[dataset]
    d_max = int(depth.max()) if n else 1
    # Split features among the dataset's used units; thresholds at the value of a random row.
    feat = (torch.rand(n, d_max, generator=g) * width[dataset].view(n, 1)).long()
    row = torch.randint(0, r, (n, d_max), generator=g)
    vals = h[dataset.view(n, 1), :, feat]  # (n, D, rows)
    thr = vals.gather(2, row.unsqueeze(-1))  # (n, D, 1)
    weights = (2 ** torch.arange(d_max)).view(1, d_max)
    weights = weights * (torch.arange(d_max).view(1, d_max) < depth.view(n, 1))  # (n, D)
    leaf_idx = ((vals > thr).long() * weights.unsqueeze(-1)).sum(1)  # (n, rows)
    # 2**depth leaf values per tree, stored flat: tree i owns leaves[start[i]:start[i] + size].
    size = 2**depth
    start = size.cumsum(0) - size
    leaves = torch.randn(int(size.sum()), generator=g)
    return leaves[start.view(n, 1) + leaf_idx]


def random_tree_layer(
    h: torch.Tensor, width: torch.Tensor, depth: torch.Tensor, n_out: int, g: torch.Generator
) -> torch.Tensor:
    """Evaluate ``n_out`` random oblivious trees per dataset on parent units ``h``.

    h: (batch, rows, units); width, depth: (batch,) as in :func:`random_trees`.
    Returns (batch, rows, n_out) leaf values drawn from N(0, 1).
    """
    b, r, _ = h.shape
    dataset = torch.arange(b).repeat_interleave(n_out)
    return random_trees(h, width, depth, dataset, g).view(b, n_out, r).transpose(1, 2)
