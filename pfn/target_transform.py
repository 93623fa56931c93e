"""Regression targets seen by the network through a power transform, and mapped back.

The network predicts a bar distribution over standardised targets. For a skewed target
(wages, delivery times) much of that resolution is spent on a long tail, and in local
contexts (:mod:`pfn.contexts`) each leaf standardises its own targets, so leaves in the
tail see a scale far from the bulk's. A Yeo-Johnson transform (Yeo & Johnson, 2000),
fitted on the training targets, makes them closer to normal before the network sees them;
TabPFN v2 (Hollmann et al., 2025) varies such a target transform across its regression
ensemble for the same reason.

Mapping back is exact for the bucket probabilities: the transform is increasing, so the
mass between two borders t_i < t_j is the mass between g^-1(t_i) and g^-1(t_j)
(:meth:`pfn.bar_distribution.BarDistribution.warp`). Inside a mapped bucket the density is
again taken as uniform, so the mean, quantiles and density are those of the mapped
distribution up to a bucket's width (1000 buckets: far below the model's own error).

When it is used (``PFNRegressor(target_transform="auto")``; figures and commands in
``pfn/weights/MODEL_CARD.md``, "Estimator defaults"): with local contexts (training sets
beyond ``max_train_rows``) it raised R² on all four large regression tables (mean 0.417
against 0.403), and on the same tables cut to 2000 training rows (0.390 against 0.382; level
at 3000), though not on diamonds at 1500 rows (0.956 against 0.964); within one context it
did not help (the eight small regression tables, 10 splits: mean R² 0.697 against 0.701), so
"auto" keeps the targets as they are there, unless they hold gross outliers
(:func:`gross_outliers`): a few extreme values (a 999999 code for "unknown", a unit error)
inflate the standard deviation by which the network's buckets are scaled, until the whole
signal of the other rows falls within a bucket or two and every prediction, median
included, is off by far more than that signal; the transform pulls them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfn.bar_distribution import tail_bounds
from pfn.transforms import _fit_yeo_johnson, _yeo_johnson

TARGET_KINDS = ("none", "power")  # what "auto" resolves to
TARGET_TRANSFORMS = ("auto", *TARGET_KINDS)
# Standard deviation over robust standard deviation (interquartile range / 1.349) beyond
# which targets count as holding gross outliers. On the benchmark's regression tables it is
# 0.9-1.4, and up to 4.5 for MASS_cpus's training halves (a target over two orders of
# magnitude, where the transform costs R²); 1% of the targets at 100 robust units give
# about 10, a few "999999" codes thousands; a log-normal target reaches 8 near sigma 1.7.
OUTLIER_RATIO = 8.0


def gross_outliers(y: np.ndarray) -> bool:
    """Whether a few extreme targets dominate the spread: the standard deviation exceeds
    ``OUTLIER_RATIO`` robust standard deviations. False where the interquartile range is 0
    (half the targets equal: no robust scale to compare with)."""
    y = np.asarray(y, dtype=np.float64)
    q25, q75 = np.quantile(y, (0.25, 0.75))
    robust = (q75 - q25) / 1.349
    return bool(robust > 0 and y.std() > OUTLIER_RATIO * robust)


def _yeo_johnson_inverse(t: np.ndarray, lam: float) -> np.ndarray:
    """x with ``_yeo_johnson(x, lam) == t``; +-inf where t lies beyond the transform's range
    (a finite bound exists for lam < 0 on the positive side and lam > 2 on the negative)."""
    t = np.asarray(t, dtype=np.float64)
    out = np.empty_like(t)
    pos = t >= 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tp = t[pos]
        if abs(lam) < 1e-6:
            out[pos] = np.expm1(tp)
        else:
            base = tp * lam + 1
            out[pos] = np.where(base > 0, np.abs(base) ** (1 / lam) - 1, np.inf)
        tn, l2 = t[~pos], 2 - lam
        if abs(l2) < 1e-6:
            out[~pos] = -np.expm1(-tn)
        else:
            base = 1 - tn * l2
            out[~pos] = np.where(base > 0, 1 - np.abs(base) ** (1 / l2), -np.inf)
    return out


@dataclass
class TargetTransform:
    """An increasing map of regression targets, fitted on the training targets.

    ``kind`` "none" is the identity; "power" measures the targets from their minimum in
    robust standard units (interquartile range / 1.349), so the fitted lambda depends on
    neither their units nor their origin, then applies Yeo-Johnson with the lambda of
    highest Gaussian likelihood (on the grid of :func:`pfn.transforms._fit_yeo_johnson`).
    From the minimum, not the median: Yeo-Johnson bends positive and negative values in
    opposite directions, so a skew on one side is best undone on values of one sign (it is
    then a Box-Cox transform of z + 1). Measured on the four large regression tables: mean
    R² 0.417 from the minimum, 0.413 from the median.
    :meth:`inverse` is bounded by :func:`pfn.bar_distribution.tail_bounds` of the training
    targets, the same bound as the outer tails' clip.
    """

    kind: str
    center: float = 0.0
    scale: float = 1.0
    lam: float = 1.0
    low: float = -np.inf
    high: float = np.inf

    def fit(self, y: np.ndarray) -> TargetTransform:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target transform must be one of {TARGET_KINDS}, got {self.kind!r}")
        y = np.asarray(y, dtype=np.float64)
        self.low, self.high = tail_bounds(float(y.min()), float(y.max()), float(y.std()))
        if self.kind == "power":
            q25, q75 = np.quantile(y, (0.25, 0.75))
            scale = (q75 - q25) / 1.349 or float(y.std()) or 1.0
            self.center, self.scale = float(y.min()), float(scale)
            self.lam = float(_fit_yeo_johnson(self._standardise(y)[:, None])[0])
        return self

    def _standardise(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.center) / self.scale

    def forward(self, y: np.ndarray) -> np.ndarray:
        """The targets the network sees (before its own standardisation)."""
        if self.kind == "none":
            return np.asarray(y, dtype=np.float64)
        return _yeo_johnson(self._standardise(y), self.lam)

    def inverse(self, t: np.ndarray) -> np.ndarray:
        """Targets in the user's units for transformed values t (for "power", clipped to
        [low, high])."""
        t = np.asarray(t, dtype=np.float64)
        if self.kind == "none":
            return t
        y = self.center + self.scale * _yeo_johnson_inverse(t, self.lam)
        return np.clip(y, self.low, self.high)
