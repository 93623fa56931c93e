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

import torch

_HALF = math.sqrt(2.0) * 0.4769362762044699  # half-normal median / scale = sqrt2 * erfinv(.5)
_HN_MEAN = math.sqrt(2.0 / math.pi)  # half-normal mean / scale


def make_borders(samples: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Bucket borders (n_buckets + 1,) at equally spaced quantiles of prior target samples."""
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
    p = torch.softmax(logits.float(), -1)
    borders = borders.to(p.dtype).expand(*p.shape[:-1], p.shape[-1] + 1)
    widths = borders[..., 1:] - borders[..., :-1]
    j = (p / widths).argmax(-1, keepdim=True)
    mids = (borders[..., 1:] + borders[..., :-1]) / 2
    mids = torch.cat([borders[..., 1:2], mids[..., 1:-1], borders[..., -2:-1]], -1)
    return mids.gather(-1, j).squeeze(-1)
