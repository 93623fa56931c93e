"""Benchmark our PFN estimators against default baselines on the real datasets.

Why it is built this way:

- Datasets are read with pandas exactly as a user would (text categoricals, NaNs left in).
  Our ``PFNClassifier`` / ``PFNRegressor`` get that raw DataFrame and the raw labels; the
  baselines get the usual minimal preprocessing a user would write:
  * ``logreg``: median/most-frequent imputation, one-hot encoding of text columns, standard
    scaling, ``LogisticRegression(max_iter=5000)`` (only raised so it converges); for
    regression the same pipeline ends in ``LinearRegression()`` and is shown as ``linreg``.
  * ``rf``, ``hgb``, ``xgb``, ``lgbm``: text columns ordinal-encoded (unseen categories and
    NaN become NaN), numeric columns passed through. NaNs are left to the models: all four
    handle missing values natively (RandomForest since scikit-learn 1.4), so no imputation.
    LightGBM gets ``verbose=-1`` to silence its logging; everything else is default.
- Every model sees the same splits in the same run: for each seed 0..N-1 a 50/50 split
  (stratified for classification, shuffled for regression), then the training half is
  subsampled to ``--max-train`` rows with the same seed (stratified for classification).
  Baselines vs ours are only comparable within a run, never across machines or runs.
- Timing is wall-clock fit + predict (``predict_proba`` for classification, ``predict``
  for regression). Our 90% interval (``predict_quantiles``) is computed outside the timing.
- Threads: torch is set to the machine's cores; the other libraries already default to
  them (RandomForest's default ``n_jobs`` is single-threaded). No process pools. OpenMP
  threads spin while waiting, so any other busy process makes timings explode (seconds
  instead of tenths): the header prints the load average; run on a quiet machine, or
  export ``OMP_WAIT_POLICY=PASSIVE`` for stable but slower timings under load.
- Metrics: ROC AUC (binary, or one-vs-one macro over the classes present in the test split),
  accuracy, log loss over all dataset labels; RMSE, RMSE relative to the best model on the
  dataset, R², and for ours the empirical coverage of the [5%, 95%] quantile interval.
- Summaries: over all datasets of a task, then per ``group`` of MANIFEST.csv
  (``categorical`` vs ``numeric-or-mixed``), since encoding choices for categorical columns
  help one group and may cost the other.
- Variants of ours (``VARIANTS``; prediction-side options in ``benchmarks/ours_variants.py``)
  run on request; ``--speed-only`` prints only the speed line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.compose import make_column_selector as selector
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's benchmarks and pfn, not installed ones
from benchmarks.ours_variants import (  # noqa: E402
    CLASSIFIER_ONLY,
    CODES_INPUT,
    OPTION_VARIANTS,
    REGRESSOR_ONLY,
    CodesArray,
)

DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
ALL_MODELS = ["logreg", "rf", "hgb", "xgb", "lgbm", "ours"]
# Variants of ours, run on request (``--models ours,ours_int8``) to measure what an engine or
# the int8 graphs (``pfn ship --int8``, or ``pfn export --int8`` with --int8-prefix) change;
# not part of the default comparison.
VARIANTS = {"ours_torch": {"engine": "torch"},
            "ours_onnx": {"engine": "onnx"},
            "ours_int8": {"engine": "onnx",
                          "model_path": str(ROOT / "pfn" / "weights" / "default.int8")},
            # the general model (pfn/weights/default), which the classifier ran before it
            # had a specialist of its own; for regression it is what "ours" runs anyway
            "ours_general": {"engine": "onnx",
                             "model_path": str(ROOT / "pfn" / "weights" / "default")},
            # a model being considered for shipping (--candidate RUN/model.safetensors)
            "ours_candidate": {"engine": "torch", "model_path": None}}
VARIANTS |= OPTION_VARIANTS
NUM = selector(dtype_include="number")
CAT = selector(dtype_exclude="number")
Result = dict[str, float]


def linear_pipeline(est: BaseEstimator) -> Pipeline:
    num = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    cat = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    return make_pipeline(ColumnTransformer([("num", num, NUM), ("cat", cat, CAT)]), est)


def tree_pipeline(est: BaseEstimator) -> Pipeline:
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    return make_pipeline(ColumnTransformer([("num", "passthrough", NUM), ("cat", enc, CAT)]), est)


def make_model(name: str, task: str) -> Any:
    """A fresh default-configured estimator (with its preprocessing) for ``name``."""
    clf = task == "classification"
    if name == "logreg":
        return linear_pipeline(LogisticRegression(max_iter=5000) if clf else LinearRegression())
    if name == "rf":
        return tree_pipeline(RandomForestClassifier() if clf else RandomForestRegressor())
    if name == "hgb":
        hgb = HistGradientBoostingClassifier() if clf else HistGradientBoostingRegressor()
        return tree_pipeline(hgb)
    if name == "xgb":
        import xgboost

        return tree_pipeline(xgboost.XGBClassifier() if clf else xgboost.XGBRegressor())
    if name == "lgbm":
        import lightgbm

        lgb = lightgbm.LGBMClassifier if clf else lightgbm.LGBMRegressor
        return tree_pipeline(lgb(verbose=-1))
    if name == "ours":
        import pfn

        return pfn.PFNClassifier() if clf else pfn.PFNRegressor()
    if name in VARIANTS:
        import pfn

        if clf:
            return pfn.PFNClassifier(**{k: v for k, v in VARIANTS[name].items()
                                        if k not in REGRESSOR_ONLY})
        return pfn.PFNRegressor(**{k: v for k, v in VARIANTS[name].items()
                                   if k not in CLASSIFIER_ONLY})
    raise ValueError(f"unknown model {name!r}")


def ours_available() -> str | None:
    """None if ``from pfn import PFNClassifier, PFNRegressor`` works, else the reason."""
    try:
        from pfn import PFNClassifier, PFNRegressor  # noqa: F401
    except Exception as exc:  # the package is under construction
        return f"{type(exc).__name__}: {exc}"
    return None


def load(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    df = pd.read_csv(path)
    return df.drop(columns="target"), df["target"]


def split(y: np.ndarray, seed: int, clf: bool, max_train: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test row indices: 50/50 (stratified if ``clf``), train capped at ``max_train``."""
    idx = np.arange(len(y))
    strat = y if clf else None
    tr, te = train_test_split(idx, test_size=0.5, random_state=seed, stratify=strat)
    if len(tr) > max_train:
        strat_tr = y[tr] if clf else None
        tr, _ = train_test_split(tr, train_size=max_train, random_state=seed, stratify=strat_tr)
    return tr, te


def ovo_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC over the classes present in ``y`` (codes into ``proba``'s columns)."""
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    p = proba[:, present]
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    if len(present) == 2:
        return float(roc_auc_score(y == present[1], p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovo", average="macro", labels=present))


def class_probabilities(name: str, X: pd.DataFrame, codes: np.ndarray, labels: np.ndarray,
                        tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    """Model ``name`` fitted on rows ``tr``: probabilities of rows ``te`` over every one of
    the dataset's ``labels`` (len(te), len(labels)), a class unseen in training at 0."""
    model = make_model(name, "classification")
    present = np.unique(codes[tr])  # baselines see contiguous codes (XGBoost needs them)
    y_fit = labels[codes[tr]] if name.startswith("ours") else np.searchsorted(present, codes[tr])
    model.fit(X.iloc[tr], y_fit)
    raw = np.asarray(model.predict_proba(X.iloc[te]), dtype=float)
    if name.startswith("ours"):
        lookup = {lab: i for i, lab in enumerate(labels.tolist())}
        cols = np.array([lookup[c] for c in np.asarray(model.classes_).tolist()])
    else:
        cols = present[np.asarray(model.classes_, dtype=int)]
    proba = np.zeros((len(te), len(labels)))
    proba[:, cols] = raw
    return proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)


def eval_classification(
    name: str,
    X: pd.DataFrame,
    codes: np.ndarray,
    labels: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
) -> Result:
    """Fit on ``tr`` and score on ``te``; ``codes`` index into the dataset's ``labels``."""
    t0 = time.perf_counter()
    proba = class_probabilities(name, X, codes, labels, tr, te)
    seconds = time.perf_counter() - t0
    y = codes[te]
    return {
        "auc": ovo_auc(y, proba),
        "acc": float(accuracy_score(y, proba.argmax(axis=1))),
        "logloss": float(log_loss(y, np.clip(proba, 1e-15, 1), labels=np.arange(len(labels)))),
        "time": seconds,
    }


def eval_regression(
    name: str, X: pd.DataFrame, y: np.ndarray, tr: np.ndarray, te: np.ndarray
) -> Result:
    model = make_model(name, "regression")
    t0 = time.perf_counter()
    model.fit(X.iloc[tr], y[tr])
    pred = np.asarray(model.predict(X.iloc[te]), dtype=float)
    seconds = time.perf_counter() - t0
    out = {
        "rmse": float(np.sqrt(mean_squared_error(y[te], pred))),
        "r2": float(r2_score(y[te], pred)),
        "time": seconds,
        "coverage": float("nan"),
    }
    if name.startswith("ours"):
        q = np.asarray(model.predict_quantiles(X.iloc[te], [0.05, 0.95]), dtype=float)
        out["coverage"] = float(np.mean((y[te] >= q[:, 0]) & (y[te] <= q[:, 1])))
    return out


def run_dataset(
    path: Path, task: str, models: list[str], splits: int, max_train: int
) -> pd.DataFrame:
    """Mean metrics over the splits, one row per model (NaN where a model failed)."""
    X, target = load(path)
    clf = task == "classification"
    if clf:
        labels, codes = np.unique(target.to_numpy(), return_inverse=True)
        y = codes
    else:
        labels, y = np.array([]), target.to_numpy(dtype=float)
    rows: dict[str, list[Result]] = {m: [] for m in models}
    X_codes = CodesArray(X) if CODES_INPUT & set(models) else None
    for seed in range(splits):
        tr, te = split(y, seed, clf, max_train)
        for m in models:
            try:
                Xm = X_codes if m in CODES_INPUT else X
                if clf:
                    rows[m].append(eval_classification(m, Xm, y, labels, tr, te))
                else:
                    rows[m].append(eval_regression(m, Xm, y, tr, te))
            except Exception:  # report and keep benchmarking the others
                print(
                    f"note: {m} failed on {path.name} split {seed}:\n"
                    f"{traceback.format_exc(limit=3)}",
                    file=sys.stderr,
                )
    table = pd.DataFrame(
        {m: pd.DataFrame(r).mean() if r else pd.Series(dtype=float) for m, r in rows.items()}
    ).T
    if not clf and "rmse" in table:
        table.insert(1, "rel_rmse", table["rmse"] / table["rmse"].min())
    return table if clf else table.rename(index={"logreg": "linreg"})


LABELS = {
    "auc": "ROC AUC",
    "acc": "accuracy",
    "logloss": "log loss",
    "rmse": "RMSE",
    "rel_rmse": "rel. RMSE",
    "r2": "R²",
    "time": "time (s)",
    "coverage": "90% coverage",
    "rank_auc": "rank (AUC)",
    "rank_rmse": "rank (RMSE)",
}


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A markdown table; floats to ``digits`` decimals, NaN as a dash."""

    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "—" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = ["model", *(LABELS.get(str(c), str(c)) for c in df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for row in df.itertuples():
        lines.append("| " + " | ".join(map(fmt, row)) + " |")
    return "\n".join(lines)


def summarize(tables: dict[str, pd.DataFrame], task: str) -> pd.DataFrame:
    """Mean of per-dataset means, plus the mean per-dataset rank (1 = best)."""
    long = pd.concat(tables, names=["dataset", "model"]).reset_index()
    clf = task == "classification"
    key, rank = ("auc", "rank_auc") if clf else ("rmse", "rank_rmse")
    long[rank] = long.groupby("dataset")[key].rank(ascending=not clf)
    g = long.groupby("model", sort=False)
    if clf:
        cols = ["auc", "acc", "logloss", rank, "time"]
    else:
        cols = ["r2", "rel_rmse", rank, "time", "coverage"]
    out = g[cols].mean()
    out.insert(0, "datasets", g[key].count().astype(int))
    return out


def groups(datasets: Path) -> dict[str, str]:
    """Dataset name -> its ``group`` in MANIFEST.csv (``categorical`` where at least half the
    features are categorical, else ``numeric-or-mixed``); empty without a manifest."""
    path = datasets / "MANIFEST.csv"
    if not path.is_file():
        return {}
    manifest = pd.read_csv(path)
    if "group" not in manifest:
        return {}
    return dict(zip(manifest["name"], manifest["group"], strict=True))


def speed(models: list[str], repeats: int = 3) -> str:
    """Median fit+predict seconds on a synthetic 1000x100 train / 1000 test problem.

    One untimed warm-up per model (it loads the engine), then ``repeats`` rounds that time
    every model once in turn, so that a busy neighbour slows all models alike. In
    parentheses the process CPU time, which a busy machine inflates far less than wall
    time: on one core (``taskset -c 0``) its ratios between models are the ratios of their
    wall times on a quiet machine.
    """
    X, y = make_classification(n_samples=2000, n_features=100, n_informative=20, random_state=0)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    Xtr, Xte, ytr = df.iloc[:1000], df.iloc[1000:], y[:1000]

    def once(name: str) -> tuple[float, float]:
        model = make_model(name, "classification")
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(Xtr, ytr)
        model.predict_proba(Xte)
        return time.perf_counter() - t0, time.process_time() - c0

    times: dict[str, list[tuple[float, float]]] = {}
    failed: dict[str, str] = {}
    for round_ in range(repeats + 1):
        for name in models:
            if name in failed:
                continue
            try:
                seconds = once(name)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            if round_:
                times.setdefault(name, []).append(seconds)
    parts = [f"{name} failed ({failed[name]})" if name in failed
             else "{} {:.2f} s ({:.2f} s CPU)".format(name, *np.median(times[name], axis=0))
             for name in models]
    return (
        "Speed (fit+predict, 1000 train x 100 features, 1000 test, median of "
        f"{repeats} after a warm-up): " + ", ".join(parts)
    )


def use_candidate(path: str | None) -> None:
    """Point ``ours_candidate`` and every ``ours_cand_*`` variant at the weights ``path``."""
    for name, opts in VARIANTS.items():
        if name == "ours_candidate" or name.startswith("ours_cand_"):
            opts["model_path"] = path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument("--datasets-only", default="", help="comma list of dataset names")
    ap.add_argument("--task", choices=["classification", "regression", "all"], default="all")
    ap.add_argument("--speed", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--speed-repeats", type=int, default=3)
    ap.add_argument("--speed-only", action="store_true",
                    help="only the speed line (no datasets)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--int8-prefix", default=VARIANTS["ours_int8"]["model_path"],
                    help="graphs for ours_int8 (pfn export --int8 --out-prefix P writes P.int8.*)")
    ap.add_argument("--candidate", help="weights for ours_candidate (torch engine), to "
                    "compare a new run with the shipped model on the same splits")
    args = ap.parse_args(argv)
    VARIANTS["ours_int8"]["model_path"] = args.int8_prefix
    use_candidate(args.candidate)

    import torch

    # the cores this process may use (``taskset`` pins a run beside a training job)
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(ALL_MODELS) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {ALL_MODELS + list(VARIANTS)}")
    if any(m == "ours_candidate" or m.startswith("ours_cand_") for m in models) \
            and not args.candidate:
        ap.error("ours_candidate and ours_cand_* need --candidate PATH")
    report: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        report.append(text)

    ours = [m for m in models if m.startswith("ours")]
    if ours and (reason := ours_available()) is not None:
        emit(
            f"> note: skipping {', '.join(ours)}, `from pfn import PFNClassifier, "
            f"PFNRegressor` failed ({reason})\n"
        )
        models = [m for m in models if m not in ours]
    wanted = {d.strip() for d in args.datasets_only.split(",") if d.strip()}
    tasks = ["classification", "regression"] if args.task == "all" else [args.task]
    group_of = groups(args.datasets)
    found = {f.name.removesuffix(".csv.gz") for f in args.datasets.glob("*/*.csv.gz")}
    if wanted - found:
        emit(f"> note: datasets not found in {args.datasets}: {sorted(wanted - found)}\n")
    emit(
        f"# Real-data benchmark\n\nmodels: {', '.join(models)}; splits: {args.splits}; "
        f"max train rows: {args.max_train}; threads: {torch.get_num_threads()}; "
        f"load average at start: {os.getloadavg()[0]:.2f} (timings need a quiet machine)"
        + (f"; pfn from {Path(sys.modules['pfn'].__file__).parent}" if "pfn" in sys.modules
           else "") + "\n"
    )
    for task in [] if args.speed_only else tasks:
        files = sorted((args.datasets / task).glob("*.csv.gz"))
        files = [f for f in files if not wanted or f.name.removesuffix(".csv.gz") in wanted]
        if not files:
            continue
        emit(f"## {task.capitalize()}\n")
        tables: dict[str, pd.DataFrame] = {}
        for f in files:
            name = f.name.removesuffix(".csv.gz")
            tables[name] = run_dataset(f, task, models, args.splits, args.max_train)
            emit(f"### {name}\n\n{markdown(tables[name])}\n")
        emit(
            f"### Summary ({task}, mean over {len(files)} datasets)\n\n"
            f"{markdown(summarize(tables, task))}\n"
        )
        by_group: dict[str, dict[str, pd.DataFrame]] = {}
        for name, table in tables.items():
            by_group.setdefault(group_of.get(name, "unlisted"), {})[name] = table
        for group, part in sorted(by_group.items()) if len(by_group) > 1 else ():
            emit(
                f"### Summary ({task}, group {group}, mean over {len(part)} datasets)\n\n"
                f"{markdown(summarize(part, task))}\n"
            )
    speed_models = [m for m in models if m.startswith("ours") or m == "lgbm"]
    if (args.speed or args.speed_only) and speed_models:
        emit(speed(speed_models, args.speed_repeats) + "\n")
    if args.out is not None:
        args.out.write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
