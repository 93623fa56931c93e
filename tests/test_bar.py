"""The bar distribution is a proper density whose summaries agree with its numerical CDF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pfn import bar

K = 30


def _setup(seed: int = 0, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (batch, K) with visible mass in both outer buckets, borders (batch, K + 1)."""
    g = torch.Generator().manual_seed(seed)
    borders = bar.make_borders(torch.randn(50_000, generator=g) ** 3, K)
    logits = 2 * torch.randn(batch, K, generator=g)
    logits[:, 0] = logits[:, -1] = 1.0  # the tails must carry mass to test them
    # Per-dataset borders in other units, as PFN.scaled_borders gives them.
    scale = torch.rand(batch, 1, generator=g) * 5 + 0.1
    shift = torch.randn(batch, 1, generator=g) * 10
    return logits, borders.unsqueeze(0) * scale + shift


def _grid(borders: torch.Tensor, per_bucket: int = 200, tail_widths: float = 60.0,
          tail_points: int = 20_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint-rule nodes and weights (batch, M) covering the tails out to ~60 tail scales.

    Inside a bucket the density is smooth, so each bucket is integrated separately; the
    half-normal tails are integrated far past where their mass is below 1e-300.
    """
    b0, b1, bk1, bk = borders[:, :1], borders[:, 1:2], borders[:, -2:-1], borders[:, -1:]
    s_left = (b1 - b0) / bar._HALF
    s_right = (bk - bk1) / bar._HALF
    t = (torch.arange(tail_points, dtype=torch.float64) + 0.5) / tail_points
    left = b1 - t.flip(0) * tail_widths * s_left  # (batch, tail_points), up to b1
    right = bk1 + t * tail_widths * s_right  # from b_{K-1}
    u = (torch.arange(per_bucket, dtype=torch.float64) + 0.5) / per_bucket
    lo, hi = borders[:, 1:-2].unsqueeze(-1), borders[:, 2:-1].unsqueeze(-1)
    inner = (lo + u * (hi - lo)).flatten(1)  # inner buckets 1..K-2
    nodes = torch.cat([left, inner, right], 1)
    w = torch.cat([(tail_widths * s_left / tail_points).expand_as(left),
                   ((hi - lo) / per_bucket).expand(-1, -1, per_bucket).flatten(1),
                   (tail_widths * s_right / tail_points).expand_as(right)], 1)
    return nodes, w


def _density(logits: torch.Tensor, borders: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """p(y) at nodes (batch, M), evaluated in float64 via log_prob."""
    logits = logits.double().unsqueeze(1).expand(-1, nodes.shape[1], -1)
    lp = bar.log_prob(logits, borders.double().unsqueeze(1), nodes.double())
    return lp.exp()


def test_log_prob_integrates_to_one() -> None:
    logits, borders = _setup()
    borders = borders.double()
    nodes, w = _grid(borders)
    total = (_density(logits, borders, nodes) * w).sum(1)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)


def test_log_prob_finite_far_in_tails() -> None:
    logits, borders = _setup()
    y = torch.stack([borders[:, 0] - 1e3, borders[:, -1] + 1e3], 1)
    lp = bar.log_prob(logits.unsqueeze(1).expand(-1, 2, -1), borders.unsqueeze(1), y)
    assert torch.isfinite(lp).all() and (lp < -10).all()


def test_mean_matches_numerical_integral() -> None:
    logits, borders = _setup(1)
    nodes, w = _grid(borders.double())
    p = _density(logits, borders, nodes)
    want = (p * nodes * w).sum(1)
    scale = borders[:, -1] - borders[:, 0]
    got = bar.mean(logits, borders).double()
    assert ((got - want).abs() / scale).max() < 1e-5


@pytest.mark.parametrize("q", [1e-4, 0.01, 0.1, 0.37, 0.5, 0.9, 0.99, 1 - 1e-4])
def test_quantile_matches_numerical_cdf(q: float) -> None:
    logits, borders = _setup(2)
    nodes, w = _grid(borders.double())
    p = _density(logits, borders, nodes)
    cdf_at = (p * w).cumsum(1)  # CDF at each node's right edge, nodes sorted
    qv = bar.quantile(logits, borders, q).double()
    # The CDF at the quantile, by interpolating the numerical CDF (fine grid).
    edges = nodes + w / 2
    cdf = np.array([np.interp(qv[i].item(), edges[i].numpy(), cdf_at[i].numpy())
                    for i in range(len(qv))])
    assert np.abs(cdf - q).max() < 2e-5


def test_quantile_hits_outer_buckets() -> None:
    """Small and large q land in the half-normal tails, beyond the inner borders."""
    logits, borders = _setup(3)
    assert (bar.quantile(logits, borders, 1e-4) < borders[:, 1]).all()
    assert (bar.quantile(logits, borders, 1 - 1e-4) > borders[:, -2]).all()


def test_quantile_monotone_and_median() -> None:
    logits, borders = _setup(4)
    qs = torch.linspace(0.0005, 0.9995, 999, dtype=torch.float64)
    values = torch.stack([bar.quantile(logits, borders, float(q)) for q in qs], -1)
    assert (values.diff(dim=-1) >= 0).all()
    assert (values[:, -1] > values[:, 0]).all()
    torch.testing.assert_close(bar.median(logits, borders), bar.quantile(logits, borders, 0.5))
    # A tensor of levels broadcasts like the float version.
    q = torch.full((logits.shape[0],), 0.3)
    torch.testing.assert_close(bar.quantile(logits, borders, q),
                               bar.quantile(logits, borders, 0.3))


def test_sample_moments_agree_with_mean_and_median() -> None:
    """Inverse-CDF samples (via quantile) match mean and median within Monte Carlo error."""
    logits, borders = _setup(5, batch=2)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    u = torch.rand(2, n, generator=g, dtype=torch.float64).clamp(1e-9, 1 - 1e-9)
    samples = bar.quantile(logits.unsqueeze(1).expand(-1, n, -1), borders.unsqueeze(1), u)
    se = samples.double().std(1) / math.sqrt(n)
    assert ((samples.double().mean(1) - bar.mean(logits, borders).double()).abs()
            < 5 * se).all()
    below = (samples <= bar.median(logits, borders).unsqueeze(1)).double().mean(1)
    assert ((below - 0.5).abs() < 5 * math.sqrt(0.25 / n)).all()


def test_make_borders_strictly_increasing() -> None:
    g = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(10_000, generator=g),
        torch.cat([torch.zeros(6_000), torch.randn(4_000, generator=g)]),  # many ties
        torch.randint(0, 3, (5_000,), generator=g).float(),  # 3 distinct values
        torch.cat([torch.randn(1_000, generator=g), torch.tensor([float("nan"), float("inf")])]),
    ]
    for samples in cases:
        b = bar.make_borders(samples, 100)
        assert b.shape == (101,)
        assert torch.isfinite(b).all()
        assert (b.diff() > 0).all()
        finite = samples[torch.isfinite(samples)]
        assert b[0] == finite.min() and b[-1] >= finite.max()


def test_make_borders_needs_enough_samples() -> None:
    with pytest.raises(ValueError, match="n_buckets"):
        bar.make_borders(torch.tensor([0.0, 1.0, float("nan")]), 3)


def test_clip_outer_borders_bounds_the_mean_and_keeps_inner_buckets():
    borders = np.concatenate([[-8.0], np.linspace(-3, 3.8, 9), [240.0]])  # 10 buckets
    probs = np.full(10, 0.01)
    probs[5] = 1 - probs.sum() + 0.01
    wild = bar.mean_np(probs, borders)
    assert wild > 2.0  # 1% mass in a 236-wide tail bucket drags the mean far right
    clipped = bar.clip_outer_borders_np(borders, -4.0, 5.0)
    np.testing.assert_array_equal(clipped[1:-1], borders[1:-1])
    assert (clipped[0], clipped[-1]) == (-4.0, 5.0)
    assert abs(bar.mean_np(probs, clipped)) < 1.0
    np.testing.assert_allclose(bar.median_np(probs, clipped), bar.median_np(probs, borders))
    # Borders already inside the range are left alone, and order is always kept.
    np.testing.assert_array_equal(bar.clip_outer_borders_np(borders, -100, 300), borders)
    tight = bar.clip_outer_borders_np(borders, 0.0, 0.0)
    assert (np.diff(tight) > 0).all()
