"""``pfn predict``: predictions for a test CSV from a training CSV, no code, no training.

    pfn predict --train train.csv --test test.csv --target COLUMN \\
        [--task auto|classification|regression] [--out predictions.csv]

- ``--task auto`` (default): classification if the target is not numeric or has at most 10
  distinct values that are all integers, else regression.
- Output, one row per test row: classification gives ``proba_<class>`` per class and
  ``prediction``; regression gives ``mean``, ``q05``, ``q50``, ``q95`` (quantiles of the
  predictive distribution). Written to ``--out``, or to stdout without it.
- The test table may contain the target column (it is ignored) and extra columns (ignored,
  with a note); it must contain every feature column of the training table.
- Training rows whose target is missing are dropped (with a note).
- Errors (missing file, missing column, empty table, bad values) print one line on stderr
  and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


class UsageError(Exception):
    """A problem with the user's files or arguments: reported in one line, exit status 2."""


def infer_task(y) -> str:
    """'classification' for non-numeric targets or <= 10 distinct integers, else regression."""
    import pandas as pd

    y = pd.Series(y).dropna()
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    values = y.to_numpy(dtype=np.float64)
    if np.all(values == np.round(values)) and np.unique(values).size <= 10:
        return "classification"
    return "regression"


def _read(path: str, what: str):
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise UsageError(f"{what} file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise UsageError(f"cannot read {what} file {path}: {e}") from None
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise UsageError(f"{what} file {path} has no data rows")
    return table


def predict_tables(train, test, target: str, task: str = "auto", n_estimators: int = 4,
                   engine: str = "auto"):
    """Predictions for ``test`` as a DataFrame (see the module docstring for columns)."""
    import pandas as pd

    from pfn.estimators import PFNClassifier, PFNRegressor

    if target not in train.columns:
        raise UsageError(f"target column {target!r} not in the training file; columns: "
                         f"{', '.join(map(str, train.columns))}")
    keep = train[target].notna()
    if not keep.all():
        print(f"note: dropping {int((~keep).sum())} training rows with a missing target",
              file=sys.stderr)
    train = train[keep]
    if len(train) < 2:
        raise UsageError("need at least 2 training rows with a target value")
    features = [c for c in train.columns if c != target]
    if not features:
        raise UsageError("the training file has no feature columns besides the target")
    missing = [c for c in features if c not in test.columns]
    if missing:
        raise UsageError(f"test file lacks feature columns: {', '.join(map(str, missing))}")
    extra = [c for c in test.columns if c not in features and c != target]
    if extra:
        print(f"note: ignoring test columns not in training: {', '.join(map(str, extra))}",
              file=sys.stderr)
    if task == "auto":
        task = infer_task(train[target])
    X, y, X_test = train[features], train[target], test[features]
    if task == "classification":
        model = PFNClassifier(n_estimators=n_estimators, engine=engine).fit(X, y.to_numpy())
        proba = model.predict_proba(X_test)
        out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in model.classes_])
        out["prediction"] = model.classes_[proba.argmax(1)]
        return out
    if not pd.api.types.is_numeric_dtype(y):
        raise UsageError(f"target column {target!r} is not numeric; use --task classification")
    model = PFNRegressor(n_estimators=n_estimators, engine=engine).fit(X, y.to_numpy(float))
    parts = [(d.mean(), d.quantile([0.05, 0.5, 0.95])) for d in model.iter_distributions(X_test)]
    mean, q = np.concatenate([m for m, _ in parts]), np.concatenate([q for _, q in parts])
    return pd.DataFrame({"mean": mean, "q05": q[:, 0], "q50": q[:, 1], "q95": q[:, 2]})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pfn predict", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training CSV, with the target column")
    p.add_argument("--test", required=True, help="CSV of rows to predict")
    p.add_argument("--target", required=True, help="name of the target column")
    p.add_argument("--task", default="auto", choices=("auto", "classification", "regression"))
    p.add_argument("--out", default=None, help="output CSV (default: stdout)")
    p.add_argument("--n-estimators", type=int, default=4, help="ensemble members (default 4)")
    p.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse exits with status 2 on bad usage
    try:
        train = _read(args.train, "training")
        test = _read(args.test, "test")
        out = predict_tables(train, test, args.target, args.task, args.n_estimators,
                             args.engine)
        if args.out is None:
            out.to_csv(sys.stdout, index=False)
        else:
            out.to_csv(args.out, index=False)
            print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    except (UsageError, ValueError, TypeError, OSError) as err:
        print(f"pfn predict: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
