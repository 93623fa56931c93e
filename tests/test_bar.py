"""The bar distribution (pfn/bar_distribution.py, numpy; pfn/bar.py, the torch loss).

It is a proper density whose summaries agree with its numerical integrals; members combine
into a mixture; results equal the implementation before the numpy module was split out
(tests/data/bar_golden.npz, written by the estimators' code at commit e2a7c8c).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pfn import bar_distribution as bd
from pfn.bar_distribution import BarDistribution

K = 30
GOLDEN = Path(__file__).parent / "data" / "bar_golden.npz"


def _setup(seed: int = 0, batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (batch, K) with visible mass in both outer buckets, borders (batch, K + 1)
    at quantiles of heavy-tailed samples, in other units per row (as scaled borders are)."""
    rng = np.random.default_rng(seed)
    borders = np.quantile(rng.standard_normal(50_000) ** 3, np.linspace(0, 1, K + 1))
    logits = 2 * rng.standard_normal((batch, K))
    logits[:, 0] = logits[:, -1] = 1.0  # the tails must carry mass to test them
    scale = rng.random((batch, 1)) * 5 + 0.1
    return bd.softmax(logits), borders[None] * scale + rng.standard_normal((batch, 1)) * 10


def _grid(borders: np.ndarray, per_bucket: int = 200, tail_widths: float = 60.0,
          tail_points: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint-rule nodes and weights (batch, M) covering the tails out to 60 tail scales.

    Inside a bucket the density is constant, so each bucket is integrated separately; the
    half-normal tails are integrated far past where their mass is below 1e-300.
    """
    b0, b1, bk1, bk = borders[:, :1], borders[:, 1:2], borders[:, -2:-1], borders[:, -1:]
    s_left, s_right = (b1 - b0) / bd.HALF, (bk - bk1) / bd.HALF
    t = (np.arange(tail_points) + 0.5) / tail_points
    left = b1 - t[::-1] * tail_widths * s_left  # up to b1
    right = bk1 + t * tail_widths * s_right  # from b_{K-1}
    u = (np.arange(per_bucket) + 0.5) / per_bucket
    lo, hi = borders[:, 1:-2, None], borders[:, 2:-1, None]
    inner = (lo + u * (hi - lo)).reshape(len(borders), -1)
    nodes = np.concatenate([left, inner, right], 1)
    w = np.concatenate([np.broadcast_to(tail_widths * s_left / tail_points, left.shape),
                        np.broadcast_to((hi - lo) / per_bucket, lo.shape[:2] + (per_bucket,))
                        .reshape(len(borders), -1),
                        np.broadcast_to(tail_widths * s_right / tail_points, right.shape)], 1)
    return nodes, w


def _density(probs: np.ndarray, borders: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    return np.exp(bd.log_prob(probs[:, None, :], borders[:, None, :], nodes))


# ----- the density and its summaries ----------------------------------------------------------
def test_density_integrates_to_one_and_is_finite_far_out():
    p, b = _setup()
    nodes, w = _grid(b)
    np.testing.assert_allclose((_density(p, b, nodes) * w).sum(1), 1.0, atol=1e-6)
    far = np.stack([b[:, 0] - 1e3, b[:, -1] + 1e3], 1)
    lp = bd.log_prob(p[:, None, :], b[:, None, :], far)
    assert np.isfinite(lp).all() and (lp < -10).all()


def test_mean_matches_numerical_integral():
    p, b = _setup(1)
    nodes, w = _grid(b)
    want = (_density(p, b, nodes) * nodes * w).sum(1)
    assert (np.abs(bd.mean(p, b) - want) / (b[:, -1] - b[:, 0])).max() < 1e-6


@pytest.mark.parametrize("q", [1e-4, 0.01, 0.1, 0.37, 0.5, 0.9, 0.99, 1 - 1e-4])
def test_quantile_and_cdf_match_numerical_cdf(q: float):
    p, b = _setup(2)
    nodes, w = _grid(b)
    cdf_at = (_density(p, b, nodes) * w).cumsum(1)  # CDF at each node's right edge
    qv = bd.quantile(p, b, q)
    cdf = np.array([np.interp(qv[i], nodes[i] + w[i] / 2, cdf_at[i]) for i in range(len(qv))])
    assert np.abs(cdf - q).max() < 2e-5
    np.testing.assert_allclose(bd.cdf(p, b, qv[:, None])[:, 0], q, atol=1e-9)


def test_quantiles_reach_the_tails_are_monotone_and_give_the_median():
    p, b = _setup(3)
    assert (bd.quantile(p, b, 1e-4) < b[:, 1]).all()
    assert (bd.quantile(p, b, 1 - 1e-4) > b[:, -2]).all()
    levels = np.linspace(0.0005, 0.9995, 999)
    values = bd.quantile(p[:, None, :], b[:, None, :], levels[None, :])  # (batch, 999)
    assert (np.diff(values, axis=-1) >= 0).all()
    np.testing.assert_array_equal(bd.median(p, b), bd.quantile(p, b, 0.5))


def test_inverse_cdf_samples_agree_with_mean_and_median():
    p, b = _setup(5, batch=2)
    n = 200_000
    u = np.random.default_rng(0).random((2, n)).clip(1e-9, 1 - 1e-9)
    samples = bd.quantile(p[:, None, :], b[:, None, :], u)
    se = samples.std(1) / math.sqrt(n)
    assert (np.abs(samples.mean(1) - bd.mean(p, b)) < 5 * se).all()
    below = (samples <= bd.median(p, b)[:, None]).mean(1)
    assert (np.abs(below - 0.5) < 5 * math.sqrt(0.25 / n)).all()


def test_mode_is_the_centre_of_the_densest_bucket():
    b = np.array([-10.0, 0.0, 1.0, 3.0, 4.0, 20.0])
    p = np.array([[0.1, 0.2, 0.3, 0.25, 0.15],  # densities 0.01, 0.2, 0.15, 0.25, 0.009
                  [0.9, 0.02, 0.02, 0.02, 0.04]])  # outer bucket densest: its inner border
    np.testing.assert_array_equal(bd.mode(p, b), [3.5, 0.0])


# ----- combining members, tails ------------------------------------------------------------
def test_rebinning_keeps_the_distribution():
    p, b = _setup(1, batch=5)
    np.testing.assert_allclose(bd.rebin(p, b, b), p, atol=1e-12)
    fine = np.empty((5, 2 * K + 1))  # every bucket split in two
    fine[:, 0::2], fine[:, 1::2] = b, (b[:, 1:] + b[:, :-1]) / 2
    p_fine = bd.rebin(p, b, fine)
    np.testing.assert_allclose(p_fine.sum(-1), 1.0)
    inner = bd.quantile(p[:, None, :], b[:, None, :], np.array([[0.2, 0.5, 0.8]]))
    np.testing.assert_allclose(bd.cdf(p_fine, fine, inner), bd.cdf(p, b, inner), atol=1e-9)
    shifted = b * 1.01 + 0.002 * (b[:, -1:] - b[:, :1])  # as members on other rows give
    p2 = bd.rebin(p, b, shifted)
    np.testing.assert_allclose(p2.sum(-1), 1.0)
    width = np.diff(b[:, 1:-1], axis=-1).max(-1)
    assert (np.abs(bd.mean(p2, shifted) - bd.mean(p, b)) < width).all()


def test_mixture_of_members_with_shared_borders_averages_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, K))
    borders = np.tile(np.linspace(-3, 3, K + 1), (3, 1))
    mix = BarDistribution.mixture(logits, borders)
    np.testing.assert_allclose(mix.probs, bd.softmax(logits).mean(0))
    np.testing.assert_allclose(mix.borders, borders[0], rtol=1e-15)
    one = BarDistribution.from_logits(logits[0], borders[0])
    moved = one.affine(2.0, 5.0)
    np.testing.assert_allclose(moved.mean(), 2.0 * one.mean() + 5.0)
    np.testing.assert_allclose(moved.quantile([0.3])[:, 0], 2.0 * one.quantile([0.3])[:, 0] + 5)


def test_clip_tails_bounds_the_mean_and_keeps_inner_buckets():
    borders = np.concatenate([[-8.0], np.linspace(-3, 3.8, 9), [240.0]])  # 10 buckets
    probs = np.full((1, 10), 0.01)
    probs[0, 5] = 1 - probs.sum() + 0.01
    wild = BarDistribution(probs, borders)
    assert wild.mean()[0] > 2.0  # 1% mass in a 236-wide tail bucket drags the mean right
    clipped = wild.clip_tails(y_min=-3.0, y_max=3.0, y_std=1.0)  # span 6: tails end at -6, 6
    np.testing.assert_array_equal(clipped.borders[1:-1], borders[1:-1])
    assert (clipped.borders[0], clipped.borders[-1]) == (-6.0, 6.0)
    assert abs(clipped.mean()[0]) < 1.0
    np.testing.assert_allclose(clipped.median(), wild.median())
    np.testing.assert_array_equal(bd.clip_outer_borders(borders, -100, 300), borders)
    assert (np.diff(bd.clip_outer_borders(borders, 0.0, 0.0)) > 0).all()  # order is kept


@pytest.mark.parametrize("case", ["same", "differ"])
def test_results_equal_the_implementation_before_the_split(case):
    """Members' outputs -> distribution -> summaries, exactly as at commit e2a7c8c."""
    g = np.load(GOLDEN)
    y_mean, y_std, y_min, y_max = g["stats"]
    dist = (BarDistribution.mixture(g[f"{case}_logits"], g[f"{case}_borders"])
            .affine(y_std, y_mean).clip_tails(y_min, y_max, y_std))
    np.testing.assert_array_equal(dist.probs, g[f"{case}_probs"])
    np.testing.assert_array_equal(dist.borders, g[f"{case}_out_borders"])
    for name, got in [("mean", dist.mean()), ("median", dist.median()), ("mode", dist.mode()),
                      ("quantile", dist.quantile(g["q"])), ("log_prob", dist.log_prob(g["y"])),
                      ("cdf", dist.cdf(g["y"]))]:
        np.testing.assert_array_equal(got, g[f"{case}_{name}"], err_msg=name)


def test_concatenate_and_shapes():
    p, b = _setup(6, batch=5)
    parts = [BarDistribution(p[:2], b[0]), BarDistribution(p[2:], b[0])]
    whole = BarDistribution.concatenate(parts)
    np.testing.assert_array_equal(whole.mean(), BarDistribution(p, b[0]).mean())
    assert whole.quantile([0.1, 0.9]).shape == (5, 2)
    assert whole.cdf(np.zeros(5)).shape == whole.log_prob(np.zeros(5)).shape == (5,)
    per_row = BarDistribution(p, b)  # one set of borders per row
    assert per_row.quantile([0.1, 0.5, 0.9]).shape == (5, 3)
    np.testing.assert_allclose(per_row.quantile([0.5])[:, 0], per_row.median())


# ----- the torch side: borders from prior samples, the training loss ---------------------
def test_torch_log_prob_equals_the_numpy_density():
    torch = pytest.importorskip("torch")
    from pfn import bar

    p, b = _setup(7)
    b = b.astype(np.float32).astype(np.float64)  # the loss computes in float32
    logits = np.log(p)
    y = np.stack([b[:, 0] - 50, b[:, 1] - 0.1, (b[:, 10] + b[:, 11]) / 2, b[:, -1] + 50], 1)
    got = bar.log_prob(torch.tensor(logits)[:, None, :].expand(-1, y.shape[1], -1),
                       torch.tensor(b)[:, None, :], torch.tensor(y))  # float32 inside
    np.testing.assert_allclose(got.numpy(), bd.log_prob(p[:, None, :], b[:, None, :], y),
                               rtol=1e-4, atol=1e-4)


def test_make_borders_strictly_increasing_and_needs_enough_samples():
    torch = pytest.importorskip("torch")
    from pfn import bar

    g = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(10_000, generator=g),
        torch.cat([torch.zeros(6_000), torch.randn(4_000, generator=g)]),  # many ties
        torch.randint(0, 3, (5_000,), generator=g).float(),  # 3 distinct values
        torch.cat([torch.randn(1_000, generator=g), torch.tensor([float("nan"), float("inf")])]),
    ]
    for samples in cases:
        b = bar.make_borders(samples, 100)
        assert b.shape == (101,) and torch.isfinite(b).all() and (b.diff() > 0).all()
        finite = samples[torch.isfinite(samples)]
        assert b[0] == finite.min() and b[-1] >= finite.max()
    with pytest.raises(ValueError, match="n_buckets"):
        bar.make_borders(torch.tensor([0.0, 1.0, float("nan")]), 3)
