"""A stacked-estimate column: some tables carry another model's estimate of their target.

With local contexts the estimators can append a gradient-boosting model's prediction as one
more feature (``pfn.boosting``, stacking after Wolpert 1992): out of fold for training rows,
from the full fit for new rows. A network that never saw such a column in pretraining
treats it as one more feature; on real tables it then lands near the booster alone, neither
clearly above nor reliably weighed against the context. This module puts such columns into
the prior, so that the network learns to read them: with probability ``p`` per dataset
(where the table has room), a **leave-one-out k-nearest-neighbour estimate** of the target
is inserted at a random column position:

- regression: the neighbours' mean target (one column);
- binary classification: the logit of the neighbours' smoothed class-1 frequency (one
  column), as the booster's feature is a logit;
- more classes: one centred log-frequency column per class, in random order, as the
  booster's per-class logits come in an order the members' class permutations scramble.

Training rows exclude themselves from their neighbours, exactly as the booster's training
rows get out-of-fold predictions, so the training rows show the network how far the column
can be trusted; test rows use every training row. The estimate's quality varies by design:
k from 3 to 50, neighbours measured on a random subset of the columns, and optional noise,
from nearly the target's conditional mean to nearly noise.

Off by default (``PostprocessConfig.p_hint = 0``): the shipped networks trained further with
it scored as before on real tables, with and without the booster's column (model card,
"v9"), so the option is kept for repeating that run, not used by the shipped priors.
"""

from __future__ import annotations

import torch

__all__ = ["add_hint", "hint_columns"]


def hint_columns(task: str, num_classes: int) -> int:
    """How many columns the hint takes: 1, or one per class beyond two classes."""
    return 1 if task == "regression" or num_classes <= 2 else num_classes


def _neighbours(x: torch.Tensor, n_train: int, k: int) -> torch.Tensor:
    """(rows, k) indices of each row's k nearest training rows, a training row not its own."""
    dist = torch.cdist(x, x[:n_train])  # (rows, n_train)
    own = torch.arange(n_train)
    dist[own, own] = float("inf")  # leave one out
    return dist.topk(k, dim=1, largest=False).indices


def _estimate(y: torch.Tensor, nb: torch.Tensor, task: str, num_classes: int) -> torch.Tensor:
    """(rows, columns) the neighbours' estimate of y: a mean, a logit, or class log-odds."""
    labels = y[nb]  # (rows, k)
    if task == "regression":
        return labels.mean(1, keepdim=True)
    k = labels.shape[1]
    counts = torch.nn.functional.one_hot(labels.long(), num_classes).sum(1).float()
    logp = torch.log((counts + 0.5) / (k + 0.5 * num_classes))
    if num_classes <= 2:
        return (logp[:, 1] - logp[:, 0]).unsqueeze(1)
    return logp - logp.mean(1, keepdim=True)


def add_hint(x: torch.Tensor, y: torch.Tensor, num_features: torch.Tensor,
             num_classes: torch.Tensor, cat: torch.Tensor, n_train: int, task: str, p: float,
             g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """With probability ``p`` per dataset, insert the hint column(s) at random positions.

    x: (batch, rows, columns) finished features (NaN for missing; the neighbours read 0
    there); y: (batch, rows) finished target (class indices for classification). Only
    datasets with room (``num_features + hint_columns <= columns``) and at least 4 training
    rows get one. Returns x, num_features and the categorical mask (the hint is numeric).
    """
    b, rows, width = x.shape
    draw = torch.rand(b, generator=g) < p
    if p <= 0 or n_train < 4 or not bool(draw.any()):
        return x, num_features, cat
    x, num_features, cat = x.clone(), num_features.clone(), cat.clone()
    for i in torch.nonzero(draw).flatten().tolist():
        nf = int(num_features[i])
        k_cls = int(num_classes[i])
        cols = hint_columns(task, k_cls)
        if nf + cols > width or nf == 0:
            continue
        feats = torch.nan_to_num(x[i, :, :nf])
        keep = torch.rand(nf, generator=g) < 0.5 + 0.5 * torch.rand(1, generator=g)
        if not bool(keep.any()):
            keep[torch.randint(nf, (1,), generator=g)] = True
        k = int(torch.randint(3, min(50, n_train - 1) + 1, (1,), generator=g))
        hint = _estimate(y[i], _neighbours(feats[:, keep], n_train, k), task, max(k_cls, 2))
        if bool(torch.rand(1, generator=g) < 0.5):  # a weaker estimate: noise on top
            scale = hint[:n_train].std().clamp_min(1e-6)
            noise = torch.rand(1, generator=g) * torch.randn(hint.shape, generator=g)
            hint = hint + scale * noise
        # Shuffle the used columns with the hint, so that it lands anywhere among them.
        order = torch.randperm(nf + cols, generator=g)
        merged = torch.cat([x[i, :, :nf], hint], dim=1)[:, order]
        merged_cat = torch.cat([cat[i, :nf], torch.zeros(cols, dtype=torch.bool)])[order]
        x[i, :, :nf + cols] = merged
        cat[i, :nf + cols] = merged_cat
        num_features[i] = nf + cols
    return x, num_features, cat
