"""The held-out trial that chooses how local contexts are routed, and whether they read
the booster's feature.

Local contexts (:mod:`pfn.contexts`) can be routed by importance over every column or only
over a combination of discrete columns ("cells", :mod:`pfn.routing`), and may read
:mod:`pfn.boosting`'s feature ("boosted"). No fixed choice served every large table, so
"auto" fits one member of each candidate on most training rows and keeps the default
unless another is clearly better on the rest (:func:`choose_routing`);
:func:`trial_routing` builds the candidates the estimators offer. Measurements: the model
card, ``pfn/weights/MODEL_CARD.md`` ("Estimator defaults": ``context_routing``,
``boosting_feature``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from pfn.contexts import LocalContexts
from pfn.routing import routing_candidates

# The choice between routings holds out HOLDOUT_SHARE of the training rows (at most
# HOLDOUT_MAX_ROWS) and leaves the default only for a loss lower by SWITCH_Z standard
# errors (paired, per held-out row).
HOLDOUT_SHARE = 0.1
HOLDOUT_MAX_ROWS = 2000
SWITCH_Z = 2.0


@dataclass(frozen=True)
class Route:
    """One candidate of :func:`choose_routing`: the table its members see (the encoded
    training rows, possibly with extra columns such as :mod:`pfn.boosting`'s feature), each
    column's levels (0 for numeric), and the routers' split probabilities over its columns."""

    x: np.ndarray
    n_levels: np.ndarray
    weights: np.ndarray


def choose_routing(engine, candidates: dict[str, Route], y: np.ndarray,
                   y_idx: np.ndarray | None, *, context_rows: int, seed: int,
                   default: str = "importance",
                   **member) -> tuple[str, dict[str, float], RoutingTrial | None]:
    """The routing to use, every candidate's mean held-out loss, and the chosen routing's
    trial member (None where no trial ran), which the final fit can reuse as its first
    member instead of fitting one more (:meth:`LocalContexts.prepend`).

    A stratified HOLDOUT_SHARE of the training rows (at most HOLDOUT_MAX_ROWS) is held
    out; per candidate, one member's local contexts are fitted on the rest and predict
    the held-out rows (log loss; squared error of the mean in standardised units for
    regression, its tails clipped as the estimator clips them: unclipped, one leaf's outer
    bucket put a held-out row 29 standard deviations out, and that one row decided the
    comparison). ``default`` (if a candidate, else the first) is kept unless another
    candidate's loss is lower by at least SWITCH_Z standard errors of the per-row
    differences (on the large tables a relative margin was not enough, since the noise of
    a held-out loss differs from table to table: 500 held-out rows of a 92 % class
    switched to a routing that lost 0.04 ROC AUC there). Of the candidates that are, the
    one with the lowest loss is taken, not the one furthest in standard errors (on
    nycflights13 "cells" was further from "importance" than the boosting feature, and
    behind it in loss). ``member`` holds :meth:`LocalContexts.fit`'s max_features, max_classes,
    transforms and encodings.
    """
    default = default if default in candidates else next(iter(candidates))
    if len(candidates) < 2:
        return default, {}, None
    rng = np.random.default_rng(seed)
    n = len(y)
    groups = [np.flatnonzero(y_idx == c) for c in np.unique(y_idx)] if y_idx is not None \
        else [np.arange(n)]
    share = min(HOLDOUT_SHARE, HOLDOUT_MAX_ROWS / n)
    held = np.concatenate([rng.choice(g, int(share * len(g)), replace=False) for g in groups])
    if len(held) < 2 or n - len(held) <= context_rows:
        return default, {}, None
    keep = np.setdiff1d(np.arange(n), held)
    losses, trials = {}, {}
    for name, route in candidates.items():
        with warnings.catch_warnings():  # what the trial members meet, the final fit says
            warnings.simplefilter("ignore")
            local = LocalContexts.fit(route.x[keep], y[keep],
                                      None if y_idx is None else y_idx[keep], route.n_levels,
                                      n_estimators=1, context_rows=context_rows, seed=seed,
                                      weights=route.weights, **member)
        contexts = local.encode(engine)
        trials[name] = RoutingTrial(local, contexts, keep)
        out = local.predict(engine, contexts, route.x[held])
        if y_idx is None:  # tails clipped as the estimator's predictions are
            fit_y = y[keep]
            out = out.clip_tails(float(fit_y.min()), float(fit_y.max()), float(fit_y.std()))
            losses[name] = (out.mean() - y[held]) ** 2
        else:
            p = out[np.arange(len(held)), y_idx[held]]
            losses[name] = -np.log(np.clip(p, 1e-12, None))
    best = default  # of the candidates clearly better than it, the lowest loss
    for name, loss in losses.items():
        diff = loss - losses[default]
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        if se > 0 and diff.mean() / se < -SWITCH_Z and loss.mean() < losses[best].mean():
            best = name
    return best, {name: float(loss.mean()) for name, loss in losses.items()}, trials[best]


@dataclass(frozen=True)
class RoutingTrial:
    """One trial member of :func:`choose_routing`: its local contexts, fitted on the
    training rows ``keep``, and their engine contexts."""

    local: LocalContexts
    contexts: list
    keep: np.ndarray


def trial_routing(engine, x: np.ndarray, levels: np.ndarray, y_net: np.ndarray,
                  y_idx: np.ndarray | None, draws: dict,
                  boosted: tuple[np.ndarray, np.ndarray] | None, context_routing: str,
                  context_rows: int) -> tuple[str, dict[str, float], Route, RoutingTrial | None]:
    """(routing used, held-out loss per candidate, the chosen :class:`Route`, its trial
    member or None): the candidates of :func:`pfn.routing.routing_candidates` for
    ``context_routing``, and, where ``boosted`` (the table with :mod:`pfn.boosting`'s
    feature and its levels) is given, one more ("boosted", routed like the others), compared
    by :func:`choose_routing`. ``draws``: the members' settings (seed, max_features,
    max_classes, transforms, encodings)."""
    target, clf = (y_net, False) if y_idx is None else (y_idx, True)
    routes = {name: Route(x, levels, weights) for name, weights in routing_candidates(
        x, target, clf, np.random.default_rng(draws["seed"]), context_routing).items()}
    routing = "importance"
    if boosted is not None:
        xb, lb = boosted
        if context_routing == "cells" and "cells" in routes:
            routing = "cells"  # never split on the feature: pad with zero weights
            weights = np.concatenate([routes["cells"].weights,
                                      np.zeros(xb.shape[1] - x.shape[1])])
        else:  # routers may split on the feature too (measured: better than not)
            weights = routing_candidates(xb, target, clf,
                                         np.random.default_rng(draws["seed"]),
                                         "importance")["importance"]
        routes["boosted"] = Route(xb, lb, weights)
    member = {k: draws[k] for k in ("max_features", "max_classes", "transforms",
                                    "encodings")}
    # the regressor keeps the feature unless the contexts without it are clearly
    # better, the classifier takes it only where clearly better (pfn.boosting: why)
    default = "boosted" if not clf and "boosted" in routes else "importance"
    name, losses, trial = choose_routing(
        engine, routes, y_net, y_idx, context_rows=context_rows,
        seed=draws["seed"] + 1, default=default, **member)
    return routing if name == "boosted" else name, losses, routes[name], trial


__all__ = ["Route", "RoutingTrial", "choose_routing", "trial_routing", "HOLDOUT_SHARE",
           "HOLDOUT_MAX_ROWS", "SWITCH_Z"]
