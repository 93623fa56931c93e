"""How much ROC AUC is there to win on tables whose rows fall into a few repeated cells?

Contingency tables expanded to one row per case (``vcdExtra_Dyke``, ``vcd_Rochdale``, ...)
have only as many distinct feature rows ("cells") as the product of their levels, so any
classifier is a function of the cell, and its test ROC AUC has a hard ceiling:

- **oracle**: each test row scored by its cell's class frequencies *in the test half
  itself*. Ordering cells by their own positive rate maximises binary ROC AUC, so no model
  fitted on the training half can exceed it on that split (for several classes, one-vs-one,
  it is a near-maximal reference). It is optimistic: it knows the test labels, and small
  cells look purer than they are.
- **saturated**: the honest version, the cell's class frequencies in the *training* half,
  shrunk toward the class prior by ``--alpha`` pseudo-rows (unseen cells get the prior).
  It is the model with every interaction; where logistic regression (main effects only)
  matches or beats it, the table has little interaction left for anyone to find.

Printed next to default logistic regression (``real_data.py``'s pipeline), same splits as
``real_data.py``. Why this exists: issue #9 asks for a mean ROC AUC 0.01 above the best
baseline on the categorical-heavy tables; this shows which of them leave room for that.

    python benchmarks/auc_ceiling.py --splits 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import (  # noqa: E402
    DEFAULT_DATASETS,
    eval_classification,
    load,
    ovo_auc,
    split,
)

MAX_CELL_SHARE = 0.2  # a table counts as "cells" when distinct rows <= this share of rows


def cell_keys(X: pd.DataFrame) -> np.ndarray:
    """One string per row naming its cell (NaN is a level of its own)."""
    return np.array(["\x1f".join(map(str, row)) for row in X.itertuples(index=False)])


def cell_frequencies(keys: np.ndarray, y: np.ndarray, n_classes: int, alpha: float,
                     prior: np.ndarray) -> dict[str, np.ndarray]:
    """Cell -> class frequencies, with ``alpha`` pseudo-rows distributed as ``prior``."""
    counts: dict[str, np.ndarray] = {}
    for k, c in zip(keys, y, strict=True):
        counts.setdefault(k, np.zeros(n_classes))[c] += 1
    return {k: (v + alpha * prior) / (v.sum() + alpha) for k, v in counts.items()}


def scores(keys_fit: np.ndarray, y_fit: np.ndarray, keys_score: np.ndarray, n_classes: int,
           alpha: float) -> np.ndarray:
    prior = np.bincount(y_fit, minlength=n_classes) / len(y_fit)
    freq = cell_frequencies(keys_fit, y_fit, n_classes, alpha, prior)
    return np.array([freq.get(k, prior) for k in keys_score])


def evaluate(path: Path, splits: int, alpha: float) -> dict[str, float] | None:
    X, y = load(path)
    keys = cell_keys(X)
    n_cells = len(set(keys.tolist()))
    if n_cells > MAX_CELL_SHARE * len(keys):
        return None
    labels, codes = np.unique(y.to_numpy(), return_inverse=True)  # as real_data.py codes them
    k = len(labels)
    res: dict[str, list[float]] = {"oracle": [], "saturated": [], "logreg": []}
    for seed in range(splits):
        tr, te = split(codes, seed, True, 1000)
        res["oracle"].append(ovo_auc(codes[te], scores(keys[te], codes[te], keys[te], k, 0.0)))
        res["saturated"].append(ovo_auc(codes[te], scores(keys[tr], codes[tr], keys[te], k,
                                                           alpha)))
        res["logreg"].append(eval_classification("logreg", X, codes, labels, tr, te)["auc"])
    return {"rows": len(keys), "cells": n_cells} | {m: float(np.mean(v)) for m, v in res.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS / "classification")
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=2.0,
                    help="pseudo-rows shrinking the saturated model's cells to the prior")
    args = ap.parse_args(argv)
    print(f"# ROC AUC ceilings of tables made of repeated cells (splits: {args.splits})\n")
    print("| dataset | rows | cells | oracle (test labels) | saturated (train) | logreg |")
    print("|---|---|---|---|---|---|")
    for path in sorted(args.datasets.glob("*.csv.gz")):
        r = evaluate(path, args.splits, args.alpha)
        if r is not None:
            print(f"| {path.name.removesuffix('.csv.gz')} | {r['rows']} | {r['cells']} | "
                  f"{r['oracle']:.4f} | {r['saturated']:.4f} | {r['logreg']:.4f} |")


if __name__ == "__main__":
    main()
