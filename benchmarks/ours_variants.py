"""Variants of our estimators for ``benchmarks/real_data.py``: prediction-side options.

They measure the estimators' defaults with the shipped weights (ONNX engine, the default):
the settings before categorical handling came in, each change, today's defaults, and the
defaults but one option. ``--models ours_before,ours_onehot,ours_onehot_detect,ours_t10,ours``
runs the chain; ``ours_codes*`` get the table as a user with a numpy array passes it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

CLASSIFIER_ONLY = {"softmax_temperature"}  # dropped for the regressor
REGRESSOR_ONLY = {"target_transform"}  # dropped for the classifier
# Before categorical handling: 4 members, only text / category / bool columns categorical
# and coded in the sorted order of their levels, temperature 1.
_BEFORE = {"n_estimators": 4, "categorical_features": None, "categorical_encoding": "ordinal",
           "softmax_temperature": 1.0}
OPTION_VARIANTS: dict[str, dict[str, Any]] = {
    "ours_before": _BEFORE,
    "ours_shuffled": _BEFORE | {"categorical_encoding": "shuffled"},
    "ours_onehot": _BEFORE | {"categorical_encoding": "onehot"},
    "ours_onehot_detect": _BEFORE | {"categorical_encoding": "onehot",
                                     "categorical_features": "auto"},
    # today's defaults but one option
    "ours_nodetect": {"categorical_features": None},
    "ours_mixed": {"categorical_encoding": ("onehot", "shuffled")},
    **{f"ours_n{n}": {"n_estimators": n} for n in (1, 2, 4, 6, 8, 12, 16)},
    **{f"ours_t{round(10 * t):02d}": {"softmax_temperature": t}
       for t in (0.7, 0.8, 0.9, 1.0, 1.1, 1.2)},
    # contexts longer than the pretraining datasets (large tables: fewer, larger leaves)
    **{f"ours_ctx{n}": {"max_train_rows": n} for n in (500, 1500, 2000)},
    # member transforms (numeric columns) other than the default cycle
    "ours_tf_none": {"transforms": ("none",)},
    "ours_tf_nq": {"transforms": ("none", "quantile")},
    "ours_tf_np": {"transforms": ("none", "power")},
    # local contexts routed by a fixed rule instead of the held-out choice ("auto")
    **{f"ours_route_{r}": {"context_routing": r} for r in ("importance", "cells")},
    # the boosted model's out-of-fold prediction as a feature: always, or never
    "ours_boost": {"boosting_feature": True},
    "ours_noboost": {"boosting_feature": False},
    # large tables: one context + a booster on the other rows, blended (pfn.stacking), or
    # local contexts, whatever the size ("auto" chooses by the rows beyond the context)
    "ours_stacked": {"context_strategy": "stacked"},
    "ours_local": {"context_strategy": "local"},
    "ours_stacked_n2": {"context_strategy": "stacked", "n_estimators": 2},
    # cheaper readings of a few thousand rows, measured against the default's time there
    # (model card, "Large tables: what the default's time at 5,000 rows buys")
    "ours_stacked_ctx2500": {"context_strategy": "stacked", "max_train_rows": 2500},
    "ours_local_n2": {"context_strategy": "local", "n_estimators": 2},
    "ours_local_n3": {"context_strategy": "local", "n_estimators": 3},
    "ours_local_noboost": {"context_strategy": "local", "boosting_feature": False},
    "ours_local_plain": {"context_strategy": "local", "boosting_feature": False,
                         "context_routing": "importance"},
    "ours_local_plain_n3": {"context_strategy": "local", "boosting_feature": False,
                            "context_routing": "importance", "n_estimators": 3},
    # regression targets through a Yeo-Johnson transform, or as they are, whatever the size
    "ours_ypower": {"target_transform": "power"},
    "ours_ynone": {"target_transform": "none"},
    # the table as numbers, text columns as integer codes (CodesArray): what a user who
    # encoded a table into a numpy array passes, the case categorical detection is for
    "ours_codes_before": _BEFORE,
    "ours_codes": {},
    # the torch engine on a GPU (benchmarks run on a GPU machine; tests/test_cuda.py checks
    # that it predicts what the CPU does)
    "ours_cuda": {"engine": "torch", "device": "cuda"},
}
# The same options with the weights of a model being considered for shipping
# (``--candidate``): ``ours_cand_nodetect`` is ``ours_nodetect`` on the candidate, so options
# chosen for the shipped weights can be re-measured for new ones in the same run.
OPTION_VARIANTS |= {f"ours_cand_{name[5:]}": {"engine": "torch", "model_path": None} | opts
                    for name, opts in list(OPTION_VARIANTS.items())}
CODES_INPUT = {"ours_codes_before", "ours_codes", "ours_cand_codes_before", "ours_cand_codes"}


class CodesArray:
    """The table as a float numpy array, text / category / bool columns as integer codes in
    sorted order of their values (NaN kept): what a user who encoded a table passes. Rows
    are taken with ``.iloc[rows]`` like a DataFrame's, and come out as numpy arrays, so the
    estimators see no column dtypes."""

    def __init__(self, X: pd.DataFrame) -> None:
        out = X.copy()
        for col in X.columns[[not pd.api.types.is_numeric_dtype(t) or
                              pd.api.types.is_bool_dtype(t) for t in X.dtypes]]:
            codes = pd.Series(pd.Categorical(X[col]).codes, index=X.index).astype(float)
            out[col] = codes.where(codes >= 0)
        self.iloc = out.to_numpy(dtype=float)
