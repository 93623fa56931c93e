"""Everything between a user's table and the network, written once for every engine.

Two parts:

- :class:`TableEncoder` validates and converts X (numpy arrays, lists, pandas DataFrames) to a
  float64 matrix: numeric columns as floats, categorical columns (category / object /
  string / bool dtypes, and the numeric columns that ``categorical_features`` names) as
  codes 0..k-1 (categories seen in ``fit``; unseen ones become NaN), NaN kept (the model
  handles it), inf rejected.
- :class:`EnsemblePlan` draws the ensemble members and prepares their inputs. Members differ
  by feature order (a permutation; beyond ``max_features`` the features are dealt into
  groups, one per member, with at least as many members as groups), by
  class-label code (a permutation, or for more classes than the model has a random balanced
  grouping), by training rows (a random subset beyond ``max_train_rows``), by the encoding
  of categorical columns (ordinal, shuffled codes or one-hot: :mod:`pfn.categorical`), and
  by a numeric transform fitted on the training rows only and skipping categorical
  columns: none, quantile-to-normal, or Yeo-Johnson, after squashing outliers
  (:mod:`pfn.transforms`). All draws come from one seed, so a plan is deterministic for a
  given ``random_state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pfn.categorical import (
    CategoryEncoding,
    draw_encoding,
    level_ranks,
    looks_categorical,
    resolve_categorical,
)
from pfn.transforms import DEFAULT_TRANSFORMS, TRANSFORMS, MemberTransform

__all__ = ["DEFAULT_TRANSFORMS", "TRANSFORMS", "EnsemblePlan", "Member", "MemberTransform",
           "TableEncoder", "check_table", "draw_feature_sets"]


# ----- validation and conversion of X ---------------------------------------------------------
def _reject_unsupported(X) -> None:
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError("sparse input is not supported: pass a dense array, e.g. X.toarray() "
                        f"(got {type(X).__name__})")


def _is_frame(X) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc") and hasattr(X, "dtypes")


def _check_shape(n_rows: int, n_cols: int) -> None:
    if n_rows == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape=({n_rows}, {n_cols})) while a "
                         "minimum of 1 is required.")
    if n_cols == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape=({n_rows}, {n_cols})) while a "
                         "minimum of 1 is required.")


def check_table(X) -> None:
    """Raise TypeError/ValueError unless X is a dense, 2-D, non-empty table."""
    _columns(X)


def _columns(X) -> tuple[list, int]:
    """X -> (list of 1-D columns, n_rows); validates type and dimensionality."""
    _reject_unsupported(X)
    if _is_frame(X):
        _check_shape(*X.shape)
        return [col for _, col in X.items()], X.shape[0]
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as err:
        raise ValueError(f"cannot convert X to a 2-D array: {err}") from err
    if arr.ndim != 2:
        raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead (shape "
                         f"{arr.shape}). Reshape your data: X.reshape(-1, 1) for one feature "
                         "or X.reshape(1, -1) for one sample")
    if np.iscomplexobj(arr):
        raise ValueError("Complex data not supported")
    _check_shape(*arr.shape)
    return [arr[:, j] for j in range(arr.shape[1])], arr.shape[0]


def _kind(col) -> str:
    """'numeric' or 'categorical' for a column seen in fit (strings are always categories)."""
    import pandas as pd

    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    present = pd.Series(np.asarray(col, dtype=object)).dropna()
    numbers = all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                  for v in present)
    return "numeric" if numbers else "categorical"


def _to_float(col) -> np.ndarray:
    import pandas as pd

    if hasattr(col, "to_numpy"):
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            return col.to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.asarray(col)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    return pd.to_numeric(pd.Series(arr, dtype=object), errors="coerce").to_numpy(np.float64)


def _sort_key(v) -> tuple:
    return (type(v).__name__, str(v)) if not isinstance(v, (int, float, np.number)) \
        else ("", float(v))


@dataclass
class TableEncoder:
    """Converts tables to float64 matrices; categorical columns become codes 0..k-1.

    Which columns are categorical: text, category and bool columns always (they have no
    numeric value), plus the numeric columns that ``categorical_features`` names (see
    :func:`pfn.categorical.resolve_categorical`). A numeric column's categories are its
    distinct training values; values not seen in ``fit`` become NaN, like unseen text.
    """

    categories_: list = field(default_factory=list)  # per column: None, values or float array
    n_features_: int = 0

    def fit(self, X, categorical_features="auto") -> TableEncoder:
        import pandas as pd

        cols, _ = _columns(X)
        by_dtype = np.array([_kind(col) == "categorical" for col in cols])
        floats = [None if cat else _to_float(col) for col, cat in zip(cols, by_dtype,
                                                                       strict=True)]
        names = list(X.columns) if _is_frame(X) else None
        # A DataFrame says which columns are categories through its dtypes; only a table
        # without dtypes (an array) can hide codes among its numbers.
        rule = np.array([v is not None and names is None and looks_categorical(v)
                         for v in floats])
        mask = resolve_categorical(categorical_features, by_dtype, names, rule)
        self.categories_ = []
        for col, values, cat in zip(cols, floats, mask, strict=True):
            if not cat:
                self.categories_.append(None)
            elif values is not None:  # a numeric column the parameter made categorical
                self.categories_.append(np.unique(values[~np.isnan(values)]))
            elif isinstance(getattr(col, "dtype", None), pd.CategoricalDtype):
                self.categories_.append(list(col.cat.categories))
            else:
                values = pd.Series(np.asarray(col, dtype=object))
                self.categories_.append(sorted(set(values[~values.isna()].tolist()),
                                               key=_sort_key))
        self.n_features_ = len(cols)
        return self

    @property
    def categorical_mask(self) -> np.ndarray:
        """(F,) bool: the categorical columns."""
        return np.array([c is not None for c in self.categories_], dtype=bool)

    @property
    def n_levels(self) -> np.ndarray:
        """(F,) int: levels seen in ``fit`` per column, 0 for numeric columns.

        A categorical column with no value in ``fit`` counts one level (all its codes are
        NaN), so that 0 always means numeric.
        """
        return np.array([0 if c is None else max(len(c), 1) for c in self.categories_],
                        dtype=np.int64)

    def transform(self, X) -> np.ndarray:
        """X -> (n_rows, n_features) float64 with NaN for missing and unseen categories."""
        import pandas as pd

        cols, n = _columns(X)
        if len(cols) != self.n_features_:
            raise ValueError(f"X has {len(cols)} features, but the estimator is expecting "
                             f"{self.n_features_} features as input")
        out = np.empty((n, len(cols)), dtype=np.float64)
        for j, (col, cats) in enumerate(zip(cols, self.categories_, strict=True)):
            if cats is None:
                out[:, j] = _to_float(col)
            elif isinstance(cats, np.ndarray):  # numeric categories: exact matches only
                v = _to_float(col)
                at = np.minimum(np.searchsorted(cats, v), max(cats.size - 1, 0))
                hit = cats.size > 0 and (cats[at] == v)
                out[:, j] = np.where(hit, at, np.where(np.isinf(v), v, np.nan))
            else:
                index = {c: i for i, c in enumerate(cats)}
                values = pd.Series(np.asarray(col, dtype=object))
                out[:, j] = values.map(index).to_numpy(np.float64)  # unseen, missing -> NaN
        if np.isinf(out).any():
            raise ValueError("Input X contains infinity; replace it (NaN is allowed and "
                             "treated as missing)")
        return out


# ----- the ensemble -------------------------------------------------------------------------
@dataclass
class Member:
    features: np.ndarray  # (F',) input columns in the order the network sees them
    rows: np.ndarray  # (N',) training rows
    code: np.ndarray | None  # (n_classes,) class index -> network label, or None (regression)
    transform: MemberTransform  # numeric transform of the input columns (shared, see fit)
    encoding: CategoryEncoding  # then input columns -> network columns

    def inputs(self, x: np.ndarray, transformed: dict | None = None) -> np.ndarray:
        """Input rows x (n, F) -> this member's network columns (n, encoding.width).

        transformed: a cache of ``transform.transform(x)`` by transform, for members that
        share a transform and the same x.
        """
        cache = {} if transformed is None else transformed
        if id(self.transform) not in cache:
            cache[id(self.transform)] = self.transform.transform(x)
        return self.encoding.encode(cache[id(self.transform)])


def _class_codes(n_classes: int, max_classes: int, n_members: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """Per member, class -> network label.

    Up to ``max_classes`` classes: a random permutation. Beyond: a random balanced grouping
    of the classes into ``max_classes`` labels (an error-correcting output code), with members
    added until every pair of classes is told apart by at least two members.
    """
    if n_classes <= max_classes:
        return [rng.permutation(n_classes) for _ in range(n_members)]
    codes: list[np.ndarray] = []
    while True:
        code = np.empty(n_classes, dtype=np.int64)
        code[rng.permutation(n_classes)] = np.arange(n_classes) % max_classes
        codes.append(code)
        c = np.stack(codes)
        separated = (c[:, :, None] != c[:, None, :]).sum(0)
        np.fill_diagonal(separated, 2)
        if len(codes) >= n_members and separated.min() >= 2:
            return codes


def _rows(n: int, max_rows: int, y_idx: np.ndarray | None, rng: np.random.Generator
          ) -> np.ndarray:
    """All rows, or a random subset of ``max_rows`` with one row of every class first."""
    if n <= max_rows:
        return np.arange(n)
    first = np.empty(0, dtype=np.int64)
    if y_idx is not None:
        first = np.array([rng.choice(np.flatnonzero(y_idx == c)) for c in np.unique(y_idx)])
        first = first[:max_rows]
    rest = np.setdiff1d(np.arange(n), first)
    return np.sort(np.concatenate([first, rng.choice(rest, max_rows - first.size,
                                                     replace=False)]))


def draw_feature_sets(n_features: int, max_features: int, n_members: int,
                      rng: np.random.Generator) -> list[np.ndarray]:
    """Columns of each member (in the order the network sees them); at least ``n_members``.

    Up to ``max_features`` features: every member a permutation of all of them. Beyond:
    the features are dealt into ``ceil(F / max_features)`` groups of equal size (the last
    filled up with features of other groups), a new random grouping per round of members,
    so every feature is seen by at least one member in every round; the number of members
    grows to at least the number of groups.
    """
    n_groups = -(-n_features // max_features)
    if n_groups == 1:
        return [rng.permutation(n_features) for _ in range(n_members)]
    size = -(-n_features // n_groups)
    sets: list[np.ndarray] = []
    while len(sets) < max(n_members, n_groups):
        perm = rng.permutation(n_features)
        perm = np.concatenate([perm, rng.choice(perm[:n_features - size], n_groups * size
                                                - n_features, replace=False)])
        sets += [rng.permutation(g) for g in perm.reshape(n_groups, size)]
    return sets[:max(n_members, n_groups)]


@dataclass
class EnsemblePlan:
    """The members of one fitted estimator, and how to build their network inputs.

    Members are ordered by input width (one-hot members may have more columns than the
    others); each run of equal widths, ``groups``, is one batched engine call.
    """

    members: list[Member]
    n_classes: int = 0

    @classmethod
    def fit(cls, x: np.ndarray, y_idx: np.ndarray | None, n_levels: np.ndarray, *,
            n_estimators: int, max_features: int, max_classes: int, max_train_rows: int,
            transforms: tuple[str, ...], encodings: tuple[str, ...] = ("ordinal",),
            seed: int, feature_sets: list | None = None,
            n_classes: int | None = None) -> EnsemblePlan:
        """Draw members for training matrix x (n, F) and class indices y_idx (n,) or None.

        n_levels: (F,) levels of each categorical column, 0 for numeric columns. Member i
        uses ``transforms[i % len(transforms)]`` and ``encodings[i % len(encodings)]``.
        Encodings draw from their own random stream, so the other draws (features, rows,
        class codes) do not depend on the encodings chosen. Beyond ``max_features``
        features there are at least as many members as feature groups
        (:func:`draw_feature_sets`); ``feature_sets`` fixes the members' columns instead
        (cycled over the members), and ``n_classes`` the number of classes when y_idx
        holds only some of them (a local context, :mod:`pfn.contexts`).
        """
        rng = np.random.default_rng(seed)
        enc_rng = np.random.default_rng([seed, 1])
        n, f = x.shape
        if n_classes is None:
            n_classes = int(y_idx.max()) + 1 if y_idx is not None else 0
        ranks = [level_ranks(x[:, j], k) if k else None for j, k in enumerate(n_levels)]
        n_members = len(feature_sets) if feature_sets is not None else \
            max(n_estimators, -(-f // max_features))
        codes = (_class_codes(n_classes, max_classes, n_members, rng)
                 if y_idx is not None else [None] * n_members)
        if feature_sets is None and f > max_features:  # as many as the codes need
            feature_sets = draw_feature_sets(f, max_features, len(codes), rng)
        members, fitted = [], {}
        for i, code in enumerate(codes):
            feats = rng.permutation(f) if feature_sets is None else \
                feature_sets[i % len(feature_sets)]
            rows = _rows(n, max_train_rows, y_idx, rng)
            enc = draw_encoding(encodings[i % len(encodings)], feats, ranks, max_features,
                                enc_rng)
            # Transforms act column by column on the numeric input columns, before the
            # encoding selects and orders them, so members on the same rows share one.
            kind = transforms[i % len(transforms)]
            key = (kind, rows.tobytes())
            if key not in fitted:
                fitted[key] = MemberTransform(kind, n_levels == 0).fit(x[rows])
            members.append(Member(feats, rows, code, fitted[key], enc))
        members.sort(key=lambda m: m.encoding.width)  # stable: draw order within a width
        return cls(members, n_classes)

    @property
    def groups(self) -> list[slice]:
        """Runs of members of equal input width, in member order (one engine call each)."""
        widths = [m.encoding.width for m in self.members]
        cuts = [0, *(i for i in range(1, len(widths)) if widths[i] != widths[i - 1]),
                len(widths)]
        return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def train_inputs(self, x: np.ndarray, y: np.ndarray
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per group, (B, N, F') float32 features and (B, N) float32 targets for the engine.

        y: class indices (mapped through each member's code) or standardised targets.
        """
        out, by_rows = [], {}
        for group in self.groups:
            xs, ys = [], []
            for m in self.members[group]:
                cache = by_rows.setdefault(m.rows.tobytes(), {})
                xs.append(m.inputs(x[m.rows], cache))
                ys.append(m.code[y[m.rows]] if m.code is not None else y[m.rows])
            out.append((np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)))
        return out

    def test_inputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Per group, (B, T, F') float32 test features."""
        cache: dict = {}
        return [np.stack([m.inputs(x, cache) for m in self.members[g]]).astype(np.float32)
                for g in self.groups]

    def network_outputs(self, engine, contexts: list, x: np.ndarray) -> dict[str, np.ndarray]:
        """The engine's outputs for test rows x (T, F), one call per group (``contexts``:
        the engine's context of each group), concatenated in member order (B, T, ...)."""
        outs = [engine.predict(ctx, xg)
                for ctx, xg in zip(contexts, self.test_inputs(x), strict=True)]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def combine_probs(self, probs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Members' network probabilities (B, T, C) -> class probabilities (T, n_classes).

        temperature: each member's logits are divided by it first (softmax(log p / T),
        the same as dividing the network's logits: the softmax head makes log p the logits
        up to a constant); above 1 flattens, below 1 sharpens. Up to C classes: undo each
        member's permutation and average. Beyond: each member's label probability is shared
        equally by the classes in its group, and members are combined by a normalised
        geometric mean (a product of experts), since no single member can tell the classes
        of one group apart.
        """
        if temperature != 1.0:
            with np.errstate(divide="ignore"):  # labels the member never saw: p = 0 stays 0
                logits = np.log(probs) / temperature
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs = probs / probs.sum(-1, keepdims=True)
        per_member = np.stack([p[:, m.code] for p, m in zip(probs, self.members, strict=True)])
        if self.n_classes <= probs.shape[-1]:
            out = per_member.mean(0)
        else:
            sizes = np.stack([np.bincount(m.code, minlength=probs.shape[-1])[m.code]
                              for m in self.members])  # (B, n_classes)
            logp = np.log(np.maximum(per_member / sizes[:, None, :], 1e-300)).mean(0)
            out = np.exp(logp - logp.max(-1, keepdims=True))
        return out / out.sum(-1, keepdims=True)

