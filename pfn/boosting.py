"""A gradient-boosted model of the whole table, as one more feature of the local contexts.

Local contexts (:mod:`pfn.contexts`) show the network a neighbourhood of at most
``max_train_rows`` rows, so a signal that only many rows at once can estimate (dozens of
small additive effects, sharp interactions spread over the table) is estimated again, and
worse, in every context. A model fitted on every training row sees it at once. Stacking
(Wolpert 1992) lets the network use that model without trusting it blindly: each training
row gets the **out-of-fold** prediction of a booster fitted on the other folds (so the
feature is as good on the training rows as it will be on new ones), a booster fitted on
every training row gives the test rows theirs, and the network reads the feature next to
the others, in context. Within one context ``"auto"`` leaves it off: the network sees every
training row there.

On the large tables (model card, ``pfn/weights/MODEL_CARD.md``, "Estimator defaults",
``boosting_feature``) the feature helped the regressor where gradient boosting was ahead of
the contexts, and cost the classifier on small-signal tables, where the booster's
out-of-fold logits are noisier than the network's own reading of the rows.

So with ``boosting_feature="auto"`` the feature is a candidate of the held-out trial that
chooses the routing (:func:`pfn.routing_trial.choose_routing`): the regressor keeps it unless
the contexts without it are clearly better there (a synthetic table of twenty additive
binary effects, where the network's contexts beat the booster, is such a case); the
classifier takes it only where it is clearly better. The network tends to lean on so
strong a feature rather than weigh it (with it, some tables score about what the booster
alone does), which is why a held-out check stands between it and the default.

The booster is scikit-learn's ``HistGradientBoosting*`` with its defaults, fitted on the
encoded table (categorical columns as their codes, NaN where missing), except that the
classifier's stops early at every size (scikit-learn starts early stopping by itself from
10,000 rows). Below that every fit runs all 100 iterations, most of which only fit noise on
a table of weak signal, and the feature's six fits (five folds and the full one) then cost
most of a 2,000-row table's ``fit`` in local contexts (SmokeBan at 2,000 training rows, 2
threads: fit + predict 2.1 s with every iteration, 1.2 s with early stopping). The
classifier's mean ROC AUC on the large tables was unchanged (capped at 2,000 / 3,000
training rows and at their 5,000 (SmokeBan and taxi): 0.683 / 0.687 / 0.630 before, 0.682 /
0.687 / 0.631 after), and its stacked strategy, whose booster reads the rows beyond the
context, became as accurate as local contexts from 2,000 rows (:mod:`pfn.stacking`). The
regressor keeps every iteration, since with early stopping its R² fell by 0.002 on
deliveries, the table where the booster leads, at 3,000 and 5,000 rows (model card,
"Estimator defaults", ``boosting_feature``).

Its trees are copied into :class:`BoostedTrees`, plain arrays evaluated here in numpy, so a
fitted estimator saves them without pickle (:mod:`pfn.persistence`) and predicts without
scikit-learn's private tree objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FOLDS = 5  # out-of-fold predictions for the training rows
MIN_ROWS = 2 * FOLDS  # fewer training rows leave a fold nothing to learn from
PREDICT_CHUNK = 8192  # rows evaluated at once (bounds the transposed copy of the chunk)
VALIDATION_SHARE = 0.1  # rows the classifier's early stopping holds out (scikit-learn's)


@dataclass
class BoostedTrees:
    """Regression trees as flat arrays: node i of the forest splits on ``feature[i]`` at
    ``threshold[i]`` (left when ``x <= threshold``; NaN goes left where ``missing_left``),
    or is a leaf worth ``value[i]``. Tree t starts at ``roots[t]`` and adds to output
    column ``outputs[t]``; the prediction is ``baseline`` plus the leaves reached."""

    feature: np.ndarray  # (nodes,) int64
    threshold: np.ndarray  # (nodes,) float64
    missing_left: np.ndarray  # (nodes,) bool
    left: np.ndarray  # (nodes,) int64, absolute node index
    right: np.ndarray  # (nodes,) int64
    is_leaf: np.ndarray  # (nodes,) bool
    value: np.ndarray  # (nodes,) float64
    roots: np.ndarray  # (trees,) int64
    outputs: np.ndarray  # (trees,) int64
    baseline: np.ndarray  # (n_outputs,) float64

    @classmethod
    def from_sklearn(cls, model) -> BoostedTrees:
        """Copy a fitted ``HistGradientBoostingRegressor`` / ``Classifier``'s trees.

        Reads ``_predictors`` and ``_baseline_prediction`` (private, but unchanged since
        scikit-learn 1.0); a test compares the copy's predictions with the model's own."""
        predictors = getattr(model, "_predictors", None)
        baseline = getattr(model, "_baseline_prediction", None)
        if predictors is None or baseline is None:
            raise RuntimeError("this scikit-learn version's HistGradientBoosting keeps its "
                               "trees elsewhere; boosting_feature=False avoids it")
        parts, roots, outputs, start = [], [], [], 0
        for iteration in predictors:
            for k, predictor in enumerate(iteration):
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise RuntimeError("categorical splits are not supported")
                parts.append((nodes, start))
                roots.append(start)
                outputs.append(k)
                start += len(nodes)
        cat = np.concatenate

        def field(name, dtype):
            return cat([n[name].astype(dtype) for n, _ in parts]) if parts \
                else np.zeros(0, dtype)

        children = {side: cat([n[side].astype(np.int64) + s for n, s in parts]) if parts
                    else np.zeros(0, np.int64) for side in ("left", "right")}
        return cls(feature=field("feature_idx", np.int64),
                   threshold=field("num_threshold", np.float64),
                   missing_left=field("missing_go_to_left", bool),
                   left=children["left"], right=children["right"],
                   is_leaf=field("is_leaf", bool), value=field("value", np.float64),
                   roots=np.asarray(roots, np.int64), outputs=np.asarray(outputs, np.int64),
                   baseline=np.asarray(baseline, np.float64).reshape(-1))

    @property
    def n_outputs(self) -> int:
        return len(self.baseline)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw predictions (n, n_outputs): the regression value, or the classes' logits."""
        out = np.empty((len(x), self.n_outputs))
        for start in range(0, len(x), PREDICT_CHUNK):
            out[start:start + PREDICT_CHUNK] = self._predict_chunk(x[start:start + PREDICT_CHUNK])
        return out

    def _predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """One tree at a time over every row of the chunk, each row leaving the loop at
        its leaf (1.6x faster than walking all (row, tree) pairs at once, measured on
        30,000 rows and 71 trees: the pairs' index arithmetic cost more than the loop)."""
        xt = np.ascontiguousarray(x.T)  # (F, n): a column's values sit together
        out = np.tile(self.baseline, (len(x), 1))
        for root, k in zip(self.roots, self.outputs, strict=True):
            node = np.full(len(x), root)
            rows = np.arange(len(x)) if not self.is_leaf[root] else np.zeros(0, np.int64)
            while rows.size:  # rows not yet at a leaf, one level down
                at = node[rows]
                v = xt[self.feature[at], rows]
                go_left = np.where(np.isnan(v), self.missing_left[at], v <= self.threshold[at])
                at = np.where(go_left, self.left[at], self.right[at])
                node[rows] = at
                rows = rows[~self.is_leaf[at]]
            out[:, k] += self.value[node]
        return out


def output_width(n_classes: int) -> int:
    """The booster's columns: one (a value, or the logit of two classes), else a logit per
    class (n_classes 0 for regression)."""
    return 1 if n_classes <= 2 else n_classes


def _booster(classification: bool, seed: int, y: np.ndarray):
    """The classifier stops early at every size, the regressor from 10,000 rows (module
    doc: why). Early stopping holds out a stratified VALIDATION_SHARE of the rows, which
    needs two rows of every class and a held-out row per class: where ``y`` has fewer,
    every iteration runs (scikit-learn's own "auto" would fail there from 10,000 rows)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if not classification:
        return HistGradientBoostingRegressor(random_state=seed)
    counts = np.unique(y, return_counts=True)[1]
    held = int(np.ceil(VALIDATION_SHARE * len(y)))
    stops = counts.min() >= 2 and min(held, len(y) - held) >= len(counts)
    return HistGradientBoostingClassifier(random_state=seed, early_stopping=bool(stops),
                                          validation_fraction=VALIDATION_SHARE)


def _fit(x: np.ndarray, y: np.ndarray, classification: bool, seed: int) -> BoostedTrees:
    """The booster fitted on (x, y) and copied. Columns without one observed value (all
    missing, in the table or in a fold's training rows) reach it as zeros: scikit-learn's
    binning fails on them, and a constant column is never split on, so the trees never
    read it and new rows' values there do not matter."""
    empty = np.isnan(x).all(axis=0)
    if empty.any():
        x = np.where(empty, 0.0, x)
    return BoostedTrees.from_sklearn(_booster(classification, seed, y).fit(x, y))


def _threads(n_jobs: int | None):
    from contextlib import nullcontext

    if n_jobs is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(n_jobs), user_api="openmp")


def fit_booster(x: np.ndarray, y: np.ndarray, classification: bool, seed: int,
                n_jobs: int | None = None) -> BoostedTrees:
    """The booster fitted on (x, y) with ``n_jobs`` threads, copied (no out-of-fold
    predictions: :mod:`pfn.stacking` keeps its own rows out of the fit instead)."""
    with _threads(n_jobs):
        return _fit(x, y, classification, seed)


def fit_boosted_feature(x: np.ndarray, y: np.ndarray, classification: bool, seed: int,
                        n_jobs: int | None = None) -> tuple[np.ndarray, BoostedTrees]:
    """The training rows' out-of-fold feature (n, k) and the trees that give new rows
    theirs. k = 1 for regression and binary classification (the logit), else one logit
    per class. ``y``: the target as the network sees it (class codes, or the standardised
    regression target); ``x``: the encoded table."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if len(x) < MIN_ROWS:
        raise ValueError(f"boosting_feature needs at least {MIN_ROWS} training rows (its "
                         f"{FOLDS} folds of 2), got {len(x)}; pass boosting_feature=False")
    splitter = (StratifiedKFold if classification else KFold)(FOLDS, shuffle=True,
                                                              random_state=seed)
    if classification and np.bincount(y).min() < FOLDS:
        splitter = KFold(FOLDS, shuffle=True, random_state=seed)  # a class too rare to stratify
    with _threads(n_jobs):
        trees = _fit(x, y, classification, seed)
        feature = np.empty((len(x), trees.n_outputs))
        for train, held in splitter.split(x, y):
            if classification and len(np.unique(y[train])) < len(np.unique(y)):
                fold = trees  # a fold without some class: the full model stands in
            else:
                fold = _fit(x[train], y[train], classification, seed)
            feature[held] = fold.predict(x[held])
    return feature, trees
