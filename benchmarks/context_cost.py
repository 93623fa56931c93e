"""What one row costs the network, by context size: why large tables take the time they do.

    PYTHONPATH=. python benchmarks/context_cost.py [--contexts 250,500,1000,1500] [--runs 3]

One ensemble member (``n_estimators=1``), the shipped classifier on the default engine, one
thread, 9 numeric features: for each context of N training rows, the median time per test
row of ``predict_proba`` on 8192 rows and the time per training row of ``fit``. Every layer
attends from each row to the whole context, so the cost per row is a fixed part (encoder,
projections, feed-forward) plus a part that grows with N; the last line fits that line.
With local contexts (:mod:`pfn.contexts`) every training and test row costs one such pass
per member, which is what sets the large-table time against LightGBM.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", default="250,500,1000,1500")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--test-rows", type=int, default=8192)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pfn import PFNClassifier

    sizes = [int(n) for n in args.contexts.split(",")]
    rng = np.random.default_rng(0)
    n_all = max(sizes) + args.test_rows
    X = rng.normal(size=(n_all, 9))
    y = (X[:, 0] + rng.normal(size=n_all) > 0).astype(int)
    test = X[-args.test_rows:]
    print("| context rows | predict (µs per test row) | fit (µs per training row) |")
    print("|---|---|---|")
    per_row = []
    for n in sizes:
        def make(n: int = n) -> PFNClassifier:
            return PFNClassifier(n_estimators=1, max_train_rows=n, n_jobs=1)

        clf = make().fit(X[:n], y[:n])
        clf.predict_proba(test[:256])  # warm-up
        pred, fit = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            clf.predict_proba(test)
            pred.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            make().fit(X[:n], y[:n])
            fit.append(time.perf_counter() - t0)
        us = statistics.median(pred) / len(test) * 1e6
        per_row.append(us)
        print(f"| {n} | {us:.1f} | {statistics.median(fit) / n * 1e6:.1f} |")
    slope, fixed = np.polyfit(sizes, per_row, 1)
    print(f"\npredict per test row ≈ {fixed:.1f} µs + {slope * 1000:.1f} µs per 1000 context rows")


if __name__ == "__main__":
    main()
