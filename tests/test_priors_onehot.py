"""Categorical columns shown one-hot in the prior (priors/onehot.py), as the estimators
show them: which columns expand, what the indicators hold, and the table's width."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pfn.categorical import ONEHOT_MAX_LEVELS, draw_encoding, level_ranks
from priors import PostprocessConfig, Range
from priors.glm import GLMConfig, GLMPrior
from priors.onehot import MAX_LEVELS, onehot_columns

NAN = math.nan


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def table(width: int = 8):
    """Columns: codes of 3 levels (level 2 twice as common in training, level 3 only in a
    test row, one missing test cell), a numeric column, codes of 2 levels."""
    x = torch.tensor([[2., 1.5, 0.],
                      [2., 2.5, 1.],
                      [0., 0.1, 0.],
                      [1., 0.3, 1.],
                      [1., 0.2, 0.],
                      [2., 0.4, 1.],   # training rows above (6)
                      [0., 1.0, 1.],
                      [3., 1.0, 0.],
                      [NAN, 1.0, 0.]])
    x = torch.nn.functional.pad(x, (0, width - 3)).unsqueeze(0)
    cat = torch.zeros(1, width, dtype=torch.bool)
    cat[0, [0, 2]] = True
    return x, torch.tensor([3]), cat


def test_a_column_of_three_levels_becomes_indicators_in_its_place() -> None:
    x, nf, cat = table()
    out, nf2, cat2 = onehot_columns(x, nf, cat, n_train=6, p=1.0, g=gen())
    assert int(nf2) == 5
    levels_by_count = [2.0, 1.0, 0.0]  # 3, 2 and 1 training rows
    ind = out[0, :, :3]
    for r in range(7):
        expected = (x[0, r, 0] == torch.tensor(levels_by_count)).float()
        assert torch.equal(ind[r], expected), r
    # a level no training row has, and a missing cell: NaN in every indicator
    assert torch.isnan(ind[7:]).all()
    assert torch.equal(out[0, :, 3], x[0, :, 1])  # numeric column kept, after the group
    assert torch.equal(out[0, :, 4], x[0, :, 2])  # two levels stay one column
    assert (out[0, :, 5:] == 0).all()
    assert cat2[0].tolist() == [True, True, True, False, True, False, False, False]


def test_nothing_changes_at_p_zero_or_without_room() -> None:
    x, nf, cat = table()
    out, nf2, cat2 = onehot_columns(x, nf, cat, n_train=6, p=0.0, g=gen())
    assert out is x and torch.equal(nf2, nf) and torch.equal(cat2, cat)
    x, nf, cat = table(width=4)  # one free column: three indicators would need two more
    out, nf2, _ = onehot_columns(x, nf, cat, n_train=6, p=1.0, g=gen())
    assert int(nf2) == 3
    torch.testing.assert_close(out, x, equal_nan=True, rtol=0, atol=0)


def test_fewest_levels_expand_first_within_the_width() -> None:
    g = gen(1)
    x = torch.zeros(1, 40, 10)
    x[0, :, 0] = torch.arange(40) % 8  # 8 levels
    x[0, :, 1] = torch.arange(40) % 3  # 3 levels
    cat = torch.zeros(1, 10, dtype=torch.bool)
    cat[0, :2] = True
    out, nf, _ = onehot_columns(x, torch.tensor([2]), cat, n_train=30, p=1.0, g=g)
    # 8 free columns: the 3-level column takes 2 of them, the 8-level one would need 7
    assert int(nf) == 4
    assert torch.equal(out[0, :, 0], x[0, :, 0])
    assert torch.equal(out[0, :, 1:4].sum(1), torch.ones(40))


def test_glm_tables_arrive_one_hot_with_one_level_per_row() -> None:
    cfg = GLMConfig(num_features=Range(5, 5), p_all_discrete=1.0, levels=Range(4, 4),
                    postprocess=PostprocessConfig(max_classes=2, p_multiclass=0.0,
                                                  p_categorical=0.0, p_missing=0.0,
                                                  p_onehot=1.0))
    b = GLMPrior(cfg).sample(4, 200, 150, gen(2))
    for i in range(4):
        n = int(b.num_features[i])
        assert 5 < n <= 20
        x = b.x[i, :, :n]
        assert set(x[~torch.isnan(x)].unique().tolist()) <= {0.0, 1.0}
        assert b.categorical[i, :n].all()
        # every training row sets exactly one indicator of each expanded column
        assert torch.equal(x[:150].nansum(1), torch.full((150,), 5.0))


def test_p_onehot_is_validated() -> None:
    with pytest.raises(ValueError, match="p_onehot"):
        PostprocessConfig(p_onehot=1.5)


def test_the_level_limit_is_the_estimators() -> None:
    assert MAX_LEVELS == ONEHOT_MAX_LEVELS


def test_the_columns_are_the_estimators_one_hot_columns() -> None:
    """Same table, same width: the prior's expansion equals the estimators' "onehot"
    encoding (pfn.categorical), level order with tied counts, missing cells and the width
    rule included."""
    rng = np.random.default_rng(0)
    n_train, rows, width = 40, 60, 14
    levels = [5, 3, 2, 9, 0]  # 0: numeric
    x = np.zeros((rows, len(levels)))
    for j, k in enumerate(levels):
        x[:, j] = rng.normal(size=rows) if k == 0 else rng.permutation(
            np.arange(rows) % k)
    x[:n_train, 1] = np.r_[[2, 0, 1, 0, 1, 2], rng.integers(0, 3, n_train - 6)]
    x[:n_train, 1][np.arange(n_train) >= 6] = np.tile([0, 1, 2], 12)[:n_train - 6]  # ties
    x[[3, 45], 0] = np.nan
    ranks = [level_ranks(x[:n_train, j], k) if k else None for j, k in enumerate(levels)]
    enc = draw_encoding("onehot", np.arange(len(levels)), ranks, width, rng)
    expected = enc.encode(x)
    xt = torch.nn.functional.pad(torch.tensor(x, dtype=torch.float32), (0, width - 5))
    cat = torch.tensor([k > 0 for k in levels] + [False] * (width - 5))
    out, nf, _ = onehot_columns(xt.unsqueeze(0), torch.tensor([5]), cat.unsqueeze(0),
                                n_train, p=1.0, g=gen())
    assert int(nf) == enc.width == 5 + 4 + 2  # the 9-level column does not fit
    got = out[0, :, :int(nf)].numpy()
    # columns left as codes: the estimators shuffle the levels (the prior's codes are in
    # random order already), so those agree up to a renaming of the levels
    codes = np.array([levels[j] > 0 and lev < 0 for j, lev in zip(enc.src, enc.level,
                                                                strict=True)])
    np.testing.assert_array_equal(got[:, ~codes], expected[:, ~codes].astype(np.float32))
    for c in np.flatnonzero(codes):
        pairs = {(a, b) for a, b in zip(got[:, c], expected[:, c], strict=True)}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
