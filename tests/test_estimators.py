"""PFNClassifier / PFNRegressor behaviour, the numpy bar distribution, and engines."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pfn import PFNClassifier, PFNRegressor
from pfn.bar_distribution import BarDistribution
from pfn.engines import onnx_available, resolve_engine_name

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(engine="torch", n_estimators=2)


def _data(n=80, f=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    cuts = np.quantile(X[:, 0], np.linspace(0, 1, classes + 1)[1:-1])
    y = np.digitize(X[:, 0] + 0.3 * X[:, 1], cuts)
    return X, y


# ----- classifier -----------------------------------------------------------------------------
def test_classifier_probabilities_and_labels():
    X, y = _data()
    labels = np.array(["cat", "dog", "eel"])[y]
    clf = PFNClassifier(**FAST).fit(X[:60], labels[:60])
    proba = clf.predict_proba(X[60:])
    assert proba.shape == (20, 3) and np.allclose(proba.sum(1), 1) and (proba >= 0).all()
    assert list(clf.classes_) == ["cat", "dog", "eel"] and clf.n_features_in_ == 4
    np.testing.assert_array_equal(clf.predict(X[60:]), clf.classes_[proba.argmax(1)])


@pytest.mark.parametrize("strategy", [None, "local", "stacked"])
def test_probabilities_sum_to_one_in_float64_and_log_loss_accepts_them(strategy):
    """One context, local contexts and the stacked blend average float32 network outputs;
    the rows must still sum to 1 to float64 precision, or scikit-learn's log_loss warns."""
    import warnings

    from sklearn.metrics import log_loss

    X, y = _data(n=700, classes=4)
    kw = {} if strategy is None else dict(context_strategy=strategy, max_train_rows=200)
    clf = PFNClassifier(n_estimators=2, **kw).fit(X[:500], y[:500])
    assert clf.context_strategy_ == strategy
    proba = clf.predict_proba(X[500:])
    assert proba.dtype == np.float64
    assert np.abs(proba.sum(1) - 1).max() < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert log_loss(y[500:], proba) < np.log(4)


def test_dataframe_with_categories_and_missing_values():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=50), "city": rng.choice(["x", "y", "z"], 50),
                       "ok": rng.random(50) > 0.5,
                       "c": pd.Categorical(rng.choice(["lo", "hi"], 50))})
    df.loc[::7, "a"] = np.nan
    df.loc[::9, "city"] = None
    y = (df["city"] == "x").to_numpy()
    clf = PFNClassifier(**FAST).fit(df, y)
    assert list(clf.feature_names_in_) == ["a", "city", "ok", "c"]
    test = df.head(5).assign(city=["x", "unseen", None, "y", "z"])
    assert clf.predict_proba(test).shape == (5, 2)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(test[["city", "a", "ok", "c"]])


def _categorical_frame(n=90, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(list("rgbyk"), n),
                       "code": rng.integers(0, 3, n)})
    y = ((df["colour"].isin(["r", "b"])) ^ (df["code"] == 1)).to_numpy()
    return df, y


CODE = FAST | {"categorical_features": ["code"]}  # the integer column holds categories


def test_categorical_features_parameter_and_fitted_mask():
    df, y = _categorical_frame()
    clf = PFNClassifier(**FAST).fit(df, y)
    assert clf.categorical_features_.tolist() == [False, True, False]  # a frame: its dtypes
    colour = df["colour"].map({c: i for i, c in enumerate("rgbyk")})
    codes = df.assign(colour=colour).to_numpy(float)
    arr = PFNClassifier(**FAST).fit(codes, y)  # an array: the integer rule (<= 4 levels)
    assert arr.categorical_features_.tolist() == [False, False, True]
    none = PFNClassifier(**FAST, categorical_features=None).fit(df, y)
    assert none.categorical_features_.tolist() == [False, True, False]
    named = PFNClassifier(**FAST, categorical_features=["x"]).fit(df, y)
    assert named.categorical_features_.tolist() == [True, True, False]
    assert named.predict_proba(df.assign(x=df["x"] + 1)).shape == (90, 2)  # unseen: missing
    with pytest.raises(ValueError, match="unknown columns"):
        PFNClassifier(**FAST, categorical_features=["colour", "size"]).fit(df, y)
    with pytest.raises(ValueError, match="categorical_encoding"):
        PFNClassifier(**FAST, categorical_encoding=("onehot", "target")).fit(df, y)
    for bad in ((), 3, None):
        with pytest.raises(ValueError, match="categorical_encoding"):
            PFNClassifier(**FAST, categorical_encoding=bad).fit(df, y)


def test_renaming_categories_changes_no_prediction():
    """One-hot and shuffled members start from a label-free order of the levels."""
    df, y = _categorical_frame()
    renamed = df.assign(colour=df["colour"].map(dict(zip("rgbyk", "vwxyz", strict=True))),
                        code=df["code"].map({0: 7, 1: 3, 2: 5}))
    for enc in ("onehot", ("onehot", "shuffled")):
        a = PFNClassifier(**CODE, categorical_encoding=enc).fit(df[:60], y[:60])
        b = PFNClassifier(**CODE, categorical_encoding=enc).fit(renamed[:60], y[:60])
        np.testing.assert_allclose(a.predict_proba(df[60:]), b.predict_proba(renamed[60:]),
                                   atol=1e-6)
    c = PFNClassifier(**CODE, categorical_encoding="ordinal").fit(renamed[:60], y[:60])
    assert not np.allclose(a.predict_proba(df[60:]), c.predict_proba(renamed[60:]), atol=1e-3)


def test_members_of_other_widths_run_as_separate_engine_groups():
    df, y = _categorical_frame()
    target = df["x"].to_numpy() + (df["colour"] == "r")
    for est, t in ((PFNClassifier, y), (PFNRegressor, target)):
        mixed = est(**CODE, categorical_encoding=("shuffled", "onehot")).fit(df[:60], t[:60])
        assert [x.shape[2] for x in mixed.x_train_] == [3, 9]  # x, 5 + 3 indicators
        pred = mixed.predict(df[60:])
        again = est(**CODE, categorical_encoding=("shuffled", "onehot")).fit(df[:60], t[:60])
        np.testing.assert_array_equal(again.predict(df[60:]), pred)  # same seed, same result
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(mixed)).predict(df[60:]), pred)
    dist = mixed.predict_distribution(df[60:])
    np.testing.assert_allclose(dist.probs.sum(1), 1, rtol=1e-6)  # float32 probabilities


def test_onehot_falls_back_to_codes_at_the_feature_limit():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(50, 99)), columns=[f"f{i}" for i in range(99)])
    df["level"] = rng.choice(["a", "b", "c"], 50)
    clf = PFNClassifier(**FAST).fit(df, df["f0"] > 0)
    assert [x.shape[2] for x in clf.x_train_] == [100]  # 3 indicators would make 102
    assert clf.predict_proba(df).shape == (50, 2)
    narrow = PFNClassifier(**FAST).fit(df.iloc[:, 60:], df["f0"] > 0)
    assert [x.shape[2] for x in narrow.x_train_] == [42]  # 39 numeric + 3 indicators


def test_softmax_temperature_flattens_or_sharpens_the_probabilities():
    """One member: the entropy of softmax(logits / T) grows with T, the argmax stays."""
    X, y = _data()
    one = dict(engine="torch", n_estimators=1)
    p = {t: PFNClassifier(**one, softmax_temperature=t).fit(X[:60], y[:60])
         .predict_proba(X[60:]) for t in (0.5, 1.0, 2.0)}
    entropy = {t: -(q * np.log(np.maximum(q, 1e-300))).sum(1) for t, q in p.items()}
    assert (entropy[0.5] < entropy[1.0]).all() and (entropy[1.0] < entropy[2.0]).all()
    np.testing.assert_array_equal(p[2.0].argmax(1), p[1.0].argmax(1))
    np.testing.assert_array_equal(p[0.5].argmax(1), p[1.0].argmax(1))
    clf = PFNClassifier(**one).fit(X[:60], y[:60])
    [x_test], m = clf.plan_.test_inputs(X[60:]), clf.plan_.members[0]
    net = clf._get_engine().predict(clf._context[0], x_test)["probs"][0]
    logits = np.log(net[:, m.code])  # the network's logits up to a constant per row
    for t, q in p.items():  # softmax(logits / T)
        expected = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
        np.testing.assert_allclose(q, expected, rtol=1e-6)
    for bad in (0, -1.0, float("inf"), "1", True):
        with pytest.raises(ValueError, match="softmax_temperature"):
            PFNClassifier(**FAST, softmax_temperature=bad).fit(X, y)


def test_predictions_are_deterministic_per_random_state_and_chunk_invariant():
    X, y = _data()
    a = PFNClassifier(**FAST, random_state=3).fit(X[:60], y[:60]).predict_proba(X[60:])
    b = PFNClassifier(**FAST, random_state=3, test_batch_size=7).fit(X[:60], y[:60])
    np.testing.assert_allclose(b.predict_proba(X[60:]), a, atol=1e-6)
    np.testing.assert_allclose(b.predict_proba(X[60:61]), a[:1], atol=1e-6)  # rows independent
    c = PFNClassifier(**FAST, random_state=4).fit(X[:60], y[:60]).predict_proba(X[60:])
    assert not np.allclose(a, c)
    gen = PFNClassifier(**FAST, random_state=np.random.default_rng(0)).fit(X[:60], y[:60])
    assert gen.predict_proba(X[60:]).shape == a.shape


def test_single_member_equals_the_network_on_the_same_inputs():
    """Cached fit/predict equals one full forward pass, after undoing the label permutation."""
    import torch

    X, y = _data()
    clf = PFNClassifier(engine="torch", n_estimators=1, transforms=("none",),
                        softmax_temperature=1.0).fit(X[:60], y[:60])
    m = clf.plan_.members[0]
    x_all = np.concatenate([clf.x_train_[0][0], clf.plan_.test_inputs(X[60:])[0][0]])[None]
    engine = clf._get_engine()
    with torch.no_grad():
        logits = engine.model(torch.tensor(x_all), torch.tensor(clf.y_train_[0]),
                              "classification")
    expected = torch.softmax(logits[0].double(), -1).numpy()[:, m.code]
    np.testing.assert_allclose(clf.predict_proba(X[60:]), expected, atol=1e-5)


def test_single_member_regressor_equals_the_network_on_raw_targets():
    """Standardising y outside the model, then mapping borders back, changes nothing."""
    import torch

    X, _ = _data(n=100)
    y = 50 + 10 * X[:, 0]
    reg = PFNRegressor(engine="torch", n_estimators=1, transforms=("none",)).fit(X[:70], y[:70])
    model = reg._get_engine().model
    x_all = np.concatenate([reg.x_train_[0][0], reg.plan_.test_inputs(X[70:])[0][0]])[None]
    y_raw = torch.tensor(y[:70], dtype=torch.float32)[None]
    with torch.no_grad():
        logits = model(torch.tensor(x_all), y_raw, "regression")
        borders = model.scaled_borders(y_raw)[0].double().numpy()
    dist = BarDistribution.from_logits(logits[0].double().numpy(), borders)
    expected = dist.clip_tails(y[:70].min(), y[:70].max(), y[:70].std()).mean()
    np.testing.assert_allclose(reg.predict(X[70:]), expected, rtol=1e-5, atol=1e-4)


def test_limits_many_classes_features_and_rows():
    X, y = _data(n=260, f=120, classes=13)
    clf = PFNClassifier(**FAST, max_train_rows=64).fit(X[:200], y[:200])
    proba = clf.predict_proba(X[200:])
    assert proba.shape == (60, 13) and np.allclose(proba.sum(1), 1)
    contexts = clf.contexts_  # more rows than a context: local contexts of <= 64 rows each
    assert all(len(p.members[0].rows) <= 64 for plans in contexts.plans for p in plans)
    seen = {int(j) for plans in contexts.plans for p in plans for m in p.members
            for j in m.features}
    assert seen == set(range(120))  # more features than the network: groups, all seen


@pytest.mark.parametrize("make_bad, error, match", [
    (lambda X, y: (X[:0], y[:0]), ValueError, "0 sample"),
    (lambda X, y: (X[:1], y[:1]), ValueError, "1 sample|1 class"),
    (lambda X, y: (X, np.zeros_like(y)), ValueError, "1 class"),
    (lambda X, y: (np.where(X > 1.5, np.inf, X), y), ValueError, "infinity"),
    (lambda X, y: (sparse.csr_matrix(X), y), TypeError, "sparse"),
    (lambda X, y: (X[:, :, None], y), ValueError, "2D"),
    (lambda X, y: (X, None), ValueError, "requires y"),
    (lambda X, y: (X, y[:-1]), ValueError, "inconsistent"),
])
def test_bad_training_input_is_rejected_clearly(make_bad, error, match):
    X, y = _data()
    with pytest.raises(error, match=match):
        PFNClassifier(**FAST).fit(*make_bad(X, y))


def test_bad_prediction_input_and_parameters():
    X, y = _data()
    clf = PFNClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        PFNRegressor(**FAST).fit(X, np.where(y == 1, np.nan, 1.0))
    with pytest.raises(ValueError, match="n_estimators"):
        PFNClassifier(n_estimators=0).fit(X, y)
    with pytest.raises(ValueError, match="engine"):
        PFNClassifier(engine="gpu").fit(X, y)


def test_pickle_round_trip_keeps_predictions_and_drops_the_engine_state():
    X, y = _data()
    for est, target in ((PFNClassifier(**FAST), y), (PFNRegressor(**FAST), X[:, 0] * 3.0)):
        est.fit(X[:60], target[:60])
        before = est.predict(X[60:])
        blob = pickle.dumps(est)
        assert b"torch._utils" not in blob and "_context" not in est.__getstate__()
        np.testing.assert_array_equal(pickle.loads(blob).predict(X[60:]), before)


def test_pipeline_cross_validation_and_grid_search():
    X, y = _data(n=60)
    pipe = make_pipeline(StandardScaler(), PFNClassifier(**FAST))
    assert cross_val_score(pipe, X, y, cv=3).shape == (3,)
    grid = GridSearchCV(PFNRegressor(engine="torch"), {"n_estimators": [1, 2]}, cv=2)
    grid.fit(X, X[:, 0] + X[:, 1])
    assert grid.best_params_["n_estimators"] in (1, 2)


# ----- regressor ------------------------------------------------------------------------------
def test_regressor_predictions_quantiles_and_distribution():
    X, _ = _data(n=100)
    y = 1000 + 50 * X[:, 0]
    reg = PFNRegressor(**FAST).fit(X[:70], y[:70])
    mean = reg.predict(X[70:])
    q = reg.predict_quantiles(X[70:], [0.1, 0.5, 0.9])
    assert mean.shape == (30,) and q.shape == (30, 3)
    assert (np.diff(q, axis=1) >= 0).all()
    assert np.all((mean > y.min() - 200) & (mean < y.max() + 200))  # in y's units
    dist = reg.predict_distribution(X[70:])  # float32 probabilities: 7 digits
    np.testing.assert_allclose(dist.mean(), mean, rtol=1e-5)
    np.testing.assert_allclose(dist.median(), q[:, 1], rtol=1e-5)
    np.testing.assert_allclose(dist.probs.sum(1), 1, rtol=1e-5)
    assert np.isfinite(dist.log_prob(y[70:])).all()
    median = PFNRegressor(**FAST, output="median").fit(X[:70], y[:70]).predict(X[70:])
    np.testing.assert_allclose(median, q[:, 1])
    with pytest.raises(ValueError, match="quantiles"):
        reg.predict_quantiles(X[70:], [0.5, 1.5])


def test_regressor_members_on_different_rows_share_borders():
    X, _ = _data(n=200)
    reg = PFNRegressor(**FAST, max_train_rows=50).fit(X[:150], 5 * X[:150, 0])
    dist = reg.predict_distribution(X[150:])
    np.testing.assert_allclose(dist.probs.sum(1), 1, rtol=1e-5)
    assert dist.borders.shape == (dist.probs.shape[1] + 1,)
    assert np.all(np.diff(dist.borders) > 0)


def test_constant_target():
    X, _ = _data(n=30)
    pred = PFNRegressor(**FAST).fit(X, np.full(30, 7.0)).predict(X[:5])
    assert np.isfinite(pred).all()


# ----- engines --------------------------------------------------------------------------------
@pytest.mark.skipif(not onnx_available(), reason="shipped ONNX graphs or onnxruntime missing")
def test_onnx_engine_matches_torch_engine():
    X, y = _data()
    for cls, target in ((PFNClassifier, y), (PFNRegressor, X[:, 1] * 2.0)):
        a = cls(engine="torch", n_estimators=2).fit(X[:60], target[:60])
        b = cls(engine="onnx", n_estimators=2).fit(X[:60], target[:60])
        np.testing.assert_allclose(a.predict(X[60:]), b.predict(X[60:]), rtol=1e-4, atol=1e-4)


def test_auto_engine_choice():
    want = "onnx" if onnx_available() else "torch"
    assert resolve_engine_name("auto") == want  # the shipped graphs by default
    assert resolve_engine_name("auto", "run/model.safetensors") == "torch"
    assert resolve_engine_name("auto", "out/model") == "onnx"
    assert resolve_engine_name("auto", "out/model.classification.onnx") == "onnx"
    assert resolve_engine_name("auto", device="cuda") == "torch"
    assert resolve_engine_name("torch") == "torch"
    with pytest.raises(ValueError, match="engine must be one of"):
        resolve_engine_name("tensorrt")


def test_estimators_import_without_torch():
    code = ("import sys, importlib.abc\n"
            "class NoTorch(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import pfn.estimators, pfn.estimator_base, pfn.routing, pfn.preprocessing, pfn.bar\n"
            "import pfn.engines.onnx_engine\n"
            "from pfn import PFNClassifier, PFNRegressor\n"
            "from pfn.engines import onnx_available\n"
            "import numpy as np\n"
            "if onnx_available():\n"
            "    X = np.random.default_rng(0).normal(size=(40, 3))\n"
            "    p = PFNClassifier(engine='auto', n_estimators=1).fit(X, X[:, 0] > 0)\n"
            "    assert p.predict_proba(X).shape == (40, 2)\n"
            "    PFNRegressor(engine='onnx', n_estimators=1).fit(X, X[:, 0]).predict(X)\n"
            "assert 'torch' not in sys.modules\n")
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_auto_members_are_8_within_one_context_and_4_or_3_with_local_contexts() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(260, 3))
    y = (x[:, 0] > 0).astype(int)
    small = PFNClassifier(engine="torch").fit(x[:100], y[:100])
    large = PFNClassifier(engine="torch", max_train_rows=100).fit(x, y)
    assert (small.n_estimators, small.n_estimators_) == ("auto", 8)
    assert len(small.plan_.members) == 8
    assert (large.n_estimators, large.n_estimators_) == ("auto", 4)
    assert len(large.contexts_.routers) == 4
    reg = PFNRegressor(engine="torch", max_train_rows=100).fit(x, x[:, 0])
    assert reg.n_estimators_ == 3 and len(reg.contexts_.routers) == 3
    fixed = PFNClassifier(engine="torch", n_estimators=3, max_train_rows=100).fit(x, y)
    assert fixed.n_estimators_ == 3 and len(fixed.contexts_.routers) == 3
    for bad in ("many", 0, 2.5, True):
        with pytest.raises(ValueError, match="n_estimators must be 'auto' or an integer"):
            PFNClassifier(n_estimators=bad).fit(x, y)


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_each_estimator_runs_its_tasks_shipped_model(engine):
    from pfn.artifacts import shipped_prefix, weights_path
    from pfn.checkpoint import read_model_file

    x = np.random.default_rng(0).normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(int)
    for est, task in ((PFNClassifier, "classification"), (PFNRegressor, "regression")):
        fitted = est(engine=engine, n_estimators=1).fit(x, y)
        expected = read_model_file(weights_path(shipped_prefix(task))).sha256
        assert fitted.weights_fingerprint_ == expected, task


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_saved_estimator_keeps_its_weights_when_the_shipped_model_changes(engine, tmp_path,
                                                                          monkeypatch):
    """A task's shipped model is replaced (as when a specialist ships): an estimator saved
    before runs the weights it was fitted with while the package still ships them under
    another prefix, and is refused, naming both fingerprints, once it does not."""
    from pfn import artifacts

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int)
    before = PFNClassifier(engine=engine, n_estimators=2).fit(x[:60], y[:60])
    expected = before.predict_proba(x[60:])
    path = before.save(tmp_path / "clf.safetensors")
    monkeypatch.setitem(artifacts.SHIPPED_PREFIXES, "classification", artifacts.DEFAULT_PREFIX)
    fresh = PFNClassifier(engine=engine, n_estimators=2).fit(x[:60], y[:60])
    assert fresh.weights_fingerprint_ != before.weights_fingerprint_  # the new shipped model
    loaded = PFNClassifier.load(path)
    np.testing.assert_allclose(loaded.predict_proba(x[60:]), expected, atol=1e-6)
    loaded.weights_fingerprint_ = "0" * 64  # weights the package no longer ships
    loaded._context = None
    with pytest.raises(ValueError, match="fitted with the weights of fingerprint 0000"):
        loaded.predict(x[60:])
