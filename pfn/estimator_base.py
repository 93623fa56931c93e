"""What :class:`pfn.estimators.PFNClassifier` and :class:`pfn.estimators.PFNRegressor`
share: parameter checks, the engines they borrow, encoding the training rows, planning one
context or local contexts (with the routing trial and the boosting feature of large
tables), and running the engine over test rows in chunks.

Kept apart from the estimators so that their module reads as the public face: parameters,
``fit`` and the prediction methods of each task.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from pfn.bar_distribution import BarDistribution
from pfn.boosting import BoostedTrees, fit_boosted_feature, output_width
from pfn.categorical import DEFAULT_ENCODING, ENCODINGS
from pfn.contexts import LocalContexts, check_memory, progress
from pfn.engines import Engine, resolve_engine_name, shared_engine, shipped_model
from pfn.preprocessing import (
    DEFAULT_TRANSFORMS,
    TRANSFORMS,
    EnsemblePlan,
    TableEncoder,
    check_table,
)
from pfn.routing import ROUTINGS
from pfn.routing_trial import Route, RoutingTrial, trial_routing
from pfn.saving import SavingMixin, nested
from pfn.stacking import (
    AUTO_ROWS,
    REGRESSION_CONTEXT_ROWS,
    STRATEGIES,
    blend,
    booster_probs,
    choose_weight,
    fit_stacked_booster,
    network_view,
    refusal,
    split_rows,
)

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover
    _validate_data = None


# Members when n_estimators="auto": within one context, with local contexts (per task),
# and with the stacked strategy's one context (whose members cost a network pass per test
# row each). The regressor's local contexts take 3: on the four large regression tables
# capped at 2,000 and 5,000 training rows (5 splits) 3 members gave the mean R² of 4
# (0.408, 0.422) at 0.8x the time (model card, "Large tables: the regressor's time"); the
# classifier's lost ROC AUC with 3 (taxi 0.603 against 0.609).
AUTO_MEMBERS = 8
AUTO_MEMBERS_LOCAL = {"classification": 4, "regression": 3}
AUTO_MEMBERS_STACKED = 1

def _check_names(est: BaseEstimator, X, reset: bool) -> None:
    """Set or check ``n_features_in_`` / ``feature_names_in_`` the scikit-learn way."""
    if _validate_data is not None:
        _validate_data(est, X, skip_check_array=True, reset=reset)
    else:  # pragma: no cover
        est._check_n_features(X, reset=reset)
        est._check_feature_names(X, reset=reset)


class PFNEstimatorBase(SavingMixin, BaseEstimator):
    _task = ""

    def __init__(self, n_estimators: int | str = "auto", engine: str = "auto",
                 model_path: str | Path | None = None, max_train_rows: int = 1000,
                 test_batch_size: int = 1024, transforms: tuple[str, ...] = DEFAULT_TRANSFORMS,
                 random_state=0, device: str = "cpu", categorical_features="auto",
                 categorical_encoding: str | tuple[str, ...] = DEFAULT_ENCODING,
                 n_jobs: int | None = None, verbose: bool = False,
                 context_routing: str = "auto", boosting_feature: str | bool = "auto",
                 context_strategy: str = "auto") -> None:
        self.n_estimators = n_estimators
        self.engine = engine
        self.model_path = model_path
        self.max_train_rows = max_train_rows
        self.test_batch_size = test_batch_size
        self.transforms = transforms
        self.random_state = random_state
        self.device = device
        self.categorical_features = categorical_features
        self.categorical_encoding = categorical_encoding
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.context_routing = context_routing
        self.boosting_feature = boosting_feature
        self.context_strategy = context_strategy

    # ----- shared machinery -----------------------------------------------------------------
    def _check_params(self) -> None:
        if not (isinstance(self.n_estimators, str) and self.n_estimators == "auto"):
            value = self.n_estimators
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"n_estimators must be 'auto' or an integer >= 1, got "
                                 f"{value!r}")
        for name in ("max_train_rows", "test_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.max_train_rows < 2:
            raise ValueError(f"max_train_rows must be >= 2, got {self.max_train_rows!r}")
        transforms = (self.transforms,) if isinstance(self.transforms, str) else self.transforms
        if not transforms or any(t not in TRANSFORMS for t in transforms):
            raise ValueError(f"transforms must be a non-empty sequence of {TRANSFORMS}, got "
                             f"{self.transforms!r}")
        try:
            encodings = self._encodings()
        except TypeError:  # not a sequence
            encodings = ()
        if not encodings or any(e not in ENCODINGS for e in encodings):
            raise ValueError(f"categorical_encoding must be one of {ENCODINGS} or a non-empty "
                             f"sequence of them, got {self.categorical_encoding!r}")
        if not (isinstance(self.context_routing, str) and self.context_routing in ROUTINGS):
            raise ValueError(f"context_routing must be one of {ROUTINGS}, got "
                             f"{self.context_routing!r}")
        if not (self.boosting_feature is True or self.boosting_feature is False
                or (isinstance(self.boosting_feature, str) and self.boosting_feature == "auto")):
            raise ValueError(f"boosting_feature must be 'auto', True or False, got "
                             f"{self.boosting_feature!r}")
        if not (isinstance(self.context_strategy, str) and self.context_strategy in STRATEGIES):
            raise ValueError(f"context_strategy must be one of {STRATEGIES}, got "
                             f"{self.context_strategy!r}")
        if self.context_strategy == "stacked" and self.boosting_feature is False:
            raise ValueError("context_strategy='stacked' reads most training rows through a "
                             "booster, which boosting_feature=False rules out: pass "
                             "boosting_feature='auto' or context_strategy='local'")
        resolve_engine_name(self.engine, self.model_path, self.device)  # validates the name
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool) or not isinstance(
                self.n_jobs, (int, np.integer)) or self.n_jobs < 1):
            raise ValueError(f"n_jobs must be None (all cores) or an integer >= 1, got "
                             f"{self.n_jobs!r}")

    def _encodings(self) -> tuple:
        enc = self.categorical_encoding
        return (enc,) if isinstance(enc, str) else tuple(enc)

    def _get_engine(self):
        name = resolve_engine_name(self.engine, self.model_path, self.device)
        fitted = getattr(self, "weights_fingerprint_", None)  # None before fit
        path = str(shipped_model(self._task, name, fitted) if self.model_path is None
                   else self.model_path)
        return shared_engine(name, path, self.device,
                              None if self.n_jobs is None else int(self.n_jobs))

    def _check_y(self, y, dtype) -> np.ndarray:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        return column_or_1d(check_array(y, ensure_2d=False, dtype=dtype, input_name="y"),
                            warn=True)

    def _encode_train(self, X, y: np.ndarray) -> np.ndarray:
        """Validate and encode training X; sets ``encoder_`` and the feature attributes."""
        self.encoder_ = TableEncoder().fit(X, self.categorical_features)
        self.categorical_features_ = self.encoder_.categorical_mask
        x = self.encoder_.transform(X)
        _check_names(self, X, reset=True)
        if len(y) != x.shape[0]:
            raise ValueError(f"X and y have inconsistent numbers of samples: X has "
                             f"{x.shape[0]}, y has {len(y)}")
        return x

    def _fit_common(self, x: np.ndarray, y_net: np.ndarray, y_idx: np.ndarray | None) -> None:
        """Draw members (local contexts beyond ``max_train_rows`` rows), and let the engine
        encode their training rows."""
        if x.shape[0] < 2:
            raise ValueError(f"need at least 2 training rows, got n_samples = {x.shape[0]} "
                             "(1 sample)")
        engine = self._get_engine()
        if isinstance(self.random_state, np.random.Generator):
            seed = int(self.random_state.integers(2**31 - 1))
        else:
            seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        transforms = (self.transforms,) if isinstance(self.transforms, str) else self.transforms
        check_memory(engine, self.max_train_rows, self.test_batch_size)
        local = self._local_contexts(x.shape[0])
        stacked = local and self._stacked(engine, x.shape, y_idx)
        local = local and not stacked
        self.context_strategy_ = "stacked" if stacked else "local" if local else None
        levels, self.booster_, self.booster_weight_ = self.encoder_.n_levels, None, None
        boosted = None if stacked else self._boosted(engine, x, levels, y_net, y_idx, local,
                                                     seed)
        if boosted is not None and self.boosting_feature is True:
            (x, levels, self.booster_), boosted = boosted, None
        if isinstance(self.n_estimators, str):  # "auto"
            self.n_estimators_ = AUTO_MEMBERS_STACKED if stacked else \
                AUTO_MEMBERS_LOCAL[self._task] if local else AUTO_MEMBERS
        else:
            self.n_estimators_ = int(self.n_estimators)
        draws = dict(n_estimators=self.n_estimators_, max_features=engine.max_features,
                     max_classes=engine.max_classes, transforms=tuple(transforms),
                     encodings=self._encodings(), seed=seed)
        if local:
            self.plan_, self.x_train_, self.y_train_ = None, None, None
            route, trial = self._routing(engine, x, levels, y_net, y_idx, draws,
                                         None if boosted is None else boosted[:2])
            if route.x is not x:  # the held-out trial chose the boosting feature
                x, levels, self.booster_ = boosted
            reuse = trial is not None and self.n_estimators_ > 1 \
                and x.shape[1] <= engine.max_features  # feature groups: every member drawn
            self.contexts_ = LocalContexts.fit(
                x, y_net, y_idx, levels, context_rows=self.max_train_rows,
                weights=route.weights, **draws | dict(n_estimators=self.n_estimators_ - reuse),
                first_member=int(reuse))
            if reuse:
                self.contexts_ = self.contexts_.prepend(trial)
        else:
            trial = reuse = None
            self.context_routing_, self.routing_losses_ = None, {}
            self.contexts_ = None
            n_classes = None if y_idx is None else int(y_idx.max()) + 1
            if stacked:  # one context of the rows split_rows gives it, the booster's column
                split = split_rows(x.shape[0], self._stacked_context_rows(), y_idx,
                                   np.random.default_rng(seed))
                target = y_net if y_idx is None else y_idx
                self.booster_, raw, raw_held = fit_stacked_booster(
                    x, target, split, y_idx is not None, seed, self.n_jobs)
                held = (np.hstack([x[split.held], raw_held]), target[split.held])
                levels = np.concatenate([levels, np.zeros(raw.shape[1], levels.dtype)])
                x, y_net = np.hstack([x[split.context], raw]), y_net[split.context]
                y_idx = None if y_idx is None else y_idx[split.context]
            self.plan_ = EnsemblePlan.fit(x, y_idx, levels, max_train_rows=self.max_train_rows,
                                          **draws, n_classes=n_classes)
            inputs = self.plan_.train_inputs(x, y_net)  # one (x, y) per group of members
            self.x_train_ = [xg for xg, _ in inputs]
            self.y_train_ = [yg for _, yg in inputs]
        self.__dict__.pop("_context_arrays", None)  # a loaded cache belongs to the old fit
        self._context = self._engine_fit(engine, trial.contexts if reuse else None)
        self.weights_fingerprint_ = engine.weights_fingerprint
        self.boosting_feature_ = self.booster_ is not None
        if stacked:  # the booster's weight, chosen on the held-out rows (pfn.stacking)
            x_held, y_held = held
            self.booster_weight_ = choose_weight(
                self._network_view(engine, x_held, self._temperature()),
                x_held[:, -self.booster_.n_outputs:], y_held)

    def _stacked(self, engine, shape: tuple[int, int], y_idx: np.ndarray | None,
                 warn: bool = True) -> bool:
        """Whether a fit of ``shape`` (rows, features) beyond ``max_train_rows`` rows takes
        the stacked strategy: "stacked", or "auto" with AUTO_ROWS[task] training rows or more,
        and :func:`pfn.stacking.refusal` finds no reason against it; else
        local contexts (with a warning saying why where "stacked" was asked for)."""
        if self.context_strategy == "local" or self.boosting_feature is False:
            return False
        context = self._stacked_context_rows()
        why = refusal(shape, 0 if y_idx is None else int(y_idx.max()) + 1, context,
                      engine.max_features, engine.max_classes)
        if self.context_strategy == "auto":
            return why is None and shape[0] >= AUTO_ROWS[self._task]
        if why is not None and warn:
            warnings.warn(f"context_strategy='stacked' needs {why}; using local contexts "
                          "(context_strategy_='local')", UserWarning, stacklevel=4)
        return why is None

    def _stacked_context_rows(self) -> int:
        """Rows of the stacked strategy's context: ``max_train_rows``, and for the
        regressor at most REGRESSION_CONTEXT_ROWS (:mod:`pfn.stacking`)."""
        if self._task == "regression":
            return min(self.max_train_rows, REGRESSION_CONTEXT_ROWS)
        return self.max_train_rows

    def _network_view(self, engine, x: np.ndarray, temperature: float):
        """:func:`pfn.stacking.network_view` of this fit's one context; a regressor's tails
        are clipped to its training targets' range, in the standardised space."""
        clip = None if self._task == "classification" else tuple(
            (v - self.y_mean_) / self.y_std_ for v in (self.y_min_, self.y_max_))
        return network_view(self.plan_, engine, self._context, x, temperature, clip)

    def _temperature(self) -> float:
        return float(getattr(self, "softmax_temperature", 1.0))

    def _boosted(self, engine, x: np.ndarray, levels: np.ndarray, y_net: np.ndarray,
                 y_idx: np.ndarray | None, local: bool, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, BoostedTrees] | None:
        """The table with :mod:`pfn.boosting`'s feature appended, its levels and the
        booster's trees, where ``boosting_feature`` asks for them (True) or offers them to
        the routing trial ("auto": with local contexts only, and only where the feature
        adds no feature groups and no class groups, where the booster would fit a tree per
        class and round); else None."""
        classes = 0 if y_idx is None else int(y_idx.max()) + 1
        width = output_width(classes)
        offer = self.boosting_feature == "auto" and local and classes <= engine.max_classes \
            and x.shape[1] + width <= engine.max_features
        if not (self.boosting_feature is True or offer):
            return None
        feature, trees = fit_boosted_feature(x, y_net if y_idx is None else y_idx,
                                             y_idx is not None, seed, self.n_jobs)
        return (np.hstack([x, feature]),
                np.concatenate([levels, np.zeros(feature.shape[1], levels.dtype)]), trees)

    def _routing(self, engine, x: np.ndarray, levels: np.ndarray, y_net: np.ndarray,
                 y_idx: np.ndarray | None, draws: dict,
                 boosted: tuple[np.ndarray, np.ndarray] | None
                 ) -> tuple[Route, RoutingTrial | None]:
        """:func:`pfn.routing_trial.trial_routing`'s route and trial member; sets
        ``context_routing_`` (the routing used) and ``routing_losses_`` (held-out loss per
        candidate, empty when none was compared).

        The trial member becomes the first member (it was fitted with the same settings),
        so choosing costs one member's fit instead of two; its contexts lack the held-out
        rows (10 %, at most 2000), which every other member uses. Not with one member
        (it would drop those rows) nor with feature groups (members are dealt them
        together)."""
        self.context_routing_, self.routing_losses_, route, trial = trial_routing(
            engine, x, levels, y_net, y_idx, draws, boosted, self.context_routing,
            self.max_train_rows)
        return route, trial

    def _local_contexts(self, n_rows: int) -> bool:
        """Whether ``n_rows`` training rows are split into local contexts."""
        return n_rows > self.max_train_rows

    def _engine_fit(self, engine, encoded: list | None = None) -> list:
        """The engine's contexts: one per group of members (members of equal input width);
        with local contexts, [member][leaf][group], after the first members' ``encoded``."""
        local = getattr(self, "contexts_", None)
        if local is not None:
            done = sum(len(p) for p in local.plans[:len(encoded or [])])
            with progress(self.verbose, local.n_contexts - done, "fit contexts") as bar:
                return local.encode(engine, bar, encoded)
        return [engine.fit(xg, yg, self._task)
                for xg, yg in zip(self.x_train_, self.y_train_, strict=True)]

    def _ready_engine(self) -> Engine:
        """The engine, once it is known to run the weights this estimator was fitted with,
        and the training rows' contexts (rebuilt after unpickling or loading)."""
        engine = self._get_engine()
        fitted = getattr(self, "weights_fingerprint_", None)
        if engine.weights_fingerprint != fitted:
            raise ValueError(
                f"this {type(self).__name__} was fitted with the weights of fingerprint "
                f"{fitted or 'unrecorded (fitted before fingerprints were recorded)'}, but "
                f"engine={self.engine!r} with model_path={self.model_path!r} runs the weights "
                f"of fingerprint {engine.weights_fingerprint}; refit it, or install the "
                "weights it was fitted with")
        if getattr(self, "_context", None) is None:  # after unpickling or loading
            arrays = getattr(self, "_context_arrays", None)
            self._context = self._engine_fit(engine) if arrays is None \
                else nested(lambda a: engine.load_context(a, self._task), arrays)
        return engine

    def _engine_outputs(self, X, temperature: float = 1.0):
        """Yield the ensemble's combined predictions for successive chunks of test rows.

        Classification: probabilities (t, n_classes), each member's logits divided by
        ``temperature`` first; regression: a :class:`BarDistribution` in the standardised
        target space. Chunks hold ``test_batch_size`` rows (several times that with local
        contexts, so that each context gets a useful batch).
        """
        x = self._encode_test(X)
        engine = self._ready_engine()
        local = getattr(self, "contexts_", None)
        booster = getattr(self, "booster_", None)  # None: saved before it existed
        w = getattr(self, "booster_weight_", None)  # None: not stacked
        step = self.test_batch_size if local is None else local.chunk_rows(self.test_batch_size)
        # the booster's columns for every row at once: its trees are walked one at a time,
        # which pays per call (small arrays, (n, 1 or classes))
        boost = None if booster is None else booster.predict(x)
        with progress(self.verbose and len(x) > step, -(-len(x) // step), "predict") as bar:
            for start in range(0, len(x), step):
                chunk = x[start:start + step]
                if boost is not None:
                    chunk = np.hstack([chunk, boost[start:start + step]])
                if local is not None:
                    yield local.predict(engine, self._context, chunk, temperature)
                elif w is not None:  # stacked: at weight 1 a classifier skips the network
                    raw = chunk[:, -booster.n_outputs:]
                    yield booster_probs(raw) if w == 1.0 and self._task == "classification" \
                        else blend(self._network_view(engine, chunk, temperature), raw, w)
                else:
                    out = self.plan_.network_outputs(engine, self._context, chunk)
                    yield self.plan_.combine_probs(out["probs"], temperature) \
                        if self._task == "classification" \
                        else BarDistribution.mixture(out["logits"], out["borders"])
                if bar is not None:
                    bar.update(1)

    def _encode_test(self, X) -> np.ndarray:
        """Validate and encode test X."""
        check_is_fitted(self, "plan_")
        check_table(X)
        _check_names(self, X, reset=False)
        return self.encoder_.transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags
