"""Behaviour of the rule prior: exact rules, label noise, irrelevant columns, discrete codes.

The generic checks (shapes, seeding, classes in training rows, config-free errors) run for
the rule prior in tests/test_priors.py; this file checks what is specific to it. Statistical
tolerances are 5 standard deviations, as there.
"""

from __future__ import annotations

import math

import pytest
import torch

from priors import PostprocessConfig, Range, RulesConfig, RulesPrior, build_prior
from priors.labels import exact_classes

CLEAN = PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_wide=0.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rules(**kw) -> RulesPrior:
    base = {"max_features": 8, "num_features": Range(3, 8), "postprocess": CLEAN}
    return RulesPrior(RulesConfig(**(base | kw)))


def inconsistent_rows(x: torch.Tensor, y: torch.Tensor) -> int:
    """Rows whose feature tuple also occurs with another label (0 iff y is a function of x)."""
    keys, inverse = torch.unique(x, dim=0, return_inverse=True)
    lo = torch.full((len(keys),), float("inf")).scatter_reduce(0, inverse, y, "amin")
    hi = torch.full((len(keys),), -float("inf")).scatter_reduce(0, inverse, y, "amax")
    return int((lo != hi)[inverse].sum())


@pytest.mark.parametrize("seed", range(4))
def test_noise_free_labels_are_a_function_of_the_informative_columns(seed: int) -> None:
    # All-discrete tables with few levels repeat feature tuples, so a label that were not a
    # function of the informative columns would show up as one tuple with two labels.
    prior = rules(p_all_discrete=1.0, levels=Range(2, 3), p_label_noise=0.0)
    tables = prior.draw_tables(16, 300, gen(seed))
    batch = prior.sample(16, 300, 150, gen(seed), "classification")
    d = tables.x.shape[2]
    assert torch.equal(batch.categorical[:, :d], tables.discrete)
    assert torch.equal(batch.x[:, :, :d], tables.x)  # codes pass post-processing untouched
    for i in range(16):
        cols = tables.informative[i].nonzero().squeeze(1)
        assert inconsistent_rows(batch.x[i][:, cols], batch.y[i]) == 0, i
    # The check notices label noise.
    noisy = rules(p_all_discrete=1.0, levels=Range(2, 3), p_label_noise=1.0,
                  label_noise=Range(0.1, 0.1)).sample(16, 300, 150, gen(seed), "classification")
    found = [inconsistent_rows(noisy.x[i][:, tables.informative[i].nonzero().squeeze(1)],
                               noisy.y[i]) for i in range(16)]
    assert min(found) > 0


def test_noise_free_numeric_rules_are_learnt_by_a_decision_tree() -> None:
    # Sharp thresholds: a tree on the informative columns classifies held-out rows almost
    # perfectly without label noise, and visibly worse with it.
    tree = pytest.importorskip("sklearn.tree")
    kw = {"discrete_fraction": Range(0.0, 0.0), "p_all_discrete": 0.0, "num_terms": Range(1, 1),
          "term_arity": Range(2, 2), "p_label_noise": 1.0}

    def held_out_accuracy(noise: float) -> float:
        prior = rules(label_noise=Range(noise, noise), **kw)
        tables = prior.draw_tables(16, 1000, gen(0))
        batch = prior.sample(16, 1000, 500, gen(0), "classification")
        scores = []
        for i in range(16):
            cols = tables.informative[i].nonzero().squeeze(1)
            x, y = batch.x[i][:, cols].numpy(), batch.y[i].numpy()
            fit = tree.DecisionTreeClassifier(random_state=0).fit(x[:500], y[:500])
            scores.append(fit.score(x[500:], y[500:]))
        return sum(scores) / len(scores)

    assert held_out_accuracy(0.0) > 0.97
    assert held_out_accuracy(0.2) < 0.85


def test_label_noise_flips_the_configured_share_of_labels() -> None:
    rate, b, r = 0.15, 32, 400
    cfg = {"p_label_noise": 1.0, "label_noise": Range(rate, rate)}
    clean = rules(**(cfg | {"p_label_noise": 0.0})).sample(b, r, 200, gen(3), "classification")
    noisy = rules(**cfg).sample(b, r, 200, gen(3), "classification")
    assert torch.equal(clean.x, noisy.x) and torch.equal(clean.num_classes, noisy.num_classes)
    flipped = clean.y != noisy.y
    assert flipped.any(1).all()  # no dataset had to keep its clean labels here
    n = flipped.numel()
    assert abs(int(flipped.sum()) - n * rate) < 5 * math.sqrt(n * rate * (1 - rate))
    # Every class keeps training rows.
    for i in range(b):
        k = int(noisy.num_classes[i])
        assert set(noisy.y[i, :200].long().tolist()) == set(range(k))


def test_irrelevant_columns_are_independent_of_the_target() -> None:
    # n * corr^2 of an independent column with the target is ~ chi-square(1): mean 1.
    prior = rules(num_features=Range(8, 8), num_informative=Range(2, 2), p_all_discrete=0.0,
                  discrete_fraction=Range(0.0, 0.0))
    t = prior.draw_tables(200, 200, gen(5))
    x = t.x - t.x.mean(1, keepdim=True)
    y = t.y - t.y.mean(1, keepdim=True)
    corr = (x * y.unsqueeze(-1)).sum(1) / (x.norm(dim=1) * y.norm(dim=1, keepdim=True) + 1e-12)
    varies = (t.y.std(1) > 0).unsqueeze(1)
    stat = 200 * corr**2
    irrelevant = stat[~t.informative & varies]
    m = irrelevant.numel()
    assert m > 1000 and abs(float(irrelevant.mean()) - 1) < 5 * math.sqrt(2 / m)
    assert float(stat[t.informative & varies].mean()) > 5  # the statistic can tell


def test_discrete_columns_hold_codes_in_range() -> None:
    prior = rules(levels=Range(2, 5), postprocess=PostprocessConfig(p_wide=1.0, max_levels=4,
                                                                   wide_features=Range(6, 8)))
    batch = prior.sample(32, 60, 30, gen(0), "regression")
    assert batch.categorical.any()
    codes = batch.x.transpose(1, 2)[batch.categorical]
    codes = codes[~torch.isnan(codes)]
    assert torch.equal(codes, codes.round()) and ((codes >= 0) & (codes < 5)).all()
    assert (batch.num_features >= 6).all()  # every table widened


def test_regression_target_is_the_rule_sum_plus_small_noise() -> None:
    prior = rules(noise_std=Range(1e-3, 1e-3))
    t = prior.draw_tables(16, 100, gen(2))
    y = prior.sample(16, 100, 50, gen(2), "regression").y
    spread = t.y.std(1, keepdim=True).clamp_min(1e-6)
    assert ((y - t.y).abs() / spread).max() < 0.01


def test_rule_kinds_give_their_truth_tables() -> None:
    # One binary term of arity 1 over one discrete column: the target takes two values.
    for kind in ("parity", "majority", "any", "all", "tree"):
        prior = rules(kinds=(kind,), num_terms=Range(1, 1), term_arity=Range(1, 1),
                      p_all_discrete=1.0)
        t = prior.draw_tables(16, 100, gen(0))
        assert all(len(t.y[i].unique()) <= 2 for i in range(16)), kind


def test_exact_classes_never_split_equal_targets() -> None:
    y = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 0.0, 1.0]] * 4)
    labels, k = exact_classes(y, 8, torch.tensor([2, 3, 5, 10]),
                              PostprocessConfig(max_classes=10), gen(0))
    assert (k <= 3).all() and (k >= 2).all()
    for i in range(4):
        for v in (0.0, 1.0, 2.0):
            assert len(labels[i][y[i] == v].unique()) == 1


def test_rules_in_a_mixture_spec() -> None:
    prior = build_prior({"rules": {"weight": 1.0, "max_features": 5,
                                   "num_features": {"low": 2, "high": 5}}})
    assert isinstance(prior, RulesPrior)
    assert prior.sample(3, 20, 10, gen(0), "classification").x.shape == (3, 20, 5)


BAD = [
    (lambda: RulesConfig(max_features=0), "max_features"),
    (lambda: RulesConfig(num_informative=Range(0, 3)), "num_informative"),
    (lambda: RulesConfig(levels=Range(1, 4)), "levels"),
    (lambda: RulesConfig(num_terms=Range(0, 2)), "num_terms"),
    (lambda: RulesConfig(term_arity=Range(1, 9)), "term_arity"),
    (lambda: RulesConfig(kinds=("xor3",)), "kinds"),
    (lambda: RulesConfig(kinds=()), "kinds"),
    (lambda: RulesConfig(threshold_quantile=Range(0.0, 0.5)), "threshold_quantile"),
    (lambda: RulesConfig(label_noise=Range(0.0, 0.7)), "label_noise"),
    (lambda: RulesConfig(p_label_noise=1.2), "p_label_noise"),
    (lambda: RulesConfig(p_all_discrete=-0.1), "p_all_discrete"),
    (lambda: RulesConfig(discrete_fraction=Range(0.2, 1.5)), "discrete_fraction"),
    (lambda: RulesConfig(noise_std=Range(-1.0, 0.1)), "noise_std"),
    (lambda: RulesConfig(postprocess={"p_wide": 2.0}), "p_wide"),
]


@pytest.mark.parametrize("make,field", BAD, ids=[f for _, f in BAD])
def test_bad_rules_config_raises_value_error_naming_the_field(make, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()
