"""Categorical columns shown one-hot, as the estimators show them to the network.

The estimators feed a categorical column of 3 to 16 levels as one indicator column per
level (``pfn.categorical``, the default encoding), because the network reads one-hot
columns better than codes in arbitrary order: on GLM-prior tables of 7 four-level columns
the shipped classifier trailed logistic regression by 0.010 ROC AUC with one-hot inputs and
by 0.021 with shuffled codes (``benchmarks/glm_gap.py``). Yet every pretraining dataset
showed its categorical columns as codes, so the network met groups of indicators, one set
per row, only at prediction time. With probability ``p_onehot`` per dataset this step
expands the categorical columns of 3 to ``max_levels`` levels the way the estimators do:
the indicators in the column's place, levels by decreasing training count (ties by first
appearance), NaN in every indicator of a cell that is missing or holds a level no training
row has, columns with the fewest levels first while the table stays within its width
(TabPFN, Hollmann et al. 2022, Sec. 4: a prior should produce the inputs the network will
be given). The rule is written here again, not imported, because ``priors`` may not import
``pfn`` and ``pfn.categorical`` must not import torch (the ONNX engine predicts without it);
``tests/test_priors_onehot.py`` checks that both give the same columns.
"""

from __future__ import annotations

import torch

# The estimators' limit (pfn.categorical.ONEHOT_MAX_LEVELS; priors do not import pfn).
MAX_LEVELS = 16


def _expand_one(x: torch.Tensor, cat: torch.Tensor, n_feat: int, n_train: int,
                width: int, max_levels: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One dataset: x (rows, width), cat (width,) -> expanded x, cat and num_features."""
    levels = []
    for j in range(n_feat):
        if not bool(cat[j]):
            levels.append(None)
            continue
        col = x[:n_train, j]
        seen = col[~torch.isnan(col)]
        values, inverse, counts = torch.unique(seen, return_inverse=True, return_counts=True)
        if not 3 <= values.numel() <= max_levels:
            levels.append(None)
            continue
        # the estimators' order (pfn.categorical.level_ranks): decreasing training count,
        # ties by first appearance
        first = torch.full_like(counts, seen.numel()).scatter_reduce(
            0, inverse, torch.arange(seen.numel()), reduce="amin")
        levels.append(values[torch.argsort(first - counts * (seen.numel() + 1))])
    room = width - n_feat
    expand = [False] * n_feat
    for j in sorted((j for j in range(n_feat) if levels[j] is not None),
                    key=lambda j: levels[j].numel()):
        if levels[j].numel() - 1 <= room:
            expand[j], room = True, room - (levels[j].numel() - 1)
    cols, flags = [], []
    for j in range(n_feat):
        if not expand[j]:
            cols.append(x[:, j:j + 1])
            flags.append(bool(cat[j]))
            continue
        hit = x[:, j:j + 1] == levels[j].view(1, -1)
        # missing, or a level no training row has (the estimators' unseen level): NaN
        known = hit.any(1, keepdim=True)
        cols.append(torch.where(known, hit.to(x.dtype), torch.full_like(hit, float("nan"),
                                                                           dtype=x.dtype)))
        flags += [True] * levels[j].numel()
    new = torch.cat(cols, 1)
    n_new = new.shape[1]
    out = torch.zeros_like(x)
    out[:, :n_new] = new
    out_cat = torch.zeros_like(cat)
    out_cat[:n_new] = torch.tensor(flags, dtype=torch.bool)
    return out, out_cat, n_new


def onehot_columns(x: torch.Tensor, num_features: torch.Tensor, cat: torch.Tensor,
                   n_train: int, p: float, g: torch.Generator,
                   max_levels: int = MAX_LEVELS
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """With probability ``p`` per dataset, categorical columns -> indicator columns.

    x (batch, rows, width) with codes in the columns ``cat`` (batch, width) marks;
    returns x, num_features and cat, the width unchanged (expansion stops where it would
    pass it).
    """
    b, _, width = x.shape
    pick = torch.rand(b, generator=g) < p
    if not bool(pick.any()):
        return x, num_features, cat
    x, num_features, cat = x.clone(), num_features.clone(), cat.clone()
    for i in pick.nonzero().flatten().tolist():
        x[i], cat[i], n = _expand_one(x[i], cat[i], int(num_features[i]), n_train, width,
                                      max_levels)
        num_features[i] = n
    return x, num_features, cat
