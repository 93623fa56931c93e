"""examples/node/predict.js gives the probabilities the Python ONNX and torch paths give.

Needs node and npm; installs onnxruntime-node into examples/node/node_modules (git-ignored)
when it is missing. Skips, saying why, where node/npm are absent or the install fails.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from shared_data import DATASETS

from export.runtime import OnnxEngine
from pfn.checkpoint import load_model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node"
DATASET = DATASETS / "classification" / "MASS_fgl.csv.gz"
ATOL = 1e-4


@pytest.fixture(scope="module")
def node() -> str:
    exe, npm = shutil.which("node"), shutil.which("npm")
    if exe is None or npm is None:
        pytest.skip("node or npm is not installed")
    if not (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        # The package's install script only fetches optional CUDA binaries (from NuGet);
        # the CPU binaries ship in the npm tarball, so skip that step.
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
        try:
            proc = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=EXAMPLE,
                                  env=env, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install onnxruntime-node timed out (registry unreachable?)")
        if proc.returncode != 0:
            pytest.skip(f"npm install onnxruntime-node failed: {proc.stderr[-500:]}")
    return exe


def run_node(node: str, *args: str) -> pd.DataFrame:
    proc = subprocess.run([node, str(EXAMPLE / "predict.js"), *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(io.StringIO(proc.stdout), dtype=float)


def python_probs(x_train, labels, x_test) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, ONNX Runtime probs, torch probs) with predict.js's label encoding."""
    classes, codes = np.unique(labels, return_inverse=True)
    x_train = x_train.astype(np.float32)[None]
    y = codes.astype(np.float32)[None]
    x_test = x_test.astype(np.float32)[None]
    engine = OnnxEngine()
    onnx_p = engine.predict(engine.fit(x_train, y, "classification"), x_test)["probs"][0]
    model = load_model(ROOT / "pfn" / "weights" / "default.safetensors")
    with torch.no_grad():
        x = torch.cat([torch.tensor(x_train), torch.tensor(x_test)], 1)
        torch_p = model(x, torch.tensor(y)).softmax(-1)[0].numpy()
    k = len(classes)
    return [str(c) for c in classes], onnx_p[:, :k], torch_p[:, :k]


def test_one_csv_with_n_train(node, tmp_path):
    if not DATASET.is_file():
        pytest.skip(f"{DATASET} not available")
    df = pd.read_csv(DATASET).sample(frac=1.0, random_state=0).reset_index(drop=True)
    csv = tmp_path / "fgl.csv"
    df.to_csv(csv, index=False)
    n = 150
    got = run_node(node, str(csv), "--n-train", str(n))
    x = df.drop(columns="target").to_numpy(float)
    classes, onnx_p, torch_p = python_probs(x[:n], df["target"].to_numpy(str)[:n], x[n:])
    assert list(got.columns) == classes
    assert got.shape == (len(df) - n, len(classes))
    np.testing.assert_allclose(got.to_numpy(), onnx_p, atol=ATOL)
    np.testing.assert_allclose(got.to_numpy(), torch_p, atol=ATOL)


def test_two_csvs_with_missing_values(node, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)) * [1, 10, 100, 0.1, 1]
    y = (x[:, 0] + rng.normal(size=90) > 0).astype(int) + 2 * (x[:, 1] > 5)
    x[rng.random(x.shape) < 0.1] = np.nan
    cols = [f"f{i}" for i in range(5)]
    train = pd.DataFrame(x[:60], columns=cols).assign(target=y[:60])
    test = pd.DataFrame(x[60:], columns=cols)  # no label column
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    got = run_node(node, str(tmp_path / "train.csv"), str(tmp_path / "test.csv"))
    classes, onnx_p, torch_p = python_probs(x[:60], y[:60], x[60:])
    assert [str(int(float(c))) for c in got.columns] == classes
    np.testing.assert_allclose(got.to_numpy(), onnx_p, atol=ATOL)
    np.testing.assert_allclose(got.to_numpy(), torch_p, atol=ATOL)
