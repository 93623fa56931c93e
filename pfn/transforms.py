"""Per-member numeric transforms: robust squashing, then none, quantile-to-normal or
Yeo-Johnson, fitted on a member's training rows and applied to its numeric columns only.

Used by :class:`pfn.preprocessing.EnsemblePlan`; numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRANSFORMS = ("none", "quantile", "power")
# Members cycle through these by default: transformed members first, one plain member;
# chosen on benchmarks/real_data.py (figures: pfn/weights/MODEL_CARD.md, "Estimator
# defaults").
DEFAULT_TRANSFORMS = ("quantile", "power", "none")
SQUASH_AT = 6.0  # robust standard units beyond which values grow only logarithmically


# ----- per-member numeric transforms ------------------------------------------------------
def _yeo_johnson(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Yeo-Johnson transform of x (..., F) with lam broadcasting against it."""
    pos = x >= 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lp = np.where(np.abs(lam) < 1e-6, np.log1p(np.abs(x)),
                      ((np.abs(x) + 1) ** lam - 1) / np.where(np.abs(lam) < 1e-6, 1, lam))
        l2 = 2 - lam
        ln = np.where(np.abs(l2) < 1e-6, np.log1p(np.abs(x)),
                      ((np.abs(x) + 1) ** l2 - 1) / np.where(np.abs(l2) < 1e-6, 1, l2))
    return np.where(pos, lp, -ln)


_LAMBDAS = np.linspace(-1.0, 3.0, 17)


def _fit_yeo_johnson(z: np.ndarray) -> np.ndarray:
    """Per-column lambda (F,) maximising the Gaussian log-likelihood, on a grid of lambdas.

    A grid over all columns at once instead of scipy's per-column optimiser: ~100x faster,
    and the likelihood is flat near its optimum, so the grid loses nothing that matters.
    """
    ok = ~np.isnan(z)
    n = np.maximum(ok.sum(0), 1)
    zz = np.where(ok, z, 0.0)[..., None]  # (N, F, 1)
    t = _yeo_johnson(zz, _LAMBDAS)  # (N, F, L)
    t = np.where(ok[..., None], t, 0.0)
    mean = t.sum(0) / n[:, None]
    var = (np.where(ok[..., None], t - mean, 0.0) ** 2).sum(0) / n[:, None]
    jac = (np.sign(zz) * np.log1p(np.abs(zz)) * ok[..., None]).sum(0)  # (F, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = -0.5 * n[:, None] * np.log(var) + (_LAMBDAS - 1) * jac
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    return _LAMBDAS[ll.argmax(1)]


def _nanquantiles(x: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Per-column quantiles (len(qs), F) of x (N, F) ignoring NaN (NaN for all-NaN columns).

    numpy's linear interpolation, as ``np.nanquantile``, from one sort of all columns:
    ``np.nanquantile`` loops over the columns in Python, the slowest part of a member's fit.
    """
    s = np.sort(x, axis=0)  # NaN last
    count = (~np.isnan(x)).sum(0)
    out = np.full((len(qs), x.shape[1]), np.nan)
    ok = count > 0
    for i, q in enumerate(qs):
        pos = q * (count[ok] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, count[ok] - 1)
        a = np.take_along_axis(s[:, ok], lo[None], 0)[0]
        b = np.take_along_axis(s[:, ok], hi[None], 0)[0]
        out[i, ok] = a + (b - a) * (pos - lo)
    return out


def _per_column(stat, x: np.ndarray, *args) -> np.ndarray:
    """``stat(x, *args, axis=0)`` (a NaN-ignoring numpy statistic), 0 for all-NaN columns.

    Computed only on columns with a value, so numpy has nothing to warn about: silencing
    its warning with ``warnings.catch_warnings`` is not thread-safe (it swaps a global).
    """
    out = np.zeros(x.shape[1])
    seen = ~np.isnan(x).all(0)
    if seen.any():
        out[seen] = np.nan_to_num(stat(x[:, seen], *args, axis=0))
    return out


@dataclass
class MemberTransform:
    """Robust squashing then none / quantile-to-normal / Yeo-Johnson on numeric columns.

    Fitted on the training rows only. Categorical columns pass through unchanged.
    """

    kind: str
    numeric: np.ndarray  # (F,) bool: columns the transform touches
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    sorted_: list | None = None  # quantile: per column sorted distinct values and their ranks
    lam: np.ndarray | None = None  # power: per column lambda
    post: tuple | None = None  # power: mean and std after the transform

    def fit(self, x: np.ndarray) -> MemberTransform:
        if self.kind not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.kind!r}")
        xn = x[:, self.numeric]
        q25, self.center, q75 = np.nan_to_num(_nanquantiles(xn, (0.25, 0.5, 0.75)))
        std = _per_column(np.nanstd, xn)
        scale = (q75 - q25) / 1.349
        scale = np.where(scale > 0, scale, std)
        self.scale = np.where(scale > 0, scale, 1.0)
        z = self._squash(xn)
        if self.kind == "quantile":
            self.sorted_ = []
            for col in z.T:
                v, counts = np.unique(col[~np.isnan(col)], return_counts=True)
                mid_rank = np.cumsum(counts) - (counts - 1) / 2.0 - 1  # average rank of ties
                p = (mid_rank + 0.5) / max(counts.sum(), 1)
                self.sorted_.append((v, p))
        elif self.kind == "power":
            rows = np.linspace(0, len(z) - 1, min(len(z), 256)).astype(int)  # enough for lambda
            self.lam = _fit_yeo_johnson(z[rows])
            t = _yeo_johnson(z, self.lam)
            mu, sd = _per_column(np.nanmean, t), _per_column(np.nanstd, t)
            self.post = (mu, np.where(sd > 0, sd, 1.0))
        return self

    def _squash(self, xn: np.ndarray) -> np.ndarray:
        z = (xn - self.center) / self.scale
        a = np.abs(z)
        with np.errstate(invalid="ignore"):
            return np.where(a > SQUASH_AT, np.sign(z) * (SQUASH_AT + np.log1p(a - SQUASH_AT)), z)

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        z = self._squash(x[:, self.numeric])
        if self.kind == "quantile":
            from scipy.special import ndtri

            for j, (v, p) in enumerate(self.sorted_):
                if v.size > 1:  # constant columns stay as they are
                    z[:, j] = ndtri(np.interp(z[:, j], v, p))
        elif self.kind == "power":
            z = (_yeo_johnson(z, self.lam) - self.post[0]) / self.post[1]
        out[:, self.numeric] = z
        return out
