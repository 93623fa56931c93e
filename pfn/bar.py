"""The bar (Riemann) distribution: regression as classification over buckets.

Müller et al. (2022), Sec. 4: the real line is cut into K buckets whose borders are
quantiles of targets sampled from the prior, so each bucket is equally likely a priori; the
network outputs K logits. Inside a bucket the density is uniform. The two outer buckets get
half-normal tails reaching to -inf and +inf (scaled so half of their mass lies within the
bucket's width), which gives every real value a finite log-density.

All functions take ``logits`` (..., K) and ``borders`` (..., K + 1) that broadcast against
each other, so per-dataset borders in a user's units (see :meth:`pfn.model.PFN.scaled_borders`)
work as well as the model's standardised ones.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# The torch functions (pretraining, torch engine) import torch when called; the numpy
# functions at the end serve torch-free (ONNX) inference, and importing this module must not
# load torch (a second of import time and ~250 MB of memory for ONNX Runtime users).

_HALF = math.sqrt(2.0) * 0.4769362762044699  # half-normal median / scale = sqrt2 * erfinv(.5)
_HN_MEAN = math.sqrt(2.0 / math.pi)  # half-normal mean / scale


def make_borders(samples: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Bucket borders (n_buckets + 1,) at equally spaced quantiles of prior target samples."""
    import torch

    s = samples.flatten().double()
    s = s[torch.isfinite(s)]
    if s.numel() < n_buckets:
        raise ValueError(f"need at least n_buckets={n_buckets} finite samples, got {s.numel()}")
    q = torch.quantile(s[: 10_000_000], torch.linspace(0, 1, n_buckets + 1, dtype=torch.float64))
    # Ties (e.g. many equal targets) would make zero-width buckets: force strict increase.
    min_gap = 1e-6 * float(q[-1] - q[0]).__abs__() + 1e-9
    for i in range(1, q.numel()):
        if q[i] <= q[i - 1]:
            q[i] = q[i - 1] + min_gap
    return q.float()


def _tail_scales(borders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    left = (borders[..., 1] - borders[..., 0]) / _HALF
    right = (borders[..., -1] - borders[..., -2]) / _HALF
    return left, right


def log_prob(logits: torch.Tensor, borders: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Log-density of y (...,) under the bar distribution; shape (...)."""
    import torch

    k = logits.shape[-1]
    logp = torch.log_softmax(logits.float(), -1)
    borders = borders.to(logp.dtype)
    y = y.to(logp.dtype)
    widths = borders[..., 1:] - borders[..., :-1]
    inner_b = borders.expand(*logp.shape[:-1], k + 1).contiguous()
    idx = torch.searchsorted(inner_b, y.unsqueeze(-1).contiguous()).squeeze(-1) - 1
    idx = idx.clamp(0, k - 1)
    lp_bucket = logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    w = widths.expand_as(logp).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    inner = lp_bucket - torch.log(w)
    s_left, s_right = _tail_scales(borders)
    s_left, s_right = s_left.expand_as(y), s_right.expand_as(y)
    b1 = borders[..., 1].expand_as(y)
    bk = borders[..., -2].expand_as(y)

    def hn_logpdf(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return 0.5 * math.log(2 / math.pi) - torch.log(s) - 0.5 * (t / s) ** 2

    left = lp_bucket + hn_logpdf((b1 - y).clamp_min(0), s_left)
    right = lp_bucket + hn_logpdf((y - bk).clamp_min(0), s_right)
    return torch.where(idx == 0, left, torch.where(idx == k - 1, right, inner))


def mean(logits: torch.Tensor, borders: torch.Tensor) -> torch.Tensor:
    """Expected value (...)."""
    import torch

    p = torch.softmax(logits.float(), -1)
    borders = borders.to(p.dtype)
    mids = (borders[..., 1:] + borders[..., :-1]) / 2
    s_left, s_right = _tail_scales(borders)
    mids = torch.cat([(borders[..., 1] - s_left * _HN_MEAN).unsqueeze(-1), mids[..., 1:-1],
                      (borders[..., -2] + s_right * _HN_MEAN).unsqueeze(-1)], -1)
    return (p * mids).sum(-1)


def quantile(logits: torch.Tensor, borders: torch.Tensor, q: float | torch.Tensor
             ) -> torch.Tensor:
    """The q-quantile (...); q a float in (0, 1) or a tensor broadcasting against (...)."""
    import torch

    p = torch.softmax(logits.double(), -1)
    borders = borders.to(p.dtype).expand(*p.shape[:-1], p.shape[-1] + 1)
    q = torch.as_tensor(q, dtype=p.dtype).expand(p.shape[:-1])
    k = p.shape[-1]
    cum = p.cumsum(-1)
    j = torch.searchsorted(cum.contiguous(), q.unsqueeze(-1).contiguous()).squeeze(-1)
    j = j.clamp(0, k - 1)
    before = torch.where(j > 0, cum.gather(-1, (j - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1),
                         torch.zeros_like(q))
    pj = p.gather(-1, j.unsqueeze(-1)).squeeze(-1).clamp_min(1e-300)
    frac = ((q - before) / pj).clamp(0, 1)
    lo = borders.gather(-1, j.unsqueeze(-1)).squeeze(-1)
    hi = borders.gather(-1, (j + 1).unsqueeze(-1)).squeeze(-1)
    inner = lo + frac * (hi - lo)
    s_left, s_right = _tail_scales(borders)
    erfinv = torch.special.erfinv
    left = borders[..., 1] - s_left * math.sqrt(2) * erfinv((1 - frac).clamp(0, 1 - 1e-12))
    right = borders[..., -2] + s_right * math.sqrt(2) * erfinv(frac.clamp(0, 1 - 1e-12))
    out = torch.where(j == 0, left, torch.where(j == k - 1, right, inner))
    return out.float()


def median(logits: torch.Tensor, borders: torch.Tensor) -> torch.Tensor:
    return quantile(logits, borders, 0.5)


def mode(logits: torch.Tensor, borders: torch.Tensor) -> torch.Tensor:
    """Centre of the bucket with the highest density (outer buckets: their inner border)."""
    import torch

    p = torch.softmax(logits.float(), -1)
    borders = borders.to(p.dtype).expand(*p.shape[:-1], p.shape[-1] + 1)
    widths = borders[..., 1:] - borders[..., :-1]
    j = (p / widths).argmax(-1, keepdim=True)
    mids = (borders[..., 1:] + borders[..., :-1]) / 2
    mids = torch.cat([borders[..., 1:2], mids[..., 1:-1], borders[..., -2:-1]], -1)
    return mids.gather(-1, j).squeeze(-1)


# ----- numpy inference (torch-free) ---------------------------------------------------------
# The estimators average members' bucket probabilities, so these take probabilities
# ``probs`` (..., K) (rows sum to 1), not logits; ``borders`` (..., K + 1) broadcast as above.
# They compute the same quantities as the torch functions (tested against them).


def softmax_np(logits: np.ndarray) -> np.ndarray:
    """Bucket probabilities (..., K) from logits (..., K), in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _tail_scales_np(borders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ((borders[..., 1] - borders[..., 0]) / _HALF,
            (borders[..., -1] - borders[..., -2]) / _HALF)


def clip_outer_borders_np(borders: np.ndarray, lo: float, hi: float) -> np.ndarray:
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


def mean_np(probs: np.ndarray, borders: np.ndarray) -> np.ndarray:
    """Expected value (...)."""
    p, b = _broadcast(probs, borders)
    mids = (b[..., 1:] + b[..., :-1]) / 2
    s_left, s_right = _tail_scales_np(b)
    mids = np.concatenate([(b[..., 1] - s_left * _HN_MEAN)[..., None], mids[..., 1:-1],
                           (b[..., -2] + s_right * _HN_MEAN)[..., None]], -1)
    return (p * mids).sum(-1)


def quantile_np(probs: np.ndarray, borders: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """The q-quantile (...); q a float in (0, 1) or an array broadcasting against (...)."""
    from scipy.special import erfinv

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
    s_left, s_right = _tail_scales_np(b)
    left = b[..., 1] - s_left * math.sqrt(2) * erfinv(np.clip(1 - frac, 0, 1 - 1e-12))
    right = b[..., -2] + s_right * math.sqrt(2) * erfinv(np.clip(frac, 0, 1 - 1e-12))
    return np.where(j == 0, left, np.where(j == k - 1, right, inner))


def median_np(probs: np.ndarray, borders: np.ndarray) -> np.ndarray:
    return quantile_np(probs, borders, 0.5)


def mode_np(probs: np.ndarray, borders: np.ndarray) -> np.ndarray:
    """Centre of the bucket with the highest density (outer buckets: their inner border)."""
    p, b = _broadcast(probs, borders)
    j = (p / (b[..., 1:] - b[..., :-1])).argmax(-1)[..., None]
    mids = (b[..., 1:] + b[..., :-1]) / 2
    mids = np.concatenate([b[..., 1:2], mids[..., 1:-1], b[..., -2:-1]], -1)
    return np.take_along_axis(mids, j, -1)[..., 0]


def log_prob_np(probs: np.ndarray, borders: np.ndarray, y: np.ndarray) -> np.ndarray:
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
    s_left, s_right = _tail_scales_np(b)

    def hn_logpdf(t: np.ndarray, s: np.ndarray) -> np.ndarray:
        return 0.5 * math.log(2 / math.pi) - np.log(s) - 0.5 * (t / s) ** 2

    left = lp + hn_logpdf(np.maximum(b[..., 1] - y, 0), s_left)
    right = lp + hn_logpdf(np.maximum(y - b[..., -2], 0), s_right)
    return np.where(idx == 0, left, np.where(idx == k - 1, right, lp - np.log(w)))


def cdf_np(probs: np.ndarray, borders: np.ndarray, y: np.ndarray) -> np.ndarray:
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
    s_left, s_right = _tail_scales_np(flat_b)
    for i, (bi, ci, yi) in enumerate(zip(flat_b, flat_c, flat_y, strict=True)):
        inner = np.interp(yi, bi[1:-1], ci[1:-1])
        lo = ci[1] * (1 - erf(np.maximum(bi[1] - yi, 0) / (s_left[i] * math.sqrt(2))))
        hi = ci[-2] + (1 - ci[-2]) * erf(np.maximum(yi - bi[-2], 0) / (s_right[i] * math.sqrt(2)))
        out.reshape(-1, out.shape[-1])[i] = np.where(yi < bi[1], lo,
                                                     np.where(yi > bi[-2], hi, inner))
    return out


def rebin_np(probs: np.ndarray, borders: np.ndarray, new_borders: np.ndarray) -> np.ndarray:
    """Probabilities (..., K') of the same distribution over ``new_borders`` (..., K' + 1).

    Mass beyond the new outer inner borders goes to the new outer buckets, so mixtures of
    members with different borders can be averaged bucket by bucket.
    """
    c = cdf_np(probs, borders, np.asarray(new_borders, dtype=np.float64)[..., 1:-1])
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c, np.ones(c.shape[:-1] + (1,))], -1)
    return np.maximum(np.diff(c, axis=-1), 0.0)
