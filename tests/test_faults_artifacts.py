"""Fault injection on prediction artifacts: every damaged ONNX graph or saved estimator ends
in a clear error naming the file, or (where the damage changes nothing that is computed) in
identical results; graphs of one prefix from different weights are refused before anything
runs; NaN weights never reach a prediction; concurrent first use creates one session per
graph.

Bit positions are sampled with a fixed seed, a few per file, half of them in the file's last
kilobyte, where the metadata (and its seal) lies.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from onnx_cases import random_problem
from test_persistence import fitted, make_data, outputs

from export.onnx import _save_atomic
from pfn import PFNClassifier, PFNRegressor
from pfn.artifacts import (
    CONTENT_KEY,
    DEFAULT_WEIGHTS,
    KINDS,
    TASKS,
    graph_content_sha256,
    graph_path,
    read_graph,
)
from pfn.checkpoint import read_model_file, save_model, weights_fingerprint
from pfn.engines.onnx_engine import OnnxEngine
from pfn.model import PFN

GRAPHS = [(task, kind) for task in TASKS for kind in KINDS]
FLIPS = 6  # bit flips per file


def flip_bit(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position // 8] ^= 1 << (position % 8)
    path.write_bytes(bytes(data))


def positions(path: Path, seed: int, n: int = FLIPS) -> list[int]:
    """``n`` bit positions: half anywhere, half in the last kilobyte (the metadata)."""
    rng = random.Random(seed)
    bits = path.stat().st_size * 8
    tail = max(0, bits - 8 * 1024)
    return [rng.randrange(bits) for _ in range(n - n // 2)] + \
        [rng.randrange(tail, bits) for _ in range(n // 2)]


def copy_prefix(prefix: Path, to: Path) -> Path:
    for task, kind in GRAPHS:
        shutil.copy(graph_path(prefix, task, kind), graph_path(to, task, kind))
    return to


def run_graph(engine: OnnxEngine, task: str, kind: str) -> dict[str, np.ndarray]:
    """Every output of one graph on a fixed problem (the predict graph on the fit graph's
    outputs), run by ``engine``."""
    rng = np.random.default_rng(0)
    x_train, x_test, y_cls, y_reg = random_problem(rng, 2, 20, 6, 5)
    y = y_cls if task == "classification" else y_reg
    feeds = {"x_train": x_train, "y_train": y, "x_test": x_test}
    if kind == "predict":
        fit = engine.session(task, "fit")
        feeds = dict(zip([o.name for o in fit.get_outputs()],
                         fit.run(None, {"x_train": x_train, "y_train": y}), strict=True))
        feeds["x_test"] = x_test
    sess = engine.session(task, kind)
    names = [i.name for i in sess.get_inputs()]
    return dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {k: feeds[k] for k in names}), strict=True))


# ----- ONNX graphs ------------------------------------------------------------------------
@pytest.mark.parametrize("task,kind", GRAPHS)
def test_bit_flips_in_a_graph_are_refused(tiny, tmp_path, task, kind):
    _, _, prefix = tiny
    want = run_graph(OnnxEngine(prefix), task, kind)
    path = graph_path(prefix, task, kind)
    for i, pos in enumerate(positions(path, seed=GRAPHS.index((task, kind)))):
        damaged = copy_prefix(prefix, tmp_path / f"m{i}")
        path = graph_path(damaged, task, kind)
        flip_bit(path, pos)
        try:
            got = run_graph(OnnxEngine(damaged), task, kind)
        except ValueError as err:
            assert path.name in str(err), err
            continue
        for name in want:  # a flip that changes nothing computed (none expected, but valid)
            np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("task,kind", GRAPHS)
def test_truncated_graphs_are_refused(tiny, tmp_path, task, kind):
    _, _, prefix = tiny
    size = graph_path(prefix, task, kind).stat().st_size
    for cut in (0, 7, size // 2, size - 100, size - 1):
        damaged = copy_prefix(prefix, tmp_path / f"m{cut}")
        path = graph_path(damaged, task, kind)
        path.write_bytes(path.read_bytes()[:cut])
        with pytest.raises(ValueError, match=path.name.replace(".", r"\.")):
            run_graph(OnnxEngine(damaged), task, kind)


def test_the_estimator_refuses_a_damaged_graph_before_running_it(tiny, tmp_path, monkeypatch):
    _, _, prefix = tiny
    damaged = copy_prefix(prefix, tmp_path / "m")
    path = graph_path(damaged, "regression", "predict")
    flip_bit(path, 8 * (path.stat().st_size // 2))
    ran = []
    monkeypatch.setattr(ort.InferenceSession, "run",
                        lambda self, *a, **k: ran.append(self) or [])
    X, _, y = make_data()
    with pytest.raises(ValueError, match="regression.predict.onnx: content SHA-256"):
        PFNRegressor(engine="onnx", model_path=damaged, n_estimators=1).fit(X, y)
    assert ran == []  # the fit graph did not run either: the pair is checked first


@pytest.fixture(scope="module")
def other_weights(tiny, tmp_path_factory) -> Path:
    """The classification fit graph as other weights would give it: one weight changed, the
    metadata naming those weights, sealed as an export seals (no slow export needed)."""
    _, _, prefix = tiny
    proto = onnx.load(str(graph_path(prefix, "classification", "fit")))
    init = max(proto.graph.initializer, key=lambda i: len(i.raw_data))
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 1
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    next(p for p in proto.metadata_props if p.key == "weights_sha256").value = "f" * 64
    path = tmp_path_factory.mktemp("other") / "other.classification.fit.onnx"
    _save_atomic(proto, path)
    assert read_graph(path).verified
    return path


@pytest.mark.parametrize("replaced", [("classification", "fit"), ("regression", "full")])
def test_graphs_from_different_weights_are_refused(tiny, tmp_path, other_weights, replaced):
    """A pair whose fit graph comes from other weights; a stale graph of other weights
    beside the pair (never loaded, yet refused: the prefix is checked as a whole)."""
    _, _, prefix = tiny
    m = copy_prefix(prefix, tmp_path / "m")
    shutil.copy(other_weights, graph_path(m, *replaced))
    X, y, _ = make_data()
    with pytest.raises(ValueError, match="come from different weights"):
        PFNClassifier(engine="onnx", model_path=m, n_estimators=1).fit(X, y)


def test_unsealed_graphs_load_with_one_warning_and_sealed_ones_need_their_seal(tiny, tmp_path):
    _, _, prefix = tiny
    old = copy_prefix(prefix, tmp_path / "old")
    for task, kind in GRAPHS:  # as exported before seals: export_version 2, no hash
        path = graph_path(old, task, kind)
        proto = onnx.load(str(path))
        meta = {p.key: p.value for p in proto.metadata_props if p.key != CONTENT_KEY}
        del proto.metadata_props[:]
        for key, value in {**meta, "export_version": "2"}.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(path))
    engine = OnnxEngine(old)
    with pytest.warns(UserWarning, match="loaded unverified") as caught:
        x_train, x_test, y, _ = random_problem(np.random.default_rng(0), 1, 10, 3, 2)
        got = engine.predict(engine.fit(x_train, y, "classification"), x_test)["probs"]
        engine.predict(engine.fit(x_train, y, "regression"), x_test)
    assert len([w for w in caught if "loaded unverified" in str(w.message)]) == 1
    sealed = OnnxEngine(prefix)
    np.testing.assert_array_equal(got, sealed.predict(sealed.fit(x_train, y, "classification"),
                                                      x_test)["probs"])
    path = graph_path(old, "classification", "fit")  # a version-3 graph that lost its seal
    proto = onnx.load(str(path))
    next(p for p in proto.metadata_props if p.key == "export_version").value = "3"
    onnx.save(proto, str(path))
    with pytest.raises(ValueError, match="classification.fit.onnx.*records no content_sha256"):
        OnnxEngine(old).session("classification", "fit")


def test_shipped_graphs_are_sealed_with_the_shipped_weights_fingerprint():
    shipped = read_model_file(DEFAULT_WEIGHTS)
    assert shipped.verified  # format 2: the file records its hash
    for task, kind in GRAPHS:
        graph = read_graph(graph_path(DEFAULT_WEIGHTS.with_suffix(""), task, kind))
        assert graph.verified and graph.metadata["weights_sha256"] == shipped.sha256
        assert graph.metadata[CONTENT_KEY] == graph_content_sha256(graph.data)


# ----- saved estimators and weights -------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory) -> tuple[Path, np.ndarray]:
    d = tmp_path_factory.mktemp("saved")
    est = fitted(tiny, PFNClassifier, "onnx")
    X, _, _ = make_data()
    return est.save(d / "est.safetensors", include_training_rows=False), outputs(est, X[40:])


def test_bit_flips_and_truncations_in_a_saved_estimator_are_refused(saved, tmp_path):
    path, want = saved
    X, _, _ = make_data()
    data = path.read_bytes()
    damaged = tmp_path / "est.safetensors"
    for pos in positions(path, seed=7, n=2 * FLIPS):
        damaged.write_bytes(data)
        flip_bit(damaged, pos)
        try:
            got = outputs(PFNClassifier.load(damaged), X[40:])
        except ValueError as err:
            assert str(damaged) in str(err), err
            continue
        np.testing.assert_array_equal(got, want)  # e.g. a flip in the header's whitespace
    for cut in (0, 5, 8, 100, len(data) // 2, len(data) - 1):
        damaged.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=str(damaged)):
            PFNClassifier.load(damaged)


def test_edited_json_is_refused(saved, tmp_path):
    from test_persistence import rewrite

    path, _ = saved
    copy = tmp_path / "est.safetensors"
    for edit in (lambda doc: doc["state"].update(n_estimators=3),
                 lambda doc: doc.update(format="tabpfn-lite estimator/2")):
        shutil.copy(path, copy)
        rewrite(copy, edit, rehash=False)
        with pytest.raises(ValueError, match=f"saved estimator {copy}: content SHA-256"):
            PFNClassifier.load(copy)


def test_nan_weights_never_reach_a_prediction(tiny, tmp_path):
    model = PFN(tiny[0].cfg)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    path = save_model(model, tmp_path / "nan.safetensors")  # hash and all: only NaN is wrong
    X, y, _ = make_data()
    with pytest.raises(ValueError, match=f"model file {path}: 1 NaN or inf weights"):
        PFNClassifier(engine="torch", model_path=path, n_estimators=1).fit(X, y)
    with pytest.raises(ValueError, match="NaN or inf"):
        weights_fingerprint(path)


# ----- concurrent first use ---------------------------------------------------------------
def test_four_threads_on_first_use_create_one_session_per_graph(tiny, monkeypatch):
    _, _, prefix = tiny
    created: list[int] = []
    real = ort.InferenceSession

    class Counting(real):
        def __init__(self, *args, **kwargs):
            created.append(1)
            time.sleep(0.05)  # widen the window in which a second thread could slip in
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counting)
    engine = OnnxEngine(prefix)
    x_train, x_test, y, _ = random_problem(np.random.default_rng(0), 1, 10, 3, 2)
    barrier = threading.Barrier(4)
    results, errors = [None] * 4, []

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = engine.predict(engine.fit(x_train, y, "classification"), x_test)
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(created) == 2  # the fit and the predict graph, once each
    for r in results[1:]:
        np.testing.assert_array_equal(r["probs"], results[0]["probs"])
