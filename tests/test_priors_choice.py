"""Behaviour of the choice prior: the class is the alternative whose utility is highest,
and copied columns give the chosen alternative's attributes.

The generic checks (shapes, seeding, classes in training rows) run for the choice prior in
tests/test_priors.py; this file checks what is specific to it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from priors import ChoiceConfig, ChoicePrior, PostprocessConfig, Range, build_prior

# Unstandardised, so that columns keep their common units and comparisons stay exact.
CLEAN = PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_wide=0.0, p_warp=0.0,
                          p_rescale=0.0, standardize=False)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def choice(**kw) -> ChoicePrior:
    base = {"max_features": 20, "attributes": Range(1, 1), "covariates": Range(0, 0),
            "irrelevant": Range(0, 0), "p_copy": 0.0, "noise": Range(1e-4, 1e-4),
            "constant_scale": Range(0.0, 0.0), "postprocess": CLEAN}
    return ChoicePrior(ChoiceConfig(**(base | kw)))


def test_without_noise_the_class_is_the_alternative_with_the_extreme_value() -> None:
    # One attribute per alternative and nothing else: the chosen alternative is the one
    # whose column is largest (positive weight) or smallest (negative weight).
    batch = choice(num_options=Range(2, 5)).sample(16, 300, 150, gen(0), "classification")
    for i in range(16):
        k = int(batch.num_classes[i])
        x, y = batch.x[i, :, :k].numpy(), batch.y[i].long().numpy()
        assert int(batch.num_features[i]) == k
        fits = []
        for pick in (x.argmax(1), x.argmin(1)):
            # The column that wins must name the class one-to-one.
            pairs = {(int(p), int(c)) for p, c in zip(pick, y, strict=True)}
            fits.append(len(pairs) == k)
        assert any(fits), i


def test_copied_columns_equal_the_chosen_alternatives_attribute() -> None:
    batch = choice(num_options=Range(3, 3), p_copy=1.0).sample(8, 400, 200, gen(1),
                                                                "classification")
    for i in range(8):
        x, y = batch.x[i, :, :4].numpy(), batch.y[i].long().numpy()
        assert int(batch.num_features[i]) == 4  # three alternatives and the copy
        found = False
        for c in range(4):  # the copy column is affinely equal to one source per class
            ok = all(max(abs(np.corrcoef(x[y == j, c], x[y == j, s])[0, 1])
                         for s in range(4) if s != c) > 0.9999 for j in range(3))
            found |= ok
        assert found, i


def test_noise_makes_choices_less_predictable() -> None:
    def agreement(noise: float) -> float:
        batch = choice(num_options=Range(2, 2), noise=Range(noise, noise)).sample(
            16, 400, 200, gen(2), "classification")
        scores = []
        for i in range(16):
            x, y = batch.x[i, :, :2].numpy(), batch.y[i].long().numpy()
            pick = x.argmax(1)
            scores.append(max(np.mean(pick == y), np.mean(pick != y)))
        return float(np.mean(scores))

    assert agreement(1e-4) > 0.99
    assert agreement(2.0) < 0.9


def test_regression_and_irrelevant_columns() -> None:
    prior = choice(irrelevant=Range(3, 3), covariates=Range(2, 2), attributes=Range(2, 2),
                   num_options=Range(2, 2))
    batch = prior.sample(4, 100, 50, gen(3), "regression")
    assert torch.isfinite(batch.y).all()
    assert batch.num_features.tolist() == [2 * 2 + 2 + 3] * 4
    assert not batch.categorical.any()


def test_choice_in_a_mixture_spec_and_bad_settings() -> None:
    prior = build_prior({"choice": {"weight": 1.0, "max_features": 40}})
    assert isinstance(prior, ChoicePrior)
    with pytest.raises(ValueError, match="max_features"):
        ChoiceConfig(max_features=10)
    with pytest.raises(ValueError, match="num_options"):
        ChoiceConfig(num_options=Range(2, 12))
    with pytest.raises(ValueError, match="p_copy"):
        ChoiceConfig(p_copy=2.0)
