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
  training rows: each member splits the rows into local contexts of at most
  ``max_train_rows`` rows and routes every test row to its context (:mod:`pfn.contexts`,
  which says why), or, from 2,000 training rows for the classifier and 10,000 for the
  regressor (``context_strategy``), the network reads one context beside a booster fitted
  on the other rows (:mod:`pfn.stacking`); every training row is used either way.
  Contexts are validated against a memory budget (:func:`pfn.contexts.check_memory`).
  1000 rather than 500 although the v1 prior had at most ~460 training rows: measured on
  benchmarks/real_data.py (figures in pfn/weights/MODEL_CARD.md, "Estimator defaults"),
  and fit + predict stays within the 1 s budget. The classifier's network saw datasets of
  up to 1024 rows and gains from 1500 on tables beyond 1000 rows (ROC AUC and log loss,
  at up to 3x the time there); the regressor's loses R² (same section).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from pfn.bar_distribution import BarDistribution
from pfn.categorical import DEFAULT_ENCODING
from pfn.estimator_base import PFNEstimatorBase
from pfn.preprocessing import DEFAULT_TRANSFORMS
from pfn.target_transform import TARGET_TRANSFORMS, TargetTransform, gross_outliers


class PFNClassifier(ClassifierMixin, PFNEstimatorBase):
    """Classifier by in-context learning with the pretrained prior-fitted network.

    Parameters
    ----------
    n_estimators : members whose probabilities are averaged (feature order, label
        permutation and numeric transform differ between them), or "auto" (default): 8
        when the training rows fit one context (``max_train_rows``), 4 beyond (the
        regressor 3), where each member splits them into local contexts. 8: on the real
        datasets 8 members had a better mean log loss than 4 and 16 no better than 8, and
        fit + predict of 1000 training rows x 100 features and 1000 test rows stays within
        1 s on 2 cores (``benchmarks/real_data.py``, variants ``ours_n*``). 4 beyond: each
        local-context member costs a network pass over every training and test row, so
        members cost as much as rows; 2 lost regression accuracy on the large tables
        (``benchmarks/large_tables.py``), where the regressor's 3 were as accurate as 4
        and the classifier's were not. 1 with the stacked strategy (``context_strategy``),
        where 2 measured no better. The number used is ``n_estimators_``.
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
        (:func:`pfn.routing_trial.choose_routing`; the chosen trial member becomes the first
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
    context_strategy : how training sets beyond ``max_train_rows`` rows are read.
        "stacked": the network reads one context of ``max_train_rows`` rows (the
        regressor at most 500) and a booster (scikit-learn's HistGradientBoosting) fitted
        on the other rows gives every row its prediction as a feature; the prediction
        blends the network's and the booster's, with the weight that held-out rows choose
        (:mod:`pfn.stacking` says why). "local": every row goes through the network, in
        local contexts (:mod:`pfn.contexts`). "auto" (default): "stacked" from 2,000
        training rows for the classifier and 10,000 for the regressor, "local" below.
        Measured (``pfn/weights/MODEL_CARD.md``, "Large tables: the stacked strategy" and
        "the classifier stacks from 2,000 rows"): the classifier's two strategies were
        about as accurate from 2,000 rows, "stacked" three to five times faster; the
        regressor's from 13,000 rows, while at 2,000-5,000 its "local" was clearly more
        accurate and takes a few seconds. "stacked" needs the booster (not
        ``boosting_feature=False``, with which "auto" means "local"), and falls back to
        "local", with a warning, with fewer than 20 rows beyond the context, beyond
        ``max_classes`` classes, or where the booster's columns would not fit beside the
        features. The strategy used is
        ``context_strategy_`` (None within one context), the booster's weight
        ``booster_weight_`` (None unless stacked).
    """

    _task = "classification"

    def __init__(self, n_estimators: int | str = "auto", engine: str = "auto",
                 model_path: str | Path | None = None, max_train_rows: int = 1500,
                 test_batch_size: int = 1024, transforms: tuple[str, ...] = DEFAULT_TRANSFORMS,
                 random_state=0, device: str = "cpu", categorical_features="auto",
                 categorical_encoding: str | tuple[str, ...] = DEFAULT_ENCODING,
                 softmax_temperature: float = 0.9, n_jobs: int | None = None,
                 verbose: bool = False, context_routing: str = "auto",
                 boosting_feature: str | bool = "auto", context_strategy: str = "auto") -> None:
        super().__init__(n_estimators=n_estimators, engine=engine, model_path=model_path,
                         max_train_rows=max_train_rows, test_batch_size=test_batch_size,
                         transforms=transforms, random_state=random_state, device=device,
                         categorical_features=categorical_features,
                         categorical_encoding=categorical_encoding, n_jobs=n_jobs,
                         verbose=verbose, context_routing=context_routing,
                         boosting_feature=boosting_feature, context_strategy=context_strategy)
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
        """Class probabilities (n_samples, n_classes), float64, columns in the order of
        ``classes_``; each row sums to 1 to float64 precision. The network computes in
        float32, and members, contexts and blends are averaged on top, so rows summed to 1
        within about 1e-7 only, which scikit-learn's ``log_loss`` flags for float64 input
        ("y_prob values do not sum to one"); they are renormalised here."""
        t = float(self.softmax_temperature)
        chunks = [np.asarray(p, dtype=np.float64) for p in self._engine_outputs(X, t)]
        proba = np.concatenate(chunks)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """The most probable class per row (n_samples,), as a label from ``classes_``."""
        check_is_fitted(self, "plan_")
        return self.classes_[self.predict_proba(X).argmax(1)]


class PFNRegressor(RegressorMixin, PFNEstimatorBase):
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
                 boosting_feature: str | bool = "auto", context_strategy: str = "auto") -> None:
        super().__init__(n_estimators=n_estimators, engine=engine, model_path=model_path,
                         max_train_rows=max_train_rows, test_batch_size=test_batch_size,
                         transforms=transforms, random_state=random_state, device=device,
                         categorical_features=categorical_features,
                         categorical_encoding=categorical_encoding, n_jobs=n_jobs,
                         verbose=verbose, context_routing=context_routing,
                         boosting_feature=boosting_feature, context_strategy=context_strategy)
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
        if kind == "auto":  # the stacked strategy's one context is one context
            local = self._local_contexts(x.shape[0]) and not self._stacked(
                self._get_engine(), x.shape, None, warn=False)
            kind = "power" if local or gross_outliers(y) else "none"
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
        filled chunk by chunk, so memory is that array plus one chunk (and, with the
        stacked strategy, one offset per row; with it and a target transform, borders per
        row: 8 more bytes per bucket and row, where :meth:`iter_distributions` streams).
        """
        n, start = X.shape[0] if hasattr(X, "shape") else len(X), 0
        probs = borders = offset = None
        for dist in self.iter_distributions(X):
            if probs is None:
                probs = np.empty((n, dist.probs.shape[-1]), dtype=np.float32)
                if dist.borders.ndim == 2:  # a target transform after the stacked blend
                    borders = np.empty((n, dist.borders.shape[-1]))
                if dist.offset is not None:  # the stacked blend's move, per row
                    offset = np.empty(n)
            rows = slice(start, start + len(dist.probs))
            probs[rows] = dist.probs
            if borders is not None:
                borders[rows] = dist.borders
            if offset is not None:
                offset[rows] = dist.offset
            start += len(dist.probs)
        return BarDistribution(probs, dist.borders if borders is None else borders, offset)

    def predict(self, X) -> np.ndarray:
        """The ``output`` summary ("mean", "median" or "mode") per row (n_samples,).

        Stacked at booster weight 1, the mean is the booster's prediction whatever the
        network says (the blend moves the distribution onto it), so without a target
        transform it is computed without the network, as the classifier's probabilities
        are; the other summaries and methods still need the network's distribution."""
        check_is_fitted(self, "plan_")
        target = getattr(self, "target_transform_", None)
        if getattr(self, "booster_weight_", None) == 1.0 and self.output == "mean" \
                and (target is None or target.kind == "none"):
            x = self._encode_test(X)
            self._ready_engine()  # refuses other weights, as every prediction does
            return self.booster_.predict(x)[:, 0] * self.y_std_ + self.y_mean_
        return np.concatenate([getattr(d, self.output)() for d in self.iter_distributions(X)])

    def predict_quantiles(self, X, quantiles=(0.05, 0.5, 0.95)) -> np.ndarray:
        """Quantiles (n_samples, len(quantiles)) of the predictive distribution."""
        q = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
        if q.ndim != 1 or not ((q > 0) & (q < 1)).all():
            raise ValueError(f"quantiles must be levels in (0, 1), got {quantiles!r}")
        return np.concatenate([d.quantile(q) for d in self.iter_distributions(X)])
