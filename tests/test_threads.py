"""Estimators in threads: four fitting and predicting at once give what they give one after
another; the shared engine is created once; fitting touches no global warning filters."""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from test_persistence import make_data, model_path, outputs

from pfn import PFNClassifier, PFNRegressor
from pfn.engines import base as engine_base
from pfn.preprocessing import MemberTransform

JOBS = [(PFNClassifier, "onnx", 0), (PFNRegressor, "onnx", 1), (PFNClassifier, "torch", 2),
        (PFNRegressor, "torch", 3)]


def fit_predict(tiny, cls, engine: str, seed: int, barrier: threading.Barrier | None = None):
    X, y_cls, y_reg = make_data(n=80, seed=seed)
    est = cls(engine=engine, model_path=model_path(tiny, engine), n_estimators=3,
              random_state=seed)
    if barrier is not None:
        barrier.wait()
    est.fit(X[:60], y_cls[:60] if cls is PFNClassifier else y_reg[:60])
    return outputs(est, X[60:])


def test_four_estimators_in_threads_equal_one_after_another(tiny):
    engine_base._SHARED.clear()  # first use happens in the threads
    barrier = threading.Barrier(len(JOBS))
    with ThreadPoolExecutor(len(JOBS)) as pool:
        together = list(pool.map(lambda job: fit_predict(tiny, *job, barrier), JOBS))
    alone = [fit_predict(tiny, *job) for job in JOBS]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_shared_engine_is_created_once(tiny, monkeypatch):
    engine_base._SHARED.clear()
    created = []
    real = engine_base.get_engine

    def slow_get_engine(*args):
        created.append(args)
        time.sleep(0.05)  # widen the window in which a second thread could slip in
        return real(*args)

    monkeypatch.setattr(engine_base, "get_engine", slow_get_engine)
    barrier = threading.Barrier(4)
    est = PFNClassifier(engine="onnx", model_path=model_path(tiny, "onnx"))

    def get(_):
        barrier.wait()
        return est._get_engine()

    with ThreadPoolExecutor(4) as pool:
        engines = list(pool.map(get, range(4)))
    assert len(created) == 1 and all(e is engines[0] for e in engines)


def test_transforms_neither_warn_nor_swap_warning_filters(monkeypatch):
    """numpy warns about all-NaN columns; the transforms avoid the warning rather than
    silence it, because ``warnings.catch_warnings`` swaps a process-wide list of filters
    (another thread's warnings then go astray, or a filter leaks)."""
    swaps = []
    real = warnings.catch_warnings
    monkeypatch.setattr(warnings, "catch_warnings",
                        lambda *args, **kwargs: swaps.append(args) or real(*args, **kwargs))
    warnings.simplefilter("error")  # any warning fails the test (pytest restores the filters)
    x = np.random.default_rng(0).normal(size=(30, 3))
    x[:, 1] = np.nan
    for kind in ("none", "quantile", "power"):
        t = MemberTransform(kind, np.array([True, True, False])).fit(x)
        assert t.center[1] == 0 and t.scale[1] == 1
        z = t.transform(x)
        assert np.isnan(z[:, 1]).all() and np.isfinite(z[:, [0, 2]]).all()
    assert swaps == []
