"""Tables wider than the network (100 features): how members should share the features.

    python benchmarks/wide_tables.py [--seeds 3] [--features 150,300,500]

None of the real datasets has more than 100 features, so this benchmark draws synthetic
ones (scikit-learn's ``make_classification`` / ``make_regression``: informative features
spread over the whole width, the rest noise or redundant) and compares, at the same
number of members, the estimators' feature groups (``pfn.preprocessing.draw_feature_sets``:
the features dealt into equal groups of at most 100, so every feature is seen in every
round of members) with groups of exactly 100 (the last filled up with other features) and
with the old behaviour, a random subset of 100 features per member. Printed: mean
ROC AUC / R² per width and strategy, and how many features no member saw.
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import r2_score, roc_auc_score

import pfn.preprocessing as preprocessing
from pfn import PFNClassifier, PFNRegressor


def random_subsets(n_features, max_features, n_members, rng):
    """The old behaviour: each member a random subset of ``max_features`` features."""
    return [rng.permutation(n_features)[:max_features] for _ in range(n_members)]


def full_groups(n_features, max_features, n_members, rng):
    """Groups of exactly ``max_features`` (the last filled up with other features)."""
    n_groups = -(-n_features // max_features)
    sets = []
    while len(sets) < max(n_members, n_groups):
        perm = rng.permutation(n_features)
        for i in range(n_groups):
            g = perm[i * max_features:(i + 1) * max_features]
            if len(g) < max_features:
                rest = np.setdiff1d(perm, g)
                g = np.concatenate([g, rng.choice(rest, max_features - len(g), replace=False)])
            sets.append(rng.permutation(g))
    return sets[:max(n_members, n_groups)]


STRATEGIES = {"full groups": full_groups, "groups": preprocessing.draw_feature_sets,
              "random subsets": random_subsets}


def table(task: str, n_features: int, seed: int):
    n = 2000
    if task == "classification":
        return make_classification(n, n_features, n_informative=n_features // 10,
                                   n_redundant=n_features // 10, random_state=seed)
    x, y = make_regression(n, n_features, n_informative=n_features // 10, noise=10.0,
                           random_state=seed)
    return x, y


def score(task: str, strategy: str, n_features: int, seed: int, members: int):
    x, y = table(task, n_features, seed)
    est = (PFNClassifier if task == "classification" else PFNRegressor)(
        n_estimators=members, random_state=seed, n_jobs=1)
    with mock.patch.object(preprocessing, "draw_feature_sets", STRATEGIES[strategy]):
        est.fit(x[:1000], y[:1000])
    seen = set().union(*(set(m.features.tolist()) for m in est.plan_.members))
    if task == "classification":
        s = roc_auc_score(y[1000:], est.predict_proba(x[1000:])[:, 1])
    else:
        s = r2_score(y[1000:], est.predict(x[1000:]))
    return s, n_features - len(seen)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--features", default="150,300,500")
    ap.add_argument("--members", type=int, default=8)
    args = ap.parse_args(argv)
    widths = [int(f) for f in args.features.split(",")]
    print(f"# Wide tables: {args.members} members, 1000 training and 1000 test rows, "
          f"{args.seeds} seeds\n")
    print("| task | features | strategy | mean score | features no member saw (mean) |")
    print("|---|---|---|---|---|")
    for task in ("classification", "regression"):
        for f in widths:
            for strategy in STRATEGIES:
                runs = [score(task, strategy, f, s, args.members) for s in range(args.seeds)]
                scores, unseen = zip(*runs, strict=True)
                print(f"| {task} | {f} | {strategy} | {np.mean(scores):.4f} | "
                      f"{np.mean(unseen):.1f} |", flush=True)


if __name__ == "__main__":
    main()
