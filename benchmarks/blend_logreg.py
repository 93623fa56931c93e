"""Would blending the classifier with logistic regression lift ROC AUC? An upper bound.

    python benchmarks/blend_logreg.py [--splits 3]

On the small classification tables of ``../shared/datasets`` (the splits of
``benchmarks/real_data.py``), both models are fitted once per split and their test-row
probabilities blended geometrically, p ~ ours^(1 - w) * logreg^w, for a few fixed w. The
best w is chosen by looking at the test labels, so the printed gain is an upper bound on
what any blend rule could add; logistic regression is the best baseline on the
categorical-heavy group, which is why it is the partner.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import real_data as rd

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 1.0)


def probabilities(name: str, X: pd.DataFrame, codes: np.ndarray, labels: np.ndarray,
                  tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    """:func:`real_data.class_probabilities`, floored at 1e-9 (the blend takes logs)."""
    p = np.clip(rd.class_probabilities(name, X, codes, labels, tr, te), 1e-9, None)
    return p / p.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--datasets", type=Path, default=rd.DEFAULT_DATASETS)
    args = ap.parse_args(argv)
    group = rd.groups(args.datasets)
    rows = []
    for path in sorted((args.datasets / "classification").glob("*.csv.gz")):
        name = path.name.split(".")[0]
        X, y = rd.load(path)
        labels, codes = np.unique(y.astype(str), return_inverse=True)
        for seed in range(args.splits):
            tr, te = rd.split(codes, seed, True, 1000)
            ours, logreg = (probabilities(m, X, codes, labels, tr, te) for m in ("ours", "logreg"))
            for w in WEIGHTS:
                lp = (1 - w) * np.log(ours) + w * np.log(logreg)
                p = np.exp(lp - lp.max(axis=1, keepdims=True))
                rows.append({"dataset": name, "group": group.get(name, "all"), "w": w,
                             "auc": rd.ovo_auc(codes[te], p / p.sum(axis=1, keepdims=True))})
    df = pd.DataFrame(rows)
    table = df.groupby(["group", "w"]).auc.mean().unstack()
    table.loc["all"] = df.groupby("w").auc.mean()
    print("mean ROC AUC by blend weight w (0: ours alone, 1: logistic regression alone)\n")
    print("| group | " + " | ".join(f"w = {w}" for w in table.columns) + " |")
    print("|---" * (len(table.columns) + 1) + "|")
    for name, row in table.iterrows():
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |")


if __name__ == "__main__":
    main()
