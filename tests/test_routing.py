"""Routing of local contexts: which columns the routers split on, and the held-out choice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pfn import PFNClassifier, PFNRegressor
from pfn.routing import cell_columns, distinct_values, grow_router, routing_candidates


def _cells(n=5000, seed=0):
    """Two discrete columns whose combination (like a date's month and day: 10 x 20 cells)
    sets the class rate, and two continuous noise columns: the kind of table "cells"
    routing is for."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10, n), rng.integers(0, 20, n)
    rate = np.where(np.random.default_rng(1).uniform(size=(10, 20)) < 0.5, 0.1, 0.9)
    y = (rng.uniform(size=n) < rate[a, b]).astype(int)
    return np.c_[a, b, rng.normal(size=(n, 2))].astype(float), y


def _smooth(n=4000, seed=0):
    """A class set mostly by two continuous columns, a little by one of two discrete
    ones."""
    rng = np.random.default_rng(seed)
    c, d = rng.normal(size=(n, 2)), rng.integers(0, 5, n)
    y = (np.sin(2 * c[:, 0]) + c[:, 1] + 1.0 * (d == 0) + 0.3 * rng.normal(size=n)
         > 0).astype(int)
    return np.c_[d, c, rng.integers(0, 3, n)].astype(float), y


def test_distinct_values_leave_nan_aside():
    x = np.c_[np.arange(100) % 7, np.linspace(0, 1, 100), np.ones(100)]
    x[::3, 0] = np.nan
    assert distinct_values(x).tolist() == [7, 100, 1]


def test_cells_candidate_splits_only_on_the_interacting_columns():
    x, y = _cells()
    cand = routing_candidates(x, y, True, np.random.default_rng(0))
    assert set(cand) == {"importance", "cells"}
    for w in cand.values():
        assert np.isclose(w.sum(), 1) and (w >= 0).all()
    assert (cand["importance"] > 0).all()
    assert (cand["cells"][2:] == 0).all() and (cand["cells"][:2] > 0).all()
    router, leaves = grow_router(x, 200, np.random.default_rng(0), cand["cells"])
    used = router.feature[router.feature >= 0]
    assert set(used.tolist()) <= {0, 1} and max(map(len, leaves)) <= 200
    # not offered where it would not differ: every column chosen, or none discrete
    assert set(routing_candidates(x[:, :2], y, True, np.random.default_rng(0))) == \
        {"importance"}
    assert set(routing_candidates(x, y, True, np.random.default_rng(0), "cells")) == {"cells"}
    assert set(routing_candidates(x[:, 2:], y, True, np.random.default_rng(0), "cells")) == \
        {"importance"}


def test_cell_columns_find_the_interacting_pair():
    """Month and day alone say little; their cells say a lot: forward selection finds
    both (classification and regression), and an additive column alone where that is all."""
    x, y = _cells()
    both = np.ones(4, dtype=bool)
    assert sorted(cell_columns(x, y, True, both, np.random.default_rng(0))) == [0, 1]
    rng = np.random.default_rng(3)
    effect = rng.normal(size=(10, 20))
    target = effect[x[:, 0].astype(int), x[:, 1].astype(int)] + 0.3 * rng.normal(size=len(x))
    assert sorted(cell_columns(x, target, False, both, rng)) == [0, 1]
    additive = 2.0 * (x[:, 0] % 2) + rng.normal(size=len(x))
    assert cell_columns(x, additive, False, both, rng).tolist() == [0]
    noise = rng.normal(size=len(x))
    assert cell_columns(x, noise, False, both, rng).size == 0


def test_zero_weight_columns_split_where_the_others_cannot():
    """A node whose discrete columns are constant still splits, on the others."""
    rng = np.random.default_rng(0)
    x = np.c_[np.zeros(1000), rng.normal(size=1000)]
    router, leaves = grow_router(x, 100, rng, np.array([1.0, 0.0]))
    assert max(map(len, leaves)) <= 100 and set(router.feature[router.feature >= 0]) == {1}


def test_auto_routing_groups_discrete_cells_and_keeps_importance_otherwise():
    x, y = _cells()
    off = dict(boosting_feature=False)  # the routings alone (tests/test_boosting.py: with)
    auto = PFNClassifier(max_train_rows=500, n_estimators=2, **off).fit(x[:3750], y[:3750])
    fixed = PFNClassifier(max_train_rows=500, n_estimators=2, context_routing="importance",
                          **off).fit(x[:3750], y[:3750])
    assert auto.context_routing_ == "cells"
    assert auto.routing_losses_["cells"] < auto.routing_losses_["importance"]
    assert fixed.context_routing_ == "importance" and fixed.routing_losses_ == {}
    used = np.concatenate([r.feature for r in auto.contexts_.routers])
    assert set(used[used >= 0].tolist()) <= {0, 1}
    auc = [roc_auc_score(y[3750:], m.predict_proba(x[3750:])[:, 1]) for m in (auto, fixed)]
    assert auc[0] > auc[1] + 0.02

    x, y = _smooth()
    clf = PFNClassifier(max_train_rows=500, n_estimators=2, **off).fit(x[:3000], y[:3000])
    assert clf.context_routing_ == "importance"
    assert set(clf.routing_losses_) == {"importance", "cells"}
    assert clf.routing_losses_["cells"] > clf.routing_losses_["importance"]
    # no discrete column: nothing to compare, nothing spent
    clf = PFNClassifier(max_train_rows=500, n_estimators=2, **off).fit(x[:3000, 1:3],
                                                                        y[:3000])
    assert clf.context_routing_ == "importance" and clf.routing_losses_ == {}


def test_regressor_routing_and_one_context():
    x, y = _cells(2000)
    rng = np.random.default_rng(2)
    effect = rng.normal(size=(10, 20))
    target = effect[x[:, 0].astype(int), x[:, 1].astype(int)] + 0.1 * rng.normal(size=2000)
    reg = PFNRegressor(max_train_rows=300, n_estimators=2).fit(x[:1500], target[:1500])
    assert reg.context_routing_ in ("importance", "cells")
    assert set(reg.routing_losses_) == {"importance", "cells", "boosted"}
    assert all(np.isfinite(v) and v > 0 for v in reg.routing_losses_.values())
    assert np.isfinite(reg.predict(x[1500:])).all()
    small = PFNClassifier().fit(x[:200], y[:200])  # one context: nothing to route
    assert small.context_routing_ is None and small.routing_losses_ == {}


@pytest.mark.parametrize("value", ["bogus", None, 1])
def test_context_routing_is_validated(value):
    x, y = _cells(100)
    with pytest.raises(ValueError, match="context_routing must be one of"):
        PFNClassifier(context_routing=value).fit(x, y)


def test_saved_estimator_keeps_its_routing(tmp_path):
    x, y = _cells(1200)
    clf = PFNClassifier(max_train_rows=300, n_estimators=2).fit(x[:1000], y[:1000])
    path = clf.save(tmp_path / "clf.safetensors")
    back = PFNClassifier.load(path)
    assert back.context_routing_ == clf.context_routing_
    assert back.routing_losses_ == clf.routing_losses_
    np.testing.assert_allclose(back.predict_proba(x[1000:]), clf.predict_proba(x[1000:]),
                               atol=1e-6)


def test_the_chosen_trial_member_is_reused_as_the_first_member(tmp_path):
    """Choosing costs one member: the chosen routing's trial member joins the ensemble.
    Its contexts lack only the held-out rows, every other member's hold every row, and a
    reloaded estimator re-encodes all of them to the same predictions."""
    x, y = _cells()
    clf = PFNClassifier(max_train_rows=500, n_estimators=3, context_strategy="local").fit(
        x[:3750], y[:3750])
    assert clf.routing_losses_ and len(clf.contexts_.routers) == 3
    rows = [np.sort(np.concatenate(leaves)) for leaves in clf.contexts_.leaf_rows]
    missing = np.setdiff1d(np.arange(3750), rows[0])
    assert 0 < len(missing) <= 375 and len(rows[0]) + len(missing) == 3750
    for r in rows[1:]:
        assert r.tolist() == list(range(3750))
    # the members cycle transforms from the trial member on, as without reuse
    kinds = [plans[0].members[0].transform.kind for plans in clf.contexts_.plans]
    assert kinds == ["quantile", "power", "none"]
    back = PFNClassifier.load(clf.save(tmp_path / "clf.safetensors"))
    np.testing.assert_allclose(back.predict_proba(x[3750:]), clf.predict_proba(x[3750:]),
                               atol=1e-5)
    one = PFNClassifier(max_train_rows=500, n_estimators=1, context_strategy="local").fit(
        x[:3750], y[:3750])
    assert np.sort(np.concatenate(one.contexts_.leaf_rows[0])).tolist() == list(range(3750))
