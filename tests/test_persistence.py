"""Saving fitted estimators without pickle (``save`` / ``load``), and the weights fingerprint
that keeps a fitted estimator from predicting with other weights (after ``load``, pickle or a
change of ``model_path``).

All on the tiny exported model (``tests/onnx_cases.py``): ``engine="torch"`` runs its
safetensors file, ``engine="onnx"`` its graphs, and both have the same fingerprint.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
import torch
from safetensors import safe_open

from pfn import PFNClassifier, PFNRegressor
from pfn.checkpoint import save_model, weights_fingerprint
from pfn.engines import base as engine_base
from pfn.engines.onnx_engine import OnnxEngine
from pfn.model import PFN
from pfn.persistence import FORMAT, content_sha256


def make_data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[rng.random(X.shape) < 0.05] = np.nan
    y_cls = np.digitize(np.nan_to_num(X[:, 0]), [-0.5, 0.5])
    y_reg = 3.0 * np.nan_to_num(X[:, 1]) + rng.normal(size=n)
    return X, y_cls, y_reg


def model_path(tiny, engine: str) -> str:
    _, ckpt, prefix = tiny
    return str(ckpt if engine == "torch" else prefix)


def fitted(tiny, cls, engine: str, **params):
    X, y_cls, y_reg = make_data()
    est = cls(engine=engine, model_path=model_path(tiny, engine), n_estimators=2, **params)
    return est.fit(X[:40], y_cls[:40] if cls is PFNClassifier else y_reg[:40])


def outputs(est, X) -> np.ndarray:
    if isinstance(est, PFNClassifier):
        return est.predict_proba(X)
    return est.predict_quantiles(X, [0.1, 0.5, 0.9])


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="np") as fh:
        return fh.metadata()


def rewrite(path: Path, edit, rehash: bool = True) -> None:
    """Rewrite a saved estimator with its JSON edited by ``edit(doc)`` (and a new hash)."""
    meta = metadata(path)
    tensors = safetensors.numpy.load(path.read_bytes())
    doc = json.loads(meta["state"])
    edit(doc)
    meta["state"] = json.dumps(doc, sort_keys=True)
    if rehash:
        meta["sha256"] = content_sha256(meta["state"], tensors)
    path.write_bytes(safetensors.numpy.save(tensors, metadata=meta))


# ----- round trips ------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("cls", [PFNClassifier, PFNRegressor])
@pytest.mark.parametrize("rows", [True, False])
def test_round_trip_gives_identical_predictions(tiny, tmp_path, engine, cls, rows):
    X, _, _ = make_data()
    est = fitted(tiny, cls, engine)
    before = outputs(est, X[40:])
    path = est.save(tmp_path / "est.safetensors", include_training_rows=rows)
    with safe_open(str(path), framework="np") as fh:
        names = set(fh.keys())
    for attr in ("x_train_", "y_train_"):  # one array per group of members
        assert any(name.startswith(attr) for name in names) == rows
    assert any(name.startswith("_context_arrays") for name in names) != rows
    loaded = cls.load(path)
    assert loaded.get_params() == est.get_params()
    assert loaded.weights_fingerprint_ == est.weights_fingerprint_ == weights_fingerprint(
        tiny[1])
    np.testing.assert_array_equal(outputs(loaded, X[40:]), before)
    if not rows:  # a cache-only estimator saves again, but only as what it is
        np.testing.assert_array_equal(
            outputs(cls.load(loaded.save(tmp_path / "again.safetensors",
                                         include_training_rows=False)), X[40:]), before)
        with pytest.raises(ValueError, match="include_training_rows=False"):
            loaded.save(tmp_path / "rows.safetensors")


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("cls", [PFNClassifier, PFNRegressor])
@pytest.mark.parametrize("rows", [True, False])
def test_local_contexts_round_trip(tiny, tmp_path, engine, cls, rows):
    """More training rows than max_train_rows: routers, leaf plans and (or) their caches."""
    X, _, _ = make_data()
    est = fitted(tiny, cls, engine, max_train_rows=16)
    assert est.contexts_ is not None and est.contexts_.n_contexts >= 4
    before = outputs(est, X[40:])
    path = est.save(tmp_path / "est.safetensors", include_training_rows=rows)
    with safe_open(str(path), framework="np") as fh:
        names = set(fh.keys())
    assert ("contexts_.x" in names and "contexts_.y" in names) == rows
    assert any(name.startswith("_context_arrays[1][0][0]") for name in names) != rows
    loaded = cls.load(path)
    assert (loaded.contexts_.x is None) != rows
    np.testing.assert_array_equal(outputs(loaded, X[40:]), before)
    if not rows:
        with pytest.raises(ValueError, match="include_training_rows=False"):
            loaded.save(tmp_path / "rows.safetensors")
        again = cls.load(loaded.save(tmp_path / "again.safetensors", include_training_rows=False))
        np.testing.assert_array_equal(outputs(again, X[40:]), before)


@pytest.mark.parametrize("cls", [PFNClassifier, PFNRegressor])
@pytest.mark.parametrize("rows", [True, False])
def test_stacked_strategy_round_trips_and_engines_agree(tiny, tmp_path, cls, rows):
    """context_strategy="stacked": the booster, its weight and the one context survive a
    save, with or without the training rows; both engines predict the same."""
    X, _, _ = make_data()
    fits = {engine: fitted(tiny, cls, engine, max_train_rows=16, context_strategy="stacked")
            for engine in ("torch", "onnx")}
    est = fits["onnx"]
    assert est.context_strategy_ == "stacked" and est.booster_weight_ is not None
    before = outputs(est, X[40:])
    np.testing.assert_allclose(outputs(fits["torch"], X[40:]), before, atol=1e-4, rtol=1e-4)
    loaded = cls.load(est.save(tmp_path / "est.safetensors", include_training_rows=rows))
    assert loaded.booster_weight_ == est.booster_weight_
    np.testing.assert_array_equal(outputs(loaded, X[40:]), before)


@pytest.mark.parametrize("cls", [PFNClassifier, PFNRegressor])
def test_a_cache_serves_the_other_engine(tiny, tmp_path, cls):
    """Both engines save the cache in one format (the ONNX fit graph's outputs)."""
    X, _, _ = make_data()
    for made_by, runs_on in [("torch", "onnx"), ("onnx", "torch")]:
        est = fitted(tiny, cls, made_by)
        path = est.save(tmp_path / f"{made_by}.safetensors", include_training_rows=False)
        loaded = cls.load(path).set_params(engine=runs_on, model_path=model_path(tiny, runs_on))
        np.testing.assert_allclose(outputs(loaded, X[40:]), outputs(est, X[40:]), atol=1e-4)


def test_tables_labels_and_parameters_survive(tiny, tmp_path):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.normal(size=50), "city": rng.choice(["x", "y", "z"], 50),
                       "ok": rng.random(50) > 0.5, "n": rng.integers(0, 3, 50),
                       "c": pd.Categorical(rng.choice(["lo", "hi"], 50))})
    df.loc[::7, "a"] = np.nan
    y = np.array(["cat", "dog", None], dtype=object)[rng.integers(0, 2, 50)]
    est = PFNClassifier(engine="onnx", model_path=Path(tiny[2]), n_estimators=3,
                        random_state=np.random.default_rng(5), transforms=("quantile",))
    est.fit(df, y)
    loaded = PFNClassifier.load(est.save(tmp_path / "df.safetensors"))
    assert list(loaded.feature_names_in_) == list(df.columns)
    assert loaded.classes_.dtype == est.classes_.dtype and list(loaded.classes_) == ["cat", "dog"]
    assert len(loaded.encoder_.categories_) == len(est.encoder_.categories_)
    for got, want in zip(loaded.encoder_.categories_, est.encoder_.categories_, strict=True):
        assert type(got) is type(want)  # None, a list of labels, or an array of codes
        assert want is None or np.array_equal(np.asarray(got), np.asarray(want))
    assert isinstance(loaded.model_path, Path) and loaded.transforms == ("quantile",)
    assert loaded.random_state.bit_generator.state == est.random_state.bit_generator.state
    test = df.head(6).assign(city=["x", "unseen", None, "y", "z", "x"])
    np.testing.assert_array_equal(loaded.predict_proba(test), est.predict_proba(test))
    np.testing.assert_array_equal(loaded.predict(test), est.predict(test))


def test_refit_after_loading_a_cache_forgets_the_cache(tiny, tmp_path):
    X, y, _ = make_data()
    est = fitted(tiny, PFNClassifier, "onnx")
    loaded = PFNClassifier.load(est.save(tmp_path / "c.safetensors", include_training_rows=False))
    loaded.fit(X[20:], y[20:])
    again = pickle.loads(pickle.dumps(loaded))  # rebuilt from the new rows, not the old cache
    np.testing.assert_array_equal(again.predict_proba(X[:20]), loaded.predict_proba(X[:20]))
    assert not hasattr(again, "_context_arrays")


# ----- what loading refuses ---------------------------------------------------------------
def test_other_class_format_and_attributes_are_refused(tiny, tmp_path):
    path = fitted(tiny, PFNClassifier, "onnx").save(tmp_path / "clf.safetensors")
    with pytest.raises(ValueError, match=f"{path}.* holds a PFNClassifier.*PFNClassifier.load"):
        PFNRegressor.load(path)
    rewrite(path, lambda doc: doc["state"].update(predict={"t": "path", "value": "/"}))
    with pytest.raises(ValueError, match="attributes \\['predict'\\]"):
        PFNClassifier.load(path)
    other = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(3)}, str(other),
                                metadata={"format": "tabpfn-lite estimator/0"})
    with pytest.raises(ValueError, match=f"{other} has format 'tabpfn-lite estimator/0'"):
        PFNClassifier.load(other)
    with pytest.raises(ValueError, match="format"):
        PFNClassifier.load(tiny[1])  # a weights file is no estimator
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        PFNClassifier.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("entry", [
    {"t": "object", "class": "Popen", "attrs": {}},  # a class outside the allow-list
    {"t": "object", "class": "subprocess.Popen", "attrs": {}},
    {"t": "pickle", "value": "gASV"},  # an unknown tag
    {"t": "scalar", "dtype": "|O", "value": 1},  # object dtype: never built from a name
    {"t": "generator", "state": {"t": "dict", "items": [["bit_generator", "os.system"]]}},
])
def test_loading_builds_only_known_things_even_with_a_valid_hash(tiny, tmp_path, entry):
    path = fitted(tiny, PFNClassifier, "onnx").save(tmp_path / "clf.safetensors")
    rewrite(path, lambda doc: doc["state"].update(extra_=entry))
    with pytest.raises(ValueError, match=f"saved estimator {path} is malformed"):
        PFNClassifier.load(path)


def test_saving_an_unknown_type_names_the_attribute(tiny, tmp_path):
    est = fitted(tiny, PFNClassifier, "onnx")
    est.extra_ = {"when": pd.Timestamp("2020-01-01")}
    with pytest.raises(TypeError, match=r"extra_\['when'\].*Timestamp.*SAVABLE"):
        est.save(tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_the_file_is_safetensors_with_json_and_no_pickle(tiny, tmp_path):
    path = fitted(tiny, PFNRegressor, "torch").save(tmp_path / "reg.safetensors")
    meta = metadata(path)
    assert meta["format"] == FORMAT and len(meta["sha256"]) == 64
    doc = json.loads(meta["state"])
    assert doc["class"] == "PFNRegressor" and doc["format"] == FORMAT
    assert doc["state"]["weights_fingerprint_"] == weights_fingerprint(tiny[1])
    assert b"pickle" not in path.read_bytes() and b"\x80\x04\x95" not in path.read_bytes()


# ----- the weights fingerprint ------------------------------------------------------------
def test_engines_report_the_fingerprint_of_their_weights(tiny):
    from pfn.engines.torch_engine import TorchEngine

    _, ckpt, prefix = tiny
    assert TorchEngine(ckpt).weights_fingerprint == weights_fingerprint(ckpt)
    assert OnnxEngine(prefix).weights_fingerprint == weights_fingerprint(ckpt)


@pytest.fixture
def swappable(tiny, tmp_path) -> tuple[Path, str, str]:
    """A weights file that the tests overwrite with other weights (the shipped file after an
    upgrade), with the fingerprints before and after."""
    path = tmp_path / "installed.safetensors"
    shutil.copy(tiny[1], path)
    torch.manual_seed(1)
    other = save_model(PFN(tiny[0].cfg), tmp_path / "other.safetensors")
    return path, weights_fingerprint(path), weights_fingerprint(other)


def install_other(path: Path) -> None:
    shutil.copy(path.with_name("other.safetensors"), path)
    engine_base._SHARED.clear()  # as in a new process


@pytest.mark.parametrize("how", ["pickle", "save"])
@pytest.mark.parametrize("context_rows", [1000, 16])  # one context, or local contexts
def test_predicting_with_other_installed_weights_is_refused(swappable, tmp_path, how,
                                                           context_rows):
    path, old, new = swappable
    X, y, _ = make_data()
    est = PFNClassifier(engine="torch", model_path=path, n_estimators=2,
                        max_train_rows=context_rows).fit(X[:40], y[:40])
    blob = pickle.dumps(est)
    saved = est.save(tmp_path / "est.safetensors")
    install_other(path)
    again = pickle.loads(blob) if how == "pickle" else PFNClassifier.load(saved)
    with pytest.raises(ValueError, match=f"fingerprint {old}.*fingerprint {new}"):
        again.predict(X[40:])


def test_another_model_path_is_refused_and_the_same_weights_elsewhere_are_not(tiny, tmp_path,
                                                                             swappable):
    path, old, new = swappable
    X, y, _ = make_data()
    est = PFNRegressor(engine="torch", model_path=path, n_estimators=2).fit(X[:40], y[:40])
    before = est.predict(X[40:])
    est.set_params(model_path=path.with_name("other.safetensors"))
    with pytest.raises(ValueError, match=f"{old}.*{new}"):
        est.predict(X[40:])
    copy = tmp_path / "copy.safetensors"
    shutil.copy(path, copy)
    np.testing.assert_array_equal(est.set_params(model_path=copy).predict(X[40:]), before)


def test_an_estimator_pickled_before_fingerprints_is_refused(tiny):
    X, y, _ = make_data()
    est = fitted(tiny, PFNClassifier, "onnx")
    del est.weights_fingerprint_
    with pytest.raises(ValueError, match="unrecorded"):
        pickle.loads(pickle.dumps(est)).predict(X[:3])
