"""A fitted estimator's table encoding as JSON, for runtimes outside Python.

The graphs take float features and class indices; turning a table into those is done in
:mod:`pfn.preprocessing` (``TableEncoder``) and by ``np.unique`` on the labels. Another
runtime (``examples/node/predict.js``) reproduces it from this description, whose format is
specified in ``export/FORMAT.md`` ("Table encoding"):

    {"format": "tabpfn-lite table encoding", "version": 1,
     "columns": [{"name": "age", "kind": "numeric"},
                 {"name": "plan", "kind": "categorical", "levels": ["basic", "premium"]}],
     "target": {"name": "target", "task": "classification", "classes": ["no", "yes"]}}

A categorical cell's code is the index of its level; missing cells and unseen levels are
NaN. A class label's index is its position in ``classes``.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

FORMAT = "tabpfn-lite table encoding"
VERSION = 1


def _json_value(v):
    """numpy scalars -> Python scalars; anything that JSON cannot hold -> its str."""
    if isinstance(v, np.generic):
        v = v.item()
    return v if isinstance(v, (str, bool, int, float)) or v is None else str(v)


def table_spec(estimator, target: str | None = None) -> dict:
    """The encoding of a fitted ``PFNClassifier`` / ``PFNRegressor`` as a JSON-ready dict.

    Columns are named by ``feature_names_in_`` (a DataFrame's columns), else ``x0, x1, ...``;
    ``target`` names the label column (None: no name).
    """
    check_is_fitted(estimator, "encoder_")
    categories = estimator.encoder_.categories_
    names = getattr(estimator, "feature_names_in_", None)
    names = [f"x{j}" for j in range(len(categories))] if names is None else list(names)
    columns = [{"name": str(name), "kind": "numeric"} if cats is None else
               {"name": str(name), "kind": "categorical",
                "levels": [_json_value(c) for c in cats]}
               for name, cats in zip(names, categories, strict=True)]
    spec_target: dict = {"name": target, "task": estimator._task}
    if hasattr(estimator, "classes_"):
        spec_target["classes"] = [_json_value(c) for c in estimator.classes_]
    return {"format": FORMAT, "version": VERSION, "columns": columns, "target": spec_target}


__all__ = ["table_spec", "FORMAT", "VERSION"]
