"""Scoring beyond one machine: a fitted estimator inside Ray Data (``map_batches``).

Ray rather than Spark: it installs from PyPI alone (``pip install 'tabpfn-lite[ray]'``),
with no Java runtime, and a local cluster (``ray.init(num_cpus=2)``) starts in seconds,
so the same code is tested in CI that runs on a real cluster.

The fitted estimator travels to the workers once, compactly and without pickle:
:func:`to_payload` writes its parameters and fitted state as JSON plus numpy arrays in one
``.npz`` blob (the training rows it needs, the members' transforms and routers; no engine
state), which ``ray.put`` shares with every worker. Each worker (a Ray actor) rebuilds the
estimator with :func:`from_payload`, encodes the training rows once with the torch-free
ONNX engine, and then scores its batches; nothing is re-fitted per batch or partition.
Predictions equal the single-process ones (tested).

(The estimators' own ``save``/``load`` can replace the payload functions once they exist.)
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json

import numpy as np

from pfn.extras import require

METHODS = ("predict", "predict_proba", "predict_quantiles")


# ----- the payload: JSON + arrays, no pickle --------------------------------------------------
def _encode(obj, arrays: dict[str, np.ndarray]):
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return {"objects": [_encode(v, arrays) for v in obj.tolist()]}
        arrays[key := f"a{len(arrays)}"] = obj
        return {"array": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        return {"dataclass": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(obj, f.name), arrays)
                           for f in dataclasses.fields(obj) if not f.name.startswith("_")}}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {"dict": {k: _encode(v, arrays) for k, v in obj.items()}}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot ship a value of type {type(obj).__name__} without pickle")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "array" in obj:
        return arrays[obj["array"]]
    if "objects" in obj:
        out = np.empty(len(obj["objects"]), dtype=object)
        out[:] = [_decode(v, arrays) for v in obj["objects"]]
        return out
    if "tuple" in obj:
        return tuple(_decode(v, arrays) for v in obj["tuple"])
    if "dict" in obj:
        return {k: _decode(v, arrays) for k, v in obj["dict"].items()}
    module, name = obj["dataclass"].split(":")
    if module.split(".")[0] != "pfn":  # only this package's own classes are rebuilt
        raise ValueError(f"payload names a class outside pfn: {obj['dataclass']!r}")
    cls = getattr(importlib.import_module(module), name)
    return cls(**{k: _decode(v, arrays) for k, v in obj["fields"].items()})


def to_payload(estimator) -> bytes:
    """A fitted PFNClassifier / PFNRegressor as bytes: JSON manifest + arrays (``.npz``)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "encoder_")
    arrays: dict[str, np.ndarray] = {}
    params = {k: (str(v) if k == "model_path" and v is not None else v)
              for k, v in estimator.get_params().items()}
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a fitted model no longer draws anything
    state = {k: v for k, v in vars(estimator).items() if k.endswith("_") and not
             k.startswith("_")}
    manifest = {"class": type(estimator).__name__, "params": _encode(params, arrays),
                "state": {k: _encode(v, arrays) for k, v in state.items()}}
    buf = io.BytesIO()
    np.savez_compressed(buf, manifest=np.frombuffer(json.dumps(manifest).encode(), np.uint8),
                        **arrays)
    return buf.getvalue()


def from_payload(data: bytes):
    """The estimator of :func:`to_payload`, ready to predict (its engine context is encoded
    on first use)."""
    import pfn.estimators as estimators

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads(arrays.pop("manifest").tobytes())
    if manifest["class"] not in ("PFNClassifier", "PFNRegressor"):
        raise ValueError(f"payload holds a {manifest['class']!r}, not a pfn estimator")
    est = getattr(estimators, manifest["class"])(**_decode(manifest["params"], arrays))
    for key, value in manifest["state"].items():
        setattr(est, key, _decode(value, arrays))
    est._context = None
    return est


# ----- Ray Data ----------------------------------------------------------------------------
def _columns(est, method: str, quantiles) -> list[str]:
    if method == "predict_proba":
        return [f"proba_{c}" for c in est.classes_]
    if method == "predict_quantiles":
        return [f"q{q:g}" for q in quantiles]
    return ["prediction"]


class _Scorer:
    """A Ray actor: rebuilds the estimator once, then scores pandas batches."""

    def __init__(self, payload, method: str, features: list | None, keep: list,
                 quantiles: tuple, threads: int) -> None:
        if not isinstance(payload, bytes):  # the ObjectRef of ray.put, fetched once here
            import ray

            payload = ray.get(payload)
        self.est = from_payload(payload)
        if self.est.model_path is None:
            self.est.set_params(engine="onnx")
        self.est.set_params(n_jobs=threads, verbose=False)
        self.method, self.features, self.keep, self.quantiles = method, features, keep, quantiles
        engine = self.est._get_engine()
        if getattr(self.est, "contexts_", None) is not None:
            self.est.contexts_.encode(engine)
        else:
            self.est._context = engine.fit(self.est.x_train_, self.est.y_train_, self.est._task)

    def __call__(self, batch):
        import pandas as pd

        X = batch[self.features] if self.features is not None else batch.drop(columns=self.keep)
        if self.method == "predict_quantiles":
            out = self.est.predict_quantiles(X, self.quantiles)
        else:
            out = getattr(self.est, self.method)(X)
        out = np.asarray(out).reshape(len(batch), -1)
        frame = pd.DataFrame(out, columns=_columns(self.est, self.method, self.quantiles),
                             index=batch.index)
        return pd.concat([batch[self.keep], frame], axis=1)


def predict_ray(estimator, dataset, *, method: str = "predict", features: list | None = None,
                keep: list | tuple = (), quantiles=(0.05, 0.5, 0.95), batch_size: int = 4096,
                concurrency: int = 1, threads: int = 1):
    """Score a Ray ``Dataset`` with a fitted estimator; returns a lazy ``Dataset``.

    method: "predict", "predict_proba" (columns ``proba_<class>``) or "predict_quantiles"
    (columns ``q<level>``). features: the columns the estimator was fitted on (default:
    every column but ``keep``); keep: columns copied to the output (an id). concurrency:
    workers (actors), each with ``threads`` CPUs. Call ``ray.init`` (or connect to a
    cluster) first.
    """
    require("ray", what="predict_ray")
    import ray

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, value in (("batch_size", batch_size), ("concurrency", concurrency),
                        ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    payload = ray.put(to_payload(estimator))
    return dataset.map_batches(
        _Scorer, fn_constructor_args=(payload, method, None if features is None else
                                      list(features), list(keep), tuple(quantiles), threads),
        batch_format="pandas", batch_size=batch_size, concurrency=concurrency,
        num_cpus=threads)


__all__ = ["predict_ray", "to_payload", "from_payload"]
