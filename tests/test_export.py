"""ONNX export and the torch-free ONNX Runtime engine: parity with torch, metadata, errors.

A tiny random model is exported once per session (``tests/onnx_cases.py``); the shipped graphs are
checked against the shipped safetensors without re-exporting them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx_cases import assert_agree, random_problem
from shared_data import DATASETS

from export.cli import main as export_main
from pfn.checkpoint import load_model
from pfn.config import model_config_from_dict
from pfn.engines.onnx_engine import OnnxEngine
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
    from pfn.engines import onnx_engine

    _, _, prefix = tiny
    engine = OnnxEngine(prefix)
    rng = np.random.default_rng(3)
    x_train, x_test, y_cls, y_reg = random_problem(rng, 5, 30, 8, 6)
    for y, task in [(y_cls, "classification"), (y_reg, "regression")]:
        whole = engine.predict(engine.fit(x_train, y, task), x_test)
        monkeypatch.setattr(onnx_engine, "SCORES_BUDGET", 1)  # one dataset per call
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
    assert engine.n_heads == model.cfg.n_heads  # what check_memory sizes attention with


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


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_each_task_ships_graphs_of_its_own_weights(task):
    from pfn.artifacts import shipped_prefix, weights_path

    prefix = shipped_prefix(task)
    sha = hashlib.sha256(weights_path(prefix).read_bytes()).hexdigest()
    graphs = sorted(WEIGHTS.glob(f"{prefix.name}.*.onnx"))
    assert {g.name for g in graphs} >= {f"{prefix.name}.{task}{k}.onnx"
                                        for k in ("", ".fit", ".predict")}
    for path in graphs:
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert meta["source_sha256"] == sha, f"{path.name}: rerun `pfn ship`"
    engine = OnnxEngine(prefix)
    assert engine.weights_fingerprint == load_model(weights_path(prefix)).weights_fingerprint


def test_shipped_graphs_match_shipped_weights(shipped):
    model, engine = shipped
    sha = hashlib.sha256((WEIGHTS / "default.safetensors").read_bytes()).hexdigest()
    for task in ("classification", "regression"):
        assert engine.has_split(task)
        for kind in ("full", "fit", "predict"):
            path = engine.path(task, kind)
            meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            assert meta["source_sha256"] == sha, (
                f"{path.name} was exported from other weights; rerun `pfn ship`")
            # Parsed, not as text: configs written before a field was added (with its
            # default) describe the same model.
            assert model_config_from_dict(json.loads(meta["config"])) == model.cfg
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


# ----- reproducible files, where they go -------------------------------------------------
def test_export_is_byte_reproducible(tiny, tmp_path):
    """The same weights under another name, exported to another folder: the same bytes."""
    _, ckpt, prefix = tiny
    copy = tmp_path / "elsewhere" / "renamed.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(ckpt.read_bytes())
    out = tmp_path / "again" / "other"
    assert export_main(["--checkpoint", str(copy), "--out-prefix", str(out), "--int8"]) == 0
    assert export_main(["--checkpoint", str(ckpt), "--out-prefix", str(tmp_path / "m"),
                        "--int8"]) == 0
    for task in ("classification", "regression"):
        for kind in ("", ".fit", ".predict"):
            name = f".{task}{kind}.onnx"
            first = Path(f"{prefix}{name}").read_bytes()
            assert Path(f"{out}{name}").read_bytes() == first, name
            assert str(ROOT).encode() not in first  # no stack traces of the exporting code
            assert Path(f"{out}.int8{name}").read_bytes() == \
                Path(f"{tmp_path / 'm'}.int8{name}").read_bytes(), f"int8{name}"


def test_export_refuses_the_weights_folder_and_ship_writes_there(tiny, tmp_path, capsys):
    _, ckpt, _ = tiny
    before = {p: p.stat().st_mtime_ns for p in WEIGHTS.iterdir()}
    assert export_main(["--checkpoint", str(ckpt), "--out-prefix",
                        str(WEIGHTS / "default")]) == 2
    assert "only 'pfn ship'" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in WEIGHTS.iterdir()} == before
    from export.ship import main as ship_main

    assert ship_main([str(ckpt), "--out-dir", str(tmp_path)]) == 0
    assert "replacing the shipped model" in capsys.readouterr().err
    shipped = tmp_path / "default.safetensors"
    sha = hashlib.sha256(shipped.read_bytes()).hexdigest()
    engine = OnnxEngine(tmp_path / "default")
    for task in ("classification", "regression"):
        assert engine.has_split(task)
        meta = {p.key: p.value for p in onnx.load(str(engine.path(task))).metadata_props}
        assert meta["source_sha256"] == sha and "source_file" not in meta


def test_ship_a_task_specialist_writes_that_task_and_drops_stale_graphs(tiny, tmp_path,
                                                                         capsys):
    from export.ship import main as ship_main

    _, ckpt, prefix = tiny
    for task in ("classification", "regression"):  # an earlier ship left both tasks' graphs
        for kind in ("", ".fit", ".predict"):
            (tmp_path / f"spec.{task}{kind}.onnx").write_bytes(
                Path(f"{prefix}.{task}{kind}.onnx").read_bytes())
    (tmp_path / "spec.int8.regression.onnx").write_bytes(b"stale")
    assert ship_main([str(ckpt), "--out-dir", str(tmp_path), "--name", "spec",
                      "--task", "classification"]) == 0
    err = capsys.readouterr().err
    assert "(classification)" in err and err.count("removed: ") == 4
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["spec.classification.fit.onnx", "spec.classification.onnx",
                    "spec.classification.predict.onnx", "spec.safetensors"]
    engine = OnnxEngine(tmp_path / "spec")
    assert engine.weights_fingerprint == load_model(tmp_path / "spec.safetensors"
                                                    ).weights_fingerprint
    x = np.random.default_rng(0).normal(size=(1, 30, 3)).astype(np.float32)
    y = (x[..., 0] > 0).astype(np.float32)
    assert engine.predict(engine.fit(x, y, "classification"), x)["probs"].shape[:2] == (1, 30)
    with pytest.raises(FileNotFoundError):
        engine.fit(x, y, "regression")
    for bad in ("a.b", "../x", ""):
        assert ship_main([str(ckpt), "--out-dir", str(tmp_path), "--name", bad]) == 2
    assert "--name must be a plain file name" in capsys.readouterr().err


def test_old_engine_import_still_works_with_a_warning():
    import export.runtime

    with pytest.warns(DeprecationWarning, match="pfn.engines.onnx_engine"):
        assert export.runtime.OnnxEngine is OnnxEngine
