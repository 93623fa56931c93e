"""Regression with a few gross target outliers: how far the predictions land from the signal.

    python benchmarks/target_outliers.py [--rows 800] [--seed 5]

A synthetic table, y = x0 + noise (sd 0.1), where a few training targets are replaced by
extreme values (a "999999" code, a unit error). Printed per case: the median absolute
distance between the signal x0 of 500 test rows and our median prediction (q50) and mean
prediction, with ``target_transform`` "auto" (the default), "none" and "power", and
HistGradientBoosting's prediction (default settings). Why "auto" transforms such targets:
``pfn/target_transform.py``.
"""

from __future__ import annotations

import argparse

import numpy as np

CASES = [(0, 0.0), (1, 1e3), (2, 1e4), (2, 1e6), (0.01, 100.0)]  # (count or share, value)


def main(argv: list[str] | None = None) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    from pfn import PFNRegressor
    from pfn.target_transform import gross_outliers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.rows, 6))
    x_test = rng.normal(size=(500, 6))
    signal = x_test[:, 0]
    print("| outliers | gross_outliers | " + " | ".join(
        f"{k} q50 / mean" for k in ("auto", "none", "power")) + " | HistGB |")
    print("|---" * 5 + "|---|")
    for count, value in CASES:
        n_out = int(round(count * args.rows)) if count < 1 else int(count)
        y = x[:, 0] + 0.1 * rng.normal(size=args.rows)
        y[:n_out] = value
        cells = []
        for kind in ("auto", "none", "power"):
            reg = PFNRegressor(target_transform=kind, n_jobs=1).fit(x, y)
            q50 = reg.predict_quantiles(x_test, [0.5])[:, 0]
            mean = reg.predict(x_test)
            cells.append(f"{np.median(np.abs(q50 - signal)):.3f} / "
                         f"{np.median(np.abs(mean - signal)):.3f}")
        hgb = HistGradientBoostingRegressor().fit(x, y).predict(x_test)
        print(f"| {n_out} at {value:g} | {gross_outliers(y)} | " + " | ".join(cells)
              + f" | {np.median(np.abs(hgb - signal)):.3f} |")


if __name__ == "__main__":
    main()
