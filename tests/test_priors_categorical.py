"""Categorical root causes in the SCM, ordinal vs nominal codes, and wide tables.

Statistical tolerances are 5 standard deviations, as in tests/test_priors.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from priors import PostprocessConfig, Range, SCMConfig, SCMPrior
from priors.categorical import draw_codes
from priors.postprocess import make_categorical
from priors.wide import widen

PLAIN = PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_warp=0.0, p_rescale=0.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_categorical(post: PostprocessConfig = PLAIN, **kw) -> SCMPrior:
    base = {"max_features": 6, "num_features": Range(1, 6), "p_all_categorical": 1.0,
            "root_levels": Range(2, 5), "postprocess": post}
    return SCMPrior(SCMConfig(**(base | kw)))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_all_categorical_tables_hold_integer_codes_in_every_used_column(task: str) -> None:
    batch = all_categorical().sample(16, 80, 40, gen(0), task)
    used = torch.arange(6).view(1, -1) < batch.num_features.view(-1, 1)
    assert torch.equal(batch.categorical, used)
    codes = batch.x.transpose(1, 2)[batch.categorical]
    assert torch.equal(codes, codes.round()) and ((codes >= 0) & (codes < 5)).all()
    assert (codes.std(1) > 0).any()


def test_some_categorical_roots_leave_the_other_columns_numeric() -> None:
    prior = SCMPrior(SCMConfig(max_features=10, num_features=Range(10, 10), postprocess=PLAIN,
                               p_categorical_roots=1.0, categorical_root_fraction=Range(0.3, 0.3)))
    batch = prior.sample(8, 50, 25, gen(1), "regression")
    assert (batch.categorical.sum(1) == 3).all()  # ceil(0.3 * 10) roots
    numeric = batch.x.transpose(1, 2)[~batch.categorical]
    assert not torch.equal(numeric, numeric.round())


def test_target_is_a_function_of_the_categorical_roots() -> None:
    # Every feature a root and almost no noise: rows sharing a code tuple share the target.
    prior = all_categorical(num_features=Range(2, 2), root_levels=Range(2, 3),
                            noise_std=Range(1e-5, 1e-5), p_tree=0.0)
    batch = prior.sample(32, 200, 100, gen(2), "regression")
    for i in range(32):
        x, y = batch.x[i, :, :2], batch.y[i]
        if y.std() < 1e-3:
            continue
        _, cell = torch.unique(x, dim=0, return_inverse=True)
        mean = torch.zeros(int(cell.max()) + 1).index_add_(0, cell, y)
        mean = mean / torch.bincount(cell).float()
        within = ((y - mean[cell]) ** 2).mean()
        assert within / y.var() < 1e-2, i


@pytest.mark.parametrize("p_ordinal,monotone", [(1.0, True), (0.0, False)])
def test_ordinal_roots_act_monotonically_and_nominal_ones_need_not(
        p_ordinal: float, monotone: bool) -> None:
    # One categorical root and linear edges: the target's mean per code follows the level
    # effects, monotone along the codes for ordinal roots only.
    post = PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_warp=0.0, p_rescale=0.0,
                             p_ordinal=p_ordinal)
    prior = all_categorical(post, num_features=Range(1, 1), root_levels=Range(5, 5),
                            activations=("identity",), p_tree=0.0, noise_std=Range(1e-5, 1e-5),
                            edge_dropout=Range(0.0, 0.0))
    batch = prior.sample(64, 400, 200, gen(3), "regression")
    codes, y = batch.x[:, :, 0].long(), batch.y
    sums = torch.zeros(64, 5).scatter_add_(1, codes, y)
    mean = sums / torch.zeros(64, 5).scatter_add_(1, codes, torch.ones_like(y)).clamp_min(1)
    steps = mean[:, 1:] - mean[:, :-1]
    is_monotone = (steps >= -1e-4).all(1) | (steps <= 1e-4).all(1)
    if monotone:
        assert is_monotone.all()
    else:  # five i.i.d. levels are in monotone order with probability 2 / 5! = 1/60
        assert is_monotone.float().mean() < 0.3


@pytest.mark.parametrize("p_ordinal", [0.0, 1.0])
def test_discretised_columns_keep_value_order_only_when_ordinal(p_ordinal: float) -> None:
    post = PostprocessConfig(p_categorical=1.0, categorical_column_fraction=Range(1.0, 1.0),
                             max_levels=6, p_ordinal=p_ordinal)
    x = torch.randn(16, 200, 4, generator=gen(4))
    out, cat = make_categorical(x, torch.full((16,), 4), post, gen(5))
    assert cat.all()
    order = x.argsort(1)
    codes = out.gather(1, order)  # codes of each column with rows sorted by value
    monotone = ((codes[:, 1:] - codes[:, :-1]) >= 0).all(1)  # (16, 4)
    if p_ordinal:
        assert monotone.all()
    else:  # >= 3 levels in random order are rarely sorted
        many = torch.tensor([[len(out[i, :, j].unique()) >= 3 for j in range(4)]
                             for i in range(16)])
        assert monotone[many].float().mean() < 0.5


def test_draw_codes_stay_below_each_variables_level_count() -> None:
    levels = torch.tensor([[2, 7, 1], [10, 3, 4]])
    codes = draw_codes(levels, 500, gen(5))
    assert codes.shape == (2, 500, 3)
    assert (codes < levels.unsqueeze(1)).all() and (codes >= 0).all()
    # every level occurs (frequencies are only mildly skewed)
    assert len(codes[1, :, 0].unique()) == 10


def wide_config(redundant: float) -> PostprocessConfig:
    return PostprocessConfig(p_wide=1.0, wide_features=Range(12, 12),
                             redundant_fraction=Range(redundant, redundant))


def test_widen_adds_columns_up_to_the_drawn_width_and_keeps_the_originals() -> None:
    x = torch.randn(4, 300, 3, generator=gen(6))
    nf = torch.tensor([3, 2, 1, 3])
    out, new_nf, cat = widen(x, nf, torch.zeros(4, 3, dtype=torch.bool), 20, wide_config(0.5),
                             gen(7))
    assert out.shape == (4, 300, 12) and torch.equal(new_nf, torch.full((4,), 12))
    assert not cat.any()  # no categorical columns to imitate
    for i in range(4):  # each original column is still there, somewhere
        for j in range(int(nf[i])):
            assert (out[i] == x[i, :, j : j + 1]).all(0).any()


@pytest.mark.parametrize("redundant", [0.0, 1.0])
def test_added_columns_are_redundant_or_irrelevant_as_configured(redundant: float) -> None:
    b, r = 8, 400
    x = torch.randn(b, r, 1, generator=gen(8))  # one informative column
    out, _, _ = widen(x, torch.ones(b, dtype=torch.long), torch.zeros(b, 1, dtype=torch.bool),
                      12, wide_config(redundant), gen(9))
    xc = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    oc = (out - out.mean(1, keepdim=True)) / out.std(1, keepdim=True)
    corr = ((xc * oc).mean(1) * r / (r - 1)).abs()  # (b, 12), the original column gives 1
    added = corr < 1 - 1e-5
    assert (added.sum(1) == 11).all()
    if redundant:  # noisy copies (noise at most e^0.5 times the signal) stay correlated
        assert (corr[added] > 0.3).all()
    else:  # independent noise: |corr| ~ N(0, 1/r)
        assert (corr[added] < 5 / math.sqrt(r)).all()


def test_wide_tables_get_categorical_noise_columns_like_their_originals() -> None:
    x = draw_codes(torch.full((4, 5), 3), 200, gen(10)).float()
    cat = torch.ones(4, 5, dtype=torch.bool)
    out, nf, out_cat = widen(x, torch.full((4,), 5), cat, 30, wide_config(0.0), gen(11))
    assert out_cat.all()  # every column of an all-categorical table stays categorical
    assert torch.equal(out, out.round()) and (out >= 0).all()


def test_widened_priors_stay_in_max_features() -> None:
    post = PostprocessConfig(p_wide=1.0, wide_features=Range(40, 100))
    prior = SCMPrior(SCMConfig(max_features=50, num_features=Range(1, 10), postprocess=post))
    batch = prior.sample(8, 40, 20, gen(12), "classification")
    assert batch.x.shape == (8, 40, 50) and (batch.num_features == 50).all()
    unused = torch.arange(50).view(1, -1) >= batch.num_features.view(-1, 1)
    assert not (batch.categorical & unused).any()


BAD = [
    (lambda: SCMConfig(p_categorical_roots=1.5), "p_categorical_roots"),
    (lambda: SCMConfig(p_all_categorical=-0.5), "p_all_categorical"),
    (lambda: SCMConfig(categorical_root_fraction=Range(0.0, 2.0)), "categorical_root_fraction"),
    (lambda: SCMConfig(root_levels=Range(1, 4)), "root_levels"),
    (lambda: PostprocessConfig(p_ordinal=2.0), "p_ordinal"),
    (lambda: PostprocessConfig(p_wide=-1.0), "p_wide"),
    (lambda: PostprocessConfig(wide_features=Range(0, 10)), "wide_features"),
    (lambda: PostprocessConfig(redundant_fraction=Range(0.5, 1.5)), "redundant_fraction"),
]


@pytest.mark.parametrize("make,field", BAD, ids=[f for _, f in BAD])
def test_bad_config_raises_value_error_naming_the_field(make, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()
