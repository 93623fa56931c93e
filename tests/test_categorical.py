"""Categorical columns: the detection rule, the parameter, and the members' encodings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pfn.categorical import (
    AUTO_MAX_LEVELS,
    AUTO_MIN_ROWS,
    ONEHOT_MAX_LEVELS,
    draw_encoding,
    level_ranks,
    looks_categorical,
)
from pfn.preprocessing import EnsemblePlan, TableEncoder


def _table(n=60, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "height": rng.normal(170, 10, n),  # float
        "code": rng.integers(0, 3, n),  # integer codes: categorical under "auto"
        "count": rng.integers(0, 40, n),  # integers, too many levels: numeric
        "whole": np.round(rng.normal(0, 100, n)).astype(float),  # whole floats, wide: numeric
        "city": rng.choice(["x", "y", "z"], n),  # text: always categorical
    })


# ----- the rule and the parameter ------------------------------------------------------------
def test_auto_rule_detects_small_integer_codes_only():
    n = AUTO_MIN_ROWS
    assert looks_categorical(np.arange(n) % AUTO_MAX_LEVELS * 1.0)
    assert looks_categorical(np.r_[np.arange(n) % 2, np.nan])  # NaN ignored
    assert not looks_categorical(np.arange(n) % (AUTO_MAX_LEVELS + 1) * 1.0)  # too many
    assert not looks_categorical(np.arange(n) % 2 + 0.5)  # not whole numbers
    assert not looks_categorical(np.zeros(n))  # constant
    assert not looks_categorical(np.arange(n - 1) % 2 * 1.0)  # too few rows to tell
    numbers = _table().drop(columns="city")
    enc = TableEncoder().fit(numbers.to_numpy())  # an array: codes hide among numbers
    assert enc.categorical_mask.tolist() == [False, True, False, False]
    # A DataFrame's dtypes say which columns are categories: its integers stay numbers.
    assert TableEncoder().fit(numbers).categorical_mask.tolist() == [False] * 4
    assert TableEncoder().fit(_table()).categorical_mask.tolist() == [False] * 4 + [True]


@pytest.mark.parametrize("spec, expected", [
    (None, [False, False, False, False, True]),  # text only, as before the rule
    ([], [False, False, False, False, True]),
    ([0, 2], [True, False, True, False, True]),
    (np.array([0, 2]), [True, False, True, False, True]),
    (["height", "whole"], [True, False, False, True, True]),
    ([False, True, False, True, False], [False, True, False, True, True]),  # text stays
])
def test_categorical_features_overrides_the_rule(spec, expected):
    assert TableEncoder().fit(_table(), spec).categorical_mask.tolist() == expected


def test_a_numeric_column_made_categorical_codes_its_distinct_values():
    df = _table()
    enc = TableEncoder().fit(df, ["height"])
    x = enc.transform(df)
    assert enc.n_levels[0] == df["height"].nunique()
    np.testing.assert_array_equal(x[:, 0], df["height"].rank(method="dense") - 1)
    new = enc.transform(df.assign(height=df["height"] + 0.5))  # values never seen: NaN
    assert np.isnan(new[:, 0]).all()
    with pytest.raises(ValueError, match="infinity"):
        enc.transform(df.assign(height=np.inf))


@pytest.mark.parametrize("spec, error, match", [
    (["height", "nope"], ValueError, r"unknown columns \['nope'\]"),
    ([0, 5], ValueError, r"indices must be in \[0, 4\].*\[5\]"),
    ([-1], ValueError, r"indices must be in \[0, 4\]"),
    ([True, False], ValueError, "one entry per feature"),
    ("all", ValueError, "categorical_features must be 'auto'"),
    (1.5, TypeError, "categorical_features must be"),
    ([0, "city"], TypeError, "categorical_features must be"),
])
def test_bad_categorical_features_are_rejected_clearly(spec, error, match):
    with pytest.raises(error, match=match):
        TableEncoder().fit(_table(), spec)


def test_names_need_a_dataframe():
    with pytest.raises(ValueError, match="no column names"):
        TableEncoder().fit(np.zeros((5, 2)), ["a"])


# ----- member encodings ----------------------------------------------------------------------
def _ranks(levels):
    return [None if k == 0 else np.arange(k) for k in levels]


def test_shuffled_codes_are_a_bijection_per_member():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=50), rng.integers(0, 5, 50), rng.integers(0, 3, 50)])
    x[::7, 1] = np.nan
    seen = set()
    for seed in range(6):
        enc = draw_encoding("shuffled", np.array([2, 0, 1]), _ranks([0, 5, 3]), 100,
                            np.random.default_rng(seed))
        out = enc.encode(x)
        np.testing.assert_array_equal(out[:, 1], x[:, 0])  # numeric untouched
        for net, src, k in ((2, 1, 5), (0, 2, 3)):
            perm = enc.perms[net]
            assert sorted(perm) == list(range(k))  # a bijection of the codes
            ok = ~np.isnan(x[:, src])
            np.testing.assert_array_equal(out[ok, net], perm[x[ok, src].astype(int)])
            assert np.isnan(out[~ok, net]).all()  # missing stays missing
        seen.add(tuple(enc.perms[2]))
    assert len(seen) > 1  # members differ


def test_onehot_width_and_fallback_to_codes_at_the_feature_limit():
    levels = [0, 2, 3, 5, ONEHOT_MAX_LEVELS + 1]
    feats = np.arange(5)
    enc = draw_encoding("onehot", feats, _ranks(levels), 100, np.random.default_rng(0))
    assert enc.width == 1 + 1 + 3 + 5 + 1  # flags stay one column, too many levels: codes
    assert set(enc.perms) == {1, 10}  # the flag and the wide column keep shuffled codes
    assert (enc.level >= 0).sum() == 8
    x = np.array([[0.5, 1, 2, 4, 7], [0.1, 0, np.nan, 0, 16]])
    out = enc.encode(x)
    np.testing.assert_array_equal(out[:, 2:5], [[0, 0, 1], [np.nan] * 3])
    np.testing.assert_array_equal(out[:, 5:10], [[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]])
    # 8 columns allow 3 more: the 3-level column (2 more) fits, the 5-level one (4) not.
    tight = draw_encoding("onehot", feats, _ranks(levels), 8, np.random.default_rng(0))
    assert tight.width == 7 and (tight.level >= 0).sum() == 3
    assert draw_encoding("onehot", feats, _ranks(levels), 5, np.random.default_rng(0)).width == 5


def test_level_ranks_follow_counts_then_first_appearance():
    codes = np.array([2, 0, 0, 1, 2, np.nan, 0, 1])  # counts 3, 2, 2; 2 appears before 1
    np.testing.assert_array_equal(level_ranks(codes, 4), [0, 2, 1, 3])  # level 3 unused


def _plan(x, levels, encodings, seed=3):
    return EnsemblePlan.fit(x, np.arange(len(x)) % 2, np.array(levels), n_estimators=4,
                            max_features=100, max_classes=10, max_train_rows=1000,
                            transforms=("quantile",), encodings=encodings, seed=seed)


@pytest.mark.parametrize("encodings", [("onehot",), ("shuffled",), ("onehot", "shuffled")])
def test_renamed_levels_give_the_same_network_inputs(encodings):
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(size=80), rng.integers(0, 4, 80)]).astype(float)
    relabelled = x.copy()
    relabelled[:, 1] = np.array([2, 0, 3, 1])[x[:, 1].astype(int)]
    a, b = _plan(x, [0, 4], encodings), _plan(relabelled, [0, 4], encodings)
    y = np.arange(80) % 2
    for (xa, ya), (xb, yb) in zip(a.train_inputs(x, y), b.train_inputs(relabelled, y),
                                  strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    ordinal = _plan(x, [0, 4], ("ordinal",)), _plan(relabelled, [0, 4], ("ordinal",))
    assert not np.array_equal(ordinal[0].test_inputs(x)[0], ordinal[1].test_inputs(relabelled)[0])


def test_members_are_grouped_by_width_and_encodings_keep_the_other_draws():
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(size=40), rng.integers(0, 6, 40)]).astype(float)
    mixed = _plan(x, [0, 6], ("onehot", "shuffled"))
    assert [m.encoding.width for m in mixed.members] == [2, 2, 7, 7]
    assert mixed.groups == [slice(0, 2), slice(2, 4)]
    assert [g.shape for g in mixed.test_inputs(x)] == [(2, 40, 2), (2, 40, 7)]
    plain = _plan(x, [0, 6], ("ordinal",))
    assert {tuple(m.features) for m in mixed.members} == {tuple(m.features)
                                                         for m in plain.members}
    again = _plan(x, [0, 6], ("onehot", "shuffled"))
    for g1, g2 in zip(mixed.test_inputs(x), again.test_inputs(x), strict=True):
        np.testing.assert_array_equal(g1, g2)  # same seed, same inputs
