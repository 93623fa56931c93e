"""scikit-learn estimators: ``PFNClassifier`` and ``PFNRegressor``.

``fit`` trains nothing: it validates the data, draws the ensemble members
(:mod:`pfn.preprocessing`) and lets the engine encode their training rows once; ``predict``
reuses that context for any number of test rows, in chunks of ``test_batch_size``. The
module imports without torch, so ``engine="onnx"`` works where torch is not installed.

Limits of the network, handled without errors:

- more than ``max_features`` (100) features: the features are dealt into groups, one per
  member, with at least as many members as groups, so every feature is seen
  (:func:`pfn.preprocessing.draw_feature_sets`);
- more than ``max_classes`` (10) classes: each member sees a random balanced grouping of the
  classes into 10 labels (an error-correcting output code) and members are combined by a
  product of experts; members are added until every pair of classes is told apart by at
  least two of them. Chosen over one-vs-rest because every member still sees all rows and
  all classes in one network call, and the number of calls grows with log(classes), not
  with classes;
- more than ``max_train_rows`` (default 1500 for the classifier, 1000 for the regressor)
  training rows: each member splits the rows
  into local contexts of at most ``max_train_rows`` rows and routes every test row to its
  context (:mod:`pfn.contexts`, which says why), so every training row is used. Contexts
  are validated against a memory budget (:func:`pfn.contexts.check_memory`). 1000 rather
  than 500 although the v1 prior had at most ~460 training rows: measured on
  benchmarks/real_data.py (figures in pfn/weights/MODEL_CARD.md, "Estimator defaults"),
  and fit + predict stays within the 1 s budget. The classifier's network saw datasets of
  up to 1024 rows and gains from 1500 on tables beyond 1000 rows (ROC AUC and log loss,
  at up to 3x the time there); the regressor's loses R² (same section).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from pfn.bar_distribution import BarDistribution
from pfn.boosting import BoostedTrees, fit_boosted_feature
from pfn.categorical import DEFAULT_ENCODING, ENCODINGS
from pfn.contexts import (
    ROUTINGS,
    LocalContexts,
    Route,
    RoutingTrial,
    check_memory,
    choose_routing,
    progress,
    routing_candidates,
)
from pfn.engines import Engine, get_engine, resolve_engine_name, shipped_model
from pfn.preprocessing import (
    DEFAULT_TRANSFORMS,
    TRANSFORMS,
    EnsemblePlan,
    TableEncoder,
    check_table,
)
from pfn.saving import SavingMixin, nested
from pfn.target_transform import TARGET_TRANSFORMS, TargetTransform, gross_outliers

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover
    _validate_data = None


# Members when n_estimators="auto": within one context, and with local contexts.
AUTO_MEMBERS = 8
AUTO_MEMBERS_LOCAL = 4

_ENGINES: dict[tuple, Engine] = {}  # the 4 used last, oldest first
_ENGINES_LOCK = threading.Lock()


def _cached_engine(name: str, model_path: str | None, device: str,
                   n_jobs: int | None = None) -> Engine:
    """Engines are stateless between calls (contexts live in the estimators): share them,
    one per (name, model_path, device, n_jobs), created once even when threads ask at once."""
    key = (name, model_path, device, n_jobs)
    with _ENGINES_LOCK:
        engine = _ENGINES.pop(key, None)
        if engine is None:
            engine = get_engine(name, model_path, device, n_jobs)  # threads: n_jobs
        _ENGINES[key] = engine
        while len(_ENGINES) > 4:
            del _ENGINES[next(iter(_ENGINES))]
        return engine


def _check_names(est: BaseEstimator, X, reset: bool) -> None:
    """Set or check ``n_features_in_`` / ``feature_names_in_`` the scikit-learn way."""
    if _validate_data is not None:
        _validate_data(est, X, skip_check_array=True, reset=reset)
    else:  # pragma: no cover
        est._check_n_features(X, reset=reset)
        est._check_feature_names(X, reset=reset)


class _PFNBase(SavingMixin, BaseEstimator):
    _task = ""

    def __init__(self, n_estimators: int | str = "auto", engine: str = "auto",
                 model_path: str | Path | None = None, max_train_rows: int = 1000,
                 test_batch_size: int = 1024, transforms: tuple[str, ...] = DEFAULT_TRANSFORMS,
                 random_state=0, device: str = "cpu", categorical_features="auto",
                 categorical_encoding: str | tuple[str, ...] = DEFAULT_ENCODING,
                 n_jobs: int | None = None, verbose: bool = False,
                 context_routing: str = "auto", boosting_feature: str | bool = "auto") -> None:
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
        return _cached_engine(name, path, self.device,
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
        levels, self.booster_ = self.encoder_.n_levels, None
        boosted = self._boosted(engine, x, levels, y_net, y_idx, local, seed)
        if boosted is not None and self.boosting_feature is True:
            (x, levels, self.booster_), boosted = boosted, None
        if isinstance(self.n_estimators, str):  # "auto"
            self.n_estimators_ = AUTO_MEMBERS_LOCAL if local else AUTO_MEMBERS
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
            self.plan_ = EnsemblePlan.fit(x, y_idx, levels,
                                          max_train_rows=self.max_train_rows, **draws)
            inputs = self.plan_.train_inputs(x, y_net)  # one (x, y) per group of members
            self.x_train_ = [xg for xg, _ in inputs]
            self.y_train_ = [yg for _, yg in inputs]
        self.__dict__.pop("_context_arrays", None)  # a loaded cache belongs to the old fit
        self._context = self._engine_fit(engine, trial.contexts if reuse else None)
        self.weights_fingerprint_ = engine.weights_fingerprint
        self.boosting_feature_ = self.booster_ is not None

    def _boosted(self, engine, x: np.ndarray, levels: np.ndarray, y_net: np.ndarray,
                 y_idx: np.ndarray | None, local: bool, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, BoostedTrees] | None:
        """The table with :mod:`pfn.boosting`'s feature appended, its levels and the
        booster's trees, where ``boosting_feature`` asks for them (True) or offers them to
        the routing trial ("auto": with local contexts only, and only where the feature
        adds no feature groups and no class groups, where the booster would fit a tree per
        class and round); else None."""
        classes = 0 if y_idx is None else int(y_idx.max()) + 1
        width = 1 if classes <= 2 else classes  # the booster's columns: a value or logits
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
        """The chosen :class:`pfn.contexts.Route` (its table, levels and the routers' split
        probabilities) and its trial member (None where no trial ran); sets
        ``context_routing_`` (the routing used) and ``routing_losses_`` (held-out loss per
        candidate, empty when none was compared). :func:`pfn.contexts.choose_routing` says
        how "auto" chooses. ``boosted``: the table with :mod:`pfn.boosting`'s feature and
        its levels, offered as one more candidate ("boosted", routed like the others).

        The trial member becomes the first member (it was fitted with the same settings),
        so choosing costs one member's fit instead of two; its contexts lack the held-out
        rows (10 %, at most 2000), which every other member uses. Not with one member
        (it would drop those rows) nor with feature groups (members are dealt them
        together)."""
        target, clf = (y_net, False) if y_idx is None else (y_idx, True)
        routes = {name: Route(x, levels, weights) for name, weights in routing_candidates(
            x, target, clf, np.random.default_rng(draws["seed"]), self.context_routing).items()}
        routing = "importance"
        if boosted is not None:
            xb, lb = boosted
            if self.context_routing == "cells" and "cells" in routes:
                routing = "cells"  # never split on the feature: pad with zero weights
                weights = np.concatenate([routes["cells"].weights,
                                          np.zeros(xb.shape[1] - x.shape[1])])
            else:  # routers may split on the feature too (measured: better than not)
                weights = routing_candidates(xb, target, clf,
                                             np.random.default_rng(draws["seed"]),
                                             "importance")["importance"]
            routes["boosted"] = Route(xb, lb, weights)
        member = {k: draws[k] for k in ("max_features", "max_classes", "transforms",
                                        "encodings")}
        # the regressor keeps the feature unless the contexts without it are clearly
        # better, the classifier takes it only where clearly better (pfn.boosting: why)
        default = "boosted" if not clf and "boosted" in routes else "importance"
        name, self.routing_losses_, trial = choose_routing(
            engine, routes, y_net, y_idx, context_rows=self.max_train_rows,
            seed=draws["seed"] + 1, default=default, **member)
        self.context_routing_ = routing if name == "boosted" else name
        return routes[name], trial

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
        check_is_fitted(self, "plan_")
        check_table(X)
        _check_names(self, X, reset=False)
        x = self.encoder_.transform(X)
        engine = self._ready_engine()
        local = getattr(self, "contexts_", None)
        booster = getattr(self, "booster_", None)  # None: saved before it existed
        step = self.test_batch_size if local is None else local.chunk_rows(self.test_batch_size)
        with progress(self.verbose and len(x) > step, -(-len(x) // step), "predict") as bar:
            for start in range(0, len(x), step):
                chunk = x[start:start + step]
                if booster is not None:
                    chunk = np.hstack([chunk, booster.predict(chunk)])
                if local is not None:
                    yield local.predict(engine, self._context, chunk, temperature)
                else:
                    out = self.plan_.network_outputs(engine, self._context, chunk)
                    yield self.plan_.combine_probs(out["probs"], temperature) \
                        if self._task == "classification" \
                        else BarDistribution.mixture(out["logits"], out["borders"])
                if bar is not None:
                    bar.update(1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags


class PFNClassifier(ClassifierMixin, _PFNBase):
    """Classifier by in-context learning with the pretrained prior-fitted network.

    Parameters
    ----------
    n_estimators : members whose probabilities are averaged (feature order, label
        permutation and numeric transform differ between them), or "auto" (default): 8
        when the training rows fit one context (``max_train_rows``), 4 beyond, where each
        member splits them into local contexts. 8: on the real datasets 8 members had a
        better mean log loss than 4 and 16 no better than 8, and fit + predict of 1000
        training rows x 100 features and 1000 test rows stays within 1 s on 2 cores
        (``benchmarks/real_data.py``, variants ``ours_n*``). 4 beyond: each local-context
        member costs a network pass over every training and test row, so members cost as
        much as rows; 2 lost regression accuracy on the large tables
        (``benchmarks/large_tables.py``). The number used is ``n_estimators_``.
    engine : "auto" (ONNX Runtime with the shipped graphs; torch if onnxruntime or the
        graphs are missing, or for a device other than "cpu"), "onnx" or "torch". Both
        encode the training rows once in ``fit``; ``predict`` runs only the test rows.
    model_path : None = the shipped model of the estimator's task (each runs a network
        trained further on its task: ``pfn/weights/MODEL_CARD.md``); a ``.safetensors``
        file (torch) or an ONNX prefix / graph path such as ``out/model`` or
        ``out/model.classification.onnx``.
    max_train_rows : training rows in one context; larger training sets are split into local
        contexts of at most this many rows (every row is used; see :mod:`pfn.contexts`).
        Checked against a memory budget in ``fit``. 1500 for the classifier, 1000 for the
        regressor (measured choices: the module docstring).
    test_batch_size : test rows per network call (bounds memory).
    transforms : numeric transforms cycled over the members: "none", "quantile"
        (quantile-to-normal) and "power" (Yeo-Johnson), fitted on the training rows.
    random_state : None, int, RandomState or Generator; 0 by default so that predictions
        are reproducible (member draws are the only randomness).
    device : torch device for engine="torch".
    categorical_features : which columns hold categories. Text, category and bool columns
        always do. "auto" (default) adds, for input without column dtypes (numpy arrays,
        lists), the numeric columns that look like codes: whole numbers with at most 4
        distinct values in at least 20 training rows; a DataFrame's numeric columns stay
        numbers, its dtypes say which columns are categories
        (:func:`pfn.categorical.looks_categorical` says why). None adds none (integer
        columns stay numbers: pass it where small integers are scores or counts whose
        order matters); a list of column indices, a list of column names (DataFrame
        input) or a boolean mask adds those. The resolved mask is
        ``categorical_features_``.
    categorical_encoding : how members feed categorical columns to the network, one name
        for every member or a sequence cycled over them: "onehot" (default; an indicator
        per level for columns of 3 to 16 levels, as far as the network's 100 features
        allow, the other columns as shuffled codes), "shuffled" (codes in a random order
        per member, the form the network was pretrained on) or "ordinal" (codes in the
        sorted order of the levels). One-hot and shuffled codes start from an order of
        the levels that does not depend on their names, so renaming categories changes
        no prediction. "onehot" was chosen on the real datasets against the others and a
        one-hot / shuffled cycle (``benchmarks/real_data.py``, ``ours_*`` variants).
    softmax_temperature : each member's logits are divided by it before the members'
        probabilities are averaged: above 1 flattens the probabilities, below 1 sharpens
        them. 0.9: averaging members that see the table differently flattens the
        ensemble a little, and on the real datasets 0.9 gave a better mean log loss than
        1.0 with the shipped weights (variants ``ours_t*``; re-measure for new weights).
    n_jobs : threads of either engine per call; None = all cores.
    verbose : a progress bar (tqdm) over contexts in ``fit`` and chunks in ``predict``.
    context_routing : with local contexts, which columns the members' routers split on:
        "importance" (every column, drawn by importance), "cells" (only the discrete
        columns, of at most 64 distinct values, whose combinations predict the target:
        a date's month and day, a store and a product, so that a context holds the rows
        that share them), or "auto" (default): "cells" where one held-out member shows it
        clearly better than "importance", else "importance"
        (:func:`pfn.contexts.choose_routing`; the chosen trial member becomes the first
        member, so choosing costs about 10 % of the fit + predict time). The routing used
        is ``context_routing_`` (None with one context), the held-out losses
        ``routing_losses_``.
    boosting_feature : whether the members see one more feature: a gradient-boosted
        model's prediction for the row (scikit-learn's HistGradientBoosting, defaults),
        fitted on every training row, out of fold for the training rows
        (:mod:`pfn.boosting` says why): a context of ``max_train_rows`` rows then knows
        what the whole table says about a row, where local contexts alone estimate each
        item's or each combination's effect from a fraction of its rows. "auto"
        (default): with local contexts only, as one more candidate ("boosted") of the
        held-out trial that chooses the routing; the regressor keeps it unless the
        contexts without it are clearly better there, the classifier takes it only where
        it is clearly better (measured: the module says why). True: always, also within
        one context; False: never. Whether it is used is ``boosting_feature_``, the trees
        ``booster_``. It costs about 1.3x the fit + predict time on large tables.
    """

    _task = "classification"

    def __init__(self, n_estimators: int | str = "auto", engine: str = "auto",
                 model_path: str | Path | None = None, max_train_rows: int = 1500,
                 test_batch_size: int = 1024, transforms: tuple[str, ...] = DEFAULT_TRANSFORMS,
                 random_state=0, device: str = "cpu", categorical_features="auto",
                 categorical_encoding: str | tuple[str, ...] = DEFAULT_ENCODING,
                 softmax_temperature: float = 0.9, n_jobs: int | None = None,
                 verbose: bool = False, context_routing: str = "auto",
                 boosting_feature: str | bool = "auto") -> None:
        super().__init__(n_estimators=n_estimators, engine=engine, model_path=model_path,
                         max_train_rows=max_train_rows, test_batch_size=test_batch_size,
                         transforms=transforms, random_state=random_state, device=device,
                         categorical_features=categorical_features,
                         categorical_encoding=categorical_encoding, n_jobs=n_jobs,
                         verbose=verbose, context_routing=context_routing,
                         boosting_feature=boosting_feature)
        self.softmax_temperature = softmax_temperature

    def fit(self, X, y) -> PFNClassifier:
        self._check_params()
        t = self.softmax_temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) \
                or not np.isfinite(t) or t <= 0:
            raise ValueError(f"softmax_temperature must be a finite number > 0, got {t!r}")
        y = self._check_y(y, None)
        check_classification_targets(y)
        x = self._encode_train(X, y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has only 1 class ({self.classes_[0]!r}); need at least 2 "
                             "classes")
        self._fit_common(x, y_idx, y_idx)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        t = float(self.softmax_temperature)
        return np.concatenate(list(self._engine_outputs(X, t)))

    def predict(self, X) -> np.ndarray:
        """The most probable class per row (n_samples,), as a label from ``classes_``."""
        check_is_fitted(self, "plan_")
        return self.classes_[self.predict_proba(X).argmax(1)]


class PFNRegressor(RegressorMixin, _PFNBase):
    """Regressor by in-context learning; predicts a bar distribution per row.

    Parameters are those of :class:`PFNClassifier` (but ``softmax_temperature``), plus
    ``output``: which summary of the
    predictive distribution ``predict`` returns, "mean" (minimises squared error), "median"
    (absolute error) or "mode"; and ``target_transform``: "power" (a Yeo-Johnson transform
    fitted on the training targets; the predictive distribution is mapped back, each
    bucket's mass exactly: :mod:`pfn.target_transform`), "none", or "auto" (default):
    "power" when the training rows are split into local contexts (beyond
    ``max_train_rows``) or when a few gross outliers dominate the targets' spread
    (:func:`pfn.target_transform.gross_outliers`), "none" otherwise, as measured there
    (that module says why). The kind used is ``target_transform_.kind``. Targets are
    standardised before the network sees them.
    Members' distributions are averaged as mixtures, bucket by bucket, after mapping them
    to common borders (they differ only when members see different training rows).
    ``predict_distribution`` returns a :class:`BarDistribution` (bucket probabilities and
    borders, with ``mean``, ``median``, ``mode``, ``quantile`` and ``log_prob``).
    """

    _task = "regression"

    def __init__(self, n_estimators: int | str = "auto", engine: str = "auto",
                 model_path: str | Path | None = None, max_train_rows: int = 1000,
                 test_batch_size: int = 1024, transforms: tuple[str, ...] = DEFAULT_TRANSFORMS,
                 random_state=0, device: str = "cpu", output: str = "mean",
                 categorical_features="auto",
                 categorical_encoding: str | tuple[str, ...] = DEFAULT_ENCODING,
                 n_jobs: int | None = None, verbose: bool = False,
                 target_transform: str = "auto", context_routing: str = "auto",
                 boosting_feature: str | bool = "auto") -> None:
        super().__init__(n_estimators=n_estimators, engine=engine, model_path=model_path,
                         max_train_rows=max_train_rows, test_batch_size=test_batch_size,
                         transforms=transforms, random_state=random_state, device=device,
                         categorical_features=categorical_features,
                         categorical_encoding=categorical_encoding, n_jobs=n_jobs,
                         verbose=verbose, context_routing=context_routing,
                         boosting_feature=boosting_feature)
        self.output = output
        self.target_transform = target_transform

    def fit(self, X, y) -> PFNRegressor:
        self._check_params()
        if self.output not in ("mean", "median", "mode"):
            raise ValueError(f"output must be 'mean', 'median' or 'mode', got {self.output!r}")
        if not (isinstance(self.target_transform, str)
                and self.target_transform in TARGET_TRANSFORMS):
            raise ValueError(f"target_transform must be one of {TARGET_TRANSFORMS}, got "
                             f"{self.target_transform!r}")
        y = self._check_y(y, np.float64)
        x = self._encode_train(X, y)
        kind = self.target_transform
        if kind == "auto":
            kind = "power" if self._local_contexts(x.shape[0]) or gross_outliers(y) \
                else "none"
        self.target_transform_ = TargetTransform(kind).fit(y)
        t = self.target_transform_.forward(y)  # what the network sees, then standardised:
        self.y_mean_ = float(t.mean())  # y_mean_ ... y_max_ describe t
        std = float(t.std())
        self.y_std_ = std if std > 0 else 1.0
        self.y_min_, self.y_max_ = float(t.min()), float(t.max())
        self._fit_common(x, (t - self.y_mean_) / self.y_std_, None)
        return self

    def iter_distributions(self, X):
        """Yield the predictive distributions of successive chunks of ``test_batch_size`` rows.

        Memory stays bounded whatever the number of rows (each row's distribution has K
        buckets); :meth:`predict` and :meth:`predict_quantiles` reduce chunk by chunk.
        """
        target = getattr(self, "target_transform_", None)  # None: saved before it existed
        for dist in self._engine_outputs(X):
            dist = dist.affine(self.y_std_, self.y_mean_).clip_tails(self.y_min_, self.y_max_,
                                                                     self.y_std_)
            yield dist if target is None or target.kind == "none" else dist.warp(target.inverse)

    def predict_distribution(self, X) -> BarDistribution:
        """The ensemble's predictive distribution for every row, in the units of y.

        Bucket probabilities are kept as float32 (4 bytes x n_buckets per row; float32
        holds a probability to 7 significant digits, far below the model's own error), and
        filled chunk by chunk, so memory is that array plus one chunk.
        """
        n, probs, start = X.shape[0] if hasattr(X, "shape") else len(X), None, 0
        for dist in self.iter_distributions(X):
            if probs is None:
                probs = np.empty((n, dist.probs.shape[-1]), dtype=np.float32)
            probs[start:start + len(dist.probs)] = dist.probs
            start += len(dist.probs)
        return BarDistribution(probs, dist.borders)

    def predict(self, X) -> np.ndarray:
        """The ``output`` summary ("mean", "median" or "mode") per row (n_samples,)."""
        check_is_fitted(self, "plan_")
        return np.concatenate([getattr(d, self.output)() for d in self.iter_distributions(X)])

    def predict_quantiles(self, X, quantiles=(0.05, 0.5, 0.95)) -> np.ndarray:
        """Quantiles (n_samples, len(quantiles)) of the predictive distribution."""
        q = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
        if q.ndim != 1 or not ((q > 0) & (q < 1)).all():
            raise ValueError(f"quantiles must be levels in (0, 1), got {quantiles!r}")
        return np.concatenate([d.quantile(q) for d in self.iter_distributions(X)])
