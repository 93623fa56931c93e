"""The stacked-estimate column of the prior (priors/hint.py): where it goes, what it holds,
that training rows never see their own target in it, and its configuration."""

from __future__ import annotations

import pytest
import torch

from priors import PostprocessConfig, Range, SCMConfig, SCMPrior
from priors.hint import _neighbours, add_hint, hint_columns

N_TRAIN, ROWS, WIDTH = 300, 500, 6


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def table(task: str, classes: int = 2, seed: int = 0):
    """Two informative columns (y is a function of them) in a table six columns wide."""
    g = gen(seed)
    x = torch.zeros(1, ROWS, WIDTH)
    x[0, :, :2] = torch.randn(ROWS, 2, generator=g)
    latent = x[0, :, 0] + 0.5 * x[0, :, 1]
    if task == "regression":
        y, n_cls = latent.unsqueeze(0), torch.zeros(1, dtype=torch.long)
    else:
        cuts = torch.quantile(latent, torch.linspace(0, 1, classes + 1)[1:-1])
        y = (latent.unsqueeze(-1) > cuts).sum(-1).float().unsqueeze(0)
        n_cls = torch.tensor([classes])
    return x, y, torch.tensor([2]), n_cls, torch.zeros(1, WIDTH, dtype=torch.bool)


def new_columns(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    """Indices of ``after``'s columns that are none of ``before``'s."""
    return [j for j in range(after.shape[1])
            if not any(torch.equal(after[:, j], before[:, i]) for i in range(before.shape[1]))]


@pytest.mark.parametrize("task,classes", [("regression", 0), ("classification", 2),
                                          ("classification", 4)])
def test_hint_adds_informative_columns_and_keeps_the_table(task, classes):
    x, y, nf, n_cls, cat = table(task, max(classes, 2))
    x2, nf2, cat2 = add_hint(x, y, nf, n_cls, cat, N_TRAIN, task, 1.0, gen(1))
    cols = hint_columns(task, classes)
    assert int(nf2[0]) == 2 + cols
    assert not bool(cat2.any())  # the hint is numeric
    added = new_columns(x[0, :, :2], x2[0, :, :2 + cols])
    assert len(added) == cols  # the original columns survive, only their order may change
    assert torch.all(x2[0, :, 2 + cols:] == 0)  # padding stays padding
    if task == "regression" or classes == 2:
        hint = x2[0, N_TRAIN:, added[0]]
        latent = x[0, N_TRAIN:, 0] + 0.5 * x[0, N_TRAIN:, 1]
        # An estimate of the target (a mean or a logit), not noise: strongly correlated
        # (even with the noise draw and the column subset, it is far from 0).
        assert torch.corrcoef(torch.stack([hint, latent]))[0, 1] > 0.3


def test_training_rows_are_never_their_own_neighbours():
    x = torch.randn(50, 3, generator=gen(2))
    nb = _neighbours(x, 30, 5)
    assert nb.shape == (50, 5)
    own = torch.arange(30).unsqueeze(1)
    assert not bool((nb[:30] == own).any())
    # a test row may have any training row, and only training rows
    assert int(nb.max()) < 30


def test_leave_one_out_hint_carries_no_own_label():
    # Pure-noise labels: with the row's own label among its neighbours the hint would
    # correlate with it (about sqrt(1/k) >= 0.14 at k <= 50); left out, it does not.
    g = gen(3)
    n = 2000
    x = torch.zeros(1, n, 4)
    x[0, :, :2] = torch.randn(n, 2, generator=g)
    y = torch.randn(1, n, generator=g)
    for seed in range(3):
        x2, nf2, _ = add_hint(x, y, torch.tensor([2]), torch.zeros(1, dtype=torch.long),
                              torch.zeros(1, 4, dtype=torch.bool), n, "regression", 1.0,
                              gen(seed))
        hint = x2[0, :, new_columns(x[0, :, :2], x2[0, :, :3])[0]]
        corr = torch.corrcoef(torch.stack([hint, y[0]]))[0, 1]
        assert abs(float(corr)) < 5 / n**0.5


def test_no_room_or_zero_probability_leaves_the_batch_alone():
    x, y, nf, n_cls, cat = table("classification", 4)
    full = torch.tensor([WIDTH - 2])  # 4 class columns would not fit
    x2, nf2, _ = add_hint(x, y, full, n_cls, cat, N_TRAIN, "classification", 1.0, gen())
    assert torch.equal(x2, x) and int(nf2[0]) == WIDTH - 2
    x3, nf3, _ = add_hint(x, y, nf, n_cls, cat, N_TRAIN, "classification", 0.0, gen())
    assert torch.equal(x3, x) and int(nf3[0]) == 2


def test_hint_is_deterministic_given_the_generator():
    x, y, nf, n_cls, cat = table("regression")
    a = add_hint(x, y, nf, n_cls, cat, N_TRAIN, "regression", 1.0, gen(5))
    b = add_hint(x, y, nf, n_cls, cat, N_TRAIN, "regression", 1.0, gen(5))
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_prior_with_hints_samples_valid_batches(task):
    post = PostprocessConfig(p_hint=1.0)
    prior = SCMPrior(SCMConfig(max_features=12, num_features=Range(1, 8), postprocess=post))
    plain = SCMPrior(SCMConfig(max_features=12, num_features=Range(1, 8)))
    batch = prior.sample(8, 200, 120, gen(6), task)
    base = plain.sample(8, 200, 120, gen(6), task)
    assert batch.x.shape == base.x.shape
    assert bool((batch.num_features <= 12).all())
    assert bool((batch.num_features > base.num_features).any())  # hints were added
    assert torch.isfinite(batch.x.nan_to_num()).all()


def test_p_hint_is_validated():
    with pytest.raises(ValueError, match="p_hint"):
        PostprocessConfig(p_hint=1.5)
