"""ONNX export and the torch-free ONNX Runtime engine: parity with torch, metadata, errors.

A tiny random model is exported once per session (``tests/onnx_cases.py``); the shipped graphs are
checked against the shipped safetensors without re-exporting them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx_cases import assert_agree, random_problem
from shared_data import DATASETS

from export.cli import main as export_main
from export.runtime import OnnxEngine
from pfn.checkpoint import load_model
from pfn.model import PFN, ModelConfig

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "pfn" / "weights"


# ----- the exported graph --------------------------------------------------------------
@pytest.mark.parametrize("b,n,t,f", [(1, 2, 1, 1), (2, 11, 5, 7), (3, 40, 17, 12),
                                     (1, 200, 3, 4), (4, 3, 9, 1)])
def test_tiny_graph_matches_torch(tiny, b, n, t, f):
    model, _, prefix = tiny
    engine = OnnxEngine(prefix)
    rng = np.random.default_rng(b * 1000 + n + f)
    x_train, x_test, y_cls, y_reg = random_problem(rng, b, n, t, f, n_classes=min(n, 4))
    assert_agree(engine, model, x_train, y_cls, x_test, "classification")
    assert_agree(engine, model, x_train, y_reg, x_test, "regression")


def test_unused_classes_get_zero_probability(tiny):
    model, _, prefix = tiny
    engine = OnnxEngine(prefix)
    rng = np.random.default_rng(1)
    x_train, x_test, _, _ = random_problem(rng, 2, 20, 6, 3)
    y = np.tile(np.arange(20) % 2, (2, 1)).astype(np.float32)  # classes 0, 1 of 5
    probs = engine.predict(engine.fit(x_train, y, "classification"), x_test)["probs"]
    assert probs.shape == (2, 6, 5)
    np.testing.assert_array_equal(probs[..., 2:], 0.0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)


def test_datasets_run_in_groups_give_the_same_result(tiny, monkeypatch):
    import export.runtime

    _, _, prefix = tiny
    engine = OnnxEngine(prefix)
    rng = np.random.default_rng(3)
    x_train, x_test, y_cls, y_reg = random_problem(rng, 5, 30, 8, 6)
    for y, task in [(y_cls, "classification"), (y_reg, "regression")]:
        whole = engine.predict(engine.fit(x_train, y, task), x_test)
        monkeypatch.setattr(export.runtime, "SCORES_BUDGET", 1)  # one dataset per call
        grouped = engine.predict(engine.fit(x_train, y, task), x_test)
        monkeypatch.undo()
        for key in whole:
            np.testing.assert_allclose(grouped[key], whole[key], rtol=1e-5, atol=1e-6)


def test_checker_and_metadata(tiny):
    model, ckpt, prefix = tiny
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    for task, outputs in [("classification", ["probs"]), ("regression", ["logits", "borders"])]:
        proto = onnx.load(f"{prefix}.{task}.onnx")
        onnx.checker.check_model(proto, full_check=True)
        assert min(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert [i.name for i in proto.graph.input] == ["x_train", "y_train", "x_test"]
        assert [o.name for o in proto.graph.output] == outputs
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["task"] == task
        assert meta["source_sha256"] == sha
        assert ModelConfig(**json.loads(meta["config"])) == model.cfg
        assert int(meta["max_classes"]) == model.cfg.max_classes
        assert int(meta["max_features"]) == model.cfg.max_features
        assert int(meta["n_buckets"]) == model.cfg.n_buckets
        assert meta["export_version"]
    engine = OnnxEngine(prefix)
    assert (engine.max_features, engine.max_classes, engine.n_buckets) == (12, 5, 30)


def test_int8_variant_is_smaller_and_close(tiny, tmp_path):
    model, ckpt, _ = tiny
    prefix = tmp_path / "m"
    assert export_main(["--checkpoint", str(ckpt), "--out-prefix", str(prefix), "--int8"]) == 0
    for task in ("classification", "regression"):
        for kind in ("", ".fit", ".predict"):
            full = Path(f"{prefix}.{task}{kind}.onnx")
            small = Path(f"{prefix}.int8.{task}{kind}.onnx")
            assert small.stat().st_size < 0.9 * full.stat().st_size  # ~1/2 for the shipped
            meta = {p.key: p.value for p in onnx.load(str(small)).metadata_props}
            assert meta["quantization"] == "int8-dynamic"
            assert meta["task"] == task and meta["config"] == model.cfg.to_json()
            assert meta["graph"] == (kind[1:] or "full")
    rng = np.random.default_rng(5)
    x_train, x_test, y_cls, _ = random_problem(rng, 2, 40, 17, 12)
    exact = OnnxEngine(prefix)
    quant = OnnxEngine(f"{prefix}.int8")
    assert quant.has_split("classification")
    p = exact.predict(exact.fit(x_train, y_cls, "classification"), x_test)["probs"]
    q = quant.predict(quant.fit(x_train, y_cls, "classification"), x_test)["probs"]
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-5)
    # Quantisation error is real but small: far below the spread of the probabilities.
    assert 0 < np.abs(p - q).max() < 0.05


# ----- the shipped graphs ----------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> tuple[PFN, OnnxEngine]:
    return load_model(WEIGHTS / "default.safetensors"), OnnxEngine()


def test_shipped_graphs_match_shipped_weights(shipped):
    model, engine = shipped
    sha = hashlib.sha256((WEIGHTS / "default.safetensors").read_bytes()).hexdigest()
    for task in ("classification", "regression"):
        assert engine.has_split(task)
        for kind in ("full", "fit", "predict"):
            path = engine.path(task, kind)
            meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            assert meta["source_sha256"] == sha, (
                f"{path.name} was exported from other weights; rerun `pfn export`")
            assert meta["config"] == model.cfg.to_json()
    rng = np.random.default_rng(2)
    for b, n, t, f in [(1, 2, 1, 1), (2, 64, 10, 100), (1, 300, 20, 17)]:
        x_train, x_test, y_cls, y_reg = random_problem(rng, b, n, t, f, n_classes=min(n, 7))
        assert_agree(engine, model, x_train, y_cls, x_test, "classification")
        assert_agree(engine, model, x_train, y_reg, x_test, "regression")


def real_dataset(kind: str, name: str, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    path = DATASETS / kind / f"{name}.csv.gz"
    if not path.is_file():
        pytest.skip(f"dataset {path} not available")
    df = pd.read_csv(path).sample(frac=1.0, random_state=0).head(rows)
    y = df.pop("target")
    x = df.select_dtypes("number").to_numpy(np.float32)
    y = pd.factorize(y, sort=True)[0] if kind == "classification" else y.to_numpy()
    return x, y.astype(np.float32)


@pytest.mark.parametrize("kind,name", [("classification", "MASS_fgl"),
                                       ("classification", "AER_CreditCard"),
                                       ("regression", "ISLR_Auto"),
                                       ("regression", "datasets_airquality")])
def test_shipped_graphs_on_real_data(shipped, kind, name):
    model, engine = shipped
    x, y = real_dataset(kind, name)
    n = len(x) // 2
    assert_agree(engine, model, x[None, :n], y[None, :n], x[None, n:], kind)


# ----- engine input checks ---------------------------------------------------------------
def test_engine_rejects_bad_input(tiny):
    _, _, prefix = tiny
    engine = OnnxEngine(prefix)
    x, y = np.zeros((1, 5, 3), np.float32), np.zeros((1, 5), np.float32)
    with pytest.raises(ValueError, match="x_train must have 3 dimensions"):
        engine.fit(x[0], y)
    with pytest.raises(ValueError, match="at most 12"):
        engine.fit(np.zeros((1, 5, 13)), y)
    with pytest.raises(TypeError, match="real numbers"):
        engine.fit(x.astype(object), y)
    with pytest.raises(TypeError, match="real numbers"):
        engine.fit(np.full((1, 5, 3), "a"), y)
    with pytest.raises(ValueError, match="empty"):
        engine.fit(np.zeros((1, 0, 3)), np.zeros((1, 0)))
    with pytest.raises(ValueError, match="does not match"):
        engine.fit(x, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        engine.fit(x[:, :1], y[:, :1])
    with pytest.raises(ValueError, match="task"):
        engine.fit(x, y, "ranking")
    with pytest.raises(ValueError, match="class indices"):
        engine.fit(x, y + 0.5)
    with pytest.raises(ValueError, match="finite"):
        engine.fit(x, np.full((1, 5), np.nan), "regression")
    ctx = engine.fit(x.astype(np.int64), y.astype(int))  # real numbers are cast
    assert ctx.shape == (1, 5, 3) and ctx.cache["x_mean"].dtype == np.float32
    with pytest.raises(ValueError, match="does not match"):
        engine.predict(ctx, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        engine.predict(ctx, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        engine.predict(ctx, np.zeros((1, 0, 3), np.float32))
    with pytest.raises(TypeError, match="context"):
        engine.predict({"x": x}, x)


def test_engine_missing_or_corrupt_file_names_path(tmp_path):
    missing = OnnxEngine(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="nothing.classification.onnx"):
        _ = missing.max_features
    (tmp_path / "bad.classification.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="bad.classification.onnx"):
        _ = OnnxEngine(tmp_path / "bad").max_classes


# ----- without torch ---------------------------------------------------------------------
BLOCK_TORCH = """
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


def run_without_torch(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_runtime_works_without_torch(tmp_path):
    proc = run_without_torch(tmp_path, """
        import sys
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was not blocked")
        import numpy as np
        from export.runtime import OnnxEngine
        engine = OnnxEngine()
        rng = np.random.default_rng(0)
        x = rng.normal(size=(1, 30, 4)).astype(np.float32)
        ctx = engine.fit(x[:, :20], (np.arange(20) % 3)[None], "classification")
        p = engine.predict(ctx, x[:, 20:])["probs"]
        assert p.shape == (1, 10, engine.max_classes), p.shape
        assert np.allclose(p.sum(-1), 1, atol=1e-5)
        assert "torch" not in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_estimator_with_onnx_engine_works_without_torch(tmp_path):
    if not (ROOT / "pfn" / "estimators.py").is_file():
        pytest.skip("pfn/estimators.py does not exist yet (estimators are being written)")
    proc = run_without_torch(tmp_path, """
        import sys
        import numpy as np
        from pfn.estimators import PFNClassifier
        rng = np.random.default_rng(0)
        X = rng.normal(size=(60, 4))
        y = (X[:, 0] > 0).astype(int)
        p = PFNClassifier(engine="onnx").fit(X, y).predict_proba(X)
        assert p.shape == (60, 2), p.shape
        assert np.allclose(p.sum(1), 1, atol=1e-5)
        assert "torch" not in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_onnx_engine_does_not_load_installed_torch():
    """With torch installed, the ONNX path still never imports it (import time, memory)."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from pfn.estimators import PFNClassifier, PFNRegressor
        X = np.random.default_rng(0).normal(size=(40, 3))
        PFNClassifier(engine="onnx").fit(X, X[:, 0] > 0).predict_proba(X)
        PFNRegressor(engine="onnx").fit(X, X[:, 1]).predict(X)
        print("torch" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
