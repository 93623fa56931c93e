"""Scoring beyond one machine: a fitted estimator inside Ray Data (``map_batches``).

Ray rather than Spark: it installs from PyPI alone (``pip install 'tabpfn-lite[ray]'``),
with no Java runtime, and a local cluster (``ray.init(num_cpus=2)``) starts in seconds,
so the same code is tested in CI that runs on a real cluster.

The fitted estimator travels to the workers once, as the bytes of its :meth:`save` file
(:func:`to_payload`: parameters, fitted state and training rows in one safetensors file,
no engine state and no pickle), which ``ray.put`` shares with every worker. Each worker (a
Ray actor) rebuilds the estimator with :func:`from_payload` (the estimators' ``load``,
which builds only the project's own classes and checks the file's SHA-256), encodes the
training rows once with the estimator's engine, and then scores its batches; nothing is
re-fitted per batch or partition. Predictions equal the single-process ones (tested).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from pfn.extras import require
from pfn.persistence import saved_class

METHODS = ("predict", "predict_proba", "predict_quantiles")
ESTIMATORS = ("PFNClassifier", "PFNRegressor")


# ----- the payload: the bytes of the estimator's save file ------------------------------------
def to_payload(estimator) -> bytes:
    """A fitted PFNClassifier / PFNRegressor as the bytes of its ``save`` file."""
    with tempfile.TemporaryDirectory() as tmp:
        return estimator.save(Path(tmp) / "estimator.safetensors").read_bytes()


def from_payload(data: bytes):
    """The estimator of :func:`to_payload`, ready to predict with the weights it was fitted
    with (its engine context is encoded on first use)."""
    import pfn.estimators as estimators

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "estimator.safetensors"
        path.write_bytes(data)
        name = saved_class(path)
        if name not in ESTIMATORS:
            raise ValueError(f"payload holds a {name!r}, not a pfn estimator {ESTIMATORS}")
        return getattr(estimators, name).load(path)


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
        self.est = from_payload(payload).set_params(n_jobs=threads, verbose=False)
        self.method, self.features, self.keep, self.quantiles = method, features, keep, quantiles
        self.est._ready_engine()  # checks the weights, encodes the training rows once

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
