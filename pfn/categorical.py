"""Categorical columns: which columns are categories, and how each member encodes them.

Two parts:

- :func:`resolve_categorical` turns the estimators' ``categorical_features`` parameter
  ("auto", None, indices, column names or a boolean mask) into a boolean mask over the
  columns, with :func:`looks_categorical` as the rule for numeric columns under "auto".
- :class:`CategoryEncoding` is one ensemble member's view of the categorical columns, drawn
  by :func:`draw_encoding`: the codes as they are ("ordinal"), a random permutation of the
  levels per column ("shuffled"), or indicator columns per level ("onehot") where the
  network's feature limit leaves room. The network was pretrained on categorical columns
  whose codes are in random order (``priors/postprocess.py``), so the order of the codes
  carries no meaning for it; members that shuffle or one-hot the levels average that
  arbitrary order out. Both start from a label-free order of the levels
  (:func:`level_ranks`), so renaming the categories of a table changes no prediction.

Codes reach this module as floats 0..k-1 (NaN: missing or unseen in ``fit``), as
:class:`pfn.preprocessing.TableEncoder` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENCODINGS = ("ordinal", "shuffled", "onehot")
# The default for every member: one-hot, whose network inputs do not depend on how the
# levels are coded. Chosen on the real datasets against shuffled codes (the form the
# network was pretrained on), sorted codes and members alternating one-hot and shuffled
# codes: one-hot for all members had the best mean log loss and R² and no worse ROC AUC
# (benchmarks/real_data.py, variants ours_onehot, ours_shuffled, ours_mixed, ...).
DEFAULT_ENCODING = "onehot"

# The rule for numeric columns of arrays under categorical_features="auto" (a DataFrame's
# dtypes say which of its columns are categories, so its numeric columns stay numbers: on the
# real DataFrames the rule cost ROC AUC and log loss, and made item counts categorical on a
# large table, modeldata_deliveries, losing half its R²): a column whose training
# values are all whole numbers, with 2 to AUTO_MAX_LEVELS distinct values, in a training
# set of at least AUTO_MIN_ROWS rows, holds category codes (or flags). It is for tables that
# arrive as numbers, categories already coded (a numpy array cannot say which columns are
# categories). A small integer column is a code, a flag or a short count or score, and no
# threshold tells a nominal code from an ordinal score: on the real datasets
# (benchmarks/real_data.py) allowing the prior's 10 levels made counts and scores
# categorical and cost ROC AUC and R² on the numeric-or-mixed tables; 4 keeps most of the
# one-hot gain on tables given as codes (variants ours_codes vs ours_codes_before), at a
# small cost on tables with 3-level ordinal scores (ours vs ours_nodetect), where
# categorical_features=None is the better choice. Below AUTO_MIN_ROWS rows a wide integer
# column can show only a few distinct values by chance, so the rule says nothing.
AUTO_MAX_LEVELS = 4
AUTO_MIN_ROWS = 20
# One-hot only up to this many levels: beyond, each indicator is rarely set and the columns
# use up the network's feature budget; such columns keep (shuffled) codes. Of 8, 16 and 40,
# 16 had the best mean ROC AUC on the real tables with columns of 10 to 36 levels
# (AER_ResumeNames, lme4_VerbAgg, openintro_smoking; benchmarks/real_data.py).
ONEHOT_MAX_LEVELS = 16


def looks_categorical(values: np.ndarray) -> bool:
    """The "auto" rule for one numeric training column (float64, NaN = missing)."""
    v = values[~np.isnan(values)]
    if v.size < AUTO_MIN_ROWS:
        return False
    levels = np.unique(v)
    return 2 <= levels.size <= AUTO_MAX_LEVELS and bool(np.all(levels == np.round(levels)))


def _spec_error(spec) -> TypeError:
    return TypeError("categorical_features must be 'auto', None, a list of column indices, "
                     "a list of column names or a boolean mask, got "
                     f"{type(spec).__name__} {spec!r}")


def resolve_categorical(spec, by_dtype: np.ndarray, names: list | None,
                        numeric_rule: np.ndarray) -> np.ndarray:
    """The ``categorical_features`` parameter -> (F,) bool mask of categorical columns.

    by_dtype: (F,) columns that are categories whatever the parameter says (text, category
    or bool dtype: they have no numeric value). names: the DataFrame's column names, or
    None for arrays. numeric_rule: (F,) what :func:`looks_categorical` says of each column
    (used by "auto" only).
    """
    f = by_dtype.size
    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"categorical_features must be 'auto', None, indices, names or a "
                             f"boolean mask, got the string {spec!r}")
        return by_dtype | numeric_rule
    if spec is None:
        return by_dtype.copy()
    if hasattr(spec, "tolist") and not isinstance(spec, (list, tuple)):
        spec = spec.tolist()
    if not isinstance(spec, (list, tuple)):
        raise _spec_error(spec)
    mask = by_dtype.copy()
    if not spec:
        return mask
    if all(isinstance(v, (bool, np.bool_)) for v in spec):
        if len(spec) != f:
            raise ValueError(f"categorical_features as a boolean mask must have one entry per "
                             f"feature ({f}), got {len(spec)}")
        return mask | np.asarray(spec, dtype=bool)
    if all(isinstance(v, str) for v in spec):
        if names is None:
            raise ValueError(f"categorical_features names columns ({list(spec)}), but X has no "
                             "column names: pass a DataFrame or use column indices")
        lookup = {str(n): j for j, n in enumerate(names)}
        unknown = [v for v in spec if v not in lookup]
        if unknown:
            raise ValueError(f"categorical_features names unknown columns {unknown}; X has "
                             f"columns {[str(n) for n in names]}")
        mask[[lookup[v] for v in spec]] = True
        return mask
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
           for v in spec):
        bad = [int(v) for v in spec if not 0 <= v < f]
        if bad:
            raise ValueError(f"categorical_features indices must be in [0, {f - 1}] for X with "
                             f"{f} features, got {bad}")
        mask[list(spec)] = True
        return mask
    raise _spec_error(spec)


def level_ranks(codes: np.ndarray, k: int) -> np.ndarray:
    """(k,) position of each level code in a label-free order of one training column.

    Levels by decreasing training count, ties by first appearance, then unused levels in
    code order. The order depends on the data only, not on how the levels are named or
    coded, so encodings built on it ("shuffled", "onehot") give the same network inputs
    for a table whose categories are renamed.
    """
    ok = ~np.isnan(codes)
    c = codes[ok].astype(np.int64)
    counts = np.bincount(c, minlength=k)
    first = np.full(k, codes.size)
    np.minimum.at(first, c, np.flatnonzero(ok))
    rank = np.empty(k, dtype=np.int64)
    rank[np.lexsort((np.arange(k), first, -counts))] = np.arange(k)
    return rank


@dataclass
class CategoryEncoding:
    """One member's layout: which input column and level each network column comes from.

    src: (F',) input column of each network column, in the network's order. level: (F',)
    the level code a one-hot column indicates, -1 for other columns. perms: network column
    -> new code of each level code (shuffled codes).
    """

    src: np.ndarray
    level: np.ndarray
    perms: dict[int, np.ndarray]

    @property
    def width(self) -> int:
        return int(self.src.size)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x (n, F) -> (n, F') network columns. One-hot: NaN stays NaN in every indicator."""
        out = x[:, self.src]
        hot = self.level >= 0
        if hot.any():
            c = out[:, hot]
            out[:, hot] = np.where(np.isnan(c), np.nan, c == self.level[hot])
        for j, perm in self.perms.items():
            ok = ~np.isnan(out[:, j])
            out[ok, j] = perm[out[ok, j].astype(np.int64)]
        return out


def draw_encoding(kind: str, features: np.ndarray, ranks: list, max_features: int,
                  rng: np.random.Generator) -> CategoryEncoding:
    """A member's encoding of the input columns ``features`` (in the network's order).

    ranks: per input column, None (numeric) or :func:`level_ranks` of its codes. "shuffled"
    codes each level by a random permutation of its rank. "onehot" expands a column of 3
    to ``ONEHOT_MAX_LEVELS`` levels into one indicator per level, in rank order, in the
    column's place (2 levels stay one column: a second indicator would only repeat the
    first). When the expansion would pass ``max_features`` columns, columns with the fewest
    levels are expanded first and the rest keep shuffled codes, so the network sees every
    input column. "ordinal" keeps the codes as they are.
    """
    if kind not in ENCODINGS:
        raise ValueError(f"categorical encoding must be one of {ENCODINGS}, got {kind!r}")
    k = np.array([0 if ranks[j] is None else ranks[j].size for j in features])
    expand = np.zeros(features.size, dtype=bool)
    if kind == "onehot":
        room = max_features - features.size
        for pos in np.argsort(k, kind="stable"):
            if 3 <= k[pos] <= ONEHOT_MAX_LEVELS and k[pos] - 1 <= room:
                expand[pos], room = True, room - (k[pos] - 1)
    src, level, perms = [], [], {}
    for pos, j in enumerate(features):
        if expand[pos]:
            src += [j] * int(k[pos])
            level += np.argsort(ranks[j]).tolist()  # level codes in rank order
            continue
        if ranks[j] is not None and kind != "ordinal":
            perms[len(src)] = rng.permutation(int(k[pos]))[ranks[j]].astype(np.float64)
        src.append(j)
        level.append(-1)
    return CategoryEncoding(np.asarray(src, dtype=np.int64), np.asarray(level, dtype=np.int64),
                            perms)
