"""Scoring on Ray: the shipped payload (no pickle) and a local 2-CPU cluster give the
single-process predictions."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
from safetensors import safe_open

from pfn import PFNClassifier, PFNRegressor
from pfn.distributed import from_payload, to_payload
from pfn.persistence import FORMAT, content_sha256


def _table(n=240, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                       "city": rng.choice(["x", "y", "z"], n)})
    df.loc[::11, "a"] = np.nan
    signal = df["b"].to_numpy() + (df["city"] == "x").to_numpy() + np.nan_to_num(df["a"])
    return df, signal


@pytest.mark.parametrize("local", [False, True])
def test_payload_round_trip_predicts_the_same_without_pickle(local, tmp_path):
    df, signal = _table()
    labels = np.where(signal > 0.5, "yes", "no")
    rows = 100 if local else 1000  # 160 training rows: local contexts, or one context
    clf = PFNClassifier(n_estimators=2, max_train_rows=rows).fit(df[:160], labels[:160])
    assert (clf.contexts_ is not None) == local
    data = to_payload(clf)
    (tmp_path / "p.safetensors").write_bytes(data)  # the estimator's save file
    with safe_open(str(tmp_path / "p.safetensors"), framework="np") as fh:
        assert fh.metadata()["format"] == FORMAT
    back = from_payload(data)
    np.testing.assert_array_equal(back.predict_proba(df[160:]), clf.predict_proba(df[160:]))
    assert list(back.classes_) == ["no", "yes"]


def _edited(data: bytes, old: str, new: str) -> bytes:
    """The payload with its JSON state edited (and a matching SHA-256)."""
    tensors = safetensors.numpy.load(data)
    header = int.from_bytes(data[:8], "little")  # safetensors: header size, then JSON
    meta = json.loads(data[8:8 + header])["__metadata__"]
    meta["state"] = meta["state"].replace(old, new)
    meta["sha256"] = content_sha256(meta["state"], tensors)
    return safetensors.numpy.save(tensors, metadata=meta)


def test_payload_rebuilds_only_pfn_classes():
    df, signal = _table()
    data = to_payload(PFNRegressor(n_estimators=1).fit(df[["a", "b"]], signal))
    with pytest.raises(ValueError, match="not a pfn estimator"):
        from_payload(_edited(data, '"PFNRegressor"', '"Popen"'))
    with pytest.raises(ValueError, match="'Popen' is not one a saved estimator holds"):
        from_payload(_edited(data, '"EnsemblePlan"', '"Popen"'))


@pytest.fixture(scope="module")
def ray_cluster():
    # Before Ray is imported: no usage reports, and a single-machine cluster on the
    # loopback address (Ray otherwise binds its processes to the machine's own address).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
                 log_to_driver=False, configure_logging=False)
    except Exception as err:  # Ray gives its node 30 s to start; a starved machine misses it
        pytest.skip(f"the local Ray cluster did not start: {err}")
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield ray
    ray.shutdown()


def test_ray_scoring_equals_single_process(ray_cluster):
    import ray.data

    from pfn.distributed import predict_ray

    df, signal = _table(400)
    train, test = df[:300], df[300:].assign(id=np.arange(100))
    clf = PFNClassifier(n_estimators=2, max_train_rows=100).fit(train, signal[:300] > 0.5)
    reg = PFNRegressor(n_estimators=2).fit(train, signal[:300])
    ds = ray.data.from_pandas(test).repartition(3)
    proba = predict_ray(clf, ds, method="predict_proba", keep=["id"], batch_size=40
                        ).to_pandas().sort_values("id")
    np.testing.assert_array_equal(proba["id"], np.arange(100))
    np.testing.assert_allclose(proba[["proba_False", "proba_True"]].to_numpy(float),
                               clf.predict_proba(test.drop(columns="id")), atol=1e-6)
    quant = predict_ray(reg, ds, method="predict_quantiles", features=["a", "b", "city"],
                        keep=["id"], quantiles=(0.1, 0.9)).to_pandas().sort_values("id")
    np.testing.assert_allclose(quant[["q0.1", "q0.9"]].to_numpy(float),
                               reg.predict_quantiles(test[["a", "b", "city"]], [0.1, 0.9]),
                               rtol=1e-5, atol=1e-6)
