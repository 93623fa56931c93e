"""Class labels from continuous targets, shared by every prior.

Two ways to cut a target into classes: :func:`to_classes` (quantile thresholds, ties broken
by jitter: right for smooth targets) and :func:`exact_classes` (thresholds only between
distinct training values: right for rule targets, whose labels must stay a deterministic
function of the features). Plus :func:`flip_labels` for label noise. All batched over datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # only for annotations: postprocess imports this module
    from priors.postprocess import PostprocessConfig


def sample_num_classes(batch_size: int, cfg: PostprocessConfig, g: torch.Generator) -> torch.Tensor:
    """(batch,) int64: 2 with probability 1 - p_multiclass, else uniform in 3..max_classes."""
    multi = (torch.rand(batch_size, generator=g) < cfg.p_multiclass) & (cfg.max_classes > 2)
    k = torch.randint(3, max(cfg.max_classes, 3) + 1, (batch_size,), generator=g)
    return torch.where(multi, k, torch.full_like(k, 2))


def _class_quantiles(num_classes: torch.Tensor, n_train: int, cfg: PostprocessConfig,
                     g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative class proportions (batch, k_max - 1) and the active-class mask (batch, k_max).

    Proportions are a softmax of Gaussian logits with a per-dataset spread (a seedable stand-in
    for a Dirichlet): spread near 0 gives balanced classes, a large spread skewed ones.
    """
    b, k_max = num_classes.shape[0], int(num_classes.max())
    spread = cfg.class_imbalance.sample(b, g).unsqueeze(1)
    props = torch.softmax(spread * torch.randn(b, k_max, generator=g), dim=1)
    active = torch.arange(k_max).unsqueeze(0) < num_classes.unsqueeze(1)
    props = torch.where(active, props, torch.zeros_like(props))
    props = props / props.sum(1, keepdim=True)
    # Guarantee at least ~2 training rows per class before quantiles.
    floor = (2.0 / n_train) if n_train >= 2 * k_max else 0.0
    props = torch.where(active, props.clamp_min(floor), props)
    props = props / props.sum(1, keepdim=True)
    return props.cumsum(1)[:, :-1].clamp(0.0, 1.0), active


def _permute(labels: torch.Tensor, active: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random permutation of the label ids of each dataset, so class order carries nothing."""
    keys = torch.rand(active.shape, generator=g) + (~active).float() * 2.0
    return keys.argsort(1).gather(1, labels).float()


def to_classes(
    y: torch.Tensor, n_train: int, num_classes: torch.Tensor, cfg: PostprocessConfig,
    g: torch.Generator,
) -> torch.Tensor:
    """Continuous targets (batch, rows) -> class indices, every class present in training rows.

    Thresholds sit at quantiles of the training rows' targets, with class proportions drawn
    per dataset (balanced to strongly skewed). Ties (tree-based targets are
    piecewise constant) are broken by a tiny jitter so quantile thresholds still split them.
    Labels are then randomly permuted so class order carries no information. Datasets whose
    training part still misses a class (e.g. few training rows) fall back to balanced
    rank-based classes.
    """
    b, r = y.shape
    k_max = int(num_classes.max())
    scale = y.std(dim=1, keepdim=True).clamp_min(1e-6)
    y = y + 1e-4 * scale * torch.randn(y.shape, generator=g)
    cum, active = _class_quantiles(num_classes, n_train, cfg, g)
    sorted_train = y[:, :n_train].sort(dim=1).values
    idx = (cum * (n_train - 1)).round().long().clamp(0, n_train - 1)
    thresholds = sorted_train.gather(1, idx)
    # Inactive thresholds go to +inf so they never count.
    t_active = torch.arange(k_max - 1).unsqueeze(0) < (num_classes - 1).unsqueeze(1)
    thresholds = torch.where(t_active, thresholds, torch.full_like(thresholds, float("inf")))
    labels = (y.unsqueeze(-1) > thresholds.unsqueeze(1)).sum(-1)  # (b, r)

    present = classes_present(labels[:, :n_train], num_classes)
    if not bool(present.all()):
        ranks = y.argsort(1).argsort(1).float()
        balanced = (ranks * num_classes.unsqueeze(1) / r).floor().long()
        labels = torch.where(present.unsqueeze(1), labels, balanced)
        present = classes_present(labels[:, :n_train], num_classes)
        if not bool(present.all()):  # tiny n_train: force one row per class in front
            fix = ~present
            head = torch.arange(n_train).unsqueeze(0) % num_classes.unsqueeze(1)
            labels[:, :n_train] = torch.where(fix.unsqueeze(1), head, labels[:, :n_train])
    return _permute(labels, active, g)


def exact_classes(
    y: torch.Tensor, n_train: int, num_classes: torch.Tensor, cfg: PostprocessConfig,
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`to_classes`, but labels are a deterministic function of ``y``.

    Each quantile threshold snaps to the nearest gap between distinct training values, so
    equal targets always share a class; snapped thresholds that coincide merge, so a dataset
    may get fewer classes than drawn (a rule with two outcomes gives two classes). Datasets
    whose training target is constant fall back to :func:`to_classes`. Returns labels
    (batch, rows) and the realised num_classes (batch,).
    """
    b, _ = y.shape
    k_max = int(num_classes.max())
    cum, active = _class_quantiles(num_classes, n_train, cfg, g)
    s = y[:, :n_train].sort(dim=1).values
    gap = s[:, 1:] > s[:, :-1]  # (b, n_train - 1): a boundary after sorted row i
    mids = (s[:, 1:] + s[:, :-1]) / 2
    # Boundary i leaves i + 1 training rows below it; aim at cum * n_train of them.
    pos = torch.arange(n_train - 1).view(1, 1, -1).float()
    dist = (pos + 1 - cum.unsqueeze(-1) * n_train).abs()  # (b, k_max - 1, n_train - 1)
    dist = dist.masked_fill(~gap.unsqueeze(1), float("inf"))
    thr = mids.gather(1, dist.argmin(-1))  # (b, k_max - 1)
    t_active = torch.arange(k_max - 1).unsqueeze(0) < (num_classes - 1).unsqueeze(1)
    thr = torch.where(t_active, thr, torch.full_like(thr, float("inf"))).sort(1).values
    dup = torch.zeros_like(t_active)
    dup[:, 1:] = thr[:, 1:] == thr[:, :-1]
    thr = thr.masked_fill(dup, float("inf"))
    labels = (y.unsqueeze(-1) > thr.unsqueeze(1)).sum(-1)
    k = 1 + torch.isfinite(thr).sum(1)
    ok = gap.any(1)
    labels = _permute(labels, torch.arange(k_max).unsqueeze(0) < k.unsqueeze(1), g)
    if not bool(ok.all()):
        fallback = to_classes(y, n_train, num_classes, cfg, g)
        labels = torch.where(ok.view(b, 1), labels, fallback)
        k = torch.where(ok, k, num_classes)
    return labels, k


def flip_labels(labels: torch.Tensor, num_classes: torch.Tensor, rate: torch.Tensor,
                n_train: int, g: torch.Generator) -> torch.Tensor:
    """Replace each label by a different, uniformly drawn class with per-dataset probability.

    labels: (batch, rows) float class ids; rate: (batch,) flip probabilities. A dataset whose
    flips would leave a class without training rows keeps its clean labels.
    """
    b, r = labels.shape
    flip = torch.rand(b, r, generator=g) < rate.view(b, 1)
    k = num_classes.view(b, 1).clamp_min(2)
    shift = (torch.rand(b, r, generator=g) * (k - 1)).floor().long() + 1  # 1..k-1
    noisy = torch.where(flip, (labels.long() + shift) % k, labels.long())
    ok = classes_present(noisy[:, :n_train], num_classes)
    return torch.where(ok.view(b, 1), noisy.float(), labels)


def classes_present(labels: torch.Tensor, num_classes: torch.Tensor) -> torch.Tensor:
    """(batch,) bool: every class 0..num_classes-1 occurs in ``labels`` (batch, rows)."""
    k_max = max(int(num_classes.max()), 1)
    counts = torch.zeros(labels.shape[0], k_max).scatter_add_(
        1, labels.long().clamp(0, k_max - 1), torch.ones_like(labels, dtype=torch.float)
    )
    active = torch.arange(k_max).unsqueeze(0) < num_classes.unsqueeze(1)
    return ((counts > 0) | ~active).all(1)
