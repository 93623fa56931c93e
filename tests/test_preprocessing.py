"""Table conversion, member transforms and the ensemble plan (numpy only, no network)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

from pfn.preprocessing import EnsemblePlan, MemberTransform, TableEncoder, _class_codes


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "num": [1.5, 2.0, np.nan, 4.0],
        "text": ["b", "a", None, "b"],
        "cat": pd.Categorical(["u", "v", "u", "u"], categories=["v", "u"]),
        "flag": [True, False, True, True],
        "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
    })


def test_encoder_converts_frames_column_by_column():
    enc = TableEncoder().fit(_frame())
    assert enc.categorical_mask.tolist() == [False, True, True, True, False]
    x = enc.transform(_frame())
    np.testing.assert_array_equal(x[:, 0], [1.5, 2.0, np.nan, 4.0])
    np.testing.assert_array_equal(x[:, 1], [1, 0, np.nan, 1])  # sorted categories
    np.testing.assert_array_equal(x[:, 2], [1, 0, 1, 1])  # the dtype's category order
    np.testing.assert_array_equal(x[:, 3], [1, 0, 1, 1])
    np.testing.assert_array_equal(x[:, 4], [1, np.nan, 3, 4])


def test_unseen_categories_become_missing():
    enc = TableEncoder().fit(_frame())
    x = enc.transform(_frame().assign(text=["zzz", "a", "b", None]))
    np.testing.assert_array_equal(x[:, 1], [np.nan, 0, 1, np.nan])


def test_object_arrays_mix_numbers_and_strings_by_column():
    X = np.array([[1, "x"], [2.5, "y"], [None, "x"]], dtype=object)
    enc = TableEncoder().fit(X)
    assert enc.categorical_mask.tolist() == [False, True]
    np.testing.assert_array_equal(enc.transform(X), [[1, 0], [2.5, 1], [np.nan, 0]])


@pytest.mark.parametrize("bad, error, match", [
    (np.array([[1.0, np.inf]]), ValueError, "infinity"),
    (sparse.csr_matrix(np.eye(3)), TypeError, "toarray"),
    (np.zeros((2, 2, 2)), ValueError, "2D"),
    (np.zeros(3), ValueError, "Reshape"),
    (np.zeros((0, 3)), ValueError, "0 sample"),
    (np.zeros((3, 0)), ValueError, "0 feature"),
    (np.ones((2, 2)) * 1j, ValueError, "Complex"),
])
def test_encoder_rejects_bad_tables(bad, error, match):
    with pytest.raises(error, match=match):
        TableEncoder().fit(bad).transform(bad)


def test_transforms_use_training_rows_only_and_skip_categoricals():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.lognormal(size=300), rng.integers(0, 3, 300).astype(float)])
    x[::10, 0] = np.nan
    numeric = np.array([True, False])
    for kind in ("none", "quantile", "power"):
        t = MemberTransform(kind, numeric).fit(x[:200])
        full = t.transform(x)
        np.testing.assert_allclose(full[:200], t.transform(x[:200]))  # rows independent
        np.testing.assert_array_equal(full[:, 1], x[:, 1])  # categorical untouched
        assert np.array_equal(np.isnan(full[:, 0]), np.isnan(x[:, 0]))  # NaN kept
        ok = ~np.isnan(x[:, 0])
        assert stats.spearmanr(full[ok, 0], x[ok, 0])[0] > 0.999  # monotone
        if kind != "none":  # log-normal -> roughly normal: skewness 6 drops below 0.5
            assert abs(stats.skew(full[:200][ok[:200], 0])) < 0.5


def test_outliers_are_squashed_and_constant_columns_survive():
    x = np.column_stack([np.r_[np.arange(99.0), 1e9], np.ones(100)])
    for kind in ("none", "quantile", "power"):
        out = MemberTransform(kind, np.array([True, True])).fit(x).transform(x)
        assert np.isfinite(out).all() and np.abs(out).max() < 30


def _plan(n=60, f=5, classes=3, **kw):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, f))
    y = np.arange(n) % classes
    args = dict(n_estimators=4, max_features=100, max_classes=10, max_train_rows=1000,
                transforms=("none", "quantile", "power"), seed=7) | kw
    return x, y, EnsemblePlan.fit(x, y, np.zeros(f, np.int64), **args)


def test_plan_is_deterministic_for_a_seed():
    x, y, a = _plan()
    _, _, b = _plan()
    np.testing.assert_array_equal(a.train_inputs(x, y)[0][0], b.train_inputs(x, y)[0][0])
    _, _, c = _plan(seed=8)
    assert not np.array_equal(a.train_inputs(x, y)[0][0], c.train_inputs(x, y)[0][0])


def test_members_permute_features_and_labels():
    x, y, plan = _plan()
    [(xt, yt)] = plan.train_inputs(x, y)
    assert xt.shape == (4, 60, 5) and yt.shape == (4, 60)
    for m, ym in zip(plan.members, yt, strict=True):
        assert sorted(m.features) == list(range(5))
        np.testing.assert_array_equal(ym, m.code[y])


def test_limits_subsample_features_and_rows_keeping_every_class():
    x, y, plan = _plan(n=300, f=30, classes=7, max_features=12, max_train_rows=20)
    [(xt, yt)] = plan.train_inputs(x, y)
    assert xt.shape == (4, 20, 10)  # 30 features in 3 groups of 10: every feature seen
    assert set(np.concatenate([m.features for m in plan.members]).tolist()) == set(range(30))
    for m, ym in zip(plan.members, yt, strict=True):
        assert len(set(m.features)) == 10 and len(set(ym)) == 7


def test_many_classes_get_codes_separating_every_pair_twice():
    codes = np.stack(_class_codes(37, 10, 2, np.random.default_rng(0)))
    assert codes.max() == 9 and codes.shape[1] == 37
    separated = (codes[:, :, None] != codes[:, None, :]).sum(0)
    assert separated[~np.eye(37, dtype=bool)].min() >= 2


def test_combine_probs_undoes_each_members_label_code():
    _, _, plan = _plan(classes=4)
    truth = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    net = np.zeros((4, 2, 10))
    for b, m in enumerate(plan.members):
        net[b][:, m.code] = truth  # network label m.code[c] carries class c's probability
    np.testing.assert_allclose(plan.combine_probs(net), truth)


def test_combine_probs_with_many_classes_is_a_distribution_favouring_the_truth():
    x, y, plan = _plan(n=60, classes=25)
    net = np.full((len(plan.members), 1, 10), 0.01)
    for b, m in enumerate(plan.members):
        net[b, 0, m.code[3]] = 0.91  # every member votes for the group holding class 3
    p = plan.combine_probs(net)
    assert p.shape == (1, 25) and np.isclose(p.sum(), 1) and p.argmax() == 3
