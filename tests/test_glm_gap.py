"""benchmarks/glm_gap.py: the datasets it scores on are what its docstring says (discrete
columns, both classes in each half, the same datasets for every model), and a short run
prints a row per shape and model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import glm_gap  # noqa: E402


def test_datasets_are_discrete_binary_and_reproducible() -> None:
    a = glm_gap.datasets(5, 3, 120, 60, count=4, seed=1)
    b = glm_gap.datasets(5, 3, 120, 60, count=4, seed=1)
    assert len(a) == 4
    for (xtr, ytr, xte, yte), (xtr2, _, _, yte2) in zip(a, b, strict=True):
        assert xtr.shape == (60, 5) and xte.shape == (60, 5)
        assert set(np.unique(xtr)) <= {0.0, 1.0, 2.0}  # codes of 3 levels
        assert set(np.unique(ytr)) == {0, 1} and set(np.unique(yte)) == {0, 1}
        np.testing.assert_array_equal(xtr, xtr2)
        np.testing.assert_array_equal(yte, yte2)


def test_main_prints_a_row_per_shape_and_model(capsys, monkeypatch) -> None:
    monkeypatch.setattr(glm_gap, "SHAPES", (("tiny", 3, 2, 80, 40),))
    glm_gap.main(["--datasets", "2"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| tiny")]
    assert [r.split("|")[2].strip() for r in rows] == ["logreg", "shipped"]
    assert "±" in rows[1]
