"""The bar distribution in numpy: what the estimators and benchmarks compute predictions with.

Müller et al. (2022), Sec. 4: the real line is cut into K buckets whose borders are
quantiles of targets sampled from the prior, so each bucket is equally likely a priori; the
network outputs K logits. Inside a bucket the density is uniform. The two outer buckets get
half-normal tails reaching to -inf and +inf (scaled so half of their mass lies within the
bucket's width), which gives every real value a finite log-density.

:class:`BarDistribution` holds the predictive distributions of n rows and answers
``mean``, ``median``, ``mode``, ``quantile``, ``cdf`` and ``log_prob``;
:meth:`BarDistribution.mixture` combines an ensemble's members and
:meth:`BarDistribution.clip_tails` bounds the outer tails. The functions below it take
bucket probabilities ``probs`` (..., K) (rows sum to 1) and ``borders`` (..., K + 1) that
broadcast against each other. Torch-free: the ONNX path never loads torch. The training
loss and the borders from prior samples are torch code, in :mod:`pfn.bar`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HALF = math.sqrt(2.0) * 0.4769362762044699  # half-normal median / scale = sqrt2 * erfinv(.5)
HN_MEAN = math.sqrt(2.0 / math.pi)  # half-normal mean / scale
TAIL_MARGIN = 0.5  # outer tails end within 0.5 target spans beyond the training targets


def softmax(logits: np.ndarray) -> np.ndarray:
    """Bucket probabilities (..., K) from logits (..., K), in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _tail_scales(borders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outer buckets' half-normal scales, floored at a width far below any bucket's: a
    context whose targets are all equal has borders that coincide (in float32), and a zero
    scale would divide by zero wherever the tails are evaluated."""
    floor = 1e-12 * max(1.0, float(np.abs(borders[..., 1:-1]).max()))
    return (np.maximum(borders[..., 1] - borders[..., 0], floor) / HALF,
            np.maximum(borders[..., -1] - borders[..., -2], floor) / HALF)


def tail_bounds(y_min: float, y_max: float, y_std: float) -> tuple[float, float]:
    """(low, high): the training targets' range widened by ``TAIL_MARGIN`` spans on each
    side, the span being ``max(y_max - y_min, y_std)``; where outer tails are cut off."""
    margin = TAIL_MARGIN * max(y_max - y_min, y_std)
    return y_min - margin, y_max + margin


def clip_outer_borders(borders: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Pull the two outermost borders (..., K + 1) in to ``lo`` / ``hi`` where they lie beyond.

    The outer buckets' half-normal tails take their scale from the outer buckets' widths. The
    prior's standardised targets include rare extreme outliers, so the outermost quantile
    borders can sit hundreds of standard deviations out; then 0.1% of probability in an outer
    bucket moves the mean by a whole standard deviation, although the model meant "a little
    mass somewhere beyond the last inner border". Clipping only those two borders keeps every
    inner bucket (and so the median and central quantiles) unchanged.
    """
    b = np.array(borders, dtype=np.float64, copy=True)
    b[..., 0] = np.maximum(b[..., 0], np.minimum(lo, b[..., 1] - 1e-9))
    b[..., -1] = np.minimum(b[..., -1], np.maximum(hi, b[..., -2] + 1e-9))
    return b


def _broadcast(probs: np.ndarray, borders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    b = np.asarray(borders, dtype=np.float64)
    lead = np.broadcast_shapes(p.shape[:-1], b.shape[:-1])
    return (np.broadcast_to(p, lead + p.shape[-1:]),
            np.broadcast_to(b, lead + b.shape[-1:]))


def _bucket_means(b: np.ndarray) -> np.ndarray:
    """Each bucket's mean (..., K) given borders (..., K + 1): inner buckets' centres, the
    outer buckets' half-normal means."""
    mids = (b[..., 1:] + b[..., :-1]) / 2
    s_left, s_right = _tail_scales(b)
    return np.concatenate([(b[..., 1] - s_left * HN_MEAN)[..., None], mids[..., 1:-1],
                           (b[..., -2] + s_right * HN_MEAN)[..., None]], -1)


def mean(probs: np.ndarray, borders: np.ndarray) -> np.ndarray:
    """Expected value (...)."""
    b = np.asarray(borders, dtype=np.float64)
    if b.ndim > 1:
        p, b = _broadcast(probs, b)
    else:  # shared borders: their bucket means once, not per row (same sums, same bits)
        p = np.asarray(probs, dtype=np.float64)
    return (p * _bucket_means(b)).sum(-1)


def quantile(probs: np.ndarray, borders: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """The q-quantile (...); q a float in (0, 1) or an array broadcasting against (...)."""
    from scipy.special import erfinv

    s_left, s_right = _tail_scales(np.asarray(borders, dtype=np.float64))  # before broadcasting
    p, b = _broadcast(probs, borders)
    k = p.shape[-1]
    q = np.asarray(q, dtype=np.float64)
    lead = np.broadcast_shapes(p.shape[:-1], q.shape)
    p, b = np.broadcast_to(p, lead + (k,)), np.broadcast_to(b, lead + (k + 1,))
    q = np.broadcast_to(q, lead)
    cum = p.cumsum(-1)
    j = np.clip((cum < q[..., None]).sum(-1), 0, k - 1)  # = searchsorted(cum, q)
    take = lambda a, i: np.take_along_axis(a, i[..., None], -1)[..., 0]  # noqa: E731
    before = np.where(j > 0, take(cum, np.maximum(j - 1, 0)), 0.0)
    pj = np.maximum(take(p, j), 1e-300)
    frac = np.clip((q - before) / pj, 0, 1)
    lo, hi = take(b, j), take(b, j + 1)
    inner = lo + frac * (hi - lo)
    left = b[..., 1] - s_left * math.sqrt(2) * erfinv(np.clip(1 - frac, 0, 1 - 1e-12))
    right = b[..., -2] + s_right * math.sqrt(2) * erfinv(np.clip(frac, 0, 1 - 1e-12))
    return np.where(j == 0, left, np.where(j == k - 1, right, inner))


def median(probs: np.ndarray, borders: np.ndarray) -> np.ndarray:
    return quantile(probs, borders, 0.5)


def mode(probs: np.ndarray, borders: np.ndarray) -> np.ndarray:
    """Centre of the bucket with the highest density (outer buckets: their inner border)."""
    p, b = _broadcast(probs, borders)
    j = (p / (b[..., 1:] - b[..., :-1])).argmax(-1)[..., None]
    mids = (b[..., 1:] + b[..., :-1]) / 2
    mids = np.concatenate([b[..., 1:2], mids[..., 1:-1], b[..., -2:-1]], -1)
    return np.take_along_axis(mids, j, -1)[..., 0]


def log_prob(probs: np.ndarray, borders: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Log-density of y (...) under the bar distribution; shape (...)."""
    p, b = _broadcast(probs, borders)
    k = p.shape[-1]
    y = np.asarray(y, dtype=np.float64)
    lead = np.broadcast_shapes(p.shape[:-1], y.shape)
    p = np.broadcast_to(p, lead + (k,))
    b = np.broadcast_to(b, lead + (k + 1,))
    y = np.broadcast_to(y, lead)
    idx = (b < y[..., None]).sum(-1) - 1  # = searchsorted(left) - 1
    idx = np.clip(idx, 0, k - 1)[..., None]
    with np.errstate(divide="ignore"):
        lp = np.log(np.take_along_axis(p, idx, -1)[..., 0])
    w = np.take_along_axis(b[..., 1:] - b[..., :-1], idx, -1)[..., 0]
    idx = idx[..., 0]
    s_left, s_right = _tail_scales(b)

    def hn_logpdf(t: np.ndarray, s: np.ndarray) -> np.ndarray:
        return 0.5 * math.log(2 / math.pi) - np.log(s) - 0.5 * (t / s) ** 2

    left = lp + hn_logpdf(np.maximum(b[..., 1] - y, 0), s_left)
    right = lp + hn_logpdf(np.maximum(y - b[..., -2], 0), s_right)
    return np.where(idx == 0, left, np.where(idx == k - 1, right, lp - np.log(w)))


def cdf(probs: np.ndarray, borders: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(Y <= y) (..., M) for points y (..., M): uniform inside buckets, half-normal tails."""
    from scipy.special import erf

    p, b = _broadcast(probs, borders)
    k = p.shape[-1]
    y = np.asarray(y, dtype=np.float64)
    cum = np.concatenate([np.zeros(p.shape[:-1] + (1,)), p.cumsum(-1)], -1)  # (..., K+1)
    out = np.empty(np.broadcast_shapes(p.shape[:-1], y.shape[:-1]) + y.shape[-1:])
    flat_b = np.broadcast_to(b, out.shape[:-1] + (k + 1,)).reshape(-1, k + 1)
    flat_c = np.broadcast_to(cum, out.shape[:-1] + (k + 1,)).reshape(-1, k + 1)
    flat_y = np.broadcast_to(y, out.shape).reshape(-1, out.shape[-1])
    s_left, s_right = _tail_scales(flat_b)
    for i, (bi, ci, yi) in enumerate(zip(flat_b, flat_c, flat_y, strict=True)):
        inner = np.interp(yi, bi[1:-1], ci[1:-1])
        lo = ci[1] * (1 - erf(np.maximum(bi[1] - yi, 0) / (s_left[i] * math.sqrt(2))))
        hi = ci[-2] + (1 - ci[-2]) * erf(np.maximum(yi - bi[-2], 0) / (s_right[i] * math.sqrt(2)))
        out.reshape(-1, out.shape[-1])[i] = np.where(yi < bi[1], lo,
                                                     np.where(yi > bi[-2], hi, inner))
    return out


def rebin(probs: np.ndarray, borders: np.ndarray, new_borders: np.ndarray) -> np.ndarray:
    """Probabilities (..., K') of the same distribution over ``new_borders`` (..., K' + 1).

    Mass beyond the new outer inner borders goes to the new outer buckets, so mixtures of
    members with different borders can be averaged bucket by bucket.
    """
    c = cdf(probs, borders, np.asarray(new_borders, dtype=np.float64)[..., 1:-1])
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c, np.ones(c.shape[:-1] + (1,))], -1)
    return np.maximum(np.diff(c, axis=-1), 0.0)


def rebin_matrix(borders: np.ndarray, new_borders: np.ndarray):
    """Sparse (K, K') matrix W with ``rebin(p, borders, new_borders) == p @ W`` for every p.

    Rebinning is linear in the probabilities, so one map serves every row that shares
    ``borders`` (K + 1,): what a context's rows do. Built from the pieces between the two
    sets of borders (O(K + K')) instead of a cdf per row; the outer buckets keep their
    half-normal tails.
    """
    from scipy.sparse import csr_matrix
    from scipy.special import erf, erfc

    b = np.asarray(borders, dtype=np.float64)
    g = np.asarray(new_borders, dtype=np.float64)
    k, k2 = len(b) - 1, len(g) - 1
    gi = g[1:-1]
    pts = np.unique(np.concatenate([b[1:-1], gi[(gi > b[1]) & (gi < b[-2])]]))
    lo, hi = pts[:-1], pts[1:]
    mid = (lo + hi) / 2
    i = np.searchsorted(b, mid) - 1  # inner source bucket 1 .. K - 2
    j = np.searchsorted(gi, mid)  # target bucket 0 .. K' - 1
    w = (hi - lo) / (b[i + 1] - b[i])
    # Buckets without width (a context whose targets are all equal: its borders, scaled
    # by a tiny spread, coincide in float32) are point masses where they sit.
    flat = np.flatnonzero(b[2:-1] <= b[1:-2]) + 1
    s_left, s_right = _tail_scales(b)
    tails = [np.diff(np.concatenate([[0.0], u, [1.0]])) for u in (
        erfc(np.maximum(b[1] - gi, 0) / (s_left * math.sqrt(2))),
        erf(np.maximum(gi - b[-2], 0) / (s_right * math.sqrt(2))))]
    rows = np.concatenate([i, flat, np.zeros(k2, np.int64), np.full(k2, k - 1)])
    cols = np.concatenate([j, np.searchsorted(gi, b[flat]), np.arange(k2), np.arange(k2)])
    values = np.concatenate([w, np.ones(len(flat)), *tails])
    return csr_matrix((values, (rows, cols)), shape=(k, k2))


@dataclass(frozen=True)
class BarDistribution:
    """Predictive distributions of n rows: bucket probabilities (n, K) over borders (K + 1,).

    ``borders`` may also be (n, K + 1), one set per row; every method broadcasts.
    ``offset`` (n,), if given, moves each row's distribution by that much (the stacked
    strategy's blend, :meth:`shift`): the borders stay shared, so n rows cost one
    probability per bucket and one offset, not a set of borders each.
    """

    probs: np.ndarray
    borders: np.ndarray
    offset: np.ndarray | None = None

    @classmethod
    def from_logits(cls, logits: np.ndarray, borders: np.ndarray) -> BarDistribution:
        """The distributions of the network's logits (n, K) over ``borders``."""
        return cls(softmax(logits), np.asarray(borders, dtype=np.float64))

    @classmethod
    def mixture(cls, logits: np.ndarray, borders: np.ndarray) -> BarDistribution:
        """The equal-weight mixture of B members' distributions, per row.

        logits (B, n, K), borders (B, K + 1): each member's borders are an affine map of the
        model's (scaled to its training targets). Members that saw the same training rows
        share borders and their probabilities are averaged bucket by bucket; otherwise every
        member is first rebinned to the members' mean borders, which keeps its mass.
        """
        p = softmax(logits)  # (B, n, K)
        b = np.asarray(borders, dtype=np.float64)  # (B, K + 1)
        common = b.mean(0)
        if not np.allclose(b, common[None], rtol=1e-6, atol=1e-9):
            p = rebin(p, b[:, None, :], common)  # members saw other rows
        return cls(p.mean(0), common)

    @classmethod
    def concatenate(cls, parts: list[BarDistribution]) -> BarDistribution:
        """The rows of ``parts`` (which share their borders) as one distribution."""
        offset = None if parts[0].offset is None else np.concatenate([d.offset for d in parts])
        return cls(np.concatenate([d.probs for d in parts]), parts[0].borders, offset)

    def affine(self, scale: float, shift: float) -> BarDistribution:
        """The distribution of ``scale * Y + shift`` (scale > 0): the borders move, not the
        probabilities (e.g. back from standardised targets to the user's units)."""
        offset = None if self.offset is None else self.offset * scale
        return BarDistribution(self.probs, self.borders * scale + shift, offset)

    def shift(self, delta: np.ndarray) -> BarDistribution:
        """The distribution of ``Y + delta`` per row (delta (n,)): exact, as an ``offset``."""
        d = np.asarray(delta, dtype=np.float64).reshape(-1)
        return BarDistribution(self.probs, self.borders,
                               d if self.offset is None else self.offset + d)

    def moved_borders(self) -> np.ndarray:
        """The borders with ``offset`` applied: (n, K + 1) where there is one, else as
        stored."""
        b = np.asarray(self.borders, dtype=np.float64)
        return b if self.offset is None else b + self.offset[:, None]

    def _moved(self, values: np.ndarray) -> np.ndarray:
        """Locations computed on the stored borders, moved by ``offset`` (per row)."""
        if self.offset is None:
            return values
        return values + self.offset.reshape(self.offset.shape + (1,) * (values.ndim - 1))

    def clip_tails(self, y_min: float, y_max: float, y_std: float) -> BarDistribution:
        """Outer tails that end within ``TAIL_MARGIN`` target spans of the training targets.

        The span is ``max(y_max - y_min, y_std)``; see :func:`clip_outer_borders` for why
        the outermost borders need it. With an ``offset`` the stored borders are clipped,
        before the move (so the borders stay shared).
        """
        return BarDistribution(self.probs, clip_outer_borders(
            self.borders, *tail_bounds(y_min, y_max, y_std)), self.offset)

    def warp(self, fn) -> BarDistribution:
        """The distribution of ``fn(Y)`` for an increasing ``fn`` (e.g. the inverse of a
        target transform): the borders move through ``fn``, the probabilities stay.

        Each bucket's mass is exact; inside a mapped bucket the density is again taken as
        uniform. Borders that ``fn`` maps onto each other (a clipped range) are kept
        ``1e-9`` spans apart, so every bucket keeps a width and a finite density. An
        ``offset`` is applied first, so the result has borders per row.
        """
        b = np.asarray(fn(self.moved_borders()), dtype=np.float64)
        if not np.isfinite(b).all():
            raise ValueError("warp: fn must map the borders to finite values")
        eps = 1e-9 * max(float(np.ptp(b)), 1e-12)
        ramp = eps * np.arange(b.shape[-1])
        return BarDistribution(self.probs, np.maximum.accumulate(b - ramp, axis=-1) + ramp)

    def mean(self) -> np.ndarray:
        """Expected value per row (n,)."""
        return self._moved(mean(self.probs, self.borders))

    def median(self) -> np.ndarray:
        return self._moved(median(self.probs, self.borders))

    def mode(self) -> np.ndarray:
        """Centre of the densest bucket per row (outer buckets: their inner border)."""
        return self._moved(mode(self.probs, self.borders))

    def quantile(self, q) -> np.ndarray:
        """Quantiles (n, len(q)) for levels q in (0, 1)."""
        q = np.atleast_1d(np.asarray(q, dtype=np.float64))
        return self._moved(quantile(self.probs[:, None, :], self._borders_per_level(),
                                    q[None, :]))

    def cdf(self, y) -> np.ndarray:
        """P(Y <= y) (n,) for targets y (n,)."""
        y = np.asarray(y, dtype=np.float64) - (0.0 if self.offset is None else self.offset)
        return cdf(self.probs, self.borders, y[..., None])[..., 0]

    def log_prob(self, y) -> np.ndarray:
        """Log-density (n,) of targets y (n,)."""
        y = np.asarray(y, dtype=np.float64) - (0.0 if self.offset is None else self.offset)
        return log_prob(self.probs, self.borders, y)

    def _borders_per_level(self) -> np.ndarray:
        b = np.asarray(self.borders, dtype=np.float64)
        return b if b.ndim == 1 else b[:, None, :]


__all__ = ["BarDistribution", "TAIL_MARGIN", "tail_bounds", "softmax", "mean", "median", "mode",
           "quantile", "cdf", "log_prob", "rebin", "rebin_matrix", "clip_outer_borders"]
