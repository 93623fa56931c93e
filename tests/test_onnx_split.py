"""The fit/predict graph pair: same results as the full graph, one fit serves many predicts,
the cache's names line up, and weights stored in float16 lose nothing."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_cases import assert_agree, random_problem

from export.onnx import _expand_fp16, _store_exact_fp16
from pfn.engines.onnx_engine import OnnxEngine

TASKS = ("classification", "regression")


@pytest.fixture(scope="module")
def full_only(tiny, tmp_path_factory):
    """An engine over a prefix that has only the full graphs (as an export_version 1 had)."""
    _, _, prefix = tiny
    d = tmp_path_factory.mktemp("full_only")
    for task in TASKS:
        shutil.copy(f"{prefix}.{task}.onnx", d / f"m.{task}.onnx")
    return OnnxEngine(d / "m")


@pytest.mark.parametrize("b,n,t,f", [(1, 2, 1, 1), (3, 40, 17, 12), (2, 150, 4, 5)])
def test_pair_matches_full_graph_and_torch(tiny, full_only, b, n, t, f):
    model, _, prefix = tiny
    split = OnnxEngine(prefix)
    rng = np.random.default_rng(10 * b + n)
    x_train, x_test, y_cls, y_reg = random_problem(rng, b, n, t, f, n_classes=min(n, 4))
    for task, y in [("classification", y_cls), ("regression", y_reg)]:
        assert split.has_split(task) and not full_only.has_split(task)
        ctx = split.fit(x_train, y, task)
        assert ctx.cache is not None and ctx.x_train is None
        got = split.predict(ctx, x_test)
        want = full_only.predict(full_only.fit(x_train, y, task), x_test)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)
        assert_agree(split, model, x_train, y, x_test, task)


def test_one_fit_serves_many_predicts(tiny, monkeypatch):
    _, _, prefix = tiny
    engine = OnnxEngine(prefix)
    rng = np.random.default_rng(4)
    x_train, x_test, y_cls, _ = random_problem(rng, 2, 30, 12, 6)
    ctx = engine.fit(x_train, y_cls, "classification")
    whole = engine.predict(ctx, x_test)["probs"]
    ran = []
    run = OnnxEngine._run_grouped
    monkeypatch.setattr(OnnxEngine, "_run_grouped",
                        lambda self, sess, *a, **k: ran.append(sess) or run(self, sess, *a, **k))
    parts = [engine.predict(ctx, x_test[:, i:i + 5])["probs"] for i in range(0, 12, 5)]
    assert ran == [engine.session("classification", "predict")] * 3  # the fit graph never
    # A test row depends only on the training rows, so chunks equal the whole.
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-5, atol=1e-6)


def test_predict_inputs_are_fit_outputs(tiny):
    model, _, prefix = tiny
    engine = OnnxEngine(prefix)
    layers = [f"{kind}{i}" for i in range(model.cfg.n_layers) for kind in "kv"]
    for task, last in [("classification", "num_classes"), ("regression", "borders")]:
        fit, predict = engine.session(task, "fit"), engine.session(task, "predict")
        outs = [o.name for o in fit.get_outputs()]
        ins = [i.name for i in predict.get_inputs()]
        assert outs == ["x_mean", "x_std", *layers, last]
        assert ins[0] == "x_test" and set(ins[1:]) <= set(outs)
        for sess, kind in [(fit, "fit"), (predict, "predict")]:
            meta = sess.get_modelmeta().custom_metadata_map
            assert (meta["task"], meta["graph"]) == (task, kind)
        onnx.checker.check_model(onnx.load(str(engine.path(task, "predict"))), full_check=True)


def test_any_graph_path_names_the_prefix(tiny):
    _, _, prefix = tiny
    for suffix in (".classification.onnx", ".regression.fit.onnx",
                   ".classification.predict.onnx"):
        assert OnnxEngine(f"{prefix}{suffix}").prefix == prefix


def test_wrong_graph_in_place_is_named(tiny, tmp_path):
    _, _, prefix = tiny
    for task in TASKS:
        shutil.copy(f"{prefix}.{task}.onnx", tmp_path / f"m.{task}.onnx")
    # a predict graph saved under the fit graph's name
    shutil.copy(f"{prefix}.classification.predict.onnx", tmp_path / "m.classification.fit.onnx")
    shutil.copy(f"{prefix}.classification.predict.onnx",
                tmp_path / "m.classification.predict.onnx")
    engine = OnnxEngine(tmp_path / "m")
    with pytest.raises(ValueError, match=r"m\.classification\.fit\.onnx is not the "
                                         r"classification fit graph"):
        engine.fit(np.zeros((1, 4, 2)), np.array([[0, 1, 0, 1]]), "classification")


def _matmul_model(w: np.ndarray, v: np.ndarray) -> onnx.ModelProto:
    """y = (x @ w) @ v with both weights as initializers."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "v"],
                                                                        ["y"])],
        "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", v.shape[1]])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(v, "v")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_exact_fp16_weights_are_stored_in_half_and_lose_nothing():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 32)).astype(np.float16).astype(np.float32)  # exact in fp16
    v = rng.normal(size=(32, 48)).astype(np.float32)  # not exact: must stay float32
    x = rng.normal(size=(5, 64)).astype(np.float32)
    proto = _matmul_model(w, v)
    before = _run(proto, x)
    size = len(proto.SerializeToString())
    assert _store_exact_fp16(proto) == 1
    onnx.checker.check_model(proto, full_check=True)
    kinds = {i.name: i.data_type for i in proto.graph.initializer}
    assert kinds == {"w__fp16": TensorProto.FLOAT16, "v": TensorProto.FLOAT}
    assert len(proto.SerializeToString()) < size - w.size * 2 + 200  # w's bytes halved
    np.testing.assert_array_equal(_run(proto, x), before)  # bit for bit
    _expand_fp16(proto)  # and back, for the int8 quantiser
    kinds = {i.name: i.data_type for i in proto.graph.initializer}
    assert kinds == {"w": TensorProto.FLOAT, "v": TensorProto.FLOAT}
    assert [n.op_type for n in proto.graph.node] == ["MatMul", "MatMul"]
    np.testing.assert_array_equal(_run(proto, x), before)
