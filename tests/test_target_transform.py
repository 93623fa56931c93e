"""Regression targets through a Yeo-Johnson transform (pfn/target_transform.py): the map is
increasing and inverts exactly, the predictive distribution is mapped back exactly, "auto"
uses it with local contexts or gross outliers only, and fitted estimators keep it through
save and load."""

from __future__ import annotations

import numpy as np
import pytest

from pfn import PFNRegressor
from pfn.bar_distribution import BarDistribution
from pfn.target_transform import TargetTransform, _yeo_johnson_inverse, gross_outliers
from pfn.transforms import _yeo_johnson


def _skewed(n=360, seed=0):
    """A log-normal target (wages, durations): the case the transform is for."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, 50 * np.exp(X[:, 0] + 0.3 * rng.normal(size=n))


@pytest.mark.parametrize("lam", [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0])
def test_yeo_johnson_inverts_on_both_sides(lam):
    x = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(_yeo_johnson_inverse(_yeo_johnson(x, lam), lam), x, atol=1e-9)


def test_inverse_beyond_the_transforms_range_is_infinite_then_clipped():
    # lambda < 0: the positive side tends to 1 / |lambda| and never reaches it
    assert _yeo_johnson_inverse(np.array([2.5]), -0.5)[0] == np.inf
    assert _yeo_johnson_inverse(np.array([-2.5]), 2.5)[0] == -np.inf
    t = TargetTransform("power").fit(_skewed()[1])
    out = t.inverse(np.array([-1e6, 1e6]))
    assert np.isfinite(out).all() and out[0] == t.low and out[1] == t.high


def test_power_fits_a_skewed_target_independently_of_its_units():
    _, y = _skewed()
    a = TargetTransform("power").fit(y)
    b = TargetTransform("power").fit(1000 * y + 7)
    assert a.lam < 1 and a.lam == b.lam  # a right-skewed target is compressed
    np.testing.assert_allclose(a.forward(y), b.forward(1000 * y + 7), atol=1e-9)
    t = a.forward(np.sort(y))
    assert (np.diff(t) > 0).all()  # increasing
    np.testing.assert_allclose(a.inverse(a.forward(y)), y, rtol=1e-9)
    skew = [abs(((v - v.mean()) ** 3).mean() / v.std() ** 3) for v in (y, t)]
    assert skew[1] < skew[0] / 3


def test_none_is_the_identity_and_bad_kinds_are_refused():
    y = np.array([3.0, -1.0, 10.0])
    t = TargetTransform("none").fit(y)
    assert (t.forward(y) == y).all() and (t.inverse(y) == y).all()
    with pytest.raises(ValueError, match="target transform must be one of"):
        TargetTransform("log").fit(y)


def test_warp_moves_the_borders_and_keeps_every_bucket_wide():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(20), size=5)
    borders = np.linspace(-3, 3, 21)
    dist = BarDistribution(p, borders)
    warped = dist.warp(np.exp)
    assert warped.probs is dist.probs
    inner = borders[1:-1]  # the mass below every border is exact
    for b in inner[::4]:
        np.testing.assert_allclose(warped.cdf(np.full(5, np.exp(b))), dist.cdf(np.full(5, b)),
                                   atol=1e-9)
    fine = BarDistribution(rng.dirichlet(np.ones(2000), size=5), np.linspace(-3, 3, 2001))
    q = [0.1, 0.5, 0.9]  # inside a bucket, up to the bucket's resolution
    np.testing.assert_allclose(fine.warp(np.exp).quantile(q), np.exp(fine.quantile(q)),
                               rtol=1e-2)
    clipped = dist.warp(lambda b: np.clip(b, -1, 1))  # borders mapped onto each other
    assert (np.diff(clipped.borders) > 0).all()
    assert np.isfinite(clipped.log_prob(np.zeros(5))).all()
    with pytest.raises(ValueError, match="finite"):
        dist.warp(lambda b: np.where(b > 0, np.inf, b))


def test_auto_transforms_only_with_local_contexts():
    X, y = _skewed()
    one = PFNRegressor(n_estimators=2).fit(X[:300], y[:300])
    local = PFNRegressor(n_estimators=2, max_train_rows=100).fit(X[:300], y[:300])
    assert one.target_transform_.kind == "none" and local.target_transform_.kind == "power"
    assert PFNRegressor(n_estimators=2, target_transform="power").fit(
        X[:300], y[:300]).target_transform_.kind == "power"


def test_gross_outliers_rule():
    rng = np.random.default_rng(0)
    y = rng.normal(size=800)
    assert not gross_outliers(y) and not gross_outliers(_skewed()[1])
    assert gross_outliers(np.concatenate([y, [1e6, 1e6]]))  # "999999" codes
    assert gross_outliers(np.concatenate([y, np.full(8, 100.0)]))  # 1% far out
    assert not gross_outliers(np.concatenate([np.zeros(600), y]))  # no robust scale


def test_auto_transforms_a_few_gross_outliers_within_one_context():
    """Two targets of 1e6 among 300 near N(0, 1): untransformed, the network's buckets are
    scaled by their standard deviation (about 80,000) and every prediction is off by far
    more than the signal; "auto" transforms them, so predictions follow the signal."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=400)
    y[:2] = 1e6
    reg = PFNRegressor(n_estimators=2).fit(X[:300], y[:300])
    assert reg.target_transform_.kind == "power"
    median = reg.predict_quantiles(X[300:], [0.5])[:, 0]
    assert np.median(np.abs(median - X[300:, 0])) < 0.2
    plain = PFNRegressor(n_estimators=2, target_transform="none").fit(X[:300], y[:300])
    assert np.median(np.abs(plain.predict_quantiles(X[300:], [0.5])[:, 0] - X[300:, 0])) > 1


def test_power_predictions_are_in_the_users_units():
    X, y = _skewed()
    reg = PFNRegressor(n_estimators=2, target_transform="power").fit(X[:300], y[:300])
    pred, q = reg.predict(X[300:]), reg.predict_quantiles(X[300:], [0.05, 0.5, 0.95])
    assert np.corrcoef(np.log(pred), X[300:, 0])[0, 1] > 0.8
    assert (np.diff(q, axis=1) > 0).all()
    assert ((y[300:] >= q[:, 0]) & (y[300:] <= q[:, 2])).mean() > 0.75
    dist = reg.predict_distribution(X[300:])
    np.testing.assert_allclose(dist.mean(), pred, rtol=1e-4)
    np.testing.assert_allclose(dist.median(), q[:, 1], rtol=1e-4)
    assert np.isfinite(dist.log_prob(y[300:])).all()
    t, tol = reg.target_transform_, 1e-5 * np.ptp(y)
    assert t.low - tol <= dist.borders.min() and dist.borders.max() <= t.high + tol


@pytest.mark.parametrize("bad", ["log", None, 1])
def test_bad_target_transform_is_refused(bad):
    X, y = _skewed(60)
    with pytest.raises(ValueError, match="target_transform must be one of"):
        PFNRegressor(target_transform=bad).fit(X, y)


def test_save_and_load_keep_the_transform(tmp_path):
    X, y = _skewed()
    reg = PFNRegressor(n_estimators=2, max_train_rows=100).fit(X[:300], y[:300])
    loaded = PFNRegressor.load(reg.save(tmp_path / "reg.safetensors"))
    assert loaded.target_transform_ == reg.target_transform_
    np.testing.assert_array_equal(loaded.predict(X[300:]), reg.predict(X[300:]))


def test_an_estimator_fitted_before_the_transform_still_predicts():
    X, y = _skewed()
    reg = PFNRegressor(n_estimators=2, target_transform="none").fit(X[:300], y[:300])
    before = reg.predict(X[300:])
    del reg.target_transform_  # what an estimator saved by an earlier version lacks
    np.testing.assert_array_equal(reg.predict(X[300:]), before)
