"""``pfn predict``: the shipped example works; options select the model, columns and format;
user mistakes give one line and exit status 2; a closed pipe is not an error."""

from __future__ import annotations

import io
import json
import os
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
    ("one_value_target", "--task regression"),
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
    elif case == "one_value_target":  # a constant number: classification is inferred
        pd.read_csv(TRAIN).assign(target=3).to_csv(tmp_path / "c.csv", index=False)
        train = str(tmp_path / "c.csv")
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


def cli(*argv: str, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pfn.cli", "predict", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_model_option_takes_weights_or_an_onnx_prefix(tiny, tmp_path, capsys):
    _, ckpt, prefix = tiny  # a small random model, not the shipped one
    base = ["--train", str(TRAIN), "--test", str(TEST), "--target", "target",
            "--n-estimators", "1"]
    outputs = {}
    for name, model in [("shipped", None), ("weights", ckpt), ("prefix", prefix),
                        ("graph", f"{prefix}.classification.fit.onnx")]:
        out = tmp_path / f"{name}.csv"
        extra = [] if model is None else ["--model", str(model)]
        assert main([*base, *extra, "--out", str(out)]) == 0, capsys.readouterr().err
        outputs[name] = pd.read_csv(out)
    np.testing.assert_allclose(outputs["weights"].iloc[:, :2], outputs["prefix"].iloc[:, :2],
                               atol=1e-4)  # the same model through torch and ONNX Runtime
    pd.testing.assert_frame_equal(outputs["prefix"], outputs["graph"])
    assert not np.allclose(outputs["shipped"].iloc[:, :2], outputs["prefix"].iloc[:, :2])
    for bad, message in [(tmp_path / "absent.safetensors", "model file not found"),
                         (tmp_path / "nothing", "model not found")]:
        assert main([*base, "--model", str(bad)]) == 2
        assert message in capsys.readouterr().err
    assert main([*base, "--model", str(ckpt), "--engine", "onnx"]) == 2
    assert "needs an ONNX prefix" in capsys.readouterr().err


def test_id_column_drop_and_separator(tmp_path):
    train, test = pd.read_csv(TRAIN), pd.read_csv(TEST)
    train.insert(0, "customer", [f"c{i}" for i in range(len(train))])  # unique: useless
    test.insert(0, "customer", [f"t{i}" for i in range(len(test))])
    train["noise"], test["noise"] = 1.0, 2.0
    train.to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    test.to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    proc = cli("--train", str(tmp_path / "train.tsv"), "--test", str(tmp_path / "test.tsv"),
               "--target", "target", "--id-column", "customer", "--drop", "noise",
               "--sep", "\\t", "--n-estimators", "1", "--save-encoder",
               str(tmp_path / "table.json"))
    assert proc.returncode == 0, proc.stderr
    assert "ignoring" not in proc.stderr  # neither the ID nor the dropped column
    pred = pd.read_csv(io.StringIO(proc.stdout), sep="\t")
    assert list(pred.columns) == ["customer", "proba_churned", "proba_stayed", "prediction"]
    assert list(pred["customer"]) == list(test["customer"])
    spec = json.loads((tmp_path / "table.json").read_text())
    assert [c["name"] for c in spec["columns"]] == [
        "age", "income", "plan", "region", "visits", "support_calls"]
    plain = cli("--train", str(TRAIN), "--test", str(TEST), "--target", "target",
                "--n-estimators", "1")
    np.testing.assert_allclose(pred.iloc[:, 1:3], pd.read_csv(io.StringIO(plain.stdout))
                               .iloc[:, :2], atol=1e-6)  # the same features were used


def test_output_piped_into_head_ends_quietly(tmp_path):
    """`pfn predict ... | head -2`: the reader stops early; no "Broken pipe", status 0."""
    test = pd.read_csv(TEST)
    big = test.iloc[np.arange(6000) % len(test)]  # output far larger than a pipe buffer
    big.to_csv(tmp_path / "big.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pfn.cli", "predict", "--train", str(TRAIN),
                             "--test", str(tmp_path / "big.csv"), "--target", "target",
                             "--n-estimators", "1", "--progress"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, stderr
    assert head[0].startswith("proba_churned")
    assert "Broken pipe" not in stderr and "Traceback" not in stderr
    assert "predicting" in stderr  # --progress: a progress bar on stderr
    quiet = cli("--train", str(TRAIN), "--test", str(TEST), "--target", "target",
                "--n-estimators", "1")
    assert "predicting" not in quiet.stderr  # stderr is not a terminal: no bar by default


def test_cli_default_members_are_the_estimators_default() -> None:
    import inspect

    from pfn import PFNClassifier, PFNRegressor
    from pfn.predict_cli import build_parser, predict_tables

    args = build_parser().parse_args(["--train", "a", "--test", "b", "--target", "y"])
    default = inspect.signature(predict_tables).parameters["n_estimators"].default
    assert args.n_estimators == default == PFNClassifier().n_estimators \
        == PFNRegressor().n_estimators


def test_cli_refuses_a_bad_member_count() -> None:
    from pfn.predict_cli import build_parser

    base = ["--train", "a", "--test", "b", "--target", "y", "--n-estimators"]
    assert build_parser().parse_args(base + ["3"]).n_estimators == 3
    for bad in ("0", "many"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(base + [bad])
