"""The boosted model's out-of-fold prediction as a feature of the local contexts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from pfn import PFNClassifier, PFNRegressor
from pfn.boosting import BoostedTrees, fit_boosted_feature


def _table(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[rng.uniform(size=n) < 0.2, 1] = np.nan  # missing values take the learned side
    return x, x[:, 0] * 2 + np.nan_to_num(x[:, 1]) ** 2 + 0.1 * rng.normal(size=n)


def test_copied_trees_predict_what_scikit_learn_predicts():
    x, y = _table()
    test, _ = _table(300, seed=1)
    reg = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, y)
    np.testing.assert_allclose(BoostedTrees.from_sklearn(reg).predict(test)[:, 0],
                               reg.predict(test), atol=1e-10)
    for labels in ((y > 1).astype(int), np.digitize(y, [-1, 1, 3])):
        clf = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, labels)
        want = clf.decision_function(test)
        got = BoostedTrees.from_sklearn(clf).predict(test)
        np.testing.assert_allclose(got, want.reshape(len(test), -1), atol=1e-10)


def test_training_rows_get_out_of_fold_predictions():
    """On a noise target, a booster fitted on every row predicts its own training rows
    well (it memorises them); the feature the network sees does not, since each row's
    value comes from a booster that never saw it."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(800, 5)), rng.normal(size=800)
    feature, trees = fit_boosted_feature(x, y, False, seed=0)
    in_sample = np.corrcoef(trees.predict(x)[:, 0], y)[0, 1]
    out_of_fold = np.corrcoef(feature[:, 0], y)[0, 1]
    assert in_sample > 0.5 and abs(out_of_fold) < 0.15
    labels = (rng.uniform(size=800) < 0.3).astype(int) + (rng.uniform(size=800) < 0.3)
    feature, trees = fit_boosted_feature(x, labels, True, seed=0)
    assert feature.shape == (800, 3) and trees.n_outputs == 3


def test_classifier_booster_stops_early_where_more_trees_only_fit_noise():
    """The classifier's booster stops early at every size (scikit-learn's default starts at
    10,000 rows): on a noise target after a few trees, on a learnable one it keeps adding
    them. The regressor's runs every iteration below 10,000 rows (pfn.boosting: why)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    signal = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2]
    _, weak = fit_boosted_feature(x, rng.integers(0, 2, 2000), True, seed=0)
    _, strong = fit_boosted_feature(x, (signal > 0).astype(int), True, seed=0)
    assert len(weak.roots) <= 30 and len(strong.roots) >= 60, (len(weak.roots),
                                                               len(strong.roots))
    _, reg = fit_boosted_feature(x, rng.normal(size=2000), False, seed=0)
    assert len(reg.roots) == 100  # HistGradientBoostingRegressor's max_iter


def test_a_class_too_rare_to_hold_out_runs_every_iteration():
    """Early stopping holds out a stratified share of the rows; with a class of one row it
    cannot (scikit-learn's own early stopping, on from 10,000 rows, raised here), so the
    booster runs every iteration instead of failing."""
    from pfn.boosting import fit_booster

    rng = np.random.default_rng(0)
    for n in (300, 10_500):
        x = rng.normal(size=(n, 3))
        labels = (x[:, 0] > 0).astype(int)
        labels[0] = 2
        trees = fit_booster(x, labels, True, seed=0)
        assert trees.n_outputs == 3 and len(trees.roots) == 3 * 100


def test_columns_without_an_observed_value_are_fitted_around():
    """An all-missing column, and one observed only in rows that one fold holds out, fail
    scikit-learn's binning; the feature and the estimators work around them."""
    x, y = _table(200)
    x[:, 2] = np.nan
    x[:, 3] = np.nan
    x[:3, 3] = 1.0  # observed in three rows: some fold's training part has none of them
    feature, trees = fit_boosted_feature(x, y, False, seed=0)
    assert np.isfinite(feature).all() and np.corrcoef(feature[:, 0], y)[0, 1] > 0.5
    assert np.isfinite(trees.predict(x)).all()
    for est, target in ((PFNRegressor, y), (PFNClassifier, (y > 1).astype(int))):
        model = est(max_train_rows=60, boosting_feature=True, n_estimators=2).fit(x, target)
        assert model.booster_ is not None
        out = model.predict(x[:20])
        assert np.isfinite(np.asarray(out, dtype=float)).all()


@pytest.mark.parametrize("bad", ["yes", None, 1, "true"])
def test_boosting_feature_is_validated(bad):
    x, y = _table(100)
    with pytest.raises(ValueError, match="boosting_feature must be 'auto', True or False"):
        PFNRegressor(boosting_feature=bad).fit(x, y)


def _item_effects(n=3000, seed=0, levels=150):
    """The target hangs on an item id of 150 levels (each its own effect) and one numeric
    column: a local context of 150 rows holds about one row per item, a booster sees
    every row of every item."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, levels, n)
    effect = np.random.default_rng(1).normal(size=levels)
    x = np.c_[item, rng.normal(size=(n, 3))].astype(float)
    return x, effect[item] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=n)


def _additive(n=3000, seed=0):
    """Twenty binary columns with additive effects: the network's contexts read these
    better than the booster does (measured: held-out loss 0.077 against 0.094)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, 20)).astype(float)
    effects = np.random.default_rng(1).uniform(0.5, 1.5, 20)
    return x, x @ effects + 0.5 * rng.normal(size=n)


def test_auto_chooses_the_feature_where_it_wins_and_the_estimator_round_trips(tmp_path):
    x, y = _item_effects()
    kw = dict(n_estimators=2, max_train_rows=150)
    auto = PFNRegressor(**kw).fit(x[:2000], y[:2000])
    off = PFNRegressor(boosting_feature=False, **kw).fit(x[:2000], y[:2000])
    assert auto.boosting_feature_ and isinstance(auto.booster_, BoostedTrees)
    assert auto.routing_losses_["boosted"] < auto.routing_losses_["importance"]
    assert not off.boosting_feature_ and off.booster_ is None and "boosted" not in \
        off.routing_losses_
    err = {name: np.mean((m.predict(x[2000:]) - y[2000:]) ** 2)
           for name, m in (("auto", auto), ("off", off))}
    assert err["auto"] < 0.6 * err["off"], err
    auto.save(tmp_path / "m.safetensors")
    loaded = PFNRegressor.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict(x[2000:]), auto.predict(x[2000:]))
    q = loaded.predict_quantiles(x[2000:], [0.05, 0.95])
    assert np.isfinite(q).all() and (q[:, 0] < q[:, 1]).all()


def test_auto_drops_the_feature_where_the_contexts_do_better():
    """The regressor keeps the feature unless the plain contexts are clearly better on
    the held-out rows, as on the additive table; on noise neither is, and it stays."""
    x, y = _additive()
    m = PFNRegressor(n_estimators=2, max_train_rows=300).fit(x[:2000], y[:2000])
    assert not m.boosting_feature_ and m.booster_ is None
    assert m.routing_losses_["boosted"] > m.routing_losses_["importance"]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2000, 4)), rng.normal(size=2000)
    assert PFNRegressor(n_estimators=2, max_train_rows=300).fit(x, y).boosting_feature_


def test_classifier_takes_the_feature_only_where_clearly_better():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2000, 4)), rng.integers(0, 2, 2000)
    noise = PFNClassifier(n_estimators=2, max_train_rows=300, context_strategy="local").fit(x, y)
    assert not noise.boosting_feature_ and "boosted" in noise.routing_losses_
    x, target = _item_effects()
    labels = (target > np.median(target)).astype(int)
    items = PFNClassifier(n_estimators=2, max_train_rows=150,
                          context_strategy="local").fit(x[:2000], labels[:2000])
    assert items.boosting_feature_
    assert items.routing_losses_["boosted"] < items.routing_losses_["importance"]


def test_too_few_rows_for_the_folds_are_refused():
    x, y = _table(9)
    with pytest.raises(ValueError, match="boosting_feature needs at least 10 training rows"):
        PFNRegressor(boosting_feature=True).fit(x, y)
    assert not PFNRegressor().fit(x, y).boosting_feature_  # "auto": not within one context


def test_no_feature_within_one_context_unless_asked():
    x, y = _item_effects(400)
    small = PFNRegressor(n_estimators=2).fit(x, y)
    assert not small.boosting_feature_ and small.routing_losses_ == {}
    forced = PFNRegressor(n_estimators=2, boosting_feature=True).fit(x, y)
    assert forced.boosting_feature_ and forced.booster_.n_outputs == 1


def test_forced_feature_for_classifier_one_context_and_multiclass():
    """True adds the feature whatever the size; a classifier's is one logit per class
    (one for two classes), and predictions stay probabilities."""
    x, y = _table(400)
    for labels, width in (((y > 1).astype(int), 1), (np.digitize(y, [-1, 1, 3]), 4)):
        clf = PFNClassifier(n_estimators=2, boosting_feature=True).fit(x[:300], labels[:300])
        assert clf.boosting_feature_ and clf.booster_.n_outputs == width
        p = clf.predict_proba(x[300:])
        assert p.shape == (100, len(np.unique(labels))) and np.allclose(p.sum(1), 1)
        assert (clf.predict(x[300:]) == labels[300:]).mean() > 0.6


def test_auto_does_not_offer_the_feature_where_it_would_make_groups(monkeypatch):
    """Beyond the network's 10 classes (a tree per class and round) or 100 features, "auto"
    does not even fit the booster."""
    import pfn.estimator_base

    def refuse(*args, **kwargs):
        raise AssertionError("the booster was fitted")

    monkeypatch.setattr(pfn.estimator_base, "fit_boosted_feature", refuse)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 3))
    labels = np.digitize(x[:, 0], np.quantile(x[:, 0], np.linspace(0, 1, 13)[1:-1]))
    clf = PFNClassifier(n_estimators=2, max_train_rows=300).fit(x, labels)
    assert len(clf.classes_) == 12 and not clf.boosting_feature_
    assert "boosted" not in clf.routing_losses_
    wide = PFNRegressor(n_estimators=2, max_train_rows=300).fit(
        rng.normal(size=(1200, 100)), x[:, 0])
    assert not wide.boosting_feature_ and "boosted" not in wide.routing_losses_
