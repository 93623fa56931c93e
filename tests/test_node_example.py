"""examples/node: the README's commands run as written, and predict.js encodes a table and
computes the probabilities exactly as the Python side does (one member, no ensemble).

Needs node and npm. The README's own commands install onnxruntime-node (``npm ci`` into
examples/node/node_modules, git-ignored); the tests skip, saying why, where node or npm is
absent or that install fails.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import DATASETS

from pfn.engines.onnx_engine import OnnxEngine
from pfn.estimators import PFNClassifier
from pfn.preprocessing import TableEncoder
from pfn.table_spec import table_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node"
ATOL = 1e-4  # two builds of ONNX Runtime on the same graph


def readme_block() -> str:
    """The README's shell block that runs the Node example."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if "node predict.js" in b)


@pytest.fixture(scope="module")
def readme_output() -> str:
    """What the README's last Node command prints (after npm's messages), the commands run
    literally from the repository root."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node or npm is not installed")
    try:
        proc = subprocess.run(["bash", "-ec", readme_block()], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("the README's Node commands timed out (npm registry unreachable?)")
    if proc.returncode != 0 and not (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip(f"npm could not install onnxruntime-node: {proc.stderr[-500:]}")
    assert proc.returncode == 0, proc.stderr
    n_test = len(pd.read_csv(EXAMPLE / "test.csv"))
    return "\n".join(proc.stdout.splitlines()[-(n_test + 1):]) + "\n"  # header + rows


def run_node(*args: str) -> pd.DataFrame:
    proc = subprocess.run(["node", str(EXAMPLE / "predict.js"), *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(io.StringIO(proc.stdout), dtype=float)


def python_probs(train: pd.DataFrame, test: pd.DataFrame, target: str
                 ) -> tuple[list[str], np.ndarray]:
    """(classes, probabilities) of one network pass on the Python side's encoding."""
    features = [c for c in train.columns if c != target]
    encoder = TableEncoder().fit(train[features])
    classes, codes = np.unique(train[target].to_numpy(), return_inverse=True)
    engine = OnnxEngine()
    ctx = engine.fit(encoder.transform(train[features])[None], codes[None], "classification")
    probs = engine.predict(ctx, encoder.transform(test[features])[None])["probs"][0]
    return [str(c) for c in classes], probs[:, :len(classes)]


def test_readme_commands_run_as_written_and_match_python(readme_output):
    got = pd.read_csv(io.StringIO(readme_output), dtype=float)
    train, test = pd.read_csv(EXAMPLE / "train.csv"), pd.read_csv(EXAMPLE / "test.csv")
    assert not pd.api.types.is_numeric_dtype(train["plan"])  # the sample has text columns
    classes, want = python_probs(train, test, "target")
    assert list(got.columns) == classes and got.shape == (len(test), len(classes))
    np.testing.assert_allclose(got.to_numpy(), want, atol=ATOL)


def test_encoding_written_by_python_gives_the_same_predictions(readme_output, tmp_path):
    train = pd.read_csv(EXAMPLE / "train.csv")
    est = PFNClassifier(n_estimators=1).fit(train.drop(columns="target"), train["target"])
    (tmp_path / "table.json").write_text(json.dumps(table_spec(est, target="target")))
    got = run_node(str(EXAMPLE / "train.csv"), str(EXAMPLE / "test.csv"), "--encoder",
                   str(tmp_path / "table.json"))
    pd.testing.assert_frame_equal(got, pd.read_csv(io.StringIO(readme_output), dtype=float))


def test_categories_booleans_missing_and_unseen_values(readme_output, tmp_path):
    rng = np.random.default_rng(0)
    n = 90
    x = rng.normal(size=(n, 3)) * [1, 10, 100]
    city = rng.choice(["Zürich", "berlin", "Oslo", "a b"], n).astype(object)
    flag = rng.random(n) > 0.5
    y = (x[:, 0] + (city == "Oslo") + rng.normal(size=n) > 0.5).astype(int) + 2 * flag
    x[rng.random(x.shape) < 0.1] = np.nan
    city[rng.random(n) < 0.1] = None
    df = pd.DataFrame({"f0": x[:, 0], "city": city, "f1": x[:, 1], "ok": flag, "f2": x[:, 2],
                       "label": y})
    df.loc[70:74, "city"] = "Paris"  # unseen in training: missing, as in Python
    df.iloc[:60].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[60:].drop(columns="label").to_csv(tmp_path / "test.csv", index=False)
    train, test = pd.read_csv(tmp_path / "train.csv"), pd.read_csv(tmp_path / "test.csv")
    got = run_node(str(tmp_path / "train.csv"), str(tmp_path / "test.csv"))
    classes, want = python_probs(train, test, "label")
    assert [str(int(float(c))) for c in got.columns] == classes
    np.testing.assert_allclose(got.to_numpy(), want, atol=ATOL)


def test_one_csv_with_n_train_on_real_data(readme_output, tmp_path):
    path = DATASETS / "classification" / "MASS_fgl.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    df = pd.read_csv(path).sample(frac=1.0, random_state=0).reset_index(drop=True)
    df.to_csv(tmp_path / "fgl.csv", index=False)
    got = run_node(str(tmp_path / "fgl.csv"), "--n-train", "150")
    classes, want = python_probs(df.iloc[:150], df.iloc[150:], "target")
    assert list(got.columns) == classes
    np.testing.assert_allclose(got.to_numpy(), want, atol=ATOL)


def test_node_matches_torch_on_the_same_inputs(readme_output):
    torch = pytest.importorskip("torch")
    from pfn.checkpoint import load_model

    train, test = pd.read_csv(EXAMPLE / "train.csv"), pd.read_csv(EXAMPLE / "test.csv")
    features = [c for c in train.columns if c != "target"]
    encoder = TableEncoder().fit(train[features])
    _, codes = np.unique(train["target"].to_numpy(), return_inverse=True)
    x = np.concatenate([encoder.transform(train[features]), encoder.transform(test[features])])
    model = load_model(ROOT / "pfn" / "weights" / "default.safetensors")
    with torch.no_grad():
        probs = model(torch.tensor(x, dtype=torch.float32)[None],
                      torch.tensor(codes, dtype=torch.float32)[None]).softmax(-1)[0, :, :2]
    got = pd.read_csv(io.StringIO(readme_output), dtype=float)
    np.testing.assert_allclose(got.to_numpy(), probs.numpy(), atol=ATOL)


def test_bad_input_is_one_line(readme_output, tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,x\n3,4,y\n")
    (tmp_path / "u.csv").write_text("a,label\n1,x\n")
    proc = subprocess.run(["node", str(EXAMPLE / "predict.js"), str(tmp_path / "t.csv"),
                           str(tmp_path / "u.csv")], capture_output=True, text=True,
                          timeout=60, env={**os.environ})
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path / 'u.csv'} has " \
        "no column b"
