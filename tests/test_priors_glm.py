"""Behaviour of the GLM prior: sampled (graded) labels, signal strength, sparsity, classes.

The generic checks (shapes, seeding, classes in training rows, post-processing) run for the
GLM prior in tests/test_priors.py; this file checks what is specific to it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score

from priors import GLMConfig, GLMPrior, PostprocessConfig, Range, build_prior

CLEAN = PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_wide=0.0, p_warp=0.0,
                          p_rescale=0.0, p_multiclass=0.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def glm(**kw) -> GLMPrior:
    base = {"max_features": 6, "num_features": Range(2, 6), "p_interactions": 0.0,
            "p_all_discrete": 0.0, "discrete_fraction": Range(0.0, 0.0), "postprocess": CLEAN}
    return GLMPrior(GLMConfig(**(base | kw)))


def held_out_auc(prior: GLMPrior, seed: int, n: int = 12) -> float:
    """Mean held-out ROC AUC of logistic regression on binary tables of the prior."""
    batch = prior.sample(n, 1200, 800, gen(seed), "classification")
    aucs = []
    for i in range(n):
        f = int(batch.num_features[i])
        x, y = batch.x[i, :, :f].numpy(), batch.y[i].numpy()
        model = LogisticRegression().fit(x[:800], y[:800])
        aucs.append(roc_auc_score(y[800:], model.predict_proba(x[800:])[:, 1]))
    return float(np.mean(aucs))


def test_labels_are_sampled_so_equal_rows_get_different_labels() -> None:
    # Discrete tables with few levels repeat feature tuples; a label that is drawn from
    # graded probabilities (not cut from a deterministic function) differs within a tuple.
    prior = glm(p_all_discrete=1.0, levels=Range(2, 2), num_features=Range(2, 2),
                signal=Range(1.0, 1.0))
    batch = prior.sample(8, 400, 200, gen(0), "classification")
    for i in range(8):
        keys, inverse = torch.unique(batch.x[i, :, :2], dim=0, return_inverse=True)
        mixed = [len(torch.unique(batch.y[i][inverse == k])) > 1 for k in range(len(keys))]
        assert sum(mixed) >= 1, i


def test_signal_strength_sets_how_predictable_the_labels_are() -> None:
    weak = held_out_auc(glm(signal=Range(0.3, 0.3)), seed=1)
    strong = held_out_auc(glm(signal=Range(8.0, 8.0)), seed=1)
    # Logistic noise of scale 1 against a predictor of std 0.3: AUC near 0.58; std 8:
    # near-separable classes, AUC near 0.97.
    assert 0.5 < weak < 0.7
    assert strong > 0.93


def test_regression_r2_follows_the_signal_to_noise_ratio() -> None:
    # Numeric columns, no interactions, no warps: y = s * eta + N(0, 1) with eta linear
    # in x and of unit variance, so R² of a linear fit is about s² / (1 + s²).
    prior = glm(regression_signal=Range(2.0, 2.0))
    batch = prior.sample(12, 2000, 1500, gen(2), "regression")
    scores = []
    for i in range(12):
        f = int(batch.num_features[i])
        x, y = batch.x[i, :, :f].numpy(), batch.y[i].numpy()
        scores.append(LinearRegression().fit(x[:1500], y[:1500]).score(x[1500:], y[1500:]))
    assert np.mean(scores) == pytest.approx(0.8, abs=0.05)


def test_only_informative_columns_carry_signal() -> None:
    # One informative column of ten (no mixing): the linear fit puts its weight there.
    prior = glm(num_features=Range(10, 10), max_features=10,
                informative_fraction=Range(0.1, 0.1), p_correlated=0.0,
                regression_signal=Range(5.0, 5.0))
    batch = prior.sample(8, 1000, 900, gen(3), "regression")
    for i in range(8):
        coef = np.abs(LinearRegression().fit(batch.x[i].numpy(), batch.y[i].numpy()).coef_)
        top, rest = np.sort(coef)[-1], np.sort(coef)[-2]
        assert top > 10 * rest, (i, coef)


def test_interactions_add_signal_that_a_linear_fit_misses() -> None:
    # With strong products the linear fit explains less than without them.
    base = {"regression_signal": Range(5.0, 5.0), "p_correlated": 0.0}
    plain = glm(**base).sample(12, 1500, 1000, gen(4), "regression")
    inter = glm(**base, p_interactions=1.0, num_interactions=Range(4, 4)).sample(
        12, 1500, 1000, gen(4), "regression")

    def r2(b) -> float:
        out = []
        for i in range(12):
            f = int(b.num_features[i])
            x, y = b.x[i, :, :f].numpy(), b.y[i].numpy()
            out.append(LinearRegression().fit(x[:1000], y[:1000]).score(x[1000:], y[1000:]))
        return float(np.mean(out))

    assert r2(inter) < r2(plain) - 0.1


@pytest.mark.parametrize("p_nominal", [0.0, 1.0])
def test_multiclass_tables_have_every_class_in_training_rows(p_nominal: float) -> None:
    post = PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_multiclass=1.0, max_classes=6)
    batch = glm(p_nominal=p_nominal, postprocess=post).sample(16, 200, 60, gen(5),
                                                              "classification")
    for i in range(16):
        k = int(batch.num_classes[i])
        assert 3 <= k <= 6
        assert set(batch.y[i, :60].long().tolist()) == set(range(k))


def test_discrete_columns_are_flagged_and_hold_codes() -> None:
    batch = glm(p_all_discrete=1.0, levels=Range(3, 3)).sample(8, 100, 50, gen(6),
                                                                 "classification")
    for i in range(8):
        f = int(batch.num_features[i])
        assert bool(batch.categorical[i, :f].all())
        assert set(batch.x[i, :, :f].unique().tolist()) <= {0.0, 1.0, 2.0}


def test_glm_in_a_mixture_spec_and_bad_settings() -> None:
    prior = build_prior({"glm": {"weight": 1.0, "max_features": 5,
                                 "num_features": {"low": 1, "high": 5}}})
    assert isinstance(prior, GLMPrior)
    with pytest.raises(ValueError, match="p_nominal"):
        GLMConfig(p_nominal=1.5)
    with pytest.raises(ValueError, match="signal"):
        GLMConfig(signal=Range(-1.0, 2.0))
    with pytest.raises(ValueError, match="num_features"):
        GLMConfig(max_features=4, num_features=Range(1, 8))
