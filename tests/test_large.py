"""Large tables: local contexts use every row, feature groups every feature, memory is
checked, and whatever is dropped is said."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pfn import PFNClassifier, PFNRegressor
from pfn.bar_distribution import rebin, rebin_matrix
from pfn.preprocessing import draw_feature_sets
from pfn.routing import grow_router, split_weights

SMALL = dict(n_estimators=2, max_train_rows=100)


def _data(n=360, f=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    X[::13, 1] = np.nan
    signal = X[:, 0] + np.sin(2 * X[:, 2])
    return X, signal


def test_router_leaves_partition_the_rows_and_route_them_home():
    X, _ = _data(1000)
    router, leaves = grow_router(X, 100, np.random.default_rng(0))
    rows = np.concatenate(leaves)
    assert sorted(rows.tolist()) == list(range(1000))  # every row in exactly one leaf
    assert max(map(len, leaves)) <= 100 and min(map(len, leaves)) >= 50
    leaf = router.route(X)
    for j, members in enumerate(leaves):
        assert (leaf[members] == j).all()


@pytest.mark.parametrize("leaf_rows", [2, 3, 5])
def test_router_leaves_hold_at_least_two_rows(leaf_rows):
    """Ties (coarse codes) could leave one row on a side; a context needs two rows."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(200, 3)).astype(float)
    _, leaves = grow_router(X, leaf_rows, rng)
    assert min(map(len, leaves)) >= 2
    y = (X[:, 0] + rng.normal(size=200) > 1).astype(int)
    with warnings.catch_warnings():  # 27 distinct rows: unsplittable leaves are reported
        warnings.filterwarnings("ignore", "a context of .* could not be split")
        clf = PFNClassifier(n_estimators=2, max_train_rows=leaf_rows).fit(X, y)
    assert np.isfinite(clf.predict_proba(X[:10])).all()


def test_routers_split_mostly_on_the_features_that_matter():
    """Feature 2 carries the signal, the others are noise: splits are drawn by importance,
    yet every feature keeps a chance to split."""
    X, _ = _data(2000, f=6)
    y = (np.sin(2 * X[:, 2]) > 0).astype(int)
    w = split_weights(X, y, True, np.random.default_rng(0))
    assert w.shape == (6,) and np.isclose(w.sum(), 1) and (w > 0).all()
    assert w.argmax() == 2 and w[2] > 0.5
    rng = np.random.default_rng(0)
    used = np.concatenate([grow_router(X, 100, rng, w)[0].feature for _ in range(10)])
    used = used[used >= 0]
    assert (used == 2).mean() > 0.5  # uniform draws would give about 1/6
    uniform = np.concatenate([grow_router(X, 100, rng)[0].feature for _ in range(10)])
    assert (uniform[uniform >= 0] == 2).mean() < 0.35


def test_identical_rows_stay_together_and_are_reported():
    X = np.zeros((300, 2))
    X[:50, 0] = np.arange(50)
    y = np.arange(300) % 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = PFNClassifier(**SMALL).fit(X, y)
    assert len(caught) == 1 and "max_train_rows=100" in str(caught[0].message)
    assert "context of 300 training rows" in str(caught[0].message)
    assert clf.predict_proba(X[:5]).shape == (5, 2)


def test_every_training_row_is_used_without_warning():
    X, signal = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = PFNClassifier(**SMALL).fit(X[:300], signal[:300] > 0)
    first = 1 if clf.routing_losses_ else 0  # a reused trial member lacks its held-out rows
    assert len(clf.contexts_.leaf_rows) - first >= 1
    for leaves in clf.contexts_.leaf_rows[first:]:
        assert sorted(np.concatenate(leaves).tolist()) == list(range(300))
    for plans in clf.contexts_.plans:  # every leaf's member sees all of its rows
        assert all(len(p.members[0].rows) <= 100 for p in plans)
    proba = clf.predict_proba(X[300:])
    assert proba.shape == (60, 2) and np.allclose(proba.sum(1), 1)
    assert ((proba[:, 1] > 0.5) == (signal[300:] > 0)).mean() > 0.75


def test_local_contexts_beat_one_subsample_on_a_local_pattern():
    """A checkerboard: a context of 100 random rows cannot resolve it, local ones can."""
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 4, size=(2400, 2))
    y = (np.floor(X[:, 0] * 2) + np.floor(X[:, 1] * 2)) % 2
    local = PFNClassifier(**SMALL).fit(X[:2000], y[:2000]).predict(X[2000:])
    one = PFNClassifier(n_estimators=2, max_train_rows=2000).fit(
        X[:100], y[:100]).predict(X[2000:])
    assert (local == y[2000:]).mean() > (one == y[2000:]).mean() + 0.05


def test_regression_distribution_is_float32_and_agrees_with_predict():
    X, signal = _data()
    reg = PFNRegressor(**SMALL, test_batch_size=16).fit(X[:300], signal[:300])
    dist = reg.predict_distribution(X[300:])
    assert dist.probs.dtype == np.float32 and dist.probs.shape == (60, 1000)
    np.testing.assert_allclose(dist.mean(), reg.predict(X[300:]), rtol=1e-4, atol=1e-4)
    wide = PFNRegressor(**SMALL, test_batch_size=1024).fit(X[:300], signal[:300])
    np.testing.assert_allclose(wide.predict(X[300:]), reg.predict(X[300:]), atol=1e-8)
    q = reg.predict_quantiles(X[300:], [0.05, 0.95])
    assert ((signal[300:] >= q[:, 0]) & (signal[300:] <= q[:, 1])).mean() > 0.75
    assert np.corrcoef(reg.predict(X[300:]), signal[300:])[0, 1] > 0.8


def test_rebin_matrix_is_rebin():
    rng = np.random.default_rng(0)
    b = np.sort(rng.normal(size=51)) * 3 + 1
    g = np.sort(rng.normal(size=41))
    p = rng.dirichlet(np.ones(50), size=4)
    np.testing.assert_allclose(p @ rebin_matrix(b, g), rebin(p, b, g), atol=1e-12)


def test_rebin_matrix_keeps_the_mass_of_collapsed_borders():
    """A context whose targets are all equal has borders that coincide (in float32): its
    mass must land, whole, in the common bucket holding that value, not become NaN."""
    g = np.linspace(-3, 3, 41)
    p = np.random.default_rng(0).dirichlet(np.ones(50), size=3)
    for b in (np.full(51, 1.25), np.concatenate([[1.0], np.full(49, 1.25), [1.5]])):
        out = p @ rebin_matrix(b, g)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
        assert (out[:, np.searchsorted(g[1:-1], 1.25)] > 0.9).all()


def test_a_context_with_one_target_value_predicts_it():
    """Routers split on the column that decides a two-valued target, so some contexts
    hold one value only; their predictions stay finite and on that value."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        reg = PFNRegressor(**SMALL).fit(X, y)
        pred = reg.predict(X)
        q = reg.predict_quantiles(X, [0.1, 0.9])
    assert np.isfinite(pred).all() and np.isfinite(q).all()
    far = np.abs(X[:, 0]) > 0.5  # rows well inside one side
    assert np.abs(pred[far] - y[far]).max() < 0.1


def test_feature_groups_cover_every_feature_with_equal_widths():
    sets = draw_feature_sets(250, 100, 2, np.random.default_rng(0))
    assert len(sets) == 3 and {len(s) for s in sets} == {84}
    assert set(np.concatenate(sets).tolist()) == set(range(250))
    assert all(len(set(s.tolist())) == len(s) for s in sets)


def test_wide_table_members_see_every_feature():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 230))
    y = X[:, 229] > 0  # only the last feature matters
    clf = PFNClassifier(n_estimators=2, engine="onnx").fit(X[:60], y[:60])
    seen = np.concatenate([m.features for m in clf.plan_.members])
    assert len(clf.plan_.members) == 3 and set(seen.tolist()) == set(range(230))


def test_memory_budget_names_the_parameter():
    X, signal = _data(40)
    with pytest.raises(ValueError, match=r"max_train_rows=50000 needs about 40\.\d GB"):
        PFNClassifier(max_train_rows=50000).fit(X, signal > 0)
    with pytest.raises(ValueError, match="test_batch_size=1000000"):
        PFNClassifier(test_batch_size=1_000_000).fit(X, signal > 0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_n_jobs_is_validated(bad):
    X, signal = _data(40)
    with pytest.raises(ValueError, match="n_jobs"):
        PFNClassifier(n_jobs=bad).fit(X, signal > 0)


def test_verbose_shows_progress(capsys):
    X, signal = _data()
    PFNClassifier(**SMALL, verbose=True, n_jobs=1).fit(X[:300], signal[:300] > 0)
    assert "fit contexts" in capsys.readouterr().err


def test_engines_agree_on_local_contexts():
    pytest.importorskip("torch")
    X, signal = _data()
    onnx = PFNRegressor(**SMALL, engine="onnx").fit(X[:300], signal[:300])
    torch = PFNRegressor(**SMALL, engine="torch", n_jobs=1).fit(X[:300], signal[:300])
    np.testing.assert_allclose(onnx.predict(X[300:]), torch.predict(X[300:]), atol=2e-3)


def test_softmax_temperature_applies_to_local_contexts():
    X, signal = _data()
    probs = [PFNClassifier(**SMALL, softmax_temperature=t).fit(X[:300], signal[:300] > 0)
             .predict_proba(X[300:]).max(1).mean() for t in (0.5, 1.0, 2.0)]
    assert probs[0] > probs[1] > probs[2]  # below 1 sharpens, above 1 flattens


def test_local_contexts_encode_categories_per_member():
    import pandas as pd

    X, signal = _data()
    df = pd.DataFrame(X, columns=list("abcd")).assign(
        colour=np.array(list("rgbyk"))[np.arange(360) % 5])
    target = signal + (df["colour"] == "r")
    for cls, y in ((PFNClassifier, target > 0.5), (PFNRegressor, target)):
        est = cls(**SMALL, categorical_encoding=("shuffled", "onehot")).fit(df[:300], y[:300])
        widths = [{p.members[0].encoding.width for p in plans} for plans in est.contexts_.plans]
        extra = est.booster_.n_outputs if est.boosting_feature_ else 0  # boosted column
        assert widths == [{5 + extra}, {9 + extra}]  # member 1: 5 levels as 5 indicators
        assert est.predict(df[300:]).shape == (60,)
