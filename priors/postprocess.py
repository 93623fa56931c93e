"""Post-processing shared by every prior: labels, categoricals, warping, missing values.

Each step is applied with a per-dataset probability, so one prior yields tables with and
without categoricals, skewed marginals or holes, as real tables come (TabPFN 2022, Sec. 4).
All functions are batched over datasets and rows; the only Python loops run over at most
``max_classes`` or a handful of transforms, and (off by default) over the datasets that
draw a stacked-estimate column (:mod:`priors.hint`: each its own width and neighbours) or
one-hot categorical columns (:mod:`priors.onehot`: each its own levels and width).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from priors.base import Range, check_positive, check_probability, coerce_ranges
from priors.hint import add_hint
from priors.labels import exact_classes, sample_num_classes, to_classes
from priors.onehot import onehot_columns
from priors.wide import widen

__all__ = ["PostprocessConfig", "finish", "native_discrete", "make_categorical",
           "sample_num_classes", "to_classes", "exact_classes", "warp_columns", "warp_targets",
           "add_missing", "widen"]


@dataclass
class PostprocessConfig:
    """Hyperparameters of the shared post-processing (probabilities are per dataset)."""

    max_classes: int = 10
    p_multiclass: float = 0.5  # else binary
    class_imbalance: Range = field(default_factory=lambda: Range(0.0, 2.0))
    p_categorical: float = 0.3
    categorical_column_fraction: Range = field(default_factory=lambda: Range(0.1, 1.0))
    max_levels: int = 10
    p_ordinal: float = 0.0  # per categorical column: codes keep the order of the values
    # Wide tables: with probability p_wide, add redundant / irrelevant columns (priors.wide).
    p_wide: float = 0.0
    wide_features: Range = field(default_factory=lambda: Range(40, 100))
    redundant_fraction: Range = field(default_factory=lambda: Range(0.0, 0.7))
    p_missing: float = 0.3
    missing_rate: Range = field(default_factory=lambda: Range(0.01, 0.3))
    p_warp: float = 0.5
    p_rescale: float = 0.5
    # Regression targets: with this probability per dataset, a monotone warp (exp, cube or
    # sinh, as for features) makes them skewed or heavy-tailed, as prices and counts are.
    p_warp_target: float = 0.0
    # Stacked estimates: with this probability per dataset, a leave-one-out nearest-neighbour
    # estimate of the target becomes one more column (priors.hint: why).
    p_hint: float = 0.0
    # Categorical columns of 3-16 levels shown one-hot, as the estimators show them
    # (priors.onehot: why), with this probability per dataset.
    p_onehot: float = 0.0
    standardize: bool = True  # off for priors whose raw x must survive (GP mimicry)

    def __post_init__(self) -> None:
        coerce_ranges(self)
        if not 2 <= self.max_classes <= 10:
            raise ValueError(f"max_classes must be in [2, 10], got {self.max_classes}")
        if self.max_levels < 2:
            raise ValueError(f"max_levels must be >= 2, got {self.max_levels}")
        for name in ("p_multiclass", "p_categorical", "p_missing", "p_warp", "p_rescale",
                     "p_ordinal", "p_wide", "p_warp_target", "p_hint", "p_onehot"):
            check_probability(name, getattr(self, name))
        self.class_imbalance.check("class_imbalance", minimum=0.0)
        self.categorical_column_fraction.check("categorical_column_fraction", 0.0, 1.0)
        self.missing_rate.check("missing_rate", 0.0, 0.95)
        self.wide_features.check("wide_features", 1)
        self.redundant_fraction.check("redundant_fraction", 0.0, 1.0)
        check_positive("max_levels", self.max_levels)


def native_discrete() -> PostprocessConfig:
    """Post-processing for priors that draw their discrete columns themselves (with their
    own per-level meaning): no cutting of numeric columns into codes on top."""
    return PostprocessConfig(p_categorical=0.0)


def _bernoulli(p: float | torch.Tensor, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=g) < p


def _warp(choice: int, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    if choice == 0:
        return torch.exp(a * x.clamp(-10, 10))  # right skew (log-normal like)
    if choice == 1:
        return x**3  # heavy tails both sides
    if choice == 2:
        return torch.sinh(a * x.clamp(-10, 10))  # heavy tails, milder
    return torch.sigmoid(x * 1.7).clamp(1e-6, 1 - 1e-6) ** (a * 3.0)  # bounded, skewed


def warp_columns(x: torch.Tensor, cfg: PostprocessConfig, g: torch.Generator) -> torch.Tensor:
    """Monotone warps and rescaling so marginals are skewed, heavy-tailed or shifted.

    x: (batch, rows, features), standardised. A column is warped (exp, cube, sinh, or
    Kumaraswamy-like power on its rank-free uniform image) with probability ``p_warp`` per
    dataset (then each column with probability 1/2), and rescaled by a log-uniform factor
    plus shift with probability ``p_rescale``. Only the warped columns are computed.
    """
    b, r, f = x.shape
    x = x.clone()
    warp_ds = _bernoulli(cfg.p_warp, (b, 1), g)
    warp_col = _bernoulli(0.5, (b, f), g) & warp_ds
    bi, fi = warp_col.nonzero(as_tuple=True)
    if bi.numel():
        n = bi.numel()
        a = 0.3 + 1.2 * torch.rand(n, 1, generator=g)
        choice = torch.randint(0, 4, (n,), generator=g)
        cols = x[bi, :, fi]  # (n, rows)
        for k in range(4):
            sel = choice == k
            if bool(sel.any()):
                cols[sel] = _warp(k, cols[sel], a[sel])
        x[bi, :, fi] = cols
    resc = _bernoulli(cfg.p_rescale, (b,), g)
    if bool(resc.any()):
        n = int(resc.sum())
        scale = torch.exp(torch.empty(n, 1, f).uniform_(-4.0, 4.0, generator=g))
        shift = torch.randn(n, 1, f, generator=g) * 10.0 * torch.rand(n, 1, f, generator=g)
        x[resc] = x[resc] * scale + shift
    return x


def warp_targets(y: torch.Tensor, n_train: int, cfg: PostprocessConfig,
                 g: torch.Generator) -> torch.Tensor:
    """Skewed or heavy-tailed regression targets (batch, rows): with probability
    ``p_warp_target`` per dataset, the target (standardised by its training rows) goes
    through an exp, cube or sinh warp of random strength. Smooth priors give roughly
    symmetric targets; real ones (prices, durations, counts) often are not, and a model
    that never saw them spreads its bar distribution badly there."""
    warp = _bernoulli(cfg.p_warp_target, (y.shape[0],), g)
    idx = warp.nonzero().squeeze(1)
    if idx.numel() == 0:
        return y
    part = y[idx]
    mean = part[:, :n_train].mean(1, keepdim=True)
    std = part[:, :n_train].std(1, keepdim=True) if n_train > 1 else torch.ones_like(mean)
    part = (part - mean) / std.clamp_min(1e-6)
    a = 0.3 + 1.2 * torch.rand(idx.numel(), 1, generator=g)
    choice = torch.randint(0, 3, (idx.numel(),), generator=g)  # exp, cube, sinh
    for k in range(3):
        sel = choice == k
        if bool(sel.any()):
            part[sel] = _warp(k, part[sel], a[sel])
    y = y.clone()
    y[idx] = part
    return y


def make_categorical(
    x: torch.Tensor, num_features: torch.Tensor, cfg: PostprocessConfig, g: torch.Generator,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise random columns into 2..max_levels integer codes.

    Codes come in random order, except with probability ``p_ordinal`` per column, where they
    keep the order of the values (an ordinal category). ``keep`` (batch, features) marks
    columns that already hold codes: they are left alone. Returns the new x and the
    (batch, features) mask of columns discretised here.
    """
    b, r, f = x.shape
    has = _bernoulli(cfg.p_categorical, (b, 1), g)
    frac = cfg.categorical_column_fraction.sample(b, g).unsqueeze(1)
    used = torch.arange(f).unsqueeze(0) < num_features.unsqueeze(1)
    cat = has & used & (torch.rand(b, f, generator=g) < frac)
    if keep is not None:
        cat = cat & ~keep
    if not bool(cat.any()):
        return x, cat
    # Only the categorical columns are touched: (n,) dataset and column index of each.
    bi, fi = cat.nonzero(as_tuple=True)
    n, n_thr = bi.numel(), cfg.max_levels - 1
    cols = x[bi, :, fi]  # (n, rows)
    levels = torch.randint(2, cfg.max_levels + 1, (n,), generator=g)
    # Thresholds at random quantiles of each column; unused level slots get +inf.
    q = torch.rand(n, n_thr, generator=g).sort(-1).values
    slot = torch.arange(n_thr).view(1, -1)
    q = torch.where(slot < (levels - 1).unsqueeze(-1), q, torch.full_like(q, 2.0))
    qi = (q.clamp(max=1.0) * (r - 1)).round().long()  # (n, L-1)
    thr = cols.sort(dim=1).values.gather(1, qi)  # (n, L-1), ascending
    thr = torch.where(q > 1.0, torch.full_like(thr, float("inf")), thr)
    codes = torch.searchsorted(thr, cols.contiguous())  # (n, rows): #thresholds below value
    perm = torch.rand(n, cfg.max_levels, generator=g).argsort(-1)  # random code order
    if cfg.p_ordinal > 0:
        ordinal = torch.rand(n, 1, generator=g) < cfg.p_ordinal
        perm = torch.where(ordinal, torch.arange(cfg.max_levels).view(1, -1), perm)
    x = x.clone()
    x[bi, :, fi] = perm.gather(1, codes).to(x.dtype)
    return x, cat


def add_missing(x: torch.Tensor, num_features: torch.Tensor, cfg: PostprocessConfig,
                g: torch.Generator) -> torch.Tensor:
    """MCAR missing values: with probability ``p_missing`` a dataset gets NaN at a random rate."""
    b, r, f = x.shape
    has = _bernoulli(cfg.p_missing, (b, 1, 1), g)
    rate = cfg.missing_rate.sample(b, g).view(b, 1, 1)
    used = (torch.arange(f).view(1, 1, f) < num_features.view(b, 1, 1))
    mask = has & used & (torch.rand(b, r, f, generator=g) < rate)
    return x.masked_fill(mask, float("nan"))


def finish(
    x: torch.Tensor, y: torch.Tensor, num_features: torch.Tensor, n_train: int, task: str,
    cfg: PostprocessConfig, g: torch.Generator, n_columns: int | None = None,
    categorical: torch.Tensor | None = None, exact: bool = False,
    num_classes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full post-processing chain used by every prior.

    x: (batch, rows, columns) raw features, of which dataset i uses the first
    ``num_features[i]``; y: (batch, rows) continuous target; ``categorical`` (batch, columns)
    marks columns that already hold integer codes (they skip standardising, warps and
    discretising). ``exact`` cuts classes with :func:`exact_classes` (labels a deterministic
    function of y) instead of :func:`to_classes`; a prior that samples its own labels passes
    them as y with their ``num_classes`` (batch,), and they are kept. Returns x (batch,
    rows, n_columns), y, num_features (grown where a table was widened), num_classes and the
    categorical mask (batch, n_columns), ready for a :class:`Batch`; ``n_columns`` defaults
    to x's width and may exceed it (zero padding). Work is done only on the used columns,
    the rest are zero.
    """
    b, _, f = x.shape
    n_columns = f if n_columns is None else n_columns
    d = int(num_features.max())
    if not d <= min(f, n_columns):
        raise ValueError(f"num_features.max() = {d} exceeds x's {f} or n_columns={n_columns}")
    x = torch.nan_to_num(x[:, :, :d], nan=0.0, posinf=0.0, neginf=0.0)
    codes = torch.zeros(b, d, dtype=torch.bool) if categorical is None else categorical[:, :d]
    if cfg.p_wide > 0:
        x, num_features, codes = widen(x, num_features, codes, n_columns, cfg, g)
        d = x.shape[2]
    raw = x
    used = torch.arange(d).view(1, 1, d) < num_features.view(b, 1, 1)
    if cfg.standardize:
        # Statistics of the training rows only (a single row has no spread: keep the scale).
        mean = x[:, :n_train].mean(1, keepdim=True)
        std = x[:, :n_train].std(1, keepdim=True) if n_train > 1 else torch.ones_like(mean)
        x = ((x - mean) / std.clamp_min(1e-6)).clamp(-100, 100)
    if cfg.p_warp > 0 or cfg.p_rescale > 0:
        x = warp_columns(x, cfg, g)
    x = torch.where(codes.unsqueeze(1), raw, x)
    x, cat = make_categorical(x, num_features, cfg, g, keep=codes)
    cat = cat | codes
    x = torch.where(used, x, torch.zeros_like(x))
    x = add_missing(x, num_features, cfg, g)
    if n_columns > d:
        x = torch.nn.functional.pad(x, (0, n_columns - d))
        cat = torch.nn.functional.pad(cat, (0, n_columns - d), value=False)
    if cfg.p_onehot > 0:
        x, num_features, cat = onehot_columns(x, num_features, cat, n_train, cfg.p_onehot, g)
    if task == "classification" and num_classes is not None:
        pass  # labels drawn by the prior itself
    elif task == "classification":
        # No more classes than training rows, so every class can occur in them.
        num_classes = sample_num_classes(b, cfg, g).clamp(max=n_train)
        y = torch.nan_to_num(y)
        if exact:
            y, num_classes = exact_classes(y, n_train, num_classes, cfg, g)
        else:
            y = to_classes(y, n_train, num_classes, cfg, g)
    else:
        num_classes = torch.zeros(b, dtype=torch.long)
        y = torch.nan_to_num(y)
        if cfg.p_warp_target > 0:
            y = warp_targets(y, n_train, cfg, g)
    if cfg.p_hint > 0:
        x, num_features, cat = add_hint(x, y, num_features, num_classes, cat, n_train, task,
                                        cfg.p_hint, g)
    return x.float(), y.float(), num_features, num_classes, cat
