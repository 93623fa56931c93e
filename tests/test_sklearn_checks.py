"""The estimators honour the scikit-learn contract: every estimator check passes or is an
expected failure with a written reason."""

from __future__ import annotations

import pytest
import sklearn
from sklearn.utils.estimator_checks import parametrize_with_checks

from pfn import PFNClassifier, PFNRegressor

# Two members and the torch engine (its key/value cache makes tiny fits cheapest); the
# checks call fit a few hundred times.
ESTIMATORS = [PFNClassifier(engine="torch", n_estimators=2),
              PFNRegressor(engine="torch", n_estimators=2)]

# Test rows never attend to each other (tested exactly in tests/test_model.py), but float32
# matrix products may round differently in the last bit when the number of test rows in a
# call changes (BLAS picks blocking by shape); the check demands 1e-7 relative agreement.
_ROUNDING = ("predictions of a subset may differ from the full batch's by ~1e-7 relative: "
             "float32 BLAS rounding depends on the row count of the call")
EXPECTED_FAILED = {
    "PFNClassifier": {"check_methods_subset_invariance": _ROUNDING},
    "PFNRegressor": {"check_methods_subset_invariance": _ROUNDING},
}


def _expected_failed(estimator) -> dict[str, str]:
    return EXPECTED_FAILED[type(estimator).__name__]


if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 6):
    @parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
    def test_sklearn_estimator_checks(estimator, check):
        check(estimator)
else:  # pragma: no cover - older scikit-learn has no expected_failed_checks
    @parametrize_with_checks(ESTIMATORS)
    def test_sklearn_estimator_checks(estimator, check):
        name = getattr(check, "func", check).__name__
        if name in _expected_failed(estimator):
            pytest.xfail(_expected_failed(estimator)[name])
        check(estimator)
