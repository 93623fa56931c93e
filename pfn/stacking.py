"""Large tables, fast: the network reads one context, a booster reads every other row.

Local contexts (:mod:`pfn.contexts`) pass every training row through the network once per
member, so on large tables fit + predict takes tens of times LightGBM's time on one core.
The stacked strategy (``context_strategy="stacked"``, and "auto" from ``AUTO_ROWS``
training rows: 2,000 for the classifier, 10,000 for the regressor) spends the network on
the test rows instead. The training rows are split three ways:

- **context rows** (``max_train_rows``; the regressor at most ``REGRESSION_CONTEXT_ROWS``):
  the network's one context;
- **held-out rows** (``HELD_SHARE`` of the others, at most ``HELD_MAX_ROWS``): they choose
  the blend weight below;
- **the rest**: a gradient-boosted model (:mod:`pfn.boosting`'s HistGradientBoosting) is
  fitted on them, so its predictions for the context and held-out rows are out of sample,
  as they will be for new rows. Where the rest misses much of the table, the booster that
  predicts new rows is refitted on every row.

Every row is read. The network sees the booster's prediction as one more feature of its
context (stacking, Wolpert 1992), and the prediction is a blend, ``(1 - w) x network + w x
booster``: class probabilities are blended as they are; for regression the network's
predictive distribution is moved so that its mean is the blend of the two means (its
spread and shape stay the network's). The weight ``w`` is the one of ``WEIGHTS`` with the
lowest loss on the held-out rows (log loss; squared error of the mean), since neither side
wins everywhere: where many rows at once carry the signal, the network reading one context
falls behind the booster, elsewhere it is ahead. At ``w = 1`` a classifier skips the
network at prediction, and so does the regressor's ``predict`` of the mean (without a target
transform), which is then the booster's whatever the network says.

Cost: one or two booster fits, one context, and one network pass per test row and member
(one member by default), against a pass per training and test row per member with local
contexts. The figures (accuracy and time against LightGBM and the local contexts, and the
variants measured on the way) are in the model card, ``pfn/weights/MODEL_CARD.md``, "Large
tables: the stacked strategy".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfn.bar_distribution import BarDistribution, softmax
from pfn.boosting import BoostedTrees, fit_booster, output_width
from pfn.preprocessing import EnsemblePlan

STRATEGIES = ("auto", "local", "stacked")
HELD_SHARE = 0.1
HELD_MAX_ROWS = 1000
MIN_OTHER_ROWS = 20  # rows beyond the context, at least: a booster of fewer says nothing
# "auto" stacks from this many training rows, per task. Regression: on the large tables of
# 13,000 rows and more the two strategies were about as accurate, the stacked one several
# times faster; at 2,000-5,000 local contexts were clearly more accurate, and cost a few
# seconds there (model card, "Large tables: the stacked strategy"). Classification: since
# its booster stops early (pfn.boosting), the stacked classifier was as accurate as local
# contexts from 2,000 rows on (mean ROC AUC at 2,000 / 3,000 / 5,000 training rows 0.685 /
# 0.686 / 0.630 against 0.682 / 0.686 / 0.631) in a third to a fifth of the time (model
# card, "Large tables: the classifier stacks from 2,000 rows").
AUTO_ROWS = {"classification": 2_000, "regression": 10_000}
# The booster that predicts new rows is refitted on every training row where the rows it
# was first fitted on (those beyond the context and the held-out rows) are fewer than
# REFIT_BELOW of them (on 5,000 training rows the first fit misses a fifth to a third).
REFIT_BELOW = 0.9
# The regressor's context holds at most this many rows: 1000 measured no better, slower.
REGRESSION_CONTEXT_ROWS = 500
WEIGHTS = np.linspace(0.0, 1.0, 11)  # blend weights of the booster tried on held-out rows


@dataclass(frozen=True)
class RowSplit:
    """Indices of the training rows in each role: the network's context, the rows that
    choose the blend weight, and the booster's rows."""

    context: np.ndarray
    held: np.ndarray
    rest: np.ndarray


def split_rows(n: int, context_rows: int, y_idx: np.ndarray | None,
               rng: np.random.Generator) -> RowSplit:
    """Random disjoint roles for ``n`` training rows (:class:`RowSplit`), stratified by class
    when ``y_idx`` (n,) is given: rows are ordered by their random rank within their class
    divided by the class's size, so every prefix of the order holds each class in about its
    share (a rare class spread over the three roles as far as its rows go)."""
    if y_idx is None:
        order = rng.permutation(n)
    else:
        key = np.empty(n)
        for c in np.unique(y_idx):
            rows = np.flatnonzero(y_idx == c)
            key[rows] = (rng.permutation(rows.size) + rng.uniform(size=rows.size)) / rows.size
        order = np.argsort(key, kind="stable")
    held = min(HELD_MAX_ROWS, int(HELD_SHARE * (n - context_rows)))
    return RowSplit(np.sort(order[:context_rows]),
                    np.sort(order[context_rows:context_rows + held]),
                    np.sort(order[context_rows + held:]))


def fit_stacked_booster(x: np.ndarray, target: np.ndarray, split: RowSplit,
                        classification: bool, seed: int, n_jobs: int | None
                        ) -> tuple[BoostedTrees, np.ndarray, np.ndarray]:
    """The booster for new rows, and the raw predictions (rows, k) for the context rows
    and for the held-out rows of a booster fitted on ``split.rest`` (out of sample).
    The booster for new rows is that one, or, where the rest holds fewer than REFIT_BELOW
    of the rows, one refitted on every row: a stacked model's features for new rows come
    from a model of every training row, as :mod:`pfn.boosting`'s do (measured better on
    both tasks: model card).
    ``target``: class indices, or the regression target as the network sees it. Where the
    rest lacks a class (a class of a few rows), the first booster is fitted on every row,
    so that it predicts every class: its predictions for the context rows are then in
    sample."""
    rows = split.rest
    if classification and np.unique(target[rows]).size < np.unique(target).size:
        rows = np.arange(len(target))
    trees = fit_booster(x[rows], target[rows], classification, seed, n_jobs)
    raw_context, raw_held = trees.predict(x[split.context]), trees.predict(x[split.held])
    if len(rows) < REFIT_BELOW * len(target):
        trees = fit_booster(x, target, classification, seed, n_jobs)
    return trees, raw_context, raw_held


def booster_probs(raw: np.ndarray) -> np.ndarray:
    """Class probabilities (n, C) from the booster's raw output (n, 1) for two classes (a
    logit) or (n, C) logits."""
    if raw.shape[1] == 1:
        p = np.exp(-np.logaddexp(0.0, -raw[:, 0]))  # the logistic, without overflow
        return np.stack([1.0 - p, p], axis=1)
    return softmax(raw)


def refusal(shape: tuple[int, int], n_classes: int, context_rows: int, max_features: int,
            max_classes: int) -> str | None:
    """Why a table of ``shape`` (rows, features) cannot take the stacked strategy, or None:
    the booster needs MIN_OTHER_ROWS rows beyond the context, and its columns (a value or
    logit, or a logit per class) must fit the network beside the features, without class
    groups."""
    (n_rows, n_features), width = shape, output_width(n_classes)
    if n_rows - context_rows < MIN_OTHER_ROWS:
        return (f"{MIN_OTHER_ROWS} training rows beyond max_train_rows={context_rows} for its "
                f"booster (got {n_rows - context_rows})")
    if n_classes > max_classes or n_features + width > max_features:
        return (f"the booster's {width} column(s) beside {n_features} features within the "
                f"network's {max_features}, and at most {max_classes} classes (got "
                f"{n_classes})")
    return None


def network_view(plan: EnsemblePlan, engine, context: list, x: np.ndarray, temperature: float,
                 clip: tuple[float, float] | None):
    """The network's prediction for rows x (with the booster's columns): class
    probabilities (n, C), or, for regression (``clip`` given), the members' mixture in the
    standardised target space with its outer tails clipped to ``clip`` as the regressor's
    predictions are. Unclipped, the prior's far outer borders can put a row's mean many
    spreads away from its bulk, and the blend would move the bulk by that much."""
    out = plan.network_outputs(engine, context, x)
    if clip is None:
        return plan.combine_probs(out["probs"], temperature)
    return BarDistribution.mixture(out["logits"], out["borders"]).clip_tails(*clip, 1.0)


def choose_weight(net, raw: np.ndarray, target: np.ndarray) -> float:
    """The weight of ``WEIGHTS`` whose blend (:func:`blend`) has the lowest loss on the
    held-out rows: log loss of their classes ``target`` (h,) given the network's
    probabilities ``net`` (h, C), or squared error of the mean for their targets given its
    distribution; ``raw``: the booster's outputs (h, k)."""
    if isinstance(net, BarDistribution):
        m, b = net.mean(), raw[:, 0]
        losses = [(((1 - w) * m + w * b - target) ** 2).mean() for w in WEIGHTS]
    else:
        rows, boost = np.arange(len(target)), booster_probs(raw)
        losses = [-np.log(np.clip((1 - w) * net[rows, target] + w * boost[rows, target],
                                  1e-12, None)).mean() for w in WEIGHTS]
    return float(WEIGHTS[int(np.argmin(losses))])


def blend(net, raw: np.ndarray, w: float):
    """``(1 - w) x network + w x booster``: class probabilities, or the network's
    distribution moved so that its mean is the blend of the two means."""
    if isinstance(net, BarDistribution):
        return net.shift(w * (raw[:, 0] - net.mean()))
    return (1 - w) * net + w * booster_probs(raw)


__all__ = ["STRATEGIES", "MIN_OTHER_ROWS", "AUTO_ROWS", "REFIT_BELOW",
           "REGRESSION_CONTEXT_ROWS", "WEIGHTS", "RowSplit", "split_rows", "fit_stacked_booster",
           "booster_probs", "refusal", "network_view", "choose_weight", "blend"]
