"""``pfn predict``: predictions for a test CSV from a training CSV, no code, no training.

    pfn predict --train train.csv --test test.csv --target COLUMN [--out predictions.csv]
        [--task auto|classification|regression] [--model PATH] [--id-column COLUMN]
        [--drop COL,COL] [--sep ';'] [--progress] [--save-encoder table.json]

- ``--task auto`` (default): classification if the target is not numeric or has at most 10
  distinct values that are all integers, else regression.
- Output, one row per test row: classification gives ``proba_<class>`` per class and
  ``prediction``; regression gives ``mean``, ``q05``, ``q50``, ``q95`` (quantiles of the
  predictive distribution). With ``--id-column``, that column of the test file comes first
  (it is never a feature). Written to ``--out``, or to stdout without it.
- Features are the training file's columns except the target, the ID column and the
  ``--drop`` columns. The test file must have every feature; it may have the target and
  other columns (ignored, with a note).
- Training rows whose target is missing are dropped (with a note).
- ``--model``: a ``.safetensors`` file (torch engine, needs the train extra) or an ONNX
  prefix written by ``pfn export`` (``out/model`` for ``out/model.classification.onnx``).
- ``--save-encoder``: also write how the table's columns were encoded, as JSON
  (``export/FORMAT.md``), for runtimes outside Python such as ``examples/node``.
- Errors (missing file, missing column, empty table, bad values) print one line on stderr
  and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pfn.artifacts import KINDS, TASKS, graph_path, onnx_prefix
from pfn.cli import CommandParser, UsageError, run_command, summary

CHUNK = 1024  # test rows per estimator call: the progress bar's step


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


def read_table(path: str, what: str, sep: str = ","):
    """A CSV as a DataFrame; a missing, empty or unreadable file is a :class:`UsageError`."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep=sep)
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise UsageError(f"{what} file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise UsageError(f"cannot read {what} file {path}: {e}") from None
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise UsageError(f"{what} file {path} has no data rows")
    return table


def check_model(path: str | None, engine: str) -> None:
    """``--model``: an existing ``.safetensors`` file or ONNX prefix, fit for ``engine``."""
    if path is None:
        return
    if path.endswith(".safetensors"):
        if not Path(path).is_file():
            raise UsageError(f"model file not found: {path}")
        if engine == "onnx":
            raise UsageError(f"--engine onnx needs an ONNX prefix, got the weights file {path}")
        return
    if engine == "torch":
        raise UsageError(f"--engine torch needs a .safetensors file, got {path}")
    prefix = onnx_prefix(path)
    if not any(graph_path(prefix, task, kind).is_file() for task in TASKS for kind in KINDS):
        raise UsageError(f"model not found: {path} is neither a .safetensors file nor an ONNX "
                         f"prefix (no {graph_path(prefix, TASKS[0]).name} or similar beside it)")


def split_columns(train, test, target: str, id_column: str | None, drop: list[str]
                  ) -> list[str]:
    """The feature columns; checks that the named columns exist where they must."""
    if target not in train.columns:
        raise UsageError(f"target column {target!r} not in the training file; columns: "
                         f"{', '.join(map(str, train.columns))}")
    if id_column is not None and id_column not in test.columns:
        raise UsageError(f"ID column {id_column!r} not in the test file")
    unknown = [c for c in drop if c not in train.columns and c not in test.columns]
    if unknown:
        raise UsageError(f"--drop names columns in neither file: {', '.join(unknown)}")
    if target in drop or target == id_column:
        raise UsageError(f"the target column {target!r} cannot be dropped or be the ID column")
    skip = {target, id_column, *drop}
    features = [c for c in train.columns if c not in skip]
    if not features:
        raise UsageError("the training file has no feature columns besides the target")
    missing = [c for c in features if c not in test.columns]
    if missing:
        raise UsageError(f"test file lacks feature columns: {', '.join(map(str, missing))}")
    extra = [c for c in test.columns if c not in features and c not in skip]
    if extra:
        print(f"note: ignoring test columns not in training: {', '.join(map(str, extra))}",
              file=sys.stderr)
    return features


def predict_tables(train, test, target: str, *, task: str = "auto",
                   n_estimators: int | str = "auto", engine: str = "auto", model: str | None = None,
                   id_column: str | None = None, drop: tuple[str, ...] = (),
                   progress: bool = False):
    """(predictions DataFrame, fitted estimator) for ``test`` (columns: module docstring)."""
    import pandas as pd
    from tqdm import tqdm

    from pfn.estimators import PFNClassifier, PFNRegressor

    features = split_columns(train, test, target, id_column, list(drop))
    keep = train[target].notna()
    if not keep.all():
        print(f"note: dropping {int((~keep).sum())} training rows with a missing target",
              file=sys.stderr)
    train = train[keep]
    if len(train) < 2:
        raise UsageError("need at least 2 training rows with a target value")
    if task == "auto":
        task = infer_task(train[target])
    X, y, X_test = train[features], train[target], test[features]
    if task == "classification" and y.nunique() < 2:
        hint = "; use --task regression to predict it as a number" \
            if pd.api.types.is_numeric_dtype(y) else ""
        raise UsageError(f"target column {target!r} has one value ({y.iloc[0]!r}) in every "
                         f"training row: nothing to classify{hint}")
    params = dict(n_estimators=n_estimators, engine=engine, model_path=model)
    if task == "classification":
        est = PFNClassifier(**params).fit(X, y.to_numpy())
    elif not pd.api.types.is_numeric_dtype(y):
        raise UsageError(f"target column {target!r} is not numeric; use --task classification")
    else:
        est = PFNRegressor(**params).fit(X, y.to_numpy(float))
    parts = []
    with tqdm(total=len(X_test), unit="row", disable=not progress, file=sys.stderr,
              desc="predicting") as bar:
        for start in range(0, len(X_test), CHUNK):
            chunk = X_test.iloc[start:start + CHUNK]
            if task == "classification":
                proba = est.predict_proba(chunk)
                part = pd.DataFrame(proba, columns=[f"proba_{c}" for c in est.classes_])
                part["prediction"] = est.classes_[proba.argmax(1)]
            else:
                dists = list(est.iter_distributions(chunk))
                q = np.concatenate([d.quantile([0.05, 0.5, 0.95]) for d in dists])
                part = pd.DataFrame({"mean": np.concatenate([d.mean() for d in dists]),
                                     "q05": q[:, 0], "q50": q[:, 1], "q95": q[:, 2]})
            parts.append(part)
            bar.update(len(chunk))
    out = pd.concat(parts, ignore_index=True)
    if id_column is not None:
        out.insert(0, id_column, test[id_column].to_numpy())
    return out, est


def _separator(text: str) -> str:
    sep = text.encode().decode("unicode_escape") if "\\" in text else text  # '\t' -> tab
    if len(sep) != 1:
        raise argparse.ArgumentTypeError(f"must be one character, got {text!r}")
    return sep


def _members(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {text!r}")
    return value


def _columns(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def build_parser() -> CommandParser:
    p = CommandParser(prog="pfn predict", description=summary(__doc__),
                      epilog=__doc__.split("\n\n", 2)[2],
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training CSV, with the target column")
    p.add_argument("--test", required=True, help="CSV of rows to predict")
    p.add_argument("--target", required=True, help="name of the target column")
    p.add_argument("--task", default="auto", choices=("auto", "classification", "regression"))
    p.add_argument("--out", default=None, help="output CSV (default: stdout)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a .safetensors file or an ONNX prefix (default: the shipped model)")
    p.add_argument("--id-column", default=None, metavar="COLUMN",
                   help="a test column copied to the output as its first column, never a "
                        "feature")
    p.add_argument("--drop", type=_columns, default=(), metavar="COLS",
                   help="comma-separated columns that are not features")
    p.add_argument("--sep", type=_separator, default=",",
                   help="field separator of the input and output CSVs (default ','; '\\t' "
                        "for tabs)")
    p.add_argument("--n-estimators", type=_members, default="auto",
                   help="ensemble members, or 'auto' (the default, as the estimators: 8, or "
                        "4 for training sets split into local contexts)")
    p.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx"))
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal and the "
                        f"test file has more than {CHUNK} rows)")
    p.add_argument("--save-encoder", default=None, metavar="JSON",
                   help="also write the fitted table encoding as JSON (export/FORMAT.md)")
    return p


def _predict(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_model(args.model, args.engine)
    train = read_table(args.train, "training", args.sep)
    test = read_table(args.test, "test", args.sep)
    progress = args.progress if args.progress is not None else (
        sys.stderr.isatty() and len(test) > CHUNK)
    out, est = predict_tables(train, test, args.target, task=args.task,
                              n_estimators=args.n_estimators, engine=args.engine,
                              model=args.model, id_column=args.id_column, drop=args.drop,
                              progress=progress)
    if args.save_encoder:
        from pfn.table_spec import table_spec

        spec = table_spec(est, target=args.target)
        Path(args.save_encoder).write_text(json.dumps(spec, indent=1) + "\n")
        print(f"wrote the table encoding to {args.save_encoder}", file=sys.stderr)
    if args.out is None:
        out.to_csv(sys.stdout, index=False, sep=args.sep)
        sys.stdout.flush()  # a closed pipe shows here, inside run_command
    else:
        out.to_csv(args.out, index=False, sep=args.sep)
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("pfn predict", _predict, sys.argv[1:] if argv is None else argv,
                       user_errors=(ValueError, TypeError, OSError))


if __name__ == "__main__":
    raise SystemExit(main())
