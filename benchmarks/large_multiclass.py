"""Multiclass large tables: the classifier's local contexts against its stacked strategy.

    PYTHONPATH=. python benchmarks/large_multiclass.py [--classes 5] [--max-train 2000]
        [--splits 2] [--test-rows 3000]

The tables of ``../shared/datasets/large/`` are all binary, so the classifier's choice of
strategy by size (``pfn.stacking.AUTO_ROWS``) is checked here on the large *regression*
tables with their targets cut at quantiles into ``--classes`` classes (fewer where values
repeat: GSSvocab's integer scores give 4 of 5). Same splits for both strategies (the
stratified 50/50 splits of ``benchmarks/real_data.py``, training rows capped at
``--max-train``, the first ``--test-rows`` test rows), default settings but
``context_strategy``, one thread. Printed: per table and strategy, one-vs-one ROC AUC, log
loss and fit + predict seconds; then the means.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import load, markdown, split  # noqa: E402  (puts this checkout on the path)

from pfn import PFNClassifier  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "large"
STRATEGIES = ("local", "stacked")


def quantile_classes(target: np.ndarray, classes: int) -> np.ndarray:
    """Class codes 0..k-1 of ``target`` cut at its inner quantiles (k <= classes)."""
    cuts = np.unique(np.quantile(target, np.linspace(0, 1, classes + 1)[1:-1]))
    return np.digitize(target, cuts)


def run_table(path: Path, classes: int, max_train: int, splits: int,
              test_rows: int) -> pd.DataFrame:
    X, target = load(path)
    y = quantile_classes(target.to_numpy(dtype=float), classes)
    rows = []
    for seed in range(splits):
        tr, te = split(y, seed, True, max_train)
        te = te[:test_rows]
        for strategy in STRATEGIES:
            t0 = time.perf_counter()
            est = PFNClassifier(context_strategy=strategy, n_jobs=1).fit(X.iloc[tr], y[tr])
            proba = est.predict_proba(X.iloc[te])
            seconds = time.perf_counter() - t0
            rows.append({"strategy": strategy, "classes": proba.shape[1],
                         "auc": roc_auc_score(y[te], proba, multi_class="ovo"),
                         "logloss": log_loss(y[te], proba, labels=np.arange(proba.shape[1])),
                         "time": seconds})
    return pd.DataFrame(rows).groupby("strategy").mean()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=DEFAULT)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--splits", type=int, default=2)
    ap.add_argument("--test-rows", type=int, default=3000)
    args = ap.parse_args(argv)
    if args.classes < 3:
        raise SystemExit("--classes must be at least 3 (the binary tables are in "
                         "benchmarks/large_tables.py)")
    paths = sorted((args.datasets / "regression").glob("*.csv.gz"))
    if not paths:
        raise SystemExit(f"no regression tables under {args.datasets}")
    print(f"# Multiclass large tables: {args.classes} quantile classes, training rows capped "
          f"at {args.max_train}, {args.splits} splits, {args.test_rows} test rows\n")
    tables = {}
    for path in paths:
        name = path.name.removesuffix(".csv.gz")
        tables[name] = run_table(path, args.classes, args.max_train, args.splits,
                                 args.test_rows)
        print(f"### {name}\n\n{markdown(tables[name])}\n", flush=True)
    mean = pd.concat(tables.values()).groupby(level=0).mean()
    print(f"## means over {len(tables)} tables\n\n{markdown(mean)}")


if __name__ == "__main__":
    main()
