"""``pfn predict``: the shipped example works; user mistakes give one line and exit status 2."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pfn.predict_cli import infer_task, main

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "pfn" / "data" / "example_train.csv"
TEST = ROOT / "pfn" / "data" / "example_test.csv"
FAST = ["--engine", "torch", "--n-estimators", "2"]


def test_example_classification_writes_probabilities_and_labels(tmp_path):
    out = tmp_path / "pred.csv"
    assert main(["--train", str(TRAIN), "--test", str(TEST), "--target", "target",
                 "--out", str(out), *FAST]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["proba_churned", "proba_stayed", "prediction"]
    assert len(pred) == len(pd.read_csv(TEST))
    np.testing.assert_allclose(pred[["proba_churned", "proba_stayed"]].sum(axis=1), 1, atol=1e-5)
    assert set(pred["prediction"]) <= {"churned", "stayed"}


def test_regression_writes_mean_and_quantiles(tmp_path, capsys):
    assert main(["--train", str(TRAIN), "--test", str(TEST), "--target", "income",
                 "--task", "auto", *FAST]) == 0  # stdout; rows with missing income dropped
    captured = capsys.readouterr()
    pred = pd.read_csv(io.StringIO(captured.out))
    assert list(pred.columns) == ["mean", "q05", "q50", "q95"]
    assert (pred["q05"] <= pred["q50"]).all() and (pred["q50"] <= pred["q95"]).all()
    assert "dropping" in captured.err


def test_task_inference():
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_task(pd.Series([0.0, 1.0, np.nan])) == "classification"
    assert infer_task(pd.Series(np.arange(11))) == "regression"
    assert infer_task(pd.Series([0.5, 1.0])) == "regression"


@pytest.mark.parametrize("case, message", [
    ("missing_file", "not found"),
    ("missing_target", "target column 'nope'"),
    ("empty", "empty"),
    ("header_only", "no data rows"),
    ("missing_feature", "lacks feature columns"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, case, message):
    train, test, target = str(TRAIN), str(TEST), "target"
    if case == "missing_file":
        train = str(tmp_path / "absent.csv")
    elif case == "missing_target":
        target = "nope"
    elif case == "empty":
        (tmp_path / "e.csv").write_text("")
        test = str(tmp_path / "e.csv")
    elif case == "header_only":
        (tmp_path / "h.csv").write_text("age,income,target\n")
        train = str(tmp_path / "h.csv")
    else:
        pd.read_csv(TEST).drop(columns="plan").to_csv(tmp_path / "t.csv", index=False)
        test = str(tmp_path / "t.csv")
    assert main(["--train", train, "--test", test, "--target", target, *FAST]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_errors_from_the_command_line_have_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pfn.cli", "predict", "--train",
                          str(tmp_path / "absent.csv"), "--test", str(TEST), "--target",
                          "target"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                              "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2
    assert "not found" in res.stderr and "Traceback" not in res.stderr
