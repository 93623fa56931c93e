"""The benchmarks' variants of our estimators are valid settings: a misspelt option or value
would otherwise surface only as a failed row in a long benchmark run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import real_data  # noqa: E402

NAMES = sorted(real_data.VARIANTS)  # settings only: nothing is fitted, so no GPU is needed


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("name", NAMES)
def test_variant_is_a_valid_estimator(name: str, task: str) -> None:
    model = real_data.make_model(name, task)
    options = real_data.VARIANTS[name]
    dropped = real_data.REGRESSOR_ONLY if task == "classification" else real_data.CLASSIFIER_ONLY
    params = model.get_params()
    for key, value in options.items():
        if key not in dropped and key != "model_path":
            assert params[key] == value, (name, key)
    model._check_params()
