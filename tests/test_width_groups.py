"""Forwarding a pretraining batch in groups of similar width gives the same loss."""

from __future__ import annotations

import pytest
import torch

from pfn.config import DataConfig
from pfn.model import PFN, ModelConfig
from pfn.train import batch_loss
from priors import build_prior


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("arch", ["row", "feature", "cell"])
def test_grouped_loss_equals_one_pass(arch: str, task: str) -> None:
    prior = build_prior({"scm": {"max_features": 12,
                                 "num_features": {"low": 1, "high": 12}}})
    batch = prior.sample(8, 40, 25, torch.Generator().manual_seed(0), task)
    assert batch.num_features.unique().numel() > 1  # widths differ: grouping matters
    torch.manual_seed(0)
    model = PFN(ModelConfig(max_features=12, d_model=32, n_layers=2, n_heads=2, d_ff=32,
                            n_buckets=20, arch=arch, cell_dim=8, cell_heads=2, cell_ff=16,
                            cell_cls=2)).eval()  # eval: fixed feature identities
    with torch.no_grad():
        one = batch_loss(model, batch, torch.device("cpu"))
        grouped = batch_loss(model, batch, torch.device("cpu"), groups=3)
    torch.testing.assert_close(grouped, one, rtol=1e-5, atol=1e-5)


def test_width_groups_validated() -> None:
    with pytest.raises(ValueError, match="width_groups"):
        DataConfig(batch_size=4, width_groups=5)
