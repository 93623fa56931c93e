"""Routers: binary trees over the features that split a large training set into contexts.

A :class:`RowRouter` sends every row, training or test, to one leaf; each leaf is one
local context of :mod:`pfn.contexts`. :func:`grow_router` grows one per ensemble member:
each split is a random feature at a quantile, until every leaf holds at most (and about)
the context's rows.

Why random splits, and why the features are still drawn by importance: a supervised split
(best impurity decrease) makes purer leaves, whose contexts say less about the boundary,
and members whose routers agree average less; but a split on an irrelevant column narrows a
context without making it more local where the target varies, and a router has only about
log2(N / context) splits to spend. So the split *feature* is drawn from the importances of
one shallow tree (:func:`split_weights`, with a uniform share left) and the split point
stays random.

Where the target depends on a combination of discrete columns (a date's month and day,
each alone saying little), a context helps only if it holds many rows of the same
combination, and splits on other columns cut such groups apart. :func:`cell_columns` finds
such a combination from cell counts, without the network, and :func:`routing_candidates`
offers routers restricted to it ("cells") beside importance routing; which one a fit uses is
decided on held-out rows (:func:`pfn.routing_trial.choose_routing`), since neither serves every
table. The measurements behind these choices are in the model card
(``pfn/weights/MODEL_CARD.md``, "Local contexts: design measurements").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Split features are drawn with probabilities (1 - UNIFORM_SHARE) x the importances of a
# tree of depth IMPORTANCE_DEPTH fitted once on the training rows, + UNIFORM_SHARE / F each.
IMPORTANCE_DEPTH = 6
UNIFORM_SHARE = 0.2
# Routing "cells" splits only on columns with at most DISCRETE_MAX_LEVELS distinct values
# whose combinations predict the target: chosen by held-out cell means (cell_columns), at
# most CELL_MAX_COLUMNS, each adding at least CELL_MIN_GAIN of score; cells shrunk by
# CELL_SHRINK rows.
DISCRETE_MAX_LEVELS = 64
CELL_MAX_COLUMNS = 4
CELL_MIN_GAIN = 0.005
CELL_SHRINK = 5.0
ROUTINGS = ("auto", "importance", "cells")


@dataclass(frozen=True)
class RowRouter:
    """A binary tree over the features whose leaves are contexts.

    Node i splits on ``feature[i]`` at ``threshold[i]`` (x <= t goes left, NaN right) into
    ``left[i]`` and ``right[i]``; a leaf has ``feature[i] == -1`` and ``leaf[i]`` its index.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray

    @property
    def n_leaves(self) -> int:
        return int(self.leaf.max()) + 1

    def route(self, x: np.ndarray) -> np.ndarray:
        """Leaf index (n,) of every row of x (n, F)."""
        node = np.zeros(len(x), dtype=np.int64)
        active = self.feature[node] >= 0
        while active.any():
            idx = np.flatnonzero(active)
            nd = node[idx]
            go_left = x[idx, self.feature[nd]] <= self.threshold[nd]  # NaN -> right
            node[idx] = np.where(go_left, self.left[nd], self.right[nd])
            active = self.feature[node] >= 0
        return self.leaf[node]


def grow_router(x: np.ndarray, leaf_rows: int, rng: np.random.Generator,
                weights: np.ndarray | None = None) -> tuple[RowRouter, list[np.ndarray]]:
    """A :class:`RowRouter` over training rows x (n, F), and the training rows of each leaf.

    A node of n > ``leaf_rows`` rows is meant to end as k = ceil(n / leaf_rows) leaves of
    about n / k rows (as close to ``leaf_rows`` as whole leaves allow: a context smaller
    than the network can take wastes what it could see). So it splits at the
    floor(k / 2) / k quantile of a random feature (drawn with probabilities ``weights``
    (F,), uniformly if None) among those where ties leave each side at least half of its
    intended rows, and never fewer than 2 (a context needs two rows); a node where no
    feature can (many identical rows, or ``leaf_rows`` < 4) stays a leaf, larger than
    ``leaf_rows``.
    """
    feature, threshold, left, right, leaf = [], [], [], [], []
    leaves: list[np.ndarray] = []

    def new_node() -> int:
        for column, value in ((feature, -1), (threshold, np.nan), (left, -1), (right, -1),
                              (leaf, -1)):
            column.append(value)
        return len(feature) - 1

    stack = [(new_node(), np.arange(len(x)))]
    while stack:
        node, rows = stack.pop()
        split = _quantile_split(x[rows], leaf_rows, rng, weights) \
            if rows.size > leaf_rows else None
        if split is None:
            leaf[node] = len(leaves)
            leaves.append(rows)
            continue
        f, t, go_left = split
        feature[node], threshold[node] = f, t
        left[node], right[node] = new_node(), new_node()
        stack += [(right[node], rows[~go_left]), (left[node], rows[go_left])]
    router = RowRouter(np.asarray(feature), np.asarray(threshold, dtype=np.float64),
                       np.asarray(left), np.asarray(right), np.asarray(leaf))
    return router, leaves


def _quantile_split(x: np.ndarray, leaf_rows: int, rng: np.random.Generator,
                    weights: np.ndarray | None = None):
    """(feature, threshold, go_left) for a random split of x (n, F) into whole leaves."""
    n = len(x)
    k = -(-n // leaf_rows)
    pos = n * (k // 2) // k  # rows meant for the left side
    if weights is None:
        order = rng.permutation(x.shape[1])
    else:  # features of zero weight only where none of the others can split
        live = np.flatnonzero(weights > 0)
        order = rng.choice(live, live.size, replace=False, p=weights[live] / weights[live].sum())
        if live.size < x.shape[1]:
            order = np.concatenate([order, rng.permutation(np.flatnonzero(weights <= 0))])
    for f in order:
        col = x[:, f]
        t = np.sort(col)[pos - 1]  # NaN sort last
        if np.isnan(t):
            continue
        go_left = col <= t
        n_left = int(go_left.sum())
        if n_left >= max(pos / 2, 2) and n - n_left >= max((n - pos) / 2, 2):
            return int(f), float(t), go_left
    return None


def feature_importances(x: np.ndarray, y: np.ndarray, classification: bool,
                        rng: np.random.Generator) -> np.ndarray:
    """Importances (F,), summing to 1: the impurity decrease of one shallow tree fitted on
    up to 20,000 of the training rows (uniform where the tree found nothing)."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    take = rng.choice(len(x), min(len(x), 20000), replace=False)
    tree = (DecisionTreeClassifier if classification else DecisionTreeRegressor)(
        max_depth=IMPORTANCE_DEPTH, min_samples_leaf=20, random_state=0).fit(x[take], y[take])
    imp = np.nan_to_num(tree.feature_importances_)
    return imp / imp.sum() if imp.sum() > 0 else np.full(x.shape[1], 1 / x.shape[1])


def _mix(importances: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Split probabilities: importances mixed with a uniform share, over ``allowed`` only."""
    imp = np.where(allowed, importances, 0.0)
    imp = imp / imp.sum() if imp.sum() > 0 else allowed / allowed.sum()
    w = (1 - UNIFORM_SHARE) * imp + UNIFORM_SHARE * allowed / allowed.sum()
    return w / w.sum()


def split_weights(x: np.ndarray, y: np.ndarray, classification: bool,
                  rng: np.random.Generator) -> np.ndarray:
    """Probabilities (F,) of drawing each feature for a split: importance-weighted.

    The importances of :func:`feature_importances`, mixed with a uniform share so that
    every feature can still split.
    """
    imp = feature_importances(x, y, classification, rng)
    return _mix(imp, np.ones(x.shape[1], dtype=bool))


def distinct_values(x: np.ndarray) -> np.ndarray:
    """Number of distinct values (F,) of each column, NaN aside."""
    return np.array([np.unique(col[~np.isnan(col)]).size for col in x.T], dtype=np.int64)


def cell_columns(x: np.ndarray, y: np.ndarray, classification: bool, allowed: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``allowed`` (discrete) columns whose combinations predict the target
    best: forward selection, one column at a time while the held-out score rises, of a
    model that predicts each cell of the chosen columns' values by its mean target (class
    indicators for classification), shrunk to the overall mean by CELL_SHRINK rows.

    This finds the interaction that a date's month and day form (each alone says little)
    from cell counts only, without the network.
    """
    take = rng.choice(len(x), min(len(x), 20000), replace=False)
    x, y = x[take], y[take]
    target = np.eye(int(y.max()) + 1)[y.astype(np.int64)] if classification else \
        ((y - y.mean()) / (y.std() or 1.0))[:, None]
    fit = rng.uniform(size=len(x)) < 0.8
    codes = {int(f): np.unique(np.nan_to_num(x[:, f], nan=np.inf), return_inverse=True)[1]
             for f in np.flatnonzero(allowed)}

    def score(cells: np.ndarray) -> float:
        n = np.bincount(cells[fit], minlength=cells.max() + 1)[:, None]
        sums = np.stack([np.bincount(cells[fit], t, cells.max() + 1) for t in
                         target[fit].T], axis=1)
        mean = target[fit].mean(0)
        pred = (sums + CELL_SHRINK * mean) / (n + CELL_SHRINK)
        err = ((target[~fit] - pred[cells[~fit]]) ** 2).sum()
        return 1.0 - err / ((target[~fit] - mean) ** 2).sum()

    chosen, cells, best = [], np.zeros(len(x), dtype=np.int64), 0.0
    while len(chosen) < CELL_MAX_COLUMNS:
        trials = {f: np.unique(cells * (c.max() + 1) + c, return_inverse=True)[1]
                  for f, c in codes.items() if f not in chosen}
        scores = {f: score(c) for f, c in trials.items()}
        if not scores or max(scores.values()) <= best + CELL_MIN_GAIN:
            break
        f = max(scores, key=scores.get)
        chosen, cells, best = chosen + [f], trials[f], scores[f]
    return np.array(chosen, dtype=np.int64)


def routing_candidates(x: np.ndarray, y: np.ndarray, classification: bool,
                       rng: np.random.Generator,
                       routing: str = "auto") -> dict[str, np.ndarray]:
    """Split probabilities (F,) per routing: "importance" over every column, and "cells"
    over the discrete columns whose combinations predict the target
    (:func:`cell_columns`), where there are such columns and not every column is one.

    ``routing`` "auto" returns both (for :func:`pfn.routing_trial.choose_routing`), a
    name only that one; "cells" falls back to "importance" where it is not offered.
    """
    imp = feature_importances(x, y, classification, rng)
    candidates = {}
    if routing in ("auto", "importance"):
        candidates["importance"] = _mix(imp, np.ones(x.shape[1], dtype=bool))
    if routing in ("auto", "cells"):
        levels = distinct_values(x)
        discrete = (levels >= 2) & (levels <= DISCRETE_MAX_LEVELS)
        cols = cell_columns(x, y, classification, discrete, rng) if discrete.any() else []
        allowed = np.zeros(x.shape[1], dtype=bool)
        allowed[cols] = True
        if 0 < len(cols) < (levels >= 2).sum():
            candidates["cells"] = _mix(imp, allowed)
    if not candidates:  # "cells" asked where it is not offered
        candidates["importance"] = _mix(imp, np.ones(x.shape[1], dtype=bool))
    return candidates


__all__ = ["RowRouter", "grow_router", "feature_importances", "split_weights",
           "distinct_values", "cell_columns", "routing_candidates", "ROUTINGS"]
