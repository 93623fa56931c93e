"""The bar (Riemann) distribution in torch, for pretraining: bucket borders and the loss.

Müller et al. (2022), Sec. 4: regression as classification over K buckets whose borders are
quantiles of prior targets. The distribution itself (density, tails, summaries) is defined
in :mod:`pfn.bar_distribution`, the numpy module that predictions use; :func:`log_prob` is
its log-density in torch (tested equal), the negative log-likelihood that training
minimises.

``log_prob`` takes ``logits`` (..., K) and ``borders`` (..., K + 1) that broadcast against
each other, so per-dataset borders in a user's units (see :meth:`pfn.model.PFN.scaled_borders`)
work as well as the model's standardised ones.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pfn.bar_distribution import HALF

if TYPE_CHECKING:  # functions import torch when called: importing this never loads it
    import torch


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
    left = (borders[..., 1] - borders[..., 0]) / HALF
    right = (borders[..., -1] - borders[..., -2]) / HALF
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
