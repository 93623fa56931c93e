"""Saving fitted estimators: ``save`` / ``load`` (one safetensors file, no pickle) and pickle.

A mixin of :class:`pfn.estimators.PFNClassifier` and :class:`pfn.estimators.PFNRegressor`:
what a fitted estimator holds goes through :mod:`pfn.persistence`, except the engine's
contexts (``_context``), which are rebuilt on first use from the training rows, or loaded
from the engine's cache saved in their place (``include_training_rows=False``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sklearn.utils.validation import check_is_fitted

from pfn.persistence import read_state, write_state


def nested(fn, value):
    """``fn`` applied to every leaf of nested lists (the engine contexts of an estimator:
    [group], or [member][leaf][group] with local contexts)."""
    return [nested(fn, v) for v in value] if isinstance(value, list) else fn(value)


class SavingMixin:
    """``save``, ``load`` and pickling for an estimator with ``_ready_engine`` and
    ``_context``."""

    def save(self, path: str | os.PathLike, include_training_rows: bool = True) -> Path:
        """Write the fitted estimator to one safetensors file (no pickle; see :meth:`load`).

        The file holds the parameters, the fitted attributes, the weights fingerprint and,
        by default, the members' encoded training rows (``x_train_``, ``y_train_``, or
        with local contexts ``contexts_.x`` and ``contexts_.y``).
        ``include_training_rows=False`` stores the engine's cache of them instead (per
        member and layer, the keys and values the test rows attend to), so a deployment
        holds no training rows; the cache is the larger (per row and member 2 x n_layers x
        d_model floats, against one per feature). The per-member transforms stay either way
        (a quantile transform keeps each numeric column's sorted distinct training values),
        and so do the local contexts' routers (split thresholds are training values) and
        the boosted trees of ``boosting_feature`` (thresholds and leaf values).
        """
        check_is_fitted(self, "plan_")
        state = {k: v for k, v in self.__dict__.items() if k != "_context"}
        if not include_training_rows:
            engine = self._ready_engine()
            state["_context_arrays"] = nested(engine.save_context, self._context)
            state.pop("x_train_", None)
            state.pop("y_train_", None)
            if state.get("contexts_") is not None:
                state["contexts_"] = dataclasses.replace(state["contexts_"], x=None, y=None)
        elif "_context_arrays" in state:
            raise ValueError(f"this {type(self).__name__} was loaded without its training "
                             "rows; save it with include_training_rows=False")
        return write_state(path, type(self).__name__, state)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """An estimator written by :meth:`save`, ready to predict with the same weights.

        Loading builds only numpy arrays, plain values and the project's own classes (never
        pickle), and refuses a damaged file, another format, or a file of the other class
        with a ValueError naming the file. Predicting refuses weights other than those it
        was fitted with.
        """
        state = read_state(path, cls.__name__)
        est = cls()
        params = est.get_params(deep=False)
        bad = [k for k in state if not (k in params or k.endswith("_") or k.startswith("_"))
               or k.startswith("__")]
        if bad:
            raise ValueError(f"saved estimator {path} holds attributes {bad} that a "
                             f"{cls.__name__} does not have")
        est.__dict__.update(state)
        est._context = None
        return est

    def __getstate__(self) -> dict:
        """Pickle arrays and parameters only; the engine context is rebuilt on first use,
        after checking that the engine runs the weights the estimator was fitted with."""
        state = self.__dict__.copy()
        state.pop("_context", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._context = None


__all__ = ["SavingMixin", "nested"]
