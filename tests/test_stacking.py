"""context_strategy="stacked": one context for the network, a booster on the other rows,
their predictions blended with a weight the held-out rows choose (pfn/stacking.py)."""

from __future__ import annotations

import numpy as np
import pytest

import pfn.stacking as stacking
from pfn import PFNClassifier, PFNRegressor
from pfn.bar_distribution import BarDistribution
from pfn.boosting import BoostedTrees
from pfn.stacking import HELD_MAX_ROWS, WEIGHTS, booster_probs, choose_weight, split_rows

STACKED = dict(context_strategy="stacked", max_train_rows=200)


def _table(n=900, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, x[:, 0] + np.sin(3 * x[:, 1]) + 0.3 * rng.normal(size=n)


# ----- the pieces ---------------------------------------------------------------------------
def test_rows_are_split_into_disjoint_roles_covering_every_row():
    rng = np.random.default_rng(0)
    y_idx = np.r_[np.zeros(900, int), np.ones(95, int), np.full(5, 2)]
    split = split_rows(len(y_idx), 200, y_idx, rng)
    roles = np.concatenate([split.context, split.held, split.rest])
    np.testing.assert_array_equal(np.sort(roles), np.arange(len(y_idx)))
    assert len(split.context) == 200 and len(split.held) == 80  # 10 % of the other 800
    for c, count in enumerate(np.bincount(y_idx)):  # each class in about its share
        assert abs(np.sum(y_idx[split.context] == c) - 200 * count / 1000) <= 1
    assert len(split_rows(10**6, 1000, None, rng).held) == HELD_MAX_ROWS


def _point_masses(means: np.ndarray) -> BarDistribution:
    """Distributions (n,) of one narrow bucket around each mean."""
    borders = np.linspace(-10, 10, 2001)
    probs = np.zeros((len(means), 2000))
    probs[np.arange(len(means)), np.searchsorted(borders, means) - 1] = 1.0
    return BarDistribution(probs, borders)


def test_weight_follows_the_better_side_on_held_out_rows():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    noisy, other = y + rng.normal(size=500), y + rng.normal(size=500)
    assert choose_weight(_point_masses(noisy), y[:, None], y) == 1.0  # the booster is exact
    assert choose_weight(_point_masses(y), noisy[:, None], y) == 0.0
    # equally good, independent errors: about half each
    assert 0.3 <= choose_weight(_point_masses(noisy), other[:, None], y) <= 0.7
    labels = rng.integers(0, 3, 500)
    logits = np.log(np.eye(3)[labels] * 0.9 + 0.1 / 3)  # a booster 90 % sure and right
    assert choose_weight(np.full((500, 3), 1 / 3), logits, labels) == 1.0
    assert choose_weight(np.eye(3)[labels] * 0.9 + 0.1 / 3, np.zeros((500, 3)), labels) == 0.0


def test_booster_outputs_become_probabilities():
    p = booster_probs(np.array([[0.0], [np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])
    q = booster_probs(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(q.sum(1), 1.0)
    np.testing.assert_allclose(q[1], 1 / 3)
    assert (np.diff(q[0]) > 0).all()


def test_shifted_distribution_moves_mean_and_quantiles_exactly():
    rng = np.random.default_rng(0)
    borders = np.sort(rng.normal(size=31)) * 3
    dist = BarDistribution(rng.dirichlet(np.ones(30), size=5), borders)
    delta = rng.normal(size=5)
    moved = dist.shift(delta)
    np.testing.assert_allclose(moved.mean(), dist.mean() + delta)
    np.testing.assert_allclose(moved.quantile([0.1, 0.5, 0.9]),
                               dist.quantile([0.1, 0.5, 0.9]) + delta[:, None])
    np.testing.assert_array_equal(moved.probs, dist.probs)
    assert moved.borders is dist.borders  # rows keep sharing one set of borders
    y = rng.normal(size=5)
    np.testing.assert_allclose(moved.cdf(y + delta), dist.cdf(y))
    np.testing.assert_allclose(moved.log_prob(y + delta), dist.log_prob(y))
    np.testing.assert_allclose(moved.affine(2.0, 1.0).mean(), 2 * (dist.mean() + delta) + 1)
    np.testing.assert_allclose(moved.shift(-delta).mean(), dist.mean())
    warped = moved.warp(np.exp)  # a target transform's inverse: borders per row
    assert warped.offset is None and warped.borders.shape == (5, 31)
    np.testing.assert_allclose(warped.borders, np.exp(moved.moved_borders()), rtol=1e-6)
    both = BarDistribution.concatenate([moved, moved])
    np.testing.assert_allclose(both.mean(), np.r_[moved.mean(), moved.mean()])


# ----- the estimators -----------------------------------------------------------------------
def test_regressor_reads_every_row_and_blends_as_documented(monkeypatch):
    seen = []
    fit = stacking.fit_booster
    monkeypatch.setattr(stacking, "fit_booster",
                        lambda x, *a, **k: seen.append(len(x)) or fit(x, *a, **k))
    x, y = _table()
    m = PFNRegressor(**STACKED).fit(x[:700], y[:700])
    assert m.context_strategy_ == "stacked" and m.n_estimators_ == 1
    assert isinstance(m.booster_, BoostedTrees) and m.booster_weight_ in WEIGHTS
    assert m.x_train_[0].shape == (1, 200, 5)  # one member, the context + booster column
    # the first booster: every row but the context and the held-out ones; then, since it
    # missed more than 10 % of them, the booster for new rows refitted on every row
    assert seen == [700 - 200 - 50, 700]
    pred = m.predict(x[700:])
    np.testing.assert_allclose(m.predict_distribution(x[700:]).mean(), pred, rtol=1e-6)
    q = m.predict_quantiles(x[700:], [0.05, 0.5, 0.95])
    assert (np.diff(q, axis=1) > 0).all()
    # the blend: with weight 1 the mean is the booster's, with 0 the network's alone (up to
    # the outer tails, clipped to the training targets' range again after the move)
    booster = m.booster_.predict(m.encoder_.transform(x[700:]))[:, 0] * m.y_std_ + m.y_mean_
    tol = 1e-3 * y.std()
    m.booster_weight_ = 1.0
    np.testing.assert_allclose(m.predict_distribution(x[700:]).mean(), booster, atol=tol)
    with monkeypatch.context() as patch:  # the mean needs no network there
        patch.setattr(PFNRegressor, "iter_distributions", None)
        np.testing.assert_allclose(m.predict(x[700:]), booster, rtol=1e-12)
    m.output = "median"  # the median does
    assert np.abs(m.predict(x[700:]) - booster).max() > 1e-6
    m.output = "mean"
    m.booster_weight_ = 0.0
    alone = m.predict(x[700:])
    m.booster_weight_ = 0.5
    np.testing.assert_allclose(m.predict(x[700:]), (alone + booster) / 2, atol=tol)
    assert np.mean((pred - y[700:]) ** 2) < 0.5 * np.var(y[700:])


def test_no_refit_where_the_first_booster_saw_most_rows(monkeypatch):
    seen = []
    fit = stacking.fit_booster
    monkeypatch.setattr(stacking, "fit_booster",
                        lambda x, *a, **k: seen.append(len(x)) or fit(x, *a, **k))
    monkeypatch.setattr(stacking, "HELD_MAX_ROWS", 10)
    x, y = _table(3000)
    PFNRegressor(**STACKED).fit(x, y)
    assert seen == [3000 - 200 - 10]  # 93 % of the rows: no refit


def test_regressor_context_is_capped_for_the_stacked_strategy():
    x, y = _table(1500)
    m = PFNRegressor(context_strategy="stacked", max_train_rows=800).fit(x, y)
    assert m.x_train_[0].shape == (1, stacking.REGRESSION_CONTEXT_ROWS, 5)
    c = PFNClassifier(context_strategy="stacked", max_train_rows=800).fit(x, y > 0)
    assert c.x_train_[0].shape[1] == 800


def test_classifier_blends_probabilities_and_skips_the_network_at_weight_one():
    x, y = _table()
    labels = np.digitize(y, [-0.5, 0.5])
    m = PFNClassifier(**STACKED).fit(x[:700], labels[:700])
    assert m.context_strategy_ == "stacked" and m.booster_.n_outputs == 3
    proba = m.predict_proba(x[700:])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    booster = booster_probs(m.booster_.predict(m.encoder_.transform(x[700:])))
    m.booster_weight_ = 1.0
    np.testing.assert_allclose(m.predict_proba(x[700:]), booster)
    m.booster_weight_ = 0.0
    alone = m.predict_proba(x[700:])
    m.booster_weight_ = 0.3
    np.testing.assert_allclose(m.predict_proba(x[700:]), 0.7 * alone + 0.3 * booster)
    assert np.mean(proba.argmax(1) == labels[700:]) > 0.6


def test_round_trip_keeps_the_stacked_predictions(tmp_path):
    x, y = _table()
    m = PFNClassifier(**STACKED).fit(x[:700], y[:700] > 0)
    loaded = PFNClassifier.load(m.save(tmp_path / "m.safetensors"))
    assert loaded.booster_weight_ == m.booster_weight_
    np.testing.assert_array_equal(loaded.predict_proba(x[700:]), m.predict_proba(x[700:]))


def test_a_class_of_two_rows_is_still_predicted():
    x, y = _table()
    labels = (y > 0).astype(int)
    labels[:2] = 2  # the rest may lack it: then the booster is fitted on every row
    m = PFNClassifier(**STACKED).fit(x[:700], labels[:700])
    proba = m.predict_proba(x[700:])
    assert proba.shape == (200, 3) and np.isfinite(proba).all()


def test_a_class_of_one_row_in_a_table_the_default_stacks():
    """From 10,000 rows scikit-learn's booster stopped early by itself, and its stratified
    hold-out raised on a class of one row; the booster now runs every iteration there."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_700, 3))
    labels = (x[:, 0] > 0).astype(int)
    labels[0] = 2
    m = PFNClassifier(n_estimators=1).fit(x[:10_500], labels[:10_500])
    assert m.context_strategy_ == "stacked"
    proba = m.predict_proba(x[10_500:])
    assert proba.shape == (200, 3) and np.isfinite(proba).all()


def test_within_one_context_the_strategy_changes_nothing():
    x, y = _table(300)
    a = PFNRegressor(n_estimators=2).fit(x[:200], y[:200])
    b = PFNRegressor(n_estimators=2, context_strategy="stacked").fit(x[:200], y[:200])
    assert b.context_strategy_ is None and b.booster_weight_ is None
    np.testing.assert_array_equal(a.predict(x[200:]), b.predict(x[200:]))


def test_auto_stacks_from_auto_rows_training_rows(monkeypatch):
    """The default reads tables below AUTO_ROWS[task] training rows in local contexts,
    larger ones stacked (and never stacked without the booster); lowered here to stay
    fast, each task its own."""
    import pfn.estimator_base as base

    monkeypatch.setattr(base, "AUTO_ROWS", {"classification": 400, "regression": 600})
    x, y = _table()
    kw = dict(n_estimators=1, max_train_rows=200)
    assert PFNRegressor(**kw).fit(x[:599], y[:599]).context_strategy_ == "local"
    assert PFNRegressor(**kw).fit(x[:600], y[:600]).context_strategy_ == "stacked"
    labels = (y > 0).astype(int)
    assert PFNClassifier(**kw).fit(x[:399], labels[:399]).context_strategy_ == "local"
    assert PFNClassifier(**kw).fit(x[:400], labels[:400]).context_strategy_ == "stacked"
    off = PFNRegressor(boosting_feature=False, **kw).fit(x[:600], y[:600])
    assert off.context_strategy_ == "local" and off.booster_ is None
    assert PFNRegressor().get_params()["context_strategy"] == "auto"


def test_the_default_classifier_stacks_from_two_thousand_rows():
    """Unpatched: the classifier's default (max_train_rows 1500) stacks a table of 2,000
    training rows and reads one of 1,999 in local contexts."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2100, 4))
    y = x[:, 0] + np.sin(x[:, 1]) + 0.1 * rng.normal(size=2100)
    clf = PFNClassifier(n_estimators=1).fit(x[:2000], (y[:2000] > 0).astype(int))
    assert clf.context_strategy_ == "stacked"
    assert clf.predict_proba(x[2000:]).shape == (100, 2)
    small = PFNClassifier(n_estimators=1).fit(x[:1999], (y[:1999] > 0).astype(int))
    assert small.context_strategy_ == "local"


@pytest.mark.parametrize("rows, n_classes, match", [
    (215, 2, "20 training rows beyond max_train_rows=200"),
    (700, 12, "at most 10 classes"),
])
def test_falls_back_to_local_contexts_with_a_warning(rows, n_classes, match):
    x, y = _table(rows)
    labels = np.digitize(y, np.quantile(y, np.linspace(0, 1, n_classes + 1)[1:-1]))
    with pytest.warns(UserWarning, match=match):
        m = PFNClassifier(n_estimators=1, **STACKED).fit(x, labels)
    assert m.context_strategy_ == "local" and m.booster_weight_ is None


@pytest.mark.parametrize("params, match", [
    ({"context_strategy": "fast"}, "context_strategy must be one of"),
    ({"context_strategy": None}, "context_strategy must be one of"),
    ({"context_strategy": "stacked", "boosting_feature": False}, "boosting_feature=False"),
])
def test_bad_strategies_are_refused(params, match):
    x, y = _table(300)
    with pytest.raises(ValueError, match=match):
        PFNRegressor(**params).fit(x, y)
